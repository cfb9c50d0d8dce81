"""The explain and risk assets (per session, backfillable like daily_pnl) and their limit checks.

    eod_positions ─┬─> daily_pnl ──> pnl_explain   (daily_pnl of D, eod_positions of D and D-1)
                   ├─> risk_scenarios              (eod_positions of D)
                   └─> expiry_ladder               (eod_positions of D)

The computation is ``v6_assets.pipeline.risk`` (definitions in ``v6_assets.analytics.explain`` / ``scenarios`` /
``ladder``), the limits ``v6_assets.pipeline.limits``, the pictures ``v6_assets.defs.risk_charts``. The limits file
(``V6_RISK_LIMITS_FILE``) is read when this module loads: a malformed file stops the code location with a message
naming its line, instead of checks that silently check nothing.
"""

import functools
from collections.abc import Sequence
from datetime import date
from typing import Any

import polars as pl
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    BackfillPolicy,
    Failure,
    MaterializeResult,
    MetadataValue,
    TimeWindowPartitionMapping,
    asset,
    asset_check,
)

from v6_assets.contracts.money import format_cents
from v6_assets.contracts.tables import (
    DAILY_PNL,
    EOD_POSITIONS,
    EXPIRY_LADDER,
    PNL_EXPLAIN,
    RISK_SCENARIOS,
    ROLLUP_COLUMN,
    ROLLUP_DETAIL,
    TRADE_DATE,
    TableDef,
)
from v6_assets.defs.assets import SIMULATED, daily_pnl, eod_positions, run_sessions
from v6_assets.defs.freshness import DAILY_FRESHNESS
from v6_assets.defs.metadata import range_label, records_table, table_schema
from v6_assets.defs.partitions import trading_day_partitions
from v6_assets.defs.resources import LakeResource
from v6_assets.defs.risk_charts import explain_waterfall, ladder_bars, scenario_heatmap
from v6_assets.defs.settings import DefsEnvironment
from v6_assets.lake import Lake
from v6_assets.pipeline import daily, limits, risk

GROUP_RISK = "risk"
_SIM_NOTE = " SIMULATED data from the IB gateway simulator (V6_DEMO=1)." if SIMULATED else ""


@functools.cache
def _limits_at(path: str) -> tuple[limits.Limit, ...]:
    return limits.load_limits(path)


def risk_limits() -> tuple[limits.Limit, ...]:
    """The limits of ``V6_RISK_LIMITS_FILE`` (none when unset), read once per path."""
    return _limits_at(DefsEnvironment.read().risk_limits_file)


# Read when the code location loads: a malformed file is an error naming its line there, not at the first check.
RISK_LIMITS_AT_LOAD = risk_limits()
_SIM = " (SIMULATED)" if SIMULATED else ""


def _computed(context: Any, table: TableDef) -> set[date]:
    keys = context.instance.get_materialized_partitions(AssetKey(table.name))
    return {date.fromisoformat(k) for k in keys}


def _fail_on_missing(context: Any, exc: daily.MissingUpstreamError) -> Failure:
    context.log.error(str(exc))
    return Failure(description=str(exc), allow_retries=False)


def _metadata(table: TableDef, frame: pl.DataFrame, days: Sequence[date], run: risk.RiskRun) -> dict[str, Any]:
    return {
        "dagster/row_count": frame.height,
        "dagster/column_schema": table_schema(table),
        "dagster/table_name": table.name,
        "covers": range_label(days),
        "sessions": MetadataValue.json(
            {
                "first": days[0].isoformat(),
                "last": days[-1].isoformat(),
                "rows": {d.isoformat(): run.written.rows_per_session.get(d, 0) for d in days},
            }
        ),
        "delta_version": run.written.table_version_after,
        "simulated": SIMULATED,
    }


_ASSET_KW: dict[str, Any] = {
    "partitions_def": trading_day_partitions,
    "backfill_policy": BackfillPolicy.single_run(),
    "kinds": {"polars", "deltalake"},
    "group_name": GROUP_RISK,
    "freshness_policy": DAILY_FRESHNESS,
}


@asset(
    deps=[
        daily_pnl,
        AssetDep(eod_positions, partition_mapping=TimeWindowPartitionMapping(start_offset=-1, end_offset=0)),
    ],
    description=PNL_EXPLAIN.description + _SIM_NOTE,
    metadata={"dagster/column_schema": table_schema(PNL_EXPLAIN), "dagster/table_name": PNL_EXPLAIN.name},
    **_ASSET_KW,
)
def pnl_explain(context: AssetExecutionContext, lake: LakeResource) -> MaterializeResult:
    days = run_sessions(context)
    try:
        run = risk.refresh_pnl_explain(
            lake.lake(), days, _computed(context, EOD_POSITIONS), _computed(context, DAILY_PNL)
        )
    except daily.MissingUpstreamError as exc:
        raise _fail_on_missing(context, exc) from None
    frame, last = run.frame, days[-1]
    detail = frame.filter(pl.col(ROLLUP_COLUMN) == ROLLUP_DETAIL)
    per_session = []
    for day in days:
        rows = detail.filter(pl.col(TRADE_DATE) == day)
        per_session.append(
            {
                "session": day.isoformat(),
                "positions": rows.height,
                "explained": int((rows["status"] == "explained").sum()),
                "opened": int((rows["status"] == "opened").sum()),
                "flagged": int(rows["flagged_positions"].sum()) if rows.height else 0,
                "residual": format_cents(float(rows["residual"].sum()))
                if rows["residual"].is_not_null().any()
                else "n/a",
            }
        )
    return MaterializeResult(
        metadata={
            **_metadata(PNL_EXPLAIN, frame, days, run),
            "by_session": records_table(
                per_session,
                [
                    ("session", "string", "NYSE session"),
                    ("positions", "int", "positions with a daily_pnl row"),
                    ("explained", "int", "held over D-1 and attributed to greeks + trading + residual"),
                    ("opened", "int", "opened during D: all trading"),
                    ("flagged", "int", "not attributed (missing greeks/market/mark, expired, unknown pnl)"),
                    ("residual", "string", "sum of the residuals, to the cent (all currencies: see the chart)"),
                ],
            ),
            "explain_waterfall": explain_waterfall(
                frame.filter(pl.col(TRADE_DATE) == last), title=f"PnL explain by account, {last}", simulated=SIMULATED
            ),
        }
    )


@asset(
    deps=[eod_positions],
    description=RISK_SCENARIOS.description + _SIM_NOTE,
    metadata={"dagster/column_schema": table_schema(RISK_SCENARIOS), "dagster/table_name": RISK_SCENARIOS.name},
    **_ASSET_KW,
)
def risk_scenarios(context: AssetExecutionContext, lake: LakeResource) -> MaterializeResult:
    days = run_sessions(context)
    try:
        run = risk.refresh_risk_scenarios(lake.lake(), days, _computed(context, EOD_POSITIONS))
    except daily.MissingUpstreamError as exc:
        raise _fail_on_missing(context, exc) from None
    frame, last = run.frame, days[-1]
    return MaterializeResult(
        metadata={
            **_metadata(RISK_SCENARIOS, frame, days, run),
            "unpriced_positions": int(
                frame.filter(pl.col("underlying").is_null() & (pl.col("spot_shift_pct") == 0.0))
                .filter(pl.col("vol_shift_pts") == 0.0)["unpriced_positions"]
                .sum()
            ),
            "scenario_heatmap": scenario_heatmap(
                frame.filter(pl.col(TRADE_DATE) == last), title=f"Scenario PnL by account, {last}", simulated=SIMULATED
            ),
        }
    )


@asset(
    deps=[eod_positions],
    description=EXPIRY_LADDER.description + _SIM_NOTE,
    metadata={"dagster/column_schema": table_schema(EXPIRY_LADDER), "dagster/table_name": EXPIRY_LADDER.name},
    **_ASSET_KW,
)
def expiry_ladder(context: AssetExecutionContext, lake: LakeResource) -> MaterializeResult:
    days = run_sessions(context)
    try:
        run = risk.refresh_expiry_ladder(lake.lake(), days, _computed(context, EOD_POSITIONS))
    except daily.MissingUpstreamError as exc:
        raise _fail_on_missing(context, exc) from None
    frame, last = run.frame, days[-1]
    return MaterializeResult(
        metadata={
            **_metadata(EXPIRY_LADDER, frame, days, run),
            "pin_risk_positions": int(frame.filter(pl.col(TRADE_DATE) == last)["pin_risk_positions"].sum()),
            "expiry_ladder_bars": ladder_bars(
                frame.filter(pl.col(TRADE_DATE) == last), title=f"Expiry ladder, {last}", simulated=SIMULATED
            ),
        }
    )


# -- limit checks -----------------------------------------------------------------------------------------------


def _check_days(context: AssetCheckExecutionContext, lake: Lake, table: TableDef) -> list[date]:
    if context.has_partition_key or context.has_partition_key_range:
        return run_sessions(context)
    newest = (
        lake.scan(table.name).select(pl.col(TRADE_DATE).max()).collect().item() if lake.exists(table.name) else None
    )
    return [newest] if isinstance(newest, date) else []


def limit_result(
    found: list[dict[str, Any]], rows: int, days: Sequence[date], active: tuple[limits.Limit, ...]
) -> AssetCheckResult:
    """ERROR when an error level is passed, WARN when only warning levels are; every breach in the metadata. A check
    that compared nothing (no rows) while limits exist warns instead of passing."""
    errors = [b for b in found if b["severity"] == limits.ERROR]
    metadata: dict[str, Any] = {
        "sessions": [d.isoformat() for d in days],
        "limits": len(active),
        "limits_file": "none (V6_RISK_LIMITS_FILE unset)" if not active else "loaded",
        "breaches": len(found),
        "errors": len(errors),
        "breach_list": records_table(
            [b | {"value": format_cents(b["value"]), "limit": format_cents(b["limit"])} for b in found],
            [
                ("session", "string", "NYSE session"),
                ("scope", "string", "account and/or underlying of the limit"),
                ("measure", "string", "net_delta, vega, theta or worst_loss"),
                ("currency", "string", "currency of the figure"),
                ("value", "string", "the figure (absolute; a loss for worst_loss)"),
                ("limit", "string", "the level it passed"),
                ("severity", "string", "ERROR or WARN"),
                ("line", "int", "line of the limit in the limits file"),
            ],
        ),
    }
    if active and rows == 0:
        metadata["note"] = "no rows to compare for the sessions: nothing was checked"
        return AssetCheckResult(passed=False, severity=AssetCheckSeverity.WARN, metadata=metadata)
    if not found:
        return AssetCheckResult(passed=True, metadata=metadata)
    severity = AssetCheckSeverity.ERROR if errors else AssetCheckSeverity.WARN
    return AssetCheckResult(passed=False, severity=severity, metadata=metadata)


@asset_check(
    asset=expiry_ladder,
    name="within_greek_limits",
    description="Net dollar delta, vega and theta per limit scope within the V6_RISK_LIMITS_FILE levels (WARN/ERROR).",
)
def within_greek_limits(context: AssetCheckExecutionContext, lake: LakeResource) -> AssetCheckResult:
    lk = lake.lake()
    days = _check_days(context, lk, EXPIRY_LADDER)
    ladder = lk.read_sessions(EXPIRY_LADDER, days) if days else pl.DataFrame(schema=EXPIRY_LADDER.polars_schema)
    active = risk_limits()
    return limit_result(limits.breaches(active, greeks=ladder), ladder.height, days, active)


@asset_check(
    asset=risk_scenarios,
    name="within_worst_loss_limits",
    description="The worst scenario loss per limit scope within the V6_RISK_LIMITS_FILE levels (WARN/ERROR).",
)
def within_worst_loss_limits(context: AssetCheckExecutionContext, lake: LakeResource) -> AssetCheckResult:
    lk = lake.lake()
    days = _check_days(context, lk, RISK_SCENARIOS)
    grid = lk.read_sessions(RISK_SCENARIOS, days) if days else pl.DataFrame(schema=RISK_SCENARIOS.polars_schema)
    active = risk_limits()
    return limit_result(limits.breaches(active, scenarios=grid), grid.height, days, active)


RISK_ASSETS = [pnl_explain, risk_scenarios, expiry_ladder]
RISK_CHECKS = [within_greek_limits, within_worst_loss_limits]
