"""Scenario validation (bad input gets a clear error) and the ``v6-gateway-sim`` console script."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from ib_async import IB

from v6_assets.gateway_sim import ScenarioError, load_scenario, parse_scenario
from v6_assets.gateway_sim.scenario import parse_expiry
from v6_assets_tests.gateway_sim.helpers import HAND_SCENARIO

CLI = Path(sys.executable).parent / "v6-gateway-sim"


def _hand(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(HAND_SCENARIO)
    data.update(changes)
    return data


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"accounts": []}, "at least one account"),
        ({"clock": {"start": "2025-03-03T09:00:00"}}, "has no time zone"),
        ({"clock": {"start": "2025-03-03T09:00:00-05:00", "speed": -1}}, "clock.speed"),
        ({"clock": {"start": "2025-03-03T09:00:00-05:00", "sped": 1}}, "unknown fields ['sped']"),
        ({"underlyings": [{"symbol": "XYZ", "spot": float("nan"), "vol": 0.2}]}, "not finite"),
        ({"positions": [{"account": "DU9", "con_id": 11, "qty": 1, "avg_cost": 1.0}]}, "unknown account 'DU9'"),
        ({"positions": [{"account": "DU1", "con_id": 99, "qty": 1, "avg_cost": 1.0}]}, "unknown con_id 99"),
        ({"positions": [{"account": "DU1", "con_id": 11, "qty": 0, "avg_cost": 1.0}]}, "qty must not be 0"),
        (
            {
                "events": [
                    {
                        "kind": "trade",
                        "session": 0,
                        "time": "17:00",
                        "account": "DU1",
                        "con_id": 11,
                        "qty": 1,
                        "price": 1.0,
                    }
                ]
            },
            "outside regular hours",
        ),
        ({"events": [{"kind": "explode", "after": 1}]}, "kind 'explode'"),
        ({"events": [{"kind": "stall", "after": 1}]}, "missing required field 'seconds'"),
        ({"events": [{"kind": "error"}]}, "give one of 'at', 'after' or 'session'"),
        ({"events": [{"kind": "malformed", "at": "2025-03-01T00:00:00+00:00"}]}, "before the clock start"),
        ({"nastiness": {"sentinels": True}}, "nastiness: unknown fields"),
    ],
)
def test_bad_scenarios_get_clear_errors(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ScenarioError, match=re.escape(message)):
        parse_scenario(_hand(**changes))


def test_bad_contracts_and_expiries() -> None:
    bad_right = _hand()
    bad_right["contracts"][0]["right"] = "X"
    with pytest.raises(ScenarioError, match=r"contracts\[0\]: right must be C or P"):
        parse_scenario(bad_right)
    bad_multiplier = _hand()
    bad_multiplier["contracts"][0]["multiplier"] = "ten"
    with pytest.raises(ScenarioError, match="multiplier 'ten' is not a number"):
        parse_scenario(bad_multiplier)
    with pytest.raises(ScenarioError, match="bad expiry"):
        parse_expiry("2025-03-21", "x")
    with pytest.raises(ScenarioError, match="unknown time zone"):
        parse_expiry("20250322 05:00:00 Mars/Olympus", "x")
    # IB's time-and-zone form: the Shanghai morning after is the New York expiry day
    assert parse_expiry("20230624 04:00:00 Asia/Shanghai", "x") == datetime(2023, 6, 23, 20, 0, tzinfo=UTC)
    with pytest.raises(ScenarioError, match="no built-in scenario 'nope'"):
        load_scenario("nope")
    with pytest.raises(ScenarioError, match="does not exist"):
        load_scenario(Path("/nonexistent/scenario.yaml"))


def test_builtin_scenarios_load() -> None:
    demo = load_scenario("demo", now=datetime(2025, 6, 18, 12, tzinfo=UTC))
    assert demo.clock.start == datetime(2025, 6, 4, 13, 0, tzinfo=UTC)  # 10 sessions before 06-18, 09:00 NY
    assert len(demo.accounts) == 3 and {c.sec_type for c in demo.contracts.values()} == {"OPT", "FOP", "STK"}
    assert {c.multiplier for c in demo.contracts.values()} >= {50.0, 103.0, 100.0}
    reference = load_scenario("reference")
    assert {e.kind for e in reference.events} == {
        "trade", "underlying", "mark", "expire", "exercise", "assign", "error", "stall", "malformed", "truncated",
        "disconnect", "refuse",
    }  # fmt: skip


# ``v6 sim`` is the same simulator as ``v6-gateway-sim`` (kept as an alias): both are served to a real client.
COMMANDS = {"v6-gateway-sim": [str(CLI)], "v6 sim": [str(CLI.with_name("v6")), "sim"]}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_cli_serves_demo_to_ib_async(tmp_path: Path, command: str) -> None:
    truth, record = tmp_path / "truth", tmp_path / "requests.jsonl"
    proc = subprocess.Popen(
        [*COMMANDS[command], "--scenario", "demo", "--port", "0", "--speed", "3000", "--truth-out", str(truth),
         "--record", str(record)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        match = re.fullmatch(r"listening on 127\.0\.0\.1:(\d+)", line)
        assert match, line
        ib = IB()
        ib.connect("127.0.0.1", int(match.group(1)), clientId=11, readonly=True, account="DU1000002", timeout=10)
        assert {p.account for p in ib.positions()} == {"DU1000001", "DU1000002", "DU1000003"}
        assert {item.account for item in ib.portfolio()} == {"DU1000002"}
        ib.disconnect()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    sent = [json.loads(x) for x in (truth / "sent.jsonl").read_text().splitlines()]
    assert {e["kind"] for e in sent} >= {"position", "portfolio"} and {e["client_id"] for e in sent} == {11}
    summary = json.loads((truth / "summary.json").read_text())
    assert summary["scenario"] == "demo" and summary["order_violations"] == 0
    requests = [json.loads(x) for x in record.read_text().splitlines()]
    assert [r["msg_id"] for r in requests][:2] == [None, 71] and requests[1]["client_id"] == 11


def test_cli_rejects_a_bad_scenario(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("accounts: []\n")
    result = subprocess.run(
        [str(CLI), "--scenario", str(bad), "--port", "0"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert "at least one account" in result.stderr and result.stdout == ""
