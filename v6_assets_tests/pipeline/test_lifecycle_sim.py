"""The position lifecycle end to end against the simulator's truth (simulator -> ib_async streamer over loopback ->
spool -> Delta -> eod_positions, daily_pnl, position_events): the stock legs of an exercise, an ITM expiry and an
overnight assignment are kept though the book ignores stock, each event is named with its executions, both legs'
daily PnL equals the truth to the cent, and the reconciliation's lifecycle check agrees with the simulator's Flex
statements -- and fails on a planted wrong code, and only then."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from v6_assets import sessions
from v6_assets.analytics.reconcile import Reconciliation, reconcile
from v6_assets.contracts.money import Money
from v6_assets.gateway_sim import GatewaySimulator, load_scenario
from v6_assets.gateway_sim.scenario_model import Scenario
from v6_assets.gateway_sim.statements import StatementFaults, flex_statement_xml, session_executions
from v6_assets.ib import IBPositionStreamer, Spool
from v6_assets.ib.flex import parse_flex
from v6_assets.ib.settings import StreamerSettings
from v6_assets.lake import Lake
from v6_assets.pipeline import daily
from v6_assets.pipeline.ingest import drain_spool_to_lake
from v6_assets.pipeline.position_events import compute_position_events, refresh_position_events

SCENARIO = Path(__file__).parents[1] / "gateway_sim" / "lifecycle.yaml"
NY = sessions.NEW_YORK
START = datetime(2025, 3, 3, 9, 0, tzinfo=NY)
DAYS = sessions.sessions_between(date(2025, 3, 3), date(2025, 3, 7))
ACCOUNT, STOCK = "DU3000001", 500
SPEED = 20000.0
CLIENT_ID = 68
TODAY = date(2025, 3, 11)


@dataclass
class Run:
    scenario: Scenario
    lake: Lake
    truth: dict[str, list[dict[str, Any]]]
    executions: list[dict[str, Any]]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    home = tmp_path_factory.mktemp("lifecycle-home")
    scenario = load_scenario(SCENARIO)
    lake = Lake.at(str(home / "lake"))
    settings = StreamerSettings(port=1, client_id=CLIENT_ID, home=home, greeks_throttle_s=0.0, portfolio_rotation_s=0.3)
    with GatewaySimulator(scenario, port=0, speed=SPEED).running() as sim:
        settings = dataclasses.replace(settings, port=sim.port)
        streamer = IBPositionStreamer()
        streamer.start(settings, clock=sim.clock.now)
        try:
            end = sessions.eod_cut(DAYS[-1]) + timedelta(minutes=1)
            deadline = time.monotonic() + 150
            while sim.clock.now() < end:
                assert time.monotonic() < deadline, "the simulation did not reach the last cut in time"
                time.sleep(0.2)
            time.sleep(1.0)
        finally:
            streamer.stop()
        # the simulator may have run past the last cut by the time it is read: the run's sessions only
        days = {d.isoformat() for d in DAYS}
        truth = {
            "eod": [dict(e) for e in sim.truth["eod"] if e["session"] in days],
            "lifecycle": [dict(e) for e in sim.truth["lifecycle"] if datetime.fromisoformat(e["sim_time"]) < end],
        }
        history = [x for x in sim.state.executions.history if datetime.fromisoformat(str(x["time"])) < end]
    with Spool(settings.spool_path) as spool:
        drain_spool_to_lake(spool, lake, settings.stream_id, max_rows=10_000_000)
    daily.refresh_eod_positions(lake, DAYS)
    daily.refresh_daily_pnl(lake, DAYS)
    refresh_position_events(lake, DAYS)
    yield Run(scenario, lake, truth, history)


class TestStockLegsAndPnl:
    def test_the_stock_legs_are_kept_and_equal_the_truth(self, run: Run) -> None:
        eod = run.lake.read_sessions("eod_positions", DAYS).filter(pl.col("con_id") == STOCK).sort("trade_date")
        truth = [(date.fromisoformat(e["session"]), e["position"]) for e in run.truth["eod"] if e["con_id"] == STOCK]
        assert list(zip(eod["trade_date"].to_list(), eod["position"].to_list(), strict=True)) == truth
        assert set(eod["sec_type"].to_list()) == {"STK"}

    def test_daily_pnl_of_every_leg_equals_the_truth_to_the_cent(self, run: Run) -> None:
        pnl = run.lake.read_sessions("daily_pnl", DAYS)
        ours = {(r["trade_date"], r["con_id"]): r["pnl"] for r in pnl.iter_rows(named=True)}
        compared = 0
        for e in run.truth["eod"]:
            if e["daily_pnl"] is None:
                continue
            key = (date.fromisoformat(e["session"]), e["con_id"])
            assert key in ours, f"no daily_pnl for {key}"
            assert Money(ours[key]) == Money(e["daily_pnl"]), (key, ours[key], e["daily_pnl"])
            compared += 1
        assert compared >= 12


class TestPositionEvents:
    def test_lifecycle_rows_and_stock_legs_equal_the_truth(self, run: Run) -> None:
        events = run.lake.read_sessions("position_events", DAYS)
        names = {"Ep": "expired", "Ex": "exercised", "A": "assigned"}
        expected_options = sorted(
            (e["sim_time"][:10], e["con_id"], names[e["code"]], e["quantity"]) for e in run.truth["lifecycle"]
        )
        lifecycle = events.filter(pl.col("event").is_in(list(names.values())))
        options = lifecycle.filter(pl.col("sec_type") == "OPT")
        got = sorted(
            (str(r["trade_date"]), r["con_id"], r["event"], r["quantity"]) for r in options.iter_rows(named=True)
        )
        assert got == expected_options
        assert options["exec_id"].null_count() == options.height  # IB sends no execution for a booking
        legs = lifecycle.filter(pl.col("sec_type") == "STK").sort("trade_date", "linked_con_id")
        expected_legs = sorted(
            (e["sim_time"][:10], e["con_id"], names[e["code"]], e["stock_quantity"], e["stock_price"])
            for e in run.truth["lifecycle"]
            if e["stock_con_id"] is not None
        )
        assert (
            sorted(
                (str(r["trade_date"]), r["linked_con_id"], r["event"], r["quantity"], r["price"])
                for r in legs.iter_rows(named=True)
            )
            == expected_legs
        )
        assert events.filter(pl.col("event") == "unexplained").height == 0

    def test_trade_rows_carry_the_executions(self, run: Run) -> None:
        events = run.lake.read_sessions("position_events", DAYS).filter(pl.col("exec_id").is_not_null())
        got = sorted((r["con_id"], r["event"], r["quantity"], r["exec_id"]) for r in events.iter_rows(named=True))
        assert got == sorted(
            [
                (502, "increased", 1.0, run.executions[0]["exec_id"]),
                (504, "reduced", -1.0, run.executions[1]["exec_id"]),
            ]
        )


def _reconcile(run: Run, day: date, faults: StatementFaults | None = None) -> Reconciliation:
    xml = flex_statement_xml(run.scenario, run.truth["eod"], day, faults=faults or StatementFaults())
    statements = parse_flex(xml, today=TODAY)
    frames = {name: pl.concat([s.frames[name] for s in statements]) for name in statements[0].frames}
    lake = run.lake
    return reconcile(
        day,
        eod=lake.read_sessions("eod_positions", [day]),
        eod_prev=lake.read_sessions("eod_positions", [sessions.previous_session(day)]),
        daily_pnl=lake.read_sessions("daily_pnl", [day]),
        positions=frames["statement_positions"],
        trades=frames["statement_trades"],
        mtm=frames["statement_mtm"],
        accounts=[ACCOUNT],
        # the statement's exec ids are the simulator's truth's (as in test_statements): its fills, not the bookings
        executions=pl.DataFrame(
            [
                {k: x[k] for k in ("account", "con_id", "exec_id", "quantity", "price", "commission")}
                for x in session_executions(run.truth["eod"], day)
                if not x["code"]
            ],
            schema={
                "account": pl.String,
                "con_id": pl.Int64,
                "exec_id": pl.String,
                "quantity": pl.Float64,
                "price": pl.Float64,
                "commission": pl.Float64,
            },
        ),
        events=compute_position_events(lake, [day])[0],
    )


class TestReconciliation:
    def test_every_session_reconciles_exactly_with_the_lifecycle_compared(self, run: Run) -> None:
        lifecycle_days = {e["sim_time"][:10] for e in run.truth["lifecycle"]}
        for day in DAYS[1:]:
            result = _reconcile(run, day)
            assert result.blocking().height == 0, f"{day}: {result.blocking().to_dicts()}"
            if day.isoformat() in lifecycle_days:
                assert result.compared["lifecycle"] > 0, f"{day}: lifecycle compared nothing"

    def test_a_wrong_code_fails_the_lifecycle_check_only(self, run: Run) -> None:
        result = _reconcile(run, date(2025, 3, 6), StatementFaults(wrong_code=(ACCOUNT, 503, "Ex")))
        blocking = result.blocking()
        assert set(blocking["check_name"].to_list()) == {"lifecycle"}
        assert blocking.select("con_id", "field").to_dicts() == [{"con_id": 503, "field": "event"}]

    def test_a_missing_booking_fails_lifecycle_and_trades(self, run: Run) -> None:
        result = _reconcile(run, date(2025, 3, 5), StatementFaults(missing_trade=(ACCOUNT, 502)))
        assert set(result.blocking()["check_name"].to_list()) >= {"lifecycle", "trades"}
        assert result.blocking("lifecycle").select("con_id", "field").to_dicts() == [
            {"con_id": 502, "field": "missing_statement"}
        ]
