"""``v6 replay`` of a scenario computed by hand: the daily PnL table equals the hand-computed figures to the cent."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

from click.testing import CliRunner

from v6_assets.cli import main
from v6_assets.contracts.money import amounts_agree
from v6_assets.ib.streamer import discard_process_streamer
from v6_assets.lake import Lake

SCENARIO = Path(__file__).with_name("scenarios") / "hand_computed.yaml"
# (session, account) -> expected daily PnL; None = the baseline session (no previous state of ours: IB's own daily
# PnL is carried, labelled pnl_source "ib_daily", not a figure we computed)
EXPECTED = {
    (date(2025, 3, 3), "DU3000001"): None,
    (date(2025, 3, 4), "DU3000001"): 1500.00,
    (date(2025, 3, 5), "DU3000001"): 147.40,
}


def test_replay_of_a_hand_computed_scenario_is_right_to_the_cent(tmp_path: Path) -> None:
    try:
        result = CliRunner().invoke(
            main, ["replay", str(SCENARIO), "--sessions", "3", "--out", str(tmp_path), "--json"], catch_exceptions=False
        )
    finally:
        discard_process_streamer()
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["run_success"] and doc["failed_checks"] == []
    assert doc["sessions"] == [d.isoformat() for d in sorted({s for s, _ in EXPECTED})]
    got = {(date.fromisoformat(r["trade_date"]), r["account"]): r for r in doc["pnl_by_account"]}
    assert set(got) == set(EXPECTED)
    for key, expected in EXPECTED.items():
        if expected is None:
            baseline = CliRunner().invoke(
                main, ["pnl", "--session", key[0].isoformat(), "--json", "--lake", doc["lake"]]
            )
            rows = json.loads(baseline.stdout)["rows"]
            assert len(rows) == 2 and all(r["is_baseline"] and r["pnl_source"] == "ib_daily" for r in rows), rows
            assert amounts_agree(got[key]["pnl"], sum(r["ib_daily_pnl"] for r in rows)), got[key]
        else:
            assert got[key]["unknown"] == 0, got[key]
            assert amounts_agree(got[key]["pnl"], expected), (key, got[key]["pnl"], expected)

    positions = CliRunner().invoke(main, ["pnl", "--session", "2025-03-05", "--json", "--lake", doc["lake"]])
    rows = {r["con_id"]: r["pnl"] for r in json.loads(positions.stdout)["rows"]}
    assert amounts_agree(rows[1001], -252.60) and amounts_agree(rows[1002], 400.00), rows


def test_replay_refuses_a_lake_that_already_holds_a_stream(tmp_path: Path) -> None:
    Lake(str(tmp_path / "lake")).ensure_table("position_updates")  # a real (empty) Delta table of a stream
    result = CliRunner().invoke(main, ["replay", str(SCENARIO), "--out", str(tmp_path)], catch_exceptions=False)
    assert result.exit_code == 1, result.output
    assert "already holds streamed rows" in result.output


def test_replay_of_a_broken_scenario_is_a_usage_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: broken\ncontracts: [{con_id: -1}]\n")
    result = CliRunner().invoke(main, ["replay", str(broken), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "SCENARIO" in result.output
