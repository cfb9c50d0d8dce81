"""The IB Gateway simulator: an asyncio TCP server speaking the TWS socket protocol to unmodified clients.

One driver task advances simulated time in real-time steps of ``clock.tick_real_s``. In each step it processes,
in time order, every timeline event, session close (expiries, then a final portfolio + PnL refresh at the close
mark, recorded as the EOD ground truth) and EOD cut (daily reset) that fell inside the step, then sends the
periodic streams whose simulated cadence elapsed -- each at most once per ``clock.min_real_interval_s`` of real
time, so high speeds do not flood clients. At speeds above 60 nights and weekends are skipped (the clock jumps
to 30 minutes before the next open once the cut is processed), unless ``clock.skip_nights`` says otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any, TypeVar

from v6_assets.gateway_sim import protocol
from v6_assets.gateway_sim.book import BookPosition
from v6_assets.gateway_sim.clock import SimClock
from v6_assets.gateway_sim.market import Greeks, Market, SessionTimes
from v6_assets.gateway_sim.protocol import UNSET_DOUBLE, In, Out
from v6_assets.gateway_sim.scenario import ContractSpec, Scenario, TimelineEvent, load_scenario

log = logging.getLogger(__name__)
T = TypeVar("T")

READ_ONLY_ERROR = 321
READ_ONLY_MESSAGE = "Error validating request:-'bX' : cause - The API interface is currently in Read-Only mode."
SKIP_NIGHTS_ABOVE_SPEED = 60.0
PRE_OPEN = timedelta(minutes=30)


@dataclasses.dataclass(slots=True)
class _Stream:
    """Cadence state of one periodic stream of one client."""

    last_sim: datetime | None = None
    last_real: float = 0.0


class ClientConnection(asyncio.Protocol):
    """One API client: handshake, request dispatch, subscriptions and flow-controlled writes."""

    def __init__(self, sim: GatewaySimulator) -> None:
        self.sim = sim
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.greeted = False
        self.version: int | None = None
        self.client_id: int | None = None
        self.ready = False
        self.closed = False
        self.account_sub: str | None = None
        self.positions_sub = False
        self.pnl_subs: dict[int, str] = {}
        self.pnl_single_subs: dict[int, tuple[str, int]] = {}
        self.mkt_subs: dict[int, ContractSpec | str] = {}
        self.streams: dict[str, _Stream] = {}
        self.stalled: list[bytes] = []
        self.can_write = asyncio.Event()
        self.can_write.set()
        self.greeks_counter: dict[int, int] = {}
        self.messages_sent = 0

    # --- asyncio.Protocol ---
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.can_write.set()
        self.sim._on_client_closed(self)

    def pause_writing(self) -> None:
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.can_write.set()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        try:
            if not self.greeted:
                if len(self.buffer) < 4:
                    return
                if bytes(self.buffer[:4]) != b"API\0":
                    raise protocol.ProtocolError(f"expected 'API\\0' greeting, got {bytes(self.buffer[:4])!r}")
                del self.buffer[:4]
                self.greeted = True
            for fields in protocol.split_frames(self.buffer):
                if self.closed:
                    return
                if self.version is None:
                    self._handshake(fields)
                else:
                    self.sim._dispatch(self, fields)
        except protocol.ProtocolError as exc:
            log.warning("closing client %s: %s", self.client_id, exc)
            self.sim._record(self, None, [f"protocol error: {exc}"])
            self.close()

    def _handshake(self, fields: list[str]) -> None:
        text = fields[0] if fields else ""
        self.sim._record(self, None, [text])
        low, high, _options = protocol.parse_handshake(text)
        version = protocol.negotiate(low, high)
        if version is None:
            log.info("closing: client offers v%d..%d, server speaks up to v%d", low, high, protocol.SERVER_MAX_VERSION)
            self.close()
            return
        self.version = version
        now = self.sim.clock.now().astimezone(protocol_zone())
        self.write_raw(protocol.encode([version, now.strftime("%Y%m%d %H:%M:%S ") + (now.tzname() or "UTC")]))

    # --- writing ---
    def write_raw(self, frame: bytes, count: int = 1) -> None:
        if self.closed or self.transport is None or self.transport.is_closing():
            return
        if self.sim._stall_until > time.monotonic():
            self.stalled.append(frame)
            return
        self.transport.write(frame)
        self.messages_sent += count

    def send(self, *fields: object) -> None:
        self.write_raw(protocol.encode(fields))

    def flush_stalled(self) -> None:
        frames, self.stalled = self.stalled, []
        if self.transport is not None and not self.closed and frames:
            self.transport.write(b"".join(frames))
            self.messages_sent += len(frames)

    def send_error(self, req_id: int, code: int, message: str) -> None:
        fields: list[object] = [Out.ERR_MSG, 2, req_id, code, message]
        if (self.version or 0) >= protocol.MIN_VERSION_ADVANCED_ORDER_REJECT:
            fields.append("")
        self.send(*fields)

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()
        self.closed = True

    def stream_due(self, name: str, sim_now: datetime, cadence_s: float, min_real_s: float) -> bool:
        state = self.streams.setdefault(name, _Stream())
        real = time.monotonic()
        if state.last_sim is not None and (
            (sim_now - state.last_sim).total_seconds() < cadence_s or real - state.last_real < min_real_s
        ):
            return False
        state.last_sim, state.last_real = sim_now, real
        return True


def protocol_zone() -> Any:
    from v6_assets.sessions import NEW_YORK

    return NEW_YORK


class GatewaySimulator:
    """In-process IB Gateway simulator. See the package docstring for the protocol, scenario and truth formats."""

    def __init__(
        self,
        scenario: Scenario | str | Path = "demo",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int | None = None,
        speed: float | None = None,
        record_path: Path | None = None,
        truth_dir: Path | None = None,
        start_time: datetime | None = None,
        keep_sent: bool = True,
    ) -> None:
        if isinstance(scenario, Scenario):
            if start_time is not None:
                scenario = _shift_scenario(scenario, start_time)
        else:
            scenario = load_scenario(scenario, start_time=start_time)
        self.scenario = scenario
        self.host = host
        self._requested_port = port
        self.seed = scenario.seed if seed is None else seed
        self.speed = scenario.clock.speed if speed is None else speed
        if not self.speed > 0:
            raise ValueError(f"speed must be > 0, got {self.speed!r}")
        self.record_path = record_path
        self.truth_dir = truth_dir
        self.keep_sent = keep_sent
        self.clock = SimClock(scenario.clock.start, self.speed)
        self._skip_nights_setting = scenario.clock.skip_nights
        self.market = Market(scenario, self.seed)
        self.book: dict[tuple[str, int], BookPosition] = {}
        self._accounts = {a.account_id: a for a in scenario.accounts}
        self._init_book()

        self._lock = threading.Lock()
        self._clients: list[ClientConnection] = []
        self._id_counts: dict[int, int] = {}
        self._id_max: dict[int, int] = {}
        self._requests: list[dict[str, Any]] = []
        self._violations = 0
        self._lines_used = 0
        self._stall_until = 0.0
        self._refusing_until = 0.0
        self._record_file: IO[str] | None = None
        self._sent_file: IO[str] | None = None
        self._eod_file: IO[str] | None = None
        self.truth: dict[str, list[dict[str, Any]]] = {"sent": [], "eod": []}
        self.timeline_done = threading.Event()
        self._stepped = asyncio.Event()
        self.sessions_closed: list[str] = []

        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._driver: asyncio.Task[None] | None = None
        self._port: int | None = None
        self._now = scenario.clock.start
        self._event_index = 0
        first_session = self.market.calendar.session_index_at(scenario.clock.start)
        self._session_index = max(first_session, 0)
        self._close_done: set[int] = set()
        self._cut_done: set[int] = set()
        cal = self.market.calendar
        # Sessions whose close/cut are before the start are already done.
        for i, s in enumerate(cal.sessions):
            if s.close <= scenario.clock.start:
                self._close_done.add(i)
            if s.cut <= scenario.clock.start:
                self._cut_done.add(i)
        self._next_order_id = scenario.next_valid_id

    # ------------------------------------------------------------------ setup
    def _init_book(self) -> None:
        start = self.scenario.clock.start
        for p in self.scenario.positions:
            contract = self.scenario.contracts[p.con_id]
            mark = self.market.quote(contract, start).price
            avg = p.avg_cost if p.avg_cost is not None else round(mark * contract.multiplier, 4)
            pos = BookPosition(p.account, contract, p.qty, avg)
            # IB's daily PnL resets to the last mark before the start; the statement truth treats it as unknown.
            pos.reset_mark = mark
            pos.prev_close_mark = None
            pos.prev_close_qty = p.qty
            self.book[pos.key] = pos

    # ------------------------------------------------------------------ lifecycle
    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("simulator not started")
        return self._port

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self.record_path is not None:
            self.record_path.parent.mkdir(parents=True, exist_ok=True)
            self._record_file = self.record_path.open("a", buffering=1)
        if self.truth_dir is not None:
            self.truth_dir.mkdir(parents=True, exist_ok=True)
            self._sent_file = (self.truth_dir / "sent.jsonl").open("w")
            self._eod_file = (self.truth_dir / "eod.jsonl").open("w")
        await self._listen(self._requested_port)
        self.clock.start()
        self._driver = asyncio.create_task(self._drive(), name="gateway-sim-driver")

    async def _listen(self, port: int) -> None:
        self._server = await self._loop_required().create_server(
            lambda: ClientConnection(self), self.host, port, reuse_address=True
        )
        self._port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._driver is not None:
            self._driver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._driver
            self._driver = None
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for client in list(self._clients):
            client.close()
        await asyncio.sleep(0)
        for handle in (self._record_file, self._sent_file, self._eod_file):
            if handle is not None:
                handle.close()
        self._record_file = self._sent_file = self._eod_file = None
        if self.truth_dir is not None:
            self._write_summary(self.truth_dir)

    @contextlib.contextmanager
    def running(self, timeout: float = 10.0) -> Iterator[GatewaySimulator]:
        """Run the simulator in its own event loop on a daemon thread (for synchronous tests and scripts)."""
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="gateway-sim", daemon=True)
        thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.start(), loop).result(timeout)
            yield self
        finally:
            try:
                asyncio.run_coroutine_threadsafe(self.stop(), loop).result(timeout)
            finally:
                loop.call_soon_threadsafe(loop.stop)
                thread.join(timeout)
                loop.close()

    def _loop_required(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("simulator not started")
        return self._loop

    def _call(self, fn: Callable[[], T]) -> None:
        """Run ``fn`` on the simulator's loop (thread-safe entry point for faults and controls)."""
        loop = self._loop_required()
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            fn()
        else:
            loop.call_soon_threadsafe(fn)

    def _run_sync(self, coro: Awaitable[T], timeout: float | None) -> T:
        loop = self._loop_required()
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ faults (thread-safe)
    def disconnect_all(self) -> None:
        def run() -> None:
            for client in list(self._clients):
                if client.transport is not None:
                    client.transport.abort()

        self._call(run)

    def refuse_connections(self, seconds: float) -> None:
        """Stop listening for ``seconds`` (connects get ECONNREFUSED), then listen again on the same port."""

        def run() -> None:
            self._refusing_until = time.monotonic() + seconds
            if self._server is not None:
                self._server.close()
                self._server = None
            self._loop_required().call_later(seconds, lambda: asyncio.ensure_future(self._relisten()))

        self._call(run)

    async def _relisten(self) -> None:
        if (
            self._driver is not None
            and self._server is None
            and self._port is not None
            and time.monotonic() >= self._refusing_until - 0.001
        ):
            await self._listen(self._port)

    def stall_output(self, seconds: float) -> None:
        """Hold every outgoing message for ``seconds`` of real time, then deliver them all at once."""

        def run() -> None:
            self._stall_until = time.monotonic() + seconds
            self._loop_required().call_later(seconds, self._end_stall)

        self._call(run)

    def _end_stall(self) -> None:
        if time.monotonic() >= self._stall_until - 0.001:
            for client in self._clients:
                client.flush_stalled()

    def send_error(self, code: int, message: str, req_id: int = -1) -> None:
        def run() -> None:
            for client in self._ready_clients():
                client.send_error(req_id, code, message)

        self._call(run)

    def send_malformed_frame(self) -> None:
        """A frame whose message id is not a number (clients must log it and carry on)."""

        def run() -> None:
            for client in self._ready_clients():
                client.write_raw(protocol.encode_raw(b"\xffNOT-A-MSG-ID\x00garbage\x00"))

        self._call(run)

    def send_truncated_message(self) -> None:
        """A PORTFOLIO_VALUE with its field list cut short after the contract (clients must drop it)."""
        fields = [Out.PORTFOLIO_VALUE, 8, 1, "TRUNC", "OPT", "20300101", 1.0, "C", "100"]

        def run() -> None:
            for client in self._ready_clients():
                client.send(*fields)

        self._call(run)

    # ------------------------------------------------------------------ observation (thread-safe)
    def active_client_ids(self) -> list[int]:
        with self._lock:
            return sorted(c.client_id for c in self._clients if c.ready and c.client_id is not None)

    def max_concurrent_connections(self, client_id: int) -> int:
        """Most connections that claimed ``client_id`` at once (a rejected duplicate counts while it is open)."""
        with self._lock:
            return self._id_max.get(client_id, 0)

    def order_violations(self) -> int:
        with self._lock:
            return self._violations

    def requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._requests)

    def lines_in_use(self) -> int:
        with self._lock:
            return self._lines_used

    def wait_sim_time(self, target: datetime | timedelta, timeout: float = 30.0) -> bool:
        """Block (from another thread) until simulated time reaches ``target`` (a datetime, or a delta from now)."""
        if isinstance(target, timedelta):
            target = self.clock.now() + target
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._now >= target:
                return True
            time.sleep(0.01)
        return self._now >= target

    async def _until(self, predicate: Callable[[], bool]) -> None:
        """Wait in the simulator's loop until ``predicate`` holds after a driver step (wrap in asyncio.timeout)."""
        while not predicate():
            self._stepped.clear()
            await self._stepped.wait()

    async def wait_sim_time_async(self, target: datetime | timedelta) -> None:
        if isinstance(target, timedelta):
            target = self.clock.now() + target
        final = target
        await self._until(lambda: self._now >= final)

    async def wait_timeline_done(self) -> None:
        await self._until(self.timeline_done.is_set)

    async def wait_sessions_closed(self, count: int) -> None:
        await self._until(lambda: len(self.sessions_closed) >= count)

    # ------------------------------------------------------------------ records
    def _record(self, client: ClientConnection, msg_id: int | None, fields: list[str], violation: bool = False) -> None:
        entry = {
            "sim_time": self._now.isoformat(),
            "wall_time": time.time(),
            "client_id": client.client_id,
            "msg_id": msg_id,
            "fields": fields,
            "violation": violation,
        }
        with self._lock:
            self._requests.append(entry)
            if violation:
                self._violations += 1
        if self._record_file is not None:
            self._record_file.write(json.dumps(entry) + "\n")

    def _truth_sent(self, client: ClientConnection, kind: str, account: str, con_id: int | None, **values: Any) -> None:
        if not self.keep_sent and self._sent_file is None:
            return
        entry = {
            "sim_time": self._now.isoformat(),
            "wall_time": time.time(),
            "client_id": client.client_id,
            "kind": kind,
            "account": account,
            "con_id": con_id,
            **values,
        }
        if self.keep_sent:
            self.truth["sent"].append(entry)
        if self._sent_file is not None:
            self._sent_file.write(json.dumps(entry) + "\n")

    def write_truth(self, directory: Path) -> None:
        """Write ``sent.jsonl``, ``eod.jsonl`` and ``summary.json`` from memory to ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        with (directory / "sent.jsonl").open("w") as f:
            for entry in self.truth["sent"]:
                f.write(json.dumps(entry) + "\n")
        with (directory / "eod.jsonl").open("w") as f:
            for entry in self.truth["eod"]:
                f.write(json.dumps(entry) + "\n")
        self._write_summary(directory)

    def _write_summary(self, directory: Path) -> None:
        summary = {
            "scenario": self.scenario.name,
            "seed": self.seed,
            "start": self.scenario.clock.start.isoformat(),
            "speed": self.speed,
            "sessions_closed": self.sessions_closed,
            "order_violations": self.order_violations(),
            "requests": len(self._requests),
        }
        (directory / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")

    # ------------------------------------------------------------------ connections
    def _ready_clients(self) -> list[ClientConnection]:
        return [c for c in self._clients if c.ready and not c.closed]

    def _on_client_closed(self, client: ClientConnection) -> None:
        with self._lock:
            if client in self._clients:
                self._clients.remove(client)
            if client.client_id is not None and client.client_id in self._id_counts:
                self._id_counts[client.client_id] -= 1
            self._lines_used -= len(client.mkt_subs)
        client.mkt_subs.clear()

    def _register(self, client: ClientConnection) -> None:
        with self._lock:
            self._clients.append(client)

    # ------------------------------------------------------------------ request dispatch
    def _dispatch(self, client: ClientConnection, fields: list[str]) -> None:
        if not fields:
            raise protocol.ProtocolError("empty message")
        msg_id = protocol.to_int(fields[0], "msgId")
        if msg_id in protocol.ORDER_REQUESTS:
            self._record(client, msg_id, fields, violation=True)
            req_id = protocol.to_int(fields[2], "orderId") if len(fields) > 2 and msg_id != In.REQ_GLOBAL_CANCEL else -1
            log.warning("read-only violation: %s from client %s", protocol.ORDER_REQUESTS[msg_id], client.client_id)
            client.send_error(req_id, READ_ONLY_ERROR, READ_ONLY_MESSAGE)
            return
        if msg_id == In.START_API and not client.ready and len(fields) > 2:
            client.client_id = protocol.to_int(fields[2], "clientId")  # so the record names the client
        self._record(client, msg_id, fields)
        if msg_id == In.START_API:
            self._start_api(client, fields)
            return
        if not client.ready:
            raise protocol.ProtocolError(f"message {msg_id} before startApi")
        handler = self._handlers.get(msg_id)
        if handler is None:
            log.info("ignoring unsupported request %s from client %s", msg_id, client.client_id)
            return
        try:
            handler(self, client, fields)
        except (IndexError, protocol.ProtocolError) as exc:
            client.send_error(-1, 320, f"Error reading request: {exc or 'missing fields'}")

    def _start_api(self, client: ClientConnection, fields: list[str]) -> None:
        if client.ready:
            return
        client_id = protocol.to_int(fields[2] if len(fields) > 2 else "", "clientId")
        client.client_id = client_id
        with self._lock:
            count = self._id_counts.get(client_id, 0) + 1
            self._id_counts[client_id] = count
            self._id_max[client_id] = max(self._id_max.get(client_id, 0), count)
            in_use = count > 1
            too_many = len([c for c in self._clients if c.ready]) >= self.scenario.max_clients
        if in_use:
            client.send_error(
                -1, 326, "Unable to connect as the client id is already in use. Retry with a unique client id."
            )
            client.close()
            return
        if too_many:
            client.send_error(-1, 502, f"Couldn't connect to TWS: maximum of {self.scenario.max_clients} API clients")
            client.close()
            return
        client.ready = True
        self._register(client)
        client.send(Out.NEXT_VALID_ID, 1, self._next_order_id)
        client.send(Out.MANAGED_ACCTS, 1, ",".join(self.scenario.account_ids))

    def _req_positions(self, client: ClientConnection, fields: list[str]) -> None:
        client.positions_sub = True
        for pos in self.book.values():
            self._send_position(client, pos)
        client.send(Out.POSITION_END, 1)

    def _cancel_positions(self, client: ClientConnection, fields: list[str]) -> None:
        client.positions_sub = False

    def _req_account_updates(self, client: ClientConnection, fields: list[str]) -> None:
        subscribe = fields[2] not in ("0", "", "false", "False")
        account = fields[3] if len(fields) > 3 else ""
        if not subscribe:
            client.account_sub = None
            return
        if account not in self.scenario.account_ids:
            client.send_error(-1, 321, f"Error validating request:-'bc' : cause - Invalid account code {account!r}")
            return
        # IB keeps one account subscription per client: a second subscribe replaces the first.
        client.account_sub = account
        self._send_account_download(client, account)

    def _send_account_download(self, client: ClientConnection, account: str) -> None:
        self._send_account_values(client, account)
        for pos in self.book.values():
            if pos.account == account:
                self._send_portfolio(client, pos)
        client.send(Out.ACCT_UPDATE_TIME, 1, self._now.astimezone(protocol_zone()).strftime("%H:%M"))
        client.send(Out.ACCT_DOWNLOAD_END, 1, account)
        client.stream_due("portfolio", self._now, 0, 0)

    def _account_values(self, account: str) -> list[tuple[str, str, str]]:
        acct = next(a for a in self.scenario.accounts if a.account_id == account)
        base = acct.base_currency
        positions = [p for p in self.book.values() if p.account == account]
        unrealized = sum(p.unrealized(self._quote(p.contract).price) for p in positions if p.qty)
        market_value = sum(p.market_value(self._quote(p.contract).price) for p in positions if p.qty)
        return [
            ("AccountCode", account, ""),
            ("Currency", base, base),
            ("NetLiquidation", f"{1_000_000.0 + market_value:.2f}", base),
            ("UnrealizedPnL", f"{unrealized:.2f}", base),
            ("ExchangeRate", "1.00", "BASE"),
            *[("ExchangeRate", repr(rate), currency) for currency, rate in sorted(acct.fx_rates.items())],
        ]

    def _send_account_values(self, client: ClientConnection, account: str) -> None:
        for key, value, currency in self._account_values(account):
            client.send(Out.ACCT_VALUE, 2, key, value, currency, account)

    def _req_account_updates_multi(self, client: ClientConnection, fields: list[str]) -> None:
        req_id = protocol.to_int(fields[2], "reqId")
        account = fields[3]
        model_code = fields[4] if len(fields) > 4 else ""
        if account not in self.scenario.account_ids:
            client.send_error(req_id, 321, f"Error validating request:-'bc' : cause - Invalid account code {account!r}")
            return
        for key, value, currency in self._account_values(account):
            client.send(Out.ACCOUNT_UPDATE_MULTI, 1, req_id, account, model_code, key, value, currency)
        client.send(Out.ACCOUNT_UPDATE_MULTI_END, 1, req_id)

    def _req_executions(self, client: ClientConnection, fields: list[str]) -> None:
        client.send(Out.EXECUTION_DATA_END, 1, protocol.to_int(fields[2], "reqId"))

    def _req_open_orders(self, client: ClientConnection, fields: list[str]) -> None:
        client.send(Out.OPEN_ORDER_END, 1)

    def _req_completed_orders(self, client: ClientConnection, fields: list[str]) -> None:
        client.send(Out.COMPLETED_ORDERS_END)

    def _req_current_time(self, client: ClientConnection, fields: list[str]) -> None:
        client.send(Out.CURRENT_TIME, 1, int(self.clock.now().timestamp()))

    def _req_ids(self, client: ClientConnection, fields: list[str]) -> None:
        client.send(Out.NEXT_VALID_ID, 1, self._next_order_id)

    def _req_pnl(self, client: ClientConnection, fields: list[str]) -> None:
        req_id = protocol.to_int(fields[1], "reqId")
        account = fields[2]
        if (client.version or 0) < protocol.MIN_VERSION_PNL:
            client.send_error(req_id, 503, "The TWS is out of date and must be upgraded.")
            return
        if account not in self.scenario.account_ids:
            client.send_error(req_id, 321, f"Error validating request:-'bc' : cause - Invalid account code {account!r}")
            return
        client.pnl_subs[req_id] = account
        self._send_pnl(client, req_id, account)

    def _req_pnl_single(self, client: ClientConnection, fields: list[str]) -> None:
        req_id = protocol.to_int(fields[1], "reqId")
        account = fields[2]
        con_id = protocol.to_int(fields[4], "conId")
        if (client.version or 0) < protocol.MIN_VERSION_PNL:
            client.send_error(req_id, 503, "The TWS is out of date and must be upgraded.")
            return
        if (account, con_id) not in self.book:
            client.send_error(req_id, 200, f"No position for account {account!r} conId {con_id}")
            return
        client.pnl_single_subs[req_id] = (account, con_id)
        self._send_pnl_single(client, req_id, self.book[(account, con_id)])

    def _cancel_pnl(self, client: ClientConnection, fields: list[str]) -> None:
        client.pnl_subs.pop(protocol.to_int(fields[1], "reqId"), None)

    def _cancel_pnl_single(self, client: ClientConnection, fields: list[str]) -> None:
        client.pnl_single_subs.pop(protocol.to_int(fields[1], "reqId"), None)

    def _resolve_contract(self, fields: list[str]) -> ContractSpec | str | None:
        con_id = protocol.to_int(fields[3], "conId")
        symbol, sec_type = fields[4], fields[5]
        if con_id in self.scenario.contracts:
            return self.scenario.contracts[con_id]
        if con_id == 0:
            expiry, strike, right = fields[6][:8], protocol.to_float(fields[7], "strike"), fields[8]
            for c in self.scenario.contracts.values():
                if (c.symbol, c.sec_type) == (symbol, sec_type) and (
                    not c.is_option or (c.expiry_wire[:8] == expiry and c.strike == strike and c.right == right[:1])
                ):
                    return c
            if symbol in self.scenario.underlyings and sec_type in ("STK", "FUT", "IND"):
                return symbol
        return None

    def _req_mkt_data(self, client: ClientConnection, fields: list[str]) -> None:
        req_id = protocol.to_int(fields[2], "reqId")
        contract = self._resolve_contract(fields)
        if contract is None:
            client.send_error(req_id, 200, "No security definition has been found for the request")
            return
        snapshot = False
        if len(fields) >= 19:
            dnc = fields[15] == "1"
            snapshot = fields[17 + (3 if dnc else 0)] == "1"
        if req_id not in client.mkt_subs:
            with self._lock:
                if self._lines_used >= self.scenario.market_data_lines:
                    over = True
                else:
                    over = False
                    self._lines_used += 1
            if over:
                client.send_error(
                    req_id, 101, f"Max number of tickers has been reached ({self.scenario.market_data_lines} lines)"
                )
                return
            client.mkt_subs[req_id] = contract
        self._send_market_data(client, req_id, contract)
        if snapshot:
            client.send(Out.TICK_SNAPSHOT_END, 1, req_id)
            self._release_line(client, req_id)

    def _release_line(self, client: ClientConnection, req_id: int) -> None:
        if client.mkt_subs.pop(req_id, None) is not None:
            with self._lock:
                self._lines_used -= 1

    def _cancel_mkt_data(self, client: ClientConnection, fields: list[str]) -> None:
        self._release_line(client, protocol.to_int(fields[2], "reqId"))

    def _req_contract_details(self, client: ClientConnection, fields: list[str]) -> None:
        """Not modelled: answered with error 200 at once so clients fail fast instead of waiting for a timeout."""
        client.send_error(
            protocol.to_int(fields[2], "reqId"), 200, "No security definition has been found for the request"
        )

    def _req_account_summary(self, client: ClientConnection, fields: list[str]) -> None:
        """Answered with its end marker only (ib_async sends it after error 1102; nothing here needs the summary)."""
        client.send(Out.ACCOUNT_SUMMARY_END, 1, protocol.to_int(fields[2], "reqId"))

    def _req_market_data_type(self, client: ClientConnection, fields: list[str]) -> None:
        """Accepted and ignored: the simulator's data is always 'live'."""

    _handlers: dict[int, Callable[[GatewaySimulator, ClientConnection, list[str]], None]] = {
        In.REQ_POSITIONS: _req_positions,
        In.CANCEL_POSITIONS: _cancel_positions,
        In.REQ_ACCT_DATA: _req_account_updates,
        In.REQ_ACCOUNT_UPDATES_MULTI: _req_account_updates_multi,
        In.CANCEL_ACCOUNT_UPDATES_MULTI: lambda self, client, fields: None,
        In.REQ_EXECUTIONS: _req_executions,
        In.REQ_OPEN_ORDERS: _req_open_orders,
        In.REQ_ALL_OPEN_ORDERS: _req_open_orders,
        In.REQ_AUTO_OPEN_ORDERS: lambda self, client, fields: None,
        In.REQ_COMPLETED_ORDERS: _req_completed_orders,
        In.REQ_CURRENT_TIME: _req_current_time,
        In.REQ_IDS: _req_ids,
        In.REQ_PNL: _req_pnl,
        In.CANCEL_PNL: _cancel_pnl,
        In.REQ_PNL_SINGLE: _req_pnl_single,
        In.CANCEL_PNL_SINGLE: _cancel_pnl_single,
        In.REQ_MKT_DATA: _req_mkt_data,
        In.CANCEL_MKT_DATA: _cancel_mkt_data,
        In.REQ_MARKET_DATA_TYPE: _req_market_data_type,
        In.REQ_ACCOUNT_SUMMARY: _req_account_summary,
        In.REQ_CONTRACT_DATA: _req_contract_details,
        In.CANCEL_ACCOUNT_SUMMARY: lambda self, client, fields: None,
    }

    # ------------------------------------------------------------------ outgoing values
    def _quote(self, contract: ContractSpec) -> Greeks:
        return self.market.quote(contract, self._now)

    def _realized_wire(self, pos: BookPosition) -> float:
        if pos.realized_session is None:
            return UNSET_DOUBLE if self.scenario.nastiness.unset_realized else 0.0
        return pos.realized_session

    def _send_portfolio(self, client: ClientConnection, pos: BookPosition) -> None:
        c = pos.contract
        mark = self._quote(c).price
        if pos.qty:
            values = (pos.qty, mark, pos.market_value(mark), pos.average_cost, pos.unrealized(mark))
        else:
            values = (0.0, mark, 0.0, 0.0, 0.0)
        realized = self._realized_wire(pos)
        client.send(
            Out.PORTFOLIO_VALUE, 8, c.con_id, c.symbol, c.sec_type, c.expiry_wire, c.strike, c.right, c.multiplier_wire,
            c.primary_exchange, c.currency, c.local_symbol, c.trading_class, *values, realized, pos.account,
        )  # fmt: skip
        self._truth_sent(
            client, "portfolio", pos.account, c.con_id, position=values[0], market_price=values[1],
            market_value=values[2], average_cost=values[3], unrealized_pnl=values[4], realized_pnl=realized,
        )  # fmt: skip

    def _send_position(self, client: ClientConnection, pos: BookPosition) -> None:
        c = pos.contract
        avg = pos.average_cost if pos.qty else 0.0
        client.send(
            Out.POSITION_DATA, 3, pos.account, c.con_id, c.symbol, c.sec_type, c.expiry_wire, c.strike, c.right,
            c.multiplier_wire, c.exchange, c.currency, c.local_symbol, c.trading_class, pos.qty, avg,
        )  # fmt: skip
        self._truth_sent(client, "position", pos.account, c.con_id, position=pos.qty, average_cost=avg)

    def _pnl_single_values(self, pos: BookPosition) -> tuple[float, float, float, float, float]:
        mark = self._quote(pos.contract).price
        m = pos.contract.multiplier
        reset_mark = pos.reset_mark
        traded = sum(f.qty * f.price * m + f.commission for f in pos.fills_session)
        # IB's formula: PositionNow*PriceNow - PositionAtReset*PriceAtReset - NetAmountTraded (commissions included).
        daily = pos.qty * mark * m - pos.prev_close_qty * reset_mark * m - traded
        return pos.qty, daily, pos.unrealized(mark), pos.realized_total, pos.market_value(mark)

    def _send_pnl_single(self, client: ClientConnection, req_id: int, pos: BookPosition) -> None:
        qty, daily, unrealized, realized, value = self._pnl_single_values(pos)
        client.send(Out.PNL_SINGLE, req_id, qty, daily, unrealized, realized, value)
        self._truth_sent(
            client, "pnl_single", pos.account, pos.contract.con_id, req_id=req_id, position=qty, daily_pnl=daily,
            unrealized_pnl=unrealized, realized_pnl=realized, value=value,
        )  # fmt: skip

    def _send_pnl(self, client: ClientConnection, req_id: int, account: str) -> None:
        daily = unrealized = realized = 0.0
        for pos in self.book.values():
            if pos.account == account:
                _, d, u, r, _ = self._pnl_single_values(pos)
                daily, unrealized, realized = daily + d, unrealized + u, realized + r
        client.send(Out.PNL, req_id, daily, unrealized, realized)
        self._truth_sent(client, "pnl", account, None, req_id=req_id, daily_pnl=daily, unrealized_pnl=unrealized,
                         realized_pnl=realized)  # fmt: skip

    def _send_market_data(self, client: ClientConnection, req_id: int, target: ContractSpec | str) -> None:
        in_rth = self.market.calendar.in_rth(self._now)
        if isinstance(target, str):
            price = self.market.underlying_price(target, self._now)
            self._send_quote_ticks(client, req_id, price, 0.01, in_rth)
            return
        quote = self._quote(target)
        spread = max(0.01, round(quote.price * 0.01, 2))
        self._send_quote_ticks(client, req_id, quote.price, spread, in_rth)
        if not target.is_option:
            return
        counter = client.greeks_counter.get(req_id, 0) + 1
        client.greeks_counter[req_id] = counter
        every = self.scenario.nastiness.greeks_sentinel_every
        if every and counter % every == 0:
            iv, delta, opt, pv, gamma, vega, theta, und = -1.0, -2.0, -1.0, -1.0, -2.0, -2.0, -2.0, -1.0
        else:
            iv, delta, opt, pv = quote.implied_vol, quote.delta, quote.price, 0.0
            gamma, vega, theta, und = quote.gamma, quote.vega, quote.theta, quote.und_price
        if (client.version or 0) >= protocol.MIN_VERSION_PRICE_BASED_VOLATILITY:
            client.send(Out.TICK_OPTION_COMPUTATION, req_id, 13, 0, iv, delta, opt, pv, gamma, vega, theta, und)
        else:
            client.send(Out.TICK_OPTION_COMPUTATION, 6, req_id, 13, iv, delta, opt, pv, gamma, vega, theta, und)
        self._truth_sent(
            client, "greeks", "", target.con_id, req_id=req_id, tick_type=13, implied_vol=iv, delta=delta,
            opt_price=opt, pv_dividend=pv, gamma=gamma, vega=vega, theta=theta, und_price=und,
        )  # fmt: skip

    def _send_quote_ticks(self, client: ClientConnection, req_id: int, price: float, spread: float, rth: bool) -> None:
        if rth or not self.scenario.nastiness.after_hours_quotes:
            bid, ask = round(price - spread / 2, 4), round(price + spread / 2, 4)
            client.send(Out.TICK_PRICE, 6, req_id, 1, bid, 10, 0)
            client.send(Out.TICK_PRICE, 6, req_id, 2, ask, 10, 0)
        else:
            # after hours IB sends -1 bid/ask; the last/close stay at the stale close
            client.send(Out.TICK_PRICE, 6, req_id, 1, -1.0, 0, 0)
            client.send(Out.TICK_PRICE, 6, req_id, 2, -1.0, 0, 0)
        client.send(Out.TICK_PRICE, 6, req_id, 4, price, 1, 0)

    # ------------------------------------------------------------------ book changes
    def _position_changed(self, pos: BookPosition) -> None:
        for client in self._ready_clients():
            if client.positions_sub:
                self._send_position(client, pos)
            if client.account_sub == pos.account:
                self._send_portfolio(client, pos)
            for req_id, key in client.pnl_single_subs.items():
                if key == pos.key:
                    self._send_pnl_single(client, req_id, pos)

    def _trade(self, account: str, con_id: int, qty: float, price: float, commission: float) -> None:
        key = (account, con_id)
        pos = self.book.get(key)
        if pos is None:
            contract = self.scenario.contracts[con_id]
            pos = BookPosition(account, contract, 0.0, 0.0)
            pos.reset_mark = self._quote(contract).price
            pos.opened_this_session = True
            self.book[key] = pos
        elif pos.qty == 0 and pos.closed_at_session:
            pos.closed_at_session = False
        pos.apply_trade(qty, price, commission)
        self._position_changed(pos)

    def _expire(self, con_ids: list[int] | None, session_day: Any = None) -> None:
        for pos in list(self.book.values()):
            c = pos.contract
            if not c.is_option or pos.qty == 0 or c.expiry_at is None:
                continue
            if con_ids is not None and c.con_id not in con_ids:
                continue
            if con_ids is None:
                due = c.expiry_date is not None and session_day is not None and c.expiry_date <= session_day
                due = due or c.expiry_at <= self._now
                if not due:
                    continue
            spot = self.market.underlying_price(c.symbol, self._now)
            intrinsic = max(spot - c.strike, 0.0) if c.right == "C" else max(c.strike - spot, 0.0)
            intrinsic = round(intrinsic, 4)
            # worthless -> closed at 0; in the money -> closed at intrinsic (cash-settled view of exercise)
            self.market.mark_overrides[c.con_id] = intrinsic
            pos.apply_trade(-pos.qty, intrinsic, 0.0)
            self._position_changed(pos)

    # ------------------------------------------------------------------ sessions and EOD truth
    def _session_close(self, index: int, session: SessionTimes) -> None:
        if self.scenario.nastiness.auto_expire:
            self._expire(None, session.day)
        for client in self._ready_clients():
            if client.account_sub is not None:
                for pos in self.book.values():
                    if pos.account == client.account_sub and pos.qty:
                        self._send_portfolio(client, pos)
                client.stream_due("portfolio", self._now, 0, 0)
            for req_id, key in client.pnl_single_subs.items():
                if key in self.book:
                    self._send_pnl_single(client, req_id, self.book[key])
            for req_id, account in client.pnl_subs.items():
                self._send_pnl(client, req_id, account)
        for pos in self.book.values():
            if pos.contract.is_option:
                self._record_eod(session, pos)
        self.sessions_closed.append(session.day.isoformat())
        if self._eod_file is not None:
            self._eod_file.flush()

    def _record_eod(self, session: SessionTimes, pos: BookPosition) -> None:
        c = pos.contract
        quote = self._quote(c)
        mark = quote.price
        m = c.multiplier
        baseline = pos.prev_close_mark is None and pos.prev_close_qty != 0
        daily: float | None = None
        if not baseline:
            prev_mark = pos.prev_close_mark or 0.0
            position_mtm = pos.prev_close_qty * (mark - prev_mark) * m
            transaction_mtm = sum(f.qty * (mark - f.price) * m for f in pos.fills_session)
            daily = position_mtm + transaction_mtm - pos.commissions_session
        entry = {
            "session": session.day.isoformat(),
            "account": pos.account,
            "con_id": c.con_id,
            "symbol": c.symbol,
            "sec_type": c.sec_type,
            "expiry": c.expiry_date.isoformat() if c.expiry_date else None,
            "expiry_wire": c.expiry_wire,
            "strike": c.strike,
            "right": c.right,
            "multiplier": m,
            "currency": c.currency,
            "base_currency": self._accounts[pos.account].base_currency,
            "fx_rate": self._accounts[pos.account].fx_rate(c.currency),
            "position": pos.qty,
            "prev_position": pos.prev_close_qty,
            "prev_mark": pos.prev_close_mark,
            "mark": mark,
            "market_value": pos.market_value(mark) if pos.qty else 0.0,
            "average_cost": pos.average_cost if pos.qty else 0.0,
            "unrealized_pnl": pos.unrealized(mark),
            "realized_pnl": pos.realized_session or 0.0,
            "realized_pnl_sent": self._realized_wire(pos),
            "commissions": pos.commissions_session,
            "daily_pnl": daily,
            "baseline": baseline,
            "closed": pos.qty == 0,
            "und_price": quote.und_price,
            "delta": quote.delta,
            "gamma": quote.gamma,
            "vega": quote.vega,
            "theta": quote.theta,
            "implied_vol": quote.implied_vol,
        }
        self.truth["eod"].append(entry)
        if self._eod_file is not None:
            self._eod_file.write(json.dumps(entry) + "\n")

    def _session_cut(self, index: int, session: SessionTimes) -> None:
        """Daily reset at the EOD cut: the account window's realized PnL and the PnL reset reference roll over."""
        for key, pos in list(self.book.items()):
            if pos.qty == 0:
                del self.book[key]
                continue
            mark = self._quote(pos.contract).price
            pos.prev_close_mark = mark
            pos.reset_mark = mark
            pos.prev_close_qty = pos.qty
            pos.realized_session = None
            pos.commissions_session = 0.0
            pos.fills_session = []
            pos.traded_this_session = False
            pos.opened_this_session = False

    # ------------------------------------------------------------------ the driver
    def _apply_event(self, event: TimelineEvent) -> None:
        p = event.params
        kind = event.kind
        if kind == "trade":
            price = p["price"]
            if price is None:
                price = self._quote(self.scenario.contracts[p["con_id"]]).price
            self._trade(p["account"], p["con_id"], p["qty"], price, p["commission"])
        elif kind == "underlying":
            self.market.override_underlying(p["symbol"], self._now, p["price"])
        elif kind == "mark":
            if p["price"] is None:
                self.market.mark_overrides.pop(p["con_id"], None)
            else:
                self.market.mark_overrides[p["con_id"]] = p["price"]
        elif kind == "expire":
            self._expire(p["con_ids"])
        elif kind == "disconnect":
            self.disconnect_all()
        elif kind == "refuse":
            self.refuse_connections(p["seconds"])
        elif kind == "stall":
            self.stall_output(p["seconds"])
        elif kind == "error":
            self.send_error(p["code"], p["message"], p["req_id"])
        elif kind == "malformed":
            self.send_malformed_frame()
        elif kind == "truncated":
            self.send_truncated_message()

    def _next_item(self, until: datetime) -> tuple[datetime, Callable[[], None]] | None:
        """The earliest pending event / close / cut at or before ``until``."""
        candidates: list[tuple[datetime, int, Callable[[], None]]] = []
        events = self.scenario.events
        if self._event_index < len(events) and events[self._event_index].at <= until:
            event = events[self._event_index]

            def run_event() -> None:
                self._event_index += 1
                self._apply_event(event)

            candidates.append((event.at, 1, run_event))
        cal = self.market.calendar
        i = self._session_index
        while i < len(cal.sessions) and i in self._cut_done:
            i += 1
        self._session_index = i
        if i < len(cal.sessions):
            s = cal.sessions[i]
            if i not in self._close_done and s.close <= until:

                def run_close() -> None:
                    self._close_done.add(i)
                    self._session_close(i, s)

                candidates.append((s.close, 0, run_close))
            elif i in self._close_done and s.cut <= until:

                def run_cut() -> None:
                    self._cut_done.add(i)
                    self._session_cut(i, s)

                candidates.append((s.cut, 2, run_cut))
        if not candidates:
            return None
        at, _, fn = min(candidates, key=lambda c: (c[0], c[1]))
        return at, fn

    def _advance(self, until: datetime) -> None:
        while True:
            item = self._next_item(until)
            if item is None:
                break
            at, fn = item
            self._now = max(self._now, at)
            fn()
        self._now = max(self._now, until)
        if self._event_index >= len(self.scenario.events):
            self.timeline_done.set()

    def _periodic(self) -> None:
        spec = self.scenario.clock
        now = self._now
        min_real = spec.min_real_interval_s
        for client in self._ready_clients():
            if client.account_sub is not None and client.stream_due(
                "portfolio", now, spec.portfolio_cadence_s, min_real
            ):
                self._send_account_values(client, client.account_sub)
                for pos in self.book.values():
                    if pos.account == client.account_sub and pos.qty:
                        self._send_portfolio(client, pos)
                client.send(Out.ACCT_UPDATE_TIME, 1, now.astimezone(protocol_zone()).strftime("%H:%M"))
            if (client.pnl_single_subs or client.pnl_subs) and client.stream_due(
                "pnl", now, spec.pnl_cadence_s, min_real
            ):
                for req_id, key in client.pnl_single_subs.items():
                    held = self.book.get(key)
                    if held is not None and held.qty:
                        self._send_pnl_single(client, req_id, held)
                for req_id, account in client.pnl_subs.items():
                    self._send_pnl(client, req_id, account)
            if client.mkt_subs and client.stream_due("greeks", now, spec.greeks_cadence_s, min_real):
                for req_id, target in list(client.mkt_subs.items()):
                    self._send_market_data(client, req_id, target)

    @property
    def skip_nights(self) -> bool:
        """Explicit scenario setting, else only while the clock runs fast (not once it went live at speed 1)."""
        if self._skip_nights_setting is not None:
            return bool(self._skip_nights_setting)
        return self.clock.speed > SKIP_NIGHTS_ABOVE_SPEED

    def _maybe_skip_night(self) -> None:
        if not self.skip_nights:
            return
        cal = self.market.calendar
        now = self._now
        i = cal.session_index_at(now)
        if i < 0 or i not in self._cut_done:
            return
        next_open = cal.next_open_after(now)
        if next_open is None:
            return
        target = next_open - PRE_OPEN
        events = self.scenario.events
        if self._event_index < len(events):
            target = min(target, events[self._event_index].at)
        if target > now:
            self.clock.jump_to(target)

    async def _drive(self) -> None:
        tick = self.scenario.clock.tick_real_s
        while True:
            try:
                self._advance(self.clock.now())
                self._periodic()
                self._maybe_skip_night()
                self._stepped.set()
                if self._sent_file is not None:
                    self._sent_file.flush()
            except Exception:
                log.exception("gateway simulator step failed")
                raise
            await asyncio.sleep(tick)

    # ------------------------------------------------------------------ blast mode (benchmarks)
    async def blast_async(self, messages: int, batch: int = 256) -> int:
        """Send ``messages`` portfolio / PnL-single updates round-robin over the book as fast as sockets accept.

        Portfolio rows go to each client subscribed to the position's account, PnL-single to each matching
        subscription. Values move (the mark steps by 0.01 per round) so every message differs. Frames are written
        in batches of ``batch`` positions (one socket write each), with flow control. Not recorded in the ground
        truth (benchmark traffic). Returns the number of messages written.
        """
        positions = [p for p in self.book.values() if p.qty]
        base_marks = [self._quote(p.contract).price for p in positions]
        # the contract part of each portfolio row never changes: encode it once
        prefixes = [
            "".join(
                protocol.fmt(f) + "\0"
                for f in (Out.PORTFOLIO_VALUE, 8, c.con_id, c.symbol, c.sec_type, c.expiry_wire, c.strike, c.right,
                          c.multiplier_wire, c.primary_exchange, c.currency, c.local_symbol, c.trading_class)
            )
            for c in (p.contract for p in positions)
        ]  # fmt: skip
        pack = protocol.LENGTH.pack
        written = 0
        rnd = 0
        while written < messages:
            rnd += 1
            clients = self._ready_clients()
            if not clients or not positions:
                return written
            # index the subscriptions once per round: (account, con_id) -> PnL-single req ids, per client
            routes: list[tuple[ClientConnection, dict[tuple[str, int], list[int]], list[bytes]]] = []
            for client in clients:
                by_key: dict[tuple[str, int], list[int]] = {}
                for req_id, key in client.pnl_single_subs.items():
                    by_key.setdefault(key, []).append(req_id)
                routes.append((client, by_key, []))
            before = written
            step = 0.01 * (rnd % 100)
            for index, (pos, base, prefix) in enumerate(zip(positions, base_marks, prefixes, strict=True)):
                mark = round(base + step, 4)
                mv = pos.qty * mark * pos.contract.multiplier
                unrealized = mv - pos.average_cost * pos.qty
                for client, by_key, frames in routes:
                    if client.account_sub == pos.account:
                        payload = (
                            f"{prefix}{pos.qty!r}\0{mark!r}\0{mv!r}\0{pos.average_cost!r}\0{unrealized!r}\0"
                            f"{self._realized_wire(pos)!r}\0{pos.account}\0"
                        ).encode()
                        frames.append(pack(len(payload)) + payload)
                    for req_id in by_key.get(pos.key, ()):
                        payload = (
                            f"95\0{req_id}\0{pos.qty!r}\0{unrealized!r}\0{unrealized!r}\0"
                            f"{pos.realized_total!r}\0{mv!r}\0"
                        ).encode()
                        frames.append(pack(len(payload)) + payload)
                if (index + 1) % batch == 0 or index == len(positions) - 1 or written >= messages:
                    for client, _, frames in routes:
                        if frames:
                            written += len(frames)
                            if not client.can_write.is_set():
                                await client.can_write.wait()
                            client.write_raw(b"".join(frames), count=len(frames))
                            frames.clear()
                    if written >= messages:
                        break
            if written == before:
                return written  # nobody subscribed to anything we hold
            await asyncio.sleep(0)
        return written

    def blast(self, messages: int, timeout: float | None = None) -> int:
        """Thread-safe wrapper of :meth:`blast_async` (call from outside the simulator's loop)."""
        return self._run_sync(self.blast_async(messages), timeout)


def _shift_scenario(scenario: Scenario, start: datetime) -> Scenario:
    """Move a parsed scenario to a new clock start, shifting its timeline by the same amount."""
    if start.tzinfo is None:
        raise ValueError("start_time must carry a time zone")
    delta = start.astimezone(UTC) - scenario.clock.start
    events = tuple(dataclasses.replace(e, at=e.at + delta) for e in scenario.events)
    clock = dataclasses.replace(scenario.clock, start=start.astimezone(UTC))
    return dataclasses.replace(scenario, clock=clock, events=events)
