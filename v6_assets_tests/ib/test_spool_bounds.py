"""The spool's disk and memory bounds (issue 17, point 2): a small WAL, bounded held updates, said once."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from v6_assets.ib.models import GreeksUpdate
from v6_assets.ib.spool import WAL_SIZE_LIMIT, Spool, SpoolFencedError, SpoolHandler
from v6_assets_tests.ib.conftest import greeks_update, position_update


def test_the_wal_stays_small_through_append_and_ack_cycles(tmp_path: Path) -> None:
    # SQLite's defaults keep a ~4 MB WAL forever after the first big batch; the spool must not.
    with Spool(tmp_path / "s.sqlite") as spool:
        largest = 0
        for cycle in range(10):
            last = spool.append([position_update(cycle * 2_000 + i + 1, con_id=i) for i in range(2_000)])
            largest = max(largest, spool.wal_bytes())
            spool.ack(last)
        spool.append([position_update(1, con_id=1)])  # the next write restarts (and truncates) the checkpointed WAL
        after = spool.wal_bytes()
        assert spool.depth() == 1
    assert after <= WAL_SIZE_LIMIT, f"WAL is {after} bytes after the drain (largest seen {largest})"


def test_a_fenced_spool_refuses_appends_from_any_connection_until_a_new_epoch(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite"
    with Spool(path) as spool, Spool(path) as other:
        spool.append([position_update(1)])
        spool.fence("behind the lake")
        with pytest.raises(SpoolFencedError, match="behind the lake"):
            other.append([position_update(2)])
        assert other.fenced() == "behind the lake" and spool.last_offset() == 1
        counts = other.start_epoch(100, discard_unacked=False)
        assert counts == {"renumbered": 1, "discarded": 0, "first_new_offset": 101}
        assert spool.fenced() is None
        assert spool.append([position_update(3)]) == 102
        assert [r.offset for r in spool.read(0, 10)] == [101, 102]
        assert spool.acked_offset() == 100


def test_a_new_epoch_on_a_spool_ahead_of_the_lake_never_renumbers_committed_rows(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.sqlite") as spool:
        spool.append([position_update(i + 1) for i in range(10)])
        # Rows 1..6 are committed in the lake but not acked (a crash before the ack): they must not come back.
        counts = spool.start_epoch(6)
        assert counts["renumbered"] == 0
        assert [r.offset for r in spool.read(0, 100)] == [7, 8, 9, 10]
        assert spool.append([position_update(11)]) == 11


def _run_full(spool: Spool, handler: SpoolHandler, events: list) -> None:
    async def scenario() -> None:
        for start in range(0, len(events), 500):
            for event in events[start : start + 500]:
                handler.accept(event)
            await asyncio.sleep(0.002)  # retries (retry_s=0.001) fail in between: logged once all the same

    asyncio.run(scenario())


def test_held_updates_are_bounded_greeks_shed_first_then_superseded_positions(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    spool = Spool(tmp_path / "s.sqlite")
    spool.fence("test: refuse every write")  # like a full disk, without filling one
    resyncs: list[tuple[int, int]] = []
    handler = SpoolHandler(spool, retry_s=0.001, max_held=1_000, on_resync=lambda g, p: resyncs.append((g, p)))
    # 20 positions updated over and over, and many greeks: far more than max_held.
    events = []
    for i in range(20_000):
        events.append(greeks_update(i, con_id=i % 50) if i % 2 else position_update(i, con_id=i % 20))
    with caplog.at_level(logging.ERROR, logger="v6_assets.ib.spool"):
        _run_full(spool, handler, events)
    assert handler.pending <= 1_000
    assert handler.max_pending_seen <= 1_001
    assert handler.dropped_greeks > 0 and handler.dropped_positions > 0
    assert handler.pending + handler.dropped == len(events)
    held = handler._pending
    # Every position is still represented by its newest update (the current state is not lost).
    newest = {}
    for event in events:
        if not isinstance(event, GreeksUpdate):
            newest[event.con_id] = event.seq
    assert {e.con_id: e.seq for e in held if not isinstance(e, GreeksUpdate)} == newest
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]  # said once, not once per retry
    assert not resyncs
    # The spool takes writes again: the held updates go in, and the streamer is asked to resync.
    spool.start_epoch(0)
    handler.flush()
    assert handler.pending == 0 and handler.last_error is None
    assert resyncs == [(handler.dropped_greeks, handler.dropped_positions)]
    assert spool.depth() == handler.written
    spool.close()


def test_positions_alone_past_the_bound_shed_the_oldest(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s.sqlite")
    spool.fence("test")
    handler = SpoolHandler(spool, retry_s=0.001, max_held=100)
    _run_full(spool, handler, [position_update(i, con_id=i) for i in range(1_000)])  # all distinct positions
    assert handler.pending <= 100 and handler.dropped_greeks == 0
    assert handler.pending + handler.dropped_positions == 1_000
    assert handler._pending[-1].seq == 999  # the newest are kept
    spool.close()


def test_the_fence_is_not_set_when_a_new_epoch_already_moved_the_spool_above_the_lake(tmp_path: Path) -> None:
    with Spool(tmp_path / "s.sqlite") as spool:
        spool.append([position_update(1)])
        spool.start_epoch(50)  # recovered between the drain's look and its fence
        assert not spool.fence("behind", unless_assigned=50)
        assert spool.fenced() is None
        assert spool.fence("behind", unless_assigned=52)  # the renumbered row took offset 51
        assert spool.fenced() == "behind"
