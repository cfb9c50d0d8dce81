"""book_pnl end to end: simulator -> streamer -> spool -> Delta -> eod_positions, daily_pnl, book_pnl, compared with
the simulator's statement truth (prior q x (mark_D - mark_{D-1}) x m + sum q_i x (mark_D - p_i) x m - commissions)
to the cent, and with daily_pnl's average-cost figure (the blocking comparison)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from v6_assets.contracts.money import HALF_CENT, amounts_agree
from v6_assets.gateway_sim import GatewaySimulator, parse_scenario
from v6_assets.gateway_sim.scenario_model import Scenario
from v6_assets.gateway_sim.statements import flex_statement_xml
from v6_assets.ib import IBPositionStreamer, Spool, StreamerSettings
from v6_assets.ib.streamer import discard_process_streamer
from v6_assets.lake import Lake
from v6_assets.pipeline.book import refresh_book_pnl, statement_against_pnl
from v6_assets.pipeline.daily import MissingUpstreamError, refresh_daily_pnl, refresh_eod_positions
from v6_assets.pipeline.ingest import drain_spool_to_lake
from v6_assets.pipeline.statements import ingest_statement, refresh_reconciliation

CLIENT_ID = 72
DAYS = [date(2025, 3, 3), date(2025, 3, 4)]
SCENARIO = """
name: book
seed: 9
clock: {start: "2025-03-03T09:25:00-05:00", speed: 3000, min_real_interval_s: 0.02, tick_real_s: 0.02}
accounts: [{id: DU1, base_currency: USD}, {id: DU2, base_currency: EUR, fx_rates: {USD: 0.9231}}]
underlyings: [{symbol: XYZ, spot: 100.0, vol: 0.000001}]
contracts:
  - {con_id: 11, symbol: XYZ, sec_type: OPT, expiry: "20250321", strike: 100, right: C}
  - {con_id: 12, symbol: XYZ, sec_type: OPT, expiry: "20250321", strike: 95, right: C}
  - {con_id: 13, symbol: XYZ, sec_type: OPT, expiry: "20250304", strike: 105, right: P, multiplier: 50}
  - {con_id: 14, symbol: XYZ, sec_type: OPT, expiry: "20250321", strike: 90, right: P}
positions:
  - {account: DU1, con_id: 12, qty: 3, avg_cost: 480.0}
  - {account: DU2, con_id: 13, qty: -2, avg_cost: 300.0}
events:
  - {kind: mark, after: 0, con_id: 11, price: 2.0}
  - {kind: trade, session: 0, time: "10:00", account: DU1, con_id: 11, qty: 10, price: 1.5, commission: 1.0}
  - {kind: trade, session: 0, time: "10:30", account: DU1, con_id: 11, qty: -4, price: 1.8, commission: 0.6}
  - {kind: trade, session: 0, time: "11:00", account: DU2, con_id: 14, qty: 2, price: 3.0, commission: 0.5}
  - {kind: trade, session: 0, time: "11:30", account: DU2, con_id: 14, qty: -2, price: 3.4, commission: 0.5}
  - {kind: mark, session: 0, time: "15:00", con_id: 11, price: 2.5}
  - {kind: mark, session: 1, time: "10:00", con_id: 11, price: 3.0}
  - {kind: trade, session: 1, time: "11:00", account: DU1, con_id: 11, qty: -4, price: 2.8, commission: 0.6,
     commission_delay_s: 3600}
  - {kind: trade, session: 1, time: "11:30", account: DU1, con_id: 12, qty: -1, price: 4.0, commission: 0.7}
  - {kind: correct_execution, session: 1, time: "11:40", account: DU1, con_id: 12, price: 4.1}
"""


@dataclass
class Run:
    lake: Lake
    truth: list[dict[str, Any]]
    scenario: Scenario


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    home = tmp_path_factory.mktemp("book")
    scenario = parse_scenario(yaml.safe_load(SCENARIO))
    with GatewaySimulator(scenario, port=0).running() as sim:
        settings = StreamerSettings(port=sim.port, client_id=CLIENT_ID, home=home, connect_timeout_s=2.0,
                                    portfolio_rotation_s=0.2)  # type: ignore[call-arg]  # fmt: skip
        try:
            IBPositionStreamer().ensure_started(settings, clock=sim.clock.now)
            assert sim.wait_sim_time(datetime.fromisoformat("2025-03-04T16:30:00-05:00"), timeout=90)
        finally:
            discard_process_streamer()
        truth = list(sim.truth["eod"])
        assert sim.order_violations() == 0
    lake = Lake(str(home / "lake"))
    with Spool(settings.spool_path) as spool:
        drain_spool_to_lake(spool, lake, settings.stream_id)
    refresh_eod_positions(lake, DAYS)
    refresh_daily_pnl(lake, DAYS)
    refresh_book_pnl(lake, DAYS)
    yield Run(lake, truth, scenario)


def _book(run: Run) -> dict[tuple[str, str, int], dict[str, Any]]:
    frame = run.lake.read_sessions("book_pnl", DAYS)
    return {(str(r["trade_date"]), r["account"], r["con_id"]): r for r in frame.iter_rows(named=True)}


def test_statement_pnl_equals_simulator_truth_to_the_cent(run: Run) -> None:
    book = _book(run)
    compared = 0
    for entry in run.truth:
        row = book[(entry["session"], entry["account"], entry["con_id"])]
        if entry["daily_pnl"] is None:  # the baseline session of a position held before the stream
            assert row["statement_pnl"] is None and "baseline" in row["reason"], str(row)
            continue
        assert row["statement_pnl"] is not None, str(row)
        assert amounts_agree(row["statement_pnl"], entry["daily_pnl"]), (row, entry)
        assert amounts_agree(row["commissions"], entry["commissions"])
        compared += 1
    assert compared >= 5  # open + partial close, round trip, next-day partial close with a correction, expiry


def test_statement_and_average_cost_pnl_agree_and_the_expiry_is_named(run: Run) -> None:
    comparison = statement_against_pnl(run.lake, DAYS, HALF_CENT)
    # 3 positions of the second session against the average-cost pnl, and the 2 opened in the stream's first session
    # (a baseline for daily_pnl, which carries IB's own daily PnL there) against IB's figure
    assert comparison.compared == 5 and comparison.passed, (comparison.compared, comparison.off)
    sources = run.lake.read_sessions("book_pnl", DAYS)["pnl_source"].value_counts()
    assert dict(sources.iter_rows()) == {"daily_pnl:average_cost": 3, "daily_pnl:ib_daily": 4}
    book = _book(run)
    expired = book[("2025-03-04", "DU2", 13)]
    assert "expiry" in expired["reason"] and expired["position"] == 0 and expired["executions"] == 0
    corrected = book[("2025-03-04", "DU1", 12)]
    assert corrected["executions"] == 1 and corrected["executed_quantity"] == -1
    # the correction's price, not the first revision's: 1 sold at 4.10
    assert amounts_agree(corrected["transaction_mtm"], -1 * (corrected["mark"] - 4.1) * 100)


def test_a_session_without_daily_pnl_fails(run: Run, tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    eod = run.lake.read_sessions("eod_positions", DAYS)
    lake.overwrite_sessions("eod_positions", eod, DAYS)
    with pytest.raises(MissingUpstreamError, match="daily_pnl for 2025-03-03"):
        refresh_book_pnl(lake, DAYS)
    assert not lake.exists("book_pnl") or lake.read_sessions("book_pnl", DAYS).height == 0


def test_ibs_statements_reconcile_exactly_with_the_stream_built_book(run: Run) -> None:
    """Issue 19's second ground truth: two accounts (one EUR-based holding USD options), a same-day round trip, an
    execution correction, a commission that arrives an hour late, an expiry: every check agrees, and the trades are
    matched by exec id to what the stream stored (the corrected revision's price)."""
    trades_compared = 0
    for day in DAYS:
        xml = flex_statement_xml(run.scenario, run.truth, day)
        outcomes = ingest_statement(run.lake, xml, file_name=f"{day}.xml", allowed_accounts=("DU1", "DU2"),
                                    today=date(2025, 3, 5), now=datetime(2025, 3, 5, 12, 0, tzinfo=UTC))  # fmt: skip
        assert {o.status for o in outcomes} == {"new"}
        result = refresh_reconciliation(run.lake, day)
        assert result.by_exec_id
        rec = result.reconciliation
        assert rec.blocking().height == 0, [
            (r["field"], r["ours"], r["theirs"], r["cause"]) for r in rec.blocking().to_dicts()
        ]
        assert all(v.startswith("agrees") for v in rec.verdicts().values()), rec.verdicts()
        trades_compared += rec.compared["trades"]
    # 5 fills, each compared by position change and by exec id (the correction too)
    assert trades_compared >= 5
    mtm = run.lake.read_sessions("statement_mtm", DAYS)
    assert set(mtm.filter(mtm["account"] == "DU2")["fx_rate_to_base"].to_list()) == {0.9231}
