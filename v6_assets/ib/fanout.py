"""Handler fan-out: each registered consumer gets every event in order, isolated from the others.

Every handler has its own bounded queue and task. A slow handler only fills its own queue; when it is full the
OLDEST queued event for that handler is dropped (the newest state matters most) and counted in ``dropped``.
A failing handler is logged and counted in ``failures`` and keeps receiving. Neither blocks the IB reader.
The durable spool is not a queued handler: it is written inline once per loop iteration and never dropped from.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from v6_assets.contracts.streams import AccountValueUpdate, ExecutionUpdate, GreeksUpdate, PositionUpdate
from v6_assets.ib.spool import SpoolHandler

log = logging.getLogger(__name__)


@runtime_checkable
class PositionUpdateHandler(Protocol):
    async def on_position_update(self, update: PositionUpdate) -> None: ...


@runtime_checkable
class GreeksUpdateHandler(Protocol):
    async def on_greeks_update(self, update: GreeksUpdate) -> None: ...


Handler = PositionUpdateHandler | GreeksUpdateHandler


@dataclass(frozen=True, slots=True)
class HandlerStats:
    name: str
    queue_depth: int
    queue_max: int
    delivered: int
    dropped: int
    failures: int


class _HandlerWorker:
    def __init__(self, handler: Handler, maxsize: int) -> None:
        self.handler = handler
        self.name = getattr(handler, "name", None) or type(handler).__name__
        self.takes_positions = isinstance(handler, PositionUpdateHandler)
        self.takes_greeks = isinstance(handler, GreeksUpdateHandler)
        self.queue: asyncio.Queue[PositionUpdate | GreeksUpdate] = asyncio.Queue(maxsize)
        self.delivered = 0
        self.dropped = 0
        self.failures = 0
        self.task: asyncio.Task[None] | None = None

    def offer(self, event: PositionUpdate | GreeksUpdate) -> None:
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(event)

    async def run(self) -> None:
        queue = self.queue
        while True:
            event = await queue.get()
            try:
                if type(event) is PositionUpdate:
                    await self.handler.on_position_update(event)  # type: ignore[union-attr]
                else:
                    await self.handler.on_greeks_update(event)  # type: ignore[union-attr, arg-type]
                self.delivered += 1
            except asyncio.CancelledError:
                raise
            except Exception:
                self.failures += 1
                if self.failures <= 3 or self.failures % 1000 == 0:
                    log.exception("handler %s failed (failure %d)", self.name, self.failures)

    def stats(self) -> HandlerStats:
        queue = self.queue
        return HandlerStats(self.name, queue.qsize(), queue.maxsize, self.delivered, self.dropped, self.failures)


class FanOut:
    """Publishes events to the spool (inline, batched) and to each registered handler (queued). Loop thread only."""

    def __init__(self, queue_size: int = 10_000, spool_handler: SpoolHandler | None = None) -> None:
        self.queue_size = queue_size
        self.spool_handler = spool_handler
        self._workers: dict[int, _HandlerWorker] = {}
        self._position_workers: list[_HandlerWorker] = []
        self._greeks_workers: list[_HandlerWorker] = []

    def add(self, handler: Handler) -> None:
        if not isinstance(handler, PositionUpdateHandler | GreeksUpdateHandler):
            raise TypeError(f"{handler!r} has neither on_position_update nor on_greeks_update")
        if id(handler) in self._workers:
            return
        worker = _HandlerWorker(handler, self.queue_size)
        worker.task = asyncio.get_running_loop().create_task(worker.run(), name=f"handler-{worker.name}")
        self._workers[id(handler)] = worker
        self._reindex()

    def remove(self, handler: Handler) -> bool:
        worker = self._workers.pop(id(handler), None)
        if worker is None:
            return False
        if worker.task is not None:
            worker.task.cancel()
        self._reindex()
        return True

    def _reindex(self) -> None:
        self._position_workers = [w for w in self._workers.values() if w.takes_positions]
        self._greeks_workers = [w for w in self._workers.values() if w.takes_greeks]

    def publish_position(self, update: PositionUpdate) -> None:
        if self.spool_handler is not None:
            self.spool_handler.accept(update)
        for worker in self._position_workers:
            worker.offer(update)

    def publish_greeks(self, update: GreeksUpdate) -> None:
        if self.spool_handler is not None:
            self.spool_handler.accept(update)
        for worker in self._greeks_workers:
            worker.offer(update)

    def publish_execution(self, update: ExecutionUpdate | AccountValueUpdate) -> None:
        """Executions and account values go to the durable spool only (no handler protocol for them yet)."""
        if self.spool_handler is not None:
            self.spool_handler.accept(update)

    def stats(self) -> list[HandlerStats]:
        return [w.stats() for w in self._workers.values()]

    def queued(self) -> int:
        return sum(w.queue.qsize() for w in self._workers.values())

    async def close(self) -> None:
        tasks = [w.task for w in self._workers.values() if w.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._workers.clear()
        self._reindex()
        if self.spool_handler is not None:
            self.spool_handler.flush()
