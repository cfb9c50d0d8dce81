"""``make run`` (``python -m v6_assets.devserver``) stops the real stack (supervisor, code server + gRPC child,
webserver, daemon) and everything it started within 10 s of SIGTERM or SIGINT (issue 17, point 5). Slow: it starts a
whole stack (excluded from ``make test``)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from v6_assets.devserver import free_port

PROJECT_ROOT = Path(__file__).resolve().parents[2]
STOP_BUDGET_S = 10.0


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/server_info", timeout=3):
            return True
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_make_run_stops_everything_within_10_s(tmp_path: Path, sig: signal.Signals) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("V6_", "DAGSTER_"))}
    env.update(
        DAGSTER_HOME=str(home), V6_HOME=str(tmp_path / "v6"), V6_LAKE_URI=str(tmp_path / "lake"),
        V6_IB_HOST="127.0.0.1", V6_IB_PORT=str(free_port()),  # no gateway there: the streamer keeps retrying
    )  # fmt: skip
    port = free_port()
    wrapper = subprocess.Popen(
        [sys.executable, "-m", "v6_assets.devserver", "--port", str(port)],
        cwd=PROJECT_ROOT, env=env, stdout=(tmp_path / "out.log").open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    family: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 240
        while not _ready(f"http://127.0.0.1:{port}"):
            assert wrapper.poll() is None, (tmp_path / "out.log").read_text()[-4000:]
            assert time.monotonic() < deadline, "the stack did not start"
            time.sleep(1)
        time.sleep(15)  # the daemon's first sensor ticks start the streamer in the code server
        family = psutil.Process(wrapper.pid).children(recursive=True)
        assert len(family) >= 3, family  # supervisor, webserver, daemon, code server (+ its gRPC child)
        sent = time.monotonic()
        wrapper.send_signal(sig)
        wrapper.wait(timeout=60)
        _gone, alive = psutil.wait_procs(family, timeout=max(0.1, sent + STOP_BUDGET_S - time.monotonic()))
        elapsed = time.monotonic() - sent
        print(f"stop after {sig.name}: {elapsed:.1f} s, {len(family)} processes")  # the figure for the note
        assert not alive, f"still running {elapsed:.1f} s after {sig.name}: {alive}"
        assert elapsed <= STOP_BUDGET_S, f"stop took {elapsed:.1f} s"
    finally:
        if wrapper.poll() is None:
            wrapper.kill()
        for proc in family:
            if proc.is_running():
                proc.kill()
