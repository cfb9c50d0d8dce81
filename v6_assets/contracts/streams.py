"""The streams: every event the IB side emits, its fields, their types and what each one means.

These dataclasses are THE definition of a stream's fields. Everything else is derived from them: the streamer builds
them (``v6_assets.ib.convert``), the spool stores their fields in this order (``v6_assets.ib.spool``), each field
becomes a column of ``position_updates`` / ``greeks_updates`` with the description written here
(``v6_assets.contracts.tables``; the lake adds ``trade_date``, ``stream_id``, ``spool_offset`` and ``ingested_at``),
the analytics read those columns and the Dagster column metadata shows the descriptions. Adding a field is one edit
here (plus filling it where IB sends it). Pure data: no ib_async, no Dagster.

Types: ``X | None`` is a nullable column; ``None`` means "unknown / IB sent a sentinel", never zero.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

PositionSource = Literal["portfolio", "position", "pnl_single"]

_SEQ = "Streamer sequence number of the update (monotonic within one stream)."
_RECEIVED_AT = "When the streamer received the update (UTC)."


def _doc(description: str) -> dict[str, str]:
    """A field's metadata: its column description (read by ``field_description``)."""
    return {"description": description}


def field_description(f: dataclasses.Field[Any]) -> str:
    return str(f.metadata["description"])


@dataclass(slots=True, frozen=True)
class PositionUpdate:
    """Full known state of one (account, con_id) option position at ``received_at`` (UTC).

    Merged from three IB streams. Quantities with different meanings keep separate, source-named fields:
    ``realized_pnl`` is updatePortfolio's (resets daily), ``ib_realized_pnl`` is reqPnLSingle's.
    """

    account: str = field(metadata=_doc("IB account code the position belongs to."))
    con_id: int = field(metadata=_doc("IB contract id of the option (unique per contract)."))
    symbol: str = field(metadata=_doc("Underlying symbol of the contract."))
    sec_type: str = field(metadata=_doc("IB security type (OPT, FOP, ...)."))
    expiry: date | None = field(
        metadata=_doc("Option expiry date (lastTradeDateOrContractMonth); null when IB did not send one.")
    )
    strike: float | None = field(metadata=_doc("Option strike price; null when unknown."))
    right: str | None = field(metadata=_doc("Option right: C (call) or P (put); null when unknown."))
    multiplier: float | None = field(
        metadata=_doc("Contract multiplier (shares per contract); null when IB sent an empty/invalid one.")
    )
    currency: str = field(metadata=_doc("Contract currency."))
    exchange: str = field(metadata=_doc("Exchange of the contract as IB reports it."))
    trading_class: str = field(metadata=_doc("IB trading class."))
    local_symbol: str = field(metadata=_doc("IB local symbol (OCC symbol for US options)."))
    position: float | None = field(metadata=_doc("Signed position in contracts (short < 0); null when unknown."))
    average_cost: float | None = field(
        metadata=_doc("IB average cost per contract, multiplier and commissions included.")
    )
    # updatePortfolio (account window, pushed ~every 3 min or on a position change)
    market_price: float | None = field(metadata=_doc("Mark price per share from updatePortfolio."))
    market_value: float | None = field(
        metadata=_doc("Signed market value from updatePortfolio (position * price * multiplier).")
    )
    unrealized_pnl: float | None = field(
        metadata=_doc("Unrealized PnL since inception, average-cost basis, from updatePortfolio.")
    )
    realized_pnl: float | None = field(
        metadata=_doc("Realized PnL from updatePortfolio (account window; IB resets it daily).")
    )
    # reqPnLSingle (~1/s per position)
    ib_daily_pnl: float | None = field(metadata=_doc("IB's daily PnL for the position from reqPnLSingle."))
    ib_unrealized_pnl: float | None = field(metadata=_doc("Unrealized PnL from reqPnLSingle."))
    ib_realized_pnl: float | None = field(
        metadata=_doc("Realized PnL from reqPnLSingle (documented by IB as since inception).")
    )
    ib_value: float | None = field(metadata=_doc("Position value from reqPnLSingle."))
    source: PositionSource = field(
        metadata=_doc("Which IB stream triggered this update: portfolio, position or pnl_single.")
    )
    seq: int = field(metadata=_doc(_SEQ))
    received_at: datetime = field(metadata=_doc(_RECEIVED_AT))

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclass(slots=True, frozen=True)
class GreeksUpdate:
    """Model greeks for one option contract (IB tick 13 by default). Sentinels (-1/-2) are ``None``.

    Units as IB sends them: delta/gamma per share per 1.00 of the underlying, vega per vol point,
    theta per calendar day.
    """

    con_id: int = field(metadata=_doc("IB contract id of the option."))
    tick_type: int = field(metadata=_doc("IB tick type the greeks came from (13 = model option computation)."))
    delta: float | None = field(
        metadata=_doc("Delta per share per 1.00 move of the underlying; null when IB sent a sentinel.")
    )
    gamma: float | None = field(
        metadata=_doc("Gamma per share per 1.00 move of the underlying; null when IB sent a sentinel.")
    )
    vega: float | None = field(metadata=_doc("Vega per share per 1 vol point; null when IB sent a sentinel."))
    theta: float | None = field(metadata=_doc("Theta per share per calendar day; null when IB sent a sentinel."))
    implied_vol: float | None = field(
        metadata=_doc("Implied volatility (annualised, 0.25 = 25%); null when IB sent a sentinel.")
    )
    und_price: float | None = field(metadata=_doc("Underlying price IB used for the greeks; null when unknown."))
    opt_price: float | None = field(metadata=_doc("Option price IB used for the greeks; null when unknown."))
    seq: int = field(metadata=_doc(_SEQ))
    received_at: datetime = field(metadata=_doc(_RECEIVED_AT))

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclass(slots=True, frozen=True)
class ExecutionUpdate:
    """The known state of one execution (one exec id revision): IB's execDetails, joined with its commissionReport.

    Emitted when the execution arrives (commission null until its report came) and again when the commission joins.
    A correction re-uses the exec id with a higher last suffix (``...01.01`` -> ``...01.02``) and replaces the earlier
    revision (``v6_assets.analytics.book_executions``).
    """

    account: str = field(metadata=_doc("IB account code the execution belongs to."))
    con_id: int = field(metadata=_doc("IB contract id of the executed contract."))
    symbol: str = field(metadata=_doc("Underlying symbol of the contract."))
    sec_type: str = field(metadata=_doc("IB security type (OPT, FOP, STK, ...)."))
    expiry: date | None = field(metadata=_doc("Option expiry date; null when IB sent none."))
    strike: float | None = field(metadata=_doc("Option strike; null when unknown."))
    right: str | None = field(metadata=_doc("Option right C or P; null when unknown."))
    multiplier: float | None = field(metadata=_doc("Contract multiplier; null when IB sent an empty/invalid one."))
    currency: str = field(metadata=_doc("Contract currency (the execution price's currency)."))
    exec_id: str = field(
        metadata=_doc("IB execution id with its revision suffix; a correction re-uses it with a higher last suffix.")
    )
    exec_time: datetime = field(metadata=_doc("When IB executed the fill (UTC)."))
    side: str = field(metadata=_doc("BOT (bought) or SLD (sold)."))
    shares: float = field(metadata=_doc("Unsigned quantity filled, in contracts."))
    quantity: float = field(metadata=_doc("Signed quantity filled: +shares when BOT, -shares when SLD."))
    price: float = field(metadata=_doc("Fill price per share (per unit of the underlying, without the multiplier)."))
    perm_id: int = field(metadata=_doc("IB permanent order id of the order the fill belongs to."))
    order_id: int = field(metadata=_doc("API order id (0 for orders placed outside the API)."))
    exchange: str = field(metadata=_doc("Exchange the fill was executed on."))
    commission: float | None = field(
        metadata=_doc("Commission of the fill (commissionReport); null until the report arrived, never 0 for unknown.")
    )
    commission_currency: str | None = field(metadata=_doc("Currency of the commission; null until known."))
    realized_pnl: float | None = field(
        metadata=_doc("Realized PnL IB reported with the commission; null on an opening fill (IB's unset) or unknown.")
    )
    seq: int = field(metadata=_doc(_SEQ))
    received_at: datetime = field(metadata=_doc(_RECEIVED_AT))

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclass(slots=True, frozen=True)
class AccountValueUpdate:
    """One account value as IB reported it (updateAccountValue / accountUpdateMulti): emitted when it changed.

    ``value`` is the number when the text is one (null for text values and for bad ones); ``problem`` says what was
    wrong with a value that should have been usable (an ExchangeRate of 0 or a sentinel, an unknown currency): the
    raw text is kept, nothing is invented.
    """

    account: str = field(metadata=_doc("IB account code."))
    key: str = field(metadata=_doc("IB's key: NetLiquidation, TotalCashValue, CashBalance, ExchangeRate, ..."))
    currency: str = field(
        metadata=_doc("Currency of the value ('BASE' = the account's base currency; '' for values without one).")
    )
    value: float | None = field(metadata=_doc("The value as a number; null for text values and unusable numbers."))
    value_text: str = field(metadata=_doc("The value exactly as IB sent it."))
    problem: str | None = field(metadata=_doc("Why an expected number is unusable (counted error); null when fine."))
    seq: int = field(metadata=_doc(_SEQ))
    received_at: datetime = field(metadata=_doc(_RECEIVED_AT))

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


StreamEvent = PositionUpdate | GreeksUpdate | ExecutionUpdate | AccountValueUpdate
POSITION_UPDATE_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(PositionUpdate))
GREEKS_UPDATE_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(GreeksUpdate))
EXECUTION_UPDATE_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ExecutionUpdate))
ACCOUNT_VALUE_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(AccountValueUpdate))
