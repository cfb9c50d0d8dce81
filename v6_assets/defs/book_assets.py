"""The book's assets: the streamed ``executions`` and ``account_values`` tables and ``book_pnl``
(the statement MTM rebuilt from the book).

    executions ───────────────┐
    eod_positions (D, D-1) ───┼─> book_pnl   (blocking check: statement_matches_pnl)
    daily_pnl ────────────────┘

The computation is ``v6_assets.pipeline.book``; this module only declares the assets, the check and their metadata.
"""

from collections.abc import Sequence
from typing import Any

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetDep,
    AssetExecutionContext,
    BackfillPolicy,
    MaterializeResult,
    TimeWindowPartitionMapping,
    asset,
    asset_check,
)

from v6_assets.contracts.money import HALF_CENT, format_cents
from v6_assets.contracts.tables import ACCOUNT_VALUES, BOOK_PNL, DAILY_PNL, EOD_POSITIONS, EXECUTIONS
from v6_assets.defs.assets import (
    _SIM_NOTE,
    GROUP_DAILY,
    SIMULATED,
    _common_metadata,
    require_upstream,
    run_sessions,
    stream_spec,
)
from v6_assets.defs.checks import _stream_checks, check_sessions
from v6_assets.defs.freshness import DAILY_FRESHNESS
from v6_assets.defs.metadata import largest_rows_preview, markdown_table, range_label, table_schema
from v6_assets.defs.partitions import trading_day_partitions
from v6_assets.defs.resources import LakeResource
from v6_assets.pipeline import book

executions = stream_spec(EXECUTIONS)
account_values = stream_spec(ACCOUNT_VALUES)

_EX, _EOD, _PNL = EXECUTIONS.name, EOD_POSITIONS.name, DAILY_PNL.name
BOOK_PNL_LINEAGE: dict[str, list[tuple[str, str]]] = {
    **{c: [(_PNL, c)] for c in ("trade_date", "account", "con_id", "symbol", "sec_type", "expiry", "strike", "right")},
    "multiplier": [(_PNL, "multiplier"), (_EX, "multiplier")],
    "currency": [(_PNL, "currency")],
    "position": [(_PNL, "position")],
    "prev_position": [(_PNL, "prev_position")],
    "mark": [(_EOD, "market_price"), (_EOD, "ib_value")],
    "prev_mark": [(_EOD, "market_price"), (_EOD, "ib_value")],
    "executions": [(_EX, "exec_id")],
    "executed_quantity": [(_EX, "quantity")],
    "unexplained_quantity": [(_PNL, "position"), (_PNL, "prev_position"), (_EX, "quantity")],
    "position_mtm": [(_PNL, "prev_position"), (_EOD, "market_price")],
    "transaction_mtm": [(_EX, "quantity"), (_EX, "price"), (_EOD, "market_price")],
    "commissions": [(_EX, "commission")],
    "statement_pnl": [(_EX, "quantity"), (_EX, "price"), (_EX, "commission"), (_EOD, "market_price")],
    "pnl": [(_PNL, "pnl")],
    "pnl_source": [(_PNL, "pnl")],
    "ib_daily_pnl": [(_PNL, "ib_daily_pnl")],
    "statement_minus_pnl": [(_PNL, "pnl"), (_EX, "price"), (_EOD, "market_price")],
    "reason": [(_PNL, "is_baseline"), (_EX, "commission"), (_EOD, "is_stale_mark")],
}


@asset(
    partitions_def=trading_day_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    deps=[
        AssetDep(_EOD, partition_mapping=TimeWindowPartitionMapping(start_offset=-1, end_offset=0)),
        AssetDep(_PNL),
        AssetDep(_EX, partition_mapping=TimeWindowPartitionMapping(start_offset=0, end_offset=1)),
    ],
    kinds={"polars", "deltalake"},
    group_name=GROUP_DAILY,
    freshness_policy=DAILY_FRESHNESS,
    description=BOOK_PNL.description
    + " Executions are taken by their execution time (a fill re-requested after a reconnect may arrive in the next"
    " session's partition)." + _SIM_NOTE,
    metadata={"dagster/column_schema": table_schema(BOOK_PNL), "dagster/table_name": BOOK_PNL.name},
)
def book_pnl(context: AssetExecutionContext, lake: LakeResource) -> MaterializeResult:
    days = run_sessions(context)
    lk = lake.lake()
    require_upstream(context, lk, BOOK_PNL.name, days)
    run = book.refresh_book_pnl(lk, days)
    frame = run.frame
    computed = frame.filter(frame["statement_pnl"].is_not_null())
    return MaterializeResult(
        metadata={
            **_common_metadata(BOOK_PNL, frame, days, run.written, BOOK_PNL_LINEAGE),
            "covers": range_label(days),
            "executions_booked": run.executions,
            "positions_with_statement_pnl": computed.height,
            "positions_without_statement_pnl": frame.height - computed.height,
            "preview": largest_rows_preview(
                frame,
                "statement_pnl",
                [
                    "trade_date",
                    "account",
                    "symbol",
                    "right",
                    "strike",
                    "position",
                    "executions",
                    "statement_pnl",
                    "pnl",
                    "ib_daily_pnl",
                    "reason",
                ],
                title="Largest statement PnL" + (" (SIMULATED)" if SIMULATED else ""),
            ),
        }
    )


@asset_check(
    asset=book_pnl,
    name="statement_matches_pnl",
    blocking=True,
    description=(
        "Every position whose statement PnL (from the book: marks, executions, commissions) and average-cost PnL "
        "(daily_pnl, from IB's unrealized/realized) are both known agrees to the cent; the ones that differ are "
        "listed with the reason when known. Comparing nothing while positions are open is a warning."
    ),
)
def statement_matches_pnl(context: AssetCheckExecutionContext, lake: LakeResource) -> AssetCheckResult:
    lk = lake.lake()
    days = check_sessions(context, lk, BOOK_PNL.name)
    comparison = book.statement_against_pnl(lk, days, HALF_CENT)
    columns = ["trade_date", "account", "con_id", "statement_pnl", "pnl", "statement_minus_pnl", "reason"]
    worst = comparison.off["statement_minus_pnl"].abs().max() if comparison.off.height else None
    nothing = comparison.compared == 0 and comparison.open_positions > 0
    return AssetCheckResult(
        passed=comparison.off.height == 0 and not nothing,
        severity=AssetCheckSeverity.WARN if nothing and comparison.off.height == 0 else AssetCheckSeverity.ERROR,
        description=(
            f"compared nothing while {comparison.open_positions} positions are open"
            if nothing
            else f"{comparison.compared} positions compared, {comparison.off.height} differ by more than a cent"
        ),
        metadata={
            "sessions": [d.isoformat() for d in days],
            "compared_positions": comparison.compared,
            "open_positions": comparison.open_positions,
            "differ": comparison.off.height,
            "max_abs_difference": format_cents(float(worst) if isinstance(worst, int | float) else None),
            "differences": markdown_table(comparison.off.head(50), columns),
            "without_statement_pnl": markdown_table(comparison.unexplained.head(50), columns),
        },
    )


BOOK_ASSETS: list[Any] = [book_pnl]
BOOK_STREAM_SPECS = [executions, account_values]


executions_checks = _stream_checks(EXECUTIONS.name, executions)
account_values_checks = _stream_checks(ACCOUNT_VALUES.name, account_values)


def book_checks() -> Sequence[AssetChecksDefinition]:
    return [*executions_checks, *account_values_checks, statement_matches_pnl]
