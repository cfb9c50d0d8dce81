"""Nothing a test run starts outlives it, also when pytest is killed with SIGKILL or crashes.

Every process the suite starts inherits ``PYTEST_RUN_MARKER=<pytest pid>:<random>`` from the pytest process (dagster dev
and its code servers, run workers, PostgreSQL, the moto server, Chromium, the simulator CLI, helper children), also
those that start their own session or process group. Three layers end them:

1. fixtures stop what they start (the normal path);
2. a watchdog process (``python -m v6_assets_tests.reaper PID MARKER``, in its own session, without the marker)
   polls the pytest pid and, once it is gone, kills every process carrying the marker: this covers ``kill -9`` of
   pytest and native crashes, where no ``finally`` or ``atexit`` runs;
3. at the start of the next run, processes carrying the marker of a pytest that no longer runs are killed (the
   watchdog itself may have been killed with the whole machine's process tree, e.g. by a CI timeout).

The marker is read from ``/proc/PID/environ`` (Linux; the same user can read its own processes').
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

MARKER_VAR = "PYTEST_RUN_MARKER"
POLL_S = 0.5


def new_marker() -> str:
    return f"{os.getpid()}:{secrets.token_hex(8)}"


def _environ_marker(pid: int) -> str | None:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError, OSError):
        return None
    prefix = f"{MARKER_VAR}=".encode()
    for item in raw.split(b"\0"):
        if item.startswith(prefix):
            return item[len(prefix) :].decode(errors="replace")
    return None


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive for our purpose
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def marked_processes(marker: str | None = None) -> dict[int, str]:
    """pid -> marker of every live process carrying a marker (only ``marker`` when given), except this one."""
    me = os.getpid()
    found: dict[int, str] = {}
    for pid in _pids():
        if pid == me:
            continue
        value = _environ_marker(pid)
        if value is not None and (marker is None or value == marker) and _alive(pid):
            found[pid] = value
    return found


def describe(pids: list[int]) -> list[str]:
    out = []
    for pid in pids:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            cmd = "<gone>"
        out.append(f"{pid}: {cmd[:160]}")
    return out


def kill_marked(marker: str, *, grace_s: float = 3.0) -> list[str]:
    """SIGTERM, then SIGKILL after ``grace_s``, every process carrying ``marker``; returns what was found."""
    victims = sorted(marked_processes(marker))
    found = describe(victims)
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        for pid in victims:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            victims = sorted(marked_processes(marker))
            if not victims:
                return found
            time.sleep(0.1)
    return found


def reap_orphans_of_dead_runs() -> list[str]:
    """Kill processes left by earlier runs whose pytest is gone (layer 3); returns what was killed."""
    killed: list[str] = []
    for marker in set(marked_processes().values()):
        owner = marker.split(":", 1)[0]
        if owner.isdigit() and int(owner) != os.getpid() and _alive(int(owner)):
            continue  # another live test run (e.g. a second checkout): not ours to touch
        killed += kill_marked(marker, grace_s=1.0)
    return killed


def start_watchdog(marker: str) -> subprocess.Popen[bytes]:
    """Start layer 2 for this pytest process; the watchdog carries no marker, so it never kills itself."""
    env = {k: v for k, v in os.environ.items() if k != MARKER_VAR}
    return subprocess.Popen(
        [sys.executable, "-m", "v6_assets_tests.reaper", str(os.getpid()), marker],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        start_new_session=True,  # survives a signal to pytest's process group
        cwd=str(Path(__file__).resolve().parents[1]),
    )


def watch(owner_pid: int, marker: str) -> None:
    while _alive(owner_pid):
        time.sleep(POLL_S)
    found = kill_marked(marker)
    if found:
        print(f"reaper: pytest {owner_pid} is gone; ended {len(found)} processes it left:", file=sys.stderr)
        for line in found:
            print(f"  {line}", file=sys.stderr)


if __name__ == "__main__":
    watch(int(sys.argv[1]), sys.argv[2])
