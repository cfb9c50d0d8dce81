"""Suite-wide: every process a test starts ends with the run (see ``v6_assets_tests.reaper``)."""

from __future__ import annotations

import os
import subprocess
from typing import Any

import pytest

from v6_assets_tests import reaper

_watchdog: subprocess.Popen[bytes] | None = None


# Modules whose classes share one module-scoped stack (one dagster dev, one simulated replay): xdist's loadscope would
# give each class its own work unit, so each worker would build the stack again. Their tests stay on one worker.
ONE_WORKER_MODULES = frozenset(
    {
        "v6_assets_tests/e2e/test_e2e.py",
        "v6_assets_tests/pipeline/test_statements.py",
        "v6_assets_tests/cli/test_cli.py",
    }
)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getoption("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class OneWorkerForSharedStacks(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return module if module in ONE_WORKER_MODULES else str(super()._split_scope(nodeid))

    return OneWorkerForSharedStacks(config, log)


def pytest_configure(config: pytest.Config) -> None:
    global _watchdog
    if os.environ.get(reaper.MARKER_VAR) or hasattr(config, "workerinput"):
        return  # a pytest started by a test, or an xdist worker: the outer run owns the marker
    killed = reaper.reap_orphans_of_dead_runs()
    if killed:
        print(f"\nreaper: ended {len(killed)} processes left by an earlier killed run:")
        for line in killed:
            print(f"  {line}")
    marker = reaper.new_marker()
    os.environ[reaper.MARKER_VAR] = marker  # a real setenv: children inherit it; no native thread runs yet
    _watchdog = reaper.start_watchdog(marker)


def pytest_unconfigure(config: pytest.Config) -> None:
    global _watchdog
    if _watchdog is None:
        return
    marker = os.environ.get(reaper.MARKER_VAR, "")
    left = reaper.kill_marked(marker) if marker else []
    if left:
        # fixtures should have stopped these; say so loudly, the reaper still ended them
        print(f"\nreaper: {len(left)} processes outlived their tests and were ended:")
        for line in left:
            print(f"  {line}")
    _watchdog.terminate()
    _watchdog.wait(timeout=10)
    _watchdog = None
