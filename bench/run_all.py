"""``make bench`` / ``make bench-quick``: run the benchmarks, print one table, write ``bench/results/latest.json``.

    .venv/bin/python -m bench.run_all [--quick] [--only NAME ...] [--soak] [--soak-minutes 30] [--out PATH]

Each benchmark runs in its own process (``python -m bench.<name> --json FILE``) so its peak RSS, its streamer
singleton and a crash are its own. A benchmark that fails is reported (its error in the JSON, a row in the table)
and the others still run. The exit status is 0 even when targets are missed: this reports, it does not judge
(a benchmark that could not run at all gives exit status 1 only with ``--strict``).

Default run: ``FULL`` below (ingest, latency, sensor_tick, analytics, ..., demo_start, seed). ``--quick``: reduced
ingest, sensor_tick and analytics (under 2 minutes). ``--soak`` adds the 30-minute soak.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import RESULTS_DIR, machine_info, table

PROJECT_ROOT = Path(__file__).resolve().parents[1]
FULL: tuple[str, ...] = (
    "ingest",
    "latency",
    "sensor_tick",
    "analytics",
    "risk_grid",
    "backfill",
    "table_health",
    "resubscribe",
    "replay",
    "demo_start",
    "seed",
)
QUICK: tuple[str, ...] = ("ingest", "sensor_tick", "analytics", "risk_grid")
KNOWN: tuple[str, ...] = (*FULL, "soak")
# Tiny configurations for the smoke tests (v6_assets_tests/bench): every code path, seconds each, figures meaningless.
SMOKE_ARGS: dict[str, list[str]] = {
    "ingest": ["--messages", "2000", "--rounds", "1", "--positions", "50"],
    "latency": ["--seconds", "15", "--positions", "25", "--rate", "100"],
    "sensor_tick": ["--sizes", "1000", "--repeats", "1"],
    "analytics": ["--sizes", "20000", "--repeats", "1"],
    "risk_grid": ["--positions", "200", "--repeats", "1"],
    "backfill": ["--sessions", "3", "--rows", "3000"],
    "table_health": ["--commits", "10", "--rows-per-batch", "50", "--repeats", "1"],
    "soak": ["--minutes", "0.25", "--rate", "800"],
    "demo_start": ["--sessions", "2", "--skip-fresh"],
    "resubscribe": ["--positions", "40"],
    "replay": ["--sessions", "2"],
    "seed": ["--sessions", "2"],
}
# Generous per-benchmark limits (wall seconds) so a hung benchmark cannot hang make bench.
TIMEOUT_S: dict[str, float] = {
    "ingest": 900,
    "latency": 1800,
    "sensor_tick": 900,
    "analytics": 3600,
    "risk_grid": 600,
    "backfill": 3600,
    "table_health": 3600,
    "soak": 7200,
    "demo_start": 1800,
    "resubscribe": 1200,
    "replay": 900,
    "seed": 900,
}


def run_one(name: str, quick: bool, extra: list[str], workdir: Path) -> dict[str, Any]:
    """Run ``bench.<name>`` in a child process; its JSON result plus wall time, exit status and output tail."""
    out = workdir / f"{name}.json"
    cmd = [sys.executable, "-m", f"bench.{name}", "--json", str(out), *(["--quick"] if quick else []), *extra]
    print(f"\n== {name}: {' '.join(cmd[1:])}", flush=True)
    load_before = [round(x, 2) for x in os.getloadavg()]  # the machine is shared: each figure with its load
    started = time.perf_counter()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        proc = subprocess.run(
            cmd, cwd=PROJECT_ROOT, env=env, timeout=TIMEOUT_S[name], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        output = proc.stdout.decode(errors="replace")
        returncode: int | None = proc.returncode
    except subprocess.TimeoutExpired as exc:
        output = (exc.stdout or b"").decode(errors="replace") + f"\n<timed out after {TIMEOUT_S[name]:.0f} s>"
        returncode = None
    seconds = time.perf_counter() - started
    print(output.rstrip(), flush=True)
    result: dict[str, Any] = {"bench": name, "records": [], "details": {}}
    if out.exists():
        result = json.loads(out.read_text())
    if returncode != 0 or not out.exists():
        result["error"] = f"exit status {returncode}; last output:\n{output[-3000:]}"
    result["wall_s"] = round(seconds, 1)
    result["load_before"] = load_before
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="reduced ingest, sensor_tick and analytics (< 2 min)")
    parser.add_argument("--only", nargs="+", choices=KNOWN, default=None, help="run only these benchmarks")
    parser.add_argument("--soak", action="store_true", help="also run the soak (30 minutes by default)")
    parser.add_argument("--soak-minutes", type=float, default=30.0)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "latest.json")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a benchmark could not run")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (the smoke tests); figures mean nothing")
    args = parser.parse_args(argv)

    names = list(args.only or (QUICK if args.quick else FULL))
    if args.soak and "soak" not in names:
        names.append("soak")
    started_at = datetime.now(UTC)
    machine = machine_info()
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="v6-bench-") as tmp:
        for name in names:
            extra = ["--minutes", str(args.soak_minutes)] if name == "soak" else []
            if args.smoke:
                extra = SMOKE_ARGS[name]
            results.append(run_one(name, args.quick and not args.smoke, extra, Path(tmp)))

    records = [r for res in results for r in res["records"]]
    failed = {res["bench"]: res["error"] for res in results if "error" in res}
    for name in failed:
        records.append({"name": f"{name}: DID NOT RUN", "value": None, "unit": "-", "peer": None,
                        "peer_value": None, "ratio": None, "target": None, "met": None})  # fmt: skip
    report = {
        "command": "smoke"
        if args.smoke
        else f"python -m bench.run_all --only {' '.join(names)}"
        if args.only
        else "make bench-quick"
        if args.quick
        else "make bench",
        "smoke": args.smoke,
        "argv": sys.argv[1:] if argv is None else argv,
        "started_at": started_at.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "quick": args.quick,
        "machine": machine,
        "records": records,
        "benchmarks": {res["bench"]: {k: v for k, v in res.items() if k != "records"} for res in results},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str))

    print("\n" + "=" * 100)
    mem = machine.get("memory_bytes") or 0
    print(
        f"{report['command']} on {machine['cores']} cores, {mem / 2**30:.1f} GiB, load {machine['load_average_1_5_15']}"
        f", python {machine['python']}, polars {machine['versions'].get('polars')}, duckdb "
        f"{machine['versions'].get('duckdb')}, pandas {machine['versions'].get('pandas')}"
    )
    print(table(records))
    missed = [r["name"] + (f" vs {r['peer']}" if r["peer"] else "") for r in records if r["met"] is False]
    if missed:
        print("targets missed: " + "; ".join(missed))
    for name, error in failed.items():
        print(f"{name} did not complete: {error.splitlines()[0]}")
    print(f"written to {args.out}")
    return 1 if (args.strict and failed) else 0


if __name__ == "__main__":
    sys.exit(main())
