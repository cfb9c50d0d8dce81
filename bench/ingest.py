"""Ingest throughput: updates/s from socket to spool while the simulator blasts portfolio + PnL-single updates,
next to the ceiling ib_async itself sets and a bare ib_async client over the socket, in the same run.

    .venv/bin/python -m bench.ingest [--messages N] [--positions 2000] [--quick] [--json OUT]

The simulator runs in a child process (so it does not share our GIL) over a synthetic book of ``--positions``
option positions (2,000 by default), its clock slowed down so that no periodic traffic mixes with the blast.
Each phase subscribes the same streams (PnL-single per open option position, portfolio for one account), the
simulator blasts N messages, and the rate is N_received / (time of the last arrival - blast start). "Arrival" is
an event counted by the bare client, and a row committed to the SQLite spool (read from the spool file by another
connection) for the streamer.

What each figure bounds:
- ceiling (peer): the streamer's own ib_async client decodes the very bytes of the blast it just received again,
  replayed from memory into ib_async's socket-data handler in its loop thread, with our handlers detached and a bare
  counter attached (framing, decoding, wrapper state, events; no socket, no simulator sending, none of our work).
  No consumer of these ib_async events can go faster on this core: ours is measured against it (>= 0.8x).
- bare ib_async over the socket: a separate bare client counting its blast's events (its subscriptions differ from
  the streamer's, and the simulator's mix with them: context only).
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

OPTION_TYPES = ("OPT", "FOP")
IDLE_END_S = 1.0
FIRST_ARRIVAL_S = 30.0
DEFAULT_POSITIONS = 2_000
TARGET_RATE = 20_000
TARGET_RATIO = 0.8  # of the in-process decode ceiling
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


def bare_client(sim: SimChild, messages: int) -> dict[str, float]:
    """A bare ib_async client counting the events of a blast over the socket (its own subscriptions: the simulator
    may send it another mix than the streamer gets, so it is context, not the ceiling)."""
    ib = IB()
    received = [0]

    def on_event(*_: Any) -> None:
        received[0] += 1

    ib.connect("127.0.0.1", sim.port, clientId=71, readonly=True, timeout=10)
    try:
        accounts = ib.managedAccounts()
        ib.reqAccountUpdates(accounts[0])
        for pos in ib.positions():
            if pos.contract.secType in OPTION_TYPES:
                ib.reqPnLSingle(pos.account, "", pos.contract.conId)
        ib.pnlSingleEvent += on_event
        ib.updatePortfolioEvent += on_event
        ib.sleep(1.0)
        start_count = received[0]
        started = time.perf_counter()
        blaster = sim.blast_async(messages)
        got, seconds = _measure(lambda: received[0], start_count, started, messages, lambda: ib.sleep(0.005))
        blaster.join(60)
    finally:
        ib.disconnect()
    return {
        "messages_sent": blaster.result.get("written", 0),  # type: ignore[attr-defined]
        "received": got,
        "seconds": seconds,
        "rate": got / seconds,
    }


async def _decode_alone(ib: IB, publisher: Any, chunks: list[bytes]) -> dict[str, float]:
    """In the streamer's loop thread: its ib_async client decodes ``chunks`` (the bytes of the blast it just got)
    again with OUR handlers detached and a bare counter attached: framing, decoding, ib_async's wrapper state and
    events, exactly as over the socket, without the socket and without our work. Handlers re-attached after."""
    events = [0]

    def count(*_: Any) -> None:
        events[0] += 1

    ours = [(ib.updatePortfolioEvent, publisher.on_portfolio), (ib.pnlSingleEvent, publisher.on_pnl_single),
            (ib.positionEvent, publisher.on_position), (ib.pendingTickersEvent, publisher.on_tickers)]  # fmt: skip
    for event, handler in ours:
        event -= handler
    ib.updatePortfolioEvent += count
    ib.pnlSingleEvent += count
    feed = ib.client._onSocketHasData  # ib_async's handler of conn.hasData (not patched, only called)
    try:
        started = time.perf_counter()
        for chunk in chunks:
            feed(chunk)
        seconds = time.perf_counter() - started
    finally:
        ib.updatePortfolioEvent -= count
        ib.pnlSingleEvent -= count
        for event, handler in ours:
            event += handler
    return {
        "ceiling_bytes": float(sum(map(len, chunks))),
        "ceiling_events": float(events[0]),
        "ceiling_seconds": seconds,
        "ceiling_rate": events[0] / seconds if seconds > 0 else 0.0,
    }


def streamer_to_spool(sim: SimChild, messages: int, home: Path) -> dict[str, float]:
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
        time.sleep(1.0)
        run = streamer._run  # bench only: the live connection's IB object and our publisher
        assert run is not None and run._session is not None and run._publisher is not None
        ib, publisher, loop = run._session.ib, run._publisher, streamer._loop
        assert loop is not None
        recorded: list[bytes] = []  # the raw bytes of the blast, as the socket delivered them
        asyncio.run_coroutine_threadsafe(_connect(ib.client.conn.hasData, recorded.append), loop).result(120)
        with Spool(settings.spool_path) as spool:
            start_offset = spool.last_offset()
            started_wall = time.time()
            started = time.perf_counter()
            blaster = sim.blast_async(messages)
            # Coarse polling only to find the end (fine polling would steal the GIL from the streamer thread);
            # the end time is the received_at stamp of the last row, taken by the streamer as it accepted it.
            got, _ = _measure(spool.last_offset, start_offset, started, messages, lambda: time.sleep(0.1))
            frames = spool.read_frames(start_offset, messages + 10_000)
            last_received = frames.positions["received_at"].max()
            seconds = last_received.timestamp() - started_wall if last_received is not None else float("inf")
        blaster.join(60)
        asyncio.run_coroutine_threadsafe(_disconnect(ib.client.conn.hasData, recorded.append), loop).result(120)
        status = streamer.status()
        ceiling = asyncio.run_coroutine_threadsafe(_decode_alone(ib, publisher, recorded), loop).result(300)
    finally:
        streamer.stop()
    return {
        "messages_sent": blaster.result.get("written", 0),  # type: ignore[attr-defined]
        "received": got,
        "seconds": seconds,
        "rate": got / seconds,
        "malformed": status.counters.malformed_messages,
        **ceiling,
    }


async def _connect(event: Any, handler: Any) -> None:
    event += handler


async def _disconnect(event: Any, handler: Any) -> None:
    event -= handler


def run(
    quick: bool = False, messages: int = 100_000, rounds: int = 3, positions: int = DEFAULT_POSITIONS
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
            bare_runs.append(bare_client(sim, messages))
            with tempfile.TemporaryDirectory(prefix="v6-bench-ingest-") as home:
                streamer_runs.append(streamer_to_spool(sim, messages, Path(home)))
        violations = sim.violations()
    finally:
        sim.close()
    bare_rate = statistics.median(r["rate"] for r in bare_runs)
    ceiling_rate = statistics.median(r["ceiling_rate"] for r in streamer_runs)
    streamer_rate = statistics.median(r["rate"] for r in streamer_runs)
    ratio = ratio_of(streamer_rate, ceiling_rate)
    result = BenchResult("ingest")
    name = f"ingest socket->spool, {positions:,} positions"
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
            peer="bare ib_async event counter over the socket",
            peer_value=bare_rate,
            ratio=ratio_of(streamer_rate, bare_rate),
        )
    )
    result.details = {
        "messages": messages,
        "rounds": rounds,
        "positions": positions,
        "cores": cores,
        "load_average_before": load_before,
        "load_average_after": list(os.getloadavg()),
        "bare_runs": bare_runs,
        "streamer_runs": streamer_runs,
        "order_violations": violations,
    }
    print(
        f"median of {rounds} rounds x {messages:,} messages (client on cores {cores['client']}, simulator on "
        f"{cores['simulator']}): ib_async in-process decode ceiling {ceiling_rate:,.0f} events/s; bare ib_async "
        f"over the socket {bare_rate:,.0f} events/s; streamer socket->spool {streamer_rate:,.0f} updates/s; ratio to "
        f"the ceiling {ratio or 0:.2f}; runs ceiling {[round(r['ceiling_rate']) for r in streamer_runs]} bare "
        f"{[round(r['rate']) for r in bare_runs]} streamer {[round(r['rate']) for r in streamer_runs]}",
        flush=True,
    )
    return result


def main(argv: list[str] | None = None) -> BenchResult:
    parser = bench_argparser(__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--positions", type=int, default=DEFAULT_POSITIONS)
    parser.add_argument("--rounds", type=int, default=3, help="alternating bare/streamer rounds (median reported)")
    args = parser.parse_args(argv)
    return finish(run(args.quick, args.messages, args.rounds, args.positions), args.json)


if __name__ == "__main__":
    asyncio.set_event_loop(asyncio.new_event_loop())
    main()
