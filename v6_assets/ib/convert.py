"""The one place where ib_async objects become our events. Every IB sentinel becomes ``None`` here.

Sentinels handled: UNSET_DOUBLE (1.7976931348623157e308), NaN and inf -> None by the IB-unset rule
(``v6_assets.contracts.unset``); greeks "not computed" -1 (implied vol,
option price, underlying price) and -2 (delta, gamma, vega, theta; ib_async 2.1 leaks -2 for vega/theta) -> None;
multiplier '' / '0' / unparsable -> None; expiry 'YYYYMMDD', 'YYYYMMDD HH:MM[:SS] [Zone]' (zone-aware: the expiry
date is the New York date of that instant) or month-only 'YYYYMM' (-> None); strike <= 0 -> None; right 'CALL'/'PUT'
normalised to 'C'/'P'. Rows of sec types not configured (default OPT, FOP) are dropped and counted.
"""

from __future__ import annotations

import functools
import math
import operator
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from v6_assets.contracts.clock import utc_now
from v6_assets.contracts.lifecycle import DELIVERY_SEC_TYPE, delivered_shares
from v6_assets.contracts.streams import POSITION_UPDATE_FIELDS, GreeksUpdate, PositionSource, PositionUpdate
from v6_assets.contracts.unset import UNSET_MAGNITUDE, is_ib_unset
from v6_assets.sessions import NEW_YORK

UNSET_INTEGER = 2**31 - 1
MODEL_GREEKS_TICK = 13

Clock = Callable[[], datetime]


def clean_float(value: Any) -> float | None:
    """A number IB sent, or None when it carries no value by the IB-unset rule (``v6_assets.contracts.unset``:
    UNSET_DOUBLE, NaN, inf) and for None/empty."""
    if type(value) is float:  # the hot path: ib_async hands us floats
        return None if is_ib_unset(value) else value
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if is_ib_unset(number) else number


def _clean(value: Any) -> float | None:
    """``clean_float`` with the common case (a float that carries a value) decided in one comparison."""
    if type(value) is float and -UNSET_MAGNITUDE < value < UNSET_MAGNITUDE:
        return value
    return clean_float(value)


def clean_greek(value: Any, not_computed: float) -> float | None:
    """Like ``clean_float`` and also maps IB's "not computed" marker (-1 or -2) to None."""
    number = clean_float(value)
    if number is None or number == not_computed:
        return None
    return number


def parse_multiplier(raw: Any) -> float | None:
    """'100' -> 100.0, '0.5' -> 0.5; '' / '0' / garbage / sentinel -> None."""
    if isinstance(raw, int | float):
        number = clean_float(raw)
    else:
        text = str(raw or "").strip()
        if not text:
            return None
        number = clean_float(text)
    if number is None or number <= 0:
        return None
    return number


_EXPIRY_RE = re.compile(r"^(\d{4})(\d{2})(\d{2})(?:[ -]+(\d{1,2}):(\d{2})(?::(\d{2}))?(?:\s+(\S+))?)?$")


@functools.lru_cache(maxsize=4096)
def parse_expiry(raw: str) -> date | None:
    """IB ``lastTradeDateOrContractMonth`` -> expiry date, or None when only a month or nothing usable is given."""
    text = (raw or "").strip()
    match = _EXPIRY_RE.match(text)
    if not match:
        return None
    year, month, day, hour, minute, second, zone = match.groups()
    try:
        expiry = date(int(year), int(month), int(day))
        if hour is None or zone is None:
            return expiry
        instant = datetime(expiry.year, expiry.month, expiry.day, int(hour), int(minute), int(second or 0))
        # A time with a zone pins an instant; the expiry is the US trading date of it
        # ('20230624 04:00:00 Asia/Shanghai' is the 2023-06-23 expiry).
        return instant.replace(tzinfo=ZoneInfo(zone)).astimezone(NEW_YORK).date()
    except (ValueError, ZoneInfoNotFoundError):
        return None


def normalise_right(raw: Any) -> str | None:
    text = str(raw or "").strip().upper()
    if text in ("C", "CALL"):
        return "C"
    if text in ("P", "PUT"):
        return "P"
    return None


def _slot_constructor(cls: type, fields: tuple[str, ...]) -> Callable[..., Any]:
    """A positional constructor for a frozen slots dataclass that writes the slots directly.

    Why: the dataclass ``__init__`` of a frozen class goes through ``object.__setattr__`` by name per field, about
    half of the per-update CPU in the streamer's hot path. Same result (equality and hash are field-based)."""
    setters = {f"_s{i}": cls.__dict__[name].__set__ for i, name in enumerate(fields)}
    params = ", ".join(f"a{i}" for i in range(len(fields)))
    body = "\n".join(f"    _s{i}(obj, a{i})" for i in range(len(fields)))
    namespace: dict[str, Any] = {"_new": object.__new__, "_cls": cls, **setters}
    exec(f"def build({params}):\n    obj = _new(_cls)\n{body}\n    return obj\n", namespace)
    return namespace["build"]


new_position_update: Callable[..., PositionUpdate] = _slot_constructor(PositionUpdate, POSITION_UPDATE_FIELDS)


class ContractFields(NamedTuple):
    con_id: int
    symbol: str
    sec_type: str
    expiry: date | None
    strike: float | None
    right: str | None
    multiplier: float | None
    currency: str
    exchange: str
    trading_class: str
    local_symbol: str


# The raw ib_async ``Contract`` attributes ``contract_fields`` reads: equal raw values give equal fields, so the
# converted fields are cached by them (a portfolio row repeats its contract every time; converting it anew was a
# third of the merger's time per row).
_CONTRACT_RAW = operator.attrgetter("conId", "symbol", "secType", "lastTradeDateOrContractMonth", "strike", "right",
                                    "multiplier", "currency", "exchange", "primaryExchange", "tradingClass",
                                    "localSymbol")  # fmt: skip
_CONTRACT_CACHE_MAX = 50_000  # distinct contracts held (a NaN strike never hits: the bound keeps that finite)


def contract_fields(contract: Any) -> ContractFields:
    """Contract columns from an ib_async ``Contract`` (any sec type; filtering is the caller's)."""
    strike = clean_float(contract.strike)
    return ContractFields(
        con_id=int(contract.conId),
        symbol=str(contract.symbol or ""),
        sec_type=str(contract.secType or ""),
        expiry=parse_expiry(str(contract.lastTradeDateOrContractMonth or "")),
        strike=strike if strike is not None and strike > 0 else None,
        right=normalise_right(contract.right),
        multiplier=parse_multiplier(contract.multiplier),
        currency=str(contract.currency or ""),
        exchange=str(contract.exchange or contract.primaryExchange or ""),
        trading_class=str(contract.tradingClass or ""),
        local_symbol=str(contract.localSymbol or ""),
    )


@dataclass(slots=True)
class ConversionCounters:
    non_option_dropped: int = 0
    delivered_stock_kept: int = 0  # stock positions adopted as the leg of an exercise/assignment
    foreign_account_dropped: int = 0
    pnl_for_unknown_position: int = 0


# Indexes into a position's merged values (same order as the PositionUpdate fields after the contract).
_POSITION, _AVG_COST, _MKT_PRICE, _MKT_VALUE, _UNREAL, _REAL, _IB_DAILY, _IB_UNREAL, _IB_REAL, _IB_VALUE = range(10)


class _PositionState:
    __slots__ = ("changed_at", "contract", "emitted", "last_fields", "prev_qty", "values")

    def __init__(self, contract: ContractFields) -> None:
        self.contract = contract
        self.last_fields = contract  # the fields the last message carried (before the exchange merge)
        self.values: list[float | None] = [None] * 10
        # A new position whose first message carried only sentinels still gets one row (the contract exists).
        self.emitted = False
        # stock not (yet) kept: its quantity before the last change (None: first sight) and when it changed
        self.prev_qty: float | None = None
        self.changed_at: datetime | None = None


# Stock is kept only as the leg of an exercise/assignment: IB sends no execution for it, only the option's position
# shrinking and the stock's changing (overnight for an assignment; ib_async#93). Both changes must fall within this
# window of each other (on the merger's clock) and match in size: contracts x multiplier, same sign for a call,
# opposite for a put.
DELIVERY_WINDOW_S = 300.0


class PositionMerger:
    """Merges the portfolio, position and PnL-single streams into one state per (account, con_id).

    Each ``on_*`` returns a ``PositionUpdate`` when the merged state changed, else None (repeats are not emitted).
    ``seq`` counts emitted position updates of this merger, starting at 1.
    """

    def __init__(
        self,
        sec_types: Iterable[str] = ("OPT", "FOP"),
        accounts: Iterable[str] = (),
        clock: Clock = utc_now,
    ) -> None:
        self.sec_types = frozenset(sec_types)
        self.accounts: frozenset[str] = frozenset(accounts)
        self.clock = clock
        self.counters = ConversionCounters()
        self._states: dict[tuple[str, int], _PositionState] = {}
        # stock positions seen but not kept (yet), and the stock changes the option book's shrinking predicts
        self._stock: dict[tuple[str, int], _PositionState] = {}
        self._deliveries: dict[tuple[str, str], list[tuple[float, datetime]]] = {}
        self._pending_emits: list[tuple[str, int]] = []
        self._contracts: dict[tuple[Any, ...], ContractFields] = {}
        self._seq = 0

    # -- queries -----------------------------------------------------------------------------------------------
    def open_positions(self) -> dict[tuple[str, int], tuple[ContractFields, float]]:
        """(account, con_id) -> (contract, position) for every position with a known non-zero quantity."""
        result = {}
        for key, state in self._states.items():
            qty = state.values[_POSITION]
            if qty:
                result[key] = (state.contract, qty)
        return result

    def known_keys(self) -> set[tuple[str, int]]:
        return set(self._states)

    def account_allowed(self, account: str) -> bool:
        return not self.accounts or account in self.accounts

    # -- inputs ------------------------------------------------------------------------------------------------
    def _state_for(self, account: str, contract: Any) -> _PositionState | None:
        key = (account, int(contract.conId))
        stock = contract.secType == DELIVERY_SEC_TYPE and key not in self._states
        if contract.secType not in self.sec_types and not stock and key not in self._states:
            self.counters.non_option_dropped += 1
            return None
        if self.accounts and account not in self.accounts:
            self.counters.foreign_account_dropped += 1
            return None
        raw = _CONTRACT_RAW(contract)
        fields = self._contracts.get(raw)
        if fields is None:
            fields = contract_fields(contract)
            if len(self._contracts) >= _CONTRACT_CACHE_MAX:
                self._contracts.clear()
            self._contracts[raw] = fields
        if stock and DELIVERY_SEC_TYPE not in self.sec_types:
            held = self._stock.get(key)
            if held is None:
                held = self._stock[key] = _PositionState(fields)
            return held
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = _PositionState(fields)
        elif fields is not state.last_fields:  # the same (cached) fields as last time: nothing to merge
            state.last_fields = fields
            # Portfolio rows carry primaryExchange, position rows exchange: keep the first non-empty one.
            if not fields.exchange and state.contract.exchange:
                fields = fields._replace(exchange=state.contract.exchange)
            if fields != state.contract:
                state.contract = fields
        return state

    def on_portfolio(self, item: Any) -> PositionUpdate | None:
        """An ib_async ``PortfolioItem`` (updatePortfolio)."""
        return self.on_portfolio_values(
            item.contract, item.position, item.marketPrice, item.marketValue, item.averageCost, item.unrealizedPNL,
            item.realizedPNL, item.account,
        )  # fmt: skip

    def on_portfolio_values(
        self, contract: Any, position: Any, market_price: Any, market_value: Any, average_cost: Any,
        unrealized: Any, realized: Any, account: str,
    ) -> PositionUpdate | None:  # fmt: skip
        """One updatePortfolio message as ib_async's decoder hands it to its wrapper (same arguments, same order)."""
        state = self._state_for(account, contract)
        if state is None:
            return None
        v = state.values
        before = list(v)
        v[_POSITION] = _clean(position)
        v[_MKT_PRICE] = _clean(market_price)
        v[_MKT_VALUE] = _clean(market_value)
        v[_AVG_COST] = _clean(average_cost)
        v[_UNREAL] = _clean(unrealized)
        v[_REAL] = _clean(realized)
        return self._emit(account, state, before, "portfolio")

    def on_position(self, position: Any) -> PositionUpdate | None:
        """An ib_async ``Position`` (reqPositions)."""
        state = self._state_for(position.account, position.contract)
        if state is None:
            return None
        v = state.values
        before = list(v)
        v[_POSITION] = clean_float(position.position)
        v[_AVG_COST] = clean_float(position.avgCost)
        return self._emit(position.account, state, before, "position")

    def on_pnl_single(self, pnl: Any) -> PositionUpdate | None:
        """An ib_async ``PnLSingle``. Only for positions already known from the position/portfolio streams."""
        state = self._states.get((pnl.account, pnl.conId))
        if state is None:
            self.counters.pnl_for_unknown_position += 1
            return None
        v = state.values
        position = _clean(pnl.position)
        new = (
            v[_POSITION] if position is None else position,
            _clean(pnl.dailyPnL),
            _clean(pnl.unrealizedPnL),
            _clean(pnl.realizedPnL),
            _clean(pnl.value),
        )
        # The hot path (~1/s per position, thousands/s in bursts): compare before copying anything.
        if state.emitted and new == (v[_POSITION], v[_IB_DAILY], v[_IB_UNREAL], v[_IB_REAL], v[_IB_VALUE]):
            return None
        before = list(v)
        v[_POSITION], v[_IB_DAILY], v[_IB_UNREAL], v[_IB_REAL], v[_IB_VALUE] = new
        return self._emit(pnl.account, state, before, "pnl_single")

    def resync(self) -> list[PositionUpdate]:
        """The current merged state of every known position, as new updates (after updates were lost downstream)."""
        updates = []
        for (account, _con_id), state in self._states.items():
            update = self._emit(account, state, [], "position")
            if update is not None:
                updates.append(update)
        return updates

    def close_missing(self, seen: set[tuple[str, int]]) -> list[PositionUpdate]:
        """After a full positions snapshot: positions we hold open that the snapshot lacks are closed (qty 0)."""
        updates = []
        for key, state in self._states.items():
            if key in seen or not state.values[_POSITION]:
                continue
            before = list(state.values)
            state.values[_POSITION] = 0.0
            update = self._emit(key[0], state, before, "position")
            if update is not None:
                updates.append(update)
        return updates

    def _stock_seen(self, account: str, state: _PositionState, before: list[float | None]) -> bool:
        """A stock row not kept so far (``before``: its values before this row; [] when re-examined): True when it
        is now kept, as the leg of an option's exercise/assignment (see ``DELIVERY_WINDOW_S``)."""
        now = self.clock()
        if (before and before[_POSITION] != state.values[_POSITION]) or state.changed_at is None:
            state.prev_qty = before[_POSITION] if before else None
            state.changed_at = now
        change = (state.values[_POSITION] or 0.0) - (state.prev_qty or 0.0)
        if change == 0 or abs((now - state.changed_at).total_seconds()) > DELIVERY_WINDOW_S:
            return False
        where = (account, state.contract.symbol)
        fresh = [(c, at) for c, at in self._deliveries.get(where, []) if abs((now - at).total_seconds())
                 <= DELIVERY_WINDOW_S]  # fmt: skip
        self._deliveries[where] = fresh
        match = next((i for i, (c, _) in enumerate(fresh) if abs(c - change) < 1e-9), None)
        if match is not None:
            fresh.pop(match)
        elif fresh and abs(sum(c for c, _ in fresh) - change) < 1e-9:
            fresh.clear()  # several options delivered into the one stock position at once
        else:
            return False
        key = (account, state.contract.con_id)
        self._states[key] = self._stock.pop(key)
        self.counters.delivered_stock_kept += 1
        return True

    def _option_shrank(self, account: str, state: _PositionState, before: list[float | None]) -> None:
        """Remember the stock change an option position's shrinking would deliver (see ``DELIVERY_WINDOW_S``)."""
        old, new = (before[_POSITION] if before else None), state.values[_POSITION]
        if old is None or new is None or not old or abs(new) >= abs(old) or (new and (new > 0) != (old > 0)):
            return
        c = state.contract
        expected = delivered_shares(c.right, new - old, c.multiplier)
        if expected is None:
            return
        self._deliveries.setdefault((account, c.symbol), []).append((expected, self.clock()))
        for key, held in list(self._stock.items()):  # the stock leg reported first: keep it now
            if key[0] == account and held.contract.symbol == c.symbol and self._stock_seen(account, held, []):
                self._pending_emits.append(key)

    def take_kept_stock(self) -> list[PositionUpdate]:
        """Updates of stock legs kept after they were reported (the option's change came second)."""
        out = []
        for account, con_id in self._pending_emits:
            update = self._emit(account, self._states[(account, con_id)], [], "position")
            if update is not None:
                out.append(update)
        self._pending_emits.clear()
        return out

    def _emit(
        self, account: str, state: _PositionState, before: list[float | None], source: PositionSource
    ) -> PositionUpdate | None:
        values = state.values
        key = (account, state.contract.con_id)
        if key in self._stock:
            if not self._stock_seen(account, state, before):
                self.counters.non_option_dropped += 1  # held aside, not streamed (unless it turns out a leg)
                return None
            before = []
        elif state.contract.sec_type != DELIVERY_SEC_TYPE:
            self._option_shrank(account, state, before)
        if values == before and state.emitted:
            return None
        state.emitted = True
        self._seq += 1
        c = state.contract
        return new_position_update(
            account,
            c.con_id,
            c.symbol,
            c.sec_type,
            c.expiry,
            c.strike,
            c.right,
            c.multiplier,
            c.currency,
            c.exchange,
            c.trading_class,
            c.local_symbol,
            values[0],
            values[1],
            values[2],
            values[3],
            values[4],
            values[5],
            values[6],
            values[7],
            values[8],
            values[9],
            source,
            self._seq,
            self.clock(),
        )


def greeks_from_computation(con_id: int, tick_type: int, comp: Any, seq: int, received_at: datetime) -> GreeksUpdate:
    """An ib_async ``OptionComputation`` -> ``GreeksUpdate`` (-1/-2 markers, UNSET_DOUBLE and NaN -> None)."""
    return GreeksUpdate(
        con_id=con_id,
        tick_type=tick_type,
        delta=clean_greek(comp.delta, -2.0),
        gamma=clean_greek(comp.gamma, -2.0),
        vega=clean_greek(comp.vega, -2.0),
        theta=clean_greek(comp.theta, -2.0),
        implied_vol=clean_greek(comp.impliedVol, -1.0),
        und_price=clean_greek(comp.undPrice, -1.0),
        opt_price=clean_greek(comp.optPrice, -1.0),
        seq=seq,
        received_at=received_at,
    )


class GreeksThrottle:
    """At most one greeks update per contract per ``interval_s``; the latest value in a window is emitted at the
    window's end (trailing edge), so the final state is never lost. ``now`` is a monotonic time in seconds."""

    def __init__(self, interval_s: float = 1.0, clock: Clock = utc_now) -> None:
        self.interval_s = interval_s
        self.clock = clock
        self._last_emit: dict[int, float] = {}
        self._pending: dict[int, tuple[int, Any]] = {}
        self._seq = 0
        self.suppressed = 0

    def offer(self, con_id: int, tick_type: int, comp: Any, now: float) -> GreeksUpdate | None:
        last = self._last_emit.get(con_id)
        if last is None or now - last >= self.interval_s:
            self._last_emit[con_id] = now
            self._pending.pop(con_id, None)
            return self._make(con_id, tick_type, comp)
        if con_id in self._pending:
            self.suppressed += 1
        self._pending[con_id] = (tick_type, comp)
        return None

    def flush_due(self, now: float) -> list[GreeksUpdate]:
        due = [con_id for con_id in self._pending if now - self._last_emit.get(con_id, -math.inf) >= self.interval_s]
        out = []
        for con_id in due:
            tick_type, comp = self._pending.pop(con_id)
            self._last_emit[con_id] = now
            out.append(self._make(con_id, tick_type, comp))
        return out

    def forget(self, con_id: int) -> None:
        self._pending.pop(con_id, None)
        self._last_emit.pop(con_id, None)

    def _make(self, con_id: int, tick_type: int, comp: Any) -> GreeksUpdate:
        self._seq += 1
        return greeks_from_computation(con_id, tick_type, comp, self._seq, self.clock())


def plan_greeks_lines(
    priorities: dict[int, float], budget: int, rotation_index: int, rotation_slots: int | None = None
) -> set[int]:
    """Which contracts get a market-data line for model greeks.

    All of them if they fit the budget. Otherwise the highest |position x multiplier| contracts are pinned and
    ``rotation_slots`` lines (default a tenth of the budget, at least 1) cycle through the rest; ``rotation_index``
    advances the cycle. Ties are broken by con_id so the plan is deterministic.
    """
    if budget <= 0:
        return set()
    ranked = sorted(priorities, key=lambda cid: (-abs(priorities[cid]), cid))
    if len(ranked) <= budget:
        return set(ranked)
    slots = rotation_slots if rotation_slots is not None else max(1, budget // 10)
    slots = min(max(slots, 1), budget)
    pinned = ranked[: budget - slots]
    rest = ranked[budget - slots :]
    start = (rotation_index * slots) % len(rest)
    rotating = [rest[(start + i) % len(rest)] for i in range(slots)]
    return set(pinned) | set(rotating)
