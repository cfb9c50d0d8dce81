"""The table contracts: every Delta table's name, columns, types, nullability, partitioning and column descriptions.

One definition per table, as data, so the lake (casting and validation, ``v6_assets.lake``), the analytics (their input
and output polars schemas, ``v6_assets.analytics``), the Dagster column metadata (``v6_assets.defs.metadata``) and the
tests all read the same thing. The streamed tables are derived from the event dataclasses of
``v6_assets.contracts.streams`` (type from the annotation, description from the field), so a new event field becomes a
column with one edit there. The daily tables are written out here, once.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

import polars as pl
import pyarrow as pa

from v6_assets.contracts.streams import (
    AccountValueUpdate,
    ExecutionUpdate,
    GreeksUpdate,
    HealthInterval,
    PositionUpdate,
    field_description,
)

TRADE_DATE = "trade_date"
UTC_TIMESTAMP = pa.timestamp("us", tz="UTC")


@dataclass(frozen=True)
class ColumnDef:
    name: str
    arrow_type: pa.DataType
    description: str
    nullable: bool = True
    # Key text columns (account, stream id) where "" is IB's "unknown" and must not be stored as a value.
    non_empty: bool = False


@dataclass(frozen=True)
class TableDef:
    """A Delta table's contract. ``derived`` columns are filled by the lake (``v6_assets.lake.cast_and_validate``)
    when the frame lacks them."""

    name: str
    description: str
    columns: tuple[ColumnDef, ...]
    partition_by: tuple[str, ...] = (TRADE_DATE,)
    # Columns the lake fills when absent: trade_date from received_at, ingested_at = now.
    derived: tuple[str, ...] = ()
    kind: Literal["stream", "daily"] = "daily"
    # Columns that together identify a row within a partition (documentation + tests; not enforced by Delta).
    key: tuple[str, ...] = field(default_factory=tuple)

    @property
    def schema(self) -> pa.Schema:
        return pa.schema([pa.field(c.name, c.arrow_type, nullable=c.nullable) for c in self.columns])

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def column_descriptions(self) -> dict[str, str]:
        return {c.name: c.description for c in self.columns}

    @property
    def polars_schema(self) -> pl.Schema:
        return pl.Schema(pl.DataFrame(self.schema.empty_table()).schema)

    def column(self, name: str) -> ColumnDef:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.name} has no column {name!r}")

    def with_columns(self, *extra: ColumnDef, name: str | None = None) -> TableDef:
        """A copy with extra columns (schema evolution; tests and future fields)."""
        return dataclasses.replace(self, name=name or self.name, columns=self.columns + tuple(extra))


# ---------------------------------------------------------------------------------------------------------------
# Column descriptions (they become Dagster column metadata).

# ---------------------------------------------------------------------------------------------------------------
# Streamed tables: the event's fields (``v6_assets.contracts.streams``), then the columns the lake adds.

_STREAM_EXTRA = (
    ColumnDef(
        TRADE_DATE,
        pa.date32(),
        "NYSE session the update belongs to: the first session whose EOD cut (close + 15 min) is at or after "
        "received_at. Partition column.",
        nullable=False,
    ),
    ColumnDef("stream_id", pa.string(), "Id of the stream (spool) that wrote the row.", nullable=False, non_empty=True),
    ColumnDef(
        "spool_offset",
        pa.int64(),
        "Offset of the event in its stream's durable spool; (stream_id, spool_offset) is unique.",
        nullable=False,
    ),
    ColumnDef("ingested_at", UTC_TIMESTAMP, "When the row was committed to the lake (UTC).", nullable=False),
)

_SCALAR_TYPES: dict[Any, pa.DataType] = {
    str: pa.string(),
    int: pa.int64(),
    float: pa.float64(),
    bool: pa.bool_(),
    date: pa.date32(),
    datetime: UTC_TIMESTAMP,
}


def _arrow_type_for(py_type: Any) -> tuple[pa.DataType, bool]:
    """Arrow type and nullability of a dataclass field annotation (``X | None`` -> nullable X)."""
    origin = typing.get_origin(py_type)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(py_type) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"unsupported union annotation {py_type!r}")
        arrow_type, _ = _arrow_type_for(args[0])
        return arrow_type, True
    if origin is Literal:
        values = typing.get_args(py_type)
        if not all(isinstance(v, str) for v in values):
            raise TypeError(f"unsupported Literal annotation {py_type!r}")
        return pa.string(), False
    if py_type in _SCALAR_TYPES:
        return _SCALAR_TYPES[py_type], False
    raise TypeError(f"no arrow type for annotation {py_type!r}")


def stream_columns(cls: type) -> tuple[ColumnDef, ...]:
    """The columns of a stream event dataclass: its fields in order, typed from the annotations, described by the
    fields' descriptions."""
    hints = typing.get_type_hints(cls)
    columns = []
    for f in dataclasses.fields(cls):
        arrow_type, nullable = _arrow_type_for(hints[f.name])
        columns.append(ColumnDef(f.name, arrow_type, field_description(f), nullable=nullable))
    return tuple(columns)


def _stream_table(name: str, cls: type, description: str) -> TableDef:
    columns = [dataclasses.replace(c, non_empty=True) if c.name == "account" else c for c in stream_columns(cls)]
    return TableDef(
        name=name,
        description=description,
        columns=(*columns, *_STREAM_EXTRA),
        derived=(TRADE_DATE, "ingested_at"),
        kind="stream",
        key=("stream_id", "spool_offset"),
    )


POSITION_UPDATES = _stream_table(
    "position_updates",
    PositionUpdate,
    "Every position/portfolio/PnL update streamed from IB, exactly once per (stream_id, spool_offset).",
)
GREEKS_UPDATES = _stream_table(
    "greeks_updates",
    GreeksUpdate,
    "Every option greeks update streamed from IB, exactly once per (stream_id, spool_offset).",
)
EXECUTIONS = _stream_table(
    "executions",
    ExecutionUpdate,
    "Every execution IB reported (live fills and the day's executions re-requested at each connect), exactly once "
    "per (stream_id, spool_offset): one row per exec id revision and known state (the execution, then again with "
    "its commission once known). analytics.book_executions keeps the latest state of the highest revision.",
)

ACCOUNT_VALUES = _stream_table(
    "account_values",
    AccountValueUpdate,
    "Every account value IB reported for the allowed accounts (reqAccountUpdatesMulti per account, and the "
    "rotating portfolio subscription), when it changed, exactly once per (stream_id, spool_offset).",
)
STREAM_HEALTH = _stream_table(
    "stream_health",
    HealthInterval,
    "The IB connection's state as intervals (connected, reset, farm down, competing session, restarting, "
    "disconnected), written when each begins and ends, exactly once per (stream_id, spool_offset).",
)


# ---------------------------------------------------------------------------------------------------------------
# Daily tables (one partition per NYSE session, replaced whole by each run).


def _c(name: str, arrow_type: pa.DataType, description: str, nullable: bool = True) -> ColumnDef:
    return ColumnDef(name, arrow_type, description, nullable=nullable)


# The exposure table's roll-up rows: the value of its ``rollup`` column.
ROLLUP_COLUMN = "rollup"
ROLLUP_DETAIL, ROLLUP_UNDERLYING, ROLLUP_ACCOUNT = "detail", "underlying", "account"

_F = pa.float64()
_S = pa.string()
_B = pa.bool_()
_D = pa.date32()
_I = pa.int64()

_TRADE_DATE_DAILY = _c(TRADE_DATE, _D, "NYSE session (trading day) the row describes. Partition column.", False)
_CONTRACT_COLUMNS = (
    _c("account", _S, "IB account code.", False),
    _c("con_id", _I, "IB contract id of the option.", False),
    _c("symbol", _S, "Underlying symbol."),
    _c("sec_type", _S, "IB security type (OPT, FOP, ...)."),
    _c("expiry", _D, "Option expiry date."),
    _c("strike", _F, "Strike price."),
    _c("right", _S, "C (call) or P (put)."),
    _c("multiplier", _F, "Contract multiplier (shares per contract)."),
    _c("currency", _S, "Contract currency."),
)

EOD_POSITIONS = TableDef(
    name="eod_positions",
    description=(
        "State of every option position at the EOD cut of each NYSE session (close + 15 min, 16:15 ET on a regular "
        "day): the last known update at or before the cut, with the last greeks."
    ),
    columns=(
        _TRADE_DATE_DAILY,
        *_CONTRACT_COLUMNS,
        _c("position", _F, "Signed position in contracts at the cut (short < 0)."),
        _c("average_cost", _F, "IB average cost per contract (multiplier and commissions included)."),
        _c("market_price", _F, "Last mark price per share at or before the cut."),
        _c("market_value", _F, "Signed market value at the cut as IB reported it."),
        _c("unrealized_pnl", _F, "Unrealized PnL since inception at the cut (updatePortfolio, average-cost basis)."),
        _c("realized_pnl", _F, "Realized PnL accumulated during the session (updatePortfolio, resets daily)."),
        _c("ib_daily_pnl", _F, "IB's daily PnL (reqPnLSingle) last seen at or before the cut."),
        _c("ib_unrealized_pnl", _F, "IB's unrealized PnL (reqPnLSingle) at the cut."),
        _c("ib_realized_pnl", _F, "IB's realized PnL (reqPnLSingle, since inception) at the cut."),
        _c("last_update_at", UTC_TIMESTAMP, "Time (UTC) of the last position update at or before the cut."),
        _c("mark_age_s", _F, "Seconds between the last mark and the cut."),
        _c("is_stale_mark", _B, "True when the position is open at the cut and its mark is older than the threshold."),
        _c("carried_forward", _B, "True when no update arrived during the session and the state was carried."),
        _c("is_closed", _B, "True when the position is flat (0) at the cut."),
        _c("delta", _F, "Delta per share at the cut (last greeks at or before it)."),
        _c("gamma", _F, "Gamma per share at the cut."),
        _c("vega", _F, "Vega per share per vol point at the cut."),
        _c("theta", _F, "Theta per share per calendar day at the cut."),
        _c("implied_vol", _F, "Implied volatility at the cut."),
        _c("und_price", _F, "Underlying price IB used for the greeks."),
        _c("greeks_at", UTC_TIMESTAMP, "Time (UTC) of the greeks used."),
        _c("greeks_age_s", _F, "Seconds between the greeks and the cut."),
        _c("missing_greeks", _B, "True when no greeks were known for the contract (never counted as 0)."),
        # columns for carry-forward and source freshness (added later: older stored EODs may lack them)
        _c("ib_value", _F, "Position value from reqPnLSingle at the cut."),
        _c("portfolio_at", UTC_TIMESTAMP, "Time (UTC) of the last updatePortfolio report at or before the cut."),
        _c("pnl_single_at", UTC_TIMESTAMP, "Time (UTC) of the last reqPnLSingle report at or before the cut."),
        _c("is_expired", _B, "True when the option was closed by its expiry in this session."),
        _c(
            "position_changed_at",
            UTC_TIMESTAMP,
            "Time (UTC) of the last change of the position quantity (trade or expiry) at or before the cut.",
        ),
        _c(
            "health_gap",
            _S,
            "Connection gaps (stream_health) between the row's oldest value (mark, PnL single, greeks) and the cut, "
            "in words ('competing live session 03-04 14:02-16:15 ET: no marks, PnL or greeks'); null when none: "
            "the values were flowing. Older stored rows may lack the column.",
        ),
    ),
    key=("account", "con_id"),
)

DAILY_PNL = TableDef(
    name="daily_pnl",
    description=(
        "Daily PnL per option position and NYSE session: pnl = (U_D - U_{D-1}) + R_D (average-cost identity, equals "
        "IB's statement mark-to-market). On the first session a pre-existing position was seen (is_baseline) IB's own "
        "daily PnL is carried (pnl_source ib_daily), null only when IB gave none."
    ),
    columns=(
        _TRADE_DATE_DAILY,
        *_CONTRACT_COLUMNS,
        _c("position", _F, "Signed position at this session's cut."),
        _c("prev_position", _F, "Signed position at the previous session's cut (0 when opened this session)."),
        _c("unrealized_pnl", _F, "U_D: unrealized PnL at this session's cut (0 when flat)."),
        _c("prev_unrealized_pnl", _F, "U_{D-1}: unrealized PnL at the previous cut; null when unknown (baseline)."),
        _c("unrealized_change", _F, "U_D - U_{D-1}."),
        _c("realized_pnl", _F, "R_D: PnL realized during the session (0 when nothing was realized)."),
        _c(
            "realized_source",
            _S,
            "Where R_D came from: portfolio (updatePortfolio), pnl_single (reqPnLSingle, difference of cumulative "
            "values), expiry, no_update or no_trade (no quantity change: nothing realized).",
        ),
        _c("pnl", _F, "Daily PnL = unrealized_change + realized_pnl; null on a baseline session."),
        _c("is_baseline", _B, "True when the position existed before the stream first saw it (pnl unknown)."),
        _c("ib_daily_pnl", _F, "IB's own daily PnL (reqPnLSingle) at the cut, for cross-checking."),
        _c("pnl_minus_ib", _F, "pnl - ib_daily_pnl (null when either is unknown)."),
        _c(
            "unrealized_source",
            _S,
            "Where U_D came from: portfolio (updatePortfolio), pnl_single (reqPnLSingle) or flat.",
        ),
        _c(
            "pnl_source",
            _S,
            "Where pnl came from: average_cost ((U_D - U_{D-1}) + R_D), ib_daily (a baseline session: IB's own daily "
            "PnL from reqPnLSingle carried, flagged by is_baseline), or null when no source exists.",
        ),
        _c(
            "health_gap",
            _S,
            "The connection gaps of the session's EOD row (eod_positions.health_gap): the PnL was computed from "
            "values held back by them; null when none.",
        ),
    ),
    key=("account", "con_id"),
)

EXPOSURE = TableDef(
    name="exposure",
    description=(
        "Greeks exposure per NYSE session, aggregated by account x underlying x expiry (rollup rows have a null "
        "expiry/underlying/account meaning 'all'). Missing greeks are flagged in greeks_coverage, never counted as 0."
    ),
    columns=(
        _TRADE_DATE_DAILY,
        _c("account", _S, "IB account code (null on a cross-account rollup row)."),
        _c("underlying", _S, "Underlying symbol (null on a rollup row)."),
        _c("expiry", _D, "Option expiry (null on a rollup row)."),
        _c("currency", _S, "Currency of the money figures."),
        _c("positions", _I, "Number of open positions aggregated."),
        _c("contracts", _F, "Sum of |position| in contracts."),
        _c("delta_shares", _F, "Sum of delta * position * multiplier (share-equivalent delta)."),
        _c("dollar_delta", _F, "Sum of delta_shares * underlying price."),
        _c("gamma_shares", _F, "Sum of gamma * position * multiplier (change of delta_shares per 1.00 move)."),
        _c("dollar_gamma_1pct", _F, "Sum of 0.5 * gamma * q * m * (0.01 * S)^2: PnL from a 1% underlying move."),
        _c("vega", _F, "Sum of vega * position * multiplier (per vol point)."),
        _c("theta", _F, "Sum of theta * position * multiplier (per calendar day)."),
        _c("notional", _F, "Sum of |position| * multiplier * underlying price."),
        _c("market_value", _F, "Sum of market value as IB reports it."),
        _c("greeks_coverage", _F, "Share of positions with greeks (1.0 = all)."),
        _c("missing_greeks_positions", _I, "Number of positions without greeks."),
        _c(
            ROLLUP_COLUMN,
            _S,
            "Aggregation level of the row: detail (account x underlying x expiry), underlying or account.",
        ),
    ),
    key=("account", "underlying", "expiry", "currency"),
)

BOOK_PNL = TableDef(
    name="book_pnl",
    description=(
        "Daily PnL per option position and NYSE session computed a second, independent way, from the book alone "
        "(IB's statement MTM): prior quantity x (mark_D - mark_{D-1}) x m + sum over the session's executions of "
        "quantity x (mark_D - price) x m - commissions; beside daily_pnl's average-cost figure and IB's own daily "
        "PnL, with the reason where they cannot agree."
    ),
    columns=(
        _TRADE_DATE_DAILY,
        *_CONTRACT_COLUMNS,
        _c("position", _F, "Signed position at this session's cut (0 when flat)."),
        _c("prev_position", _F, "Signed position at the previous session's cut."),
        _c("mark", _F, "mark_D: the EOD mark of this session (eod_positions.market_price)."),
        _c("prev_mark", _F, "mark_{D-1}: the EOD mark of the previous session; null when unknown."),
        _c("executions", _I, "Executions of the position booked in this session (latest revision each)."),
        _c("executed_quantity", _F, "Sum of the executions' signed quantities."),
        _c("unexplained_quantity", _F, "position - prev_position - executed_quantity: a change without execution."),
        _c("position_mtm", _F, "prev_position x (mark - prev_mark) x multiplier."),
        _c("transaction_mtm", _F, "Sum of quantity x (mark - price) x multiplier over the executions."),
        _c("commissions", _F, "Sum of the executions' commissions; null when one is not known."),
        _c("statement_pnl", _F, "position_mtm + transaction_mtm - commissions; null when an input is unknown."),
        _c("pnl", _F, "daily_pnl's figure (average-cost identity from IB's unrealized/realized PnL)."),
        _c("pnl_source", _S, "Where pnl came from (daily_pnl)."),
        _c("ib_daily_pnl", _F, "IB's own daily PnL (reqPnLSingle) at the cut."),
        _c("statement_minus_pnl", _F, "statement_pnl - pnl (null when either is unknown)."),
        _c(
            "reason",
            _S,
            "Why statement_pnl is null or may differ: baseline, missing commission, quantity change without an "
            "execution (expiry, exercise, assignment, or a fill outside the stream's window), stale mark, "
            "execution for a position the book does not hold; null when nothing is known to be wrong.",
        ),
    ),
    key=("account", "con_id"),
)

# -- explain and risk (issue 20): pnl_explain, risk_scenarios, expiry_ladder ------------------------------------

_EXPLAIN_KEY_COLUMNS = (
    _c("account", _S, "IB account code (null on an underlying roll-up row)."),
    _c("con_id", _I, "IB contract id of the option (null on a roll-up row)."),
    _c("symbol", _S, "Underlying symbol (null on an account roll-up row)."),
    *[c for c in _CONTRACT_COLUMNS if c.name not in ("account", "con_id", "symbol")],
)

PNL_EXPLAIN = TableDef(
    name="pnl_explain",
    description=(
        "Daily PnL per option position and NYSE session split into delta, gamma, vega, theta (greeks, underlying and "
        "implied vol of the D-1 cut, moves to the D cut, calendar days between the cuts), trading (position changes "
        "during D) and residual; rows that cannot be attributed are flagged (status) and keep their PnL unexplained. "
        "Roll-up rows by underlying and by account (rollup column)."
    ),
    columns=(
        _TRADE_DATE_DAILY,
        *_EXPLAIN_KEY_COLUMNS,
        _c("position", _F, "Signed position at this session's cut."),
        _c("prev_position", _F, "q: signed position at the previous cut (0 when opened this session)."),
        _c("pnl", _F, "Daily PnL from daily_pnl (null when unknown)."),
        _c("prev_und_price", _F, "S_{D-1}: underlying price at the previous cut."),
        _c("und_price", _F, "S_D: underlying price at this cut."),
        _c("und_move", _F, "S_D - S_{D-1} (explained rows)."),
        _c("prev_implied_vol", _F, "iv_{D-1}: implied vol (decimal) at the previous cut."),
        _c("implied_vol", _F, "iv_D: implied vol (decimal) at this cut."),
        _c("vol_move_pts", _F, "(iv_D - iv_{D-1}) * 100: the vol move in points (explained rows)."),
        _c("days_elapsed", _F, "Calendar days between the previous cut and this cut."),
        _c("prev_delta", _F, "Delta per share at the previous cut."),
        _c("prev_gamma", _F, "Gamma per share at the previous cut."),
        _c("prev_vega", _F, "Vega per share per vol point at the previous cut."),
        _c("prev_theta", _F, "Theta per share per calendar day at the previous cut."),
        _c("delta_pnl", _F, "delta_{D-1} * q * m * (S_D - S_{D-1})."),
        _c("gamma_pnl", _F, "0.5 * gamma_{D-1} * q * m * (S_D - S_{D-1})^2."),
        _c("vega_pnl", _F, "vega_{D-1} * q * m * (iv_D - iv_{D-1}) * 100."),
        _c("theta_pnl", _F, "theta_{D-1} * q * m * days_elapsed."),
        _c("trading_pnl", _F, "pnl - q * m * (P_D - P_{D-1}): PnL of the position changes during D, commissions in."),
        _c("residual", _F, "pnl - trading - (delta + gamma + vega + theta): higher-order terms, model mismatch."),
        _c("unexplained_pnl", _F, "PnL of a flagged row left unattributed (0 on explained and opened rows)."),
        _c(
            "status",
            _S,
            "explained, opened (all trading), missing_greeks (D-1), missing_market (D), missing_mark, expired, "
            "unknown_pnl; null on roll-up rows.",
        ),
        _c("flag", _S, "Why a row is not explained (null when it is)."),
        _c("positions", _I, "Positions in the row (1 on a detail row)."),
        _c("flagged_positions", _I, "Positions of the row whose PnL is not (fully) attributed."),
        _c(ROLLUP_COLUMN, _S, "Aggregation level of the row: detail, underlying or account."),
    ),
    key=("account", "con_id", "symbol", "currency", ROLLUP_COLUMN),
)

RISK_SCENARIOS = TableDef(
    name="risk_scenarios",
    description=(
        "Full-revaluation scenario grid per account x underlying (and per account: underlying null) from the EOD "
        "state of each NYSE session: every option repriced (Black-Scholes for OPT, Black-76 for FOP) at spot x "
        "(1 + spot_shift_pct / 100) and implied vol + vol_shift_pts / 100; pnl = scenario value - base value. "
        "Positions that cannot be priced are counted, never valued at 0."
    ),
    columns=(
        _TRADE_DATE_DAILY,
        _c("account", _S, "IB account code.", False),
        _c("underlying", _S, "Underlying symbol (null on the account row: all underlyings shifted together)."),
        _c("currency", _S, "Currency of the money figures."),
        _c("spot_shift_pct", _F, "Relative move of the underlying, in percent.", False),
        _c("vol_shift_pts", _F, "Move of the implied vol, in vol points.", False),
        _c("base_value", _F, "Model value of the priced positions at the EOD inputs (q * m * price)."),
        _c("scenario_value", _F, "Model value of the priced positions in the scenario."),
        _c("pnl", _F, "scenario_value - base_value (null when no position could be priced)."),
        _c("positions", _I, "Open option positions of the group."),
        _c("priced_positions", _I, "Positions repriced."),
        _c("unpriced_positions", _I, "Positions that could not be priced (reasons in unpriced_reasons)."),
        _c("vol_floored_positions", _I, "Positions whose shifted vol was <= 0: valued at the zero-vol limit."),
        _c("unpriced_reasons", _S, "'reason: count' of the unpriced positions, '; '-separated."),
        _c("complete", _B, "True when every position of the group was priced."),
    ),
    key=("account", "underlying", "currency", "spot_shift_pct", "vol_shift_pts"),
)

EXPIRY_LADDER = TableDef(
    name="expiry_ladder",
    description=(
        "Open option exposure per account x underlying x days-to-expiry bucket (0-1, 2-7, 8-30, 31-90, >90 calendar "
        "days from the session; expired / unknown flagged) and pin risk: short options within a configurable % of "
        "the strike within N sessions of expiry."
    ),
    columns=(
        _TRADE_DATE_DAILY,
        _c("account", _S, "IB account code.", False),
        _c("underlying", _S, "Underlying symbol."),
        _c("currency", _S, "Currency of the money figures."),
        _c("bucket", _S, "Days-to-expiry bucket: 0-1, 2-7, 8-30, 31-90, >90, expired or unknown (no expiry).", False),
        _c("bucket_order", _I, "Sort order of the bucket (0 = nearest).", False),
        _c("positions", _I, "Open positions in the bucket."),
        _c("contracts", _F, "Sum of |position|."),
        _c("delta_shares", _F, "Sum of delta * q * m over positions with greeks."),
        _c("dollar_delta", _F, "Sum of delta * q * m * S over positions with greeks."),
        _c("gamma_shares", _F, "Sum of gamma * q * m over positions with greeks."),
        _c("vega", _F, "Sum of vega * q * m (per vol point)."),
        _c("theta", _F, "Sum of theta * q * m (per calendar day)."),
        _c("notional", _F, "Sum of |q| * m * S."),
        _c("missing_greeks_positions", _I, "Positions without usable greeks (not counted as 0 in the sums)."),
        _c("pin_risk_positions", _I, "Short options within pin_pct of the strike within pin_sessions of expiry."),
        _c("pin_risk_contracts", _F, "Sum of |position| of the pin-risk positions."),
        _c("pin_risk_con_ids", _S, "Comma-separated con_ids of the pin-risk positions (empty when none)."),
    ),
    key=("account", "underlying", "currency", "bucket"),
)

# Account tables (``v6_assets.analytics.account``): IB's convention for currency, "BASE" = the account's base currency.
ACCOUNT_BASE_ROW = "BASE"

ACCOUNT_EOD = TableDef(
    name="account_eod",
    description=(
        "Each account at the EOD cut of each NYSE session, from account_values: the latest value at or before the cut "
        "per (key, currency). One row with currency 'BASE' per account (its figures in the base currency) and one "
        "row per other currency seen (its cash balance and ExchangeRate). A figure IB did not send, or sent unusable "
        "(an ExchangeRate of 0 or a sentinel, a currency that is not a code), is null with the reason in problem."
    ),
    columns=(
        _TRADE_DATE_DAILY,
        _c("account", _S, "IB account code.", False),
        _c("currency", _S, "'BASE' on the account row; else the currency of cash_balance and fx_rate.", False),
        _c("base_currency", _S, "The account's base currency (NetLiquidation's currency, else the Currency key)."),
        _c("net_liquidation", _F, "NetLiquidation in the base currency ('BASE' row only)."),
        _c("total_cash_value", _F, "TotalCashValue in the base currency ('BASE' row only)."),
        _c("init_margin_req", _F, "InitMarginReq in the base currency ('BASE' row only)."),
        _c("maint_margin_req", _F, "MaintMarginReq in the base currency ('BASE' row only)."),
        _c("available_funds", _F, "AvailableFunds in the base currency ('BASE' row only)."),
        _c("excess_liquidity", _F, "ExcessLiquidity in the base currency ('BASE' row only)."),
        _c("cash_balance", _F, "CashBalance in the row's currency (the 'BASE' row: IB's CashBalance BASE)."),
        _c("fx_rate", _F, "ExchangeRate: units of base currency per unit of the row's currency (1 for the base)."),
        _c("cash_balance_base", _F, "cash_balance * fx_rate; null when either is unknown or unusable."),
        _c("values_at", UTC_TIMESTAMP, "Time (UTC) of the latest value used for the row."),
        _c("problem", _S, "Why a figure of the row is null ('; '-separated); null when every figure is known."),
    ),
    key=("account", "currency"),
)

ACCOUNT_PNL = TableDef(
    name="account_pnl",
    description=(
        "Daily PnL per account and NYSE session: the positions' daily PnL (daily_pnl.pnl) summed per position "
        "currency and converted to the base currency at the ExchangeRate of the session's cut (account_eod), next to "
        "the change in net liquidation between the previous cut and this one (net of deposits/withdrawals where the "
        "Flex statement gives them). Rows with level 'currency' per position currency, one 'account' row per account "
        "in the base currency."
    ),
    columns=(
        _TRADE_DATE_DAILY,
        _c("account", _S, "IB account code.", False),
        _c("level", _S, "'currency': one position currency of the account; 'account': the base-currency total.", False),
        _c("currency", _S, "The position currency ('currency' rows) or the base currency ('account' row)."),
        _c("base_currency", _S, "The account's base currency at the cut (account_eod); null when unknown."),
        _c("positions", _I, "daily_pnl positions of the row."),
        _c("unknown_pnl_positions", _I, "Positions whose daily PnL is unknown (the row's pnl is then null)."),
        _c("pnl", _F, "Sum of the positions' daily PnL in the row's currency; null when one is unknown or none held."),
        _c("fx_rate", _F, "ExchangeRate of the currency at the cut (base per unit; 1 for the base); null: unusable."),
        _c("pnl_base", _F, "pnl * fx_rate in the base currency ('account' row: sum of its currencies, strict)."),
        _c("net_liquidation", _F, "NetLiquidation at this cut, base currency ('account' row)."),
        _c("prev_net_liquidation", _F, "NetLiquidation at the previous session's cut ('account' row)."),
        _c("net_liquidation_change", _F, "net_liquidation - prev_net_liquidation ('account' row)."),
        _c(
            "deposits_withdrawals",
            _F,
            "Deposits minus withdrawals of the session in the base currency (Flex statement_cash); null: unknown.",
        ),
        _c(
            "net_liquidation_pnl",
            _F,
            "net_liquidation_change - deposits_withdrawals when known, else net_liquidation_change ('account' row).",
        ),
        _c(
            "pnl_minus_net_liquidation", _F, "pnl_base - net_liquidation_pnl ('account' row; null when one is unknown)."
        ),
        _c("reason", _S, "Why a figure is null or what the comparison cannot see ('; '-separated)."),
    ),
    key=("account", "level", "currency"),
)

# The contract columns every daily position table starts with (after trade_date).
CONTRACT_COLUMNS: tuple[str, ...] = tuple(c.name for c in _CONTRACT_COLUMNS)

TABLES: dict[str, TableDef] = {
    t.name: t
    for t in (
        POSITION_UPDATES,
        GREEKS_UPDATES,
        STREAM_HEALTH,
        EXECUTIONS,
        ACCOUNT_VALUES,
        EOD_POSITIONS,
        DAILY_PNL,
        EXPOSURE,
        BOOK_PNL,
        PNL_EXPLAIN,
        RISK_SCENARIOS,
        EXPIRY_LADDER,
        ACCOUNT_EOD,
        ACCOUNT_PNL,
    )
}


def polars_dtypes(table: TableDef, *, without: tuple[str, ...] = ()) -> dict[str, pl.DataType]:
    """``{column: polars dtype}`` of ``table`` in column order, leaving out ``without``."""
    return {name: dtype for name, dtype in table.polars_schema.items() if name not in without}


# The Flex statement tables and the reconciliation (``statement_tables`` builds on the classes above).
from v6_assets.contracts.statement_tables import ALL_STATEMENT_TABLES  # noqa: E402

TABLES.update(ALL_STATEMENT_TABLES)
from v6_assets.contracts.lifecycle_tables import POSITION_EVENTS  # noqa: E402

TABLES[POSITION_EVENTS.name] = POSITION_EVENTS
