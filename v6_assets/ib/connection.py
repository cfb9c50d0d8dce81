"""The connection loop: one streamer run, from ``start()`` to ``stop()``, on the streamer's asyncio loop.

It opens the spool and the fan-out, then loops: take the cross-process connection lease, ask the circuit breaker,
connect (``readonly=True``, always), subscribe (``SubscriptionPolicy``), stream until the connection ends, back off,
reconnect. While connected a maintenance tick runs every 0.25 s: throttled greeks, subscription changes and
rotations, and the heartbeat (no decoded message for ``heartbeat_s`` -> a time probe; no answer -> reconnect).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ib_async import IB
from ib_async.ib import StartupFetch

from v6_assets.contracts.clock import utc_now
from v6_assets.ib.account_values import AccountValueTracker
from v6_assets.ib.convert import Clock
from v6_assets.ib.decoder_errors import decoder_error_counter
from v6_assets.ib.executions import ExecutionTracker
from v6_assets.ib.fanout import FanOut, Handler
from v6_assets.ib.health import HealthTracker
from v6_assets.ib.lease import ConnectionLease, LeaseHolder
from v6_assets.ib.pacing import ThrottleCounter, pace
from v6_assets.ib.publisher import UpdatePublisher
from v6_assets.ib.resilience import Backoff, CircuitBreaker, CircuitState
from v6_assets.ib.settings import StreamerSettings
from v6_assets.ib.socket_reads import limit_reads
from v6_assets.ib.spool import Spool, SpoolHandler
from v6_assets.ib.status import (
    ConnectionStatus,
    SpoolStatus,
    StreamCounters,
    StreamerStatus,
    SubscriptionStatus,
)
from v6_assets.ib.subscriptions import SubscriptionPolicy

log = logging.getLogger(__name__)

# IB message codes handled explicitly.
CONNECTIVITY_LOST = 1100
RESTORED_DATA_LOST = 1101
RESTORED_DATA_KEPT = 1102
CLIENT_ID_IN_USE = 326
SERVER_CONNECTIVITY_BROKEN = 2110
_MAINTENANCE_TICK_S = 0.25
# A session that lasted this long was healthy: when it ends, reconnect at once and start the backoff over.
_HEALTHY_SESSION_S = 10.0


@dataclass(frozen=True, slots=True)
class ClientWire:
    """ib_async's counters of one connection (the lock-step seed compares them with the simulator's)."""

    client_id: int
    bytes_received: int
    messages_received: int
    bytes_sent: int
    requests_held: int


class _Session:
    """Per-connection state (a fresh ib_async ``IB`` for every connection)."""

    def __init__(self, ib: IB, subscriptions: SubscriptionPolicy) -> None:
        self.ib = ib
        self.subscriptions = subscriptions
        self.done = asyncio.Event()
        self.end_reason = ""
        self.probing = False
        # Decoded-message progress for the heartbeat (raw TCP bytes keep arriving on a desynchronised stream).
        self.messages_seen = -1
        self.messages_at = time.monotonic()
        self.streaming = False  # connected, subscribed, in the maintenance loop

    def end(self, reason: str) -> None:
        if not self.done.is_set():
            self.end_reason = reason
            self.done.set()


class ConnectionLoop:
    """One run of the streamer. Built on the caller's thread; ``run()`` and every other method on the loop thread,
    except ``request_stop`` (scheduled with ``call_soon_threadsafe``) and ``add_handler``/``remove_handler``."""

    def __init__(
        self,
        settings: StreamerSettings,
        clock: Clock,
        handlers: Callable[[], Sequence[Handler]],
        *,
        lockstep: bool = False,
    ) -> None:
        self.settings = settings
        self._clock = clock
        # Lock-step seed (``v6_assets.history_seed``): the timers (rotations, close grace) run on the simulated clock
        # and only when the seed asks (``lockstep_pass``), never on real-time ticks.
        self.lockstep = lockstep
        self._ticks: Callable[[], float] = (lambda: clock().timestamp()) if lockstep else time.monotonic
        self._handlers = handlers
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping = asyncio.Event()
        self._spool: Spool | None = None
        self._spool_handler: SpoolHandler | None = None
        self._fanout: FanOut | None = None
        self._publisher: UpdatePublisher | None = None
        self._executions: ExecutionTracker | None = None
        self._account_values: AccountValueTracker | None = None
        self._lease: ConnectionLease | None = None
        self._lease_holder: LeaseHolder | None = None
        self._breaker: CircuitBreaker | None = None
        self._session: _Session | None = None
        self._connected_since: datetime | None = None
        self._reconnects = 0
        self._sessions = 0
        self._connect_failures = 0
        self._farm_connected = True
        self.last_error: str | None = None
        self._client_id_in_use = False
        self._subs_dirty = False
        self.health: HealthTracker | None = None
        self.throttle = ThrottleCounter()
        self.resubscriptions = 0  # after 1101 (IB forgot our subscriptions)

    # -- called from the lifecycle -------------------------------------------------------------------------------
    def request_stop(self) -> None:
        self._stopping.set()

    def add_handler(self, handler: Handler) -> None:
        if self._fanout is not None:
            self._fanout.add(handler)

    def remove_handler(self, handler: Handler) -> None:
        if self._fanout is not None:
            self._fanout.remove(handler)

    async def _sleep(self, seconds: float) -> bool:
        """Sleep unless stopping; True if a stop was requested."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), max(0.0, seconds))
        return self._stopping.is_set()

    # -- the loop ------------------------------------------------------------------------------------------------
    async def run(self, ready: threading.Event) -> None:
        """Until ``request_stop``; sets ``ready`` once the first lease attempt is done (or on failure before it)."""
        settings = self.settings
        self._loop = asyncio.get_running_loop()
        self._spool = Spool(settings.spool_path, max_bytes=settings.spool_max_bytes)
        self._spool_handler = SpoolHandler(self._spool, max_held=settings.spool_max_held, on_resync=self._resync)
        self._fanout = FanOut(settings.handler_queue_size, self._spool_handler)
        for handler in list(self._handlers()):
            self._fanout.add(handler)
        self._publisher = UpdatePublisher(
            settings, self._clock, self._fanout, self._mark_subs_dirty, self._current_subscriptions
        )
        self._executions = ExecutionTracker(settings.accounts, self._clock, self._fanout.publish_execution)
        self._account_values = AccountValueTracker(settings.accounts, self._clock, self._fanout.publish_execution)
        self._breaker = CircuitBreaker(settings.circuit_failures, settings.circuit_cooldown_s)
        self.health = HealthTracker(self._clock, self._fanout.publish_health)
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
                self.health.begin()
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
            self.health.stopped()
            await self._fanout.close()
            self._spool_handler.flush()
            if self._spool_handler.pending:
                log.error("stopping with %d events the spool could not take", self._spool_handler.pending)
            self._spool.close()
            self._lease.release()
            self._connected_since = None

    async def _run_session(self, settings: StreamerSettings) -> float | None:
        """One connection: connect, subscribe, stream until it ends. Seconds it was connected, None if never."""
        assert self._breaker is not None and self._publisher is not None
        publisher = self._publisher
        assert self.health is not None
        health = self.health
        ib = IB()
        pace(ib)  # never more than IB's 50 messages/s, also when thousands of lines are (re)subscribed at once
        self.throttle.attach(ib)
        session = _Session(ib, SubscriptionPolicy(ib, settings, publisher.open_positions, self._ticks))
        ib.errorEvent += self._on_error
        ib.positionEvent += publisher.on_position
        publisher.hook_portfolio(ib)  # portfolio rows straight from the wrapper (ib_async's own is costly)
        ib.pendingTickersEvent += publisher.on_tickers
        # market data flowing again ends a competing session (IB sends no message for that)
        publisher.hook_pnl_single(ib, health.market_data_seen)  # straight from the wrapper: the busiest message
        ib.pendingTickersEvent += lambda *_: health.market_data_seen()
        ib.disconnectedEvent += lambda: session.end("disconnected")
        if self._executions is not None:
            self._executions.attach(ib)
        if self._account_values is not None:
            self._account_values.attach(ib)
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
            self.last_error = f"connect to {settings.host}:{settings.port} failed: {reason}"
            log.warning("%s (circuit %s)", self.last_error, self._breaker.state)
            health.connect_failed(self.last_error)
            ib.disconnect()
            self._session = None
            return None
        if not ib.isConnected():
            self._connect_failures += 1
            self._breaker.record_failure()
            health.connect_failed("the gateway closed the connection during the handshake")
            self._session = None
            return None
        started = time.monotonic()
        limit_reads(ib)
        self._breaker.record_success()
        self._sessions += 1
        if self._sessions > 1:
            self._reconnects += 1
        self._connected_since = utc_now()
        self._farm_connected = True
        health.connected()
        session.subscriptions.choose_accounts(tuple(ib.managedAccounts()))
        log.info("connected to %s:%s as client %s, accounts %s", settings.host, settings.port, settings.client_id,
                 ",".join(session.subscriptions.accounts))  # fmt: skip
        try:
            publisher.close_missing({(p.account, int(p.contract.conId)) for p in ib.positions()})
            if self._executions is not None:
                self._executions.request(ib)  # the day's fills: those missed while disconnected come back
            if self._account_values is not None:
                self._account_values.subscribe(ib, session.subscriptions.accounts)
            await session.subscriptions.subscribe_portfolio()
            self._sync_subscriptions(session)
            await self._maintain(session, settings)
        finally:
            self._connected_since = None
            self._session = None
            publisher.flush_greeks(force=True)
            ib.disconnect()
        if not self._stopping.is_set():
            health.socket_dropped(session.end_reason)
        log.info("session ended: %s", session.end_reason)
        return time.monotonic() - started

    async def _maintain(self, session: _Session, settings: StreamerSettings) -> None:
        """Heartbeat, rotations, throttled greeks, subscription changes, until the session ends or we stop."""
        assert self._publisher is not None
        ib = session.ib
        subscriptions = session.subscriptions
        subscriptions.start_greeks_rotation(self._ticks())
        session.streaming = True
        while not session.done.is_set() and not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(session.done.wait(), _MAINTENANCE_TICK_S)
            if session.done.is_set() or self._stopping.is_set():
                break
            if not ib.isConnected():
                session.end("socket closed")
                break
            if not self.lockstep:
                self._run_timers(session)
            await self._heartbeat(session, settings, time.monotonic())
        if self._stopping.is_set():
            session.end_reason = session.end_reason or "stopped"

    def _run_timers(self, session: _Session) -> None:
        """Throttled greeks, pending subscription changes, rotations that are due."""
        assert self._publisher is not None
        subscriptions = session.subscriptions
        now = self._ticks()
        self._publisher.flush_greeks()
        if self._subs_dirty or subscriptions.closing:
            self._sync_subscriptions(session)
        if subscriptions.rotate_greeks_if_due(now):
            self._sync_subscriptions(session)
        subscriptions.rotate_portfolio_if_due(now)

    def lockstep_pass(self, run_timers: bool) -> ClientWire | None:
        """Lock-step seed, on the loop thread: the wire counters of the connection (None while not streaming:
        connecting, subscribing, reconnecting), after running the timers at the simulated now if ``run_timers``."""
        session = self._session
        if session is None or not session.streaming or not session.ib.client.isReady():
            return None
        if run_timers:
            self._run_timers(session)
        client = session.ib.client
        stats = client.connectionStats()
        return ClientWire(
            client_id=self.settings.client_id,
            bytes_received=stats.numBytesRecv,
            messages_received=stats.numMsgRecv,
            bytes_sent=stats.numBytesSent,
            requests_held=len(client._msgQ),  # held back by the pacing, sent on a real-time timer
        )

    async def _heartbeat(self, session: _Session, settings: StreamerSettings, now: float) -> None:
        """No decoded message for ``heartbeat_s``: probe with reqCurrentTime; no answer ends the session."""
        received = session.ib.client._numMsgRecv  # ib_async counts decoded frames; wrapper.time counts any TCP data
        if received != session.messages_seen:
            session.messages_seen, session.messages_at = received, now
        silent_s = now - session.messages_at
        if silent_s >= settings.heartbeat_s and not session.probing:
            session.probing = True
            try:
                await asyncio.wait_for(session.ib.reqCurrentTimeAsync(), settings.probe_timeout_s)
            except (TimeoutError, ConnectionError):
                self.last_error = f"no data for {silent_s:.1f} s and no answer to a time probe: reconnecting"
                log.warning(self.last_error)
                session.end("heartbeat")
            finally:
                session.probing = False

    # -- subscriptions follow positions --------------------------------------------------------------------------
    def _current_subscriptions(self) -> SubscriptionPolicy | None:
        return self._session.subscriptions if self._session is not None else None

    def _sync_subscriptions(self, session: _Session) -> None:
        self._subs_dirty = False
        session.subscriptions.sync()

    def _mark_subs_dirty(self) -> None:
        """Subscriptions follow position changes at the end of this loop iteration (a position opened and closed
        within a second still gets its PnL-single line)."""
        if not self._subs_dirty and self._loop is not None:
            self._subs_dirty = True
            self._loop.call_soon(self._sync_now)

    def _sync_now(self) -> None:
        session = self._session
        if self.lockstep and session is not None and not session.streaming:
            return  # lock-step: the first sync is the one after the whole snapshot arrived, however it was chunked
        if self._subs_dirty and session is not None:
            self._sync_subscriptions(session)

    def _resync(self, dropped_greeks: int, dropped_positions: int) -> None:
        """Updates were shed while the spool refused writes: publish the current state of every known position from
        memory at once (closed ones included), then reconnect so IB's snapshot brings anything newer and the greeks
        lines are subscribed afresh."""
        if self._publisher is not None:
            for update in self._publisher.merger.resync():
                self._publisher.publish_position(update)
        session = self._session
        if session is not None:
            self.last_error = (
                f"resync: {dropped_greeks} greeks and {dropped_positions} position updates were shed while the "
                "spool refused writes; reconnecting to restore the current state"
            )
            session.end("resync after shed updates")

    def _on_error(self, req_id: int, code: int, message: str, contract: Any) -> None:
        if self.health is not None:
            self.health.ib_message(code, message)
        if code == CLIENT_ID_IN_USE:
            self._client_id_in_use = True
            self.last_error = f"IB error 326: client id in use ({message})"
        elif code in (CONNECTIVITY_LOST, SERVER_CONNECTIVITY_BROKEN):
            self._farm_connected = False
            self.last_error = f"IB {code}: {message}"
        elif code == RESTORED_DATA_KEPT:
            self._farm_connected = True
        elif code == RESTORED_DATA_LOST:
            # Connectivity is back but IB dropped our market data subscriptions: resubscribe everything.
            self._farm_connected = True
            session = self._session
            if session is not None:
                self.resubscriptions += 1
                session.subscriptions.drop_all()
                self._sync_subscriptions(session)
                session.subscriptions.resubscribe_portfolio()
        elif code < 2100 or code >= 2200:
            self.last_error = f"IB {code} (req {req_id}): {message}"

    # -- status (loop thread, or any thread once the loop has ended) ---------------------------------------------
    def status(self, running: bool) -> StreamerStatus:
        settings = self.settings
        session = self._session
        publisher = self._publisher
        merger = publisher.merger if publisher else None
        return StreamerStatus(
            running=running,
            stream_id=settings.stream_id,
            connection=self._connection_status(),
            subscriptions=(
                session.subscriptions.status() if session else SubscriptionStatus(line_budget=settings.line_budget)
            ),
            spool=self._spool_status(),
            counters=StreamCounters(
                positions_emitted=publisher.positions_emitted if publisher else 0,
                greeks_emitted=publisher.greeks_emitted if publisher else 0,
                non_option_dropped=merger.counters.non_option_dropped if merger else 0,
                foreign_account_dropped=merger.counters.foreign_account_dropped if merger else 0,
                malformed_messages=decoder_error_counter().count,
                conversion_errors=publisher.conversion_errors if publisher else 0,
                **self._execution_counters(),
            ),
            handlers=tuple(self._fanout.stats()) if self._fanout else (),
            gateway=settings.gateway,
        )

    def _execution_counters(self) -> dict[str, int]:
        tracker = self._executions
        if tracker is None:
            return {}
        c = tracker.counters
        counters = {"executions_emitted": c.emitted, "execution_errors": c.conversion_errors,
                    "orphan_commissions": c.orphan_commissions}  # fmt: skip
        if self._account_values is not None:
            a = self._account_values.counters
            counters.update(account_values_emitted=a.emitted, account_value_errors=a.errors)
        return counters

    def _connection_status(self) -> ConnectionStatus:
        session, breaker, lease = self._session, self._breaker, self._lease
        last_age = None
        if session is not None and session.ib.isConnected() and session.ib.wrapper.time > 0:
            last_age = max(0.0, time.time() - session.ib.wrapper.time)
        open_until = None
        if breaker is not None and breaker.state is CircuitState.OPEN:
            open_until = utc_now() + timedelta(seconds=breaker.open_for_s)
        return ConnectionStatus(
            lease_held=bool(lease and lease.held),
            lease_holder=lease.holder() if lease and lease.held else self._lease_holder,
            connected=self._connected_since is not None,
            connected_since=self._connected_since,
            reconnects=self._reconnects,
            connect_failures=self._connect_failures,
            last_message_age_s=last_age,
            circuit_state=str(breaker.state) if breaker else str(CircuitState.CLOSED),
            circuit_open_until=open_until,
            ib_farm_connected=self._farm_connected,
            last_error=self.last_error,
            health_state=self.health.state if self.health is not None else "disconnected",
            health_since=self.health.since if self.health is not None else None,
            health=self.health.describe() if self.health is not None and self.health.tracking else None,
            resubscriptions=self.resubscriptions,
            throttled=self.throttle.episodes,
        )

    def _spool_status(self) -> SpoolStatus:
        depth = None
        if self._spool is not None:
            with contextlib.suppress(Exception):
                depth = self._spool.depth()
        handler = self._spool_handler
        return SpoolStatus(
            path=str(self.settings.spool_path),
            depth=depth,
            pending=handler.pending if handler else 0,
            written=handler.written if handler else 0,
            last_offset=handler.last_offset if handler else 0,
            error=handler.last_error if handler else None,
            dropped_greeks=handler.dropped_greeks if handler else 0,
            dropped_positions=handler.dropped_positions if handler else 0,
            max_held=handler.max_held if handler else 0,
        )
