"""The supervisor's own logic, with real child processes standing in for the parts (no Dagster): what it serves from
a workspace file, that a part which exits is restarted alone and one that keeps dying quickly is restarted after a
backoff, and that ``stop_all`` leaves nothing running (issue 17, point 1). The real stack is killed part by part in
``v6_assets_tests/chaos/test_chaos_quick.py::TestStackKills``."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest
import yaml

from v6_assets.devserver import CODE_SERVER, DAEMON, WEBSERVER
from v6_assets.supervisor import Part, Supervisor, SupervisorError, code_locations, grpc_workspace

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]
QUITTER = [sys.executable, "-c", "raise SystemExit(3)"]


def test_the_workspace_becomes_code_servers_on_fixed_ports_and_grpc_entries(tmp_path: Path) -> None:
    (tmp_path / "workspace.yaml").write_text(
        "load_from:\n  - python_module:\n      module_name: v6_assets.definitions\n      location_name: v6_assets\n"
        "      working_directory: .\n"
    )
    [location] = code_locations(tmp_path / "workspace.yaml", [4123])
    assert (location.name, location.module, location.port) == ("v6_assets", "v6_assets.definitions", 4123)
    assert location.working_directory == str(tmp_path.resolve())
    served = yaml.safe_load(grpc_workspace([location]))
    assert served == {"load_from": [{"grpc_server": {"host": "127.0.0.1", "port": 4123, "location_name": "v6_assets"}}]}


@pytest.mark.parametrize(
    "text", ["load_from: []\n", "load_from:\n  - python_file:\n      relative_path: x.py\n", "{not yaml: [\n"]
)
def test_a_workspace_it_cannot_serve_is_refused_with_a_message(tmp_path: Path, text: str) -> None:
    (tmp_path / "workspace.yaml").write_text(text)
    with pytest.raises(SupervisorError, match=r"workspace"):
        code_locations(tmp_path / "workspace.yaml")


def test_an_exited_part_is_restarted_alone_and_a_crash_loop_backs_off(tmp_path: Path) -> None:
    lines: list[str] = []
    steady = [Part(WEBSERVER, SLEEPER, str(tmp_path)), Part(DAEMON, SLEEPER, str(tmp_path))]
    crashing = Part(CODE_SERVER, QUITTER, str(tmp_path))
    supervisor = Supervisor([*steady, crashing], env={}, say=lines.append, stable_s=600)
    try:
        supervisor.start_all(threading.Event())
        daemon, webserver = steady[1].proc, steady[0].proc
        assert daemon is not None and webserver is not None
        steady[1].started_at -= 3600  # the daemon had run for an hour: restarted at once, no backoff
        daemon.kill()
        daemon.wait(30)
        assert crashing.proc is not None
        crashing.proc.wait(30)
        supervisor.check()
        assert steady[1].proc is not daemon and steady[1].restarts == 1  # the dead daemon was restarted...
        assert steady[0].proc is webserver and steady[0].restarts == 0  # ...the webserver left alone
        assert crashing.restarts == 0 and crashing.next_start > 0  # the first quick death waits 1 s
        assert any("daemon pid" in line and "exited with code -9" in line for line in lines), lines
        assert any("code server" in line and "restarting it in 1 s" in line for line in lines), lines
    finally:
        supervisor.stop_all()
    procs = [p.proc for p in supervisor.parts if p.proc is not None]
    assert all(proc.poll() is not None for proc in procs)
