"""The tables of IB's Flex statements and of their reconciliation with the stream-built book.

Each statement table is partitioned by the statement's session (``trade_date`` = the Flex statement's date, one
NYSE session per daily statement) and carries the statement it came from (``statement_id``: SHA-256 of the file's
bytes) so a re-dropped file is recognised and a corrected one replaces exactly its session x account rows.
``statement_files`` is the ledger: one row per session x account ingested, written last (a crash before it leaves
the statement to be ingested again, never half of it counted as done).
"""

from __future__ import annotations

import pyarrow as pa

from v6_assets.contracts.tables import TRADE_DATE, UTC_TIMESTAMP, ColumnDef, TableDef

_F = pa.float64()
_S = pa.string()
_B = pa.bool_()
_D = pa.date32()
_I = pa.int64()


def _c(name: str, arrow_type: pa.DataType, description: str, nullable: bool = True) -> ColumnDef:
    return ColumnDef(name, arrow_type, description, nullable=nullable)


_SESSION = _c(TRADE_DATE, _D, "NYSE session the statement covers (its fromDate = toDate). Partition column.", False)
_ACCOUNT = ColumnDef("account", _S, "IB account code (Flex accountId).", nullable=False, non_empty=True)
_INSTRUMENT = (
    _c("con_id", _I, "IB contract id (Flex conid).", False),
    _c("symbol", _S, "Flex symbol."),
    _c("asset_category", _S, "Flex assetCategory: OPT, FOP, STK, ..."),
    _c("put_call", _S, "Flex putCall: C or P (options)."),
    _c("strike", _F, "Flex strike."),
    _c("expiry", _D, "Flex expiry."),
    _c("multiplier", _F, "Flex multiplier."),
    _c("currency", _S, "Flex currency of the contract."),
    _c("fx_rate_to_base", _F, "Flex fxRateToBase: units of the account's base currency per unit of currency."),
)
_SOURCE = (
    _c("statement_id", _S, "SHA-256 of the statement file the row came from.", False),
    _c("generated_at", UTC_TIMESTAMP, "Flex whenGenerated of the statement (UTC).", False),
)

STATEMENT_POSITIONS = TableDef(
    name="statement_positions",
    description="IB's open positions at the statement's close (Flex OpenPositions, summary level).",
    columns=(
        _SESSION,
        _ACCOUNT,
        *_INSTRUMENT,
        _c("position", _F, "Signed quantity at IB's close (short < 0)."),
        _c("mark_price", _F, "IB's closing mark per share (Flex markPrice)."),
        _c("position_value", _F, "Flex positionValue: position x markPrice x multiplier."),
        _c("cost_basis_price", _F, "Flex costBasisPrice (per share)."),
        _c("cost_basis_money", _F, "Flex costBasisMoney (signed)."),
        _c("fifo_pnl_unrealized", _F, "Flex fifoPnlUnrealized (FIFO basis, not IB's average cost)."),
        *_SOURCE,
    ),
    key=("account", "con_id"),
)

STATEMENT_TRADES = TableDef(
    name="statement_trades",
    description="IB's trades of the session (Flex Trades, execution level), expiries/exercises/assignments included.",
    columns=(
        _SESSION,
        _ACCOUNT,
        *_INSTRUMENT,
        _c("exec_id", _S, "Flex ibExecID (IB's execution id; a correction raises its last suffix)."),
        _c("trade_id", _S, "Flex tradeID."),
        _c("traded_at", UTC_TIMESTAMP, "Flex dateTime of the trade (UTC)."),
        _c("quantity", _F, "Signed quantity (buy > 0).", False),
        _c("trade_price", _F, "Price per share.", False),
        _c("proceeds", _F, "Flex proceeds: -quantity x price x multiplier."),
        _c("commission", _F, "Flex ibCommission (negative = paid)."),
        _c("commission_currency", _S, "Flex ibCommissionCurrency."),
        _c("fifo_pnl_realized", _F, "Flex fifoPnlRealized."),
        _c("mtm_pnl", _F, "Flex mtmPnl: quantity x (close - trade price) x multiplier."),
        _c("open_close", _S, "Flex openCloseIndicator: O, C or C;O."),
        _c("notes", _S, "Flex notes/codes, ';'-separated (A assignment, Ex exercise, Ep expired, ...)."),
        _c("lifecycle", _S, "expired, exercised or assigned when the notes say so; null for an ordinary trade."),
        *_SOURCE,
    ),
    key=("account", "exec_id"),
)

STATEMENT_MTM = TableDef(
    name="statement_mtm",
    description=(
        "IB's mark-to-market per position for the session (Flex MTMPerformanceSummaryInBase, in the account's base "
        "currency): total = priorOpenMtm + transactionMtm + commissions + other."
    ),
    columns=(
        _SESSION,
        _ACCOUNT,
        *_INSTRUMENT,
        _c("prev_close_quantity", _F, "Quantity at the previous close."),
        _c("prev_close_price", _F, "Previous closing price per share."),
        _c("close_quantity", _F, "Quantity at this close."),
        _c("close_price", _F, "Closing price per share."),
        _c("prior_open_mtm", _F, "Position MTM: prev quantity x price change x multiplier (base currency)."),
        _c("transaction_mtm", _F, "Transaction MTM: quantity x (close - trade price) x multiplier (base)."),
        _c("commissions", _F, "Commissions (negative = paid, base currency)."),
        _c("other", _F, "Other MTM (base currency)."),
        _c("total", _F, "Total MTM of the position for the session (base currency)."),
        _c("base_currency", _S, "The account's base currency (Flex AccountInformation currency)."),
        *_SOURCE,
    ),
    key=("account", "con_id"),
)

STATEMENT_CASH = TableDef(
    name="statement_cash",
    description="IB's cash transactions of the session (Flex CashTransactions): fees, interest, dividends.",
    columns=(
        _SESSION,
        _ACCOUNT,
        _c("transaction_id", _S, "Flex transactionID."),
        _c("type", _S, "Flex type (e.g. Other Fees, Broker Interest Received)."),
        _c("currency", _S, "Currency of the amount."),
        _c("fx_rate_to_base", _F, "Flex fxRateToBase."),
        _c("amount", _F, "Signed amount.", False),
        _c("description", _S, "Flex description."),
        _c("con_id", _I, "Contract the cash relates to, when any."),
        *_SOURCE,
    ),
    key=("account", "transaction_id"),
)

STATEMENT_FILES = TableDef(
    name="statement_files",
    description=(
        "Ledger of ingested Flex statements, one row per session x account; written after the statement's rows, "
        "so a statement listed here is wholly in the statement tables."
    ),
    columns=(
        _SESSION,
        _ACCOUNT,
        *_SOURCE,
        _c("file_name", _S, "Name of the file (no directory)."),
        _c("replaced_statement_id", _S, "The statement this one replaced (a corrected statement); null if first."),
        _c("rows_positions", _I, "Rows written to statement_positions."),
        _c("rows_trades", _I, "Rows written to statement_trades."),
        _c("rows_mtm", _I, "Rows written to statement_mtm."),
        _c("rows_cash", _I, "Rows written to statement_cash."),
        _c("base_currency", _S, "The account's base currency."),
        _c("ingested_at", UTC_TIMESTAMP, "When the statement was ingested (UTC).", False),
    ),
    key=("account",),
)

RECONCILIATION = TableDef(
    name="reconciliation",
    description=(
        "Differences between the stream-built book and IB's statement per session: one row per difference "
        "(positions, marks, pnl, trades, lifecycle), with its cause; blocking rows fail the session's checks."
    ),
    columns=(
        _SESSION,
        _ACCOUNT,
        _c("check_name", _S, "Which comparison: positions, marks, pnl, pnl_account, trades or lifecycle.", False),
        _c("con_id", _I, "Contract (null on an account-level row)."),
        _c("exec_id", _S, "Execution id (trades rows)."),
        _c("field", _S, "What differs: quantity, mark, pnl, price, commission, missing_ours, missing_statement, ..."),
        _c("ours", _F, "Our value (base currency for money on pnl rows)."),
        _c("theirs", _F, "The statement's value."),
        _c("difference", _F, "ours - theirs."),
        _c("cause", _S, "Why the values differ (or what is missing).", False),
        _c("blocking", _B, "True when the difference fails the check; false when explained (e.g. by a mark).", False),
    ),
    key=("account", "check_name", "con_id", "exec_id", "field"),
)

STATEMENT_TABLES: dict[str, TableDef] = {
    t.name: t for t in (STATEMENT_POSITIONS, STATEMENT_TRADES, STATEMENT_MTM, STATEMENT_CASH, STATEMENT_FILES)
}
ALL_STATEMENT_TABLES: dict[str, TableDef] = {**STATEMENT_TABLES, RECONCILIATION.name: RECONCILIATION}
