"""The supervisor tells the processes of the stack apart by their command lines (issue 17, point 1).

The command lines are those ``v6_assets.supervisor`` starts and dagster 1.13 spawns below them (a code server's
``dagster api grpc`` child, a run worker), as ``ps`` shows them; the e2e chaos test
(``v6_assets_tests/chaos/test_chaos_quick.py::TestStackKills``) runs the real stack.
"""

from __future__ import annotations

from v6_assets.devserver import (
    CODE_SERVER,
    DAEMON,
    GRPC_SERVER,
    RUN_WORKER,
    SUPERVISOR,
    WEBSERVER,
    stack_role,
)

PY = "/srv/v6/.venv/bin/python"


def test_each_process_of_the_stack_is_recognised() -> None:
    assert stack_role([PY, "-m", "v6_assets.supervisor", "--port", "3000", "--shutdown-pipe", "5"]) == SUPERVISOR
    assert stack_role([PY, "-m", "dagster_webserver", "--port", "3000", "--host", "127.0.0.1"]) == WEBSERVER
    assert stack_role([PY, "-m", "dagster._daemon", "run", "--log-level", "info"]) == DAEMON
    assert stack_role([PY, "-m", "dagster", "code-server", "start", "-h", "127.0.0.1", "-p", "4000"]) == CODE_SERVER
    assert stack_role([PY, "-m", "dagster", "api", "grpc", "--lazy-load-user-code", "--socket", "/y"]) == GRPC_SERVER
    spawn = [PY, "-B", "-c", "from multiprocessing.spawn import spawn_main; spawn_main(tracker_fd=34, pipe_handle=36)"]
    assert stack_role(spawn, parent_role=GRPC_SERVER) == RUN_WORKER


def test_other_processes_are_not_taken_for_the_stack() -> None:
    spawn = [PY, "-B", "-c", "from multiprocessing.spawn import spawn_main; spawn_main(tracker_fd=3, pipe_handle=5)"]
    assert stack_role(spawn, parent_role=None) is None  # a pool worker of something else
    tracker = [PY, "-B", "-c", "from multiprocessing.resource_tracker import main;main(33)"]
    assert stack_role(tracker, parent_role=GRPC_SERVER) is None
    assert stack_role([PY, "-m", "v6_assets.devserver", "--port", "3000"]) is None
    assert stack_role([PY, "-m", "pytest", "-k", "dev"]) is None
    assert stack_role([PY, "-m", "dagster", "asset", "materialize", "--select", "dev"]) is None
    assert stack_role([PY, "-m", "dagster", "dev", "-w", "workspace.yaml"]) is None  # not what the stack runs
    assert stack_role([]) is None
