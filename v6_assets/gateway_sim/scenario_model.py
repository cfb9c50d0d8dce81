"""The scenario's data model: accounts, underlyings, contracts, initial positions, the clock, the timeline and the
nastiness switches, as frozen values. Reading and validating YAML into them is ``scenario.py``."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from v6_assets import sessions

NEW_YORK = sessions.NEW_YORK
OPTION_SEC_TYPES = ("OPT", "FOP")
SEC_TYPES = ("OPT", "FOP", "STK", "FUT")
EVENT_KINDS = (
    "trade",
    "underlying",
    "mark",
    "expire",
    "exercise",
    "assign",
    "disconnect",
    "refuse",
    "stall",
    "error",
    "malformed",
    "truncated",
    "reset",
    "restart",
    "competing_session",
    "correct_execution",
    "farm_down",
)
# Events that last: each schedules its own end (``<kind>_end``, internal) ``seconds`` of simulated time later.
LASTING_EVENTS = ("reset", "competing_session", "farm_down")
# Conditions in ``MarketState.paused`` that stop market data, PnL and PnL single (the account window goes on).
MARKET_DATA_PAUSES = frozenset({"competing_session", "farm_down"})


class ScenarioError(ValueError):
    """The scenario file is invalid; the message names the entry and the field."""


@dataclass(frozen=True, slots=True)
class Account:
    account_id: str
    base_currency: str = "USD"
    fx_rates: dict[str, float] = field(default_factory=dict)  # currency -> base currency units per 1 unit

    def fx_rate(self, currency: str) -> float | None:
        """Rate converting ``currency`` into the base currency (1.0 for the base itself, None if unknown)."""
        return 1.0 if currency == self.base_currency else self.fx_rates.get(currency)


@dataclass(frozen=True, slots=True)
class Underlying:
    symbol: str
    spot: float
    vol: float
    drift: float = 0.0


@dataclass(frozen=True, slots=True)
class ContractSpec:
    con_id: int
    symbol: str
    sec_type: str
    expiry_wire: str  # lastTradeDateOrContractMonth exactly as sent (may carry a time and zone)
    expiry_at: datetime | None  # the expiry instant (UTC); None for STK
    strike: float
    right: str
    multiplier: float
    multiplier_wire: str  # the multiplier string as sent ('100', '50', '' for stock...)
    currency: str
    trading_class: str
    exchange: str
    primary_exchange: str
    local_symbol: str
    vol: float | None = None  # per-contract implied vol override

    @property
    def is_option(self) -> bool:
        return self.sec_type in OPTION_SEC_TYPES

    @property
    def expiry_date(self) -> date | None:
        return self.expiry_at.astimezone(NEW_YORK).date() if self.expiry_at else None


@dataclass(frozen=True, slots=True)
class InitialPosition:
    account: str
    con_id: int
    qty: float
    avg_cost: float | None  # per contract, multiplier and commission included (IB's averageCost); None: the mark


@dataclass(frozen=True, slots=True)
class TimelineEvent:
    at: datetime  # UTC
    kind: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ClockSpec:
    start: datetime  # UTC
    speed: float = 1.0
    portfolio_cadence_s: float = 180.0
    pnl_cadence_s: float = 1.0
    greeks_cadence_s: float = 1.0
    account_values_cadence_s: float = 180.0
    min_real_interval_s: float = 0.25  # cap: a stream repeats at most this often in real time, whatever the speed
    tick_real_s: float = 0.05  # the simulator's real-time step
    skip_nights: bool | None = None  # None: skip nights/weekends when speed > 60
    walk_step_s: float = 60.0  # random-walk step, in trading seconds
    # Faster than real time, simulated time holds this many real seconds 1 minute after each close and 1 second
    # before each EOD cut, so what was sent before the cut is received (on the simulated clock) before it,
    # whatever the machine's load: the EOD state is the same on an idle and a loaded machine.
    settle_real_s: float = 1.0


@dataclass(frozen=True, slots=True)
class Nastiness:
    unset_realized: bool = True  # realizedPNL = UNSET_DOUBLE when not traded this session (as IB)
    greeks_sentinel_every: int = 0  # every Nth greeks tick per contract is sent as -1/-2 sentinels (0: never)
    after_hours_quotes: bool = True  # bid/ask -1 outside regular trading hours
    auto_expire: bool = True  # options expire at their expiry session's close without an explicit event
    # Exercise/assignment of an equity option delivers the scenario's stock of its symbol, as IB does (False: every
    # settlement in cash at the intrinsic value; the default, so older scenarios keep their books)
    physical_delivery: bool = False


@dataclass(frozen=True, slots=True)
class Pacing:
    """IB's 50 messages/s per client; ``max_per_s`` 0: not enforced."""

    max_per_s: int = 0
    disconnect_after: int = 3  # seconds in a row over the limit (each warned with error 100), then a disconnect


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    accounts: tuple[Account, ...]
    underlyings: dict[str, Underlying]
    contracts: dict[int, ContractSpec]
    positions: tuple[InitialPosition, ...]
    clock: ClockSpec
    events: tuple[TimelineEvent, ...]
    nastiness: Nastiness = Nastiness()
    rate: float = 0.0
    seed: int = 0
    market_data_lines: int = 100
    max_clients: int = 32
    next_valid_id: int = 1
    pacing: Pacing = Pacing()

    @property
    def account_ids(self) -> list[str]:
        return [a.account_id for a in self.accounts]
