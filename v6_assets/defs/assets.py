"""The asset graph: the two streamed tables (external, fed by the sensor) and the daily partitioned assets.

    position_updates ─┐
                      ├─> eod_positions ─┬─> daily_pnl   (D and D-1)
    greeks_updates ───┘                  └─> exposure

Daily assets read Delta through the lake layer and write with ONE partition overwrite per run (the whole partition
range of a single-run backfill, ``BackfillPolicy.single_run()``). No IO manager: the tables are the data (the lake
layer owns the exactly-once and partition-overwrite semantics), Dagster records lineage and metadata. The
computation is ``v6_assets.pipeline.daily``; definitions (EOD cut, pnl, exposure) are those of ``v6_assets.analytics``
and the README. This module only declares the assets and their metadata.
"""

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

import polars as pl
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    BackfillPolicy,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)

from v6_assets import analytics, sessions
from v6_assets.analytics import GREEK_COLUMNS, STATE_COLUMNS
from v6_assets.contracts.clock import utc_now
from v6_assets.contracts.tables import (
    CONTRACT_COLUMNS,
    DAILY_PNL,
    EOD_POSITIONS,
    EXPOSURE,
    GREEKS_UPDATES,
    POSITION_UPDATES,
    ROLLUP_COLUMN,
    ROLLUP_DETAIL,
    ROLLUP_UNDERLYING,
    TRADE_DATE,
    TableDef,
)
from v6_assets.defs.freshness import DAILY_FRESHNESS
from v6_assets.defs.metadata import (
    bar_chart_markdown,
    column_lineage,
    largest_rows_preview,
    money_text,
    range_label,
    records_table,
    table_schema,
)
from v6_assets.defs.partitions import trading_day_partitions
from v6_assets.defs.pnl_overview import overview_metadata, session_status
from v6_assets.defs.resources import LakeResource, is_simulated
from v6_assets.lake import Lake, OverwriteResult
from v6_assets.pipeline import daily

GROUP_STREAM = "ib_stream"
GROUP_DAILY = "daily"
SIMULATED = is_simulated()
_SIM_NOTE = " SIMULATED data from the IB gateway simulator (V6_DEMO=1)." if SIMULATED else ""


def run_sessions(context: Any) -> list[date]:
    """The sessions of this run: one partition, or the whole range of a single-run backfill, oldest first."""
    keys = list(context.partition_keys)
    days = sorted(date.fromisoformat(k) for k in keys)
    not_sessions = [d for d in days if not sessions.is_session(d)]
    if not days or not_sessions:
        raise ValueError(f"run partitions {keys} must be NYSE sessions (not: {not_sessions})")
    return days


def computed_eod_sessions(context: Any) -> set[date]:
    """The eod_positions sessions Dagster has a materialization of (this run's earlier step included)."""
    keys = context.instance.get_materialized_partitions(AssetKey(EOD_POSITIONS.name))
    return {date.fromisoformat(k) for k in keys}


def require_upstream(context: Any, lake: Lake, table: str, days: Sequence[date]) -> None:
    """Fail the run (its message on the run page) when an eod_positions session of ``days`` was never computed:
    daily_pnl and exposure are computed from the real eod_positions of D or not at all (never 0 rows, green)."""
    try:
        daily.require_eod(lake, table, days, computed_eod_sessions(context))
    except daily.MissingUpstreamError as exc:
        context.log.error(str(exc))
        raise Failure(description=str(exc), allow_retries=False) from None


# -- streamed tables (external: the sensor appends them) ----------------------------------------------------------


def stream_spec(table: TableDef) -> AssetSpec:
    """The external asset of a streamed table (appended by the sensor, not materialized by a run)."""
    return AssetSpec(
        key=table.name,
        description=table.description
        + " Appended in micro-batches by the ib_position_stream sensor (txn version = spool offset)."
        + _SIM_NOTE,
        partitions_def=trading_day_partitions,
        group_name=GROUP_STREAM,
        kinds={"deltalake"},
        metadata={"dagster/column_schema": table_schema(table), "dagster/table_name": table.name},
    )


position_updates = stream_spec(POSITION_UPDATES)
greeks_updates = stream_spec(GREEKS_UPDATES)

# -- column lineage ---------------------------------------------------------------------------------------------

_CONTRACT = CONTRACT_COLUMNS
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


def pnl_totals_by_session(
    days: Sequence[date], by_account: pl.DataFrame, previous_eod: Mapping[date, str]
) -> list[dict[str, Any]]:
    """One row per session x account x currency (money to the cent as text); a session without any position is one
    row with n/a amounts: no data is never shown as 0."""
    out: list[dict[str, Any]] = []
    for day in days:
        rows = by_account.filter(pl.col(TRADE_DATE) == day)
        base = {"session": day.isoformat(), "previous_eod": previous_eod.get(day, "")}
        if not rows.height:
            out.append(
                base
                | {"account": "", "currency": "", "positions": 0, "pnl_known": "n/a (no position)"}
                | {"unknown_pnl_positions": 0, "ib_daily_pnl": "n/a"}
            )
            continue
        for r in rows.iter_rows(named=True):
            out.append(
                base
                | {"account": r["account"], "currency": r["currency"], "positions": int(r["positions"])}
                | {"pnl_known": money_text(r["pnl_known"]) if r["positions"] > r["unknown_pnl_positions"] else "n/a"}
                | {
                    "unknown_pnl_positions": int(r["unknown_pnl_positions"]),
                    "ib_daily_pnl": money_text(r["ib_daily_pnl"]),
                }
            )
    return out


def pnl_by_account_text(totals: Sequence[Mapping[str, Any]], only: date | None) -> str:
    """``account currency amount`` per row, "; "-separated, prefixed with the session in a range run."""
    parts = []
    for row in totals:
        prefix = "" if only is not None else f"{row['session']}: "
        if not row["account"]:
            parts.append(f"{prefix}n/a (no position)")
        else:
            parts.append(f"{prefix}{row['account']} {row['currency']} {row['pnl_known']}")
    return "; ".join(parts)


def single_session_pnl_figures(frame: pl.DataFrame, previous_eod: str) -> dict[str, Any]:
    """Scalar figures, only for a one-session run (in a range they would be sums shown under each day)."""
    known = frame["pnl"].drop_nulls()
    currencies = frame["currency"].unique().to_list() if frame.height else []
    total = (
        money_text(float(known.sum()))
        if known.len() and len(currencies) == 1
        else ("n/a (no known pnl)" if not known.len() else "n/a (several currencies: see total_pnl_by_account)")
    )
    return {
        "total_pnl_known": total,
        "baseline_positions": int(frame["is_baseline"].sum()) if frame.height else 0,
        "unknown_pnl_positions": int(frame["pnl"].null_count()),
        "previous_eod": previous_eod,
    }


# -- daily assets -----------------------------------------------------------------------------------------------


@asset(
    partitions_def=trading_day_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    deps=[position_updates, greeks_updates],
    kinds={"polars", "deltalake"},
    group_name=GROUP_DAILY,
    freshness_policy=DAILY_FRESHNESS,
    description=EOD_POSITIONS.description
    + " Positions without updates are carried forward from the previous session's stored EOD (derived from the"
    " updates when absent); closed positions stay for the session they closed in; greeks joined as-of with their age."
    + _SIM_NOTE,
    metadata={"dagster/column_schema": table_schema(EOD_POSITIONS), "dagster/table_name": EOD_POSITIONS.name},
)
def eod_positions(context: AssetExecutionContext, lake: LakeResource) -> MaterializeResult:
    days = run_sessions(context)
    run = daily.refresh_eod_positions(lake.lake(), days)
    frame = run.frame
    context.log.info(
        "eod_positions %s..%s: %d rows in %d chunk(s) (previous EOD %s)",
        days[0],
        days[-1],
        frame.height,
        run.chunks,
        run.previous_eod,
    )
    per_session: list[dict[str, Any]] = []
    for day in days:
        rows = frame.filter(pl.col(TRADE_DATE) == day)
        per_session.append(
            {
                "session": day.isoformat(),
                "rows": rows.height,
                "open_positions": rows.filter(~pl.col("is_closed").fill_null(False)).height,
                "stale_marks": int(rows["is_stale_mark"].fill_null(False).sum()),
                "missing_greeks": int(rows["missing_greeks"].fill_null(False).sum()),
            }
        )
    only = per_session[0] if len(days) == 1 else None
    return MaterializeResult(
        metadata={
            **_common_metadata(EOD_POSITIONS, frame, days, run.written, EOD_LINEAGE),
            "covers": range_label(days),
            **({"session_status": session_status(days[0], utc_now())} if only is not None else {}),
            "previous_eod": run.previous_eod,
            "chunks": run.chunks,
            **({k: only[k] for k in ("open_positions", "stale_marks", "missing_greeks")} if only is not None else {}),
            "by_session": records_table(
                per_session,
                [
                    ("session", "string", "NYSE session (partition key)"),
                    ("rows", "int", "eod_positions rows of the session"),
                    ("open_positions", "int", "positions not closed at the cut"),
                    ("stale_marks", "int", "positions whose mark is older than the staleness limit"),
                    ("missing_greeks", "int", "option positions without greeks at the cut"),
                ],
            ),
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
    # D-1 is read from the lake (stored, else derived from the updates), not declared as a partition dependency: with
    # a D-1 mapping Dagster's asset backfill splits a range into two runs and adds the session AFTER the range to
    # daily_pnl's run, which then computes a session nobody asked for or fails when its eod_positions is missing.
    deps=[eod_positions],
    kinds={"polars", "deltalake"},
    group_name=GROUP_DAILY,
    freshness_policy=DAILY_FRESHNESS,
    description=DAILY_PNL.description
    + " Reads eod_positions of D and D-1 (the previous NYSE session, across weekends and holidays). Also reports"
    " roll-ups by underlying and by account in the materialization metadata." + _SIM_NOTE,
    metadata={"dagster/column_schema": table_schema(DAILY_PNL), "dagster/table_name": DAILY_PNL.name},
)
def daily_pnl(context: AssetExecutionContext, lake: LakeResource) -> MaterializeResult:
    days = run_sessions(context)
    lk = lake.lake()
    require_upstream(context, lk, DAILY_PNL.name, days)
    run = daily.refresh_daily_pnl(lk, days)
    frame = run.frame
    by_underlying = analytics.pnl_by_underlying(frame)
    by_account = analytics.pnl_by_account(frame)
    last = days[-1]
    chart_rows = by_underlying.filter(pl.col(TRADE_DATE) == last).sort("pnl_known", descending=True, nulls_last=True)
    labels = [f"{u} ({c})" for u, c in zip(chart_rows["underlying"], chart_rows["currency"], strict=True)]
    now = utc_now()
    totals = [
        row | {"session_status": session_status(date.fromisoformat(row["session"]), now)}
        for row in pnl_totals_by_session(days, by_account, run.previous_eod)
    ]
    only = days[0] if len(days) == 1 else None
    return MaterializeResult(
        metadata={
            # first on the page, readable without a pop-up: where the session stands and the last closed session
            **overview_metadata(lk, days, now, simulated=SIMULATED),
            **_common_metadata(DAILY_PNL, frame, days, run.written, DAILY_PNL_LINEAGE),
            "covers": range_label(days),
            # readable at a glance, no pop-up: "DU111 USD 1,234.56; DU222 EUR -98.10" (never a sum of currencies)
            "total_pnl_by_account": pnl_by_account_text(totals, only),
            **(single_session_pnl_figures(frame, run.previous_eod[only]) if only is not None else {}),
            "pnl_by_session": records_table(
                totals,
                [
                    ("session", "string", "NYSE session (partition key)"),
                    ("account", "string", "IB account ('' when the session has no position)"),
                    ("currency", "string", "currency of the amounts (never added across currencies)"),
                    ("positions", "int", "positions with a daily_pnl row"),
                    ("pnl_known", "string", "sum of the known pnl, to the cent; n/a when no position"),
                    ("unknown_pnl_positions", "int", "positions whose pnl is unknown (baseline or unknown realized)"),
                    ("ib_daily_pnl", "string", "IB's own daily PnL summed where it gave one; n/a when none"),
                    ("previous_eod", "string", "where the session's D-1 state came from"),
                    ("session_status", "string", "pre-open (marks are the previous close), open or closed"),
                ],
            ),
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
            "pnl_by_underlying_chart": bar_chart_markdown(
                labels,
                chart_rows["pnl_known"].to_list(),
                title=f"PnL by underlying, {last}",
                unit="PnL",
                simulated=SIMULATED,
            ),
        }
    )


@asset(
    partitions_def=trading_day_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    deps=[eod_positions],
    kinds={"polars", "deltalake"},
    group_name=GROUP_DAILY,
    freshness_policy=DAILY_FRESHNESS,
    description=EXPOSURE.description
    + " Roll-up rows carry rollup = underlying (over accounts and expiries) or account (money figures only)."
    + _SIM_NOTE,
    metadata={"dagster/column_schema": table_schema(EXPOSURE), "dagster/table_name": EXPOSURE.name},
)
def exposure(context: AssetExecutionContext, lake: LakeResource) -> MaterializeResult:
    days = run_sessions(context)
    lk = lake.lake()
    require_upstream(context, lk, EXPOSURE.name, days)
    run = daily.refresh_exposure(lk, days)
    frame = run.frame
    last = days[-1]
    underlying_rows = frame.filter((pl.col(ROLLUP_COLUMN) == ROLLUP_UNDERLYING) & (pl.col(TRADE_DATE) == last))
    underlying_rows = underlying_rows.sort("dollar_delta", descending=True, nulls_last=True)
    labels = [f"{u} ({c})" for u, c in zip(underlying_rows["underlying"], underlying_rows["currency"], strict=True)]
    detail = frame.filter(pl.col(ROLLUP_COLUMN) == ROLLUP_DETAIL)
    per_session: list[dict[str, Any]] = []
    for day in days:
        rows = detail.filter(pl.col(TRADE_DATE) == day)
        positions = int(rows["positions"].sum()) if rows.height else 0
        missing = int(rows["missing_greeks_positions"].sum()) if rows.height else 0
        per_session.append(
            {
                "session": day.isoformat(),
                "open_positions": positions,
                "missing_greeks_positions": missing,
                # no position: coverage of nothing is unknown, never 100 %
                "greeks_coverage": f"{1.0 - missing / positions:.1%}" if positions else "n/a (no open position)",
            }
        )
    only = per_session[0] if len(days) == 1 else None
    return MaterializeResult(
        metadata={
            **_common_metadata(EXPOSURE, frame, days, run.written, EXPOSURE_LINEAGE),
            "covers": range_label(days),
            **({"session_status": session_status(days[0], utc_now())} if only is not None else {}),
            **(
                {k: only[k] for k in ("open_positions", "greeks_coverage", "missing_greeks_positions")}
                if only is not None
                else {}
            ),
            "by_session": records_table(
                per_session,
                [
                    ("session", "string", "NYSE session (partition key)"),
                    ("open_positions", "int", "open positions in the detail rows"),
                    ("missing_greeks_positions", "int", "open option positions without greeks"),
                    ("greeks_coverage", "string", "share of open positions with greeks; n/a without positions"),
                ],
            ),
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
