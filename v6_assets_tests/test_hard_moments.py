"""The pipeline's ground truth at the moments where calendars and clocks break things, on a pinned clock.

For each moment the wall clock is pinned there (time-machine, ticking), and the run is exactly ``make demo``'s
seed: the ``demo`` scenario starting ``auto`` (2 sessions before the pinned day), the simulator's clock racing to
the pinned moment, the unmodified streamer (ib_async over loopback) on the simulator's clock, the spool, the
exactly-once drain into Delta. Then the daily computation (EOD state carried forward, daily PnL) runs on the Delta
tables and is compared with the simulator's independent EOD ground truth by the money rule. Independently of the
code under test, each moment states by hand which session an update arriving then belongs to.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
import time_machine

from v6_assets import analytics, sessions
from v6_assets.contracts.money import amounts_agree
from v6_assets.gateway_sim import GatewaySimulator, load_scenario
from v6_assets.history_seed import history_start, seed_history
from v6_assets.ib import StreamerSettings
from v6_assets.ib.streamer import discard_process_streamer
from v6_assets.lake import Lake

NY = sessions.NEW_YORK
SESSIONS_BACK = 2
SEED_SPEED = 12000.0  # as make demo; faster and the close marks can miss the cut
CUT_AFTER_CLOSE = timedelta(minutes=15)  # the simulator closes a session at its close, the cut is 15 min later


@dataclasses.dataclass(frozen=True)
class Moment:
    at: datetime
    current_session: date  # written by hand from the NYSE calendar, not computed
    previous_session: date  # the session before it, by hand
    covers: str


MOMENTS = {
    "saturday_0200": Moment(
        datetime(2026, 11, 21, 2, 0, tzinfo=NY),
        date(2026, 11, 23),
        date(2026, 11, 20),
        "weekend night: updates belong to Monday",
    ),
    "session_1610": Moment(
        datetime(2026, 11, 18, 16, 10, tzinfo=NY),
        date(2026, 11, 18),
        date(2026, 11, 17),
        "5 min before the 16:15 cut: today",
    ),
    "session_1620": Moment(
        datetime(2026, 11, 18, 16, 20, tzinfo=NY),
        date(2026, 11, 19),
        date(2026, 11, 18),
        "5 min after the cut: the next session",
    ),
    "monday_after_good_friday": Moment(
        datetime(2026, 4, 6, 10, 0, tzinfo=NY),
        date(2026, 4, 6),
        date(2026, 4, 2),
        "the session before is Thursday, not Friday",
    ),
    "early_close_after_thanksgiving": Moment(
        datetime(2026, 11, 27, 13, 20, tzinfo=NY),
        date(2026, 11, 30),
        date(2026, 11, 27),
        "after the 13:15 early cut: Monday",
    ),
    "dst_spring_sunday": Moment(
        datetime(2026, 3, 8, 12, 0, tzinfo=NY),
        date(2026, 3, 9),
        date(2026, 3, 6),
        "clocks went forward overnight (EST -> EDT)",
    ),
    "dst_spring_monday": Moment(
        datetime(2026, 3, 9, 10, 0, tzinfo=NY),
        date(2026, 3, 9),
        date(2026, 3, 6),
        "first session in EDT after one in EST",
    ),
    "dst_fall_sunday": Moment(
        datetime(2026, 11, 1, 12, 0, tzinfo=NY),
        date(2026, 11, 2),
        date(2026, 10, 30),
        "clocks went back overnight (EDT -> EST)",
    ),
    "dst_fall_monday": Moment(
        datetime(2026, 11, 2, 10, 0, tzinfo=NY),
        date(2026, 11, 2),
        date(2026, 10, 30),
        "first session in EST after one in EDT",
    ),
    "christmas_week": Moment(
        datetime(2026, 12, 29, 11, 0, tzinfo=NY),
        date(2026, 12, 29),
        date(2026, 12, 28),
        "between Christmas and New Year",
    ),
}


@pytest.fixture
def pinned(request: pytest.FixtureRequest) -> Iterator[Moment]:
    moment = MOMENTS[request.param]
    with time_machine.travel(moment.at, tick=True):
        yield moment


def _truth(sim: GatewaySimulator, days: list[date]) -> pl.DataFrame:
    keys = ("account", "con_id", "position", "unrealized_pnl", "daily_pnl", "baseline")
    rows = [
        {k: e[k] for k in keys} | {"trade_date": date.fromisoformat(e["session"])}
        for e in sim.truth["eod"]
        if date.fromisoformat(e["session"]) in days
    ]
    return pl.DataFrame(rows, infer_schema_length=None)


def _daily_from_lake(lake: Lake, days: list[date]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """EOD and daily PnL of ``days`` from the Delta tables, the stream's first session being the baseline."""
    eod = analytics.eod_positions(lake.scan("position_updates"), lake.scan("greeks_updates"), days, None)
    return eod, analytics.daily_pnl(eod, None, days)


def _check_ground_truth_at(moment: Moment, tmp_path: Path) -> None:
    assert sessions.current_session() == moment.current_session, moment.covers
    assert sessions.previous_session(moment.current_session) == moment.previous_session, moment.covers
    scenario = load_scenario("demo", start_time=history_start(SESSIONS_BACK))
    lake = Lake(str(tmp_path / "lake"))
    sim = GatewaySimulator(scenario, speed=SEED_SPEED, port=0, lockstep=True)
    with sim.running():
        try:
            settings = StreamerSettings(port=sim.port, client_id=61, home=tmp_path / "v6")
            seed = seed_history(sim, settings, lake, timeout_s=120)
        finally:
            discard_process_streamer()
        caught_up = sim.clock.now()
    assert caught_up >= moment.at.astimezone(caught_up.tzinfo), "the simulator reached the pinned moment"

    closed = [date.fromisoformat(d) for d in seed.sessions_closed]
    expected_closed = sessions.sessions_between(history_start(SESSIONS_BACK).astimezone(NY).date(), moment.at.date())
    expected_closed = [d for d in expected_closed if sessions.eod_cut(d) - CUT_AFTER_CLOSE <= moment.at]
    assert closed == expected_closed, (closed, expected_closed)
    assert len(closed) >= SESSIONS_BACK

    # every stored update is in the session of its timestamp, never after the pinned moment's session
    rows = lake.scan("position_updates").select("received_at", "trade_date").collect()
    assert rows.height > 0
    assert rows["trade_date"].max() <= moment.current_session  # type: ignore[operator]
    wrong = rows.filter(pl.col("trade_date") != sessions.trade_date_expr("received_at"))
    assert wrong.height == 0, wrong.head(5)

    _eod, daily = _daily_from_lake(lake, closed)
    truth = _truth(sim, closed)
    keys = ["trade_date", "account", "con_id"]
    assert sorted(daily.select(keys).rows()) == sorted(truth.select(keys).rows())
    joined = truth.join(daily, on=keys, suffix="_got")
    assert joined.height == truth.height
    problems = []
    compared = 0
    for row in joined.iter_rows(named=True):
        where = (row["trade_date"], row["account"], row["con_id"])
        if row["position_got"] != row["position"]:
            problems.append((where, "position", row["position_got"], row["position"]))
        if row["baseline"]:
            # a baseline carries IB's own daily PnL (pnl_source ib_daily), null only without one
            source = "ib_daily" if row["pnl"] is not None else None
            carried = row["pnl"] == row["ib_daily_pnl"] and row["pnl_source"] == source
            if not (row["is_baseline"] and carried):
                problems.append((where, "baseline", row["pnl"], row["ib_daily_pnl"]))
        elif row["pnl"] is None or not amounts_agree(row["pnl"], row["daily_pnl"]):
            problems.append((where, "pnl", row["pnl"], row["daily_pnl"]))
        else:
            compared += 1
    assert not problems, problems[:20]
    assert compared > 0, "no session after the baseline had PnL to compare"


# Three classes so that pytest-xdist (--dist loadscope) can run them on different workers.
class TestCalendar:
    @pytest.mark.parametrize(
        "pinned",
        ["saturday_0200", "monday_after_good_friday", "early_close_after_thanksgiving", "christmas_week"],
        indirect=True,
    )
    def test_ground_truth(self, pinned: Moment, tmp_path: Path) -> None:
        _check_ground_truth_at(pinned, tmp_path)


class TestAroundTheCut:
    @pytest.mark.parametrize("pinned", ["session_1610", "session_1620"], indirect=True)
    def test_ground_truth(self, pinned: Moment, tmp_path: Path) -> None:
        _check_ground_truth_at(pinned, tmp_path)


class TestDaylightSaving:
    @pytest.mark.parametrize(
        "pinned", ["dst_spring_sunday", "dst_spring_monday", "dst_fall_sunday", "dst_fall_monday"], indirect=True
    )
    def test_ground_truth(self, pinned: Moment, tmp_path: Path) -> None:
        _check_ground_truth_at(pinned, tmp_path)


def test_every_moment_is_in_a_class() -> None:
    covered = {
        *TestCalendar.test_ground_truth.pytestmark[0].args[1],  # type: ignore[attr-defined]
        *TestAroundTheCut.test_ground_truth.pytestmark[0].args[1],  # type: ignore[attr-defined]
        *TestDaylightSaving.test_ground_truth.pytestmark[0].args[1],  # type: ignore[attr-defined]
    }
    assert covered == set(MOMENTS)
