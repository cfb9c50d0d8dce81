"""The lock-step seed of ``make demo``: 10 sessions of the demo scenario seeded through the real path, twice.

    .venv/bin/python -m bench.seed [--sessions 10] [--quick] [--json OUT]

What is timed is ``history_seed.seed_history`` exactly as ``make demo`` calls it (lock-step simulator over loopback
TCP, the unmodified ib_async streamer, the spool, the drain to Delta), from the streamer's start to the rows in Delta.
It runs twice and reports whether the two seeds wrote the same row counts per table and session (the full row-by-row
comparison is ``v6_assets_tests/test_seed_determinism.py``). Goal (issue 14): no slower than the real-time seed it
replaced (25-35 s for 10 sessions), so <= 35 s.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench.common import BenchResult, Record, bench_argparser, finish
from v6_assets.demo import DEFAULT_SEED_SPEED
from v6_assets.gateway_sim import GatewaySimulator, load_scenario
from v6_assets.history_seed import SeedResult, history_start, seed_history
from v6_assets.ib import StreamerSettings
from v6_assets.ib.streamer import discard_process_streamer
from v6_assets.lake import Lake

TARGET_S = 35.0


def seed_once(sessions: int, tmp: Path) -> SeedResult:
    scenario = load_scenario("demo", start_time=history_start(sessions))
    sim = GatewaySimulator(scenario, speed=DEFAULT_SEED_SPEED, port=0, lockstep=True)
    with sim.running():
        settings = StreamerSettings(port=sim.port, client_id=63, home=tmp / "v6")
        try:
            return seed_history(sim, settings, Lake(str(tmp / "lake")), timeout_s=600)
        finally:
            discard_process_streamer()


def run(quick: bool = False, sessions: int = 10) -> BenchResult:
    if quick:
        sessions = min(sessions, 3)
    seeds = []
    for i in range(2):
        with tempfile.TemporaryDirectory(prefix=f"v6-bench-seed-{i}-") as tmp:
            seeds.append(seed_once(sessions, Path(tmp)))
    # the session being seeded when the clock caught up is live, so not comparable: closed sessions only
    closed = set(seeds[0].sessions_closed) & set(seeds[1].sessions_closed)
    counts = [
        {t: {d: n for d, n in per.items() if d in closed} for t, per in s.rows_per_table_session.items()} for s in seeds
    ]
    result = BenchResult(
        "seed",
        details={
            "sessions_closed": sorted(closed),
            "rows_written": [s.rows_written for s in seeds],
            "rows_per_table_closed_sessions": counts[0],
            "same_counts_twice": counts[0] == counts[1],
            "duration_s": [round(s.duration_s, 2) for s in seeds],
        },
    )
    for i, seed in enumerate(seeds, start=1):
        result.add(
            Record(
                f"make demo seed, {sessions} sessions, lock-step (run {i}, {seed.rows_written} rows)",
                seed.duration_s,
                "s",
                target=f"<= {TARGET_S:g} s" if sessions >= 10 else None,
                met=seed.duration_s <= TARGET_S if sessions >= 10 else None,
            )
        )
    return result


def main(argv: list[str] | None = None) -> BenchResult:
    parser = bench_argparser(__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10)
    args = parser.parse_args(argv)
    return finish(run(args.quick, args.sessions), args.json)


if __name__ == "__main__":
    main()
