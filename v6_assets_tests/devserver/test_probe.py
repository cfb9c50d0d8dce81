"""``python -m v6_assets.devserver --probe PORT`` (the production code server's liveness probe, issue 17) passes while
a real ``dagster code-server start`` reaches its user-code child and fails once that child is killed -9, while
dagster's own ``dagster api grpc-health-check`` (answered by the proxy) still passes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from v6_assets.devserver import free_port, probe_code_server, stack_roles

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _probe_cli(port: int) -> int:
    cmd = [sys.executable, "-m", "v6_assets.devserver", "--probe", str(port)]
    return subprocess.run(cmd, cwd=PROJECT_ROOT, capture_output=True, timeout=120).returncode


def test_probe_fails_when_the_code_servers_grpc_child_is_killed(tmp_path: Path) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(PROJECT_ROOT / "dagster.yaml", home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("V6_", "DAGSTER_"))}
    env.update(DAGSTER_HOME=str(home), V6_HOME=str(tmp_path / "v6"), V6_LAKE_URI=str(tmp_path / "lake"),
               V6_IB_HOST="127.0.0.1", V6_IB_PORT=str(free_port()))  # fmt: skip
    port = free_port()
    dagster = Path(sys.executable).with_name("dagster")
    server = subprocess.Popen(
        [str(dagster), "code-server", "start", "-h", "127.0.0.1", "-p", str(port), "-m", "v6_assets.definitions",
         "--location-name", "v6_assets"],
        cwd=PROJECT_ROOT, env=env, stdout=(tmp_path / "out.log").open("wb"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while probe_code_server(port) is not None:
            assert server.poll() is None, (tmp_path / "out.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the code server did not serve"
            time.sleep(1)
        family = psutil.Process(server.pid).children(recursive=True)
        child = [pid for pid, role in stack_roles(family).items() if role == "gRPC server"]
        assert len(child) == 1, family
        os.kill(child[0], signal.SIGKILL)
        psutil.Process(child[0]).wait(10)
        assert server.poll() is None  # the proxy lives on without its child: what the probe must catch
        health = subprocess.run([str(dagster), "api", "grpc-health-check", "-p", str(port)], capture_output=True,
                                timeout=120)  # fmt: skip
        assert health.returncode == 0  # dagster's own check is blind to it
        assert probe_code_server(port) is not None
        assert _probe_cli(port) == 1
    finally:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait(10)
