"""Table health: read time of a session written as 4,680 five-second micro-batches (6.5 hours), before and after
maintenance, next to the same rows written in one commit.

    .venv/bin/python -m bench.table_health [--commits 4680] [--rows-per-batch 200] [--repeats 3] [--quick] [--json OUT]

The micro-batches go through the production writer (``MicroBatchWriter`` with txn = last spool offset, as the
sensor appends them), one session of ``synthetic_updates`` rows cut in received order. Read = a fresh
``Lake.read_sessions("position_updates", [session])`` (open the table, replay the log, read every file of the
partition), median of repeats. Maintenance = what the ``table_maintenance`` job runs: compact the session,
checkpoint, clean up expired logs (retention 0 here), vacuum (retention 0 here). 200 rows per batch is 40 updates/s
(2,000 positions updating about every 50 s); the per-commit cost dominates, not the row count.
"""

from __future__ import annotations

import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from bench.common import BenchResult, Record, bench_argparser, finish, median_time, ratio_of
from v6_assets.analytics import synthetic_updates
from v6_assets.lake import Lake, MicroBatchWriter

SESSION = date(2025, 6, 4)
POSITIONS = 2_000
COMMITS_6_5_HOURS = 4_680  # 6.5 h x 3600 / 5 s
TARGET_RATIO = 1.5
STREAM_ID = "bench-table-health"


def read_session(lake: Lake) -> int:
    return lake.read_sessions("position_updates", [SESSION]).height


def measure(commits: int, rows_per_batch: int, repeats: int, workdir: Path) -> dict[str, Any]:
    n_rows = commits * rows_per_batch
    frame = synthetic_updates(max(n_rows, POSITIONS), POSITIONS, SESSION, seed=3).updates.head(n_rows)
    frame = frame.with_columns(pl.int_range(1, n_rows + 1, dtype=pl.Int64).alias("spool_offset"))

    one = Lake.at(str(workdir / "one_commit"))
    one.overwrite_sessions("position_updates", frame, [SESSION])

    lake = Lake.at(str(workdir / "micro_batches"))
    writer = MicroBatchWriter(lake, "position_updates")
    started = time.perf_counter()
    for i in range(commits):
        batch = frame.slice(i * rows_per_batch, rows_per_batch)
        result = writer.append(
            batch, app_id=STREAM_ID, version=int(batch["spool_offset"][-1]), offset_column="spool_offset"
        )
        if not result.committed:
            raise RuntimeError(f"batch {i} was not committed: {result}")
    write_s = time.perf_counter() - started

    baseline_s, baseline_times, rows_one = median_time(lambda: read_session(one), repeats)
    before_s, before_times, rows_before = median_time(lambda: read_session(lake), repeats)
    dt = lake.open("position_updates")
    assert dt is not None
    files_before = len(dt.file_uris())
    started = time.perf_counter()
    compacted = lake.compact("position_updates", [SESSION])
    checkpointed = lake.checkpoint("position_updates")
    cleaned = lake.cleanup_logs("position_updates", log_retention=timedelta(0))
    vacuumed = lake.vacuum("position_updates", retention=timedelta(0))
    maintenance_s = time.perf_counter() - started
    after_s, after_times, rows_after = median_time(lambda: read_session(lake), repeats)
    if not rows_one == rows_before == rows_after == n_rows:
        raise RuntimeError(f"row counts differ: one commit {rows_one}, before {rows_before}, after {rows_after}")
    return {
        "commits": commits,
        "rows_per_batch": rows_per_batch,
        "rows": n_rows,
        "write_s": write_s,
        "commits_per_s": commits / write_s,
        "files_before": files_before,
        "baseline_one_commit_s": baseline_s,
        "before_maintenance_s": before_s,
        "after_maintenance_s": after_s,
        "maintenance_s": maintenance_s,
        "times": {"baseline": baseline_times, "before": before_times, "after": after_times},
        "compact": compacted.as_metadata(),
        "checkpoint": checkpointed.as_metadata(),
        "cleanup_logs": cleaned.as_metadata(),
        "vacuum": vacuumed.as_metadata(),
    }


def run(
    quick: bool = False, commits: int = COMMITS_6_5_HOURS, rows_per_batch: int = 200, repeats: int = 3
) -> BenchResult:
    if quick:
        commits = min(commits, 300)
    with tempfile.TemporaryDirectory(prefix="v6-bench-health-") as tmp:
        m = measure(commits, rows_per_batch, repeats, Path(tmp))
    result = BenchResult("table_health", details=m)
    peer = "same rows, one commit"
    label = f"session read, {commits:,} micro-batch commits"
    before_ratio = ratio_of(m["before_maintenance_s"], m["baseline_one_commit_s"])
    after_ratio = ratio_of(m["after_maintenance_s"], m["baseline_one_commit_s"])
    result.add(
        Record(
            f"{label}, before maintenance",
            m["before_maintenance_s"],
            "s",
            peer,
            m["baseline_one_commit_s"],
            before_ratio,
            None,
            None,
        )
    )
    result.add(
        Record(
            f"{label}, after maintenance",
            m["after_maintenance_s"],
            "s",
            peer,
            m["baseline_one_commit_s"],
            after_ratio,
            f"ratio <= {TARGET_RATIO}",
            after_ratio is not None and after_ratio <= TARGET_RATIO,
        )
    )
    result.add(Record(f"micro-batch appends ({rows_per_batch} rows each)", m["commits_per_s"], "commits/s"))
    result.add(Record("maintenance (compact, checkpoint, log cleanup, vacuum)", m["maintenance_s"], "s"))
    return result


def main(argv: list[str] | None = None) -> BenchResult:
    parser = bench_argparser(__doc__.splitlines()[0])
    parser.add_argument("--commits", type=int, default=COMMITS_6_5_HOURS)
    parser.add_argument("--rows-per-batch", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    return finish(run(args.quick, args.commits, args.rows_per_batch, args.repeats), args.json)


if __name__ == "__main__":
    main()
