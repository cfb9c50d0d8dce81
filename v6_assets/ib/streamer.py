"""IBPositionStreamer: the process-wide owner of the ONE read-only IB connection.

It runs ib_async on its own asyncio loop in a daemon thread, so callers on any thread (Dagster sensor ticks) can
use it. Nothing connects at import time: ``ensure_started(settings)`` starts it, ``stop()`` stops it.

Subscription policy:
- Positions: ``reqPositions`` (all accounts; rows of accounts outside the allowlist are dropped and counted).
- PnL: ``reqPnLSingle`` for every open allowed position (~1/s each): the per-position mark source for ALL accounts.
  Cancelled when the position closes.
- Portfolio (``reqAccountUpdates``): IB serves one account at a time, so the streamer subscribes the first allowed
  account and, with several, rotates to the next every ``portfolio_rotation_s`` (default 180 s, IB's own push
  period). Its fields (market_price/value, unrealized/realized_pnl) are therefore fresh for one account at a time;
  the ib_* fields from PnL-single are fresh for all.
- Model greeks: ``reqMktData`` for open option contracts within ``line_budget`` lines; past it, the largest
  |position x multiplier| are pinned and a tenth of the budget rotates through the rest every ``greeks_rotation_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from ib_async import IB, Contract
from ib_async.ib import StartupFetch

from v6_assets.contracts.streams import PositionUpdate
from v6_assets.ib.convert import MODEL_GREEKS_TICK, Clock, GreeksThrottle, PositionMerger, plan_greeks_lines, utc_now
from v6_assets.ib.fanout import FanOut, Handler, HandlerStats
from v6_assets.ib.lease import ConnectionLease, LeaseHolder
from v6_assets.ib.resilience import Backoff, CircuitBreaker, CircuitState
from v6_assets.ib.settings import StreamerSettings
from v6_assets.ib.spool import Spool, SpoolHandler

log = logging.getLogger(__name__)

# IB message codes handled explicitly.
CONNECTIVITY_LOST = 1100
RESTORED_DATA_LOST = 1101
RESTORED_DATA_KEPT = 1102
CLIENT_ID_IN_USE = 326
SERVER_CONNECTIVITY_BROKEN = 2110
_MAINTENANCE_TICK_S = 0.25
_HEALTHY_SESSION_S = 10.0
_PNL_CLOSE_GRACE_S = 10.0
_NO_QTY = float("nan")  # "never seen" marker: NaN differs from every quantity, None included


class _DecoderErrorCounter(logging.Handler):
    """ib_async logs and drops messages it cannot decode (malformed frame, truncated message): count them."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


_decoder_errors = _DecoderErrorCounter()
logging.getLogger("ib_async.Decoder").addHandler(_decoder_errors)


@dataclass(frozen=True, slots=True)
class StreamerStatus:
    running: bool
    stream_id: str | None
    lease_held: bool
    lease_holder: LeaseHolder | None
    connected: bool
    connected_since: datetime | None
    reconnects: int
    connect_failures: int
    last_message_age_s: float | None
    circuit_state: str
    circuit_open_until: datetime | None
    ib_farm_connected: bool
    last_error: str | None
    accounts: tuple[str, ...]
    portfolio_account: str | None
    pnl_subscriptions: int
    greeks_lines: int
    line_budget: int
    handlers: tuple[HandlerStats, ...]
    spool_path: str | None
    spool_depth: int | None
    spool_pending: int
    spool_written: int
    spool_last_offset: int
    spool_error: str | None
    positions_emitted: int
    greeks_emitted: int
    non_option_dropped: int
    foreign_account_dropped: int
    malformed_messages: int
    conversion_errors: int

    def describe(self) -> str:
        if not self.running:
            return "streamer not running"
        if not self.lease_held:
            who = self.lease_holder.describe() if self.lease_holder else "another process"
            return f"not connecting: the IB connection lease for {self.stream_id} is held by {who}"
        if not self.connected:
            return f"disconnected (circuit {self.circuit_state}, last error: {self.last_error})"
        return f"connected since {self.connected_since}, {self.positions_emitted} position updates"


class _Session:
    """Per-connection state (a fresh ib_async ``IB`` for every connection)."""

    def __init__(self, ib: IB) -> None:
        self.ib = ib
        self.done = asyncio.Event()
        self.end_reason = ""
        self.accounts: tuple[str, ...] = ()
        self.pnl_subs: set[tuple[str, int]] = set()
        # Closed positions keep their PnL-single line until it reports position 0 (it carries the closing trade's
        # realized PnL, the only source for accounts outside the portfolio subscription), or a grace period passed.
        self.closing_since: dict[tuple[str, int], float] = {}
        self.pnl_zero_seen: set[tuple[str, int]] = set()
        self.mkt_subs: dict[int, Contract] = {}
        self.last_greeks: dict[int, Any] = {}
        self.portfolio_index = 0
        self.portfolio_account: str | None = None
        self.portfolio_rotated_at = 0.0
        self.greeks_rotation = 0
        self.greeks_rotated_at = 0.0
        self.probing = False
        # Decoded-message progress for the heartbeat (raw TCP bytes keep arriving on a desynchronised stream).
        self.messages_seen = -1
        self.messages_at = time.monotonic()


class IBPositionStreamer:
    """Process-wide singleton: ``IBPositionStreamer() is IBPositionStreamer()`` from any thread."""

    _instance: ClassVar[IBPositionStreamer | None] = None
    _instance_lock: ClassVar[threading.Lock] = threading.Lock()

    def __new__(cls) -> IBPositionStreamer:
        with cls._instance_lock:
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
        self._stopping: asyncio.Event | None = None
        self._settings: StreamerSettings | None = None
        self._clock: Clock = utc_now
        self._fatal_error: str | None = None
        self._reset_state()

    def _reset_state(self) -> None:
        self._fanout: FanOut | None = None
        self._spool: Spool | None = None
        self._spool_handler: SpoolHandler | None = None
        self._lease: ConnectionLease | None = None
        self._lease_holder: LeaseHolder | None = None
        self._merger: PositionMerger | None = None
        self._throttle: GreeksThrottle | None = None
        self._breaker: CircuitBreaker | None = None
        self._session: _Session | None = None
        self._connected_since: datetime | None = None
        self._reconnects = 0
        self._sessions = 0
        self._connect_failures = 0
        self._farm_connected = True
        self._last_error: str | None = None
        self._client_id_in_use = False
        self._positions_emitted = 0
        self._greeks_emitted = 0
        self._subs_dirty = False
        self._conversion_errors = 0
        self._known_qty: dict[tuple[str, int], float | None] = {}

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

    def start(self, settings: StreamerSettings | None = None, clock: Clock | None = None) -> None:
        with self._lock:
            wanted = settings or self._settings or StreamerSettings.from_env()
            if self.running:
                if wanted != self._settings:
                    raise ValueError(
                        f"streamer already running for {self._settings.stream_id if self._settings else '?'} "
                        "with other settings; stop() it first"
                    )
                return
            self._settings = wanted
            self._clock = clock or utc_now
            self._reset_state()
            ready = threading.Event()
            self._thread = threading.Thread(
                target=self._thread_main, args=(wanted, ready), name=f"ib-streamer-{wanted.stream_id}", daemon=True
            )
            self._fatal_error = None
            self._thread.start()
            ready.wait(10)
            if self._fatal_error is not None:
                self._thread.join(5)
                self._thread = None
                raise RuntimeError(self._fatal_error)

    def stop(self, timeout: float = 15.0) -> None:
        """Disconnect, flush the spool, release the lease, end the thread (idempotent)."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("stop() called from the streamer's own thread (a handler?): call it from another thread")
        with self._lock:
            thread, loop, stopping = self._thread, self._loop, self._stopping
            if thread is None:
                return
            if loop is not None and stopping is not None and not loop.is_closed():
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(stopping.set)
            thread.join(timeout)
            if thread.is_alive():
                log.error("streamer thread did not stop within %.0f s", timeout)
            self._thread = None
            self._loop = None

    @classmethod
    def reset_for_tests(cls) -> None:
        """Stop the singleton and forget it, handlers included (tests must not leak a running streamer)."""
        with cls._instance_lock:
            instance = cls._instance
            cls._instance = None
        if instance is not None:
            instance.stop()

    # -- handlers (any thread) --------------------------------------------------------------------------------
    def add_handler(self, handler: Handler) -> None:
        with self._lock:
            if any(h is handler for h in self._handlers):
                return
            self._handlers.append(handler)
            self._call_in_loop(lambda: self._fanout.add(handler) if self._fanout else None)

    def remove_handler(self, handler: Handler) -> None:
        with self._lock:
            self._handlers = [h for h in self._handlers if h is not handler]
            self._call_in_loop(lambda: self._fanout.remove(handler) if self._fanout else None)

    def _call_in_loop(self, fn: Callable[[], object]) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(fn)

    # -- status (any thread) ----------------------------------------------------------------------------------
    def status(self) -> StreamerStatus:
        loop = self._loop
        if loop is not None and self.running and threading.current_thread() is not self._thread:
            future = asyncio.run_coroutine_threadsafe(self._status_async(), loop)
            with contextlib.suppress(Exception):
                return future.result(timeout=5)
        return self._build_status()

    async def _status_async(self) -> StreamerStatus:
        return self._build_status()

    def _build_status(self) -> StreamerStatus:
        settings = self._settings
        session = self._session
        breaker = self._breaker
        spool_depth = None
        if self._spool is not None:
            with contextlib.suppress(Exception):
                spool_depth = self._spool.depth()
        last_age = None
        if session is not None and session.ib.isConnected() and session.ib.wrapper.time > 0:
            last_age = max(0.0, time.time() - session.ib.wrapper.time)
        open_until = None
        if breaker is not None and breaker.state is CircuitState.OPEN:
            open_until = datetime.now(UTC) + timedelta(seconds=breaker.open_for_s)
        merger = self._merger
        handler = self._spool_handler
        return StreamerStatus(
            running=self.running,
            stream_id=settings.stream_id if settings else None,
            lease_held=bool(self._lease and self._lease.held),
            lease_holder=self._lease.holder() if self._lease and self._lease.held else self._lease_holder,
            connected=self._connected_since is not None,
            connected_since=self._connected_since,
            reconnects=self._reconnects,
            connect_failures=self._connect_failures,
            last_message_age_s=last_age,
            circuit_state=str(breaker.state) if breaker else str(CircuitState.CLOSED),
            circuit_open_until=open_until,
            ib_farm_connected=self._farm_connected,
            last_error=self._last_error,
            accounts=session.accounts if session else (),
            portfolio_account=session.portfolio_account if session else None,
            pnl_subscriptions=len(session.pnl_subs) if session else 0,
            greeks_lines=len(session.mkt_subs) if session else 0,
            line_budget=settings.line_budget if settings else 0,
            handlers=tuple(self._fanout.stats()) if self._fanout else (),
            spool_path=str(settings.spool_path) if settings else None,
            spool_depth=spool_depth,
            spool_pending=handler.pending if handler else 0,
            spool_written=handler.written if handler else 0,
            spool_last_offset=handler.last_offset if handler else 0,
            spool_error=handler.last_error if handler else None,
            positions_emitted=self._positions_emitted,
            greeks_emitted=self._greeks_emitted,
            non_option_dropped=merger.counters.non_option_dropped if merger else 0,
            foreign_account_dropped=merger.counters.foreign_account_dropped if merger else 0,
            malformed_messages=_decoder_errors.count,
            conversion_errors=self._conversion_errors,
        )

    # -- the loop thread --------------------------------------------------------------------------------------
    def _thread_main(self, settings: StreamerSettings, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        self._stopping = asyncio.Event()
        try:
            loop.run_until_complete(self._main(settings, ready))
        except Exception as exc:
            self._fatal_error = f"streamer stopped: {type(exc).__name__}: {exc}"
            self._last_error = self._fatal_error
            log.exception("streamer loop crashed")
        finally:
            ready.set()
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _sleep(self, seconds: float) -> bool:
        """Sleep unless stopping; True if a stop was requested."""
        assert self._stopping is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), max(0.0, seconds))
        return self._stopping.is_set()

    async def _main(self, settings: StreamerSettings, ready: threading.Event) -> None:
        assert self._stopping is not None
        self._spool = Spool(settings.spool_path, max_bytes=settings.spool_max_bytes)
        self._spool_handler = SpoolHandler(self._spool)
        self._fanout = FanOut(settings.handler_queue_size, self._spool_handler)
        for handler in list(self._handlers):
            self._fanout.add(handler)
        self._merger = PositionMerger(settings.sec_types, settings.accounts, self._clock)
        self._throttle = GreeksThrottle(settings.greeks_throttle_s, self._clock)
        self._breaker = CircuitBreaker(settings.circuit_failures, settings.circuit_cooldown_s)
        self._lease = ConnectionLease(settings.locks_dir, settings.host, settings.port, settings.client_id)
        backoff = Backoff(settings.backoff_initial_s, settings.backoff_max_s)
        try:
            # One lease attempt before start() returns, so its first status already says who holds the lease.
            if not self._lease.try_acquire():
                self._lease_holder = self._lease.holder()
            ready.set()
            while not self._stopping.is_set():
                if not self._lease.try_acquire():
                    holder = self._lease.holder()
                    if holder != self._lease_holder and holder is not None:
                        log.info("IB connection lease %s is held by %s; not connecting", settings.stream_id,
                                 holder.describe())  # fmt: skip
                    self._lease_holder = holder
                    await self._sleep(settings.lease_retry_s)
                    continue
                self._lease_holder = None
                if not self._breaker.allow():
                    await self._sleep(min(max(self._breaker.open_for_s, 0.05), 1.0))
                    continue
                session_s = await self._run_session(settings)
                if self._stopping.is_set():
                    break
                if session_s is not None and session_s >= _HEALTHY_SESSION_S:
                    # A healthy session ended (gateway restart, stall): reconnect at once.
                    backoff.reset()
                    delay = 0.05
                elif session_s is not None:
                    # Accepted, then dropped quickly: back off as if it had failed, without tripping the breaker.
                    delay = backoff.next_delay()
                else:
                    delay = backoff.next_delay()
                    if self._client_id_in_use:
                        # Same client id, never another: wait for the gateway to release it.
                        delay = max(delay, settings.client_id_in_use_wait_s)
                await self._sleep(delay)
        finally:
            await self._fanout.close()
            self._spool_handler.flush()
            if self._spool_handler.pending:
                log.error("stopping with %d events the spool could not take", self._spool_handler.pending)
            self._spool.close()
            self._lease.release()
            self._connected_since = None

    async def _run_session(self, settings: StreamerSettings) -> float | None:
        """One connection: connect, subscribe, stream until it ends. Seconds it was connected, None if never."""
        assert self._breaker is not None and self._stopping is not None
        ib = IB()
        session = _Session(ib)
        ib.errorEvent += self._on_error
        ib.positionEvent += self._on_position
        ib.updatePortfolioEvent += self._on_portfolio
        ib.pnlSingleEvent += self._on_pnl_single
        ib.pendingTickersEvent += self._on_tickers
        ib.disconnectedEvent += lambda: self._end_session(session, "disconnected")
        self._client_id_in_use = False
        self._session = session
        try:
            await ib.connectAsync(
                settings.host,
                settings.port,
                clientId=settings.client_id,
                timeout=settings.connect_timeout_s,
                readonly=True,
                fetchFields=StartupFetch.POSITIONS,
            )
        except (OSError, TimeoutError, ConnectionError) as exc:
            self._connect_failures += 1
            self._breaker.record_failure()
            reason = "client id in use (326)" if self._client_id_in_use else f"{type(exc).__name__}: {exc}"
            self._last_error = f"connect to {settings.host}:{settings.port} failed: {reason}"
            log.warning("%s (circuit %s)", self._last_error, self._breaker.state)
            ib.disconnect()
            self._session = None
            return None
        if not ib.isConnected():
            self._connect_failures += 1
            self._breaker.record_failure()
            self._session = None
            return None
        started = time.monotonic()
        self._breaker.record_success()
        self._sessions += 1
        if self._sessions > 1:
            self._reconnects += 1
        self._connected_since = datetime.now(UTC)
        self._farm_connected = True
        managed = tuple(ib.managedAccounts())
        allow = settings.accounts
        session.accounts = tuple(a for a in managed if not allow or a in allow)
        missing = [a for a in allow if a not in managed]
        if missing:
            log.warning("V6_IB_ACCOUNTS lists accounts the gateway does not manage: %s", ",".join(missing))
        log.info("connected to %s:%s as client %s, accounts %s", settings.host, settings.port, settings.client_id,
                 ",".join(session.accounts))  # fmt: skip
        try:
            self._resync_positions(session)
            await self._subscribe_portfolio(session, settings, rotate=False)
            self._sync_subscriptions(session, settings)
            await self._maintain(session, settings)
        finally:
            self._connected_since = None
            self._session = None
            self._throttle_flush(force=True)
            ib.disconnect()
        log.info("session ended: %s", session.end_reason)
        return time.monotonic() - started

    def _end_session(self, session: _Session, reason: str) -> None:
        if not session.done.is_set():
            session.end_reason = reason
            session.done.set()

    def _resync_positions(self, session: _Session) -> None:
        """After connect the position snapshot is in: close what we hold open that it no longer has."""
        assert self._merger is not None
        seen = {(p.account, int(p.contract.conId)) for p in session.ib.positions()}
        for update in self._merger.close_missing(seen):
            self._publish_position(update)

    async def _subscribe_portfolio(self, session: _Session, settings: StreamerSettings, rotate: bool) -> None:
        if not session.accounts:
            return
        if rotate:
            session.portfolio_index = (session.portfolio_index + 1) % len(session.accounts)
        account = session.accounts[session.portfolio_index % len(session.accounts)]
        session.portfolio_account = account
        session.portfolio_rotated_at = time.monotonic()
        if rotate:
            # Fire and forget: the maintenance loop (heartbeat!) must never wait on the gateway. Subscribing an
            # account replaces the previous one on IB's side.
            session.ib.client.reqAccountUpdates(True, account)
            return
        try:
            await asyncio.wait_for(session.ib.reqAccountUpdatesAsync(account), settings.connect_timeout_s)
        except (TimeoutError, ConnectionError) as exc:
            log.warning("portfolio subscription for %s did not complete: %s", account, exc)

    def _sync_subscriptions(self, session: _Session, settings: StreamerSettings) -> None:
        """PnL-single per open allowed position; model greeks within the line budget."""
        assert self._merger is not None
        self._subs_dirty = False
        ib = session.ib
        if not ib.isConnected():
            return
        open_positions = self._merger.open_positions()
        for key in sorted(set(open_positions) - session.pnl_subs):
            ib.reqPnLSingle(key[0], "", key[1])
            session.pnl_subs.add(key)
        now = time.monotonic()
        for key in set(open_positions) & set(session.closing_since):
            del session.closing_since[key]  # reopened
            session.pnl_zero_seen.discard(key)
        for key in sorted(session.pnl_subs - set(open_positions)):
            since = session.closing_since.setdefault(key, now)
            if key in session.pnl_zero_seen or now - since >= _PNL_CLOSE_GRACE_S:
                ib.cancelPnLSingle(key[0], "", key[1])
                session.pnl_subs.discard(key)
                session.pnl_zero_seen.discard(key)
                del session.closing_since[key]
        priorities: dict[int, float] = {}
        contracts = {}
        for (_account, con_id), (fields, qty) in open_positions.items():
            priorities[con_id] = priorities.get(con_id, 0.0) + abs(qty * (fields.multiplier or 1.0))
            contracts[con_id] = fields
        wanted = plan_greeks_lines(priorities, settings.line_budget, session.greeks_rotation)
        for con_id in sorted(set(session.mkt_subs) - wanted):
            ib.cancelMktData(session.mkt_subs.pop(con_id))
            session.last_greeks.pop(con_id, None)
        for con_id in sorted(wanted - set(session.mkt_subs)):
            c = contracts[con_id]
            contract = Contract(conId=con_id, secType=c.sec_type, exchange=c.exchange or "SMART", currency=c.currency)
            ib.reqMktData(contract, "", False, False)
            session.mkt_subs[con_id] = contract

    async def _maintain(self, session: _Session, settings: StreamerSettings) -> None:
        """Heartbeat, rotations, throttled greeks, subscription changes, until the session ends or we stop."""
        assert self._stopping is not None
        ib = session.ib
        session.greeks_rotated_at = time.monotonic()
        while not session.done.is_set() and not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(session.done.wait(), _MAINTENANCE_TICK_S)
            if session.done.is_set() or self._stopping.is_set():
                break
            if not ib.isConnected():
                self._end_session(session, "socket closed")
                break
            now = time.monotonic()
            self._throttle_flush()
            if self._subs_dirty or session.closing_since:
                self._sync_subscriptions(session, settings)
            if now - session.greeks_rotated_at >= settings.greeks_rotation_s:
                session.greeks_rotated_at = now
                session.greeks_rotation += 1
                self._sync_subscriptions(session, settings)
            if len(session.accounts) > 1 and now - session.portfolio_rotated_at >= settings.portfolio_rotation_s:
                await self._subscribe_portfolio(session, settings, rotate=True)
            received = ib.client._numMsgRecv  # ib_async counts decoded frames; wrapper.time counts any TCP data
            if received != session.messages_seen:
                session.messages_seen, session.messages_at = received, now
            silent_s = now - session.messages_at
            if silent_s >= settings.heartbeat_s and not session.probing:
                session.probing = True
                try:
                    await asyncio.wait_for(ib.reqCurrentTimeAsync(), settings.probe_timeout_s)
                except (TimeoutError, ConnectionError):
                    self._last_error = f"no data for {silent_s:.1f} s and no answer to a time probe: reconnecting"
                    log.warning(self._last_error)
                    self._end_session(session, "heartbeat")
                finally:
                    session.probing = False
        if self._stopping.is_set():
            session.end_reason = session.end_reason or "stopped"

    # -- ib_async event handlers (loop thread) ----------------------------------------------------------------
    def _publish_position(self, update: PositionUpdate) -> None:
        self._positions_emitted += 1
        assert self._fanout is not None
        self._fanout.publish_position(update)

    def _conversion_failed(self, what: str, raw: Any) -> None:
        # Bad input must not kill the reader, and must not vanish: the raw object goes to the log.
        self._conversion_errors += 1
        log.exception("could not convert %s (kept here for recovery): %r", what, raw)

    def _on_position(self, position: Any) -> None:
        try:
            update = self._merger.on_position(position)  # type: ignore[union-attr]
        except Exception:
            self._conversion_failed("position", position)
            return
        if update is not None:
            self._publish_position(update)
            self._quantity_seen(update)

    def _on_portfolio(self, item: Any) -> None:
        try:
            update = self._merger.on_portfolio(item)  # type: ignore[union-attr]
        except Exception:
            self._conversion_failed("portfolio item", item)
            return
        if update is not None:
            self._publish_position(update)
            self._quantity_seen(update)

    def _on_pnl_single(self, pnl: Any) -> None:
        try:
            update = self._merger.on_pnl_single(pnl)  # type: ignore[union-attr]
        except Exception:
            self._conversion_failed("PnL single", pnl)
            return
        if update is not None:
            self._positions_emitted += 1
            self._fanout.publish_position(update)  # type: ignore[union-attr]
            self._quantity_seen(update)
        if pnl.position == 0 and self._session is not None:
            self._session.pnl_zero_seen.add((pnl.account, pnl.conId))
            self._mark_subs_dirty()

    def _quantity_seen(self, update: PositionUpdate) -> None:
        # Subscriptions depend on quantities only (open/closed, greeks priority): a mark change must not trigger
        # a subscription pass over every position (thousands of them in a burst).
        key = (update.account, update.con_id)
        if self._known_qty.get(key, _NO_QTY) != update.position:
            self._known_qty[key] = update.position
            self._mark_subs_dirty()

    def _mark_subs_dirty(self) -> None:
        """Subscriptions follow position changes at the end of this loop iteration (a position opened and closed
        within a second still gets its PnL-single line)."""
        if not self._subs_dirty and self._loop is not None:
            self._subs_dirty = True
            self._loop.call_soon(self._sync_now)

    def _sync_now(self) -> None:
        session, settings = self._session, self._settings
        if self._subs_dirty and session is not None and settings is not None:
            self._sync_subscriptions(session, settings)

    def _on_tickers(self, tickers: Any) -> None:
        session, throttle, fanout = self._session, self._throttle, self._fanout
        if session is None or throttle is None or fanout is None:
            return
        now = time.monotonic()
        for ticker in tickers:
            comp = ticker.modelGreeks
            if comp is None:
                continue
            con_id = ticker.contract.conId
            if session.last_greeks.get(con_id) is comp:
                continue
            session.last_greeks[con_id] = comp
            try:
                update = throttle.offer(con_id, MODEL_GREEKS_TICK, comp, now)
            except Exception:
                self._conversion_failed("option computation", comp)
                continue
            if update is not None:
                self._greeks_emitted += 1
                fanout.publish_greeks(update)

    def _throttle_flush(self, force: bool = False) -> None:
        if self._throttle is None or self._fanout is None:
            return
        now = float("inf") if force else time.monotonic()
        for update in self._throttle.flush_due(now):
            self._greeks_emitted += 1
            self._fanout.publish_greeks(update)

    def _on_error(self, req_id: int, code: int, message: str, contract: Any) -> None:
        if code == CLIENT_ID_IN_USE:
            self._client_id_in_use = True
            self._last_error = f"IB error 326: client id in use ({message})"
        elif code in (CONNECTIVITY_LOST, SERVER_CONNECTIVITY_BROKEN):
            self._farm_connected = False
            self._last_error = f"IB {code}: {message}"
        elif code == RESTORED_DATA_KEPT:
            self._farm_connected = True
        elif code == RESTORED_DATA_LOST:
            # Connectivity is back but IB dropped our market data subscriptions: resubscribe everything.
            self._farm_connected = True
            session = self._session
            if session is not None and self._settings is not None:
                self._resubscribe_all(session, self._settings)
        elif code < 2100 or code >= 2200:
            self._last_error = f"IB {code} (req {req_id}): {message}"

    def _resubscribe_all(self, session: _Session, settings: StreamerSettings) -> None:
        ib = session.ib
        for account, con_id in list(session.pnl_subs):
            ib.cancelPnLSingle(account, "", con_id)
        for contract in session.mkt_subs.values():
            ib.cancelMktData(contract)
        session.pnl_subs.clear()
        session.mkt_subs.clear()
        session.last_greeks.clear()
        ib.client.reqPositions()
        self._sync_subscriptions(session, settings)
        if session.portfolio_account:
            ib.client.reqAccountUpdates(True, session.portfolio_account)
