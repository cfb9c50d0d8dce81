"""pnl_explain, risk_scenarios and expiry_ladder of a run's sessions, read from and written to the lake.

Dagster-free, like ``v6_assets.pipeline.daily`` (whose previous-EOD and missing-upstream rules these reuse): each
table is written with ONE partition overwrite of the run's range. pnl_explain reads daily_pnl of D and eod_positions
of D and D-1; risk_scenarios and expiry_ladder read eod_positions of D. An upstream session that was never computed
fails the run (``MissingUpstreamError``), never 0 rows.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date

import polars as pl

from v6_assets import analytics
from v6_assets.contracts.tables import DAILY_PNL, EOD_POSITIONS, EXPIRY_LADDER, PNL_EXPLAIN, RISK_SCENARIOS, TableDef
from v6_assets.lake import Lake, OverwriteResult
from v6_assets.pipeline import daily
from v6_assets.pipeline.settings import PipelineEnvironment


@dataclass(frozen=True)
class RiskRun:
    """What a refresh computed and wrote."""

    frame: pl.DataFrame
    written: OverwriteResult


def require_upstream_table(
    lake: Lake, upstream: TableDef, table: str, days: Sequence[date], computed: Collection[date] | None
) -> None:
    """Raise ``MissingUpstreamError`` when a session of ``days`` of ``upstream`` was never computed (not in
    ``computed`` and without rows; ``computed`` None: unknown, the stored rows are taken as they are)."""
    if upstream.name == EOD_POSITIONS.name:
        daily.require_eod(lake, table, days, computed)
        return
    if computed is None:
        return
    absent = [d for d in days if d not in computed]
    if not absent:
        return
    present = set(lake.read_sessions(upstream, absent)["trade_date"].unique().to_list())
    missing = [d for d in absent if d not in present]
    if missing:
        shown = ", ".join(d.isoformat() for d in missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise daily.MissingUpstreamError(
            f"{table} cannot be computed: {upstream.name} for {len(missing)} session(s) ({shown}) was never "
            f"computed: materialize it first (or run {upstream.name} and {table} together). Nothing was written."
        )


def refresh_pnl_explain(
    lake: Lake,
    days: Sequence[date],
    eod_computed: Collection[date] | None = None,
    pnl_computed: Collection[date] | None = None,
) -> RiskRun:
    """pnl_explain (detail + roll-up rows) of ``days`` from daily_pnl of D and eod_positions of D and D-1."""
    require_upstream_table(lake, EOD_POSITIONS, PNL_EXPLAIN.name, days, eod_computed)
    require_upstream_table(lake, DAILY_PNL, PNL_EXPLAIN.name, days, pnl_computed)
    eod = lake.read_sessions(EOD_POSITIONS, days)
    pnl = lake.read_sessions(DAILY_PNL, days)
    previous = daily.previous_eod_state(lake, days[0])
    detail = analytics.pnl_explain(pnl, eod, previous, list(days))
    frame = analytics.explain_with_rollups(detail)
    return RiskRun(frame=frame, written=lake.overwrite_sessions(PNL_EXPLAIN, frame, days))


def scenario_grid(settings: PipelineEnvironment | None = None) -> analytics.ScenarioGrid:
    spot, vol = (settings or PipelineEnvironment.read()).scenario_shifts()
    return analytics.ScenarioGrid(spot_shifts_pct=spot, vol_shifts_pts=vol)


def refresh_risk_scenarios(
    lake: Lake,
    days: Sequence[date],
    eod_computed: Collection[date] | None = None,
    settings: PipelineEnvironment | None = None,
) -> RiskRun:
    """risk_scenarios of ``days`` from eod_positions of D (grid and rate from the settings)."""
    env = settings or PipelineEnvironment.read()
    require_upstream_table(lake, EOD_POSITIONS, RISK_SCENARIOS.name, days, eod_computed)
    eod = lake.read_sessions(EOD_POSITIONS, days)
    frame = analytics.risk_scenarios(eod, list(days), scenario_grid(env), rate=env.risk_rate)
    return RiskRun(frame=frame, written=lake.overwrite_sessions(RISK_SCENARIOS, frame, days))


def refresh_expiry_ladder(
    lake: Lake,
    days: Sequence[date],
    eod_computed: Collection[date] | None = None,
    settings: PipelineEnvironment | None = None,
) -> RiskRun:
    """expiry_ladder of ``days`` from eod_positions of D (pin rule from the settings)."""
    env = settings or PipelineEnvironment.read()
    require_upstream_table(lake, EOD_POSITIONS, EXPIRY_LADDER.name, days, eod_computed)
    eod = lake.read_sessions(EOD_POSITIONS, days)
    frame = analytics.expiry_ladder(eod, pin_pct=env.pin_pct, pin_sessions=env.pin_sessions)
    return RiskRun(frame=frame, written=lake.overwrite_sessions(EXPIRY_LADDER, frame, days))
