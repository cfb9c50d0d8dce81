"""The shared benchmark helpers: records, percentiles, the table, peak memory from the OS."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.common import (
    RECORD_KEYS,
    BenchResult,
    Record,
    current_rss_bytes,
    finish,
    machine_info,
    peak_rss_bytes,
    percentile,
    ratio_of,
    table,
)


def test_record_has_exactly_the_issue_keys_and_rounds_figures() -> None:
    record = Record("x", 1234.56789, "s", "peer", 2469.1357, ratio_of(1234.56789, 2469.1357), "ratio < 1", True)
    data = record.as_dict()
    assert tuple(data) == RECORD_KEYS
    assert data["value"] == 1234.6 and data["ratio"] == 0.5


def test_ratio_of_unknown_or_zero_peer_is_none() -> None:
    assert ratio_of(1.0, 0.0) is None
    assert ratio_of(None, 1.0) is None
    assert ratio_of(3.0, 2.0) == 1.5


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([7.0], 95) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)


def test_table_lists_every_record_and_flags_misses() -> None:
    records = [
        Record("fast", 0.5, "s", target="<= 1 s", met=True),
        Record("slow", 2.0, "s", "duckdb", 1.0, 2.0, "ratio < 1.0", False),
        Record("info", None, "-"),
    ]
    text = table(records)
    lines = text.splitlines()
    assert len(lines) == 2 + len(records)
    assert "| slow" in lines[3] and "NO" in lines[3] and "2.00" in lines[3]
    assert "yes" in lines[2]


def test_peak_and_current_rss_come_from_the_os() -> None:
    before = peak_rss_bytes()
    block = bytearray(64 * 2**20)  # touched: really resident
    for i in range(0, len(block), 4096):
        block[i] = 1
    assert current_rss_bytes() >= 64 * 2**20
    assert peak_rss_bytes() >= max(before, 64 * 2**20)
    del block


def test_machine_info_and_json_output(tmp_path: Path) -> None:
    info = machine_info()
    assert info["cores"] >= 1 and info["memory_bytes"] > 0 and info["versions"]["deltalake"]
    result = BenchResult("demo", [Record("a", 1.0, "s")], {"k": 1})
    out = tmp_path / "r.json"
    finish(result, out)
    data = json.loads(out.read_text())
    assert data == {"bench": "demo", "records": [Record("a", 1.0, "s").as_dict()], "details": {"k": 1}}
