"""IB Flex statements in the asset graph: the statement tables (external, fed by the ``flex_statements`` sensor),
the per-session ``reconciliation`` asset and its blocking checks, one per comparison.

    statement_positions ─┐
    statement_trades ────┼─> reconciliation  <── eod_positions (D, D-1), daily_pnl (D)
    statement_mtm ───────┘

What each check compares is ``v6_assets.analytics.reconcile`` (and docs/statements.md). A check fails when its
comparison has a blocking difference, when there is no statement for the session, or when it compared nothing while
our book holds positions (no green on nothing).
"""

from typing import Any

import polars as pl
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetDep,
    AssetExecutionContext,
    AssetSpec,
    Failure,
    MaterializeResult,
    MetadataValue,
    TimeWindowPartitionMapping,
    asset,
    asset_check,
    define_asset_job,
)

from v6_assets.analytics.reconcile import Reconciliation
from v6_assets.contracts.money import format_cents
from v6_assets.contracts.statement_tables import (
    RECONCILIATION,
    STATEMENT_CASH,
    STATEMENT_MTM,
    STATEMENT_POSITIONS,
    STATEMENT_TRADES,
)
from v6_assets.contracts.tables import TableDef
from v6_assets.defs.assets import daily_pnl, eod_positions, run_sessions
from v6_assets.defs.metadata import records_table, table_schema
from v6_assets.defs.partitions import trading_day_partitions
from v6_assets.defs.resources import LakeResource
from v6_assets.pipeline.daily import MissingUpstreamError
from v6_assets.pipeline.settings import StatementsEnvironment
from v6_assets.pipeline.statements import ReconciliationRun, compute_reconciliation, refresh_reconciliation

GROUP_STATEMENTS = "statements"
DIFFERENCE_ROWS = 200  # the metadata table shows at most this many differences (the table holds them all)


def statement_spec(table: TableDef) -> AssetSpec:
    return AssetSpec(
        key=table.name,
        description=table.description + " Written by the flex_statements sensor from the files it finds.",
        partitions_def=trading_day_partitions,
        group_name=GROUP_STATEMENTS,
        kinds={"deltalake"},
        metadata={"dagster/column_schema": table_schema(table), "dagster/table_name": table.name},
    )


STATEMENT_SPECS = [statement_spec(t) for t in (STATEMENT_POSITIONS, STATEMENT_TRADES, STATEMENT_MTM, STATEMENT_CASH)]
_SPEC_KEYS = {s.key.to_user_string(): s for s in STATEMENT_SPECS}


def mark_tolerance() -> float:
    return StatementsEnvironment.read().mark_tolerance


def differences_table(result: Reconciliation) -> MetadataValue:
    rows = []
    for r in result.differences.head(DIFFERENCE_ROWS).iter_rows(named=True):
        money = r["check_name"] in ("pnl", "pnl_account")
        shown = (lambda v: format_cents(v)) if money else (lambda v: None if v is None else f"{v:g}")
        rows.append({**r, "ours": shown(r["ours"]), "theirs": shown(r["theirs"]),
                     "difference": shown(r["difference"])})  # fmt: skip
    return records_table(
        rows,
        [("account", "string", "IB account"), ("check_name", "string", "comparison"), ("con_id", "int", "contract"),
         ("exec_id", "string", "execution id"), ("field", "string", "what differs"), ("ours", "string", "ours"),
         ("theirs", "string", "IB's statement"), ("difference", "string", "ours - IB's"),
         ("cause", "string", "why"), ("blocking", "bool", "fails the check")],
    )  # fmt: skip


@asset(
    partitions_def=trading_day_partitions,
    deps=[
        AssetDep(eod_positions, partition_mapping=TimeWindowPartitionMapping(start_offset=-1, end_offset=0)),
        daily_pnl,
        *[s.key for s in STATEMENT_SPECS[:3]],
    ],
    kinds={"polars", "deltalake"},
    group_name=GROUP_STATEMENTS,
    description=RECONCILIATION.description
    + " Green per session when every check agrees; the metadata lists every difference with its cause.",
    metadata={"dagster/column_schema": table_schema(RECONCILIATION), "dagster/table_name": RECONCILIATION.name},
)
def reconciliation(context: AssetExecutionContext, lake: LakeResource) -> MaterializeResult:
    lk = lake.lake()
    results: dict[str, ReconciliationRun] = {}
    for day in run_sessions(context):
        try:
            run = refresh_reconciliation(lk, day, mark_rel_tolerance=mark_tolerance())
        except MissingUpstreamError as exc:
            context.log.error(str(exc))
            raise Failure(description=str(exc), allow_retries=False) from None
        results[day.isoformat()] = run
    last_run = results[max(results)]
    last: Reconciliation = last_run.reconciliation
    verdicts = last.verdicts()
    return MaterializeResult(
        metadata={
            "session": last.session.isoformat(),
            "verdict": MetadataValue.md("\n".join(f"- **{a}**: {v}" for a, v in verdicts.items())),
            "blocking_differences": last.blocking().height,
            "listed_differences": last.differences.height,
            "compared": MetadataValue.json(last.compared),
            "differences": differences_table(last),
            # False only for a lake without an executions table: the trades are then compared by position change
            "trades_compared_by_exec_id": last_run.by_exec_id,
        }
    )


def _check(check: str, names: tuple[str, ...], description: str) -> AssetChecksDefinition:
    # partitioned like the asset: each evaluation is recorded against its session, so the UI shows green/red per
    # session (an unpartitioned check's evaluation carries no partition)
    @asset_check(asset=reconciliation, name=check, blocking=True, description=description,
                 partitions_def=trading_day_partitions)  # fmt: skip
    def _fn(context: AssetCheckExecutionContext, lake: LakeResource) -> AssetCheckResult:
        lk = lake.lake()
        days = run_sessions(context) if (context.has_partition_key or context.has_partition_key_range) else []
        if not days:
            return AssetCheckResult(passed=False, metadata={"why": "run it for a session partition"})
        bad: list[pl.DataFrame] = []
        compared = 0
        problems = []
        for day in days:
            try:
                result = compute_reconciliation(lk, day, mark_rel_tolerance=mark_tolerance()).reconciliation
            except MissingUpstreamError as exc:
                problems.append(str(exc))
                continue
            bad += [result.blocking(n) for n in names]
            compared += sum(result.compared.get(n, 0) for n in names)
            open_positions = lk.read_sessions("eod_positions", [day]).filter(pl.col("position").fill_null(0) != 0)
            if names[0] in ("positions", "marks", "pnl") and open_positions.height and not result.compared[names[0]]:
                problems.append(f"{day}: compared nothing while our book holds {open_positions.height} position(s)")
        rows = pl.concat(bad) if bad else pl.DataFrame()
        passed = not problems and rows.height == 0
        metadata: dict[str, Any] = {"compared": compared, "blocking_differences": rows.height}
        if problems:
            metadata["problems"] = MetadataValue.md("\n".join(f"- {p}" for p in problems))
        if rows.height:
            metadata["differences"] = MetadataValue.md(
                "\n".join(
                    f"- {r['account']} {r['con_id'] or ''} {r['exec_id'] or ''} {r['field']}: {r['cause']}"
                    for r in rows.head(50).iter_rows(named=True)
                )
            )
        return AssetCheckResult(passed=passed, metadata=metadata)

    return _fn


RECONCILIATION_CHECKS = [
    _check("positions_match_statement", ("positions",),
           "Option quantities per account x con_id equal IB's statement exactly (nothing missing either way)."),
    _check("marks_match_statement", ("marks",),
           "Our mark at the 16:15 ET cut is within V6_STATEMENT_MARK_TOLERANCE (relative, >= 1 cent) of IB's close."),
    _check("pnl_matches_statement_mtm", ("pnl", "pnl_account"),
           "Daily pnl x fxRateToBase equals IB's MTM total per position and account to the cent, differences "
           "explained by marks or a baseline session aside."),
    _check("trades_match_statement", ("trades",),
           "IB's trades add up to our position change per position (and, with executions, match by exec id: "
           "quantity, price, commission)."),
    _check("lifecycle_matches_statement", ("lifecycle",),
           "Our expiries/exercises/assignments (position_events' option rows: event and contracts) equal the "
           "statement's option trades coded Ep / Ex / A, per position, nothing missing either way."),
]  # fmt: skip

reconciliation_job = define_asset_job(
    "statement_reconciliation",
    selection=[reconciliation],
    partitions_def=trading_day_partitions,
    description="Reconcile one session with IB's statement (requested by the flex_statements sensor).",
)
