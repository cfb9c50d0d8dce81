"""``make demo``: the gateway simulator, 10 sessions of SIMULATED history, and the Dagster stack on 127.0.0.1:3000.

What it does, in order:

1. Starts the IB gateway simulator (``demo`` scenario: 3 accounts, SPY/AAPL/QQQ options, ES futures options, shorts,
   trades during the day) in this process, its simulated clock starting ``--sessions`` NYSE sessions ago and running
   ``--seed-speed`` times faster than real time until it catches up with the wall clock (then it runs at speed 1).
2. Seeds the history through the SAME path as production: the unmodified streamer (ib_async, read-only, one
   connection, its timestamps on the simulator's clock) -> the durable spool -> ``drain_spool_to_lake`` -> Delta.
   Everything is marked simulated: ``V6_DEMO=1`` (asset descriptions and metadata say SIMULATED) and the demo's
   state lives apart from real data, under ``$V6_HOME/demo`` (fresh on every start).
3. Starts the Dagster stack (``v6_assets.supervisor``: code server, webserver and daemon supervised one by one, in
   its own session, ``--shutdown-pipe``) against the simulator; its sensor takes over the same
   stream id and spool, so live updates continue where the seed stopped.
4. Ctrl-C (or SIGTERM / SIGHUP) stops the stack, waits for every process it started, then stops the simulator.

The parts live apart: ``v6_assets.devserver`` runs the stack (also for the end-to-end tests, benchmarks and
chaos runs), ``v6_assets.history_seed`` seeds the history (also for the end-to-end tests); this module is the CLI.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from datetime import date
from pathlib import Path
from types import FrameType

from v6_assets.devserver import (
    DEFAULT_PORT,
    LOOPBACK,
    RUN_DONE,
    DevServerError,
    StackProcess,
    StackWatchdog,
    launch_range_run,
    mark_nux_seen,
    port_is_free,
    run_status,
    stop_recorded_session,
)
from v6_assets.gateway_sim.scenario_model import Scenario, ScenarioError
from v6_assets.history_seed import (
    DAILY_JOB,
    HISTORY_WHY,
    SeedError,
    SeedResult,
    history_sessions,
    history_start,
    report_seed_materializations,
    seed_history,
)
from v6_assets.ib.settings import IBEnvironment
from v6_assets.sessions import NEW_YORK

DEFAULT_UI_PORT = DEFAULT_PORT
STACK_SID = "dagster_dev.sid"  # the session of the stack this demo started (stopped by the next demo if left)
DEFAULT_SESSIONS = 10
# Simulated seconds per real second while seeding: ~80 h of trading-time clock (10 sessions, nights skipped) in
# about 25 s; the simulator drops to speed 1 by itself once it reaches the wall clock.
DEFAULT_SEED_SPEED = 12000.0


class DemoError(RuntimeError):
    """The demo could not start (port in use, the stack exited...); the message says what to do."""


def demo_environment(
    base: Mapping[str, str], state: Path, sim_port: int, client_id: int, partitions_start: date | None = None
) -> dict[str, str]:
    """The environment of the demo's dagster dev: simulated, isolated state, pointed at the simulator; its partitions
    start at the first seeded session (``partitions_start``), not at years of "Missing" partitions."""
    env = {k: v for k, v in base.items() if not k.startswith(("V6_IB_", "DAGSTER_"))}
    if partitions_start is not None:
        env["V6_PARTITIONS_START"] = partitions_start.isoformat()
    env.setdefault("V6_STATEMENTS_INTERVAL_S", "10")  # the demo's statements arrive while someone watches
    env.update(
        V6_DEMO="1",
        V6_HOME=str(state),
        V6_LAKE_URI=str(state / "lake"),
        # the demo's statements never mix with a real statements folder
        V6_STATEMENTS_DIR=str(state / "statements"),
        DAGSTER_HOME=str(state / "dagster_home"),
        V6_IB_HOST=LOOPBACK,
        V6_IB_PORT=str(sim_port),
        V6_IB_CLIENT_ID=str(client_id),
        PYTHONUNBUFFERED="1",
    )
    return env


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextlib.contextmanager
def _interrupt_on_termination() -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP (terminal closed) all stop the demo in order.

    SIGINT is installed explicitly: a shell starting us in the background leaves it ignored, and Python then never
    raises KeyboardInterrupt.
    """
    previous = {sig: signal.signal(sig, _raise_interrupt) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _banner(url: str, state: Path, seed: SeedResult, sim_port: int, computing: Sequence[str]) -> str:
    sessions = ", ".join(seed.rows_per_session) or "none"
    computed = f"{computing[0]}..{computing[-1]} ({len(computing)} sessions, one range run)" if computing else "none"
    return f"""
================================================================================================
 v6_assets demo -- SIMULATED data (IB gateway simulator, scenario 'demo'), nothing touches a real account

 Start here:  {url}/assets/daily_pnl?view=events
   the last closed session's PnL per account, the session's status (pre-open / open / closed) and the
   PnL history of the last 20 sessions per account, at the top of the latest materialization
 Dagster UI:  {url}
   - Lineage ({url}/asset-groups): position_updates + greeks_updates (streamed) -> eod_positions
     -> daily_pnl, exposure (one partition per NYSE session)
   - Sensor ({url}/locations/v6_assets/sensors/ib_position_stream): each tick says what it did
 Seeded history: {seed.rows_written} rows for sessions {sessions}
   (simulated streamer -> spool -> Delta in {seed.duration_s:.0f}s; simulator on {LOOPBACK}:{sim_port})
 Computing eod_positions, daily_pnl, exposure of the seeded history: {computed}
   ({url}/runs); the sensor's first refresh computes the current session. Then IB's (simulated) Flex
   statements of those sessions are dropped and reconciled ({url}/assets/reconciliation).
 State (fresh each start): {state}   Delta tables: {state / "lake"}
 Logs: {state / "dagster_dev.log"}

 Ctrl-C stops everything this demo started.
================================================================================================
"""


def run_demo(
    *,
    project_dir: Path,
    state: Path,
    ui_port: int = DEFAULT_UI_PORT,
    sessions_back: int = DEFAULT_SESSIONS,
    seed_speed: float = DEFAULT_SEED_SPEED,
    sim_port: int = 0,
    client_id: int = 61,
    keep_running: bool = True,
    scenario_name: str = "demo",
) -> None:
    """The whole demo; returns after Ctrl-C (or at once after startup when ``keep_running`` is False).

    ``scenario_name``: a built-in scenario or a YAML file; its clock start moves to ``sessions_back`` sessions ago so
    its history is seeded like the demo's (events placed by ``session: N`` keep their place; ``at`` events do not)."""
    from v6_assets.gateway_sim import GatewaySimulator, load_scenario
    from v6_assets.ib import StreamerSettings
    from v6_assets.lake import Lake

    launched_at = time.monotonic()
    if not port_is_free(ui_port):
        raise DemoError(f"port {ui_port} on {LOOPBACK} is in use (another make run or demo?); stop it first")
    stop_recorded_session(state / STACK_SID, say=print)  # a stack a previous demo left running
    if state.exists():
        shutil.rmtree(state)
    (state / "dagster_home").mkdir(parents=True)
    shutil.copyfile(project_dir / "dagster.yaml", state / "dagster_home" / "dagster.yaml")

    start = history_start(sessions_back)
    scenario = load_scenario(scenario_name, start_time=start)
    print(f"Starting the IB gateway simulator: scenario 'demo', {sessions_back} sessions back, speed x{seed_speed:g}")
    sim = GatewaySimulator(
        scenario,
        port=sim_port,
        speed=seed_speed,
        truth_dir=state / "truth",
        record_path=state / "sim_requests.jsonl",
        lockstep=True,
    )
    with sim.running():
        first_session = start.astimezone(NEW_YORK).date()
        env = demo_environment(os.environ, state, sim.port, client_id, partitions_start=first_session)
        settings = StreamerSettings.from_env(env)
        lake = Lake.from_env(env)
        print(f"Seeding simulated history from {scenario.clock.start:%Y-%m-%d %H:%M} UTC through the streamer:")
        seed = seed_history(sim, settings, lake, progress=print)
        print(f"Seeded {seed.rows_written} rows over {len(seed.rows_per_session)} sessions in {seed.duration_s:.0f}s.")
        report_seed_materializations(state / "dagster_home", seed)
        dev = StackProcess(project_dir=project_dir, env=env, log_path=state / "dagster_dev.log", port=ui_port)
        print(f"Starting the Dagster stack on {dev.url} (log: {dev.log_path}) ...")
        dev.start()
        try:

            def record_session() -> None:
                (state / STACK_SID).write_text(f"{dev.sid}\n")

            record_session()
            mark_nux_seen(dev.url)
            computing = history_sessions(seed)
            history_run = (
                launch_range_run(dev.url, DAILY_JOB, computing[0], computing[-1], HISTORY_WHY) if computing else None
            )
            print(_banner(dev.url, state, seed, sim.port, computing), flush=True)
            # Heals a killed process of the stack (issue 17) on its own thread; this one reports the history run.
            watchdog_stop = threading.Event()
            watchdog = threading.Thread(
                target=StackWatchdog(dev, say=_say, on_restart=record_session).run,
                args=(watchdog_stop,),
                name="v6-stack-watchdog",
                daemon=True,
            )
            if keep_running:
                watchdog.start()
            try:
                while keep_running:
                    if history_run is not None:
                        try:
                            status = run_status(dev.url, history_run)
                        except DevServerError:
                            status = "unknown"  # the webserver is busy or restarting: ask again next second
                        if status in RUN_DONE:
                            print(
                                f"Seeded history computed ({len(computing)} sessions, run {status}) "
                                f"{time.monotonic() - launched_at:.0f}s after the demo started: "
                                f"{dev.url}/assets/daily_pnl",
                                flush=True,
                            )
                            history_run = None
                            if status == "SUCCESS":
                                _drop_statements(scenario, sim.truth["eod"], state, computing, dev.url)
                            else:
                                print("No statements dropped: the history they reconcile against did not compute.")
                    time.sleep(1.0)
            finally:
                watchdog_stop.set()
                if watchdog.is_alive():
                    watchdog.join(10)
        finally:
            # The terminal may be gone by now (Ctrl-C on `make demo | tee log` kills tee first): a failed print
            # must never skip the cleanup, so stop first and say so only where stdout still works.
            _say("\nStopping the Dagster stack ...")
            try:
                for what in dev.stop():
                    _say(f"  terminated: {what}")
            finally:
                (state / STACK_SID).unlink(missing_ok=True)
            _say("Stopping the simulator ...")
    _say("Demo stopped; no process left running.")


def _drop_statements(
    scenario: Scenario, eod: Sequence[Mapping[str, object]], state: Path, computing: Sequence[str], url: str
) -> None:
    """IB's Flex statements of the seeded sessions (the simulator's, one planted discrepancy), dropped once their
    eod_positions and daily_pnl exist, as IB's arrive the morning after: the flex_statements sensor ingests them and
    reconciles each session."""
    from v6_assets.gateway_sim.statements import drop_demo_statements

    folder = state / "statements"  # V6_STATEMENTS_DIR of the demo's dagster dev
    days = [date.fromisoformat(d) for d in computing]
    files = drop_demo_statements(scenario, eod, folder, days)
    print(
        f"Dropped {len(files)} simulated IB Flex statements into {folder}; the flex_statements sensor reconciles "
        f"each session (one planted mark difference shows red on {days[-1]}): {url}/assets/reconciliation",
        flush=True,
    )


def _say(message: str) -> None:
    with contextlib.suppress(OSError):
        print(message, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m v6_assets.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("V6_DEMO_UI_PORT", DEFAULT_UI_PORT)))
    parser.add_argument("--sessions", type=int, default=DEFAULT_SESSIONS, help="sessions of history to seed (1..60)")
    parser.add_argument("--seed-speed", type=float, default=DEFAULT_SEED_SPEED, help="simulated s per real s")
    parser.add_argument("--sim-port", type=int, default=0, help="simulator port (0: a free one)")
    parser.add_argument(
        "--scenario", default="demo", help="built-in scenario name or YAML file (make demo SCENARIO=path)"
    )
    args = parser.parse_args(argv)
    if not 1 <= args.sessions <= 60:
        parser.error("--sessions must be in 1..60")
    if not args.seed_speed >= 1:
        parser.error("--seed-speed must be >= 1")
    if not 1 <= args.port <= 65535:
        parser.error("--port must be in 1..65535")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    project_dir = Path.cwd()
    if not (project_dir / "workspace.yaml").is_file():
        print("run from the project root (where workspace.yaml is): make demo", file=sys.stderr)
        return 2
    state = IBEnvironment.read().home.resolve() / "demo"  # V6_HOME, parsed by the ib layer's settings model
    try:
        with _interrupt_on_termination():
            run_demo(
                project_dir=project_dir,
                state=state,
                ui_port=args.port,
                sessions_back=args.sessions,
                seed_speed=args.seed_speed,
                sim_port=args.sim_port,
                scenario_name=args.scenario,
            )
    except KeyboardInterrupt:
        _say("Demo stopped; no process left running.")
        return 0
    except (DemoError, DevServerError, SeedError, ScenarioError) as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
