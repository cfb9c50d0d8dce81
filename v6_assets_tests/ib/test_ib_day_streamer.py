"""The streamer through IB's day and night (simulator scenario events, real loopback sockets, ib_async unmodified):
the nightly reset with data lost (resubscribe), a farm drop, a competing session (10197) and the daily restart, with
the simulator enforcing IB's 50 messages/s -- and the stream_health intervals the streamer records for each."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from v6_assets.contracts.streams import HealthInterval
from v6_assets.gateway_sim import GatewaySimulator, parse_scenario
from v6_assets.gateway_sim.scenario_model import Scenario
from v6_assets.ib import IBPositionStreamer, Spool, StreamerSettings
from v6_assets_tests.ib.simhelpers import wait_for

CLIENT_ID = 62
POSITIONS = 30
START = "2025-03-03T09:25:00-05:00"  # a Monday before the open; events fall in regular hours
SPEED = 120.0


def day_scenario(events: list[dict[str, Any]], positions: int = POSITIONS, speed: float = SPEED) -> Scenario:
    """``positions`` option positions of one account, IB's pacing enforced (50/s, a disconnect after 2 s over)."""
    return parse_scenario({
        "name": "ib-day",
        "seed": 7,
        "clock": {"start": START, "speed": speed, "min_real_interval_s": 0.05, "tick_real_s": 0.02},
        "accounts": [{"id": "DU1"}],
        "underlyings": [{"symbol": "SPY", "spot": 600.0, "vol": 0.2}],
        "contracts": [
            {"con_id": 1000 + i, "symbol": "SPY", "sec_type": "OPT", "expiry": "20250417", "strike": 500 + i,
             "right": "C" if i % 2 else "P"}
            for i in range(positions)
        ],
        "positions": [{"account": "DU1", "con_id": 1000 + i, "qty": 1 + i % 3, "avg_cost": 900.0}
                      for i in range(positions)],
        "pacing": {"max_per_s": 50, "disconnect_after": 2},
        "events": events,
    })  # fmt: skip


def settings_for(sim: GatewaySimulator, home: Path) -> StreamerSettings:
    return StreamerSettings(port=sim.port, client_id=CLIENT_ID, home=home, backoff_initial_s=0.1, backoff_max_s=0.5,
                            connect_timeout_s=2.0, line_budget=POSITIONS, circuit_cooldown_s=1.0)  # fmt: skip


def health_rows(settings: StreamerSettings) -> list[HealthInterval]:
    with Spool(settings.spool_path) as spool:
        return [r.event for r in spool.read(0, 10_000_000) if isinstance(r.event, HealthInterval)]


def pnl_single_sent_after(sim: GatewaySimulator, at_wall: float) -> set[int]:
    return {e["con_id"] for e in sim.truth["sent"]
            if e["client_id"] == CLIENT_ID and e["kind"] == "pnl_single" and e["wall_time"] > at_wall}  # fmt: skip


def health_event(sim: GatewaySimulator, name: str) -> dict[str, Any]:
    return next(e for e in sim.truth["health"] if e["event"] == name)


def most_requests_in_one_second(sim: GatewaySimulator) -> int:
    times = sorted(r["wall_time"] for r in sim.requests() if r["client_id"] == CLIENT_ID)
    most, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= 1.0:
            lo += 1
        most = max(most, hi - lo + 1)
    return most


@pytest.fixture
def streamer() -> Iterator[IBPositionStreamer]:
    s = IBPositionStreamer()
    yield s
    s.stop()


EVENTS = [
    {"kind": "reset", "after": 600, "seconds": 120, "data_lost": True},
    {"kind": "farm_down", "after": 1200, "seconds": 120},
    {"kind": "competing_session", "after": 1800, "seconds": 120},
    {"kind": "restart", "after": 2400, "seconds": 1.5},
]


def test_the_streamer_lives_through_the_day_and_records_every_state(
    streamer: IBPositionStreamer, tmp_path: Path
) -> None:
    scenario = day_scenario(EVENTS)
    with GatewaySimulator(scenario, port=0).running() as sim:
        settings = settings_for(sim, tmp_path)
        streamer.ensure_started(settings, clock=sim.clock.now)
        wait_for(lambda: streamer.status().subscriptions.pnl_subscriptions == POSITIONS, 15, "every PnL line")
        # 1. the nightly reset, data lost: every line is subscribed again and PnL single flows for all
        sim.wait_sim_time(scenario.clock.start + timedelta(seconds=600 + 130), timeout=30)
        end = health_event(sim, "reset_end")["wall_time"]
        wait_for(lambda: len(pnl_single_sent_after(sim, end)) == POSITIONS, 15, "PnL single for all after 1101")
        assert streamer.status().connection.resubscriptions == 1
        # 2. the farm drop and 3. the competing session: the socket stays up, the state is said in words
        sim.wait_sim_time(scenario.clock.start + timedelta(seconds=1800 + 30), timeout=30)
        wait_for(lambda: streamer.status().connection.health_state == "competing_session", 5, "10197 seen")
        words = streamer.status().connection.health or ""
        assert words.startswith("competing live session since 09:55 ET: no marks"), words
        assert "competing live session since 09:55 ET" in streamer.status().describe()
        wait_for(lambda: streamer.status().connection.health_state == "connected", 15, "market data again")
        # 4. the daily restart: the socket drops, connects are refused, the streamer comes back and resubscribes
        sim.wait_sim_time(scenario.clock.start + timedelta(seconds=2400 + 1), timeout=30)
        restart = health_event(sim, "restart")["wall_time"]
        wait_for(lambda: streamer.status().connection.reconnects >= 1 and streamer.status().connection.connected,
                 15, "the reconnect after the restart")  # fmt: skip
        wait_for(lambda: len(pnl_single_sent_after(sim, restart + 1.5)) == POSITIONS, 15, "PnL single after it")
        assert streamer.status().connection.health_state == "connected"
        streamer.stop()
        # never over IB's pacing limit, never more than one connection, never an order
        assert not [e for e in sim.truth["health"] if e["event"].startswith("pacing")]
        assert most_requests_in_one_second(sim) <= 50
        assert sim.max_concurrent_connections(CLIENT_ID) <= 1
        assert sim.order_violations() == 0
    rows = health_rows(settings)
    begun = [r.state for r in rows if r.ended_at is None]
    assert begun == ["connected", "reset", "connected", "farm_down", "connected",
                     "competing_session", "connected", "restarting", "connected", "disconnected"]  # fmt: skip
    # every interval that began also ended (the last one: the stop), at the start of the next
    ended = [r for r in rows if r.ended_at is not None]
    assert [r.state for r in ended] == begun[:-1]
    assert all(
        a.ended_at == b.started_at for a, b in zip(ended, [r for r in rows if r.ended_at is None][1:], strict=True)
    )
    # the gaps line up with the simulator's truth (simulated clock)
    reset = next(r for r in ended if r.state == "reset")
    truth_start = datetime.fromisoformat(health_event(sim, "reset_start")["sim_time"])
    truth_end = datetime.fromisoformat(health_event(sim, "reset_end")["sim_time"])
    assert abs((reset.started_at - truth_start).total_seconds()) < 30
    assert reset.ended_at is not None and abs((reset.ended_at - truth_end).total_seconds()) < 30
    farm = next(r for r in rows if r.state == "farm_down")
    assert farm.detail.startswith("IB 2103")
