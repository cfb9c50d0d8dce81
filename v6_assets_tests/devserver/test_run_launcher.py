"""Issue 17: a run whose worker died is failed by Dagster's own run monitoring, not left STARTED for ever.

Real parts: a Dagster instance configured like ``dagster.yaml`` (our launcher, run monitoring on), Dagster's own
monitoring step (``monitor_started_run``, what the daemon runs every poll), and real worker processes that are killed.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import yaml
from dagster import DagsterInstance, DagsterRunStatus, instance_for_test
from dagster._core.events import DagsterEvent, DagsterEventType, EngineEventData
from dagster._core.launcher.base import WorkerStatus
from dagster._core.storage.tags import GRPC_INFO_TAG
from dagster._core.test_utils import create_run_for_test
from dagster._daemon.monitoring.run_monitoring import monitor_started_run

from v6_assets.run_launcher import LocalWorkerRunLauncher, worker_status

PROJECT_YAML = Path(__file__).resolve().parents[2] / "dagster.yaml"
LOOPBACK_GRPC = json.dumps({"host": "127.0.0.1", "port": 4266})
REMOTE_GRPC = json.dumps({"host": "code-server", "port": 4266})


@pytest.fixture(scope="module")
def instance() -> Iterator[DagsterInstance]:
    project = yaml.safe_load(PROJECT_YAML.read_text())
    overrides = {"run_launcher": project["run_launcher"], "run_monitoring": project["run_monitoring"]}
    with instance_for_test(overrides=overrides, set_dagster_home=False) as inst:
        yield inst


def _started_run(instance: DagsterInstance, grpc_info: str, worker_pid: int) -> str:
    run = create_run_for_test(instance, job_name="daily_assets", tags={GRPC_INFO_TAG: grpc_info})
    # as a worker does: RUN_START (the run becomes STARTED, with its start time), then its pid
    instance.report_dagster_event(DagsterEvent(DagsterEventType.RUN_START.value, job_name=run.job_name), run.run_id)
    instance.report_engine_event(
        f"Started process for run (pid: {worker_pid}).", run, EngineEventData.in_process(worker_pid)
    )
    return run.run_id


def _monitor(instance: DagsterInstance, run_id: str) -> DagsterRunStatus:
    record = instance.get_run_record_by_id(run_id)
    assert record is not None
    if record.dagster_run.status == DagsterRunStatus.STARTED:
        monitor_started_run(instance, None, record, logging.getLogger("run_monitoring"))  # type: ignore[arg-type]
    run = instance.get_run_by_id(run_id)
    assert run is not None
    return run.status


def _worker() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])


def test_the_project_instance_uses_the_checking_launcher(instance: DagsterInstance) -> None:
    assert isinstance(instance.run_launcher, LocalWorkerRunLauncher)
    assert instance.run_monitoring_enabled
    assert instance.run_launcher.supports_check_run_worker_health


def test_a_killed_worker_fails_its_run_with_the_reason(instance: DagsterInstance) -> None:
    worker = _worker()
    try:
        run_id = _started_run(instance, LOOPBACK_GRPC, worker.pid)
        assert _monitor(instance, run_id) == DagsterRunStatus.STARTED  # alive: left alone
        worker.kill()
        worker.wait()
        assert _monitor(instance, run_id) == DagsterRunStatus.FAILURE
    finally:
        worker.kill()
        worker.wait()
    messages = [e.message for e in instance.all_logs(run_id) if e.message]
    assert any(f"pid {worker.pid}" in m and "killed or crashed" in m for m in messages), messages


def test_an_exited_unreaped_worker_counts_as_dead(instance: DagsterInstance) -> None:
    worker = _worker()
    try:
        run_id = _started_run(instance, LOOPBACK_GRPC, worker.pid)
        worker.kill()  # and not reaped (yet): a zombie, as a killed child of a busy gRPC server can be
        _wait_zombie(worker.pid)
        assert _monitor(instance, run_id) == DagsterRunStatus.FAILURE
    finally:
        worker.wait()


def _wait_zombie(pid: int) -> None:
    process = psutil.Process(pid)
    for _ in range(200):
        if process.status() == psutil.STATUS_ZOMBIE:
            return
        time.sleep(0.05)
    raise AssertionError(f"pid {pid} never became a zombie")


def test_a_worker_on_another_host_is_not_judged_from_here(instance: DagsterInstance) -> None:
    worker = _worker()
    worker.kill()
    worker.wait()
    run_id = _started_run(instance, REMOTE_GRPC, worker.pid)
    assert _monitor(instance, run_id) == DagsterRunStatus.STARTED


def test_a_reused_pid_is_not_the_worker() -> None:
    me = psutil.Process()
    assert worker_status(me.pid, me.create_time() + 60)[0] == WorkerStatus.RUNNING
    status, message = worker_status(me.pid, me.create_time() - 60)
    assert status == WorkerStatus.FAILED and "newer process" in message
