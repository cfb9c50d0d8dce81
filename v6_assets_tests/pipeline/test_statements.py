"""Flex statements: the simulator's statements reconcile exactly with the book the real pipeline built (simulator ->
ib_async streamer over loopback -> spool -> Delta -> eod_positions/daily_pnl); each planted discrepancy is caught by
its check and only by it; bad files are refused whole; the same file twice and a corrected file behave.

One simulated run of the demo book (3 accounts, one EUR-based; trades, a same-day round trip, an expiry) is shared.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from v6_assets import sessions
from v6_assets.analytics.reconcile import CHECKS, Reconciliation, reconcile
from v6_assets.contracts.statement_tables import STATEMENT_FILES, STATEMENT_POSITIONS, STATEMENT_TRADES
from v6_assets.gateway_sim import GatewaySimulator, load_scenario
from v6_assets.gateway_sim.scenario_model import Scenario
from v6_assets.gateway_sim.statements import (
    UNKNOWN_ACCOUNT,
    StatementFaults,
    flex_statement_xml,
    session_executions,
)
from v6_assets.ib import IBPositionStreamer, Spool
from v6_assets.ib.flex import StatementError, parse_flex
from v6_assets.ib.settings import StreamerSettings
from v6_assets.lake import Lake
from v6_assets.pipeline import daily
from v6_assets.pipeline.ingest import drain_spool_to_lake
from v6_assets.pipeline.statements import compute_reconciliation, ingest_statement, refresh_reconciliation

NY = sessions.NEW_YORK
SIM_START = datetime(2025, 3, 3, 9, 0, tzinfo=NY)
SESSIONS = 6  # 2025-03-03 .. 2025-03-10; SPY 610 C / 590 P expire in session 4 (2025-03-07)
SPEED = 4000.0  # slower than the other simulator tests: under load a close refresh could be missed
CLIENT_ID = 67
TODAY = date(2025, 3, 11)  # the pinned "today" of every ingest (statements of later days are "in the future")
NOW = datetime(2025, 3, 11, 14, 0, tzinfo=UTC)


@dataclass
class Book:
    scenario: Scenario
    lake: Lake
    days: list[date]
    eod_truth: list[dict[str, Any]]
    accounts: tuple[str, ...]


def _executions(book: Book, day: date) -> pl.DataFrame:
    # what the executions stream holds: the fills, not IB's bookings of an expiry/exercise/assignment (no execDetails)
    rows = [{k: x[k] for k in ("account", "con_id", "exec_id", "quantity", "price", "commission")}
            for x in session_executions(book.eod_truth, day) if not x["code"]]  # fmt: skip
    schema = {"account": pl.String, "con_id": pl.Int64, "exec_id": pl.String, "quantity": pl.Float64,
              "price": pl.Float64, "commission": pl.Float64}  # fmt: skip
    return pl.DataFrame(rows, schema=schema)


@pytest.fixture(scope="module")
def book(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Book]:
    home = tmp_path_factory.mktemp("stmt-home")
    scenario = load_scenario("demo", start_time=SIM_START)
    scenario = dataclasses.replace(scenario, nastiness=dataclasses.replace(scenario.nastiness, greeks_sentinel_every=0))
    lake = Lake.at(str(home / "lake"))
    settings = StreamerSettings(port=1, client_id=CLIENT_ID, home=home, greeks_throttle_s=0.0, portfolio_rotation_s=0.3)
    days = sessions.sessions_between(SIM_START.date(), SIM_START.date() + timedelta(days=14))[:SESSIONS]
    with GatewaySimulator(scenario, port=0, speed=SPEED).running() as sim:
        settings = dataclasses.replace(settings, port=sim.port)
        streamer = IBPositionStreamer()
        streamer.start(settings, clock=sim.clock.now)
        try:
            end = sessions.eod_cut(days[-1]) + timedelta(minutes=1)
            deadline = time.monotonic() + 150
            while sim.clock.now() < end:
                assert time.monotonic() < deadline, "the simulation did not reach the last cut in time"
                time.sleep(0.2)
            time.sleep(1.0)
        finally:
            streamer.stop()
        eod_truth = [dict(e) for e in sim.truth["eod"] if date.fromisoformat(e["session"]) in days]
    with Spool(settings.spool_path) as spool:
        drain_spool_to_lake(spool, lake, settings.stream_id, max_rows=10_000_000)
    daily.refresh_eod_positions(lake, days)
    daily.refresh_daily_pnl(lake, days)
    yield Book(scenario, lake, days, eod_truth, tuple(scenario.account_ids))


def _reconcile_xml(book: Book, day: date, xml: bytes, *, with_executions: bool = True) -> Reconciliation:
    """Reconcile a statement's bytes against the lake's book without writing it (the planted-fault tests)."""
    statements = parse_flex(xml, today=TODAY)
    frames = {name: pl.concat([s.frames[name] for s in statements]) for name in statements[0].frames}
    lake = book.lake
    return reconcile(
        day,
        eod=lake.read_sessions("eod_positions", [day]),
        eod_prev=lake.read_sessions("eod_positions", [sessions.previous_session(day)]),
        daily_pnl=lake.read_sessions("daily_pnl", [day]),
        positions=frames["statement_positions"],
        trades=frames["statement_trades"],
        mtm=frames["statement_mtm"],
        accounts=sorted({s.account for s in statements}),
        executions=_executions(book, day) if with_executions else None,
    )


def _failing_checks(result: Reconciliation) -> set[str]:
    return set(result.blocking()["check_name"].to_list())


class TestGroundTruth:
    def test_every_session_reconciles_exactly(self, book: Book) -> None:
        for day in book.days:
            xml = flex_statement_xml(book.scenario, book.eod_truth, day)
            outcomes = ingest_statement(book.lake, xml, file_name=f"{day}.xml", allowed_accounts=book.accounts,
                                        today=TODAY, now=NOW)  # fmt: skip
            assert {o.status for o in outcomes} == {"new"}
            run = refresh_reconciliation(book.lake, day, executions=_executions(book, day))
            result = run.reconciliation
            assert result.blocking().height == 0, f"{day}: {result.blocking().to_dicts()}"
            checked = ("positions", "marks", "pnl") + (("trades",) if session_executions(book.eod_truth, day) else ())
            for check in checked:
                assert result.compared[check] > 0, f"{day}: {check} compared nothing"
            # the only listed differences are baseline sessions (ours unknown), never silently 0
            assert set(result.differences["field"].to_list()) <= {"pnl"}
            assert all("baseline" in c for c in result.differences["cause"].to_list())
            assert set(result.verdicts()) == set(book.accounts)
            assert all(v.startswith("agrees") for v in result.verdicts().values())
        expiry = book.days[4]
        expired = compute_reconciliation(book.lake, expiry).reconciliation.compared["lifecycle"]
        assert expired > 0, "the expiry session compared no lifecycle rows"
        eur = book.lake.read_sessions("statement_mtm", book.days).filter(pl.col("base_currency") == "EUR")
        assert eur.height and (eur["fx_rate_to_base"] != 1.0).all()

    def test_the_same_file_twice_changes_nothing(self, book: Book) -> None:
        day = book.days[2]
        xml = flex_statement_xml(book.scenario, book.eod_truth, day)
        ingest_statement(book.lake, xml, file_name="a.xml", allowed_accounts=book.accounts, today=TODAY, now=NOW)
        versions = {t: book.lake.open(t).version() for t in ("statement_trades", "statement_files")}  # type: ignore[union-attr]
        outcomes = ingest_statement(book.lake, xml, file_name="again.xml", allowed_accounts=book.accounts,
                                    today=TODAY, now=NOW)  # fmt: skip
        assert {o.status for o in outcomes} == {"unchanged"}
        assert {t: book.lake.open(t).version() for t in versions} == versions  # type: ignore[union-attr]


class TestPlantedDiscrepancies:
    """Each fault fails exactly the check meant to catch it (the others stay green)."""

    def _planted(self, book: Book, day: date, faults: StatementFaults, **kw: Any) -> set[str]:
        return _failing_checks(_reconcile_xml(book, day, flex_statement_xml(book.scenario, book.eod_truth, day,
                                                                            faults=faults, **kw)))  # fmt: skip

    def test_a_missing_trade_fails_only_trades(self, book: Book) -> None:
        day = book.days[1]  # DU1000001 sells 4 SPY 600 C
        assert self._planted(book, day, StatementFaults(missing_trade=("DU1000001", 710000001))) == {"trades"}

    def test_a_different_mark_fails_only_marks(self, book: Book) -> None:
        day = book.days[3]
        fault = StatementFaults(mark_offset=("DU1000002", 720000001, 0.5))
        result = _reconcile_xml(book, day, flex_statement_xml(book.scenario, book.eod_truth, day, faults=fault))
        assert _failing_checks(result) == {"marks"}
        explained = result.differences.filter((pl.col("check_name") == "pnl") & ~pl.col("blocking"))
        assert "explained by the mark" in explained.filter(pl.col("con_id") == 720000001)["cause"].item()

    def test_a_wrong_price_fails_only_trades_and_its_correction_replaces_it(self, book: Book, tmp_path: Path) -> None:
        day = book.days[2]  # DU1000002 sells 10 AAPL 220 P
        fault = StatementFaults(late_correction=("DU1000002", 720000002, 0.25))
        first = eod_first = sessions.eod_cut(day) + timedelta(hours=15)
        wrong = flex_statement_xml(book.scenario, book.eod_truth, day, faults=fault, corrected=False, generated=first)
        right = flex_statement_xml(book.scenario, book.eod_truth, day, faults=fault,
                                   generated=eod_first + timedelta(hours=1))  # fmt: skip
        assert _failing_checks(_reconcile_xml(book, day, wrong)) == {"trades"}
        lake = Lake.at(str(tmp_path / "lake"))
        for table in ("eod_positions", "daily_pnl"):
            keep = [sessions.previous_session(day), day]
            lake.overwrite_sessions(table, book.lake.read_sessions(table, keep), keep)
        kw: dict[str, Any] = {"allowed_accounts": book.accounts, "today": TODAY, "now": NOW}
        assert {o.status for o in ingest_statement(lake, wrong, file_name="1.xml", **kw)} == {"new"}
        assert _failing_checks(compute_reconciliation(lake, day, executions=_executions(book, day)).reconciliation) == {
            "trades"
        }
        outcomes = ingest_statement(lake, right, file_name="2.xml", **kw)
        assert {o.status for o in outcomes} == {"replaced"}
        assert all("replaced" in o.describe() for o in outcomes)
        assert not compute_reconciliation(lake, day, executions=_executions(book, day)).reconciliation.blocking().height
        ledger = lake.read_sessions(STATEMENT_FILES, [day])
        assert ledger.height == len(book.accounts) and ledger["replaced_statement_id"].null_count() == 0
        trades = lake.read_sessions(STATEMENT_TRADES, [day])
        assert trades["exec_id"].n_unique() == trades.height  # replaced, not appended
        # dropping the older (wrong) statement again afterwards changes nothing
        assert {o.status for o in ingest_statement(lake, wrong, file_name="1.xml", **kw)} == {"stale"}

    def test_an_expiry_missing_from_the_statement_fails_trades_and_lifecycle(self, book: Book) -> None:
        day = book.days[4]
        # the expiry's booked trade left out: the position change is unexplained and the lifecycle row is missing;
        # the closed contract is then in no row that carries its currency, so its MTM cannot be converted either
        xml = flex_statement_xml(book.scenario, book.eod_truth, day,
                                 faults=StatementFaults(missing_trade=("DU1000001", 710000003)))  # fmt: skip
        result = _reconcile_xml(book, day, xml)
        assert _failing_checks(result) == {"trades", "lifecycle", "pnl"}
        assert result.blocking("pnl")["field"].to_list() == ["fx"]

    def test_the_trade_check_works_without_executions(self, book: Book) -> None:
        day = book.days[1]
        xml = flex_statement_xml(book.scenario, book.eod_truth, day,
                                 faults=StatementFaults(missing_trade=("DU1000001", 710000001)))  # fmt: skip
        assert _failing_checks(_reconcile_xml(book, day, xml, with_executions=False)) == {"trades"}


class TestBadInput:
    def _refused(self, book: Book, data: bytes, match: str, **kw: Any) -> None:
        before = {t: (book.lake.open(t).version() if book.lake.exists(t) else None)  # type: ignore[union-attr]
                  for t in ("statement_positions", "statement_files")}  # fmt: skip
        args: dict[str, Any] = {"allowed_accounts": book.accounts, "today": TODAY, "now": NOW} | kw
        with pytest.raises(StatementError, match=match):
            ingest_statement(book.lake, data, file_name="bad.xml", **args)
        after = {t: (book.lake.open(t).version() if book.lake.exists(t) else None)  # type: ignore[union-attr]
                 for t in before}  # fmt: skip
        assert after == before, "a refused file wrote something"

    def test_truncated_xml(self, book: Book) -> None:
        xml = flex_statement_xml(book.scenario, book.eod_truth, book.days[1])
        self._refused(book, xml[: len(xml) // 2], "not well-formed")

    def test_a_file_being_written_is_refused_whole(self, book: Book) -> None:
        xml = flex_statement_xml(book.scenario, book.eod_truth, book.days[1])
        self._refused(book, xml[:-40], "not well-formed")

    def test_non_flex_xml(self, book: Book) -> None:
        self._refused(book, b"<?xml version='1.0'?><html><body>login</body></html>", "not a Flex statement")
        self._refused(book, b"", "empty file")

    def test_an_account_outside_the_allowlist(self, book: Book) -> None:
        xml = flex_statement_xml(
            book.scenario, book.eod_truth, book.days[1], faults=StatementFaults(unknown_account=True)
        )
        self._refused(book, xml, f"account {UNKNOWN_ACCOUNT} outside the allowlist")

    def test_a_statement_dated_in_the_future(self, book: Book) -> None:
        xml = flex_statement_xml(book.scenario, book.eod_truth, book.days[5])
        self._refused(book, xml, "after today", today=book.days[4])


def test_the_checks_are_the_ones_documented() -> None:
    assert CHECKS == ("positions", "marks", "pnl", "pnl_account", "trades", "lifecycle")
    assert STATEMENT_POSITIONS.partition_by == ("trade_date",)
