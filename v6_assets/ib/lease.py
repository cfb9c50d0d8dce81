"""One IB connection per machine across processes: an exclusive ``fcntl.flock`` on a lock file.

The OS releases the lock when the holding process dies (even on kill -9), so a crashed holder never blocks the
next one. The holder writes its pid/host/start time into the file so that others can say who holds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path


@dataclass(frozen=True, slots=True)
class LeaseHolder:
    pid: int
    host: str
    acquired_at: str

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} since {self.acquired_at}"


class ConnectionLease:
    """An exclusive lease keyed by IB host, port and client id, under ``locks_dir``."""

    def __init__(self, locks_dir: str | Path, host: str, port: int, client_id: int) -> None:
        safe_host = re.sub(r"[^A-Za-z0-9.-]", "_", host)
        self.path = Path(locks_dir) / f"ib-{safe_host}-{port}-{client_id}.lock"
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def try_acquire(self) -> bool:
        """Take the lease if free (non-blocking). True if this object holds it afterwards."""
        if self._fd is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        except BaseException:
            os.close(fd)
            raise
        me = LeaseHolder(os.getpid(), socket.gethostname(), datetime.now(UTC).isoformat(timespec="seconds"))
        payload = json.dumps({"pid": me.pid, "host": me.host, "acquired_at": me.acquired_at}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, payload, 0)
        self._fd = fd
        return True

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        # Closing the descriptor drops the flock.
        os.close(fd)

    def holder(self) -> LeaseHolder | None:
        """Who holds the lease now (None if nobody, or the holder has not written its name yet)."""
        if self._fd is not None:
            return LeaseHolder(os.getpid(), socket.gethostname(), self._read().get("acquired_at", ""))
        if not self._locked_by_other():
            return None
        data = self._read()
        if "pid" not in data:
            return None
        return LeaseHolder(int(data["pid"]), str(data.get("host", "")), str(data.get("acquired_at", "")))

    def _locked_by_other(self) -> bool:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def _read(self) -> dict[str, str]:
        try:
            return dict(json.loads(self.path.read_text() or "{}"))
        except (OSError, ValueError):
            return {}
