"""Shared pieces of the benchmarks: the result record, timing with medians, peak memory from the OS, machine info.

Every benchmark script exposes ``run(quick: bool, **sizes) -> BenchResult`` and a ``main(argv)`` that prints its
table and, with ``--json PATH``, writes ``{"records": [...], "details": {...}}``. ``bench.run_all`` runs each one in
its own process (its peak RSS is its own) and merges the files into ``bench/results/latest.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

RESULTS_DIR = Path(__file__).resolve().parent / "results"
RECORD_KEYS: tuple[str, ...] = ("name", "value", "unit", "peer", "peer_value", "ratio", "target", "met")
VERSIONED_PACKAGES: tuple[str, ...] = (
    "dagster",
    "ib_async",
    "deltalake",
    "polars",
    "pyarrow",
    "duckdb",
    "pandas",
    "numpy",
)


@dataclass(frozen=True)
class Record:
    """One measured figure. ``peer``/``peer_value``/``ratio`` when it was measured next to a peer in the same run
    (ratio = value / peer_value); ``target`` is the goal as text and ``met`` whether ``value`` reached it (None when
    there is no target or nothing was measured)."""

    name: str
    value: float | None
    unit: str
    peer: str | None = None
    peer_value: float | None = None
    ratio: float | None = None
    target: str | None = None
    met: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("value", "peer_value", "ratio"):
            if isinstance(out[key], float):
                out[key] = _round(out[key])
        return out


def _round(x: float) -> float:
    if not math.isfinite(x) or x == 0:
        return x
    digits = max(0, 4 - math.floor(math.log10(abs(x))))
    return round(x, digits)


def ratio_of(value: float | None, peer_value: float | None) -> float | None:
    if value is None or peer_value is None or peer_value == 0:
        return None
    return value / peer_value


@dataclass
class BenchResult:
    bench: str
    records: list[Record] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def add(self, record: Record) -> Record:
        self.records.append(record)
        return record

    def as_dict(self) -> dict[str, Any]:
        return {"bench": self.bench, "records": [r.as_dict() for r in self.records], "details": self.details}


def median_time(fn: Callable[[], T], repeats: int) -> tuple[float, list[float], T]:
    """Run ``fn`` ``repeats`` times; (median seconds, every time, the last result)."""
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    times: list[float] = []
    result: T | None = None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    assert result is not None or repeats >= 1
    return statistics.median(times), times, result  # type: ignore[return-value]


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty sequence."""
    if not values:
        raise ValueError("percentile of an empty sequence")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def peak_rss_bytes(children: bool = False) -> int:
    """Peak resident set size from the kernel (getrusage: kilobytes on Linux), of this process or its reaped
    children (the largest one, grandchildren included once waited for)."""
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return int(resource.getrusage(who).ru_maxrss) * 1024


def current_rss_bytes(pid: int | None = None) -> int:
    """Resident set size now, from /proc/<pid>/status (VmRSS)."""
    path = Path(f"/proc/{pid or os.getpid()}/status")
    for line in path.read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS in {path}")


def machine_info() -> dict[str, Any]:
    mem_total = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_total = int(line.split()[1]) * 1024
    except OSError:
        pass
    versions: dict[str, str | None] = {}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_bytes": mem_total,
        "load_average_1_5_15": list(os.getloadavg()),
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "versions": versions,
    }


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def fmt_value(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def table(records: Sequence[Record | dict[str, Any]]) -> str:
    """The records as a fixed-width text table (also valid Markdown)."""
    rows = [r.as_dict() if isinstance(r, Record) else r for r in records]
    header = ["name", "value", "unit", "peer", "peer value", "ratio", "target", "met"]
    body = [
        [
            str(r["name"]),
            fmt_value(r["value"]),
            str(r["unit"]),
            r["peer"] or "-",
            fmt_value(r["peer_value"]),
            "-" if r["ratio"] is None else f"{r['ratio']:.2f}",
            r["target"] or "-",
            {True: "yes", False: "NO", None: "-"}[r["met"]],
        ]
        for r in rows
    ]
    widths = [max(len(h), *(len(row[i]) for row in body)) if body else len(h) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join([line(header), line(["-" * w for w in widths]), *(line(row) for row in body)])


def bench_argparser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="reduced sizes (what make bench-quick runs)")
    parser.add_argument("--json", type=Path, default=None, help="write the records and details here")
    return parser


def finish(result: BenchResult, json_path: Path | None) -> BenchResult:
    """Print the table and write the JSON file (when asked)."""
    print(table(result.records), flush=True)
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(result.as_dict(), indent=2, default=str))
    return result
