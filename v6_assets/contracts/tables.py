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

from v6_assets.contracts.streams import GreeksUpdate, PositionUpdate, field_description

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
        _c("is_stale_mark", _B, "True when the mark is older than the staleness threshold."),
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
    ),
    key=("account", "con_id"),
)

DAILY_PNL = TableDef(
    name="daily_pnl",
    description=(
        "Daily PnL per option position and NYSE session: pnl = (U_D - U_{D-1}) + R_D (average-cost identity, equals "
        "IB's statement mark-to-market). Null and is_baseline on the first session a pre-existing position was seen."
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

# The contract columns every daily position table starts with (after trade_date).
CONTRACT_COLUMNS: tuple[str, ...] = tuple(c.name for c in _CONTRACT_COLUMNS)

TABLES: dict[str, TableDef] = {
    t.name: t for t in (POSITION_UPDATES, GREEKS_UPDATES, EOD_POSITIONS, DAILY_PNL, EXPOSURE)
}


def polars_dtypes(table: TableDef, *, without: tuple[str, ...] = ()) -> dict[str, pl.DataType]:
    """``{column: polars dtype}`` of ``table`` in column order, leaving out ``without``."""
    return {name: dtype for name, dtype in table.polars_schema.items() if name not in without}


# The Flex statement tables and the reconciliation (``statement_tables`` builds on the classes above).
from v6_assets.contracts.statement_tables import ALL_STATEMENT_TABLES  # noqa: E402

TABLES.update(ALL_STATEMENT_TABLES)
