"""``v6 replay`` of the demo scenario over 10 sessions: wall time from the simulator's start to the daily PnL table.

    .venv/bin/python -m bench.replay [--sessions 10] [--quick] [--json OUT]

What is timed is exactly what a user runs (``v6 replay demo --sessions 10``): the simulator replays the sessions at
the demo's speed, the streamer spools them, the spool is drained to Delta and the daily job computes every session
in one range run. Goal (issue 21): <= 60 s on the 2-core machine.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench.common import BenchResult, Record, bench_argparser, finish
from v6_assets.cli.replay import replay_scenario
from v6_assets.ib.streamer import discard_process_streamer

TARGET_S = 60.0


def run(quick: bool = False, sessions: int = 10) -> BenchResult:
    if quick:
        sessions = min(sessions, 3)
    with tempfile.TemporaryDirectory(prefix="v6-bench-replay-") as tmp:
        try:
            replayed = replay_scenario(Path("demo"), sessions, Path(tmp))
        finally:
            discard_process_streamer()
    result = BenchResult(
        "replay",
        details={
            "sessions": [d.isoformat() for d in replayed.sessions],
            "rows_written": replayed.rows_written,
            "run_success": replayed.run_success,
            "failed_checks": replayed.failed_checks,
        },
    )
    result.add(
        Record(
            f"v6 replay demo, {len(replayed.sessions)} sessions, end to end",
            replayed.duration_s,
            "s",
            target=f"<= {TARGET_S:g} s" if sessions >= 10 else None,
            met=replayed.duration_s <= TARGET_S if sessions >= 10 else None,
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
