"""``make demo``: the gateway simulator, 10 sessions of SIMULATED history, and ``dagster dev`` on 127.0.0.1:3000.

What it does, in order:

1. Starts the IB gateway simulator (``demo`` scenario: 3 accounts, SPY/AAPL/QQQ options, ES futures options, shorts,
   trades during the day) in this process, its simulated clock starting ``--sessions`` NYSE sessions ago and running
   ``--seed-speed`` times faster than real time until it catches up with the wall clock (then it runs at speed 1).
2. Seeds the history through the SAME path as production: the unmodified streamer (ib_async, read-only, one
   connection, its timestamps on the simulator's clock) -> the durable spool -> ``drain_spool_to_lake`` -> Delta.
   Everything is marked simulated: ``V6_DEMO=1`` (asset descriptions and metadata say SIMULATED) and the demo's
   state lives apart from real data, under ``$V6_HOME/demo`` (fresh on every start).
3. Starts ``dagster dev`` (own session, ``--shutdown-pipe``) against the simulator; its sensor takes over the same
   stream id and spool, so live updates continue where the seed stopped.
4. Ctrl-C (or SIGTERM / SIGHUP) stops dagster dev, waits for every process it started, then stops the simulator.

``DagsterDevProcess`` is also what the end-to-end tests, benchmarks and chaos runs use to run ``dagster dev``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from datetime import time as dt_time
from pathlib import Path
from types import FrameType
from typing import IO, Any

import psutil

from v6_assets.sessions import NEW_YORK, last_sessions

log = logging.getLogger("v6_assets.demo")

LOOPBACK = "127.0.0.1"
DEFAULT_UI_PORT = 3000
DEFAULT_SESSIONS = 10
# Simulated seconds per real second while seeding: ~80 h of trading-time clock (10 sessions, nights skipped) in
# about 25 s; the simulator drops to speed 1 by itself once it reaches the wall clock.
DEFAULT_SEED_SPEED = 12000.0
# The streamer serves one account's updatePortfolio at a time and rotates every 180 s of REAL time; while seeding,
# 180 simulated seconds pass in a few milliseconds, so rotate every second to keep all accounts' marks fresh.
SEED_PORTFOLIO_ROTATION_S = 1.0
_SHUTDOWN_MESSAGE = b"SHUTDOWN\n"  # dagster_shared.ipc._PIPE_SHUTDOWN_INDICATOR


class DemoError(RuntimeError):
    """The demo could not start (port in use, dagster dev failed...); the message says what to do."""


# -- dagster dev as a managed child ----------------------------------------------------------------------------------


def session_processes(sid: int) -> list[psutil.Process]:
    """Every live, non-zombie process whose session id is ``sid``."""
    found: list[psutil.Process] = []
    for proc in psutil.process_iter(["pid", "status"]):
        try:
            if proc.info["status"] != psutil.STATUS_ZOMBIE and os.getsid(proc.pid) == sid:
                found.append(proc)
        except (ProcessLookupError, PermissionError, psutil.Error):
            continue
    return found


def describe_processes(procs: Sequence[psutil.Process]) -> str:
    out = []
    for proc in procs:
        try:
            out.append(f"{proc.pid}: {' '.join(proc.cmdline())[:160]}")
        except psutil.Error:
            out.append(f"{proc.pid}: <gone>")
    return "; ".join(out)


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port on ``host`` that is free right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class DagsterDevProcess:
    """``dagster dev -h 127.0.0.1 -p PORT -w WORKSPACE --shutdown-pipe FD`` in its own session.

    ``start()`` returns once ``GET /server_info`` answers (``ready_probe`` may demand more, e.g. a loaded code
    location). ``stop()`` writes the shutdown message to the pipe (dagster dev then stops its webserver, daemon and
    code servers in order), escalates to SIGTERM and SIGKILL of the whole session, and raises ``DemoError`` if any
    process of the session had to be killed. Output goes to ``log_path``.
    """

    project_dir: Path
    env: Mapping[str, str]
    log_path: Path
    port: int = DEFAULT_UI_PORT
    workspace: str = "workspace.yaml"
    log_level: str = "info"
    start_timeout_s: float = 180.0
    stop_timeout_s: float = 60.0
    ready_probe: Callable[[], bool] | None = None
    proc: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _pipe_w: int | None = field(default=None, init=False)
    _log: IO[bytes] | None = field(default=None, init=False)

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def sid(self) -> int:
        if self.proc is None:
            raise DemoError("dagster dev is not started")
        return self.proc.pid  # start_new_session: the leader's pid is the session id

    def processes(self) -> list[psutil.Process]:
        """Live processes dagster dev started: webserver, daemon, code server + its gRPC child, run workers."""
        return session_processes(self.sid) if self.proc is not None else []

    def server_info(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"{self.url}/server_info", timeout=5) as resp:
                import json

                return dict(json.loads(resp.read()))
        except (OSError, ValueError):
            return None

    def log_tail(self, chars: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return "<no log>"

    def start(self) -> DagsterDevProcess:
        if self.proc is not None:
            raise DemoError("dagster dev already started")
        if not port_is_free(self.port):
            raise DemoError(f"port {self.port} on {LOOPBACK} is in use (another dagster dev?); stop it or pick --port")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        pipe_r, self._pipe_w = os.pipe()
        dagster = Path(sys.executable).with_name("dagster")
        cmd = [str(dagster), "dev", "-h", LOOPBACK, "-p", str(self.port), "-w", self.workspace]
        cmd += ["--log-level", self.log_level, "--shutdown-pipe", str(pipe_r)]
        try:
            self.proc = subprocess.Popen(
                cmd,
                cwd=self.project_dir,
                env=dict(self.env),
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                pass_fds=[pipe_r],
                start_new_session=True,  # Ctrl-C reaches us only; we stop it in order through the pipe
            )
        finally:
            os.close(pipe_r)
        try:
            self.wait_ready()
        except BaseException:
            with contextlib.suppress(DemoError):
                self.stop()
            raise
        return self

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise DemoError(f"dagster dev exited with code {self.proc.returncode}:\n{self.log_tail()}")
            if self.server_info() is not None and (self.ready_probe is None or self.ready_probe()):
                return
            if time.monotonic() > deadline:
                raise DemoError(f"dagster dev not ready after {self.start_timeout_s:.0f}s:\n{self.log_tail()}")
            time.sleep(0.5)

    def stop(self) -> list[str]:
        """Stop everything it started; return what had to be terminated after dagster dev itself exited.

        Runs still in flight (run workers outlive ``dagster dev``) are sent SIGTERM, then SIGKILL after 15 s.
        Raises ``DemoError`` only if a process of the session survives even that.
        """
        if self.proc is None:
            return []
        sid = self.sid
        terminated: list[str] = []
        try:
            if self._pipe_w is not None:
                with contextlib.suppress(OSError):
                    os.write(self._pipe_w, _SHUTDOWN_MESSAGE)
                with contextlib.suppress(OSError):
                    os.close(self._pipe_w)
                self._pipe_w = None
            try:
                self.proc.wait(timeout=self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                terminated.append(f"dagster dev {self.proc.pid} (no exit {self.stop_timeout_s:.0f}s after shutdown)")
                signal_session(sid, signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=10)
            # The code server's gRPC child may take a moment after dagster dev itself has gone.
            deadline = time.monotonic() + 5
            while session_processes(sid) and time.monotonic() < deadline:
                time.sleep(0.25)
            left = session_processes(sid)
            if left:
                terminated.append(describe_processes(left))
                signal_session(sid, signal.SIGTERM)
                _gone, alive = psutil.wait_procs(left, timeout=15)
                if alive:
                    signal_session(sid, signal.SIGKILL)
                    psutil.wait_procs(alive, timeout=5)
            survivors = session_processes(sid)
            if survivors:
                raise DemoError(f"processes survived SIGKILL: {describe_processes(survivors)}")
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=5)
            if self._log is not None:
                self._log.close()
                self._log = None
        return terminated

    def __enter__(self) -> DagsterDevProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def signal_session(sid: int, sig: signal.Signals) -> None:
    for proc in session_processes(sid):
        with contextlib.suppress(psutil.Error):
            proc.send_signal(sig)


# -- seeding history through the real path --------------------------------------------------------------------------


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
    sim: Any,
    settings: Any,
    lake: Any,
    *,
    timeout_s: float = 600.0,
    progress: Callable[[str], None] | None = None,
) -> SeedResult:
    """Stream from the running simulator until its clock has caught up with the wall clock, then drain to Delta.

    ``sim`` is a started ``GatewaySimulator``; ``settings`` the ``StreamerSettings`` the live sensor will use (same
    stream id and spool, so the live stream continues after the seed). The streamer's timestamps come from the
    simulator's clock, so every update lands in the session it was simulated in.
    """
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
                raise DemoError(f"seeding did not catch up with the wall clock within {timeout_s:.0f}s")
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

    from v6_assets.defs.partitions import trading_day_partitions

    previous = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(dagster_home)  # dagster.yaml resolves its storage dir from it
    reported = 0
    try:
        with DagsterInstance.from_config(str(dagster_home)) as instance:
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
    finally:
        if previous is None:
            os.environ.pop("DAGSTER_HOME", None)
        else:
            os.environ["DAGSTER_HOME"] = previous
    return reported


def history_start(sessions_back: int, now: datetime | None = None) -> datetime:
    """09:00 New York time, ``sessions_back`` NYSE sessions before today's (or the next) session."""
    today = (now or datetime.now(UTC)).astimezone(NEW_YORK).date()
    first = last_sessions(sessions_back + 1, today)[0]
    return datetime.combine(first, dt_time(9, 0), NEW_YORK).astimezone(UTC)


# -- the demo --------------------------------------------------------------------------------------------------------


def demo_environment(base: Mapping[str, str], state: Path, sim_port: int, client_id: int) -> dict[str, str]:
    """The environment of the demo's dagster dev: simulated, isolated state, pointed at the simulator."""
    env = {k: v for k, v in base.items() if not k.startswith(("V6_IB_", "DAGSTER_"))}
    env.update(
        V6_DEMO="1",
        V6_HOME=str(state),
        V6_LAKE_URI=str(state / "lake"),
        DAGSTER_HOME=str(state / "dagster_home"),
        V6_IB_HOST=LOOPBACK,
        V6_IB_PORT=str(sim_port),
        V6_IB_CLIENT_ID=str(client_id),
        PYTHONUNBUFFERED="1",
    )
    return env


def _stop_leftovers(state: Path) -> None:
    """Stop a dagster dev a previous demo left running (its launcher was killed with SIGKILL)."""
    pid_file = state / "dagster_dev.sid"
    try:
        sid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    left = session_processes(sid)
    if left:
        print(f"Stopping {len(left)} processes a previous demo left running: {describe_processes(left)}")
        signal_session(sid, signal.SIGTERM)
        _gone, alive = psutil.wait_procs(left, timeout=15)
        if alive:
            signal_session(sid, signal.SIGKILL)
            psutil.wait_procs(alive, timeout=5)
    pid_file.unlink(missing_ok=True)


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


def _banner(url: str, state: Path, seed: SeedResult, sim_port: int) -> str:
    sessions = ", ".join(seed.rows_per_session) or "none"
    return f"""
================================================================================================
 v6_assets demo -- SIMULATED data (IB gateway simulator, scenario 'demo'), nothing touches a real account

 Dagster UI:  {url}
   - Lineage ({url}/asset-groups): position_updates + greeks_updates (streamed) -> eod_positions
     -> daily_pnl, exposure (one partition per NYSE session)
   - Automation ({url}/automation): the ib_position_stream sensor ticks and appends live micro-batches
   - {url}/assets/daily_pnl : latest materialization with a preview table and a PnL chart;
     "Materialize" or backfill past sessions from the Partitions tab
 Seeded history: {seed.rows_written} rows for sessions {sessions}
   (simulated streamer -> spool -> Delta in {seed.duration_s:.0f}s; simulator on {LOOPBACK}:{sim_port})
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
) -> None:
    """The whole demo; returns after Ctrl-C (or at once after startup when ``keep_running`` is False)."""
    from v6_assets.gateway_sim import GatewaySimulator, load_scenario
    from v6_assets.ib import StreamerSettings
    from v6_assets.lake import Lake

    if not port_is_free(ui_port):
        raise DemoError(f"port {ui_port} on {LOOPBACK} is in use (another dagster dev or demo?); stop it first")
    _stop_leftovers(state)
    if state.exists():
        shutil.rmtree(state)
    (state / "dagster_home").mkdir(parents=True)
    shutil.copyfile(project_dir / "dagster.yaml", state / "dagster_home" / "dagster.yaml")

    scenario = load_scenario("demo", start_time=history_start(sessions_back))
    print(f"Starting the IB gateway simulator: scenario 'demo', {sessions_back} sessions back, speed x{seed_speed:g}")
    sim = GatewaySimulator(
        scenario, port=sim_port, speed=seed_speed, truth_dir=state / "truth", record_path=state / "sim_requests.jsonl"
    )
    with sim.running():
        env = demo_environment(os.environ, state, sim.port, client_id)
        settings = StreamerSettings.from_env(env)
        lake = Lake.from_env(env)
        print(f"Seeding simulated history from {scenario.clock.start:%Y-%m-%d %H:%M} UTC through the streamer:")
        seed = seed_history(sim, settings, lake, progress=print)
        print(f"Seeded {seed.rows_written} rows over {len(seed.rows_per_session)} sessions in {seed.duration_s:.0f}s.")
        report_seed_materializations(state / "dagster_home", seed)
        dev = DagsterDevProcess(project_dir=project_dir, env=env, log_path=state / "dagster_dev.log", port=ui_port)
        print(f"Starting dagster dev on {dev.url} (log: {dev.log_path}) ...")
        dev.start()
        try:
            (state / "dagster_dev.sid").write_text(f"{dev.sid}\n")
            print(_banner(dev.url, state, seed, sim.port), flush=True)
            while keep_running:
                if dev.proc is not None and dev.proc.poll() is not None:
                    raise DemoError(f"dagster dev exited with code {dev.proc.returncode}; see {dev.log_path}")
                time.sleep(1.0)
        finally:
            # The terminal may be gone by now (Ctrl-C on `make demo | tee log` kills tee first): a failed print
            # must never skip the cleanup, so stop first and say so only where stdout still works.
            _say("\nStopping dagster dev ...")
            try:
                for what in dev.stop():
                    _say(f"  terminated: {what}")
            finally:
                (state / "dagster_dev.sid").unlink(missing_ok=True)
            _say("Stopping the simulator ...")
    _say("Demo stopped; no process left running.")


def _say(message: str) -> None:
    with contextlib.suppress(OSError):
        print(message, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m v6_assets.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("V6_DEMO_UI_PORT", DEFAULT_UI_PORT)))
    parser.add_argument("--sessions", type=int, default=DEFAULT_SESSIONS, help="sessions of history to seed (1..60)")
    parser.add_argument("--seed-speed", type=float, default=DEFAULT_SEED_SPEED, help="simulated s per real s")
    parser.add_argument("--sim-port", type=int, default=0, help="simulator port (0: a free one)")
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
    state = Path(os.environ.get("V6_HOME", ".v6")).resolve() / "demo"
    try:
        with _interrupt_on_termination():
            run_demo(
                project_dir=project_dir,
                state=state,
                ui_port=args.port,
                sessions_back=args.sessions,
                seed_speed=args.seed_speed,
                sim_port=args.sim_port,
            )
    except KeyboardInterrupt:
        _say("Demo stopped; no process left running.")
        return 0
    except DemoError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
