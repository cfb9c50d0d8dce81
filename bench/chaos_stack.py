"""Chaos scenario 10 (issue 17, point 1): kill -9 of each process of a real ``dagster dev`` stack, healed by nobody
but the stack itself and the devserver's watchdog (``v6_assets.devserver.StackWatchdog``, what ``make run`` and
``make demo`` run).

One ``dagster dev`` against the simulator; the watchdog supervises it in a thread of this process exactly as
``python -m v6_assets.devserver`` does. For each process kind (gRPC server, code server, daemon, webserver, run
worker, dagster dev itself) a live process of that kind is killed with SIGKILL, ``kills`` times. *Time to resume* is
measured from the kill until (1) the stack is whole again (webserver, daemon, code server and gRPC server present,
the victim gone) and (2) the lake holds a ``position_updates`` row the streamer RECEIVED after that moment: fresh data
streamed and ingested through the healed stack. After the last kill the final drain and ``verify`` check exactly-once
(0 duplicated, 0 missing offsets) and the wire-vs-Delta comparison outside the fault windows. A killed run worker must
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

from bench.chaos_common import CLIENT_ID, FAKE_SECRETS, non_loopback_listeners, secret_hits, wait_for
from v6_assets.devserver import (
    CODE_SERVER,
    DAEMON,
    DAGSTER_DEV,
    GRPC_SERVER,
    RUN_WORKER,
    WEBSERVER,
    StackWatchdog,
    stack_roles,
)
from v6_assets.lake import POSITION_UPDATES, Lake

# The order matters only for the time the run takes: cheap heals first, whole-stack restarts last.
KINDS = (GRPC_SERVER, CODE_SERVER, RUN_WORKER, DAEMON, WEBSERVER, DAGSTER_DEV)
# dagster dev itself is healed like its daemon (a restart of the stack), so it gets 2 kills, not ``kills``.
REDUCED_KINDS = {DAGSTER_DEV: 2}
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
        if kind == DAGSTER_DEV:
            proc = dev.process.proc
            return int(proc.pid) if proc is not None and proc.poll() is None else None
        pids = [pid for pid, role in _roles(dev).items() if role == kind]
        return pids[0] if pids else None

    pid: int = wait_for(find, timeout, f"a live {kind}", step=0.2)
    return pid


def _whole_without(dev: Any, victim: int) -> bool:
    proc = dev.process.proc
    if proc is None or proc.pid == victim or proc.poll() is not None:
        return False  # dagster dev itself killed and not restarted yet
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


def _unfinished_runs(gql: Any) -> list[str]:
    try:
        runs = gql.runs(statuses=["STARTED", "STARTING", "CANCELING"], limit=100)
    except Exception as exc:
        return [f"runs not readable: {exc}"]
    return [str(r["runId"]) for r in runs]


def kill_and_measure(dev: Any, lake: Lake, kind: str) -> tuple[float, float, float]:
    """Kill one process of ``kind``; return (kill time, whole-again time, resumed time) as epoch seconds."""
    victim = _victim(dev, kind, 120.0)
    t0 = time.time()
    os.kill(victim, signal.SIGKILL)
    wait_for(lambda: _whole_without(dev, victim), WAIT_LIMIT_S, f"the stack to be whole after killing the {kind}", 0.2)
    t_whole = time.time()
    moment = datetime.fromtimestamp(t_whole, UTC)
    wait_for(lambda: _ingested_after(lake, moment), WAIT_LIMIT_S, f"fresh rows after killing the {kind}", 0.5)
    return t0, t_whole, time.time()


def run_stack_kills(workdir: Path, sim_port: int, kinds: tuple[str, ...], kills: int, rng: random.Random,
                    say: Any = print, budget_s: float | None = RESUME_BUDGET_S) -> dict[str, Any]:  # fmt: skip
    """The scenario's body: returns per-kind recovery times, fault windows, notes and violations (a resume slower
    than ``budget_s`` is one; None in ``make test``, where timing is no verdict: the figures are make chaos's)."""
    from v6_assets_tests.e2e.harness import DagsterDev

    env = {**FAKE_SECRETS, **STACK_ENV, "V6_IB_PORT": str(sim_port)}
    dev = DagsterDev(workdir / "dev", env=env, stop_timeout_s=6.0)
    recoveries: dict[str, list[float]] = {k: [] for k in kinds}
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
                for _ in range(min(kills, REDUCED_KINDS.get(kind, kills))):
                    time.sleep(rng.uniform(1.0, 3.0))
                    try:
                        t0, t_whole, t1 = kill_and_measure(dev, lake, kind)
                    except (ProcessLookupError, TimeoutError) as exc:  # counted, and the next kill goes on
                        violations.append(f"{kind}: {type(exc).__name__}: {exc}")
                        say(f"  kill -9 {kind}: {exc}")
                        continue
                    windows.append((t0, t1))
                    recoveries[kind].append(t1 - t0)
                    say(
                        f"  kill -9 {kind}: whole after {t_whole - t0:.1f} s, fresh rows in Delta after {t1 - t0:.1f} s"
                    )
                    if budget_s is not None and t1 - t0 > budget_s:
                        violations.append(f"{kind}: resumed after {t1 - t0:.1f} s (> {RESUME_BUDGET_S:.0f} s)")
            if RUN_WORKER in kinds:
                # Every run ends (the killed ones as FAILURE): none is left STARTED, blocking the refresh queue.
                try:
                    wait_for(lambda: not _unfinished_runs(dev.graphql()), 120, "every run to finish", 1.0)
                except TimeoutError:
                    violations.append(f"runs left unfinished: {_unfinished_runs(dev.graphql())}")
            time.sleep(2.0)  # clean streaming after the last fault
            violations.extend(non_loopback_listeners([p.pid for p in dev.processes()]))
        finally:
            stop.set()
            thread.join(60)
            windows.append((time.time(), float("inf")))  # what the code server held unread when the stack stops
        notes.update(
            watchdog_restarts=watchdog.restarts,
            watchdog_code_servers_killed=watchdog.code_servers_killed,
            watchdog_log=lines[-40:],
        )
    notes["recoveries_s"] = {k: [round(x, 2) for x in v] for k, v in recoveries.items()}
    notes["resume_median_max_s"] = {
        k: (round(statistics.median(v), 1), round(max(v), 1)) for k, v in recoveries.items() if v
    }
    hits = secret_hits([dev.workdir])
    notes["secret_hits"] = len(hits)
    violations.extend(f"secret value in {h}" for h in hits)
    return {"dev": dev, "recoveries": recoveries, "windows": windows, "violations": violations, "notes": notes}


def process_tree_note() -> str:
    """For the report: what this machine runs (the figures depend on the 2 shared cores)."""
    return f"{os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}, {len(psutil.pids())} processes"
