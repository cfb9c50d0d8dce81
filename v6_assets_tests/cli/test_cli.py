"""The ``v6`` command line against a lake streamed from the gateway simulator over real sockets.

One module-wide stack, the clock pinned to Wednesday 2026-11-18 14:00 New York: the simulator replays three
sessions (13, 16, 17 Nov) and half of the 18th at high speed, the unmodified streamer spools them, the spool is
drained to Delta as the sensor does, and the daily tables are computed for the closed sessions. The commands run
in-process (click's runner) so they see the pinned clock; one test runs the installed ``v6`` script.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl
import pytest
import time_machine
from click.testing import CliRunner, Result

from v6_assets import sessions
from v6_assets.cli import main
from v6_assets.contracts.money import amounts_agree
from v6_assets.gateway_sim import GatewaySimulator, load_scenario
from v6_assets.history_seed import history_start, seed_history
from v6_assets.ib import StreamerSettings
from v6_assets.ib.streamer import IBPositionStreamer, discard_process_streamer
from v6_assets.lake import Lake
from v6_assets.pipeline.daily import refresh_daily_pnl, refresh_eod_positions, refresh_exposure
from v6_assets_tests.ib.simhelpers import option_con_ids, wait_for
from v6_assets_tests.pyenv import set_envs

NY = ZoneInfo("America/New_York")
PINNED = datetime(2026, 11, 18, 14, 0, tzinfo=NY)
SESSIONS_BACK = 3
CLOSED = [date(2026, 11, 13), date(2026, 11, 16), date(2026, 11, 17)]
CLIENT_ID = 61


@dataclass
class Replayed:
    sim: GatewaySimulator
    lake: Lake
    settings: StreamerSettings
    home: Path


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replayed]:
    tmp = tmp_path_factory.mktemp("cli")
    with time_machine.travel(PINNED, tick=True):
        scenario = load_scenario("demo", start_time=history_start(SESSIONS_BACK))
        lake = Lake(str(tmp / "lake"))
        sim = GatewaySimulator(scenario, speed=12000.0, port=0, lockstep=True)
        with sim.running():
            settings = StreamerSettings(port=sim.port, client_id=CLIENT_ID, home=tmp / "v6")
            try:
                seed = seed_history(sim, settings, lake, timeout_s=120)
            finally:
                discard_process_streamer()
            assert [date.fromisoformat(d) for d in seed.sessions_closed] == CLOSED
            refresh_eod_positions(lake, CLOSED)
            refresh_daily_pnl(lake, CLOSED)
            refresh_exposure(lake, CLOSED)
            yield Replayed(sim=sim, lake=lake, settings=settings, home=tmp / "v6")


def _run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _json(result: Result) -> Any:
    return json.loads(result.stdout)


def _truth_eod(sim: GatewaySimulator, day: date) -> dict[tuple[str, int], dict[str, Any]]:
    return {(e["account"], e["con_id"]): e for e in sim.truth["eod"] if date.fromisoformat(e["session"]) == day}


class TestPnlAndExposure:
    def test_pnl_of_a_session_equals_the_simulator_to_the_cent(self, replayed: Replayed) -> None:
        day = CLOSED[-1]
        result = _run("pnl", "--session", day.isoformat(), "--json", "--lake", replayed.lake.uri)
        assert result.exit_code == 0, result.output
        doc = _json(result)
        truth = _truth_eod(replayed.sim, day)
        rows = {(r["account"], r["con_id"]): r for r in doc["rows"]}
        assert set(rows) == set(truth)
        for key, expected in truth.items():
            got = rows[key]["pnl"]
            assert got is not None and amounts_agree(got, expected["daily_pnl"]), (key, got, expected["daily_pnl"])
        for total in doc["totals"]:
            expected_total = sum(e["daily_pnl"] for (account, _), e in truth.items() if account == total["account"])
            assert total["unknown"] == 0
            assert amounts_agree(total["pnl"], expected_total), total

    def test_pnl_table_shows_cents_and_the_account_totals(self, replayed: Replayed) -> None:
        day = CLOSED[-1]
        result = _run("pnl", "--session", day.isoformat(), "--lake", replayed.lake.uri)
        assert result.exit_code == 0, result.output
        assert f"total daily PnL {day} per account" in result.stdout
        accounts = {a for a, _ in _truth_eod(replayed.sim, day)}
        assert all(a in result.stdout for a in accounts)

    def test_baseline_session_carries_ibs_figure_flagged_never_an_invented_one(self, replayed: Replayed) -> None:
        doc = _json(_run("pnl", "--session", CLOSED[0].isoformat(), "--json", "--lake", replayed.lake.uri))
        assert doc["rows"] and all(r["is_baseline"] for r in doc["rows"])
        for r in doc["rows"]:
            if r["ib_daily_pnl"] is None:  # no source at all: unknown, never 0
                assert r["pnl"] is None and r["pnl_source"] is None, r
            else:  # the stream's first session: IB's own daily PnL, carried and labelled
                assert r["pnl_source"] == "ib_daily" and amounts_agree(r["pnl"], r["ib_daily_pnl"]), r
        unknown = sum(r["pnl"] is None for r in doc["rows"])
        assert sum(t["unknown"] for t in doc["totals"]) == unknown

    def test_exposure_rollups_and_detail(self, replayed: Replayed) -> None:
        day = CLOSED[-1].isoformat()
        rollups = _json(_run("exposure", "--session", day, "--json", "--lake", replayed.lake.uri))["rows"]
        detail = _json(_run("exposure", "--session", day, "--detail", "--json", "--lake", replayed.lake.uri))["rows"]
        assert {r["rollup"] for r in rollups} == {"underlying", "account"}
        assert {r["rollup"] for r in detail} == {"detail"}
        by_account = {r["account"]: r["positions"] for r in rollups if r["rollup"] == "account"}
        detail_positions: dict[str, int] = {}
        for r in detail:
            detail_positions[r["account"]] = detail_positions.get(r["account"], 0) + r["positions"]
        assert by_account == detail_positions

    def test_session_without_rows_is_a_problem_not_an_empty_table(self, replayed: Replayed) -> None:
        result = _run("pnl", "--session", "2026-11-12", "--json", "--lake", replayed.lake.uri)
        assert result.exit_code == 1
        assert "no rows for 2026-11-12" in _json(result)["problem"]


def _truth_value_at(sent: list[dict[str, Any]], key: tuple[str, int], at: datetime, field: str) -> Any:
    """The last value of ``field`` the simulator sent for ``key`` at or before ``at`` (any message carrying it)."""
    last = None
    for e in sent:
        if field in e and (e["account"], e["con_id"]) == key and datetime.fromisoformat(e["sim_time"]) <= at:
            last = e[field]
    return last


def _steady(sent: list[dict[str, Any]], key: tuple[str, int], at: datetime, slack: timedelta, field: str) -> Any:
    """The truth's value of ``field`` around ``at`` when no message within ``slack`` changed it, else ``_AMBIGUOUS``."""
    value = _truth_value_at(sent, key, at - slack, field)
    for e in sent:
        if field in e and (e["account"], e["con_id"]) == key:
            when = datetime.fromisoformat(e["sim_time"])
            if at - slack < when <= at + slack and e[field] != value:
                return _AMBIGUOUS
    return value


_AMBIGUOUS = object()


def _recent_values(
    sent: list[dict[str, Any]], key: tuple[str, int], at: datetime, slack: timedelta, field: str
) -> list[Any]:
    """Every value of ``field`` the simulator sent for ``key`` in (at - slack, at], and the one in force before."""
    values = [_truth_value_at(sent, key, at - slack, field)]
    for e in sent:
        in_window = at - slack < datetime.fromisoformat(e["sim_time"]) <= at
        if field in e and (e["account"], e["con_id"]) == key and in_window:
            values.append(e[field])
    return [v for v in values if v is not None]


class TestBookAsOf:
    @pytest.mark.parametrize("clock", ["10:30", "12:45", "15:40"])
    def test_book_equals_the_simulator_at_three_moments(self, replayed: Replayed, clock: str) -> None:
        as_of = datetime.fromisoformat(f"{CLOSED[-1].isoformat()} {clock}").replace(tzinfo=NY)
        result = _run("book", "--as-of", f"{CLOSED[-1].isoformat()} {clock}", "--json", "--lake", replayed.lake.uri)
        assert result.exit_code == 0, result.output
        doc = _json(result)
        assert doc["session"] == CLOSED[-1].isoformat()
        sent = [e for e in replayed.sim.truth["sent"] if e["client_id"] == CLIENT_ID]
        book = {(r["account"], r["con_id"]): r for r in doc["rows"]}
        # The streamer stamps an update when it arrives; at 12,000x a message sent at t can arrive some simulated
        # seconds later (more on a loaded machine). A position is compared where the truth is steady 30 simulated
        # minutes before and after; a mark must be one sent within the 30 minutes before.
        slack = timedelta(minutes=30)
        options = option_con_ids(replayed.sim)
        keys = {(e["account"], e["con_id"]) for e in sent if e["kind"] == "portfolio" and e["con_id"] in options}
        compared, ambiguous, marks = 0, 0, 0
        for key in sorted(keys):
            position = _steady(sent, key, as_of, slack, "position")
            if position is _AMBIGUOUS:
                ambiguous += 1  # traded within the window
                continue
            if not position:
                assert key not in book, (key, "flat or unknown in the truth", book.get(key))
                continue
            assert key in book, (key, "open in the truth, missing from the book")
            assert book[key]["position"] == position, (key, book[key]["position"], position)
            # The mark: one the simulator sent shortly before the moment (never a later one, never invented).
            recent = _recent_values(sent, key, as_of, slack, "market_price")
            if recent:
                got = book[key]["market_price"]
                assert any(amounts_agree(got, v) for v in recent), (key, got, recent)
                marks += 1
            compared += 1
        assert compared > 0 and ambiguous < compared, (compared, ambiguous)
        assert marks > 0, "no mark compared"

    def test_account_filter_and_pnl_so_far_totals(self, replayed: Replayed) -> None:
        everything = _json(_run("book", "--as-of", "2026-11-17 15:00", "--json", "--lake", replayed.lake.uri))
        account = everything["rows"][0]["account"]
        one = _json(
            _run("book", "--as-of", "2026-11-17 15:00", "--account", account, "--json", "--lake", replayed.lake.uri)
        )
        assert one["rows"] and {r["account"] for r in one["rows"]} == {account}
        assert len(one["rows"]) < len(everything["rows"])

    def test_the_book_at_the_cut_is_the_stored_eod(self, replayed: Replayed) -> None:
        day = CLOSED[-1]
        cut = sessions.eod_cut(day).astimezone(NY)
        doc = _json(_run("book", "--as-of", cut.strftime("%Y-%m-%d %H:%M:%S"), "--json", "--lake", replayed.lake.uri))
        eod = replayed.lake.read_sessions("eod_positions", [day]).filter(~pl.col("is_closed"))
        daily = replayed.lake.read_sessions("daily_pnl", [day])
        assert len(doc["rows"]) == eod.height
        stored = {(r["account"], r["con_id"]): r for r in eod.to_dicts()}
        stored_pnl = {(r["account"], r["con_id"]): r["pnl"] for r in daily.to_dicts()}
        for row in doc["rows"]:
            key = (row["account"], row["con_id"])
            assert row["position"] == stored[key]["position"]
            assert amounts_agree(row["market_value"], stored[key]["market_value"])
            assert amounts_agree(row["pnl_so_far"], stored_pnl[key]), key


class TestUsage:
    @pytest.mark.parametrize(
        ("args", "named"),
        [
            (["pnl", "--session", "2026-11-21"], "'--session'"),  # a Saturday
            (["pnl", "--session", "yesterday"], "'--session'"),
            (["pnl"], "'--session'"),
            (["book", "--as-of", "lunch time"], "'--as-of'"),
            (["book", "--as-of", "2026-11-17 11:00", "--tz", "Mars/Olympus"], "'--tz'"),
            (["book", "--as-of", "2027-01-05 11:00"], "'--as-of'"),  # the future (the clock is pinned)
            (["exposure", "--session", "2026-11-17", "--bogus"], "--bogus"),
        ],
    )
    def test_bad_arguments_are_usage_errors_naming_the_argument(self, args: list[str], named: str) -> None:
        with time_machine.travel(PINNED, tick=False):
            result = CliRunner().invoke(main, args)
        assert result.exit_code == 2, result.output
        assert named in result.output

    def test_missing_lake_is_a_problem(self, tmp_path: Path) -> None:
        result = _run("pnl", "--session", "2026-11-17", "--lake", str(tmp_path / "nothing"))
        assert result.exit_code == 1
        assert "no daily_pnl table" in result.output


class TestStatus:
    def test_healthy_while_streaming_then_unhealthy_once_stopped(
        self, replayed: Replayed, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        settings = replayed.settings
        set_envs(
            monkeypatch,
            {"V6_HOME": str(replayed.home), "V6_IB_PORT": str(settings.port), "V6_IB_CLIENT_ID": str(CLIENT_ID)},
        )
        with time_machine.travel(datetime.now(NY), tick=True):  # wall clock: the status file's age is real
            streamer = IBPositionStreamer()
            try:
                streamer.start(settings, clock=replayed.sim.clock.now)
                wait_for(lambda: _status_doc()["healthy"], 30, "a healthy status")
                result = _run("status", "--lake", replayed.lake.uri)
                assert result.exit_code == 0, result.output
                assert "HEALTHY" in result.stdout
                assert "last commit position_updates" in result.stdout
                doc = _status_doc()
                assert doc["status"]["connection"]["connected"] is True
                assert doc["lease"]["pid"] > 0
                assert doc["spool"]["exists"] is True
            finally:
                discard_process_streamer()
            result = _run("status", "--json", "--lake", replayed.lake.uri)
            assert result.exit_code == 1
            assert "the streamer is stopped" in _json(result)["problems"]
            assert _run("status", "--quiet").exit_code == 1

    def test_the_connection_states_of_the_last_24_hours_in_words(
        self, replayed: Replayed, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        set_envs(monkeypatch, {"V6_HOME": str(replayed.home), "V6_IB_PORT": str(replayed.settings.port)})
        with time_machine.travel(datetime(2026, 11, 18, 12, 0, tzinfo=NY), tick=False):
            doc = json.loads(_run("status", "--json", "--lake", replayed.lake.uri).stdout)
        stored = replayed.lake.scan("stream_health").collect()
        assert stored.height > 0
        assert doc["stream_health_24h"], doc
        assert all(line.startswith(("connected", "disconnected", "gateway", "IB's", "market", "competing"))
                   for line in doc["stream_health_24h"]), doc["stream_health_24h"]  # fmt: skip

    def test_no_streamer_ever_is_unhealthy_from_the_installed_script(self, tmp_path: Path) -> None:
        script = Path(sys.executable).with_name("v6")
        env = {"PATH": "/usr/bin:/bin", "V6_HOME": str(tmp_path / "v6"), "V6_LAKE_URI": str(tmp_path / "lake")}
        done = subprocess.run([str(script), "status", "--json"], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 1, done.stderr
        doc = json.loads(done.stdout)
        assert doc["healthy"] is False
        assert "no streamer has written a status" in doc["problems"][0]


def _status_doc() -> dict[str, Any]:
    result = _run("status", "--json")
    doc = json.loads(result.stdout)
    assert isinstance(doc, dict)
    return doc
