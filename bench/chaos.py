"""Fault-injection suite (issue 8): every fault is a repeatable experiment against the gateway simulator with ground
truth on; what the simulator sent is compared with what is in Delta (see ``bench.chaos_common`` and
docs/reliability.md for the exact comparison).

    .venv/bin/python -m bench.chaos [--quick] [--only NAME[,NAME]] [--json bench/results/chaos.json]

Prints the table and writes ``bench/results/chaos.json`` (``--quick``: ``chaos_quick.json``). Exit status 1 when any
lost / duplicated / connections > 1 / order / security figure is nonzero or a scenario failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import exchange_calendars as xcals
import psutil

from bench.chaos_common import (
    CLIENT_ID,
    FAKE_SECRETS,
    PROJECT_ROOT,
    ChaosSimulator,
    Verdict,
    Worker,
    fake_secrets_in_env,
    non_loopback_listeners,
    option_ids,
    order_requests,
    python_env,
    secret_hits,
    verify,
    wait_for,
    worker_env,
)
from bench.chaos_week import run_week
from v6_assets import failpoints, sessions
from v6_assets.gateway_sim import load_scenario
from v6_assets.ib import IBPositionStreamer, Spool, StreamerSettings, StreamerStatus
from v6_assets.ib.decoder_errors import decoder_error_counter
from v6_assets.ib.streamer import discard_process_streamer
from v6_assets.lake import Lake
from v6_assets.pipeline.ingest import drain_spool_to_lake

log = logging.getLogger("chaos")
Windows = list[tuple[float, float]]
RESULTS_DIR = PROJECT_ROOT / "bench" / "results"
SPEED = 120.0  # simulated seconds per real second: PnL-single ~120/s per position, a steady mixed stream
COLUMNS = (
    "scenario",
    "repetitions",
    "updates_sent",
    "stored",
    "lost",
    "duplicated",
    "max_ib_connections",
    "order_requests",
    "recovery_median_s",
    "recovery_max_s",
    "ok",
)


@dataclass
class ScenarioResult:
    scenario: str
    repetitions: int = 0
    updates_sent: int = 0
    stored: int = 0
    lost: int = 0
    duplicated: int = 0
    max_ib_connections: int = 0
    order_requests: int = 0
    recoveries_s: list[float] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)  # scenario-specific failures (clear text)
    notes: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    duration_s: float = 0.0

    @property
    def recovery_median_s(self) -> float | None:
        return round(statistics.median(self.recoveries_s), 2) if self.recoveries_s else None

    @property
    def recovery_max_s(self) -> float | None:
        return round(max(self.recoveries_s), 2) if self.recoveries_s else None

    @property
    def ok(self) -> bool:
        return (
            self.error is None
            and not self.violations
            and self.lost == 0
            and self.duplicated == 0
            and self.max_ib_connections <= 1
            and self.order_requests == 0
        )

    def absorb(self, verdict: Verdict) -> None:
        self.updates_sent += verdict.sent
        self.stored += verdict.stored
        self.lost += verdict.lost
        self.duplicated += verdict.duplicated
        if verdict.foreign_rows:
            self.violations.append(f"{verdict.foreign_rows} rows from accounts outside the allowlist")
        if verdict.sentinel_numbers:
            self.violations.append(f"{verdict.sentinel_numbers} sentinel values stored as numbers")
        self.notes.setdefault("verify", []).append(verdict.details)
        self.notes["foreign_rows"] = self.notes.get("foreign_rows", 0) + verdict.foreign_rows
        self.notes["sentinel_numbers"] = self.notes.get("sentinel_numbers", 0) + verdict.sentinel_numbers

    def as_dict(self) -> dict[str, Any]:
        row = {c: getattr(self, c) for c in COLUMNS}
        return {**row, "violations": self.violations, "notes": self.notes, "error": self.error,
                "duration_s": round(self.duration_s, 1)}  # fmt: skip


@dataclass(frozen=True)
class Params:
    quick: bool
    disconnects: int
    refuse_s: float
    stall_s: float
    kills: int
    reloads: int
    fuzz_frames: int
    fuzz_desyncs: int
    load_s: float
    load_rate: int
    stack_kills: int = 1  # scenario 10: kills per process kind of the stack
    stack_kinds: tuple[str, ...] = ()  # scenario 10: which kinds (empty: all, or the quick pair)

    @classmethod
    def for_mode(cls, quick: bool) -> Params:
        if quick:
            return cls(True, disconnects=3, refuse_s=4.0, stall_s=4.0, kills=2, reloads=1, fuzz_frames=400,
                       fuzz_desyncs=2, load_s=5.0, load_rate=5_000, stack_kills=1)  # fmt: skip
        return cls(False, disconnects=50, refuse_s=60.0, stall_s=30.0, kills=20, reloads=10, fuzz_frames=10_000,
                   fuzz_desyncs=20, load_s=600.0, load_rate=20_000, stack_kills=5)  # fmt: skip


# -- shared plumbing ----------------------------------------------------------------------------------------------
def _final_drain(home: Path, lake: Lake, port: int) -> None:
    settings = StreamerSettings(port=port, home=home, client_id=CLIENT_ID)
    if settings.spool_path.exists():
        with Spool(settings.spool_path) as spool:
            drain_spool_to_lake(spool, lake, settings.stream_id)


def _check_and_absorb(
    result: ScenarioResult,
    sim: ChaosSimulator,
    home: Path,
    lake: Lake,
    windows: list[tuple[float, float]],
    truth: list[dict[str, Any]],
    allowlist: tuple[str, ...] = (),
) -> None:
    settings = StreamerSettings(port=sim.port, home=home, client_id=CLIENT_ID)
    _final_drain(home, lake, sim.port)
    verdict = verify(
        truth_sent=truth,
        lake=lake,
        stream_id=settings.stream_id,
        spool_path=settings.spool_path,
        option_ids=option_ids(sim),
        windows=windows,
        allowlist=allowlist,
    )
    result.absorb(verdict)


def _sim_observations(result: ScenarioResult, sim: ChaosSimulator) -> None:
    result.max_ib_connections = max(result.max_ib_connections, sim.max_concurrent_connections(CLIENT_ID))
    result.order_requests += order_requests(sim)
    listeners = non_loopback_listeners([os.getpid()])
    result.notes["non_loopback_listeners"] = result.notes.get("non_loopback_listeners", 0) + len(listeners)
    result.violations.extend(listeners)


class WorkerPool:
    """Streaming worker processes sharing one V6_HOME and lake (old/new code servers, or standby takeover)."""

    def __init__(self, workdir: Path, port: int, env_extra: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.home = workdir / "v6"
        self.lake_uri = str(workdir / "lake")
        self.port = port
        self.env_extra = env_extra or {}
        self.workers: list[Worker] = []
        self.started = 0
        workdir.mkdir(parents=True, exist_ok=True)

    def spawn(self, extra: dict[str, str] | None = None) -> Worker:
        self.started += 1
        env = worker_env(self.port, self.home, {**self.env_extra, **(extra or {})})
        worker = Worker(env, self.lake_uri, self.workdir / f"worker-{self.started}.log")
        self.workers.append(worker)
        return worker

    def holder(self) -> Worker | None:
        return next((w for w in self.workers if w.connected), None)

    def reap(self) -> None:
        self.workers = [w for w in self.workers if w.alive]

    def wait_connected(self, timeout: float = 30.0) -> Worker:
        worker: Worker = wait_for(self.holder, timeout, "a worker connected")
        return worker

    def close(self) -> None:
        for worker in self.workers:
            worker.close()
        self.workers = []

    def logs(self) -> list[Path]:
        return sorted(self.workdir.glob("worker-*.log"))


def _truth(sim: ChaosSimulator) -> list[dict[str, Any]]:
    return [e for e in sim.truth["sent"] if e.get("client_id") == CLIENT_ID]


# A fixed start (a Monday 09:00 ET): the scenarios' data never depends on the day or hour they run.
DEMO_START = datetime(2025, 3, 3, 9, 0, tzinfo=sessions.NEW_YORK)


def _demo_sim(**kwargs: Any) -> ChaosSimulator:
    scenario = load_scenario("demo", start_time=DEMO_START)
    scenario = dataclasses.replace(scenario, nastiness=dataclasses.replace(scenario.nastiness, greeks_sentinel_every=4))
    return ChaosSimulator(scenario, port=0, speed=kwargs.pop("speed", SPEED), **kwargs)


def _worker_scenario(
    name: str,
    workdir: Path,
    faults: Callable[[ChaosSimulator, WorkerPool, ScenarioResult, list[tuple[float, float]]], None],
    env_extra: dict[str, str] | None = None,
    standby: bool = False,
) -> ScenarioResult:
    result = ScenarioResult(name)
    windows: list[tuple[float, float]] = []
    sim = _demo_sim()
    with sim.running():
        pool = WorkerPool(workdir, sim.port, env_extra)
        try:
            pool.spawn()
            if standby:
                pool.spawn()
            pool.wait_connected()
            time.sleep(1.0)
            faults(sim, pool, result, windows)
            pool.wait_connected()
            time.sleep(2.0)  # clean streaming after the last fault: the resync state is checked, not excused
            pids = [w.proc.pid for w in pool.workers if w.alive]
            listeners = non_loopback_listeners(pids)
            result.violations.extend(listeners)
            windows.append((time.time(), float("inf")))  # what is unread when the workers stop
        finally:
            pool.close()
        _sim_observations(result, sim)
        truth = _truth(sim)
    lake = Lake.from_env({"V6_LAKE_URI": pool.lake_uri})
    _check_and_absorb(result, sim, pool.home, lake, windows, truth)
    hits = secret_hits(pool.logs())
    result.notes["secret_hits"] = len(hits)
    result.violations.extend(f"secret value in {h}" for h in hits)
    return result


def _wait_reconnect(pool: WorkerPool, before: dict[int, tuple[int, bool]], timeout: float) -> float:
    """Wait until a worker is connected by a session that started after ``before``; returns time.time()."""

    def fresh() -> bool:
        holder = pool.holder()
        if holder is None:
            return False
        pid = int(holder.latest.get("pid", -1))
        if pid not in before:
            return True
        reconnects, was_connected = before[pid]
        return int(holder.latest.get("reconnects", 0)) > reconnects or not was_connected

    wait_for(fresh, timeout, "the stream to reconnect", step=0.02)
    return time.time()


def _reconnect_marks(pool: WorkerPool) -> dict[int, tuple[int, bool]]:
    return {
        int(w.latest.get("pid", -1)): (int(w.latest.get("reconnects", 0)), bool(w.latest.get("connected")))
        for w in pool.workers
        if w.latest
    }


# -- 1. gateway disconnects ---------------------------------------------------------------------------------------
def scenario_disconnect(params: Params, workdir: Path, rng: random.Random) -> ScenarioResult:
    def faults(sim: ChaosSimulator, pool: WorkerPool, result: ScenarioResult, windows: Windows) -> None:
        for _ in range(params.disconnects):
            time.sleep(rng.uniform(0.2, 2.0))
            before = _reconnect_marks(pool)
            t0 = time.time()
            sim.disconnect_all()
            t1 = _wait_reconnect(pool, before, 60)
            windows.append((t0, t1))
            result.recoveries_s.append(t1 - t0)
            result.repetitions += 1

    return _worker_scenario("1 gateway disconnect", workdir, faults)


# -- 3. stalled output --------------------------------------------------------------------------------------------
def scenario_stall(params: Params, workdir: Path, rng: random.Random) -> ScenarioResult:
    heartbeat = "1" if params.quick else "10"
    probe = "1" if params.quick else "3"

    def faults(sim: ChaosSimulator, pool: WorkerPool, result: ScenarioResult, windows: Windows) -> None:
        reps = 1 if params.quick else 2
        for _ in range(reps):
            before = _reconnect_marks(pool)
            t0 = time.time()
            sim.stall_output(params.stall_s)
            noticed = wait_for(lambda: not any(w.connected for w in pool.workers), params.stall_s + 30, "heartbeat")
            noticed_after = time.time() - t0 if noticed else None
            t1 = _wait_reconnect(pool, before, params.stall_s + 60)
            windows.append((t0, max(t1, t0 + params.stall_s + 1)))
            result.recoveries_s.append(t1 - t0)
            result.notes.setdefault("heartbeat_noticed_after_s", []).append(round(noticed_after or -1, 2))
            result.repetitions += 1
            if noticed_after is None or noticed_after > params.stall_s:
                result.violations.append("the heartbeat did not notice the stall before it ended")
            time.sleep(1.0)

    return _worker_scenario(
        "3 gateway stalls output",
        workdir,
        faults,
        env_extra={"V6_IB_HEARTBEAT_S": heartbeat, "V6_IB_PROBE_TIMEOUT_S": probe, "V6_IB_CONNECT_TIMEOUT_S": "2"},
    )


# -- 4. kill -9 ---------------------------------------------------------------------------------------------------
CRASH_POINTS = ("after_spool_append", "after_delta_commit")


def scenario_kill(params: Params, workdir: Path, rng: random.Random) -> ScenarioResult:
    def faults(sim: ChaosSimulator, pool: WorkerPool, result: ScenarioResult, windows: Windows) -> None:
        for _ in range(params.kills):
            time.sleep(rng.uniform(0.3, 2.0))
            holder = pool.wait_connected()
            before = _reconnect_marks(pool)
            t0 = time.time()
            holder.kill9()
            pool.reap()
            pool.spawn()  # the next standby
            t1 = _wait_reconnect(pool, before, 60)
            windows.append((t0, t1))
            result.recoveries_s.append(t1 - t0)
            result.repetitions += 1
        fired = []
        for point in CRASH_POINTS:
            for _ in range(1 if params.quick else 3):
                # Only the failpoint process runs, so it holds the stream and drains: the crash lands where named.
                for worker in pool.workers:
                    worker.kill9()
                t_kill = time.time()
                pool.reap()
                hit = rng.randint(2, 6) if point == "after_delta_commit" else rng.randint(5, 40)
                victim = pool.spawn({"V6_FAILPOINTS": f"{point}:exit@{hit}"})
                try:
                    wait_for(lambda v=victim: not v.alive, 60, f"failpoint {point}@{hit} to fire")  # type: ignore[misc]
                except TimeoutError:
                    result.violations.append(f"failpoint {point}@{hit} never fired")
                    victim.kill9()
                t0 = time.time()
                fired.append(f"{point}@{hit}:rc={victim.proc.returncode}")
                pool.reap()
                before = _reconnect_marks(pool)
                pool.spawn()
                pool.spawn()
                t1 = _wait_reconnect(pool, before, 60)
                windows.append((t_kill, t1))
                windows.append((t0, t1))
                result.recoveries_s.append(t1 - t0)
                result.repetitions += 1
        result.notes["crash_points"] = fired

    return _worker_scenario("4 kill -9 (random + failpoints)", workdir, faults, standby=True)


# -- in-process streamer + real sensor ticks ----------------------------------------------------------------------
_env = python_env  # never a real setenv while the simulator and streamer threads run


class SensorRig:
    """The real ``ib_position_stream`` sensor evaluated in this process against a simulator (like the daemon does)."""

    def __init__(self, workdir: Path, port: int) -> None:
        from dagster import instance_for_test

        from v6_assets.defs.resources import IBStreamResource, LakeResource

        self.home = workdir / "v6"
        self.lake_uri = str(workdir / "lake")
        self.ib = IBStreamResource(host="127.0.0.1", port=port, client_id=CLIENT_ID, home=str(self.home))
        self.lake_resource = LakeResource(uri=self.lake_uri)
        self._instance_cm = instance_for_test()
        self.instance = self._instance_cm.__enter__()
        self.cursor: str | None = None

    def tick(self) -> Any:
        from dagster import SensorResult, build_sensor_context

        from v6_assets.defs.sensors import ib_position_stream

        resources = {"ib_stream": self.ib, "lake": self.lake_resource}
        with build_sensor_context(instance=self.instance, cursor=self.cursor, resources=resources) as ctx:
            result = ib_position_stream(ctx)
        if isinstance(result, SensorResult) and result.cursor is not None:
            self.cursor = result.cursor
        return result

    @staticmethod
    def reason(result: Any) -> str:
        skip = getattr(result, "skip_reason", None)
        if skip is None:
            return ""
        return str(getattr(skip, "skip_message", skip) or "")

    def close(self) -> None:
        discard_process_streamer()
        self._instance_cm.__exit__(None, None, None)


IN_PROCESS_ENV = {
    "V6_IB_BACKOFF_INITIAL_S": "0.1",
    "V6_IB_BACKOFF_MAX_S": "0.5",
    "V6_IB_GREEKS_THROTTLE_S": "0",
    "V6_REFRESH_MINUTES": "100000",  # no refresh runs: this scenario is about ingest
}


def _streamer_status() -> StreamerStatus:
    return IBPositionStreamer().status()


def _reconnected_since(status: StreamerStatus, reconnects_before: int) -> bool:
    return status.connection.reconnects > reconnects_before and status.connection.connected


# -- 2. gateway refuses connections -------------------------------------------------------------------------------
def scenario_refuse(params: Params, workdir: Path, rng: random.Random) -> ScenarioResult:
    result = ScenarioResult("2 gateway refuses connections")
    cooldown = "1" if params.quick else "10"
    env = {**IN_PROCESS_ENV, "V6_IB_CIRCUIT_FAILURES": "3", "V6_IB_CIRCUIT_COOLDOWN_S": cooldown,
           "V6_IB_CONNECT_TIMEOUT_S": "1"}  # fmt: skip
    windows: list[tuple[float, float]] = []
    sim = _demo_sim()
    with _env(env), sim.running():
        rig = SensorRig(workdir, sim.port)
        try:
            rig.tick()
            wait_for(lambda: _streamer_status().connection.connected, 30, "connected")
            rig.tick()
            t0 = time.time()
            sim.refuse_connections(params.refuse_s)
            sim.disconnect_all()
            reasons = []
            while time.time() < t0 + params.refuse_s:
                reasons.append(rig.reason(rig.tick()))
                time.sleep(0.5)
            opened = [r for r in reasons if "circuit open" in r]
            result.notes["skip_reason_while_refused"] = opened[0] if opened else (reasons[-1] if reasons else "")
            if not opened:
                result.violations.append("the sensor's skip reason never said the circuit was open")
            t_end = t0 + params.refuse_s
            wait_for(lambda: _streamer_status().connection.connected, 60, "reconnect after refusal")
            t1 = time.time()
            windows.append((t0, t1))
            result.recoveries_s.append(t1 - t_end)
            result.repetitions = 1
            time.sleep(1.5)
            final = rig.tick()
            state = _streamer_status().connection.circuit_state
            result.notes["circuit_after"] = state
            result.notes["skip_reason_after"] = rig.reason(final)
            if "circuit open" in rig.reason(final) or state != "closed":
                result.violations.append(f"the circuit did not close after the gateway came back ({state})")
            IBPositionStreamer().stop()
            windows.append((time.time(), float("inf")))
        finally:
            rig.close()
        _sim_observations(result, sim)
        truth = _truth(sim)
    _check_and_absorb(result, sim, rig.home, Lake.from_env({"V6_LAKE_URI": rig.lake_uri}), windows, truth)
    return result


# -- 6. write failures --------------------------------------------------------------------------------------------
@contextlib.contextmanager
def tmpfs(directory: Path, size: str) -> Iterator[bool]:
    """Mount a tiny tmpfs on ``directory`` (yields False when mounting is not permitted); always unmounted."""
    directory.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
                          capture_output=True, text=True, check=False)  # fmt: skip
    if done.returncode != 0:
        log.warning("cannot mount a tmpfs on %s: %s", directory, done.stderr.strip())
        yield False
        return
    try:
        yield True
    finally:
        if subprocess.run(["umount", str(directory)], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(directory)], capture_output=True, check=False)


def _fill(directory: Path) -> Path:
    """Fill the filesystem of ``directory`` to the last byte; returns the filler file (delete it to free space)."""
    filler = directory / "filler.bin"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for chunk in (1 << 20, 1 << 16, 1 << 12, 512):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * chunk)
    finally:
        os.close(fd)
    return filler


def scenario_write_failures(params: Params, workdir: Path, rng: random.Random) -> ScenarioResult:
    result = ScenarioResult("6 write failures (failpoint + full disk)")
    sim = _demo_sim()
    home = workdir / "v6"
    lake_dir = workdir / "lake"
    with _env(IN_PROCESS_ENV), sim.running(), tmpfs(lake_dir, "16m") as lake_mounted, \
            tmpfs(home / "spool", "4m") as spool_mounted:  # fmt: skip
        result.notes["tmpfs_lake"] = lake_mounted
        result.notes["tmpfs_spool"] = spool_mounted
        if not (lake_mounted and spool_mounted):
            result.notes["full_disk"] = "mount not permitted here: only the failpoint variant ran"
        rig = SensorRig(workdir, sim.port)
        spool_path = rig.ib.settings().spool_path
        try:
            rig.tick()
            wait_for(lambda: _streamer_status().connection.connected, 30, "connected")
            time.sleep(1.0)
            rig.tick()

            def backlog() -> int:
                with Spool(spool_path) as spool:
                    return spool.depth()

            # a) the Delta write raises (failpoint): the tick fails clearly, the spool keeps everything
            with _env({"V6_FAILPOINTS": "delta_write:raise@*"}):
                failpoints.reload_from_env()
                time.sleep(0.5)
                depth = backlog()
                try:
                    rig.tick()
                    result.violations.append("tick with a failing Delta write did not fail")
                except Exception as exc:
                    result.notes["failpoint_tick_error"] = f"{type(exc).__name__}: {exc}"[:300]
                if backlog() < depth:
                    result.violations.append("spool backlog shrank while the Delta write failed")
            failpoints.reload_from_env()
            t0 = time.time()
            rig.tick()
            result.recoveries_s.append(time.time() - t0)
            result.repetitions += 1

            if lake_mounted:
                # b) the lake's filesystem is full
                time.sleep(0.5)
                filler = _fill(lake_dir)
                depth = backlog()
                try:
                    rig.tick()
                    result.violations.append("tick on a full lake filesystem did not fail")
                except Exception as exc:
                    result.notes["full_lake_tick_error"] = f"{type(exc).__name__}: {exc}"[:300]
                if backlog() < depth:
                    result.violations.append("spool backlog shrank while the lake was full")
                filler.unlink()
                t0 = time.time()
                rig.tick()
                result.recoveries_s.append(time.time() - t0)
                result.repetitions += 1
            if spool_mounted:
                # c) the spool's filesystem is full: events wait in memory, the streamer keeps its connection
                rig.tick()
                filler = _fill(home / "spool")
                wait_for(lambda: _streamer_status().spool.error is not None, 30, "the spool to report full")
                status = _streamer_status()
                result.notes["spool_full_error"] = (status.spool.error or "")[:300]
                result.notes["spool_pending_in_memory"] = status.spool.pending
                time.sleep(1.0)
                filler.unlink()
                t0 = time.time()
                wait_for(lambda: _streamer_status().spool.error is None, 30, "the spool to take writes again")
                result.recoveries_s.append(time.time() - t0)
                result.repetitions += 1
                if not _streamer_status().connection.connected:
                    result.violations.append("the streamer lost its connection while the spool was full")
            time.sleep(1.0)
            rig.tick()
            IBPositionStreamer().stop()
            windows = [(time.time(), float("inf"))]
            _sim_observations(result, sim)
            truth = _truth(sim)
            _check_and_absorb(result, sim, home, Lake.from_env({"V6_LAKE_URI": str(lake_dir)}), windows, truth)
        finally:
            rig.close()
    return result


# -- 7. malformed input -------------------------------------------------------------------------------------------
def _fuzz_frame(rng: random.Random) -> tuple[str, bytes]:
    """One bad but well-framed message (each must be rejected and counted by the client)."""
    kind = rng.choice(("random_bytes", "wrong_field_count", "non_utf8", "unknown_msg_id", "bad_numbers"))
    if kind == "random_bytes":
        return kind, b"\xfe" + rng.randbytes(rng.randint(0, 200)) + b"\0"
    if kind == "wrong_field_count":
        msg_id = rng.choice((7, 61, 95, 21, 4, 94))  # portfolio, position, PnL single, option computation, error
        fields = [str(msg_id)] + [str(rng.randint(0, 9)) for _ in range(rng.randint(0, 3))]
        return kind, "\0".join(fields).encode() + b"\0"
    if kind == "non_utf8":
        return kind, b"7\x00\xff\xfe\xfd\x00" + rng.randbytes(8).replace(b"\0", b"\x80") + b"\x00"
    if kind == "unknown_msg_id":
        return kind, f"{rng.randint(200, 10_000)}\0{rng.randint(0, 99)}\0".encode()
    return kind, b"95\0notanint\0nan\0inf\0-\0\0"


def scenario_fuzz(params: Params, workdir: Path, rng: random.Random) -> ScenarioResult:
    result = ScenarioResult("7 malformed input + sentinels")
    env = {**IN_PROCESS_ENV, "V6_IB_HEARTBEAT_S": "1", "V6_IB_PROBE_TIMEOUT_S": "1", "V6_IB_CONNECT_TIMEOUT_S": "2"}
    windows: list[tuple[float, float]] = []
    sim = _demo_sim()
    home = workdir / "v6"
    lake = Lake.from_env({"V6_LAKE_URI": str(workdir / "lake")})
    with _env(env), sim.running():
        settings = StreamerSettings.from_env({**os.environ, "V6_IB_PORT": str(sim.port), "V6_HOME": str(home)})
        streamer = IBPositionStreamer()
        try:
            streamer.ensure_started(settings)
            wait_for(lambda: streamer.status().connection.connected, 30, "connected")
            time.sleep(0.5)
            counter = decoder_error_counter()
            counted_before = counter.count
            kinds: dict[str, int] = {}
            sent = 0
            desync_every = max(1, params.fuzz_frames // max(1, params.fuzz_desyncs))
            desyncs = desync_errors = framed_mismatch = 0
            while sent < params.fuzz_frames:
                burst = min(50, params.fuzz_frames - sent)
                for _ in range(burst):
                    kind, payload = _fuzz_frame(rng)
                    kinds[kind] = kinds.get(kind, 0) + 1
                    sim.send_raw_frame(payload)
                sent += burst
                time.sleep(0.02)
                if desyncs < params.fuzz_desyncs and sent >= (desyncs + 1) * desync_every:
                    # A length prefix the stream cannot honour (truncated or huge): the client waits for bytes that
                    # never come as a message; the heartbeat must notice and reconnect.
                    wait_for(
                        lambda n=sent, d=desync_errors: counter.count - counted_before - d >= n,
                        10,
                        "bad frames counted",
                        step=0.02,
                    )  # type: ignore[misc]
                    framed_mismatch += counter.count - counted_before - desync_errors - sent
                    at_desync = counter.count
                    before = streamer.status().connection.reconnects
                    t0 = time.time()
                    huge = desyncs % 2 == 1
                    prefix = (0x7FFFFFF0).to_bytes(4, "big") if huge else (500).to_bytes(4, "big")
                    sim.send_raw_bytes(prefix + b"61\0truncated")
                    wait_for(lambda b=before: _reconnected_since(streamer.status(), b), 60,  # type: ignore[misc]
                             "reconnect after a desynchronising frame")  # fmt: skip
                    t1 = time.time()
                    # whatever the desynchronised stream decoded into (garbled frames) is logged and counted too
                    desync_errors += counter.count - at_desync
                    windows.append((t0, t1))
                    result.recoveries_s.append(t1 - t0)
                    desyncs += 1
                    kinds["huge_length_prefix" if huge else "truncated_length"] = (
                        kinds.get("huge_length_prefix" if huge else "truncated_length", 0) + 1
                    )
            wait_for(
                lambda: counter.count - counted_before - desync_errors >= sent, 20, "bad frames counted", step=0.05
            )
            time.sleep(0.3)
            counted = counter.count - counted_before - desync_errors
            result.repetitions = sent + desyncs
            result.notes.update(frames_sent=sent, desynchronising_frames=desyncs, kinds=kinds, errors_counted=counted,
                                errors_while_desynchronised=desync_errors)  # fmt: skip
            if counted != sent or framed_mismatch:
                result.violations.append(f"{sent} bad frames sent, {counted} counted as malformed")
            time.sleep(1.5)
            status = streamer.status()
            if not (status.running and status.connection.connected):
                result.violations.append("the streamer did not survive the fuzzing")
            streamer.stop()
            windows.append((time.time(), float("inf")))
        finally:
            discard_process_streamer()
        _sim_observations(result, sim)
        truth = _truth(sim)
    _check_and_absorb(result, sim, home, lake, windows, truth)
    return result


# -- 8. time: DST, early close, holiday ---------------------------------------------------------------------------
TIME_WINDOWS = (
    ("DST spring forward", datetime(2025, 3, 7, 15, 30, tzinfo=sessions.NEW_YORK), timedelta(days=3, hours=2)),
    ("holiday + early close", datetime(2025, 11, 26, 15, 30, tzinfo=sessions.NEW_YORK), timedelta(days=2)),
    ("July 3 early close + July 4", datetime(2025, 7, 3, 12, 30, tzinfo=sessions.NEW_YORK), timedelta(days=4)),
)


def _oracle_sessions(first: date, last: date) -> tuple[list[date], list[datetime]]:
    """Sessions and their EOD cuts straight from exchange_calendars (close + 15 min), independent of sessions.py."""
    cal = xcals.get_calendar("XNYS")
    days = cal.sessions_in_range(first.isoformat(), last.isoformat())
    closes = [cal.session_close(d).to_pydatetime().astimezone(UTC) + timedelta(minutes=15) for d in days]
    return [d.date() for d in days], closes


def scenario_time(params: Params, workdir: Path, rng: random.Random) -> ScenarioResult:
    import bisect

    import polars as pl

    result = ScenarioResult("8 time: DST, early close, holiday")
    windows_to_run = TIME_WINDOWS[:2] if params.quick else TIME_WINDOWS
    misassigned = 0
    for index, (label, start, length) in enumerate(windows_to_run):
        run_dir = workdir / f"time-{index}"
        home = run_dir / "v6"
        lake = Lake.from_env({"V6_LAKE_URI": str(run_dir / "lake")})
        scenario = load_scenario("demo", start_time=start)
        scenario = dataclasses.replace(scenario, events=())  # the book as is: the clock is what is under test
        sim = ChaosSimulator(scenario, port=0, speed=4000.0)
        with _env(IN_PROCESS_ENV), sim.running():
            settings = StreamerSettings.from_env({**os.environ, "V6_IB_PORT": str(sim.port), "V6_HOME": str(home)})
            streamer = IBPositionStreamer()
            try:
                streamer.ensure_started(settings, clock=sim.clock.now)
                wait_for(streamer.status, 30, "started")
                wait_for(lambda s=streamer: s.status().connection.connected, 30, "connected")  # type: ignore[misc]
                if not sim.wait_sim_time(start + length, timeout=120):
                    result.violations.append(f"{label}: simulated time did not reach the end in 120 s")
                streamer.stop()
            finally:
                discard_process_streamer()
            _sim_observations(result, sim)
            truth = _truth(sim)
        verdict_windows = [(time.time(), float("inf"))]
        _check_and_absorb(result, sim, home, lake, verdict_windows, truth)
        positions = lake.scan("position_updates").select("received_at", "trade_date").collect()
        days, cuts = _oracle_sessions(start.date() - timedelta(days=3), start.date() + length + timedelta(days=10))
        expected = [days[bisect.bisect_right(cuts, ts)] for ts in positions["received_at"].to_list()]
        wrong = int((positions["trade_date"] != pl.Series(expected, dtype=pl.Date)).sum())
        misassigned += wrong
        covered = sorted({d.isoformat() for d in positions["trade_date"].unique().to_list()})
        result.notes.setdefault("windows", []).append({"label": label, "rows": positions.height, "sessions": covered,
                                                        "misassigned": wrong})  # fmt: skip
        result.repetitions += 1
    result.notes["misassigned_partitions"] = misassigned
    if misassigned:
        result.violations.append(f"{misassigned} rows in the wrong session partition")
    return result


# -- 9. load ------------------------------------------------------------------------------------------------------
class SlowHandler:
    """A deliberately slow extra consumer: its own queue fills, its drops are counted, the spool is unaffected."""

    name = "slow"

    async def on_position_update(self, update: Any) -> None:
        await asyncio.sleep(0.002)


def scenario_load(params: Params, workdir: Path, rng: random.Random) -> ScenarioResult:
    from bench.ingest import SimChild

    result = ScenarioResult("9 load + slow handler")
    home = workdir / "v6"
    lake = Lake.from_env({"V6_LAKE_URI": str(workdir / "lake")})
    sim = SimChild(positions=2_000)
    me = psutil.Process()
    streamer = IBPositionStreamer()
    stop_drain = threading.Event()
    drain_errors: list[str] = []
    try:
        with _env(IN_PROCESS_ENV):
            settings = StreamerSettings.from_env({**os.environ, "V6_IB_PORT": str(sim.port), "V6_HOME": str(home)})
        streamer.add_handler(SlowHandler())
        streamer.ensure_started(settings)
        wait_for(lambda: streamer.status().connection.connected, 60, "connected")
        wait_for(lambda: streamer.status().subscriptions.pnl_subscriptions >= 2_000, 60, "PnL subscriptions")
        time.sleep(1.0)

        def drain_loop() -> None:
            while not stop_drain.is_set():
                try:
                    with Spool(settings.spool_path) as spool:
                        drain_spool_to_lake(spool, lake, settings.stream_id, batch_rows=50_000, max_rows=500_000)
                except Exception as exc:
                    drain_errors.append(str(exc))
                stop_drain.wait(1.0)

        drainer = threading.Thread(target=drain_loop, daemon=True)
        drainer.start()
        first_offset = streamer.status().spool.last_offset
        rss: list[float] = []
        connections: list[int] = []
        sent = 0
        started = time.monotonic()
        while time.monotonic() - started < params.load_s:
            second = time.monotonic()
            thread = sim.blast_async(params.load_rate)
            thread.join(30)
            sent += int(thread.result.get("written", 0))  # type: ignore[attr-defined]
            rss.append(me.memory_info().rss / 2**20)
            # the simulator runs in a child process: count our TCP connections to it, as the OS sees them
            links = me.net_connections(kind="tcp")
            connections.append(
                sum(1 for c in links if c.raddr and c.raddr.port == sim.port and c.status == psutil.CONN_ESTABLISHED)
            )
            time.sleep(max(0.0, 1.0 - (time.monotonic() - second)))
        elapsed = time.monotonic() - started
        wait_for(lambda: streamer.status().spool.last_offset - first_offset >= sent, 60, "spool to catch up", 0.1)
        spooled = streamer.status().spool.last_offset - first_offset
        status = streamer.status()
        slow = next((h for h in status.handlers if h.name == "slow"), None)
        streamer.stop()
        stop_drain.set()
        drainer.join(120)
        with Spool(settings.spool_path) as spool:
            drain_spool_to_lake(spool, lake, settings.stream_id, batch_rows=100_000, max_rows=50_000_000)
        half = max(1, len(rss) // 2)
        result.repetitions = 1
        result.notes.update(
            target_rate=params.load_rate,
            achieved_rate=round(sent / elapsed),
            seconds=round(elapsed, 1),
            spooled=spooled,
            rss_mb_first_half_max=round(max(rss[:half]), 1),
            rss_mb_second_half_max=round(max(rss[half:] or rss), 1),
            slow_handler_delivered=slow.delivered if slow else None,
            slow_handler_dropped=slow.dropped if slow else None,
            slow_handler_queue_max=slow.queue_max if slow else None,
            drain_errors=drain_errors[:3],
        )
        if spooled < sent:
            result.lost += sent - spooled
        if slow is None or slow.dropped + slow.delivered + slow.queue_depth < sent:
            result.violations.append("the slow handler's deliveries + drops do not account for every update")
        if len(rss) >= 4 and max(rss[half:]) > max(rss[:half]) * 1.5 + 100:
            result.violations.append("memory kept growing under load")
        result.order_requests += sim.violations()
        verdict = verify(truth_sent=[], lake=lake, stream_id=settings.stream_id, spool_path=settings.spool_path,
                         option_ids=set(), windows=[])  # fmt: skip
        verdict.sent = sent
        result.absorb(verdict)
        result.max_ib_connections = max(connections or [0])
        result.notes["connections_sampled"] = len(connections)
    finally:
        stop_drain.set()
        discard_process_streamer()
        sim.close()
    return result


# -- 5. code location reload under the real stack ----------------------------------------------------------------
def scenario_reload(params: Params, workdir: Path, rng: random.Random) -> ScenarioResult:
    from v6_assets_tests.e2e.harness import DagsterDev

    result = ScenarioResult("5 code location reload (the stack)")
    windows: list[tuple[float, float]] = []
    sim = _demo_sim()
    with sim.running():
        env = {
            **FAKE_SECRETS,
            "V6_IB_PORT": str(sim.port),
            "V6_IB_CLIENT_ID": str(CLIENT_ID),
            "V6_SENSOR_INTERVAL_S": "1",
            "V6_REFRESH_MINUTES": "100000",
            "V6_IB_BACKOFF_INITIAL_S": "0.1",
            "V6_IB_BACKOFF_MAX_S": "0.5",
            "V6_IB_GREEKS_THROTTLE_S": "0",
        }
        dev = DagsterDev(workdir / "dev", env=env)
        with dev:
            wait_for(lambda: sim.active_client_ids() == [CLIENT_ID], 180, "the sensor to connect", step=0.2)
            time.sleep(2.0)
            gql = dev.graphql()
            for _ in range(params.reloads):
                before = len(sim.requests())
                t0 = time.time()
                gql.reload_location()

                def reconnected(b: int = before) -> bool:
                    fresh = [r for r in sim.requests()[b:] if r.get("msg_id") == 71]  # START_API after a reload
                    return bool(fresh) and sim.active_client_ids() == [CLIENT_ID]

                wait_for(reconnected, 120, "the stream to reconnect after a reload", step=0.1)
                t1 = time.time()
                windows.append((t0, t1))
                result.recoveries_s.append(t1 - t0)
                result.repetitions += 1
                time.sleep(rng.uniform(1.0, 3.0))
            listeners = non_loopback_listeners([p.pid for p in dev.processes()])
            result.violations.extend(listeners)
            result.notes["dagster_processes_checked"] = len(dev.processes())
            # from here the stack shuts down: what its code server held unread or unspooled dies with it
            windows.append((time.time(), float("inf")))
        result.notes["fault_windows"] = [(round(a, 2), round(b, 2)) for a, b in windows[:-1]]
        _sim_observations(result, sim)
        truth = _truth(sim)
    lake = Lake.from_env({"V6_LAKE_URI": dev.lake_uri})
    _check_and_absorb(result, sim, dev.v6_home, lake, windows, truth)
    hits = secret_hits([dev.workdir])
    result.notes["secret_hits"] = len(hits)
    result.violations.extend(f"secret value in {h}" for h in hits)
    return result


# -- 10. kill -9 of each process of the stack, healed by its supervisor and the launcher's watchdog ------------------
def scenario_stack(params: Params, workdir: Path, rng: random.Random) -> ScenarioResult:
    from bench.chaos_stack import KINDS, QUICK_KINDS, RESUME_BUDGET_S, run_stack_kills

    result = ScenarioResult("10 kill -9 of the stack's processes")
    sim = _demo_sim()
    with sim.running():
        kinds = params.stack_kinds or (QUICK_KINDS if params.quick else KINDS)
        say = lambda m: print(m, file=sys.stderr)  # noqa: E731
        budget = None if params.quick else RESUME_BUDGET_S
        out = run_stack_kills(workdir, sim.port, kinds, params.stack_kills, rng, say=say, budget_s=budget)
        for times in out["recoveries"].values():
            result.recoveries_s.extend(times)
        result.repetitions = len(result.recoveries_s)
        result.violations.extend(out["violations"])
        result.notes.update(out["notes"])
        _sim_observations(result, sim)
        truth = _truth(sim)
    dev = out["dev"]
    lake = Lake.from_env({"V6_LAKE_URI": dev.lake_uri})
    _check_and_absorb(result, sim, dev.v6_home, lake, out["windows"], truth)
    return result


# -- runner -------------------------------------------------------------------------------------------------------
# -- 10. a week in the life (IB's day and night) -------------------------------------------------------------------
def scenario_week(params: Params, workdir: Path, rng: random.Random) -> ScenarioResult:
    week = run_week(params.quick, workdir)
    result = ScenarioResult("10 week in the life", repetitions=week.sessions, updates_sent=week.sent,
                            stored=week.stored, lost=week.lost, duplicated=week.duplicated,
                            max_ib_connections=week.max_ib_connections, order_requests=week.order_requests)  # fmt: skip
    result.notes.update(week.figures())
    if week.pacing_errors:
        result.violations.append(f"{week.pacing_errors} pacing errors (100) or pacing disconnects from the gateway")
    result.violations.extend(f"gap missing from stream_health: {g}" for g in week.gaps_missing_from_stream_health)
    result.violations.extend(f"EOD row held back by a gap but not flagged: {r}" for r in week.affected_not_flagged)
    if not week.truth_gaps or not week.eod_rows:
        result.violations.append(f"nothing checked: {week.truth_gaps} gaps, {week.eod_rows} EOD rows")
    return result


SCENARIOS: dict[str, Callable[[Params, Path, random.Random], ScenarioResult]] = {
    "disconnect": scenario_disconnect,
    "refuse": scenario_refuse,
    "stall": scenario_stall,
    "kill": scenario_kill,
    "reload": scenario_reload,
    "write": scenario_write_failures,
    "fuzz": scenario_fuzz,
    "time": scenario_time,
    "load": scenario_load,
    "stack": scenario_stack,
    "week": scenario_week,
}


def run_scenario(name: str, params: Params, workdir: Path, seed: int = 8) -> ScenarioResult:
    started = time.monotonic()
    rng = random.Random(f"{seed}:{name}")
    try:
        with fake_secrets_in_env():
            result = SCENARIOS[name](params, workdir, rng)
    except Exception as exc:
        result = ScenarioResult(name, error=f"{type(exc).__name__}: {exc}")
        result.notes["traceback"] = traceback.format_exc()[-3000:]
    finally:
        discard_process_streamer()
        failpoints.reload_from_env()
    result.duration_s = time.monotonic() - started
    return result


def security_rows(results: list[ScenarioResult], log_paths: list[Path]) -> list[dict[str, Any]]:
    listeners = sum(r.notes.get("non_loopback_listeners", 0) for r in results) + sum(
        1 for r in results for v in r.violations if " listens on " in v
    )
    secrets = sum(r.notes.get("secret_hits", 0) for r in results) + len(secret_hits(log_paths))
    foreign = sum(r.notes.get("foreign_rows", 0) for r in results)
    return [
        {"check": "order-placing requests seen by the simulator", "value": sum(r.order_requests for r in results)},
        {"check": "rows from accounts outside the allowlist", "value": foreign},
        {"check": "services listening on anything but 127.0.0.1", "value": listeners},
        {"check": "secret values in logs / run config / event log", "value": secrets},
    ]


def _fmt(value: Any) -> str:
    return "-" if value is None else str(value)


def print_table(results: list[ScenarioResult], security: list[dict[str, Any]]) -> None:
    header = ["scenario", "reps", "sent", "stored", "lost", "dup", "max conn", "orders", "recov med s", "recov max s",
              "ok"]  # fmt: skip
    rows = [
        [r.scenario, r.repetitions, r.updates_sent, r.stored, r.lost, r.duplicated, r.max_ib_connections,
         r.order_requests, r.recovery_median_s, r.recovery_max_s, "yes" if r.ok else "NO"]
        for r in results
    ]  # fmt: skip
    widths = [max(len(_fmt(x)) for x in col) for col in zip(header, *rows, strict=True)]
    line = " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))
    print(line)
    print("-" * len(line))
    for row in rows:
        print(" | ".join(_fmt(x).ljust(w) for x, w in zip(row, widths, strict=True)))
    for r in results:
        for problem in ([r.error] if r.error else []) + r.violations:
            print(f"  ! {r.scenario}: {problem}")
    print()
    for check in security:
        print(f"security: {check['check']}: {check['value']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short repetitions (the make test version)")
    parser.add_argument("--only", default="", help="comma-separated scenario names: " + ",".join(SCENARIOS))
    parser.add_argument("--json", default="", help="output file (default bench/results/chaos[_quick].json)")
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--stack-kinds", default="", help="scenario 10 only these, e.g. 'gRPC server,daemon'")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {unknown}; choose from {list(SCENARIOS)}")
    params = Params.for_mode(args.quick)
    if args.stack_kinds:
        params = dataclasses.replace(params, stack_kinds=tuple(k.strip() for k in args.stack_kinds.split(",")))
    workroot = Path(tempfile.mkdtemp(prefix="v6-chaos-"))
    log_path = workroot / "chaos.log"
    handler = logging.FileHandler(log_path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    results = []
    try:
        for name in names:
            print(f"running {name} ...", file=sys.stderr, flush=True)
            result = run_scenario(name, params, workroot / name, args.seed)
            print(f"  {name}: {'ok' if result.ok else 'FAILED'} in {result.duration_s:.0f} s", file=sys.stderr)
            results.append(result)
        handler.flush()
        security = security_rows(results, [log_path])
        print_table(results, security)
        out = Path(args.json) if args.json else RESULTS_DIR / ("chaos_quick.json" if args.quick else "chaos.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({
            "mode": "quick" if args.quick else "full",
            "generated_at": datetime.now(UTC).isoformat(),
            "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
            "params": dataclasses.asdict(params),
            "scenarios": [r.as_dict() for r in results],
            "security": security,
        }, indent=2, default=str) + "\n")  # fmt: skip
        print(f"\nwrote {out}")
        ok = all(r.ok for r in results) and all(c["value"] == 0 for c in security)
        return 0 if ok else 1
    finally:
        logging.getLogger().removeHandler(handler)
        shutil.rmtree(workroot, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
