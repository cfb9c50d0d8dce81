"""The IB Gateway simulator: an asyncio TCP server speaking the TWS socket protocol to unmodified clients.

``GatewaySimulator`` wires the parts together and is the public, thread-safe face of them:

- ``transport``: the listening socket and the registry of clients; ``connection``: one client session;
- ``handlers``: request dispatch; ``wire``: the one encoder of every outgoing message;
- ``state``: market and book; ``publisher``: who is sent what; ``timeline``: the driver of simulated time;
- ``truth``: request record and ground truth; ``faults``: fault injection; ``blast``: benchmark traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from v6_assets.gateway_sim import blast
from v6_assets.gateway_sim.clock import SimClock
from v6_assets.gateway_sim.connection import ClientConnection
from v6_assets.gateway_sim.faults import FaultInjector
from v6_assets.gateway_sim.handlers import RequestHandlers
from v6_assets.gateway_sim.publisher import Publisher
from v6_assets.gateway_sim.scenario import load_scenario
from v6_assets.gateway_sim.scenario_model import Scenario
from v6_assets.gateway_sim.state import MarketState
from v6_assets.gateway_sim.timeline import SKIP_NIGHTS_ABOVE_SPEED, TimelineDriver
from v6_assets.gateway_sim.transport import ClientRegistry, Listener
from v6_assets.gateway_sim.truth import TruthRecorder, write_summary

T = TypeVar("T")


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
        lockstep: bool = False,
    ) -> None:
        if isinstance(scenario, Scenario):
            if start_time is not None:
                scenario = _shift_scenario(scenario, start_time)
        else:
            scenario = load_scenario(scenario, start_time=start_time)
        # Lock-step (``lockstep.Lockstep``): what is sent depends on simulated time only (no real-time floor), and
        # nights are skipped by the stepper as steps of their own, never inside a step after its messages went out.
        self.lockstep = lockstep
        self.lockstep_skips_nights = lockstep and (
            scenario.clock.skip_nights
            if scenario.clock.skip_nights is not None
            else (scenario.clock.speed if speed is None else speed) > SKIP_NIGHTS_ABOVE_SPEED
        )
        if lockstep:
            clock = dataclasses.replace(scenario.clock, min_real_interval_s=0.0, skip_nights=False)
            scenario = dataclasses.replace(scenario, clock=clock)
        self.scenario = scenario
        self.host = host
        self._requested_port = port
        self._prepared_blast: list[blast.PreparedRoute] = []  # built by prepare_blast, sent by send_prepared_blast
        self.seed = scenario.seed if seed is None else seed
        self.speed = scenario.clock.speed if speed is None else speed
        if not self.speed > 0:
            raise ValueError(f"speed must be > 0, got {self.speed!r}")
        self.record_path = record_path
        self.truth_dir = truth_dir
        self.keep_sent = keep_sent
        self.clock = SimClock(scenario.clock.start, self.speed)

        self.state = MarketState(scenario, self.seed)
        self.recorder = TruthRecorder(self.state, keep_sent=keep_sent, record_path=record_path, truth_dir=truth_dir)
        self.registry = ClientRegistry(scenario.max_clients, scenario.market_data_lines)
        self.listener = Listener(host, lambda: ClientConnection(self))
        self.publisher = Publisher(self.state, self.registry, self.recorder)
        self.handlers = RequestHandlers(self.state, self.registry, self.recorder, self.publisher, self.clock)
        self.faults = FaultInjector(self.registry, self.listener)
        self.timeline = TimelineDriver(self.state, self.clock, self.publisher, self.recorder, self.faults)
        self.truth = self.recorder.truth
        self.timeline_done = self.timeline.timeline_done
        self.sessions_closed = self.timeline.sessions_closed

        self._loop: asyncio.AbstractEventLoop | None = None
        self._driver: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def port(self) -> int:
        port = self.listener.port
        if port is None:
            raise RuntimeError("simulator not started")
        return port

    @property
    def skip_nights(self) -> bool:
        return self.timeline.skip_nights

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.recorder.open_files()
        await self.listener.open(self._requested_port)
        if not self.lockstep:  # a lock-step simulator's clock stands until ``lockstep.Lockstep`` moves it
            self.start_driver()

    def start_driver(self) -> None:
        """Start the clock and the real-time driver (on the simulator's loop; once)."""
        if self._driver is None:
            self.clock.start()
            self._driver = asyncio.create_task(self.timeline.run(), name="gateway-sim-driver")

    async def stop(self) -> None:
        if self._driver is not None:
            self._driver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._driver
            self._driver = None
        await self.listener.close()
        for client in self.registry.all():
            client.close()
        await asyncio.sleep(0)
        self.recorder.close_files()
        if self.truth_dir is not None:
            write_summary(self.truth_dir, self._summary())

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

    def _call(self, fn: Callable[[], object]) -> None:
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

    # ------------------------------------------------------------------ ConnectionHost (called on the loop)
    def server_time(self) -> datetime:
        return self.clock.now()

    def output_held(self) -> bool:
        return self.faults.output_held()

    def dispatch(self, client: ClientConnection, fields: list[str]) -> None:
        self.handlers.dispatch(client, fields)

    def record_request(self, client: ClientConnection, msg_id: int | None, fields: list[str]) -> None:
        self.recorder.record_request(client.client_id, msg_id, fields)

    def client_closed(self, client: ClientConnection) -> None:
        self.registry.remove(client)

    # ------------------------------------------------------------------ faults (thread-safe)
    def disconnect_all(self) -> None:
        self._call(self.faults.disconnect_all)

    def refuse_connections(self, seconds: float) -> None:
        """Stop listening for ``seconds`` (connects get ECONNREFUSED), then listen again on the same port."""
        self._call(lambda: self.faults.refuse_connections(seconds))

    def stall_output(self, seconds: float) -> None:
        """Hold every outgoing message for ``seconds`` of real time, then deliver them all at once."""
        self._call(lambda: self.faults.stall_output(seconds))

    def send_error(self, code: int, message: str, req_id: int = -1) -> None:
        self._call(lambda: self.faults.send_error(code, message, req_id))

    def nightly_reset(self, data_lost: bool) -> None:
        """IB's nightly reset at once: 1100 and the farms broken, then 1101 (subscriptions forgotten) or 1102."""

        def reset() -> None:
            self.faults.reset_start()
            self.faults.reset_end(data_lost)

        self._call(reset)

    def send_malformed_frame(self) -> None:
        """A frame whose message id is not a number (clients must log it and carry on)."""
        self._call(self.faults.send_malformed_frame)

    def send_truncated_message(self) -> None:
        """A PORTFOLIO_VALUE with its field list cut short after the contract (clients must drop it)."""
        self._call(self.faults.send_truncated_message)

    # ------------------------------------------------------------------ observation (thread-safe)
    def active_client_ids(self) -> list[int]:
        return self.registry.active_client_ids()

    def max_concurrent_connections(self, client_id: int) -> int:
        """Most connections that claimed ``client_id`` at once (a rejected duplicate counts while it is open)."""
        return self.registry.max_concurrent_connections(client_id)

    def order_violations(self) -> int:
        return self.recorder.order_violations()

    def requests(self) -> list[dict[str, Any]]:
        return self.recorder.requests()

    def lines_in_use(self) -> int:
        return self.registry.lines_in_use()

    def wait_sim_time(self, target: datetime | timedelta, timeout: float = 30.0) -> bool:
        """Block (from another thread) until simulated time reaches ``target`` (a datetime, or a delta from now)."""
        if isinstance(target, timedelta):
            target = self.clock.now() + target
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.state.now >= target:
                return True
            time.sleep(0.01)
        return self.state.now >= target

    async def _until(self, predicate: Callable[[], bool]) -> None:
        """Wait in the simulator's loop until ``predicate`` holds after a driver step (wrap in asyncio.timeout)."""
        stepped = self.timeline.stepped
        while not predicate():
            stepped.clear()
            await stepped.wait()

    async def wait_sim_time_async(self, target: datetime | timedelta) -> None:
        if isinstance(target, timedelta):
            target = self.clock.now() + target
        final = target
        await self._until(lambda: self.state.now >= final)

    async def wait_timeline_done(self) -> None:
        await self._until(self.timeline_done.is_set)

    async def wait_sessions_closed(self, count: int) -> None:
        await self._until(lambda: len(self.sessions_closed) >= count)

    # ------------------------------------------------------------------ ground truth
    def write_truth(self, directory: Path) -> None:
        """Write ``sent.jsonl``, ``eod.jsonl`` and ``summary.json`` from memory to ``directory``."""
        self.recorder.write(directory, self._summary())

    def _summary(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario.name,
            "seed": self.seed,
            "start": self.scenario.clock.start.isoformat(),
            "speed": self.speed,
            "sessions_closed": self.sessions_closed,
            "order_violations": self.order_violations(),
            "requests": self.recorder.request_count(),
        }

    # ------------------------------------------------------------------ blast mode (benchmarks)
    async def blast_async(self, messages: int, batch: int = 256) -> int:
        """Send ``messages`` portfolio / PnL-single updates as fast as sockets accept (see ``blast.blast``)."""
        return await blast.blast(self.state, self.registry, messages, batch)

    def blast(self, messages: int, timeout: float | None = None) -> int:
        """Thread-safe wrapper of :meth:`blast_async` (call from outside the simulator's loop)."""
        return self._run_sync(self.blast_async(messages), timeout)

    def prepare_blast(self, messages: int, mix: bool = False, timeout: float | None = None) -> int:
        """Build a blast's frames now (``mix``: with fills, commissions and account values), send them with
        :meth:`send_prepared_blast`: the sending then only writes bytes from memory. Returns the messages built."""

        async def build() -> int:
            self._prepared_blast = blast.prepare(self.state, self.registry, messages, mix=mix)
            return sum(count for route in self._prepared_blast for _, count in route.chunks)

        return self._run_sync(build(), timeout)

    def send_prepared_blast(self, timeout: float | None = None) -> int:
        """Write the frames :meth:`prepare_blast` built as fast as the sockets accept; returns the messages written."""
        routes, self._prepared_blast = self._prepared_blast, []
        return self._run_sync(blast.send(routes), timeout)


def _shift_scenario(scenario: Scenario, start: datetime) -> Scenario:
    """Move a parsed scenario to a new clock start, shifting its timeline by the same amount."""
    if start.tzinfo is None:
        raise ValueError("start_time must carry a time zone")
    delta = start.astimezone(UTC) - scenario.clock.start
    events = tuple(dataclasses.replace(e, at=e.at + delta) for e in scenario.events)
    clock = dataclasses.replace(scenario.clock, start=start.astimezone(UTC))
    return dataclasses.replace(scenario, clock=clock, events=events)
