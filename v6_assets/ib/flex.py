"""IB Flex statements (FlexQueryResponse XML) -> the statement tables' frames, parsed with ``ibflex``.

``parse_flex(data, file_name=...)`` validates before anything is returned: well-formed XML whose root is
``FlexQueryResponse`` (a truncated file or another XML document raises ``StatementError``), every statement a
single-day statement (fromDate = toDate, an NYSE session), accounts inside the allowlist, not dated after today.
One file may hold several accounts' statements (one ``FlexStatement`` each). Flex dates and times are New York
local time (IB's reporting zone); they are stored in UTC. Amounts stay as IB wrote them (decimal -> float64).
"""

from __future__ import annotations

import hashlib
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

import polars as pl
from ibflex import Types, parser

from v6_assets.contracts.statement_tables import (
    STATEMENT_CASH,
    STATEMENT_MTM,
    STATEMENT_POSITIONS,
    STATEMENT_TRADES,
)
from v6_assets.contracts.tables import TRADE_DATE, TableDef
from v6_assets.sessions import NEW_YORK, is_session

# Flex notes/codes that mark an option's lifecycle event (ibflex.enums.Code: Ep, Ex, A).
LIFECYCLE_CODES = {"Ep": "expired", "Ex": "exercised", "A": "assigned"}


class StatementError(ValueError):
    """A statement file that cannot be ingested; the message says why. Nothing of it is written."""


@dataclass(frozen=True)
class AccountStatement:
    """One account's statement for one session, as the statement tables' frames."""

    account: str
    session: date
    generated_at: datetime
    base_currency: str | None
    statement_id: str
    frames: dict[str, pl.DataFrame]  # table name -> rows


def statement_id(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _f(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def _s(value: Any) -> str | None:
    if value is None:
        return None
    return value.value if isinstance(value, Enum) else str(value)


def _conid(value: str | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    local = value if value.tzinfo is not None else value.replace(tzinfo=NEW_YORK)
    return local.astimezone(UTC)


def _instrument(e: Any, fx: float | None) -> dict[str, Any]:
    return {
        "con_id": _conid(e.conid),
        "symbol": e.symbol,
        "asset_category": _s(e.assetCategory),
        "put_call": _s(e.putCall),
        "strike": _f(e.strike),
        "expiry": e.expiry,
        "multiplier": _f(e.multiplier),
        "currency": getattr(e, "currency", None),
        "fx_rate_to_base": fx,
    }


def _frame(table: TableDef, rows: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=table.polars_schema, strict=False) if rows else table.polars_schema.to_frame()


def parse_flex_response(data: bytes) -> Types.FlexQueryResponse:
    """Parse the bytes with ibflex; ``StatementError`` for anything that is not a whole FlexQueryResponse."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise StatementError(f"not well-formed XML (truncated or still being written?): {exc}") from None
    if root.tag != "FlexQueryResponse":
        raise StatementError(f"not a Flex statement: the root element is <{root.tag}>, not <FlexQueryResponse>")
    # IB adds fields over time: ibflex skips (and warns about) attributes it does not know; they do not block.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            response = parser.parse(data)
        except (parser.FlexParserError, AssertionError, ValueError, TypeError) as exc:
            raise StatementError(f"malformed Flex statement: {exc}") from None
    return response


def _account_statement(
    stmt: Types.FlexStatement, sid: str, allowed_accounts: Sequence[str], today: date
) -> AccountStatement:
    account = stmt.accountId
    if not account:
        raise StatementError("a FlexStatement without accountId")
    if allowed_accounts and account not in allowed_accounts:
        raise StatementError(f"statement for account {account} outside the allowlist {list(allowed_accounts)}")
    if stmt.fromDate != stmt.toDate:
        raise StatementError(
            f"{account}: statement covers {stmt.fromDate}..{stmt.toDate}; a daily statement (one session) is expected"
        )
    session = stmt.toDate
    if session > today:
        raise StatementError(f"{account}: statement dated {session}, after today ({today})")
    if not is_session(session):
        raise StatementError(f"{account}: statement dated {session}, which is not an NYSE session")
    generated = _utc(stmt.whenGenerated)
    if generated is None:
        raise StatementError(f"{account}: statement without whenGenerated")
    base = stmt.AccountInformation.currency if stmt.AccountInformation is not None else None
    rates = {r.fromCurrency: float(r.rate) for r in stmt.ConversionRates if r.rate is not None and r.toCurrency == base}

    def fx(e: Any) -> float | None:
        given = _f(getattr(e, "fxRateToBase", None))
        if given is not None:
            return given
        currency = getattr(e, "currency", None)
        return 1.0 if currency is not None and currency == base else rates.get(currency)

    common = {TRADE_DATE: session, "account": account, "statement_id": sid, "generated_at": generated}
    positions = [
        {**common, **_instrument(p, fx(p)), "position": _f(p.position), "mark_price": _f(p.markPrice),
         "position_value": _f(p.positionValue), "cost_basis_price": _f(p.costBasisPrice),
         "cost_basis_money": _f(p.costBasisMoney), "fifo_pnl_unrealized": _f(p.fifoPnlUnrealized)}
        for p in stmt.OpenPositions
        if p.accountId in (None, account)
    ]  # fmt: skip
    trades = []
    for t in stmt.Trades:
        if t.quantity is None or t.tradePrice is None:
            raise StatementError(f"{account}: trade {t.tradeID or t.ibExecID} without quantity or price")
        notes = [_s(n) or "" for n in t.notes]
        lifecycle = next((LIFECYCLE_CODES[n] for n in notes if n in LIFECYCLE_CODES), None)
        traded_at = _utc(t.dateTime) or _utc(datetime.combine(t.tradeDate or session, datetime.min.time()))
        trades.append(
            {**common, **_instrument(t, fx(t)), "exec_id": t.ibExecID, "trade_id": t.tradeID, "traded_at": traded_at,
             "quantity": _f(t.quantity), "trade_price": _f(t.tradePrice), "proceeds": _f(t.proceeds),
             "commission": _f(t.ibCommission), "commission_currency": t.ibCommissionCurrency,
             "fifo_pnl_realized": _f(t.fifoPnlRealized), "mtm_pnl": _f(t.mtmPnl),
             "open_close": _s(t.openCloseIndicator), "notes": ";".join(notes) or None, "lifecycle": lifecycle}
        )  # fmt: skip
    # MTM rows carry no currency: take the contract's from its position or trade in the same statement.
    currency_of = {r["con_id"]: (r["currency"], r["fx_rate_to_base"]) for r in [*positions, *trades]}
    mtm = []
    for m in stmt.MTMPerformanceSummaryInBase:
        con_id = _conid(m.conid)
        if con_id is None:  # summary rows (totals per asset category) have no conid
            continue
        currency, rate = currency_of.get(con_id, (None, None))
        row = {**common, **_instrument(m, rate), "currency": currency,
               "prev_close_quantity": _f(m.prevCloseQuantity), "prev_close_price": _f(m.prevClosePrice),
               "close_quantity": _f(m.closeQuantity), "close_price": _f(m.closePrice),
               "prior_open_mtm": _f(m.priorOpenMtm), "transaction_mtm": _f(m.transactionMtm),
               "commissions": _f(m.commissions), "other": _f(m.other), "total": _f(m.total),
               "base_currency": base}  # fmt: skip
        mtm.append(row)
    cash = [
        {**common, "transaction_id": c.transactionID, "type": _s(c.type), "currency": c.currency,
         "fx_rate_to_base": fx(c), "amount": _f(c.amount), "description": c.description, "con_id": _conid(c.conid)}
        for c in stmt.CashTransactions
        if c.amount is not None
    ]  # fmt: skip
    frames = {
        STATEMENT_POSITIONS.name: _frame(STATEMENT_POSITIONS, positions),
        STATEMENT_TRADES.name: _frame(STATEMENT_TRADES, trades),
        STATEMENT_MTM.name: _frame(STATEMENT_MTM, mtm),
        STATEMENT_CASH.name: _frame(STATEMENT_CASH, cash),
    }
    return AccountStatement(account, session, generated, base, sid, frames)


def parse_flex(data: bytes, *, allowed_accounts: Iterable[str] = (), today: date) -> list[AccountStatement]:
    """Every account statement in ``data``; ``StatementError`` (and nothing returned) if any of them is unusable.

    ``today`` is the New York date the caller considers current (from the pinned clock): later statements are refused.
    """
    if not data.strip():
        raise StatementError("empty file")
    response = parse_flex_response(data)
    if not response.FlexStatements:
        raise StatementError("a FlexQueryResponse without any FlexStatement")
    sid = statement_id(data)
    allowed = tuple(allowed_accounts)
    statements = [_account_statement(s, sid, allowed, today) for s in response.FlexStatements]
    keys = [(s.account, s.session) for s in statements]
    if len(set(keys)) != len(keys):
        raise StatementError("the file holds two statements for the same account and session")
    return statements
