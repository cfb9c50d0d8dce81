"""The durable spool on real SQLite files, across threads and real processes."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import polars as pl
import pytest

from v6_assets.ib.spool import Spool, SpoolError, SpoolFullError, SpoolHandler
from v6_assets_tests.ib.conftest import greeks_update, position_update


def test_roundtrip_both_kinds_with_one_global_offset(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.sqlite") as spool:
        events = [position_update(1), greeks_update(1), position_update(2, position=None)]
        assert spool.append(events) == 3
        records = spool.read(0, 10)
        assert [(r.offset, r.kind) for r in records] == [(1, "position"), (2, "greeks"), (3, "position")]
        assert [r.event for r in records] == events
        assert [r.offset for r in spool.read(1, 1)] == [2]


def test_read_frames_is_columnar_with_spool_offset(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.sqlite") as spool:
        spool.append([position_update(1), greeks_update(1), position_update(2)])
        frames = spool.read_frames(0, 10)
        assert frames.last_offset == 3
        assert frames.positions["spool_offset"].to_list() == [1, 3]
        assert frames.greeks["spool_offset"].to_list() == [2]
        assert frames.positions.schema["expiry"] == pl.Date
        assert frames.positions["ib_daily_pnl"].to_list() == [1.0, 2.0]
        assert frames.positions["realized_pnl"].null_count() == 2
        assert frames.positions.row(0, named=True)["received_at"] == position_update(1).received_at
        empty = spool.read_frames(3, 10)
        assert empty.last_offset is None and empty.positions.height == 0


def test_ack_deletes_and_never_redelivers_and_offsets_are_not_reused(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with Spool(path) as spool:
        spool.append([position_update(i) for i in range(1, 6)])
        assert spool.ack(3) == 3
        assert spool.depth() == 2
        # A consumer that restarts from 0 gets only unacknowledged rows.
        assert [r.offset for r in spool.read(0, 10)] == [4, 5]
        assert spool.ack(5) == 2
        assert spool.depth() == 0
        assert spool.append([position_update(6)]) == 6
        with pytest.raises(SpoolError, match="last offset written is 6"):
            spool.ack(7)
        assert spool.ack(2) == 0  # acking backwards is harmless
        assert spool.acked_offset() == 5
    with Spool(path) as reopened:
        assert [r.offset for r in reopened.read(0, 10)] == [6]


def test_bad_arguments_are_clear_errors(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.sqlite") as spool:
        with pytest.raises(ValueError, match="limit"):
            spool.read(0, 0)
        with pytest.raises(
            TypeError, match="only PositionUpdate, GreeksUpdate, ExecutionUpdate and AccountValueUpdate"
        ):
            spool.append(["nope"])  # type: ignore[list-item]
        assert spool.depth() == 0
    with pytest.raises(ValueError, match="synchronous"):
        Spool(tmp_path / "t.sqlite", synchronous="OFF")


def test_full_spool_is_a_clear_error_and_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with Spool(path, max_bytes=64 * 1024) as spool:
        written = 0
        with pytest.raises(SpoolFullError, match="is full"):
            for i in range(10_000):
                spool.append([position_update(i + 1)])
                written += 1
        assert spool.depth() == written
        assert spool.last_offset() == written
    with Spool(path) as unlimited:
        assert len(unlimited.read(0, 100_000)) == written


def test_spool_handler_batches_per_loop_iteration_and_holds_on_full(tmp_path: Path) -> None:
    async def scenario() -> tuple[int, int, str | None, int, int]:
        spool = Spool(tmp_path / "s.sqlite", max_bytes=48 * 1024)
        handler = SpoolHandler(spool, retry_s=0.05)
        for i in range(100):
            handler.accept(position_update(i + 1))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        flushes_after_one_iteration = handler.flushes
        # Fill the capped spool: the handler keeps everything in memory and reports the error.
        n = 0
        while handler.last_error is None and n < 20_000:
            for _ in range(200):
                n += 1
                handler.accept(position_update(100 + n))
            await asyncio.sleep(0)
        held = handler.pending
        error = handler.last_error
        spool.close()
        return flushes_after_one_iteration, held, error, handler.written, n

    flushes, held, error, written, extra = asyncio.run(scenario())
    assert flushes == 1
    assert error is not None and "full" in error
    assert held > 0
    assert written + held == 100 + extra


def _writer_process(path: str, start: int, count: int) -> None:
    with Spool(path) as spool:
        for i in range(start, start + count, 10):
            spool.append([position_update(j) for j in range(i, i + 10)])


def test_several_processes_write_and_one_drains(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sqlite")
    Spool(path).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer_process, args=(path, k * 1000, 300)) for k in range(2)]
    for p in procs:
        p.start()
    drained: list[int] = []
    with Spool(path) as reader:
        deadline = time.monotonic() + 60
        after = 0
        while len(drained) < 600 and time.monotonic() < deadline:
            batch = reader.read(after, 50)
            if batch:
                drained.extend(r.event.seq for r in batch)
                after = batch[-1].offset
                reader.ack(after)
            else:
                time.sleep(0.01)
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert sorted(drained) == sorted(list(range(0, 300)) + list(range(1000, 1300)))


def test_kill_9_mid_stream_loses_nothing_committed(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    code = textwrap.dedent(
        f"""
        import sys
        from v6_assets.ib.spool import Spool
        from v6_assets_tests.ib.conftest import position_update
        spool = Spool({str(path)!r})
        i = 0
        while True:
            i += 1
            last = spool.append([position_update(i)])
            print(last, flush=True)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=os.getcwd())
    assert proc.stdout is not None
    confirmed = 0
    for line in proc.stdout:
        confirmed = int(line)
        if confirmed >= 300:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    with Spool(path) as spool:
        offsets = [r.offset for r in spool.read(0, 1_000_000)]
    # Every append the writer saw committed is there, in order, without gaps.
    assert len(offsets) >= confirmed
    assert offsets == list(range(1, len(offsets) + 1))
