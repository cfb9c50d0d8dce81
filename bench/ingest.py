"""Ingest throughput: updates/s from socket to spool while the simulator blasts portfolio + PnL-single updates with
live fills, commission reports and account values mixed in, next to the ceiling ib_async itself sets and a bare
ib_async client counting the same events over the socket, in the same run.

    .venv/bin/python -m bench.ingest [--messages N] [--positions 2000] [--rounds 3] [--no-mix] [--quick] [--json OUT]

The simulator runs in a child process (so it does not share our GIL) over a synthetic book of ``--positions``
option positions (2,000 by default), its clock slowed down so that no periodic traffic mixes with the blast.
Each phase subscribes the same streams (PnL-single per open option position, portfolio for one account, account
values of every account; live fills come unasked). The simulator BUILDS the blast's N frames first (not timed),
then writes them from memory as fast as the socket takes them, so the load generator's encoding speed bounds
neither client. The rate is N_received / (time of the last arrival - send start). "Arrival" is an event counted by
the bare client, and a row committed to the SQLite spool (read from the spool file by another connection) for the
streamer (every frame of a blast becomes one row: prices move every round, every fill and value is new).

What each figure bounds:
- ceiling (peer): the streamer's own ib_async client decodes the very bytes of the blast it just received again,
  replayed from memory into ib_async's socket-data handler in its loop thread, with our handlers detached and a bare
  counter attached (framing, decoding, wrapper state, events; no socket, no simulator sending, none of our work).
  No consumer of these ib_async events can go faster on this core: ours is measured against it (>= 0.8x).
- bare ib_async over the socket: a separate bare client with the streamer's subscriptions counting the same events
  of the same blast (portfolio, PnL-single and account-value events; fills and commissions where ib_async hands them
  to its wrapper, as it emits no event for fills it did not place) -- the whole-book issue's peer (>= 0.9x).
- The simulator runs pinned to its own core (the last usable one), the client to the others, so the load generator
  does not take turns with the client on one core; the machine is shared, so other load remains.
- streamer socket->spool: ours end to end (decode, conversion, the handler queue, batched spool commits).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import statistics
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from ib_async import IB

from bench.common import BenchResult, Record, bench_argparser, finish, ratio_of
from v6_assets.ib import IBPositionStreamer, Spool, StreamerSettings
from v6_assets.ib.pacing import ThrottleCounter

OPTION_TYPES = ("OPT", "FOP")
IDLE_END_S = 1.0
FIRST_ARRIVAL_S = 30.0
DEFAULT_POSITIONS = 2_000
TARGET_RATE = 20_000
TARGET_RATIO = 0.8  # of the in-process decode ceiling
TARGET_BARE_RATIO = 0.9  # of bare ib_async counting the same events over the socket, in the same run
# Simulated seconds per real second: periodic PnL/portfolio/greeks cadences then fire about never during a run, so
# only blast messages are counted (blast mode does not depend on the clock).
QUIET_SPEED = 0.001


def pin_cores() -> dict[str, list[int]]:
    """Split the usable cores: the last one for the simulator (the load generator), the others for the client, so
    the two do not take turns on one core (the machine is shared: other processes still compete for both)."""
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return {"client": cores, "simulator": cores}
    return {"client": cores[:-1], "simulator": cores[-1:]}


def _sim_process(conn: Connection, positions: int, cores: list[int]) -> None:
    from v6_assets.gateway_sim import GatewaySimulator, synthetic_scenario

    os.sched_setaffinity(0, cores)

    scenario = synthetic_scenario(positions, speed=QUIET_SPEED)
    with GatewaySimulator(scenario, port=0, speed=QUIET_SPEED, keep_sent=False).running() as sim:
        conn.send(sim.port)
        while True:
            command, arg = conn.recv()
            if command == "blast":
                conn.send(sim.blast(int(arg), timeout=600))
            elif command == "prepare":
                messages, mix = arg
                conn.send(sim.prepare_blast(int(messages), mix=bool(mix), timeout=600))
            elif command == "send":
                conn.send(sim.send_prepared_blast(timeout=600))
            elif command == "violations":
                conn.send(sim.order_violations())
            else:
                break


class SimChild:
    def __init__(self, positions: int = DEFAULT_POSITIONS, cores: list[int] | None = None) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        sim_cores = cores if cores is not None else sorted(os.sched_getaffinity(0))
        self.proc = ctx.Process(target=_sim_process, args=(child, positions, sim_cores), daemon=True)
        self.proc.start()
        self.port: int = self.conn.recv()

    def blast_async(self, messages: int) -> threading.Thread:
        result: dict[str, int] = {}

        def run() -> None:
            self.conn.send(("blast", messages))
            result["written"] = self.conn.recv()

        thread = threading.Thread(target=run, daemon=True)
        thread.result = result  # type: ignore[attr-defined]
        thread.start()
        return thread

    def prepare(self, messages: int, mix: bool) -> int:
        """Build a blast's frames in the simulator (not timed); returns the messages built."""
        self.conn.send(("prepare", (messages, mix)))
        return int(self.conn.recv())

    def send_prepared_async(self) -> threading.Thread:
        """Write the prepared frames from memory as fast as the sockets take them (the timed part)."""
        result: dict[str, int] = {}

        def run() -> None:
            self.conn.send(("send", 0))
            result["written"] = self.conn.recv()

        thread = threading.Thread(target=run, daemon=True)
        thread.result = result  # type: ignore[attr-defined]
        thread.start()
        return thread

    def violations(self) -> int:
        self.conn.send(("violations", 0))
        return int(self.conn.recv())

    def close(self) -> None:
        self.conn.send(("stop", 0))
        self.proc.join(10)


def _measure(count: Any, start_count: int, started: float, expected: int, poll: Any) -> tuple[int, float]:
    """Poll ``count()`` until it reaches start+expected or stops moving for IDLE_END_S; (received, seconds)."""
    last_value, last_change = start_count, started
    while True:
        poll()
        value = count()
        now = time.perf_counter()
        if value != last_value:
            last_value, last_change = value, now
        idle = now - last_change
        # before the first arrival wait longer (a loaded machine can take seconds to deliver the first one)
        if value - start_count >= expected or idle > (IDLE_END_S if value != start_count else FIRST_ARRIVAL_S):
            return value - start_count, max(last_change - started, 1e-9)


# The wrapper methods ib_async calls for fills and commissions: it emits no event for fills of orders it did not place
# (a read-only observer's case), so a bare counter counts these calls, as the streamer's execution tracker observes
# them (``v6_assets.ib.executions``).
_FILL_METHODS = ("execDetails", "commissionReport")


def _settle(throttling: Any, sleep: Any, timeout_s: float = 180.0) -> None:
    """Until the client's paced requests (subscriptions) are all sent, then one more second for their answers."""
    deadline = time.monotonic() + timeout_s
    sleep(0.5)
    while throttling() and time.monotonic() < deadline:
        sleep(0.1)
    sleep(1.0)


def attach_counter(ib: IB, count: Any) -> Any:
    """Count every event the streamer consumes in a blast (portfolio, PnL-single, account values, fills,
    commissions) with ``count``; returns a function that detaches it."""
    events = (ib.updatePortfolioEvent, ib.pnlSingleEvent, ib.accountValueEvent)
    for event in events:
        event += count
    wrapper = ib.wrapper
    before = {name: wrapper.__dict__.get(name) for name in _FILL_METHODS}
    for name in _FILL_METHODS:
        inner = getattr(wrapper, name)

        def counted(*args: Any, _inner: Any = inner) -> None:
            count()
            _inner(*args)

        setattr(wrapper, name, counted)

    def detach() -> None:
        for event in events:
            event -= count
        for name, previous in before.items():
            if previous is None:
                delattr(wrapper, name)
            else:
                setattr(wrapper, name, previous)

    return detach


def bare_client(sim: SimChild, messages: int, mix: bool) -> dict[str, float]:
    """A bare ib_async client counting the events of a blast over the socket: the streamer's subscriptions (one
    account's portfolio, PnL-single per option position, account values of every account, live fills)."""
    ib = IB()
    received = [0]

    def on_event(*_: Any) -> None:
        received[0] += 1

    ib.connect("127.0.0.1", sim.port, clientId=71, readonly=True, timeout=10)
    try:
        accounts = ib.managedAccounts()
        ib.reqAccountUpdates(accounts[0])
        for account in accounts:
            ib.client.reqAccountUpdatesMulti(ib.client.getReqId(), account, "", False)
        for pos in ib.positions():
            if pos.contract.secType in OPTION_TYPES:
                ib.reqPnLSingle(pos.account, "", pos.contract.conId)
        attach_counter(ib, on_event)
        throttled = ThrottleCounter()
        throttled.attach(ib)
        _settle(lambda: throttled.throttling, ib.sleep)
        built = sim.prepare(messages, mix)
        ib.sleep(0.2)
        start_count = received[0]
        started, cpu_started = time.perf_counter(), time.thread_time()
        sender = sim.send_prepared_async()
        got, seconds = _measure(lambda: received[0], start_count, started, built, lambda: ib.sleep(0.005))
        cpu_seconds = time.thread_time() - cpu_started
        sender.join(60)
    finally:
        ib.disconnect()
    return {
        "messages_sent": sender.result.get("written", 0),  # type: ignore[attr-defined]
        "received": got,
        "seconds": seconds,
        "rate": got / seconds,
        "cpu_seconds": cpu_seconds,
        "cpu_rate": got / cpu_seconds if cpu_seconds > 0 else 0.0,
    }


async def _decode_alone(ib: IB, chunks: list[bytes]) -> dict[str, float]:
    """In the streamer's loop thread: its ib_async client decodes ``chunks`` (the bytes of the blast it just got)
    again with OUR handlers detached and a bare counter attached: framing, decoding, ib_async's wrapper state and
    events, exactly as over the socket, without the socket and without our work. Handlers restored after."""
    events = [0]

    def count(*_: Any) -> None:
        events[0] += 1

    # every listener of the events we consume (ours and our health tracker's) and our fill hooks, set aside
    consumed = (ib.updatePortfolioEvent, ib.pnlSingleEvent, ib.accountValueEvent, ib.positionEvent,
                ib.pendingTickersEvent)  # fmt: skip
    saved_slots = [event._slots.slots for event in consumed]
    for event in consumed:
        event._slots.slots = []
    wrapper = ib.wrapper
    # our hooks on the wrapper (portfolio rows, fills, commissions): ib_async's own methods run meanwhile
    hooked = [name for name in wrapper.__dict__ if callable(getattr(type(wrapper), name, None))]
    saved_hooks = {name: wrapper.__dict__.pop(name) for name in hooked}
    detach = attach_counter(ib, count)
    feed = ib.client._onSocketHasData  # ib_async's handler of conn.hasData (not patched, only called)
    try:
        started, cpu_started = time.perf_counter(), time.thread_time()
        for chunk in chunks:
            feed(chunk)
        seconds = time.perf_counter() - started
        cpu_seconds = time.thread_time() - cpu_started
    finally:
        detach()
        for event, slots in zip(consumed, saved_slots, strict=True):
            event._slots.slots = slots
        for name, hook in saved_hooks.items():
            setattr(wrapper, name, hook)
    return {
        "ceiling_bytes": float(sum(map(len, chunks))),
        "ceiling_reads": float(len(chunks)),
        "ceiling_events": float(events[0]),
        "ceiling_seconds": seconds,
        "ceiling_rate": events[0] / seconds if seconds > 0 else 0.0,
        "ceiling_cpu_seconds": cpu_seconds,
        "ceiling_cpu_rate": events[0] / cpu_seconds if cpu_seconds > 0 else 0.0,
    }


def _last_received(frames: Any) -> Any:
    """The latest ``received_at`` over every kind of row a blast writes."""
    stamps = [f["received_at"].max() for f in (frames.positions, frames.executions, frames.account_values)]
    found = [t for t in stamps if t is not None]
    return max(found) if found else None


def streamer_to_spool(sim: SimChild, messages: int, home: Path, mix: bool) -> dict[str, float]:
    settings = StreamerSettings(port=sim.port, client_id=61, home=home, handler_queue_size=100_000)
    streamer = IBPositionStreamer()
    streamer.ensure_started(settings)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status = streamer.status()
            if (
                status.connection.connected
                and status.subscriptions.pnl_subscriptions > 0
                and status.subscriptions.portfolio_account
            ):
                break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"streamer did not get ready: {streamer.status().describe()}")
        run = streamer._run  # bench only: the live connection's IB object
        assert run is not None and run._session is not None
        _settle(lambda: run.throttle.throttling, time.sleep)
        ib, loop = run._session.ib, streamer._loop
        assert loop is not None
        built = sim.prepare(messages, mix)
        recorded: list[bytes] = []  # the raw bytes of the blast, as the socket delivered them
        asyncio.run_coroutine_threadsafe(_connect(ib.client.conn.hasData, recorded.append), loop).result(120)
        with Spool(settings.spool_path) as spool:
            start_offset = spool.last_offset()
            cpu_started = asyncio.run_coroutine_threadsafe(_thread_cpu(), loop).result(120)
            started_wall = time.time()
            started = time.perf_counter()
            sender = sim.send_prepared_async()
            # Coarse polling only to find the end (fine polling would steal the GIL from the streamer thread);
            # the end time is the received_at stamp of the last row, taken by the streamer as it accepted it.
            got, _ = _measure(spool.last_offset, start_offset, started, built, lambda: time.sleep(0.1))
            cpu_seconds = asyncio.run_coroutine_threadsafe(_thread_cpu(), loop).result(120) - cpu_started
            frames = spool.read_frames(start_offset, built + 10_000)
            last_received = _last_received(frames)
            seconds = last_received.timestamp() - started_wall if last_received is not None else float("inf")
        sender.join(60)
        asyncio.run_coroutine_threadsafe(_disconnect(ib.client.conn.hasData, recorded.append), loop).result(120)
        status = streamer.status()
        ceiling = asyncio.run_coroutine_threadsafe(_decode_alone(ib, recorded), loop).result(300)
    finally:
        streamer.stop()
    return {
        "messages_sent": sender.result.get("written", 0),  # type: ignore[attr-defined]
        "received": got,
        "positions": frames.positions.height,
        "executions": frames.executions.height,
        "account_values": frames.account_values.height,
        "seconds": seconds,
        "rate": got / seconds,
        "cpu_seconds": cpu_seconds,
        "cpu_rate": got / cpu_seconds if cpu_seconds > 0 else 0.0,
        "malformed": status.counters.malformed_messages,
        **ceiling,
    }


async def _thread_cpu() -> float:
    """CPU seconds of the calling (loop) thread so far: the work it did, whatever else the machine ran."""
    return time.thread_time()


async def _connect(event: Any, handler: Any) -> None:
    event += handler


async def _disconnect(event: Any, handler: Any) -> None:
    event -= handler


def run(
    quick: bool = False,
    messages: int = 100_000,
    rounds: int = 3,
    positions: int = DEFAULT_POSITIONS,
    mix: bool = True,
) -> BenchResult:
    """Alternating bare / streamer rounds against one simulator; medians of the rates."""
    if quick:
        messages, rounds = min(messages, 20_000), min(rounds, 2)
    cores = pin_cores()
    sim = SimChild(positions, cores["simulator"])
    os.sched_setaffinity(0, cores["client"])  # after the spawn: the child chose its own core
    bare_runs: list[dict[str, float]] = []
    streamer_runs: list[dict[str, float]] = []
    load_before = list(os.getloadavg())
    try:
        for _ in range(rounds):
            bare_runs.append(bare_client(sim, messages, mix))
            with tempfile.TemporaryDirectory(prefix="v6-bench-ingest-") as home:
                streamer_runs.append(streamer_to_spool(sim, messages, Path(home), mix))
        violations = sim.violations()
    finally:
        sim.close()
    # A round whose streamer lost its connection mid-way (a loaded machine: the subscriptions did not complete) is
    # kept in the details but not in the medians: it measured a reconnect, not the path.
    complete = [r for r in streamer_runs if r["ceiling_events"] > 0 and r["received"] >= 0.9 * r["messages_sent"]]
    streamer_runs_used = complete or streamer_runs
    bare_rate = statistics.median(r["rate"] for r in bare_runs)
    ceiling_rate = statistics.median(r["ceiling_rate"] for r in streamer_runs_used)
    streamer_rate = statistics.median(r["rate"] for r in streamer_runs_used)
    ratio = ratio_of(streamer_rate, ceiling_rate)
    bare_ratio = ratio_of(streamer_rate, bare_rate)
    result = BenchResult("ingest")
    mixed = " with fills, commissions and account values" if mix else ""
    name = f"ingest socket->spool, {positions:,} positions{mixed}"
    result.add(
        Record(
            name=name,
            value=streamer_rate,
            unit="updates/s",
            peer="ib_async in-process decode of the same bytes (ceiling)",
            peer_value=ceiling_rate,
            ratio=ratio,
            target=f">= {TARGET_RATE:,}/s and ratio >= {TARGET_RATIO}",
            met=streamer_rate >= TARGET_RATE and ratio is not None and ratio >= TARGET_RATIO,
        )
    )
    result.add(
        Record(
            name=name,
            value=streamer_rate,
            unit="updates/s",
            peer="bare ib_async counting the same events over the socket",
            peer_value=bare_rate,
            ratio=bare_ratio,
            target=f"ratio >= {TARGET_BARE_RATIO}",
            met=bare_ratio is not None and bare_ratio >= TARGET_BARE_RATIO,
        )
    )
    # The same, per CPU-second of the client's thread (its own work, whatever else the shared machine ran meanwhile).
    streamer_cpu = statistics.median(r["cpu_rate"] for r in streamer_runs_used)
    ceiling_cpu = statistics.median(r["ceiling_cpu_rate"] for r in streamer_runs_used)
    bare_cpu = statistics.median(r["cpu_rate"] for r in bare_runs)
    for peer, peer_cpu in (
        ("ib_async in-process decode of the same bytes (ceiling)", ceiling_cpu),
        ("bare ib_async counting the same events over the socket", bare_cpu),
    ):
        result.add(
            Record(
                name=f"{name}, per CPU-second of the client thread",
                value=streamer_cpu,
                unit="updates/CPU-s",
                peer=peer,
                peer_value=peer_cpu,
                ratio=ratio_of(streamer_cpu, peer_cpu),
            )
        )
    result.details = {
        "messages": messages,
        "mix": mix,
        "rounds": rounds,
        "positions": positions,
        "cores": cores,
        "load_average_before": load_before,
        "load_average_after": list(os.getloadavg()),
        "bare_runs": bare_runs,
        "streamer_runs": streamer_runs,
        "incomplete_streamer_rounds": len(streamer_runs) - len(complete),
        "order_violations": violations,
    }
    print(
        f"median of {rounds} rounds x {messages:,} messages (client on cores {cores['client']}, simulator on "
        f"{cores['simulator']}): ib_async in-process decode ceiling {ceiling_rate:,.0f} events/s; bare ib_async "
        f"over the socket {bare_rate:,.0f} events/s; streamer socket->spool {streamer_rate:,.0f} updates/s; ratio to "
        f"the ceiling {ratio or 0:.2f}, to bare {bare_ratio or 0:.2f}; per CPU-second: streamer {streamer_cpu:,.0f}, "
        f"ceiling {ceiling_cpu:,.0f}, bare {bare_cpu:,.0f}; runs ceiling "
        f"{[round(r['ceiling_rate']) for r in streamer_runs]} bare {[round(r['rate']) for r in bare_runs]} streamer "
        f"{[round(r['rate']) for r in streamer_runs]}; load {list(os.getloadavg())}",
        flush=True,
    )
    return result


def main(argv: list[str] | None = None) -> BenchResult:
    parser = bench_argparser(__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--positions", type=int, default=DEFAULT_POSITIONS)
    parser.add_argument("--rounds", type=int, default=3, help="alternating bare/streamer rounds (median reported)")
    parser.add_argument("--no-mix", action="store_true", help="portfolio and PnL-single only (no fills, no values)")
    args = parser.parse_args(argv)
    return finish(run(args.quick, args.messages, args.rounds, args.positions, not args.no_mix), args.json)


if __name__ == "__main__":
    asyncio.set_event_loop(asyncio.new_event_loop())
    main()
