"""Nothing a test run starts outlives it: kill -9 of pytest, and leftovers found at the next start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from v6_assets_tests import reaper

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def _gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not reaper._alive(pid):
            return True
        time.sleep(0.1)
    return False


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_kill_9_of_pytest_ends_a_child_in_its_own_session(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    inner = tmp_path / "test_inner.py"
    inner.write_text(
        textwrap.dedent(f"""
        import pathlib, subprocess, sys, time

        def test_starts_a_detached_child():
            child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)
            pathlib.Path({str(pid_file)!r}).write_text(str(child.pid))
            time.sleep(600)
        """)
    )
    env = {k: v for k, v in os.environ.items() if k != reaper.MARKER_VAR}  # the inner pytest owns its own run
    env["PYTHONPATH"] = str(PROJECT_ROOT)
    inner_pytest = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "v6_assets_tests.conftest", str(inner)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    child = 0
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.exists() and pid_file.read_text().strip()):
            assert inner_pytest.poll() is None, "the inner pytest ended early"
            assert time.monotonic() < deadline, "the inner test never started its child"
            time.sleep(0.1)
        child = int(pid_file.read_text())
        marker = reaper._environ_marker(child)
        assert marker is not None and marker.startswith(f"{inner_pytest.pid}:"), marker
        os.kill(inner_pytest.pid, signal.SIGKILL)
        inner_pytest.wait(timeout=10)
        assert _gone(child, timeout_s=15), f"{child} outlived the killed pytest"
    finally:
        _kill(inner_pytest.pid)
        if child:
            _kill(child)


def test_the_next_start_ends_leftovers_of_a_dead_run() -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    marker = f"{dead.pid}:leftover"
    env = {**os.environ, reaper.MARKER_VAR: marker}
    orphan = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while reaper._environ_marker(orphan.pid) != marker:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        ended = reaper.reap_orphans_of_dead_runs()
        assert any(line.startswith(f"{orphan.pid}:") for line in ended), ended
        assert orphan.wait(timeout=10) is not None
    finally:
        _kill(orphan.pid)
