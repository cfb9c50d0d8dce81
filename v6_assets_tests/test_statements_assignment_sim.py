"""Issue 19's second ground-truth book in ONE scenario: two accounts (one EUR-based holding USD options), a same-day
round trip, an execution correction, a commission an hour late, a cash-settled ITM expiry and an overnight
assignment of a short put delivering 100 shares at the strike. Simulator -> unmodified ib_async streamer (real TCP,
lock-step so the assignment's option and stock legs are taken in at the same simulated instant) -> spool -> Delta ->
eod_positions, daily_pnl; then the simulator's Flex statements reconcile exactly, every check comparing something,
the trades matched by exec id and the assignment by event and quantity."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl
import pytest
import time_machine
import yaml

from v6_assets.gateway_sim import GatewaySimulator, parse_scenario
from v6_assets.gateway_sim.scenario_model import Scenario
from v6_assets.gateway_sim.statements import StatementFaults, flex_statement_xml
from v6_assets.history_seed import seed_history
from v6_assets.ib import StreamerSettings
from v6_assets.ib.streamer import discard_process_streamer
from v6_assets.lake import Lake
from v6_assets.pipeline.daily import refresh_daily_pnl, refresh_eod_positions
from v6_assets.pipeline.statements import ingest_statement, refresh_reconciliation

NY = ZoneInfo("America/New_York")
DAYS = [date(2025, 3, 3), date(2025, 3, 4)]
PINNED = datetime(2025, 3, 4, 17, 0, tzinfo=NY)  # after the second session's cut: both sessions closed
SCENARIO = """
name: book-assignment
seed: 9
clock: {start: "2025-03-03T09:25:00-05:00"}
nastiness: {physical_delivery: true}  # only ABC has a stock in the book: the XYZ options settle in cash
accounts: [{id: DU1, base_currency: USD}, {id: DU2, base_currency: EUR, fx_rates: {USD: 0.9231}}]
underlyings: [{symbol: XYZ, spot: 100.0, vol: 0.000001}, {symbol: ABC, spot: 50.0, vol: 0.000001}]
contracts:
  - {con_id: 11, symbol: XYZ, sec_type: OPT, expiry: "20250321", strike: 100, right: C}
  - {con_id: 12, symbol: XYZ, sec_type: OPT, expiry: "20250321", strike: 95, right: C}
  - {con_id: 13, symbol: XYZ, sec_type: OPT, expiry: "20250304", strike: 105, right: P, multiplier: 50}
  - {con_id: 14, symbol: XYZ, sec_type: OPT, expiry: "20250321", strike: 90, right: P}
  - {con_id: 20, symbol: ABC, sec_type: STK, primary_exchange: NYSE}
  - {con_id: 21, symbol: ABC, sec_type: OPT, expiry: "20250321", strike: 55, right: P}
positions:
  - {account: DU1, con_id: 12, qty: 3, avg_cost: 480.0}
  - {account: DU2, con_id: 13, qty: -2, avg_cost: 300.0}
  - {account: DU2, con_id: 21, qty: -1, avg_cost: 410.0}
events:
  - {kind: mark, after: 0, con_id: 11, price: 2.0}
  - {kind: trade, session: 0, time: "10:00", account: DU1, con_id: 11, qty: 10, price: 1.5, commission: 1.0}
  - {kind: trade, session: 0, time: "10:30", account: DU1, con_id: 11, qty: -4, price: 1.8, commission: 0.6}
  - {kind: trade, session: 0, time: "11:00", account: DU2, con_id: 14, qty: 2, price: 3.0, commission: 0.5}
  - {kind: trade, session: 0, time: "11:30", account: DU2, con_id: 14, qty: -2, price: 3.4, commission: 0.5}
  - {kind: mark, session: 0, time: "15:00", con_id: 11, price: 2.5}
  # the EUR account's short ABC put assigned overnight (IB's 02:00-03:00 ET processing): 100 ABC shares at 55
  - {kind: assign, session: 1, time: "02:30", account: DU2, con_id: 21}
  - {kind: mark, session: 1, time: "10:00", con_id: 11, price: 3.0}
  - {kind: trade, session: 1, time: "11:00", account: DU1, con_id: 11, qty: -4, price: 2.8, commission: 0.6,
     commission_delay_s: 3600}
  - {kind: trade, session: 1, time: "11:30", account: DU1, con_id: 12, qty: -1, price: 4.0, commission: 0.7}
  - {kind: correct_execution, session: 1, time: "11:40", account: DU1, con_id: 12, price: 4.1}
"""


@dataclass
class Book:
    lake: Lake
    truth: list[dict[str, Any]]
    scenario: Scenario


@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Book]:
    home: Path = tmp_path_factory.mktemp("assign")
    scenario = parse_scenario(yaml.safe_load(SCENARIO))
    lake = Lake(str(home / "lake"))
    with time_machine.travel(PINNED, tick=True):
        sim = GatewaySimulator(scenario, speed=12000.0, port=0, lockstep=True)
        with sim.running():
            settings = StreamerSettings(port=sim.port, client_id=73, home=home / "v6")
            try:
                seed_history(sim, settings, lake, timeout_s=120)
            finally:
                discard_process_streamer()
            truth = [dict(e) for e in sim.truth["eod"] if date.fromisoformat(e["session"]) in DAYS]
            assert sim.order_violations() == 0
    refresh_eod_positions(lake, DAYS)
    refresh_daily_pnl(lake, DAYS)
    yield Book(lake, truth, scenario)


def test_the_statements_reconcile_exactly_with_the_assignment_and_the_correction(book: Book) -> None:
    compared: dict[str, int] = {}
    for day in DAYS:
        xml = flex_statement_xml(book.scenario, book.truth, day)
        outcomes = ingest_statement(book.lake, xml, file_name=f"{day}.xml", allowed_accounts=("DU1", "DU2"),
                                    today=date(2025, 3, 5), now=datetime(2025, 3, 5, 12, 0, tzinfo=UTC))  # fmt: skip
        assert {o.status for o in outcomes} == {"new"}
        run = refresh_reconciliation(book.lake, day)
        assert run.by_exec_id
        rec = run.reconciliation
        assert rec.blocking().height == 0, [(r["check_name"], r["con_id"], r["field"], r["cause"])
                                            for r in rec.blocking().to_dicts()]  # fmt: skip
        assert all(v.startswith("agrees") for v in rec.verdicts().values()), rec.verdicts()
        for check, n in rec.compared.items():
            compared[check] = compared.get(check, 0) + n
    # 7 fills (the correction's latest revision), the ITM expiry and the assignment's two legs all compared
    assert compared["trades"] >= 7 and compared["lifecycle"] >= 2 and compared["pnl_account"] == 4, compared
    # the assignment's stock leg is in our book at the second cut: 100 ABC shares in the EUR account
    stock = book.lake.read_sessions("eod_positions", [DAYS[1]]).filter(pl.col("con_id") == 20)
    assert stock["account"].to_list() == ["DU2"] and stock["position"].to_list() == [100.0]
    # then IB's statement of the second session, corrected later with the assignment coded as an exercise: only the
    # lifecycle check fails, on that position's event
    wrong = flex_statement_xml(book.scenario, book.truth, DAYS[1], faults=StatementFaults(wrong_code=("DU2", 21, "Ex")),
                               generated=datetime(2025, 3, 5, 9, 0, tzinfo=NY))  # fmt: skip
    outcomes = ingest_statement(book.lake, wrong, file_name="wrong.xml", allowed_accounts=("DU1", "DU2"),
                                today=date(2025, 3, 5), now=datetime(2025, 3, 5, 14, 0, tzinfo=UTC))  # fmt: skip
    assert {o.status for o in outcomes if o.account == "DU2"} == {"replaced"}
    blocking = refresh_reconciliation(book.lake, DAYS[1]).reconciliation.blocking()
    assert blocking.select("check_name", "con_id", "field").rows() == [("lifecycle", 21, "event")]
