"""The position lifecycle asset: ``position_events`` (opened ... closed, expired, exercised, assigned) per session.

    eod_positions (D, D-1) ──┐
    executions ──────────────┴─> position_events   (check: every_change_explained)

The computation is ``v6_assets.pipeline.position_events`` (pure part: ``v6_assets.analytics.position_events``);
this module only declares the asset, its check and their metadata.
"""

from typing import Any

import polars as pl
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetDep,
    AssetExecutionContext,
    BackfillPolicy,
    MaterializeResult,
    MetadataValue,
    TimeWindowPartitionMapping,
    asset,
    asset_check,
)

from v6_assets import sessions
from v6_assets.contracts.lifecycle import EVENTS, LIFECYCLE_EVENTS, UNEXPLAINED
from v6_assets.contracts.lifecycle_tables import POSITION_EVENTS
from v6_assets.contracts.tables import EOD_POSITIONS, EXECUTIONS, TRADE_DATE
from v6_assets.defs.assets import _SIM_NOTE, GROUP_DAILY, _common_metadata, require_upstream, run_sessions
from v6_assets.defs.checks import check_sessions
from v6_assets.defs.freshness import DAILY_FRESHNESS
from v6_assets.defs.metadata import markdown_table, range_label, table_schema
from v6_assets.defs.partitions import trading_day_partitions
from v6_assets.defs.resources import LakeResource
from v6_assets.pipeline.position_events import refresh_position_events

_EOD, _EX = EOD_POSITIONS.name, EXECUTIONS.name
_CONTRACT = ("account", "con_id", "symbol", "sec_type", "expiry", "strike", "right", "multiplier", "currency")
LINEAGE: dict[str, list[tuple[str, str]]] = {
    TRADE_DATE: [(_EOD, TRADE_DATE), (_EX, "exec_time")],
    **{c: [(_EOD, c)] for c in _CONTRACT},
    "seq": [(_EX, "exec_time")],
    "event": [(_EOD, "position"), (_EX, "quantity")],
    "event_at": [(_EX, "exec_time"), (_EOD, "position_changed_at")],
    "quantity": [(_EOD, "position"), (_EX, "quantity")],
    "position_before": [(_EOD, "position"), (_EX, "quantity")],
    "position_after": [(_EOD, "position"), (_EX, "quantity")],
    "price": [(_EX, "price"), (_EOD, "strike"), (_EOD, "market_price")],
    "commission": [(_EX, "commission")],
    "exec_id": [(_EX, "exec_id")],
    "linked_con_id": [(_EOD, "con_id")],
    "linked_quantity": [(_EOD, "position")],
}
PNL_CONVENTION = (
    " Daily PnL on an exercise/assignment day (the statement's convention, see docs/lifecycle.md): the option leg "
    "is closed at IB's booking price (0 when physically settled or expired, the intrinsic value when cash-settled) "
    "and its day's PnL is the loss of its previous mark; the stock leg opens at the strike and its day's PnL is "
    "shares x (stock close - strike). Their sum is the economic result; neither leg is netted into the other."
)
PREVIEW = ["trade_date", "account", "con_id", "symbol", "sec_type", "right", "strike", "event", "quantity",
           "position_after", "price", "exec_id", "linked_con_id"]  # fmt: skip


@asset(
    partitions_def=trading_day_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    deps=[
        AssetDep(_EOD, partition_mapping=TimeWindowPartitionMapping(start_offset=-1, end_offset=0)),
        AssetDep(_EX, partition_mapping=TimeWindowPartitionMapping(start_offset=0, end_offset=1)),
    ],
    kinds={"polars", "deltalake"},
    group_name=GROUP_DAILY,
    freshness_policy=DAILY_FRESHNESS,
    description=POSITION_EVENTS.description + PNL_CONVENTION + _SIM_NOTE,
    metadata={"dagster/column_schema": table_schema(POSITION_EVENTS), "dagster/table_name": POSITION_EVENTS.name},
)
def position_events(context: AssetExecutionContext, lake: LakeResource) -> MaterializeResult:
    days = run_sessions(context)
    lk = lake.lake()
    require_upstream(context, lk, POSITION_EVENTS.name, days)
    run = refresh_position_events(lk, days)
    frame = run.frame
    counts = {e: int(frame.filter(pl.col("event") == e).height) for e in EVENTS}
    lifecycle = frame.filter(pl.col("event").is_in(LIFECYCLE_EVENTS))
    return MaterializeResult(
        metadata={
            **_common_metadata(POSITION_EVENTS, frame, days, run.written, LINEAGE),
            "covers": range_label(days),
            "executions_used": run.executions,
            "events": MetadataValue.json(counts),
            "lifecycle": MetadataValue.md(markdown_table(lifecycle.head(50), PREVIEW)),
        }
    )


@asset_check(
    asset=position_events,
    name="every_change_explained",
    description=(
        "Every position change of the run's sessions is explained by an execution or by the lifecycle (expiry, "
        "exercise, assignment with its stock leg); the 'unexplained' rows (e.g. executions the stream missed) are "
        "listed. A warning, not blocking: the PnL does not depend on it. No events while positions changed warns."
    ),
)
def every_change_explained(context: AssetCheckExecutionContext, lake: LakeResource) -> AssetCheckResult:
    lk = lake.lake()
    days = check_sessions(context, lk, POSITION_EVENTS.name)
    frame = lk.read_sessions(POSITION_EVENTS, days) if days else pl.DataFrame(schema=POSITION_EVENTS.polars_schema)
    unexplained = frame.filter(pl.col("event") == UNEXPLAINED)
    eod = lk.read_sessions(EOD_POSITIONS, days) if days else pl.DataFrame(schema=EOD_POSITIONS.polars_schema)
    # positions whose quantity changed during their session (not merely updated)
    changed = eod.filter(pl.col("position_changed_at").is_not_null()).filter(
        sessions.trade_date_expr("position_changed_at") == pl.col(TRADE_DATE)
    )
    nothing = frame.height == 0 and changed.height > 0
    return AssetCheckResult(
        passed=unexplained.height == 0 and not nothing,
        severity=AssetCheckSeverity.WARN,
        description=(
            f"no events while {changed.height} EOD rows report a position change"
            if nothing
            else f"{frame.height} events, {unexplained.height} unexplained"
        ),
        metadata={
            "sessions": [d.isoformat() for d in days],
            "events": frame.height,
            "unexplained": unexplained.height,
            "unexplained_rows": MetadataValue.md(markdown_table(unexplained.head(50), PREVIEW)),
        },
    )


LIFECYCLE_ASSETS: list[Any] = [position_events]
LIFECYCLE_CHECKS = [every_change_explained]
