"""Soak (long; only with ``make bench`` ``--soak`` or alone): 30 minutes at 20,000 updates/s through the streamer,
the spool and sensor-style drains into Delta; RSS, spool depth and lag must stay flat.

    .venv/bin/python -m bench.soak [--minutes 30] [--rate 20000] [--json OUT]

The simulator (a child process) blasts ``rate / 2`` messages every 0.5 s over a book of ``rate / 8`` positions
(exactly two rounds per blast, so every message changes its position's state and becomes one update). This process
runs the real ``IBPositionStreamer`` (spool handler) and, every 5 s like the sensor, ``drain_spool_to_lake`` with
the sensor's limits. Every 5 s it samples its RSS (/proc), the spool depth (unacknowledged rows) and the lag (now -
newest ``received_at`` committed). Flat = the median of the last quarter of samples against the first quarter.
"""

from __future__ import annotations

import multiprocessing
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench.common import BenchResult, Record, bench_argparser, current_rss_bytes, finish, peak_rss_bytes
from v6_assets.ib import IBPositionStreamer, Spool, StreamerSettings
from v6_assets.lake import Lake
from v6_assets.pipeline.ingest import DrainLimits, drain_spool_to_lake

QUIET_SPEED = 0.001
TICK_S = 5.0
BLAST_EVERY_S = 0.5
RSS_GROWTH_LIMIT = 100 * 2**20
LAG_GROWTH_LIMIT_S = 5.0


def _sim_process(conn: Connection, positions: int, per_blast: int) -> None:
    from v6_assets.gateway_sim import GatewaySimulator, synthetic_scenario

    scenario = synthetic_scenario(positions, speed=QUIET_SPEED)
    with GatewaySimulator(scenario, port=0, speed=QUIET_SPEED, keep_sent=False).running() as sim:
        conn.send(sim.port)
        conn.recv()  # go
        sent = 0
        next_at = time.monotonic()
        while not conn.poll(max(0.0, next_at - time.monotonic())):
            next_at += BLAST_EVERY_S
            sent += sim.blast(per_blast, timeout=60)
        conn.recv()
        conn.send({"sent": sent, "order_violations": sim.order_violations()})


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def measure(minutes: float, rate: int, workdir: Path) -> dict[str, Any]:
    positions = rate // 8
    per_blast = int(rate * BLAST_EVERY_S)
    ctx = multiprocessing.get_context("spawn")
    conn, child_conn = ctx.Pipe()
    sim = ctx.Process(target=_sim_process, args=(child_conn, positions, per_blast), daemon=True)
    sim.start()
    port = conn.recv()
    settings = StreamerSettings(port=port, client_id=61, home=workdir / "home", handler_queue_size=200_000)
    lake = Lake.at(str(workdir / "lake"))
    streamer = IBPositionStreamer()
    samples: list[dict[str, float]] = []
    drains: list[float] = []
    stop = threading.Event()
    newest: list[datetime] = []
    simulator: dict[str, Any] = {}
    try:
        streamer.ensure_started(settings)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            status = streamer.status()
            if (
                status.connection.connected
                and status.subscriptions.pnl_subscriptions >= positions
                and status.subscriptions.portfolio_account
            ):
                break
            time.sleep(0.2)
        else:
            raise RuntimeError(f"streamer did not get ready: {streamer.status().describe()}")
        spool = Spool(settings.spool_path)

        limits = DrainLimits.from_env()  # the sensor's per-tick limits

        def drain_loop() -> None:
            while not stop.wait(TICK_S):
                started = time.monotonic()
                result = drain_spool_to_lake(
                    spool,
                    lake,
                    settings.stream_id,
                    max_rows=limits.max_rows,
                    batch_rows=limits.batch_rows,
                    deadline=started + limits.budget_s,
                )
                drains.append(time.monotonic() - started)
                stamps = [t.last_received_at for t in result.tables.values() if t.last_received_at is not None]
                if stamps:
                    newest.append(max(stamps))

        drainer = threading.Thread(target=drain_loop, name="soak-drain", daemon=True)
        drainer.start()
        conn.send("go")
        started = time.monotonic()
        while time.monotonic() - started < minutes * 60:
            time.sleep(TICK_S)
            lag = (datetime.now(UTC) - newest[-1]).total_seconds() if newest else float("nan")
            samples.append(
                {
                    "t": time.monotonic() - started,
                    "rss": float(current_rss_bytes()),
                    "depth": float(spool.depth()),
                    "lag_s": lag,
                    "written": float(streamer.status().spool.written),
                }
            )
        stop.set()
        drainer.join(120)
        conn.send("stop")
        if conn.poll(60):
            simulator = conn.recv()
        spool.close()
    finally:
        stop.set()
        streamer.stop()
        sim.join(15)
        if sim.is_alive():
            sim.kill()
    quarter = max(1, len(samples) // 4)
    first, last = samples[:quarter], samples[-quarter:]

    def flat(key: str) -> tuple[float, float]:
        return _median([s[key] for s in first if s[key] == s[key]]), _median([s[key] for s in last if s[key] == s[key]])

    elapsed = samples[-1]["t"] if samples else 0.0
    written = samples[-1]["written"] - samples[0]["written"] if len(samples) > 1 else 0.0
    return {
        "minutes": minutes,
        "rate_offered": rate,
        "positions": positions,
        "updates_per_s_spooled": written / max(elapsed - samples[0]["t"], 1e-9) if len(samples) > 1 else 0.0,
        "rss_first_last": flat("rss"),
        "depth_first_last": flat("depth"),
        "lag_first_last": flat("lag_s"),
        "drain_s_median": _median(drains),
        "peak_rss_bytes": peak_rss_bytes(),
        "simulator": simulator,
        "samples": samples,
    }


def run(quick: bool = False, minutes: float = 30.0, rate: int = 20_000) -> BenchResult:
    if quick:
        minutes = min(minutes, 2.0)
    if rate < 8 or rate % 8:
        raise ValueError("--rate must be a positive multiple of 8")
    with tempfile.TemporaryDirectory(prefix="v6-bench-soak-") as tmp:
        m = measure(minutes, rate, Path(tmp))
    result = BenchResult("soak", details=m)
    (rss0, rss1), (d0, d1), (l0, l1) = m["rss_first_last"], m["depth_first_last"], m["lag_first_last"]
    label = f"soak {minutes:g} min at {rate:,}/s offered"
    result.add(Record(f"{label}: updates spooled", m["updates_per_s_spooled"], "updates/s", target=f">= {rate:,}/s",
                      met=m["updates_per_s_spooled"] >= rate * 0.95))  # fmt: skip
    result.add(Record(f"{label}: RSS growth (last - first quarter)", (rss1 - rss0) / 2**20, "MiB",
                      target=f"<= {RSS_GROWTH_LIMIT // 2**20} MiB", met=rss1 - rss0 <= RSS_GROWTH_LIMIT))  # fmt: skip
    tick_rows = rate * TICK_S
    result.add(Record(f"{label}: spool depth growth", d1 - d0, "rows", target=f"<= {tick_rows:,.0f} (one tick)",
                      met=d1 - d0 <= tick_rows))  # fmt: skip
    result.add(Record(f"{label}: lag growth", l1 - l0, "s", target=f"<= {LAG_GROWTH_LIMIT_S:g} s",
                      met=l1 - l0 <= LAG_GROWTH_LIMIT_S))  # fmt: skip
    return result


def main(argv: list[str] | None = None) -> BenchResult:
    parser = bench_argparser(__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--rate", type=int, default=20_000)
    args = parser.parse_args(argv)
    return finish(run(args.quick, args.minutes, args.rate), args.json)


if __name__ == "__main__":
    main()
