"""A week in the life of the stream (``make chaos``: ``--only week``; the short version runs in ``make test``).

Five NYSE sessions and a weekend (2025-03-10 .. 03-17, no DST change) on the simulator's fast clock, with IB's day
and night as scenario events: the nightly reset every night (1100 .. 1101 data lost or 1102), the gateway restart
every day at 06:00 ET (IBC's AUTO_RESTART_TIME: the socket drops, connects refused), one competing live session
(10197, 14:02 ET until after the close), one market data farm drop without 1100, and one pacing burst (40 positions
opened in the same second: 40 PnL-single and 40 market data lines to subscribe at once) -- with IB's 50
messages/s enforced throughout.
The short version plays Monday afternoon, its night and Tuesday (every kind of event once).

The streamer runs in this process on the simulator's clock (so times and sessions are simulated ones), the spool is
drained into a real Delta lake, and eod_positions are computed for every session the way the daily asset does.
Checked: lost 0 and duplicated 0 (``chaos_common.verify``: every spool offset in exactly one row, every message
sent to us carried by a stored row outside the restart windows), at most one connection, no order request, no error
100 (pacing) from the simulator, every gap of the simulator's truth found in ``stream_health`` (same state, start
within a minute of simulated time), and every EOD row whose values were held back by a true gap flagged.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from bench.chaos_common import CLIENT_ID, ChaosSimulator, option_ids, order_requests, verify, wait_for
from v6_assets import sessions
from v6_assets.analytics.health import health_intervals
from v6_assets.contracts.streams import GAP_STATES
from v6_assets.gateway_sim import parse_scenario
from v6_assets.gateway_sim.scenario_model import Scenario
from v6_assets.ib import IBPositionStreamer, Spool, StreamerSettings
from v6_assets.lake import Lake
from v6_assets.pipeline import daily
from v6_assets.pipeline.ingest import drain_spool_to_lake

NY = sessions.NEW_YORK
INITIAL_POSITIONS = 30
BURST_POSITIONS = 40
# truth event -> the stream_health state it must show up as
TRUTH_STATES = {"reset_start": "reset", "farm_down_start": "farm_down", "competing_session_start": "competing_session",
                "restart": "restarting"}  # fmt: skip
# The streamer stamps a gap when it reads the message: on a loaded machine that is up to a few real seconds, i.e.
# real seconds x speed of simulated time after the simulator's truth.
SLACK_REAL_S = 3.0


def _at(day: date, hh: int, mm: int) -> str:
    return datetime(day.year, day.month, day.day, hh, mm, tzinfo=NY).isoformat()


@dataclass(frozen=True)
class WeekPlan:
    start: datetime
    end: datetime  # simulated time at which the run stops
    days: tuple[date, ...]  # the sessions played
    events: tuple[dict[str, Any], ...]
    speed: float
    restart_refuse_s: float = 1.0


def week_plan(quick: bool) -> WeekPlan:
    monday = date(2025, 3, 10)
    days = tuple(monday + timedelta(days=i) for i in range(2 if quick else 5))
    nights = [days[0] + timedelta(days=i) for i in range(1 if quick else 7)]  # the evening each night begins
    events: list[dict[str, Any]] = []
    for i, evening in enumerate(nights):
        after = evening + timedelta(days=1)
        events.append({"kind": "reset", "at": _at(after, 0, 30), "seconds": 900, "data_lost": i % 2 == 0})
        # after the reset: at a fast clock the night is skipped from event to event within a real step, so a
        # restart before the reset would leave nobody connected to receive it
        events.append({"kind": "restart", "at": _at(after, 6, 0), "seconds": 1.0})
    tuesday = days[1]
    events.append({"kind": "farm_down", "at": _at(tuesday, 11, 20), "seconds": 180})
    events += [{"kind": "trade", "at": _at(tuesday, 10, 30), "account": "DU1", "con_id": 2000 + i, "qty": 1,
                "price": "mark"} for i in range(BURST_POSITIONS)]  # fmt: skip
    competing_day = tuesday if quick else days[2]
    events.append({"kind": "competing_session", "at": _at(competing_day, 14, 2), "seconds": 3 * 3600})
    start = (
        datetime(days[0].year, days[0].month, days[0].day, 13, 30, tzinfo=NY)
        if quick
        else datetime(days[0].year, days[0].month, days[0].day, 9, 0, tzinfo=NY)
    )
    last = days[-1] if quick else days[-1] + timedelta(days=3)  # the full week ends on the next Monday morning
    end = (
        sessions.eod_cut(days[-1]) + timedelta(minutes=5)
        if quick
        else datetime(last.year, last.month, last.day, 9, 0, tzinfo=NY)
    )
    return WeekPlan(start.astimezone(UTC), end.astimezone(UTC), days, tuple(events), speed=1200.0 if quick else 900.0)


def week_scenario(plan: WeekPlan) -> Scenario:
    contracts = [{"con_id": 1000 + i, "symbol": "SPY", "sec_type": "OPT", "expiry": "20250620", "strike": 500 + 5 * i,
                  "right": "C" if i % 2 else "P"} for i in range(INITIAL_POSITIONS)]  # fmt: skip
    contracts += [{"con_id": 2000 + i, "symbol": "SPY", "sec_type": "OPT", "expiry": "20250620", "strike": 502 + 5 * i,
                   "right": "C"} for i in range(BURST_POSITIONS)]  # fmt: skip
    return parse_scenario({
        "name": "week-in-the-life",
        "seed": 11,
        "clock": {"start": plan.start.isoformat(), "speed": plan.speed, "min_real_interval_s": 0.1,
                  "tick_real_s": 0.05},
        "accounts": [{"id": "DU1"}],
        "underlyings": [{"symbol": "SPY", "spot": 600.0, "vol": 0.2}],
        "contracts": contracts,
        "positions": [{"account": "DU1", "con_id": 1000 + i, "qty": 1 + i % 3, "avg_cost": "mark"}
                      for i in range(INITIAL_POSITIONS)],
        "pacing": {"max_per_s": 50, "disconnect_after": 3},
        "events": list(plan.events),
    })  # fmt: skip


@dataclass
class WeekResult:
    sent: int = 0
    stored: int = 0
    lost: int = 0
    duplicated: int = 0
    max_ib_connections: int = 0
    order_requests: int = 0
    pacing_errors: int = 0
    truth_gaps: int = 0
    gaps_missing_from_stream_health: list[str] = field(default_factory=list)
    eod_rows: int = 0
    eod_rows_affected: int = 0
    eod_rows_flagged: int = 0
    affected_not_flagged: list[str] = field(default_factory=list)
    stream_health_intervals: dict[str, int] = field(default_factory=dict)
    reconnects: int = 0
    resubscriptions: int = 0
    sessions: int = 0
    notes: dict[str, Any] = field(default_factory=dict)

    def figures(self) -> dict[str, Any]:
        """What the report shows beside lost/duplicated/connections/orders."""
        return {"sessions": self.sessions, "truth_gaps": self.truth_gaps,
                "gaps_missing_from_stream_health": len(self.gaps_missing_from_stream_health),
                "stream_health_intervals": self.stream_health_intervals, "eod_rows": self.eod_rows,
                "eod_rows_affected": self.eod_rows_affected, "eod_rows_flagged": self.eod_rows_flagged,
                "affected_not_flagged": len(self.affected_not_flagged), "pacing_errors": self.pacing_errors,
                "reconnects": self.reconnects, "resubscriptions": self.resubscriptions, **self.notes}  # fmt: skip

    @property
    def ok(self) -> bool:
        return (self.lost == 0 and self.duplicated == 0 and self.max_ib_connections <= 1 and self.order_requests == 0
                and self.pacing_errors == 0 and not self.gaps_missing_from_stream_health
                and not self.affected_not_flagged and self.truth_gaps > 0 and self.eod_rows > 0)  # fmt: skip


def _truth_gaps(sim: ChaosSimulator, plan: WeekPlan) -> list[tuple[str, datetime, datetime]]:
    """(state, start, end) of every gap the simulator made, in simulated time. A restart ends when our client is
    connected again: the first message sent to us after the refused window (real time: messages the publisher wrote
    to the aborted socket in the same step are recorded as sent too)."""
    events = sim.truth["health"]
    sent = sorted((float(e["wall_time"]), datetime.fromisoformat(e["sim_time"])) for e in sim.truth["sent"]
                  if e["client_id"] == CLIENT_ID)  # fmt: skip
    gaps = []
    for e in events:
        state = TRUTH_STATES.get(e["event"])
        if state is None:
            continue
        start = datetime.fromisoformat(e["sim_time"])
        if state == "restarting":
            refused_until = float(e["wall_time"]) + float(e["refuse_seconds"])
            end = next((t for wall, t in sent if wall > refused_until), plan.end)
        else:
            end_name = e["event"].replace("_start", "_end")
            ends = [datetime.fromisoformat(x["sim_time"]) for x in events if x["event"] == end_name]
            end = next((t for t in ends if t >= start), plan.end)
        gaps.append((state, start, end))
    return gaps


def _check_stream_health(
    result: WeekResult, lake: Lake, stream_id: str, truth: list[tuple[str, datetime, datetime]], slack: timedelta
) -> None:
    """Every true gap overlaps a gap interval of stream_health (the same state, or another gap state when the
    client was not connected to hear it, e.g. a reset during a restart)."""
    rows = lake.scan("stream_health").filter(pl.col("stream_id") == stream_id).collect()
    intervals = health_intervals(rows, datetime.now(UTC))
    result.stream_health_intervals = dict(intervals.group_by("state").len().sort("state").iter_rows())
    gaps = intervals.filter(pl.col("state").is_in(GAP_STATES))
    same_state = 0
    for state, start, end in truth:
        overlapping = gaps.filter((pl.col("started_at") < end + slack) & (pl.col("ended_at") > start - slack))
        if overlapping.height == 0:
            result.gaps_missing_from_stream_health.append(f"{state} at {start.astimezone(NY):%m-%d %H:%M} ET")
        same_state += state in overlapping["state"].to_list()
    result.notes["truth_gaps_recorded_with_the_same_state"] = same_state


def _check_eod(result: WeekResult, lake: Lake, plan: WeekPlan, truth: list[tuple[str, datetime, datetime]]) -> None:
    run = daily.refresh_eod_positions(lake, list(plan.days))
    eod = run.frame.filter(~pl.col("is_closed").fill_null(False))
    result.eod_rows = eod.height
    result.sessions = len(plan.days)
    for row in eod.iter_rows(named=True):
        cut = sessions.eod_cut(row["trade_date"])
        times = [row[c] for c in ("portfolio_at", "pnl_single_at", "greeks_at") if row[c] is not None]
        oldest = min(times) if times else sessions.eod_cut(sessions.previous_session(row["trade_date"]))
        affected = any(start < cut and end > oldest for _state, start, end in truth)
        flagged = row["health_gap"] is not None
        result.eod_rows_affected += affected
        result.eod_rows_flagged += flagged
        if affected and not flagged:
            result.affected_not_flagged.append(f"{row['trade_date']} {row['account']} {row['con_id']}")
    flagged_words = eod.filter(pl.col("health_gap").is_not_null())["health_gap"].unique().to_list()
    result.notes["eod_flags"] = sorted(flagged_words)[:10]


def run_week(quick: bool, workdir: Path) -> WeekResult:
    plan = week_plan(quick)
    scenario = week_scenario(plan)
    result = WeekResult()
    home = workdir / "home"
    lake = Lake.at(str(workdir / "lake"))
    windows: list[tuple[float, float]] = []
    with ChaosSimulator(scenario, port=0).running() as sim:
        settings = StreamerSettings(port=sim.port, client_id=CLIENT_ID, home=home, backoff_initial_s=0.05,
                                    backoff_max_s=0.3, circuit_cooldown_s=0.5, connect_timeout_s=5.0,
                                    line_budget=INITIAL_POSITIONS + BURST_POSITIONS)  # fmt: skip
        streamer = IBPositionStreamer()
        streamer.ensure_started(settings, clock=sim.clock.now)
        try:
            wait_for(lambda: sim.clock.now() >= plan.end, 900, "the end of the simulated week", step=0.5)
            # the last fault is long over: the stream is connected and every line subscribed
            wait_for(lambda: streamer.status().connection.connected, 60, "the stream connected at the end")
            time.sleep(2.0)
            status = streamer.status()
        finally:
            streamer.stop()
        result.reconnects = status.connection.reconnects
        result.resubscriptions = status.connection.resubscriptions
        for e in sim.truth["health"]:
            if e["event"] == "restart":
                windows.append((float(e["wall_time"]), float(e["wall_time"]) + plan.restart_refuse_s + 5.0))
        windows.append((time.time(), float("inf")))  # unread when the streamer stopped
        result.max_ib_connections = sim.max_concurrent_connections(CLIENT_ID)
        result.order_requests = order_requests(sim)
        result.pacing_errors = sum(1 for e in sim.truth["health"] if e["event"].startswith("pacing"))
        truth_sent = [e for e in sim.truth["sent"] if e.get("client_id") == CLIENT_ID]
        truth = _truth_gaps(sim, plan)
        ids = option_ids(sim)
    with Spool(settings.spool_path) as spool:
        while drain_spool_to_lake(spool, lake, settings.stream_id).backlog:  # each call takes at most 50,000 rows
            pass
    verdict = verify(truth_sent=truth_sent, lake=lake, stream_id=settings.stream_id, spool_path=settings.spool_path,
                     option_ids=ids, windows=windows)  # fmt: skip
    result.sent, result.stored, result.lost, result.duplicated = (verdict.sent, verdict.stored, verdict.lost,
                                                                  verdict.duplicated)  # fmt: skip
    result.notes["verify"] = verdict.details
    result.truth_gaps = len(truth)
    _check_stream_health(result, lake, settings.stream_id, truth, timedelta(seconds=SLACK_REAL_S * plan.speed))
    _check_eod(result, lake, plan, truth)
    return result
