"""Suite-wide: every process a test starts ends with the run (see ``v6_assets_tests.reaper``)."""

from __future__ import annotations

import os
import subprocess

import pytest

from v6_assets_tests import reaper

_watchdog: subprocess.Popen[bytes] | None = None


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
