"""The thread-mode API (``running()``), simulated time, nastiness switches and account-level values."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import UTC, datetime, timedelta

from ib_async import IB, Option

from v6_assets.gateway_sim import GatewaySimulator
from v6_assets.gateway_sim.scenario_model import Account
from v6_assets_tests.gateway_sim.helpers import run, tiny_scenario


def test_running_in_a_thread_with_a_sync_client() -> None:
    scenario = tiny_scenario(
        events=[{"kind": "trade", "after": 3600, "account": "DU1", "con_id": 101, "qty": -3, "price": "mark",
                 "commission": 1.5}],
    )  # fmt: skip
    with GatewaySimulator(scenario).running() as sim:
        assert sim.port > 0
        ib = IB()
        ib.connect("127.0.0.1", sim.port, clientId=4, readonly=True, account="DU1", timeout=5)
        try:
            server_time = ib.reqCurrentTime()
            assert abs((server_time - sim.clock.now()).total_seconds()) < 600 * 2  # simulated, not wall, time
            assert server_time < datetime(2025, 3, 4, tzinfo=UTC)
            assert sim.wait_sim_time(timedelta(minutes=10), timeout=10)
            assert sim.timeline_done.wait(15)
            ib.sleep(0.3)
            short = [p for p in ib.portfolio() if p.contract.conId == 101]
            assert len(short) == 1 and short[0].position == -3.0
            assert short[0].realizedPNL == 0.0  # traded this session (an opening trade realizes nothing)
            untouched = [p for p in ib.portfolio() if p.contract.conId == 100]
            assert untouched[0].realizedPNL == 1.7976931348623157e308  # not traded this session: IB's sentinel
            assert sim.active_client_ids() == [4]
        finally:
            ib.disconnect()


def test_after_hours_stale_marks_sentinel_greeks_and_account_values() -> None:
    scenario = tiny_scenario(
        clock={"start": "2025-03-03T16:05:00-05:00", "speed": 600, "min_real_interval_s": 0.02, "tick_real_s": 0.02},
        nastiness={"greeks_sentinel_every": 2},
    )
    scenario = dataclasses.replace(scenario, accounts=(Account("DU1", "EUR", {"USD": 0.92}),))

    async def main() -> None:
        sim = GatewaySimulator(scenario)
        await sim.start()
        try:
            ib = IB()
            computations = []
            await ib.connectAsync("127.0.0.1", sim.port, clientId=1, readonly=True, account="DU1", timeout=5)
            values = {(v.tag, v.currency): v.value for v in ib.accountValues("DU1")}
            assert values[("ExchangeRate", "USD")] == "0.92" and values[("Currency", "EUR")] == "EUR"
            pnl = ib.reqPnL("DU1")
            ticker = ib.reqMktData(Option(conId=100, exchange="SMART"), "", False, False)
            ticker.updateEvent += lambda t: computations.append(t.modelGreeks)
            await asyncio.sleep(1.0)
            assert ticker.bid == -1.0 and ticker.ask == -1.0  # after hours
            assert ticker.last is not None and ticker.last > 0  # the stale close mark
            marks = {e["market_price"] for e in sim.truth["sent"] if e["kind"] == "portfolio"}
            assert len(marks) == 1  # no movement after the close
            not_computed = [c for c in computations if c is not None and c.delta is None]
            computed = [c for c in computations if c is not None and c.delta is not None]
            assert not_computed and computed
            assert all(c.impliedVol is None and c.vega == -2.0 for c in not_computed)  # ib_async leaks vega -2
            assert pnl.unrealizedPnL is not None
            single = next(e for e in reversed(sim.truth["sent"]) if e["kind"] == "pnl")
            assert pnl.unrealizedPnL == single["unrealized_pnl"]
            ib.disconnect()
        finally:
            await sim.stop()

    run(main())


def test_a_fast_clock_holds_at_a_stop_until_released_and_never_goes_back() -> None:
    from datetime import UTC, datetime, timedelta

    from v6_assets.gateway_sim.clock import SimClock

    start = datetime(2025, 3, 3, 14, 0, tzinfo=UTC)
    clock = SimClock(start, speed=36000.0, live_cap=False)  # 10 simulated hours per real second
    stop = start + timedelta(minutes=30)
    clock.stop_at(stop)
    clock.start()
    time.sleep(0.2)  # 2 simulated hours would have passed
    assert clock.now() == stop and clock.held_at_stop
    clock.release(0.1)
    assert not clock.held_at_stop  # released (resumes 0.1 s later)
    time.sleep(0.2)
    after = clock.now()
    assert after > stop and not clock.has_stop
    clock.set_speed(1.0)
    clock.stop_at(after - timedelta(minutes=5))  # a stop behind the clock
    clock.set_speed(36000.0)
    assert clock.now() >= after  # never backwards
