"""``v6 replay SCENARIO``: a scenario file through the real path, to check our numbers on a case computed by hand.

The gateway simulator (in this process, over a loopback socket) plays the scenario from its clock start; the
unmodified streamer (ib_async, read-only, its timestamps on the simulator's clock) writes the durable spool; the spool
is drained into Delta exactly as the sensor does; then the project's own ``daily_assets`` job computes the sessions
as ONE range run (the partition-range tags a single-run backfill gets) on an ephemeral Dagster instance, with the
project's ``Definitions`` and the lake resource pointed at the replay's lake.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import polars as pl

from v6_assets import sessions as nyse
from v6_assets.contracts.clock import utc_now
from v6_assets.lake import Lake

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
# The streamer rotates the one updatePortfolio account every 180 s of REAL time; simulated days pass in seconds here.
PORTFOLIO_ROTATION_S = 1.0
# After the last session's EOD cut: one more simulated minute and one real second for the last messages to land.
AFTER_LAST_CUT = timedelta(minutes=1)
SETTLE_REAL_S = 1.0
# Simulated seconds per real second unless --speed: as make demo seeds (the simulator still holds 1 real second after
# each close and before each cut, so nothing sent before a cut arrives after it).
DEFAULT_MIN_SPEED = 12_000.0


class ReplayError(RuntimeError):
    """The scenario cannot be replayed as asked (the message says why and what to do)."""


@dataclass
class ReplayResult:
    scenario: str
    sessions: list[date]
    lake_uri: str
    state_dir: Path
    rows_written: int
    run_success: bool
    failed_checks: list[str] = field(default_factory=list)
    pnl_by_account: pl.DataFrame = field(default_factory=pl.DataFrame)
    duration_s: float = 0.0


def replay_sessions(first: date, count: int) -> list[date]:
    days = [first]
    while len(days) < count:
        days.append(nyse.next_session(days[-1]))
    return days


def _pnl_by_account(lake: Lake, days: list[date]) -> pl.DataFrame:
    rows = lake.read_sessions("daily_pnl", days)
    return (
        rows.group_by("trade_date", "account", "currency")
        .agg(
            pl.col("pnl").sum().alias("pnl"),
            pl.col("pnl").is_null().sum().alias("unknown"),
            pl.len().alias("positions"),
        )
        .with_columns(
            pl.when(pl.col("unknown") == pl.col("positions")).then(None).otherwise(pl.col("pnl")).alias("pnl")
        )
        .sort("trade_date", "account", "currency")
    )


def _run_daily_job(lake: Lake, days: list[date]) -> tuple[bool, list[str]]:
    from dagster import DagsterInstance, Definitions

    from v6_assets.definitions import defs
    from v6_assets.defs.resources import LakeResource

    replay_defs = Definitions(
        assets=defs.assets,
        asset_checks=defs.asset_checks,
        jobs=defs.jobs,
        executor=defs.executor,
        resources={**(defs.resources or {}), "lake": LakeResource(uri=lake.uri)},
    )
    job = replay_defs.resolve_job_def("daily_assets")
    tags = {RANGE_START_TAG: days[0].isoformat(), RANGE_END_TAG: days[-1].isoformat()}
    with DagsterInstance.ephemeral() as instance:
        result = job.execute_in_process(instance=instance, tags=tags, raise_on_error=False)
    failed = [
        f"{e.asset_key.to_user_string()}:{e.check_name}" for e in result.get_asset_check_evaluations() if not e.passed
    ]
    return result.success, failed


def replay_scenario(
    scenario_path: Path,
    sessions: int,
    state_dir: Path,
    lake_uri: str | None = None,
    speed: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> ReplayResult:
    from v6_assets.gateway_sim import GatewaySimulator, load_scenario
    from v6_assets.ib import IBPositionStreamer, Spool, StreamerSettings
    from v6_assets.pipeline.ingest import drain_spool_to_lake

    say = progress or (lambda _m: None)
    started = time.monotonic()
    if sessions < 1:
        raise ReplayError("--sessions must be at least 1")
    # A path, or a built-in scenario's name ("demo"): load_scenario tells them apart.
    scenario = load_scenario(str(scenario_path) if scenario_path.exists() else scenario_path.name)
    first = nyse.session_for(scenario.clock.start)
    days = replay_sessions(first, sessions)
    last_cut = nyse.eod_cut(days[-1])
    if last_cut + AFTER_LAST_CUT > utc_now():
        raise ReplayError(
            f"the scenario's session {days[-1]} has not closed yet (its EOD cut is {last_cut.isoformat()}): the "
            "simulator never runs ahead of the wall clock; replay fewer sessions or start the scenario earlier"
        )
    lake = Lake.for_uri(lake_uri) if lake_uri else Lake(str(state_dir / "lake"))
    if any(lake.exists(t) for t in ("position_updates", "greeks_updates")):
        raise ReplayError(f"the lake {lake.uri} already holds streamed rows: replay into a new --lake (or --out)")
    home = state_dir / "v6"
    sim = GatewaySimulator(scenario, speed=speed or max(scenario.clock.speed, DEFAULT_MIN_SPEED), port=0)
    with sim.running():
        settings = StreamerSettings(port=sim.port, client_id=61, home=home, portfolio_rotation_s=PORTFOLIO_ROTATION_S)
        streamer = IBPositionStreamer()
        streamer.start(settings, clock=sim.clock.now)
        try:
            say(f"replaying {scenario.name}: {len(days)} sessions {days[0]}..{days[-1]}")
            while sim.clock.now() < last_cut + AFTER_LAST_CUT:
                if not streamer.running:
                    raise ReplayError(f"the streamer stopped: {streamer.status().describe()}")
                time.sleep(0.1)
            time.sleep(SETTLE_REAL_S)
        finally:
            streamer.stop()
    with Spool(settings.spool_path) as spool:
        drained = drain_spool_to_lake(spool, lake, settings.stream_id, max_rows=100_000_000)
    say(f"streamed {drained.rows_written} rows into {lake.uri}; computing the daily assets as one range run")
    success, failed = _run_daily_job(lake, days)
    pnl = _pnl_by_account(lake, days) if lake.exists("daily_pnl") else pl.DataFrame()
    return ReplayResult(
        scenario=scenario.name,
        sessions=days,
        lake_uri=lake.uri,
        state_dir=state_dir,
        rows_written=drained.rows_written,
        run_success=success,
        failed_checks=failed,
        pnl_by_account=pnl,
        duration_s=time.monotonic() - started,
    )
