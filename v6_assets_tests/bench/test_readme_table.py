"""The README's performance table is generated (``python -m bench.readme_table``), never typed: the committed README
equals what the committed snapshot ``bench/results/readme.json`` renders to."""

from __future__ import annotations

import json
from typing import Any

import pytest

from bench import readme_table


def test_readme_equals_the_table_generated_from_the_committed_snapshot() -> None:
    snapshot = json.loads(readme_table.SNAPSHOT.read_text())
    assert snapshot["records"], "the snapshot holds no figures"
    assert readme_table.readme_block(readme_table.README.read_text()) == readme_table.render(snapshot)
    assert readme_table.main(["--check"]) == 0


def _report() -> dict[str, Any]:
    record = {"name": "analytics eod+pnl+exposure, 1,000,000 updates", "value": 0.5, "unit": "s", "peer": "pandas",
              "peer_value": 1.0, "ratio": 0.5, "target": "ratio < 1.0", "met": True}  # fmt: skip
    timing = {"median_s": 0.5, "times_s": [0.4, 0.5, 0.7], "min_s": 0.4, "max_s": 0.7}
    return {
        "command": "make bench",
        "started_at": "2026-12-02T12:00:00+00:00",
        "argv": ["--out", "somewhere"],
        "machine": {"cores": 2, "memory_bytes": 2**34, "load_average_1_5_15": [3.0, 2.5, 2.0], "platform": "x"},
        "records": [record, {**record, "peer": "DuckDB SQL", "peer_value": 2.0, "ratio": 0.25, "met": False}],
        "benchmarks": {"analytics": {"wall_s": 60.0, "load_before": [3.0, 2.5, 2.0],
                                     "details": {"1000000": {"ours (polars)": timing, "pandas": timing}}}},
    }  # fmt: skip


def test_render_groups_peers_shows_spread_load_and_a_missed_target() -> None:
    snapshot = readme_table.snapshot_of(_report())
    assert "argv" not in snapshot and "platform" not in snapshot["machine"]  # no paths in the committed file
    block = readme_table.render(snapshot)
    rows = [line for line in block.splitlines() if line.startswith("| analytics")]
    assert len(rows) == 1  # one row per figure, both peers in it
    assert "0.5 s (median of 3, 0.4-0.7)" in rows[0]
    assert "pandas 1 (median of 3, 0.4-0.7), ratio 0.50; DuckDB SQL 2, ratio 0.25" in rows[0]
    assert rows[0].endswith("| NO |")  # one peer missed: the row is not met
    assert "load average at the start 3.00, 2.50, 2.00" in block


def test_rewrite_replaces_only_the_marker_block() -> None:
    text = f"before\n{readme_table.START}\nold\n{readme_table.END}\nafter\n"
    out = readme_table.rewrite(text, f"{readme_table.START}\nnew\n{readme_table.END}")
    assert out == f"before\n{readme_table.START}\nnew\n{readme_table.END}\nafter\n"
    with pytest.raises(ValueError):
        readme_table.readme_block("no markers here")


def test_a_benchmark_run_alone_replaces_its_rows_in_place_and_is_named() -> None:
    report = _report()
    other = {"name": "sensor tick, drain+commit 1,000", "value": 0.1, "unit": "s", "peer": None, "peer_value": None,
             "ratio": None, "target": None, "met": None}  # fmt: skip
    report["records"] = [*report["records"], other]
    alone = {"bench": "analytics", "details": {"load_average_before": [9.0, 8.0, 7.0]},
             "records": [{**report["records"][0], "value": 0.25}]}  # fmt: skip
    merged = readme_table.merge_bench(report, alone, "python -m bench.analytics (run alone)")
    assert [r["name"] for r in merged["records"]] == [alone["records"][0]["name"], other["name"]]
    assert merged["records"][0]["value"] == 0.25
    block = readme_table.render(readme_table.snapshot_of(merged))
    assert "The analytics rows come from `python -m bench.analytics (run alone)`" in block
    assert "analytics 9.0, 8.0, 7.0" in block
