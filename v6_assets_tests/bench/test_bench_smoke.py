"""Smoke tests of the benchmarks: every script runs in a tiny configuration through ``bench.run_all`` and writes
well-formed records. No timing assertions (figures at these sizes mean nothing; timing goals live in bench/).

The analytics peers (DuckDB SQL, pandas) are checked for the SAME results as ours inside the benchmark itself: a
mismatch makes the benchmark fail, which fails this test.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.common import RECORD_KEYS

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# bench -> record names (prefixes) that must be present, and the peers that must be measured next to ours
EXPECTED: dict[str, tuple[list[str], set[str]]] = {
    "ingest": (
        ["ingest socket->spool"],
        {
            "ib_async in-process decode of the same bytes (ceiling)",
            "bare ib_async counting the same events over the socket",
        },
    ),
    "sensor_tick": (["sensor tick, drain+commit 1,000"], set()),
    "analytics": (["analytics eod+pnl+exposure, 20,000 updates"], {"DuckDB SQL", "pandas"}),
    "risk_grid": (["risk grid 200 positions x 45 cells"], {"pandas/numpy cross join"}),
    "backfill": (
        [
            "single-run backfill, 3 sessions x 3,000 updates",
            "single-run backfill, 3 sessions x 3,000 updates, peak RSS",
        ],
        set(),
    ),
    "table_health": (
        ["session read, 10 micro-batch commits, before", "session read, 10 micro-batch commits, after"],
        {"same rows, one commit"},
    ),
    "soak": (["soak 0.25 min at 800/s offered: updates spooled", "soak 0.25 min at 800/s offered: RSS growth"], set()),
    "latency": (["send -> visible in Delta"], set()),
    "demo_start": (["make demo (2 sessions), .venv built"], set()),
    "resubscribe": (
        ["resubscribe 40 positions, first connect", "pacing violations (error 100) seen by the simulator"],
        set(),
    ),
    "replay": (["v6 replay demo, 2 sessions, end to end"], set()),
}


def run_all(tmp_path: Path, names: list[str], timeout: float) -> dict[str, Any]:
    out = tmp_path / "latest.json"
    cmd = [sys.executable, "-m", "bench.run_all", "--smoke", "--strict", "--only", *names, "--out", str(out)]
    proc = subprocess.run(cmd, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"run_all failed ({proc.returncode}):\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    assert out.exists(), proc.stdout[-3000:]
    report: dict[str, Any] = json.loads(out.read_text())
    # the table is printed too
    assert "| name" in proc.stdout and f"written to {out}" in proc.stdout
    return report


def check_record(record: dict[str, Any]) -> None:
    assert tuple(record) == RECORD_KEYS, record
    assert isinstance(record["name"], str) and record["name"]
    assert isinstance(record["unit"], str) and record["unit"]
    value = record["value"]
    assert isinstance(value, int | float) and math.isfinite(value), record
    if record["peer"] is not None:
        peer_value = record["peer_value"]
        assert isinstance(peer_value, int | float) and peer_value > 0, record
        assert record["ratio"] == pytest.approx(value / peer_value, rel=1e-3), record
    else:
        assert record["peer_value"] is None and record["ratio"] is None, record
    if record["target"] is None:
        assert record["met"] is None, record
    else:
        assert isinstance(record["met"], bool), record


def check_report(report: dict[str, Any], names: list[str]) -> None:
    machine = report["machine"]
    assert machine["cores"] >= 1 and machine["memory_bytes"] > 0
    assert machine["versions"]["polars"] and machine["versions"]["duckdb"] and machine["versions"]["pandas"]
    assert set(report["benchmarks"]) == set(names)
    for name in names:
        bench = report["benchmarks"][name]
        assert "error" not in bench, bench.get("error")
        records = [r for r in report["records"] if any(r["name"].startswith(p) for p in EXPECTED[name][0])]
        for prefix in EXPECTED[name][0]:
            assert any(r["name"].startswith(prefix) for r in records), (prefix, report["records"])
        assert {r["peer"] for r in records if r["peer"]} >= EXPECTED[name][1]
    for record in report["records"]:
        check_record(record)


class TestStreamingBenchmarks:
    """The streaming side's benchmarks (a class of its own: xdist's loadscope runs it beside the other half)."""

    def test_run_tiny_and_write_well_formed_records(self, tmp_path: Path) -> None:
        names = ["ingest", "soak", "resubscribe"]
        report = run_all(tmp_path, names, timeout=600)
        check_report(report, names)
        details = report["benchmarks"]
        assert details["ingest"]["details"]["order_violations"] == 0
        assert all(r["ceiling_events"] > 0 for r in details["ingest"]["details"]["streamer_runs"])
        # the blast mixes fills (with their commissions) and account values in, and they reach the spool
        assert all(
            r["executions"] > 0 and r["account_values"] > 0 for r in details["ingest"]["details"]["streamer_runs"]
        )
        assert details["soak"]["details"]["simulator"]["order_violations"] == 0
        assert (
            details["resubscribe"]["details"]["orders"] == 0
            and details["resubscribe"]["details"]["resubscriptions"] == 1
        )


class TestLakeAndDailyBenchmarks:
    """The lake and daily-computation benchmarks."""

    def test_run_tiny_and_write_well_formed_records(self, tmp_path: Path) -> None:
        names = ["sensor_tick", "analytics", "risk_grid", "table_health", "backfill"]
        report = run_all(tmp_path, names, timeout=600)
        check_report(report, names)
        details = report["benchmarks"]
        # what was measured is what was asked for (the scripts verify row counts themselves; spot-check here)
        assert details["sensor_tick"]["details"]["1000"]["rows_read"] == [1000]
        assert details["table_health"]["details"]["rows"] == 500
        assert details["backfill"]["details"]["materialized_partitions"] == {
            "eod_positions": 3,
            "daily_pnl": 3,
            "exposure": 3,
            "book_pnl": 3,
            "position_events": 3,
            "pnl_explain": 3,
            "risk_scenarios": 3,
            "expiry_ladder": 3,
            "account_eod": 3,
            "account_pnl": 3,
        }
        # every analytics implementation: its own child's peak RSS and every timed repeat
        for impl in ("ours (polars)", "DuckDB SQL", "pandas"):
            found = details["analytics"]["details"]["20000"][impl]
            assert found["peak_rss_bytes"] > 0 and len(found["times_s"]) == 1, found


# slow: a second dagster dev just for the latency smoke; make bench runs the real thing.
@pytest.mark.e2e
@pytest.mark.slow
def test_latency_benchmark_runs_against_a_real_dagster_dev(tmp_path: Path) -> None:
    report = run_all(tmp_path, ["latency"], timeout=600)
    check_report(report, ["latency"])
    details = report["benchmarks"]["latency"]["details"]
    assert details["rows"] > 0 and details["simulator"]["order_violations"] == 0
