"""Seeding SIMULATED history through the production path, for ``make demo`` and the end-to-end tests.

The unmodified streamer (ib_async, read-only, one connection over loopback TCP, its timestamps on the simulator's
clock) streams from the gateway simulator into the durable spool while the simulator replays past sessions; then
``drain_spool_to_lake`` moves the spool into Delta, exactly as the sensor does.

Lock-step, so seeding twice gives identical tables: the simulator (``GatewaySimulator(lockstep=True)``) moves its
clock one simulated step at a time (``gateway_sim.lockstep``); after each step the seed waits until the streamer took
in everything in both directions (the simulator's bytes sent/received on the connection equal ib_async's
``connectionStats()``, no request held back by the pacing, and twice in a row unchanged, read on the streamer's own
loop so its handlers ran) and ran its timers (portfolio rotation, greeks rotation, close grace) on the simulated
clock. Nothing depends on real time until the clock catches up with the wall clock and the simulator goes live.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as dt_time
from pathlib import Path
from typing import TYPE_CHECKING

from v6_assets.contracts.clock import utc_now
from v6_assets.sessions import NEW_YORK, last_sessions

if TYPE_CHECKING:
    from v6_assets.gateway_sim import GatewaySimulator
    from v6_assets.gateway_sim.lockstep import Lockstep
    from v6_assets.ib import IBPositionStreamer, StreamerSettings
    from v6_assets.lake import Lake

# While seeding the streamer's timers run on the simulated clock: rotate the portfolio account every 180 simulated
# seconds (IB's own push period) and pass every greeks tick (the throttle's trailing edge would depend on when the
# real-time flush ran).
SEED_PORTFOLIO_ROTATION_S = 180.0
SEED_GREEKS_THROTTLE_S = 0.0
# A simulated step of the seed: 30 min gives ~10 sessions in a few thousand rows (every close and EOD cut is a step).
SEED_STEP = timedelta(minutes=30)
_SETTLE_POLL_S = 0.002


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
    step: timedelta = SEED_STEP,
) -> SeedResult:
    """Stream from the running lock-step simulator until its clock has caught up with the wall clock, then drain to
    Delta.

    ``sim`` is a started ``GatewaySimulator(lockstep=True)``; ``settings`` the ``StreamerSettings`` the live sensor
    will use (same stream id and spool, so the live stream continues after the seed). The streamer's timestamps come
    from the simulator's clock, so every update lands in the session it was simulated in.
    """
    # Imported on use, like Dagster below: the demo CLI starts (and answers --help) without loading them.
    from v6_assets.gateway_sim.lockstep import Lockstep
    from v6_assets.ib import IBPositionStreamer, Spool
    from v6_assets.pipeline.ingest import drain_spool_to_lake

    started = time.monotonic()
    deadline = started + timeout_s
    lockstep = Lockstep(sim, step)
    seed_settings = dataclasses.replace(
        settings, portfolio_rotation_s=SEED_PORTFOLIO_ROTATION_S, greeks_throttle_s=SEED_GREEKS_THROTTLE_S
    )
    streamer = IBPositionStreamer()
    streamer.start(seed_settings, clock=sim.clock.now, lockstep=True)
    last_note = time.monotonic()
    try:
        while True:
            # What the step sent is taken in; then the streamer's timers (a rotation's answer is an exchange of its
            # own, so it never shares a TCP read with the step's ticks) and what they asked for.
            _settle(lockstep, streamer, settings.client_id, deadline, timeout_s)
            streamer.lockstep_pass(run_timers=True)
            _settle(lockstep, streamer, settings.client_id, deadline, timeout_s)
            if lockstep.advance() is None:
                break  # caught up with the wall clock: the simulator is live
            if progress is not None and time.monotonic() - last_note >= 5:
                last_note = time.monotonic()
                now = sim.clock.now()
                progress(f"  simulated {now:%a %Y-%m-%d %H:%M} UTC, {len(sim.sessions_closed)} sessions closed")
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


def _settle(
    lockstep: Lockstep, streamer: IBPositionStreamer, client_id: int, deadline: float, timeout_s: float
) -> None:
    """Wait until the streamer took in all the simulator sent and the simulator all the streamer sent: the same
    counters twice in a row, balanced, read on the streamer's loop (so its handlers of what arrived have run)."""
    previous = None
    while True:
        client = streamer.lockstep_pass()
        server = next((w for w in lockstep.wire() if w.client_id == client_id), None)
        if (
            client is not None
            and server is not None
            and client.bytes_received == server.bytes_sent
            and client.bytes_sent == server.bytes_received
            and client.requests_held == 0
            and server.frames_held == 0
        ):
            if (client, server) == previous:
                return
            previous = (client, server)
            continue
        previous = None
        if time.monotonic() > deadline:
            raise SeedError(
                f"seeding did not catch up with the wall clock within {timeout_s:.0f}s: the streamer did not take in "
                f"the step at {lockstep.sim.clock.now():%Y-%m-%d %H:%M} UTC (streamer {client}, simulator {server})"
            )
        time.sleep(_SETTLE_POLL_S)


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
