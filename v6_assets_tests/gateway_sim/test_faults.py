"""Every fault kind, observed by the unmodified ib_async client over a real socket."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from ib_async import IB

from v6_assets.gateway_sim import GatewaySimulator, parse_scenario
from v6_assets_tests.gateway_sim.helpers import HAND_START, run, tiny_scenario


async def _connected(sim: GatewaySimulator, client_id: int = 1) -> IB:
    ib = IB()
    await ib.connectAsync("127.0.0.1", sim.port, clientId=client_id, readonly=True, account="DU1", timeout=5)
    return ib


def test_disconnect_all() -> None:
    async def main() -> None:
        sim = GatewaySimulator(tiny_scenario())
        await sim.start()
        try:
            ib = await _connected(sim)
            lost = asyncio.Event()
            ib.disconnectedEvent += lost.set
            sim.disconnect_all()
            async with asyncio.timeout(3):
                await lost.wait()
            assert not ib.isConnected()
            await asyncio.sleep(0.05)
            assert sim.active_client_ids() == []
            ib2 = await _connected(sim)  # the same client id may come back
            assert sim.active_client_ids() == [1]
            ib2.disconnect()
        finally:
            await sim.stop()

    run(main())


def test_refuse_connections_then_accept_again() -> None:
    async def main() -> None:
        sim = GatewaySimulator(tiny_scenario())
        await sim.start()
        try:
            sim.refuse_connections(0.6)
            await asyncio.sleep(0.05)
            with pytest.raises(ConnectionRefusedError):
                await IB().connectAsync("127.0.0.1", sim.port, clientId=1, readonly=True, timeout=2)
            await asyncio.sleep(0.8)
            ib = await _connected(sim)
            assert ib.isConnected()
            ib.disconnect()
        finally:
            await sim.stop()

    run(main())


def test_stall_output_holds_messages_then_delivers() -> None:
    async def main() -> None:
        sim = GatewaySimulator(tiny_scenario())
        await sim.start()
        try:
            ib = await _connected(sim)
            arrivals: list[float] = []
            pnl = ib.reqPnLSingle("DU1", "", 100)
            ib.pnlSingleEvent += lambda _: arrivals.append(time.monotonic())
            await asyncio.sleep(0.3)
            assert arrivals and pnl.position == 2.0
            stall_start = time.monotonic()
            sim.stall_output(1.0)
            await asyncio.sleep(1.3)
            gap = [t for t in arrivals if stall_start + 0.05 < t < stall_start + 0.95]
            after = [t for t in arrivals if t >= stall_start + 0.95]
            assert gap == []  # nothing arrived while stalled
            assert after  # the held messages (and new ones) arrive afterwards
            assert ib.isConnected()
            ib.disconnect()
        finally:
            await sim.stop()

    run(main())


def test_send_error_malformed_and_truncated(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        sim = GatewaySimulator(tiny_scenario())
        await sim.start()
        try:
            ib = await _connected(sim)
            errors: list[tuple[int, int, str]] = []
            ib.errorEvent += lambda req_id, code, msg, contract: errors.append((req_id, code, msg))
            with caplog.at_level(logging.ERROR, logger="ib_async"):
                sim.send_error(1100, "Connectivity between IB and Trader Workstation has been lost.")
                sim.send_malformed_frame()
                sim.send_truncated_message()
                await asyncio.sleep(0.3)
            assert errors == [(-1, 1100, "Connectivity between IB and Trader Workstation has been lost.")]
            decoder_errors = [r.getMessage() for r in caplog.records if r.name == "ib_async.Decoder"]
            assert any("NOT-A-MSG-ID" in m for m in decoder_errors)  # the malformed frame
            assert any("TRUNC" in m for m in decoder_errors)  # the truncated PORTFOLIO_VALUE
            assert "TRUNC" not in {item.contract.symbol for item in ib.portfolio()}
            assert ib.isConnected()  # the client survives both
            ib.disconnect()
        finally:
            await sim.stop()

    run(main())


def test_faults_from_the_scenario_timeline(caplog: pytest.LogCaptureFixture) -> None:
    """The timeline drives the same faults: error, malformed, truncated, stall, then disconnect."""
    base = tiny_scenario()
    events = [
        {"kind": "error", "after": 120, "code": 2110, "message": "Connectivity between TWS and server is broken."},
        {"kind": "malformed", "after": 150},
        {"kind": "truncated", "after": 180},
        {"kind": "stall", "after": 240, "seconds": 0.4},
        {"kind": "refuse", "after": 300, "seconds": 0.2},
        {"kind": "disconnect", "after": 600},
    ]
    scenario = parse_scenario(
        {
            "name": "faults",
            "clock": {"start": HAND_START, "speed": 600, "min_real_interval_s": 0.02, "tick_real_s": 0.02},
            "accounts": [{"id": "DU1"}],
            "underlyings": [{"symbol": "SPY", "spot": 600.0, "vol": 0.2}],
            "contracts": [
                {"con_id": 100, "symbol": "SPY", "sec_type": "OPT", "expiry": "20250321", "strike": 600, "right": "C"}
            ],
            "positions": [{"account": "DU1", "con_id": 100, "qty": 2, "avg_cost": 900.0}],
            "events": events,
        }
    )
    assert base.clock.start == scenario.clock.start

    async def main() -> None:
        sim = GatewaySimulator(scenario)
        await sim.start()
        try:
            ib = await _connected(sim)
            errors: list[int] = []
            ib.errorEvent += lambda req_id, code, msg, contract: errors.append(code)
            lost = asyncio.Event()
            ib.disconnectedEvent += lost.set
            with caplog.at_level(logging.ERROR, logger="ib_async"):
                async with asyncio.timeout(5):
                    await lost.wait()
            assert errors == [2110]
            messages = [r.getMessage() for r in caplog.records if r.name == "ib_async.Decoder"]
            assert any("NOT-A-MSG-ID" in m for m in messages) and any("TRUNC" in m for m in messages)
            async with asyncio.timeout(5):
                await sim.wait_timeline_done()
        finally:
            await sim.stop()

    run(main())
