"""The asset graph: the two streamed tables (external, fed by the sensor) and the daily partitioned assets.

    position_updates ─┐
                      ├─> eod_positions ─┬─> daily_pnl   (D and D-1)
    greeks_updates ───┘                  └─> exposure

Daily assets read Delta through the lake layer and write with ONE partition overwrite per run (the whole partition
range of a single-run backfill, ``BackfillPolicy.single_run()``). No IO manager: the tables are the data, Dagster
records lineage and metadata (see /work/shared/notes/dagster.md on why not the deltalake IO manager).
Definitions (EOD cut, pnl, exposure) are those of ``v6_assets.analytics`` and the README.
"""

import dataclasses
import os
from collections.abc import Iterator, Mapping, Sequence
from datetime import date
from typing import Any

import polars as pl
from dagster import (
    AssetDep,
    AssetExecutionContext,
    AssetSpec,
    BackfillPolicy,
    MaterializeResult,
    MetadataValue,
    TimeWindowPartitionMapping,
    asset,
)

from v6_assets import analytics, sessions
from v6_assets.analytics import GREEK_COLUMNS, STATE_COLUMNS
from v6_assets.defs.metadata import bar_chart_markdown, column_lineage, largest_rows_preview, table_schema
from v6_assets.defs.partitions import trading_day_partitions
from v6_assets.defs.resources import LakeResource, is_simulated
from v6_assets.lake import (
    DAILY_PNL,
    EOD_POSITIONS,
    EXPOSURE,
    GREEKS_UPDATES,
    POSITION_UPDATES,
    TRADE_DATE,
    Lake,
    OverwriteResult,
    TableDef,
)

GROUP_STREAM = "ib_stream"
GROUP_DAILY = "daily"
SIMULATED = is_simulated()
_SIM_NOTE = " SIMULATED data from the IB gateway simulator (V6_DEMO=1)." if SIMULATED else ""

ROLLUP_DETAIL, ROLLUP_UNDERLYING, ROLLUP_ACCOUNT = "detail", "underlying", "account"
DEFAULT_SESSIONS_PER_CHUNK = 5


def output_table(base: TableDef, schema: Mapping[str, pl.DataType]) -> TableDef:
    """The lake's table (the ONE definition, v6_assets/lake/tables.py), checked to hold every analytics column."""
    missing = [name for name in schema if name not in base.column_names]
    if missing:
        raise KeyError(f"{base.name}: analytics column(s) {missing} missing from the lake registry (v6_assets/lake)")
    return base


EOD_TABLE = output_table(EOD_POSITIONS, analytics.EOD_POSITIONS_SCHEMA)
DAILY_PNL_TABLE = output_table(DAILY_PNL, analytics.DAILY_PNL_SCHEMA)
EXPOSURE_TABLE = output_table(EXPOSURE, {**analytics.EXPOSURE_SCHEMA, "rollup": pl.String()})
OUTPUT_TABLES: dict[str, TableDef] = {t.name: t for t in (EOD_TABLE, DAILY_PNL_TABLE, EXPOSURE_TABLE)}


def daily_lake(resource: LakeResource) -> Lake:
    """The lake with the daily tables' contracts extended by the analytics' extra columns."""
    lake = resource.lake()
    return dataclasses.replace(lake, tables={**lake.tables, **OUTPUT_TABLES})


def run_sessions(context: Any) -> list[date]:
    """The sessions of this run: one partition, or the whole range of a single-run backfill, oldest first."""
    keys = list(context.partition_keys)
    days = sorted(date.fromisoformat(k) for k in keys)
    not_sessions = [d for d in days if not sessions.is_session(d)]
    if not days or not_sessions:
        raise ValueError(f"run partitions {keys} must be NYSE sessions (not: {not_sessions})")
    return days


# -- streamed tables (external: the sensor appends them) ----------------------------------------------------------

position_updates = AssetSpec(
    key="position_updates",
    description=POSITION_UPDATES.description
    + " Appended in micro-batches by the ib_position_stream sensor (txn version = spool offset)."
    + _SIM_NOTE,
    partitions_def=trading_day_partitions,
    group_name=GROUP_STREAM,
    kinds={"deltalake"},
    metadata={"dagster/column_schema": table_schema(POSITION_UPDATES), "dagster/table_name": "position_updates"},
)
greeks_updates = AssetSpec(
    key="greeks_updates",
    description=GREEKS_UPDATES.description
    + " Appended in micro-batches by the ib_position_stream sensor (txn version = spool offset)."
    + _SIM_NOTE,
    partitions_def=trading_day_partitions,
    group_name=GROUP_STREAM,
    kinds={"deltalake"},
    metadata={"dagster/column_schema": table_schema(GREEKS_UPDATES), "dagster/table_name": "greeks_updates"},
)

# -- column lineage ---------------------------------------------------------------------------------------------

_CONTRACT = ("account", "con_id", "symbol", "sec_type", "expiry", "strike", "right", "multiplier", "currency")
_PU, _GU, _EOD = "position_updates", "greeks_updates", "eod_positions"
_GREEKS = GREEK_COLUMNS

EOD_LINEAGE: dict[str, list[tuple[str, str]]] = {
    **{c: [(_PU, c)] for c in _CONTRACT},
    **{c: [(_PU, c), (_PU, "received_at")] for c in STATE_COLUMNS if c not in _CONTRACT},
    "trade_date": [(_PU, "received_at"), (_PU, "trade_date")],
    "last_update_at": [(_PU, "received_at")],
    "portfolio_at": [(_PU, "received_at"), (_PU, "source")],
    "pnl_single_at": [(_PU, "received_at"), (_PU, "source")],
    "mark_age_s": [(_PU, "received_at"), (_PU, "source")],
    "is_stale_mark": [(_PU, "received_at"), (_PU, "source")],
    "carried_forward": [(_PU, "received_at")],
    "is_closed": [(_PU, "position")],
    "is_expired": [(_PU, "expiry"), (_PU, "position")],
    "position_changed_at": [(_PU, "received_at"), (_PU, "position")],
    **{c: [(_GU, c), (_GU, "received_at")] for c in _GREEKS},
    "greeks_at": [(_GU, "received_at")],
    "greeks_age_s": [(_GU, "received_at")],
    "missing_greeks": [*[(_GU, c) for c in ("delta", "gamma", "vega", "theta", "und_price")], (_PU, "position")],
}
DAILY_PNL_LINEAGE: dict[str, list[tuple[str, str]]] = {
    **{c: [(_EOD, c)] for c in (*_CONTRACT, "trade_date", "position", "ib_daily_pnl")},
    "prev_position": [(_EOD, "position")],
    "unrealized_pnl": [(_EOD, "unrealized_pnl"), (_EOD, "ib_unrealized_pnl"), (_EOD, "position")],
    "prev_unrealized_pnl": [(_EOD, "unrealized_pnl"), (_EOD, "ib_unrealized_pnl"), (_EOD, "position")],
    "unrealized_change": [(_EOD, "unrealized_pnl"), (_EOD, "ib_unrealized_pnl")],
    "unrealized_source": [(_EOD, "portfolio_at"), (_EOD, "pnl_single_at")],
    "realized_pnl": [
        (_EOD, "realized_pnl"),
        (_EOD, "ib_realized_pnl"),
        (_EOD, "is_expired"),
        (_EOD, "position_changed_at"),
    ],
    "realized_source": [
        (_EOD, "portfolio_at"),
        (_EOD, "pnl_single_at"),
        (_EOD, "is_expired"),
        (_EOD, "position_changed_at"),
    ],
    "pnl": [(_EOD, "unrealized_pnl"), (_EOD, "ib_unrealized_pnl"), (_EOD, "realized_pnl"), (_EOD, "ib_realized_pnl")],
    "is_baseline": [(_EOD, "position")],
    "pnl_minus_ib": [(_EOD, "ib_daily_pnl"), (_EOD, "unrealized_pnl"), (_EOD, "realized_pnl")],
}
_Q = [(_EOD, "position"), (_EOD, "multiplier")]
EXPOSURE_LINEAGE: dict[str, list[tuple[str, str]]] = {
    "trade_date": [(_EOD, "trade_date")],
    "account": [(_EOD, "account")],
    "underlying": [(_EOD, "symbol")],
    "expiry": [(_EOD, "expiry")],
    "currency": [(_EOD, "currency")],
    "positions": [(_EOD, "position")],
    "contracts": [(_EOD, "position")],
    "delta_shares": [(_EOD, "delta"), *_Q],
    "dollar_delta": [(_EOD, "delta"), (_EOD, "und_price"), *_Q],
    "gamma_shares": [(_EOD, "gamma"), *_Q],
    "dollar_gamma_1pct": [(_EOD, "gamma"), (_EOD, "und_price"), *_Q],
    "vega": [(_EOD, "vega"), *_Q],
    "theta": [(_EOD, "theta"), *_Q],
    "notional": [(_EOD, "und_price"), *_Q],
    "market_value": [(_EOD, "market_value"), (_EOD, "ib_value")],
    "greeks_coverage": [(_EOD, "missing_greeks")],
    "missing_greeks_positions": [(_EOD, "missing_greeks")],
}


# -- reading helpers --------------------------------------------------------------------------------------------


def sessions_per_chunk() -> int:
    """Sessions computed together in a range run (``V6_SESSIONS_PER_CHUNK``, default 5): bounds the updates in memory
    (about 5 x 200,000 rows) whatever the length of the range; the previous EOD is carried from chunk to chunk."""
    raw = os.environ.get("V6_SESSIONS_PER_CHUNK", "").strip()
    if not raw:
        return DEFAULT_SESSIONS_PER_CHUNK
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"V6_SESSIONS_PER_CHUNK={raw!r} is not an integer") from None
    if value < 1:
        raise ValueError(f"V6_SESSIONS_PER_CHUNK={raw!r} must be >= 1")
    return value


def session_chunks(days: Sequence[date], size: int | None = None) -> list[list[date]]:
    """``days`` (oldest first) in consecutive chunks of at most ``size`` sessions."""
    n = size or sessions_per_chunk()
    return [list(days[i : i + n]) for i in range(0, len(days), n)]


def _updates_of(scan: pl.LazyFrame, first: date, last: date) -> pl.LazyFrame:
    """Stream rows with trade_date in [first, last], lazily: only those partitions are read."""
    return scan.filter((pl.col(TRADE_DATE) >= first) & (pl.col(TRADE_DATE) <= last))


def first_stream_session(lake: Lake, up_to: date) -> date | None:
    """The oldest session with position updates at or before ``up_to`` (None: the stream had not started)."""
    frame = lake.scan(POSITION_UPDATES.name).filter(pl.col(TRADE_DATE) <= up_to).select(pl.col(TRADE_DATE).min())
    value = frame.collect().item()
    return value if isinstance(value, date) else None


def stream_started_by(lake: Lake, session: date) -> bool:
    """True when the position stream had reported anything at or before ``session``'s cut (D-1 state is known)."""
    return first_stream_session(lake, session) is not None


def stored_eod(lake: Lake, session: date) -> pl.DataFrame | None:
    """The stored EOD rows of ``session``, None when the partition holds no rows (never computed, or flat)."""
    frame = lake.read_sessions(EOD_TABLE, [session])
    return frame if frame.height else None


def _eod_of(frame: pl.DataFrame, session: date) -> pl.DataFrame | None:
    rows = frame.filter(pl.col(TRADE_DATE) == session)
    return rows if rows.height else None


def eod_chunks(lake: Lake, days: Sequence[date], previous: pl.DataFrame | None) -> Iterator[pl.DataFrame]:
    """The EOD of the contiguous sessions ``days``, one frame per chunk of sessions, each chunk reading only its own
    trade_date partitions and starting from the EOD of the session before it (``previous`` for the first chunk,
    None when there is no open position to carry). Memory: one chunk of updates, whatever the range."""
    pu, gu = lake.scan(POSITION_UPDATES.name), lake.scan(GREEKS_UPDATES.name)
    for chunk in session_chunks(days):
        frame = analytics.eod_positions(
            _updates_of(pu, chunk[0], chunk[-1]), _updates_of(gu, chunk[0], chunk[-1]), chunk, previous
        )
        previous = _eod_of(frame, chunk[-1])
        yield frame


def derived_eod(lake: Lake, session: date) -> pl.DataFrame | None:
    """The EOD of ``session`` computed from the updates (chunk by chunk from the first session of the stream), None
    when the stream had not started by then or nothing was held at its cut."""
    first = first_stream_session(lake, session)
    if first is None:
        return None
    previous: pl.DataFrame | None = None
    for frame in eod_chunks(lake, sessions.sessions_between(first, session), None):
        previous = frame  # only the last chunk's last session is kept
    return _eod_of(previous, session) if previous is not None else None


def previous_eod_state(lake: Lake, first: date) -> pl.DataFrame | None:
    """The EOD of the session before ``first`` for carry-forward and U_{D-1}: stored when present, else derived
    from the updates; None when the stream had not started by then (the first session ever is a baseline)."""
    prev = sessions.previous_session(first)
    if not stream_started_by(lake, prev):
        return None
    stored = stored_eod(lake, prev)
    return stored if stored is not None else derived_eod(lake, prev)


def _write(lake: Lake, table: TableDef, frame: pl.DataFrame, days: Sequence[date]) -> OverwriteResult:
    return lake.overwrite_sessions(table, frame, days)


def _common_metadata(
    table: TableDef, frame: pl.DataFrame, days: Sequence[date], written: OverwriteResult, lineage: Mapping[str, Any]
) -> dict[str, Any]:
    per_session = {d.isoformat(): written.rows_per_session.get(d, 0) for d in days}
    return {
        "dagster/row_count": frame.height,
        "dagster/column_schema": table_schema(table),
        "dagster/column_lineage": column_lineage(lineage),
        "dagster/table_name": table.name,
        "sessions": MetadataValue.json(
            {"first": days[0].isoformat(), "last": days[-1].isoformat(), "rows": per_session}
        ),
        "delta_version": written.table_version_after,
        "write": MetadataValue.json(written.as_metadata()),
        "simulated": SIMULATED,
    }


# -- daily assets -----------------------------------------------------------------------------------------------


@asset(
    partitions_def=trading_day_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    deps=[position_updates, greeks_updates],
    kinds={"polars", "deltalake"},
    group_name=GROUP_DAILY,
    description=EOD_TABLE.description
    + " Positions without updates are carried forward from the previous session's stored EOD (derived from the"
    " updates when absent); closed positions stay for the session they closed in; greeks joined as-of with their age."
    + _SIM_NOTE,
    metadata={"dagster/column_schema": table_schema(EOD_TABLE), "dagster/table_name": EOD_TABLE.name},
)
def eod_positions(context: AssetExecutionContext, lake: LakeResource) -> MaterializeResult:
    days = run_sessions(context)
    lk = daily_lake(lake)
    prev = sessions.previous_session(days[0])
    previous = stored_eod(lk, prev)
    origin = "stored"
    if previous is None:
        previous = derived_eod(lk, prev)
        origin = "derived from the updates" if previous is not None else "none (no position held, or no stream yet)"
    # Chunks of sessions carry the previous EOD forward; outputs (positions x sessions) are small, so the whole range
    # is still written with ONE partition overwrite.
    parts = list(eod_chunks(lk, days, previous))
    frame = pl.concat(parts) if len(parts) > 1 else parts[0]
    written = _write(lk, EOD_TABLE, frame, days)
    context.log.info(
        "eod_positions %s..%s: %d rows in %d chunk(s) (previous EOD %s)",
        days[0],
        days[-1],
        frame.height,
        len(parts),
        origin,
    )
    open_rows = frame.filter(~pl.col("is_closed").fill_null(False))
    return MaterializeResult(
        metadata={
            **_common_metadata(EOD_TABLE, frame, days, written, EOD_LINEAGE),
            "previous_eod": origin,
            "chunks": len(parts),
            "open_positions": open_rows.height,
            "stale_marks": int(frame["is_stale_mark"].fill_null(False).sum()) if frame.height else 0,
            "missing_greeks": int(frame["missing_greeks"].fill_null(False).sum()) if frame.height else 0,
            "preview": largest_rows_preview(
                frame,
                "market_value",
                [
                    "trade_date",
                    "account",
                    "local_symbol",
                    "symbol",
                    "right",
                    "strike",
                    "expiry",
                    "position",
                    "market_price",
                    "market_value",
                    "unrealized_pnl",
                    "delta",
                    "greeks_age_s",
                    "carried_forward",
                ],
                title="Largest positions by market value" + (" (SIMULATED)" if SIMULATED else ""),
            ),
        }
    )


@asset(
    partitions_def=trading_day_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    deps=[AssetDep(eod_positions, partition_mapping=TimeWindowPartitionMapping(start_offset=-1, end_offset=0))],
    kinds={"polars", "deltalake"},
    group_name=GROUP_DAILY,
    description=DAILY_PNL_TABLE.description
    + " Reads eod_positions of D and D-1 (the previous NYSE session, across weekends and holidays). Also reports"
    " roll-ups by underlying and by account in the materialization metadata." + _SIM_NOTE,
    metadata={"dagster/column_schema": table_schema(DAILY_PNL_TABLE), "dagster/table_name": DAILY_PNL_TABLE.name},
)
def daily_pnl(context: AssetExecutionContext, lake: LakeResource) -> MaterializeResult:
    days = run_sessions(context)
    lk = daily_lake(lake)
    eod = lk.read_sessions(EOD_TABLE, days)
    previous = previous_eod_state(lk, days[0])
    frame = analytics.daily_pnl(eod, previous, days)
    written = _write(lk, DAILY_PNL_TABLE, frame, days)
    by_underlying = analytics.pnl_by_underlying(frame)
    by_account = analytics.pnl_by_account(frame)
    last = days[-1]
    chart_rows = by_underlying.filter(pl.col(TRADE_DATE) == last).sort("pnl_known", descending=True, nulls_last=True)
    labels = [f"{u} ({c})" for u, c in zip(chart_rows["underlying"], chart_rows["currency"], strict=True)]
    return MaterializeResult(
        metadata={
            **_common_metadata(DAILY_PNL_TABLE, frame, days, written, DAILY_PNL_LINEAGE),
            "total_pnl_known": float(frame["pnl"].drop_nulls().sum()) if frame.height else 0.0,
            "baseline_positions": int(frame["is_baseline"].sum()) if frame.height else 0,
            "unknown_pnl_positions": int(frame["pnl"].null_count()),
            "previous_eod": "none (first session of the stream: baseline)" if previous is None else "known",
            "preview": largest_rows_preview(
                frame,
                "pnl",
                [
                    "trade_date",
                    "account",
                    "symbol",
                    "right",
                    "strike",
                    "expiry",
                    "position",
                    "prev_position",
                    "unrealized_change",
                    "realized_pnl",
                    "realized_source",
                    "pnl",
                    "ib_daily_pnl",
                    "is_baseline",
                ],
                title="Largest daily PnL" + (" (SIMULATED)" if SIMULATED else ""),
            ),
            "pnl_by_account": largest_rows_preview(
                by_account,
                "pnl_known",
                [
                    "trade_date",
                    "account",
                    "currency",
                    "positions",
                    "pnl",
                    "pnl_known",
                    "unknown_pnl_positions",
                    "ib_daily_pnl",
                ],
                title="PnL by account",
                rows=50,
            ),
            "pnl_by_underlying_chart": bar_chart_markdown(
                labels,
                chart_rows["pnl_known"].to_list(),
                title=f"PnL by underlying, {last}",
                unit="PnL",
                simulated=SIMULATED,
            ),
        }
    )


def exposure_with_rollups(eod: pl.DataFrame) -> pl.DataFrame:
    """Detail rows (account x underlying x expiry) plus roll-ups by underlying and by account (``rollup`` column)."""
    detail = analytics.exposure(eod).with_columns(pl.lit(ROLLUP_DETAIL).alias("rollup"))
    by_underlying = analytics.exposure_by_underlying(detail.drop("rollup")).with_columns(
        pl.lit(ROLLUP_UNDERLYING).alias("rollup")
    )
    by_account = analytics.exposure_by_account(detail.drop("rollup")).drop("is_base_currency", strict=False)
    by_account = by_account.with_columns(pl.lit(ROLLUP_ACCOUNT).alias("rollup"))
    columns = list(EXPOSURE_TABLE.column_names)
    schema = EXPOSURE_TABLE.polars_schema
    parts = []
    for part in (detail, by_underlying, by_account):
        missing = [pl.lit(None, dtype=schema[c]).alias(c) for c in columns if c not in part.columns]
        parts.append(part.with_columns(missing).select([pl.col(c).cast(schema[c]) for c in columns]))
    return pl.concat(parts)


@asset(
    partitions_def=trading_day_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    deps=[eod_positions],
    kinds={"polars", "deltalake"},
    group_name=GROUP_DAILY,
    description=EXPOSURE_TABLE.description
    + " Roll-up rows carry rollup = underlying (over accounts and expiries) or account (money figures only)."
    + _SIM_NOTE,
    metadata={"dagster/column_schema": table_schema(EXPOSURE_TABLE), "dagster/table_name": EXPOSURE_TABLE.name},
)
def exposure(context: AssetExecutionContext, lake: LakeResource) -> MaterializeResult:
    days = run_sessions(context)
    lk = daily_lake(lake)
    eod = lk.read_sessions(EOD_TABLE, days)
    frame = exposure_with_rollups(eod)
    written = _write(lk, EXPOSURE_TABLE, frame, days)
    last = days[-1]
    underlying_rows = frame.filter((pl.col("rollup") == ROLLUP_UNDERLYING) & (pl.col(TRADE_DATE) == last))
    underlying_rows = underlying_rows.sort("dollar_delta", descending=True, nulls_last=True)
    labels = [f"{u} ({c})" for u, c in zip(underlying_rows["underlying"], underlying_rows["currency"], strict=True)]
    detail = frame.filter(pl.col("rollup") == ROLLUP_DETAIL)
    positions = int(detail["positions"].sum()) if detail.height else 0
    missing = int(detail["missing_greeks_positions"].sum()) if detail.height else 0
    return MaterializeResult(
        metadata={
            **_common_metadata(EXPOSURE_TABLE, frame, days, written, EXPOSURE_LINEAGE),
            "open_positions": positions,
            "greeks_coverage": (1.0 - missing / positions) if positions else 1.0,
            "missing_greeks_positions": missing,
            "preview": largest_rows_preview(
                detail,
                "dollar_delta",
                [
                    "trade_date",
                    "account",
                    "underlying",
                    "expiry",
                    "positions",
                    "delta_shares",
                    "dollar_delta",
                    "dollar_gamma_1pct",
                    "vega",
                    "theta",
                    "notional",
                    "greeks_coverage",
                ],
                title="Largest exposures by dollar delta" + (" (SIMULATED)" if SIMULATED else ""),
            ),
            "dollar_delta_by_underlying_chart": bar_chart_markdown(
                labels,
                underlying_rows["dollar_delta"].to_list(),
                title=f"Dollar delta by underlying, {last}",
                unit="dollar delta",
                simulated=SIMULATED,
            ),
        }
    )


DAILY_ASSETS = [eod_positions, daily_pnl, exposure]
STREAM_SPECS = [position_updates, greeks_updates]
