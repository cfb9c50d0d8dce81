"""Chaos scenario 10 (issue 17, point 1): kill -9 of each process of the real Dagster stack, healed by nobody but
the stack's supervisor (``v6_assets.supervisor``) and the launcher's watchdog (``v6_assets.devserver.StackWatchdog``),
what ``make run`` and ``make demo`` run.

One stack against the simulator; the watchdog supervises its supervisor in a thread of this process exactly as
``python -m v6_assets.devserver`` does. For each process kind (gRPC server, code server, run worker, daemon,
webserver, the supervisor itself) a live process of that kind is killed with SIGKILL, ``kills`` times. Two times
per kill: *streaming* = until the lake holds a ``position_updates`` row the streamer RECEIVED after the kill (the
first new row ingested); *resume* = until (1) the stack is whole again (webserver, daemon, code server and gRPC
server present, the victim gone) and (2) the lake holds a row received after that moment: fresh data streamed and
ingested through the healed stack. After the last kill the final drain and ``verify`` check exactly-once (0
duplicated, 0 missing offsets) and the wire-vs-Delta comparison outside the fault windows. A killed run worker must
leave no run STARTED (the gRPC server that launched it marks it failed).
"""

from __future__ import annotations

import os
import random
import signal
import statistics
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import psutil
import yaml

from bench.chaos_common import CLIENT_ID, FAKE_SECRETS, non_loopback_listeners, secret_hits, wait_for
from v6_assets.devserver import (
    CODE_SERVER,
    DAEMON,
    GRPC_SERVER,
    RUN_WORKER,
    SUPERVISOR,
    WEBSERVER,
    StackWatchdog,
    stack_roles,
)
from v6_assets.lake import POSITION_UPDATES, Lake

# The order matters only for the time the run takes: the whole-stack restart (the supervisor killed) last.
KINDS = (GRPC_SERVER, CODE_SERVER, RUN_WORKER, DAEMON, WEBSERVER, SUPERVISOR)
QUICK_KINDS = (GRPC_SERVER, DAEMON)
WHOLE = (WEBSERVER, DAEMON, CODE_SERVER, GRPC_SERVER)
RESUME_BUDGET_S = 60.0  # the goal of issue 17
WAIT_LIMIT_S = 180.0  # how long the bench waits before it calls a kill unhealed

STACK_ENV = {
    "V6_IB_CLIENT_ID": str(CLIENT_ID),
    "V6_SENSOR_INTERVAL_S": "1",
    "V6_REFRESH_MINUTES": "0.05",  # a refresh run every few seconds: run workers to kill
    "V6_IB_BACKOFF_INITIAL_S": "0.1",
    "V6_IB_BACKOFF_MAX_S": "0.5",
    "V6_IB_GREEKS_THROTTLE_S": "0",
}


def _roles(dev: Any) -> dict[int, str]:
    return stack_roles(dev.processes())


def _victim(dev: Any, kind: str, timeout: float) -> int:
    def find() -> int | None:
        if kind == SUPERVISOR:
            proc = dev.process.proc
            return int(proc.pid) if proc is not None and proc.poll() is None else None
        pids = [pid for pid, role in _roles(dev).items() if role == kind]
        return pids[0] if pids else None

    pid: int = wait_for(find, timeout, f"a live {kind}", step=0.2)
    return pid


def _whole_without(dev: Any, victim: int) -> bool:
    proc = dev.process.proc
    if proc is None or proc.pid == victim or proc.poll() is not None:
        return False  # the supervisor killed and the stack not restarted yet
    roles = _roles(dev)
    return victim not in roles and set(WHOLE) <= set(roles.values())


def _ingested_after(lake: Lake, moment: datetime) -> bool:
    if lake.open(POSITION_UPDATES.name) is None:
        return False
    try:
        found = lake.scan(POSITION_UPDATES.name).filter(pl.col("received_at") > moment).select(pl.len()).collect()
    except Exception:  # a concurrent commit being written: look again
        return False
    return bool(found.item())


PROJECT_ROOT = Path(__file__).resolve().parents[1]
START_TIMEOUT_S = yaml.safe_load((PROJECT_ROOT / "dagster.yaml").read_text())["run_monitoring"]["start_timeout_seconds"]


def _unfinished_runs(gql: Any) -> list[str]:
    try:
        runs = gql.runs(statuses=["STARTED", "STARTING", "CANCELING"], limit=100)
    except Exception as exc:
        return [f"runs not readable: {exc}"]
    return [f"{r['runId']} ({r.get('status')})" for r in runs]


def _unfinished_run_logs(gql: Any) -> list[str]:
    """The last lines of each unfinished run's event log: why it did not end (kept in the scenario's notes)."""
    try:
        runs = gql.runs(statuses=["STARTED", "STARTING", "CANCELING"], limit=5)
        return [f"{r['runId']}: " + " | ".join(gql.run_log_text(r["runId"]).splitlines()[-12:]) for r in runs]
    except Exception as exc:
        return [f"run logs not readable: {exc}"]


def kill_and_measure(dev: Any, lake: Lake, kind: str) -> tuple[float, float, float, float]:
    """Kill one process of ``kind``; return (kill, first new row, whole again, resumed) times as epoch seconds."""
    victim = _victim(dev, kind, 120.0)
    t0 = time.time()
    os.kill(victim, signal.SIGKILL)
    killed_at = datetime.fromtimestamp(t0, UTC)
    whole_at: list[float] = []

    def first_row() -> bool:
        if not whole_at and _whole_without(dev, victim):
            whole_at.append(time.time())
        return _ingested_after(lake, killed_at)

    wait_for(first_row, WAIT_LIMIT_S, f"the first new row after killing the {kind}", 0.25)
    t_row = time.time()
    wait_for(lambda: _whole_without(dev, victim), WAIT_LIMIT_S, f"the stack to be whole after killing the {kind}", 0.2)
    t_whole = whole_at[0] if whole_at else time.time()
    moment = datetime.fromtimestamp(t_whole, UTC)
    wait_for(lambda: _ingested_after(lake, moment), WAIT_LIMIT_S, f"fresh rows after killing the {kind}", 0.25)
    return t0, t_row, t_whole, time.time()


def run_stack_kills(workdir: Path, sim_port: int, kinds: tuple[str, ...], kills: int, rng: random.Random,
                    say: Any = print, budget_s: float | None = RESUME_BUDGET_S) -> dict[str, Any]:  # fmt: skip
    """The scenario's body: returns per-kind recovery times, fault windows, notes and violations (a resume slower
    than ``budget_s`` is one; None in ``make test``, where timing is no verdict: the figures are make chaos's)."""
    from v6_assets_tests.e2e.harness import DagsterDev

    env = {**FAKE_SECRETS, **STACK_ENV, "V6_IB_PORT": str(sim_port)}
    dev = DagsterDev(workdir / "dev", env=env, stop_timeout_s=6.0)
    recoveries: dict[str, list[float]] = {k: [] for k in kinds}
    first_rows: dict[str, list[float]] = {k: [] for k in kinds}
    loads: list[float] = []
    windows: list[tuple[float, float]] = []
    violations: list[str] = []
    notes: dict[str, Any] = {}
    lines: list[str] = []
    stop = threading.Event()
    with dev:
        assert dev.process is not None

        def note(line: str) -> None:
            lines.append(f"{time.time():.2f} {line}")
            say(f"    {time.strftime('%H:%M:%S')} {line}")

        watchdog = StackWatchdog(dev.process, say=note)
        thread = threading.Thread(target=watchdog.run, args=(stop,), name="stack-watchdog", daemon=True)
        thread.start()
        try:
            lake = Lake.from_env({"V6_LAKE_URI": dev.lake_uri})
            first = datetime.fromtimestamp(time.time(), UTC)
            wait_for(lambda: _ingested_after(lake, first), WAIT_LIMIT_S, "the first streamed rows", 0.5)
            for kind in kinds:
                for _ in range(kills):
                    time.sleep(rng.uniform(1.0, 3.0))
                    loads.append(os.getloadavg()[0])
                    restarts_before = watchdog.restarts
                    try:
                        t0, t_row, t_whole, t1 = kill_and_measure(dev, lake, kind)
                    except (ProcessLookupError, TimeoutError) as exc:  # counted, and the next kill goes on
                        violations.append(f"{kind}: {type(exc).__name__}: {exc}")
                        say(f"  kill -9 {kind}: {exc}")
                        continue
                    if kind == SUPERVISOR:  # the next kill once the watchdog's restart has returned (the stack ready)
                        wait_for(lambda b=restarts_before: watchdog.restarts > b, WAIT_LIMIT_S, "the restart", 0.2)
                    windows.append((t0, max(t1, time.time())))
                    recoveries[kind].append(t1 - t0)
                    first_rows[kind].append(t_row - t0)
                    say(f"  kill -9 {kind} (load {loads[-1]:.1f}): first new row in Delta after {t_row - t0:.1f} s, "
                        f"whole after {t_whole - t0:.1f} s, fresh rows through it after {t1 - t0:.1f} s")  # fmt: skip
                    if budget_s is not None and t1 - t0 > budget_s:
                        violations.append(f"{kind}: resumed after {t1 - t0:.1f} s (> {RESUME_BUDGET_S:.0f} s)")
            if RUN_WORKER in kinds:
                # Every run ends (the killed ones as FAILURE): none is left STARTED, blocking the refresh queue. A
                # STARTED run whose worker died is failed by run monitoring within seconds (our launcher's pid check);
                # one killed while STARTING only by dagster.yaml's start timeout.
                try:
                    wait_for(lambda: not _unfinished_runs(dev.graphql()), START_TIMEOUT_S + 60, "every run to end", 1.0)
                except TimeoutError:
                    violations.append(f"runs left unfinished: {_unfinished_runs(dev.graphql())}")
                    notes["unfinished_run_logs"] = _unfinished_run_logs(dev.graphql())
            time.sleep(2.0)  # clean streaming after the last fault
            violations.extend(non_loopback_listeners([p.pid for p in dev.processes()]))
        finally:
            stop.set()
            thread.join(60)
            windows.append((time.time(), float("inf")))  # what the code server held unread when the stack stops
        supervisor_log = [ln for ln in dev.log_tail(2_000_000).splitlines() if ln.startswith("supervisor: ")]
        notes.update(
            watchdog_restarts=watchdog.restarts,
            supervisor_restarts={k: sum(f"supervisor: {k} restarted" in ln for ln in supervisor_log) for k in
                                 (CODE_SERVER, WEBSERVER, DAEMON)},
            supervisor_grpc_reloads=sum("lost its gRPC server; reloading it" in ln for ln in supervisor_log),
            supervisor_code_servers_killed=sum("killing it to restart both" in ln for ln in supervisor_log),
            watchdog_log=lines[-40:],
            supervisor_log=supervisor_log[-40:],
            load_at_kills=(round(min(loads), 1), round(max(loads), 1)) if loads else None,
        )  # fmt: skip
    notes["recoveries_s"] = {k: [round(x, 2) for x in v] for k, v in recoveries.items()}
    notes["resume_median_max_s"] = {
        k: (round(statistics.median(v), 1), round(max(v), 1)) for k, v in recoveries.items() if v
    }
    notes["first_row_median_max_s"] = {
        k: (round(statistics.median(v), 1), round(max(v), 1)) for k, v in first_rows.items() if v
    }
    hits = secret_hits([dev.workdir])
    notes["secret_hits"] = len(hits)
    violations.extend(f"secret value in {h}" for h in hits)
    return {"dev": dev, "recoveries": recoveries, "windows": windows, "violations": violations, "notes": notes}


def process_tree_note() -> str:
    """For the report: what this machine runs (the figures depend on the 2 shared cores)."""
    return f"{os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}, {len(psutil.pids())} processes"
