"""The connection lease between real processes: one holder, the OS frees it on kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from v6_assets.ib.lease import ConnectionLease


def test_second_holder_in_same_process_is_refused_and_release_frees(tmp_path: Path) -> None:
    first = ConnectionLease(tmp_path, "127.0.0.1", 4002, 61)
    second = ConnectionLease(tmp_path, "127.0.0.1", 4002, 61)
    other_client = ConnectionLease(tmp_path, "127.0.0.1", 4002, 62)
    assert first.try_acquire() and first.try_acquire()
    assert not second.try_acquire()
    holder = second.holder()
    assert holder is not None and holder.pid == os.getpid()
    assert other_client.try_acquire()
    first.release()
    assert second.holder() is None
    assert second.try_acquire()
    second.release()
    other_client.release()


def test_kill_9_of_holder_frees_the_lease_for_another_process(tmp_path: Path) -> None:
    code = textwrap.dedent(
        f"""
        import time
        from v6_assets.ib.lease import ConnectionLease
        lease = ConnectionLease({str(tmp_path)!r}, "127.0.0.1", 4002, 61)
        assert lease.try_acquire()
        print("held", flush=True)
        time.sleep(120)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        mine = ConnectionLease(tmp_path, "127.0.0.1", 4002, 61)
        assert not mine.try_acquire()
        holder = mine.holder()
        assert holder is not None and holder.pid == proc.pid
        assert f"pid {proc.pid}" in holder.describe()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        deadline = time.monotonic() + 5
        while not mine.try_acquire():
            assert time.monotonic() < deadline, "lease not freed after kill -9"
            time.sleep(0.05)
        assert mine.holder() is not None
        mine.release()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
