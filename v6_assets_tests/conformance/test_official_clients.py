"""Conformance: IB's own Python client (two versions) and ib_async (at its min and max) against the demo scenario.

Each client runs as a user would run it -- its own process, the official ones in their own virtualenvs with
pinned versions (``clients/*.txt``, built once under ``.venv-conformance/`` and reused) -- connects over a
loopback socket to the simulator, asks for positions, an account's values and portfolio rows, PnL, PnL single
and model greeks, and reports what it decoded as JSON. The test compares that with the simulator's truth (what
it sent to that client id): no decode error, no error code, every value received equal to what was sent, in order.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
import venv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from v6_assets.gateway_sim import GatewaySimulator, protocol, wire
from v6_assets.gateway_sim.protocol import Out

HERE = Path(__file__).parent
REPO = HERE.parent.parent
VENVS = REPO / ".venv-conformance"
MAX_SECONDS = 20.0


@dataclass(frozen=True)
class ClientRun:
    name: str
    client_id: int
    expected_version: int
    requirements: str | None = None  # an official client: its pinned requirements file under clients/
    versions: tuple[int, int] | None = None  # ib_async: the client version range it offers
    max_version: int | None = None  # an official client made to offer less than it can (the version sweep)
    min_seconds: float = 3.0  # long enough to see the streams' updates after the initial answers


CLIENTS = (
    ClientRun("ibapi-9.81", 71, 157, requirements="ibapi-9.81.txt"),
    ClientRun("ibapi-10.50", 72, 178, requirements="ibapi-10.50.txt"),
    ClientRun("ib_async-min", 73, 157, versions=(157, 157)),
    ClientRun("ib_async-max", 74, 178, versions=(157, 178)),
)
# Every version where a rule of the wire table changes, from both sides, decoded by an official client: 9.81 for
# v100..157 (its decoder reads integers with int()), 10.50 above (the fields 10.x added: decimals, the error's JSON).
SWEEP = tuple(
    ClientRun(f"{name}@v{version}", 80 + i, version, requirements=req, max_version=version, min_seconds=0.0)
    for i, (name, req, version) in enumerate(
        [("ibapi-9.81", "ibapi-9.81.txt", v) for v in (100, 101, 103, 126, 127, 129, 135, 150, 155, 156)]
        + [("ibapi-10.50", "ibapi-10.50.txt", v) for v in (160, 162, 163, 165, 166)]
    )
)


def client_python(requirements: str) -> Path:
    """The interpreter of the client's virtualenv, built from its requirements file when missing or stale."""
    spec = (HERE / "clients" / requirements).read_text()
    digest = hashlib.sha256(spec.encode()).hexdigest()[:16]
    home = VENVS / requirements.removesuffix(".txt")
    python = home / "bin" / "python"
    stamp = home / ".requirements-sha"
    if python.exists() and stamp.exists() and stamp.read_text() == digest:
        return python
    venv.EnvBuilder(clear=True, with_pip=True).create(home)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    done = subprocess.run(
        [*pip, "-r", str(HERE / "clients" / requirements)],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    if done.returncode != 0:
        # a failure, never a skip: a conformance test that did not run proves nothing
        pytest.fail(f"cannot install {requirements} (no package index?): {done.stderr.strip()[-300:]}")
    stamp.write_text(digest)
    return python


def _command(run: ClientRun, port: int) -> list[str]:
    timing = [str(MAX_SECONDS), str(run.min_seconds)]
    if run.requirements is not None:
        pinned = [] if run.max_version is None else [str(run.max_version)]
        return [str(client_python(run.requirements)), str(HERE / "ibapi_client.py"), str(port), str(run.client_id),
                *timing, *pinned]  # fmt: skip
    assert run.versions is not None
    return [sys.executable, str(HERE / "ib_async_client.py"), str(port), str(run.client_id), *timing,
            *map(str, run.versions)]  # fmt: skip


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[GatewaySimulator, dict[str, dict[str, Any]]]]:
    """Every client's report from one demo simulator, the clients running concurrently."""
    commands = {}
    sim = GatewaySimulator("demo")
    with sim.running():
        for run in (*CLIENTS, *SWEEP):
            commands[run.name] = _command(run, sim.port)  # builds missing virtualenvs first
        workdir = tmp_path_factory.mktemp("clients")  # not the repository: a user's program runs elsewhere
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        procs = {
            name: subprocess.Popen(cmd, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for name, cmd in commands.items()
        }
        out: dict[str, dict[str, Any]] = {}
        for name, proc in procs.items():
            stdout, stderr = proc.communicate(timeout=MAX_SECONDS + 30)
            assert proc.returncode == 0, f"{name} failed: {stderr[-2000:]}"
            out[name] = json.loads(stdout)
        yield sim, out
    summary = {name: {k: r[k] for k in ("server_version", "seconds", "message_counts")} for name, r in out.items()}
    print("\nconformance:", json.dumps(summary, indent=1))


# --- comparison with the truth
_SENTINELS = {"implied_vol": -1.0, "opt_price": -1.0, "pv_dividend": -1.0, "und_price": -1.0, "delta": -2.0,
              "gamma": -2.0, "vega": -2.0, "theta": -2.0}  # fmt: skip
FIELDS = {
    "position": ("position", "average_cost"),
    "portfolio": ("position", "market_price", "market_value", "average_cost", "unrealized_pnl", "realized_pnl"),
    "pnl_single": ("position", "daily_pnl", "unrealized_pnl", "realized_pnl", "value"),
    "pnl": ("daily_pnl", "unrealized_pnl", "realized_pnl"),
    "greeks": tuple(_SENTINELS),
    "account_value": ("value",),
}
MESSAGE = {"position": Out.POSITION_DATA, "portfolio": Out.PORTFOLIO_VALUE, "pnl_single": Out.PNL_SINGLE,
           "pnl": Out.PNL, "greeks": Out.TICK_OPTION_COMPUTATION, "account_value": Out.ACCT_VALUE}  # fmt: skip
REPORT_KEY = {"position": "positions", "portfolio": "portfolio", "pnl_single": "pnl_single", "pnl": "pnl",
              "greeks": "greeks", "account_value": "account_values"}  # fmt: skip


def _clean(name: str, value: Any) -> Any:
    """Greeks' "not computed" sentinels and None (how clients surface them) compare equal; numbers as floats."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    number = float(value)
    if name in _SENTINELS and number == _SENTINELS[name]:
        return None
    return None if math.isnan(number) else number


def _key(kind: str, row: dict[str, Any]) -> tuple[Any, ...]:
    if kind == "greeks":
        return (row["con_id"],)
    if kind == "pnl":
        return ()
    if kind == "account_value":
        return (row["account"], row["key"], row["currency"])
    return (row["account"], row["con_id"])


def _series(
    kind: str, rows: list[dict[str, Any]], fields: tuple[str, ...]
) -> dict[tuple[Any, ...], list[tuple[Any, ...]]]:
    series: dict[tuple[Any, ...], list[tuple[Any, ...]]] = {}
    for row in rows:
        series.setdefault(_key(kind, row), []).append(tuple(_clean(f, row[f]) for f in fields))
    return series


def _is_subsequence(small: list[Any], big: list[Any]) -> bool:
    it = iter(big)
    return all(any(item == other for other in it) for item in small)


def compare(sim: GatewaySimulator, run: ClientRun, report: dict[str, Any]) -> dict[str, Any]:
    """Per kind: keys received, values received, and the mismatches with what the simulator sent this client."""
    sent = [e for e in sim.truth["sent"] if e["client_id"] == run.client_id]
    result: dict[str, Any] = {}
    encoder = wire.encoder_for(report["server_version"])
    for kind, report_key in REPORT_KEY.items():
        if not encoder.has(MESSAGE[kind]):
            continue
        # the fields the message has at this version (the others are not sent: clients report None or 0)
        fields = tuple(f for f in FIELDS[kind] if f in encoder.layout(MESSAGE[kind]).fields)
        truth = _series(kind, [e for e in sent if e["kind"] == kind], fields)
        settled = {_key(kind, e) for e in sent if e["kind"] == kind and e["wall_time"] < report["finished_at"] - 0.5}
        got = _series(kind, report[report_key], fields)
        # ib_async keeps only the latest greeks per ticker: a subsequence; everything else arrives one by one
        exact = not (kind == "greeks" and report["client"] == "ib_async")
        bad = []
        for key, values in got.items():
            expected = truth.get(key, [])
            ok = values == expected[: len(values)] if exact else _is_subsequence(values, expected)
            if not ok:
                bad.append({"key": key, "received": values[:3], "sent": expected[:3]})
        result[kind] = {
            "keys": len(got),
            "values": sum(map(len, got.values())),
            "sent_keys": len(truth),
            "missing": sorted(settled - got.keys()),
            "bad": bad,
        }
    return result


def check(run: ClientRun, sim: GatewaySimulator, report: dict[str, Any]) -> None:
    assert report["server_version"] == run.expected_version
    assert report["decode_errors"] == [] and report["loop_died"] is None
    assert report["connected_at_end"]
    # only the error drawn on purpose (an unknown contract), decoded whole
    assert [e["code"] for e in report["errors"] if not 2100 <= e["code"] < 2200] == [200]
    assert report["errors"][0]["message"].startswith("No security definition")
    result = compare(sim, run, report)
    print(run.name, report["server_version"], report["message_counts"], json.dumps(result))
    for kind, figures in result.items():
        assert figures["bad"] == [], (kind, figures["bad"][:2])
        assert figures["values"] > 0, f"no {kind} received"
    # every position, portfolio row and account value sent (before the client left) arrived; so did every PnL
    # single and greeks asked for
    for kind in ("position", "portfolio", "account_value", "pnl_single", "greeks"):
        if kind in result:
            assert result[kind]["missing"] == [], kind
    if run.expected_version >= protocol.MIN_VERSION_PNL:
        assert result["pnl_single"]["keys"] == len(report["wanted"]["pnl_single"]) > 0
        assert result["pnl"]["values"] > 0
    assert result["greeks"]["keys"] == len(report["wanted"]["greeks"]) > 0


@pytest.mark.parametrize("run", CLIENTS, ids=[c.name for c in CLIENTS])
def test_client_decodes_everything_and_agrees_with_the_truth(
    run: ClientRun, reports: tuple[GatewaySimulator, dict[str, dict[str, Any]]]
) -> None:
    check(run, *reports[:1], reports[1][run.name])


@pytest.mark.parametrize("run", SWEEP, ids=[c.name for c in SWEEP])
def test_official_client_at_every_rule_boundary(
    run: ClientRun, reports: tuple[GatewaySimulator, dict[str, dict[str, Any]]]
) -> None:
    check(run, *reports[:1], reports[1][run.name])
