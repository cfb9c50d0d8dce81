"""Benchmark of the lake's micro-batch writer and of maintenance (issue 4).

Reports commits/s and rows/s for batches of 10, 1,000 and 100,000 rows, and the read time of one session's partition
after N micro-batch commits (default 5,000) before and after maintenance, against the same rows written in one commit.
Targets: a 1,000-row batch commits in under 100 ms median; after maintenance the read is within 1.5x of the
one-commit table. Prints a table and writes bench/results/lake_writer.json.

    .venv/bin/python -m bench.lake_writer [--quick] [--commits N] [--dir PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from v6_assets.lake import POSITION_UPDATES, Lake, MicroBatchWriter, TableDef, cast_and_validate

RESULTS = Path(__file__).parent / "results" / "lake_writer.json"
SESSION = date(2024, 3, 5)
SESSION_START = datetime(2024, 3, 4, 21, 15, tzinfo=UTC)  # Monday's cut: from here on rows belong to Tuesday


def make_batch(first_offset: int, n: int, stream_id: str = "bench") -> pl.DataFrame:
    """n position updates inside one session, realistic column mix (vectorised so building is not measured)."""
    offsets = np.arange(first_offset, first_offset + n, dtype=np.int64)
    seconds = (offsets % 60_000).astype("timedelta64[s]")
    return pl.DataFrame(
        {
            "account": "DU1234567",
            "con_id": 500_000 + offsets % 200,
            "symbol": "SPY",
            "sec_type": "OPT",
            "expiry": date(2024, 6, 21),
            "strike": 400.0 + (offsets % 200).astype(np.float64),
            "right": np.where(offsets % 2 == 0, "C", "P"),
            "multiplier": 100.0,
            "currency": "USD",
            "exchange": "SMART",
            "trading_class": "SPY",
            "local_symbol": "SPY   240621C00500000",
            "position": (offsets % 7 - 3).astype(np.float64),
            "average_cost": 1234.5,
            "market_price": 12.0 + (offsets % 100) / 100,
            "market_value": 2400.0,
            "unrealized_pnl": (offsets % 1000).astype(np.float64),
            "realized_pnl": None,
            "ib_daily_pnl": 1.5,
            "ib_unrealized_pnl": 3.0,
            "ib_realized_pnl": 0.0,
            "ib_value": 2400.0,
            "source": "pnl_single",
            "seq": offsets,
            "received_at": pl.Series(np.datetime64(SESSION_START.replace(tzinfo=None)) + seconds).dt.replace_time_zone(
                "UTC"
            ),
            "stream_id": stream_id,
            "spool_offset": offsets,
        }
    )


def bench_batches(lake: Lake, rows: int, commits: int) -> dict[str, Any]:
    writer = MicroBatchWriter(lake, POSITION_UPDATES.with_columns(name=f"bench_{rows}"))
    batches = [make_batch(i * rows, rows) for i in range(commits)]
    durations = []
    started = time.perf_counter()
    for i, batch in enumerate(batches):
        t = time.perf_counter()
        writer.append(batch, app_id="bench", version=(i + 1) * rows - 1, offset_column="spool_offset")
        durations.append(time.perf_counter() - t)
    wall = time.perf_counter() - started
    return {
        "rows_per_batch": rows,
        "commits": commits,
        "commits_per_s": commits / wall,
        "rows_per_s": commits * rows / wall,
        "median_ms": statistics.median(durations) * 1000,
        "p95_ms": sorted(durations)[int(0.95 * (len(durations) - 1))] * 1000,
    }


def timed_read(lake: Lake, table: TableDef, repeats: int = 5) -> float:
    """Median seconds to open the table fresh and read one session's partition."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        frame = lake.read_sessions(table, [SESSION])
        times.append(time.perf_counter() - t)
        assert frame.height > 0
    return statistics.median(times)


def bench_read_after_many_commits(lake: Lake, commits: int, rows: int) -> dict[str, Any]:
    micro = POSITION_UPDATES.with_columns(name="micro")
    writer = MicroBatchWriter(lake, micro)
    started = time.perf_counter()
    for i in range(commits):
        writer.append(
            make_batch(i * rows, rows), app_id="bench", version=(i + 1) * rows - 1, offset_column="spool_offset"
        )
    write_s = time.perf_counter() - started
    one = POSITION_UPDATES.with_columns(name="one_commit")
    all_rows = cast_and_validate(POSITION_UPDATES, make_batch(0, commits * rows))
    lake.overwrite_sessions(one, all_rows, sorted(set(all_rows["trade_date"].to_list())))
    one_commit_s = timed_read(lake, one)
    before_s = timed_read(lake, micro)
    t = time.perf_counter()
    maintenance = {
        "compact": lake.compact(micro, [SESSION]).as_metadata(),
        "checkpoint": lake.checkpoint(micro).as_metadata(),
        "cleanup_logs": lake.cleanup_logs(micro, log_retention=timedelta(0)).as_metadata(),
        "vacuum": lake.vacuum(micro, retention=timedelta(0)).as_metadata(),
    }
    maintenance_s = time.perf_counter() - t
    after_s = timed_read(lake, micro)
    return {
        "commits": commits,
        "rows_per_commit": rows,
        "write_s": write_s,
        "read_one_commit_ms": one_commit_s * 1000,
        "read_before_maintenance_ms": before_s * 1000,
        "read_after_maintenance_ms": after_s * 1000,
        "after_vs_one_commit": after_s / one_commit_s,
        "maintenance_s": maintenance_s,
        "maintenance": maintenance,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer commits (500 instead of 5,000)")
    parser.add_argument("--commits", type=int, default=None, help="micro-batch commits before the read test")
    parser.add_argument("--dir", type=Path, default=None, help="where to build the tables (default: a temp dir)")
    args = parser.parse_args(argv)
    commits = args.commits or (500 if args.quick else 5_000)
    batch_plan = [
        (10, 100 if args.quick else 300),
        (1_000, 50 if args.quick else 200),
        (100_000, 5 if args.quick else 10),
    ]
    with tempfile.TemporaryDirectory(prefix="v6-lake-bench-", dir=args.dir) as tmp:
        lake = Lake.at(tmp)
        batches = [bench_batches(lake, rows, n) for rows, n in batch_plan]
        reads = bench_read_after_many_commits(lake, commits, rows=10)
    one_k = next(b for b in batches if b["rows_per_batch"] == 1_000)
    result = {
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "batches": batches,
        "read_after_commits": reads,
        "targets": {
            "median_1000_row_commit_under_100ms": one_k["median_ms"] < 100,
            "read_after_maintenance_within_1_5x": reads["after_vs_one_commit"] <= 1.5,
        },
    }
    print(f"{'rows/batch':>10} {'commits':>8} {'commits/s':>10} {'rows/s':>12} {'median ms':>10} {'p95 ms':>8}")
    for b in batches:
        print(
            f"{b['rows_per_batch']:>10,} {b['commits']:>8} {b['commits_per_s']:>10.1f} {b['rows_per_s']:>12,.0f} "
            f"{b['median_ms']:>10.1f} {b['p95_ms']:>8.1f}"
        )
    print(
        f"read of one session after {reads['commits']:,} commits: before maintenance "
        f"{reads['read_before_maintenance_ms']:.1f} ms, after {reads['read_after_maintenance_ms']:.1f} ms, "
        f"one-commit table {reads['read_one_commit_ms']:.1f} ms (ratio {reads['after_vs_one_commit']:.2f}x); "
        f"maintenance took {reads['maintenance_s']:.1f} s"
    )
    print("targets:", json.dumps(result["targets"]))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2, default=str))
    return result


if __name__ == "__main__":
    main()
