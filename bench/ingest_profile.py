"""Where the streamer's time goes: the streamer's own connection bytes of a blast, replayed into its ib_async client
in its loop thread under cProfile (no socket, no simulator running), next to ib_async alone decoding them.

    .venv/bin/python -m bench.ingest_profile [--messages 50000] [--positions 2000] [--no-profile] [--no-mix]

1. The simulator (pinned to its own core) blasts N messages to the running streamer; the bytes its ib_async client
   receives are recorded (an extra ``conn.hasData`` listener, nothing patched).
2. The same bytes are fed to that client's socket-data handler again, in the loop thread, chunk by chunk with a loop
   iteration between chunks (as socket reads are): decoding, our conversion, the fan-out and the batched spool
   commits all run; the time until the spool holds every row is "streamer in-process". cProfile covers the loop
   thread only while it replays.
3. The top functions by own time are printed: which are ib_async's and which are ours.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.ingest import DEFAULT_POSITIONS, SimChild, _last_received, _measure, _settle, pin_cores
from v6_assets.ib import IBPositionStreamer, Spool, StreamerSettings


def _client_of(streamer: IBPositionStreamer) -> Any:
    session = streamer._run._session  # type: ignore[union-attr]  # bench only: the live connection's IB object
    assert session is not None, "streamer not connected"
    return session.ib.client


async def _replay(client: Any, chunks: list[bytes], spool: Spool, profile: bool) -> dict[str, Any]:
    profiler = cProfile.Profile() if profile else None
    feed = client._onSocketHasData
    started = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    for chunk in chunks:
        feed(chunk)
        await asyncio.sleep(0)  # one loop iteration per socket read, as over the socket (the spool flushes there)
    fed = done = time.perf_counter()
    last = spool.last_offset()
    for _ in range(3000):  # until the spool has not grown for 0.3 s (repeats of a state are not rows: no count)
        await asyncio.sleep(0.01)
        now_offset = spool.last_offset()
        if now_offset != last:
            last, done = now_offset, time.perf_counter()
        elif time.perf_counter() - done > 0.3:
            break
    if profiler is not None:
        profiler.disable()
    out: dict[str, Any] = {"feed_s": fed - started, "to_spool_s": done - started}
    if profiler is not None:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(30)
        out["profile"] = text.getvalue()
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--positions", type=int, default=DEFAULT_POSITIONS)
    parser.add_argument("--no-profile", action="store_true", help="time the replay without cProfile")
    parser.add_argument("--no-mix", action="store_true", help="portfolio and PnL-single only (no fills, no values)")
    args = parser.parse_args(argv)
    cores = pin_cores()
    sim = SimChild(args.positions, cores["simulator"])
    os.sched_setaffinity(0, cores["client"])
    streamer = IBPositionStreamer()
    try:
        with tempfile.TemporaryDirectory(prefix="v6-bench-profile-") as home:
            settings = StreamerSettings(port=sim.port, client_id=62, home=Path(home), handler_queue_size=100_000)
            streamer.ensure_started(settings)
            deadline = time.monotonic() + 60
            while not streamer.status().subscriptions.pnl_subscriptions and time.monotonic() < deadline:
                time.sleep(0.1)
            run = streamer._run
            assert run is not None
            _settle(lambda: run.throttle.throttling, time.sleep)
            client = _client_of(streamer)
            recorded: list[bytes] = []
            streamer._call_in_loop(lambda: client.conn.hasData.connect(recorded.append))
            built = sim.prepare(args.messages, not args.no_mix)
            with Spool(settings.spool_path) as spool:
                start = spool.last_offset()
                started_wall, started = time.time(), time.perf_counter()
                sender = sim.send_prepared_async()
                got, _ = _measure(spool.last_offset, start, started, built, lambda: time.sleep(0.1))
                sender.join(60)
                frames = spool.read_frames(start, built + 10_000)
                last = _last_received(frames)
                socket_s = last.timestamp() - started_wall if last is not None else float("inf")
                streamer._call_in_loop(lambda: client.conn.hasData.disconnect(recorded.append))
                time.sleep(0.5)
                before = spool.last_offset()
                loop = streamer._loop
                assert loop is not None
                future = asyncio.run_coroutine_threadsafe(_replay(client, recorded, spool, not args.no_profile), loop)
                found = future.result(timeout=120)
                replayed = spool.last_offset() - before
    finally:
        streamer.stop()
        sim.close()
    print(f"cores: client {cores['client']}, simulator {cores['simulator']}; load {os.getloadavg()}")
    print(f"socket -> spool: {got:,} rows in {socket_s:.2f} s = {got / socket_s:,.0f}/s")
    print(
        f"in-process replay of the same {sum(map(len, recorded)):,} bytes ({len(recorded)} reads) -> spool: "
        f"{replayed:,} rows, fed in {found['feed_s']:.2f} s, in the spool after {found['to_spool_s']:.2f} s = "
        f"{replayed / found['to_spool_s']:,.0f}/s{' (under cProfile)' if not args.no_profile else ''}"
    )
    if "profile" in found:
        print(found["profile"])


if __name__ == "__main__":
    main()
