"""IBPositionStreamer: the process-wide owner of the ONE read-only IB connection (its thread and lifecycle).

It runs ib_async on its own asyncio loop in a daemon thread, so callers on any thread (Dagster sensor ticks) can
use it. Nothing connects at import time: ``ensure_started(settings)`` starts it, ``stop()`` stops it.

The parts:
- ``connection.ConnectionLoop``: lease, connect/reconnect with backoff and circuit breaker, heartbeat;
- ``subscriptions.SubscriptionPolicy``: which accounts, PnL lines and market-data lines a connection holds;
- ``publisher.UpdatePublisher``: ib_async events -> typed updates -> fan-out (handlers and the spool);
- ``status.StreamerStatus``: the snapshot ``status()`` returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import ClassVar

from v6_assets.contracts.clock import fixed_offset_clock, utc_now
from v6_assets.ib.connection import ClientWire, ConnectionLoop
from v6_assets.ib.convert import Clock
from v6_assets.ib.decoder_errors import decoder_error_counter
from v6_assets.ib.fanout import Handler
from v6_assets.ib.settings import StreamerSettings
from v6_assets.ib.status import StreamerStatus
from v6_assets.ib.status_file import publish_status, write_status

log = logging.getLogger(__name__)

_START_WAIT_S = 10.0  # start() waits this long for the first lease attempt


class IBPositionStreamer:
    """Process-wide singleton: ``IBPositionStreamer() is IBPositionStreamer()`` from any thread.

    With several gateways (``V6_IB_GATEWAYS``, ``ib/gateways.py``) each named gateway has its own:
    ``IBPositionStreamer("fund-a") is IBPositionStreamer("fund-a")``; ``IBPositionStreamer()`` is the unnamed one.
    """

    _instance: ClassVar[IBPositionStreamer | None] = None
    _named: ClassVar[dict[str, IBPositionStreamer]] = {}
    _instance_lock: ClassVar[threading.Lock] = threading.Lock()

    def __new__(cls, gateway: str | None = None) -> IBPositionStreamer:
        with cls._instance_lock:
            if gateway is not None:
                if gateway not in cls._named:
                    named = super().__new__(cls)
                    named._setup()
                    cls._named[gateway] = named
                return cls._named[gateway]
            if cls._instance is None:
                instance = super().__new__(cls)
                instance._setup()
                cls._instance = instance
            return cls._instance

    def _setup(self) -> None:
        self._lock = threading.RLock()
        self._handlers: list[Handler] = []
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._settings: StreamerSettings | None = None
        # The current run, or the last one once stopped (its status stays readable until the next start).
        self._run: ConnectionLoop | None = None
        self._fatal_error: str | None = None

    # -- lifecycle (any thread) -------------------------------------------------------------------------------
    @property
    def settings(self) -> StreamerSettings | None:
        return self._settings

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def ensure_started(self, settings: StreamerSettings | None = None, clock: Clock | None = None) -> StreamerStatus:
        """Start if not running (idempotent). Returns the current status.

        Raises ValueError if already running with different settings (``stop()`` first)."""
        self.start(settings, clock)
        return self.status()

    def start(
        self, settings: StreamerSettings | None = None, clock: Clock | None = None, *, lockstep: bool = False
    ) -> None:
        """``lockstep``: a lock-step seed drives the timers on ``clock`` through ``lockstep_pass``."""
        with self._lock:
            wanted = settings or self._settings or StreamerSettings.from_env()
            if self.running:
                if wanted != self._settings:
                    raise ValueError(
                        f"streamer already running for {self._settings.stream_id if self._settings else '?'} "
                        "with other settings; stop() it first"
                    )
                return
            decoder_error_counter()  # count undecodable frames from the first connection on
            self._settings = wanted
            run = ConnectionLoop(wanted, clock or fixed_offset_clock(), lambda: self._handlers, lockstep=lockstep)
            self._run = run
            ready = threading.Event()
            self._thread = threading.Thread(
                target=self._thread_main, args=(run, ready), name=f"ib-streamer-{wanted.stream_id}", daemon=True
            )
            self._fatal_error = None
            self._thread.start()
            ready.wait(_START_WAIT_S)
            if self._fatal_error is not None:
                self._thread.join(5)
                self._thread = None
                raise RuntimeError(self._fatal_error)

    def stop(self, timeout: float = 15.0) -> None:
        """Disconnect, flush the spool, release the lease, end the thread (idempotent)."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("stop() called from the streamer's own thread (a handler?): call it from another thread")
        with self._lock:
            thread, loop, run = self._thread, self._loop, self._run
            if thread is None:
                return
            if loop is not None and run is not None and not loop.is_closed():
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(run.request_stop)
            thread.join(timeout)
            if thread.is_alive():
                log.error("streamer thread did not stop within %.0f s", timeout)
            self._thread = None
            self._loop = None

    def lockstep_pass(self, run_timers: bool = False, timeout: float = 10.0) -> ClientWire | None:
        """Lock-step seed (any thread but the loop's): once the loop ran everything queued before, the connection's
        wire counters (None while not streaming), after the timers due on the simulated clock if ``run_timers``."""
        loop, run = self._loop, self._run
        if loop is None or run is None or not self.running:
            return None

        async def lockstep_pass() -> ClientWire | None:
            return run.lockstep_pass(run_timers)

        return asyncio.run_coroutine_threadsafe(lockstep_pass(), loop).result(timeout)

    # -- handlers (any thread) --------------------------------------------------------------------------------
    def add_handler(self, handler: Handler) -> None:
        with self._lock:
            if any(h is handler for h in self._handlers):
                return
            self._handlers.append(handler)
            run = self._run
            if run is not None:
                self._call_in_loop(lambda: run.add_handler(handler))

    def remove_handler(self, handler: Handler) -> None:
        with self._lock:
            self._handlers = [h for h in self._handlers if h is not handler]
            run = self._run
            if run is not None:
                self._call_in_loop(lambda: run.remove_handler(handler))

    def _call_in_loop(self, fn: Callable[[], object]) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(fn)

    # -- status (any thread) ----------------------------------------------------------------------------------
    def status(self) -> StreamerStatus:
        loop = self._loop
        if loop is not None and self.running and threading.current_thread() is not self._thread:
            # Built on the loop thread: the connection state is only ever touched there.
            future = asyncio.run_coroutine_threadsafe(self._status_async(), loop)
            with contextlib.suppress(Exception):
                return future.result(timeout=5)
        return self._build_status()

    async def _status_async(self) -> StreamerStatus:
        return self._build_status()

    def _build_status(self) -> StreamerStatus:
        run = self._run
        if run is None:
            return StreamerStatus.not_started(malformed_messages=decoder_error_counter().count)
        return run.status(running=self.running)

    # -- the loop thread --------------------------------------------------------------------------------------
    def _thread_main(self, run: ConnectionLoop, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        status_path = self._settings.status_path if self._settings is not None else None
        publisher = None
        if status_path is not None:
            publisher = loop.create_task(publish_status(self._build_status, status_path, utc_now))
        try:
            loop.run_until_complete(run.run(ready))
        except Exception as exc:
            self._fatal_error = f"streamer stopped: {type(exc).__name__}: {exc}"
            run.last_error = self._fatal_error
            log.exception("streamer loop crashed")
        finally:
            ready.set()
            if publisher is not None and status_path is not None:
                publisher.cancel()
                with contextlib.suppress(BaseException):
                    loop.run_until_complete(publisher)
                # The last word: stopped (a killed process leaves its last snapshot, which ages instead).
                with contextlib.suppress(OSError):
                    write_status(status_path, run.status(running=False), utc_now())
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()


def discard_process_streamer() -> None:
    """Stop the process-wide streamers (every gateway's) and forget them, handlers included: the next
    ``IBPositionStreamer()`` is new.

    The seam for tests, benchmarks and chaos runs, which start many streamers in one process and must not leak one
    (or its handlers) into the next. Production processes keep their streamer until they exit.
    """
    with IBPositionStreamer._instance_lock:
        instances = [IBPositionStreamer._instance, *IBPositionStreamer._named.values()]
        IBPositionStreamer._instance = None
        IBPositionStreamer._named = {}
    for instance in instances:
        if instance is not None:
            instance.stop()
