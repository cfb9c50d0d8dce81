"""Two real streaming processes against one simulator: one connection; kill -9 -> takeover, nothing lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from v6_assets.gateway_sim import GatewaySimulator
from v6_assets.ib import Spool
from v6_assets_tests.ib.simhelpers import wait_for


class StreamerProcess:
    def __init__(self, port: int, home: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "v6_assets_tests.ib.streamer_proc", str(port), str(home)],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.latest: dict[str, Any] = {}
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.latest = json.loads(line)

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def test_one_connection_across_processes_and_kill_9_takeover_loses_nothing(tmp_path: Path) -> None:
    with GatewaySimulator("demo", port=0, speed=600).running() as sim:
        a = StreamerProcess(sim.port, tmp_path)
        b = StreamerProcess(sim.port, tmp_path)
        try:
            wait_for(lambda: a.latest.get("connected") or b.latest.get("connected"), 30, "one process connected")
            holder, waiter = (a, b) if a.latest.get("connected") else (b, a)
            wait_for(lambda: waiter.latest.get("holder_pid") == holder.proc.pid, 10, "waiter names the holder")
            assert not waiter.latest["connected"] and not waiter.latest["lease_held"]
            assert sim.active_client_ids() == [61]
            # Let it stream, then kill -9 mid-stream.
            wait_for(lambda: holder.latest.get("last_offset", 0) > 20, 20, "holder spooling")
            time.sleep(0.5)
            accepted = holder.latest["last_offset"]
            holder.kill9()
            killed_at = time.monotonic()
            wait_for(lambda: waiter.latest.get("connected", False), 15, "takeover")
            takeover_s = time.monotonic() - killed_at
            assert takeover_s < 10
            assert sim.max_concurrent_connections(61) == 1
            assert sim.order_violations() == 0
        finally:
            a.close()
            b.close()
    with Spool(tmp_path / "spool" / f"ib-127.0.0.1-{sim.port}-61.sqlite") as spool:
        offsets = {r.offset for r in spool.read(0, 10_000_000)}
    assert set(range(1, accepted + 1)) <= offsets
