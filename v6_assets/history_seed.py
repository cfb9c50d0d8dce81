"""Seeding SIMULATED history through the production path, for ``make demo`` and the end-to-end tests.

The unmodified streamer (ib_async, read-only, one connection, its timestamps on the simulator's clock) streams from
the gateway simulator into the durable spool while the simulator replays past sessions at high speed; then
``drain_spool_to_lake`` moves the spool into Delta, exactly as the sensor does.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from datetime import time as dt_time
from pathlib import Path
from typing import TYPE_CHECKING

from v6_assets.contracts.clock import utc_now
from v6_assets.sessions import NEW_YORK, last_sessions

if TYPE_CHECKING:
    from v6_assets.gateway_sim import GatewaySimulator
    from v6_assets.ib import StreamerSettings
    from v6_assets.lake import Lake

# The streamer serves one account's updatePortfolio at a time and rotates every 180 s of REAL time; while seeding,
# 180 simulated seconds pass in a few milliseconds, so rotate every second to keep all accounts' marks fresh.
SEED_PORTFOLIO_ROTATION_S = 1.0


class SeedError(RuntimeError):
    """The simulator's clock did not catch up with the wall clock in time."""


@dataclass(frozen=True)
class SeedResult:
    stream_id: str
    rows_written: int
    rows_per_session: dict[str, int]
    rows_per_table_session: dict[str, dict[str, int]]
    sessions_closed: list[str]
    caught_up_at: datetime
    duration_s: float


def seed_history(
    sim: GatewaySimulator,
    settings: StreamerSettings,
    lake: Lake,
    *,
    timeout_s: float = 600.0,
    progress: Callable[[str], None] | None = None,
) -> SeedResult:
    """Stream from the running simulator until its clock has caught up with the wall clock, then drain to Delta.

    ``sim`` is a started ``GatewaySimulator``; ``settings`` the ``StreamerSettings`` the live sensor will use (same
    stream id and spool, so the live stream continues after the seed). The streamer's timestamps come from the
    simulator's clock, so every update lands in the session it was simulated in.
    """
    # Imported on use, like Dagster below: the demo CLI starts (and answers --help) without loading them.
    from v6_assets.ib import IBPositionStreamer, Spool
    from v6_assets.pipeline.ingest import drain_spool_to_lake

    started = time.monotonic()
    seed_settings = dataclasses.replace(settings, portfolio_rotation_s=SEED_PORTFOLIO_ROTATION_S)
    streamer = IBPositionStreamer()
    streamer.start(seed_settings, clock=sim.clock.now)
    last_note = 0.0
    try:
        while sim.clock.speed != 1.0:
            if time.monotonic() - started > timeout_s:
                raise SeedError(f"seeding did not catch up with the wall clock within {timeout_s:.0f}s")
            if progress is not None and time.monotonic() - last_note >= 5:
                last_note = time.monotonic()
                now = sim.clock.now()
                progress(f"  simulated {now:%a %Y-%m-%d %H:%M} UTC, {len(sim.sessions_closed)} sessions closed")
            time.sleep(0.2)
        # One more second of live stream so the last refreshes reach the spool, then hand over the connection.
        time.sleep(1.0)
        caught_up_at = sim.clock.now()
    finally:
        streamer.stop()
    with Spool(settings.spool_path) as spool:
        result = drain_spool_to_lake(spool, lake, settings.stream_id, max_rows=10_000_000)
    per_session: dict[str, int] = {}
    per_table: dict[str, dict[str, int]] = {}
    for table in result.tables.values():
        for day, n in table.rows_per_session.items():
            per_session[day.isoformat()] = per_session.get(day.isoformat(), 0) + n
            per_table.setdefault(table.table, {})[day.isoformat()] = n
    return SeedResult(
        stream_id=settings.stream_id,
        rows_written=result.rows_written,
        rows_per_session=dict(sorted(per_session.items())),
        rows_per_table_session=per_table,
        sessions_closed=list(sim.sessions_closed),
        caught_up_at=caught_up_at,
        duration_s=time.monotonic() - started,
    )


def report_seed_materializations(dagster_home: Path, seed: SeedResult) -> int:
    """Record the seeded sessions of the streamed tables in the demo's Dagster instance.

    The seed writes Delta directly (no sensor tick ran), so without these runless events the UI would show the
    seeded history of ``position_updates`` / ``greeks_updates`` as missing. Returns the number of events reported.
    """
    from dagster import AssetMaterialization, DagsterInstance
    from dagster._core.instance.ref import InstanceRef  # no public way to pass config overrides

    from v6_assets.defs.partitions import trading_day_partitions

    # The storage dir is given directly, never through os.environ: the simulator's threads run meanwhile, and
    # rewriting the process environment while native threads read it is a crash (glibc setenv is not thread-safe).
    ref = InstanceRef.from_dir(str(dagster_home), overrides={"storage": {"sqlite": {"base_dir": str(dagster_home)}}})
    reported = 0
    with DagsterInstance.from_ref(ref) as instance:
        for table, sessions in sorted(seed.rows_per_table_session.items()):
            for key, rows in sorted(sessions.items()):
                if not trading_day_partitions.has_partition_key(key):
                    continue
                instance.report_runless_asset_event(
                    AssetMaterialization(
                        asset_key=table,
                        partition=key,
                        description=f"{rows} rows of SIMULATED history seeded by make demo",
                        metadata={"rows": rows, "stream_id": seed.stream_id, "simulated": True, "seeded": True},
                    )
                )
                reported += 1
    return reported


# The job computing the seeded history (eod_positions, daily_pnl, exposure and their checks) in one range run.
DAILY_JOB = "daily_assets"
HISTORY_WHY = "make demo: compute the seeded history (every seeded session before the current one) in one run"


def history_sessions(seed: SeedResult, now: datetime | None = None) -> list[str]:
    """The seeded sessions to compute at start, oldest first: every session with seeded rows before the current one
    (the sensor's first refresh computes the current session) that is a partition."""
    from v6_assets.defs.partitions import trading_day_partitions
    from v6_assets.sessions import current_session

    today = current_session(now).isoformat()
    return [d for d in sorted(seed.rows_per_session) if d < today and trading_day_partitions.has_partition_key(d)]


def history_start(sessions_back: int, now: datetime | None = None) -> datetime:
    """09:00 New York time, ``sessions_back`` NYSE sessions before today's (or the next) session."""
    today = (now or utc_now()).astimezone(NEW_YORK).date()
    first = last_sessions(sessions_back + 1, today)[0]
    return datetime.combine(first, dt_time(9, 0), NEW_YORK).astimezone(UTC)
