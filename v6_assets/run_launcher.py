"""The instance's run launcher: Dagster's ``DefaultRunLauncher`` plus a check of the run worker's health (issue 17).

Why: Dagster's run monitoring (``run_monitoring`` in ``dagster.yaml``) fails a run whose worker died only when the
launcher can check the worker, and ``DefaultRunLauncher`` cannot. So a run whose worker was killed together with its
code server stayed STARTED for ever, and held the refresh queue (one refresh at a time) shut behind it.

Each run worker reports its own pid in its first engine event ("Started process for run (pid: N)"). When the run was
launched on a loopback code server (the one-machine layout of ``python -m v6_assets.supervisor``: the worker is a
process of this machine), the daemon's monitoring checks that pid. A pid that is gone, a zombie, or a process that
started after the run did (the pid was reused) means the worker died, and the daemon marks the run failed with that
reason. A worker on another host (the gRPC server is not on loopback: ``deploy/compose``) cannot be checked from here
and counts as running, as with Dagster's own launcher; there the container runtime and ``start_timeout_seconds`` /
``max_runtime_seconds`` are the safety net.
"""

from __future__ import annotations

import json
from typing import Any

import psutil
from dagster import DagsterEventType, DagsterRun, DefaultRunLauncher
from dagster._core.launcher.base import CheckRunHealthResult, WorkerStatus
from dagster._core.storage.tags import GRPC_INFO_TAG

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
PID_REUSE_SLACK_S = 2.0  # a worker starts before its run is marked STARTED; a later process is another one


def worker_pid(engine_events: list[Any]) -> int | None:
    """The pid a run worker reported in its "Started process for run" engine event, if it did."""
    for record in engine_events:
        event = record.dagster_event
        data = getattr(event, "engine_event_data", None) if event is not None else None
        pid = data.metadata.get("pid") if data is not None else None
        if pid is not None and str(pid.value).isdigit():
            return int(pid.value)
    return None


def worker_on_this_machine(run: DagsterRun) -> bool:
    """Whether the run was launched on a code server of this machine (loopback host or a unix socket)."""
    try:
        grpc_info = json.loads(run.tags.get(GRPC_INFO_TAG, ""))
    except ValueError:
        return False
    return bool(grpc_info.get("socket")) or grpc_info.get("host") in LOOPBACK_HOSTS


def worker_status(pid: int, run_started_at: float | None) -> tuple[WorkerStatus, str]:
    """Whether process ``pid`` is still the run worker that reported it (``run_started_at``: the run's start)."""
    try:
        process = psutil.Process(pid)
        status, created = process.status(), process.create_time()
    except psutil.NoSuchProcess:
        return WorkerStatus.FAILED, f"its run worker (pid {pid}) is gone: it was killed or crashed"
    if status == psutil.STATUS_ZOMBIE:
        return WorkerStatus.FAILED, f"its run worker (pid {pid}) has exited without reporting the run's end"
    if run_started_at is not None and created > run_started_at + PID_REUSE_SLACK_S:
        return WorkerStatus.FAILED, f"its run worker (pid {pid}) is gone: that pid now belongs to a newer process"
    return WorkerStatus.RUNNING, f"run worker pid {pid} is alive"


class LocalWorkerRunLauncher(DefaultRunLauncher):
    """``DefaultRunLauncher`` whose run workers on this machine can be health-checked by run monitoring."""

    def __init__(self, inst_data: Any = None) -> None:
        super().__init__(inst_data=inst_data)
        self._pids: dict[str, int] = {}

    @classmethod
    def from_config_value(cls, inst_data: Any, config_value: Any) -> LocalWorkerRunLauncher:
        return cls(inst_data=inst_data)

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        if not worker_on_this_machine(run):
            return CheckRunHealthResult(WorkerStatus.RUNNING, "run worker on another host: not checked here")
        pid = self._pids.get(run.run_id)
        if pid is None:
            events = self._instance.all_logs(run.run_id, of_type=DagsterEventType.ENGINE_EVENT)
            pid = worker_pid(list(events))
            if pid is None:
                return CheckRunHealthResult(WorkerStatus.RUNNING, "run worker has not reported its pid yet")
            self._pids[run.run_id] = pid
        record = self._instance.get_run_record_by_id(run.run_id)
        status, message = worker_status(pid, record.start_time if record is not None else None)
        if status != WorkerStatus.RUNNING:
            self._pids.pop(run.run_id, None)
        return CheckRunHealthResult(status, message)
