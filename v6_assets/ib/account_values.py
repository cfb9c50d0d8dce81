"""Account values: ib_async's ``accountValueEvent`` -> ``AccountValueUpdate`` events on the fan-out, when changed.

Every allowed account is subscribed with ``reqAccountUpdatesMulti`` at connect (``subscribe``): IB's one-account
rule applies to ``reqAccountUpdates`` (the rotating portfolio subscription), not to the multi request, so both live
side by side and the portfolio rule is untouched. Values of other accounts are dropped and counted.

Bad input is kept and counted, never invented: an ExchangeRate that is 0, negative or a sentinel, a number key whose
text is not a number, a currency that is not a 3-letter code ('BASE' and '' are IB's own) -> the row is emitted with
``value`` null, the raw text and a ``problem``, and ``errors`` counts it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ib_async import IB

from v6_assets.contracts.streams import AccountValueUpdate
from v6_assets.ib.convert import Clock, clean_float

log = logging.getLogger(__name__)

# The keys whose value must be a number (IB sends them as strings).
NUMBER_KEYS = frozenset({"NetLiquidation", "TotalCashValue", "CashBalance", "ExchangeRate", "MaintMarginReq",
                         "InitMarginReq", "AvailableFunds", "ExcessLiquidity", "BuyingPower", "GrossPositionValue",
                         "UnrealizedPnL", "RealizedPnL", "OptionMarketValue"})  # fmt: skip
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_IB_CURRENCIES = frozenset({"", "BASE"})


@dataclass(slots=True)
class AccountValueCounters:
    emitted: int = 0
    errors: int = 0
    foreign_account_dropped: int = 0


def value_problem(key: str, currency: str, text: str) -> tuple[float | None, str | None]:
    """The number and the problem (None when fine) of one account value."""
    if currency not in _IB_CURRENCIES and not _CURRENCY.match(currency):
        return None, f"unknown currency {currency!r}"
    number = clean_float(text)
    if key not in NUMBER_KEYS:
        return number, None
    if number is None:
        return None, f"{key} is not a number: {text!r}"
    if key == "ExchangeRate" and number <= 0:
        return None, f"ExchangeRate {text!r} is not a usable rate"
    return number, None


class AccountValueTracker:
    """Emits account values when they change (loop thread only; one per streamer run)."""

    def __init__(self, accounts: tuple[str, ...], clock: Clock, emit: Callable[[AccountValueUpdate], None]) -> None:
        self.accounts = accounts
        self.clock = clock
        self.emit = emit
        self.counters = AccountValueCounters()
        self._last: dict[tuple[str, str, str], str] = {}
        self._seq = 0

    def attach(self, ib: IB) -> None:
        ib.accountValueEvent += self.on_account_value

    def subscribe(self, ib: IB, accounts: tuple[str, ...]) -> None:
        """One reqAccountUpdatesMulti per allowed account (answers arrive as accountValueEvent)."""
        for account in accounts:
            ib.client.reqAccountUpdatesMulti(ib.client.getReqId(), account, "", False)

    def on_account_value(self, value: Any) -> None:
        try:
            account, key = str(value.account or ""), str(value.tag or "")
            currency, text = str(value.currency or ""), str(value.value if value.value is not None else "")
        except Exception:
            self.counters.errors += 1
            log.exception("could not read account value (kept here for recovery): %r", value)
            return
        if not account or not key:
            self.counters.errors += 1
            log.error("account value without account or key (kept here for recovery): %r", value)
            return
        if self.accounts and account not in self.accounts:
            self.counters.foreign_account_dropped += 1
            return
        if self._last.get((account, key, currency)) == text:
            return
        self._last[(account, key, currency)] = text
        number, problem = value_problem(key, currency, text)
        if problem is not None:
            self.counters.errors += 1
            log.error("account %s: %s (kept as text, no value invented)", account, problem)
        self._seq += 1
        self.counters.emitted += 1
        self.emit(AccountValueUpdate(account, key, currency, number, text, problem, self._seq, self.clock()))
