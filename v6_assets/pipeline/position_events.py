"""``position_events`` of a run's sessions from the lake: the stored eod_positions of D and D-1 and the executions
(``analytics.position_events``), written with one partition overwrite. No Dagster import here."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date

import polars as pl

from v6_assets import sessions
from v6_assets.analytics.position_events import position_events
from v6_assets.contracts.lifecycle_tables import POSITION_EVENTS
from v6_assets.contracts.tables import EOD_POSITIONS, TRADE_DATE
from v6_assets.lake import Lake, OverwriteResult
from v6_assets.pipeline.book import session_executions
from v6_assets.pipeline.daily import previous_eod_state, require_eod


def compute_position_events(lake: Lake, days: Sequence[date]) -> tuple[pl.DataFrame, int]:
    """The events of ``days`` (nothing written) and how many executions they used."""
    eod = lake.read_sessions(EOD_POSITIONS, days)
    previous = previous_eod_state(lake, days[0])
    frames = [eod] if previous is None else [previous, eod]
    states = pl.concat([f.select(TRADE_DATE, "account", "con_id", "position") for f in frames], how="vertical_relaxed")
    following = {sessions.previous_session(d): d for d in days}
    prev = (
        states.filter(pl.col(TRADE_DATE).is_in(list(following)))
        .with_columns(pl.col(TRADE_DATE).replace_strict(following, return_dtype=pl.Date))
        .select(TRADE_DATE, "account", "con_id", pl.col("position").fill_null(0.0).alias("prev_position"))
    )
    executions = session_executions(lake, days)
    baseline = [days[0]] if previous is None else []
    return position_events(eod, prev, executions, baseline), executions.height


@dataclass(frozen=True)
class PositionEventsRun:
    frame: pl.DataFrame
    written: OverwriteResult
    executions: int


def refresh_position_events(
    lake: Lake, days: Sequence[date], eod_computed: Collection[date] | None = None
) -> PositionEventsRun:
    """position_events of ``days``; fails (``MissingUpstreamError``) when an eod_positions session was never
    computed."""
    require_eod(lake, POSITION_EVENTS.name, days, eod_computed)
    frame, used = compute_position_events(lake, days)
    return PositionEventsRun(frame, lake.overwrite_sessions(POSITION_EVENTS, frame, days), used)
