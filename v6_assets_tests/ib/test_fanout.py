"""Fan-out isolation: order per handler, slow and failing handlers, bounded queues, runtime registration."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from v6_assets.contracts.streams import GreeksUpdate, PositionUpdate
from v6_assets.ib.fanout import FanOut, GreeksUpdateHandler, PositionUpdateHandler
from v6_assets.ib.spool import Spool, SpoolHandler
from v6_assets_tests.ib.conftest import greeks_update, position_update


class Recorder:
    def __init__(self, name: str) -> None:
        self.name = name
        self.positions: list[int] = []
        self.greeks: list[int] = []

    async def on_position_update(self, update: PositionUpdate) -> None:
        self.positions.append(update.seq)

    async def on_greeks_update(self, update: GreeksUpdate) -> None:
        self.greeks.append(update.seq)


class Blocked:
    name = "blocked"

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.seen: list[int] = []

    async def on_position_update(self, update: PositionUpdate) -> None:
        await self.release.wait()
        self.seen.append(update.seq)


class Failing:
    name = "failing"

    def __init__(self) -> None:
        self.calls = 0

    async def on_position_update(self, update: PositionUpdate) -> None:
        self.calls += 1
        if update.seq % 2:
            raise RuntimeError("boom")


async def settle(fanout: FanOut, *recorders: Recorder, expected: int) -> None:
    for _ in range(500):
        if all(len(r.positions) >= expected for r in recorders):
            return
        await asyncio.sleep(0.002)


def test_protocols_are_runtime_checkable() -> None:
    assert isinstance(Recorder("r"), PositionUpdateHandler)
    assert isinstance(Recorder("r"), GreeksUpdateHandler)
    assert not isinstance(Blocked(), GreeksUpdateHandler)
    assert not isinstance(object(), PositionUpdateHandler)


def test_slow_and_failing_handlers_do_not_disturb_others(tmp_path: Path) -> None:
    async def scenario() -> None:
        spool = Spool(tmp_path / "s.sqlite")
        fanout = FanOut(queue_size=50, spool_handler=SpoolHandler(spool))
        fast, blocked, failing = Recorder("fast"), Blocked(), Failing()
        for handler in (fast, blocked, failing):
            fanout.add(handler)
        for seq in range(1, 201):
            fanout.publish_position(position_update(seq))  # never awaits: the reader is never blocked
            if seq % 10 == 0:
                await asyncio.sleep(0)  # the IB reader yields between socket reads
        fanout.publish_greeks(greeks_update(1))
        await settle(fanout, fast, expected=200)
        await asyncio.sleep(0.01)
        assert fast.positions == list(range(1, 201))
        assert fast.greeks == [1]
        stats = {s.name: s for s in fanout.stats()}
        assert failing.calls == 200 and stats["failing"].failures == 100 and stats["failing"].delivered == 100
        # The blocked handler holds one event in its coroutine and 50 queued; the oldest others were dropped.
        assert stats["blocked"].queue_depth == 50
        assert stats["blocked"].dropped == 200 - 50 - 1
        blocked.release.set()
        for _ in range(500):
            if len(blocked.seen) == 51:
                break
            await asyncio.sleep(0.002)
        assert blocked.seen == [1, *range(151, 201)]
        await fanout.close()
        # The spool got everything, dropped nothing.
        assert spool.depth() == 201
        spool.close()

    asyncio.run(scenario())


def test_register_and_unregister_while_streaming() -> None:
    async def scenario() -> None:
        fanout = FanOut()
        early, late = Recorder("early"), Recorder("late")
        fanout.add(early)
        for seq in range(1, 11):
            fanout.publish_position(position_update(seq))
        fanout.add(late)
        fanout.add(late)  # registering twice is a no-op
        for seq in range(11, 21):
            fanout.publish_position(position_update(seq))
        await settle(fanout, early, late, expected=10)
        assert fanout.remove(late) is True
        assert fanout.remove(late) is False
        for seq in range(21, 31):
            fanout.publish_position(position_update(seq))
        await settle(fanout, early, expected=30)
        assert early.positions == list(range(1, 31))
        assert late.positions == list(range(11, 21))
        with pytest.raises(TypeError, match="neither"):
            fanout.add(object())  # type: ignore[arg-type]
        await fanout.close()

    asyncio.run(scenario())
