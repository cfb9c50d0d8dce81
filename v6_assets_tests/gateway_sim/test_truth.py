"""Ground truth: a hand-computed PnL scenario, (U_D - U_{D-1}) + R_D over sent values == the statement formula,
determinism, and what the unmodified ib_async client receives == the truth files."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

from ib_async import IB

from v6_assets import sessions
from v6_assets.contracts.money import Money
from v6_assets.gateway_sim import GatewaySimulator, load_scenario
from v6_assets.gateway_sim.protocol import UNSET_DOUBLE
from v6_assets_tests.gateway_sim.helpers import hand_scenario, run, tiny_scenario


async def _run_sessions(sim: GatewaySimulator, count: int, clients: list[tuple[int, str]]) -> list[IB]:
    connected = []
    for client_id, account in clients:
        ib = IB()
        await ib.connectAsync("127.0.0.1", sim.port, clientId=client_id, readonly=True, account=account, timeout=5)
        connected.append(ib)
    async with asyncio.timeout(45):
        await sim.wait_sessions_closed(count)
    return connected


def _eod(sim: GatewaySimulator) -> dict[tuple[str, str, int], dict[str, Any]]:
    return {(e["session"], e["account"], e["con_id"]): e for e in sim.truth["eod"]}


def test_hand_computed_daily_pnl() -> None:
    """Spot pinned at 100 (vol ~0), option marks pinned by events; every figure below is worked by hand.

    con 11 (100 C, m=100): D0 buy 10 @ 1.50 + 1.00 commission, close mark 2.50
      avg = (10*150 + 1)/10 = 150.10; U = 10*250 - 1501 = 999.00; R = 0 -> pnl 999.00
      statement: transaction MTM 10*(2.50-1.50)*100 = 1000 - 1 commission = 999.00
    D1 mark 3.00, sell 4 @ 2.80 + 0.60: U = 6*300 - 6*150.10 = 899.40; R = 4*(280 - 150.10) - 0.60 = 519.00
      pnl = 899.40 - 999.00 + 519.00 = 419.40 = 10*(3.00-2.50)*100 - 4*(3.00-2.80)*100 - 0.60
    con 12 (95 C, 3 held @ 480): pre-existing -> D0 baseline (null); expires D1 in the money at 5.00:
      R = 3*(500 - 480) = 60.00, position 0, daily pnl = 3*(5.00 - 5.00)*100 + (-3)*(5.00-5.00)*100 = 0.00
    con 13 (90 P, m=50, short 2 @ 40): expires worthless D1: R = 2*40 = 80.00
    """

    async def main() -> GatewaySimulator:
        sim = GatewaySimulator(hand_scenario())
        await sim.start()
        try:
            ibs = await _run_sessions(sim, 2, [(1, "DU1")])
            for ib in ibs:
                ib.disconnect()
        finally:
            await sim.stop()
        return sim

    sim = run(main())
    eod = _eod(sim)
    d0, d1 = "2025-03-03", "2025-03-04"
    c11_d0, c11_d1 = eod[(d0, "DU1", 11)], eod[(d1, "DU1", 11)]
    assert (c11_d0["position"], c11_d0["mark"], c11_d0["average_cost"]) == (10.0, 2.5, Money(150.10))
    assert c11_d0["unrealized_pnl"] == Money(999.00) and c11_d0["daily_pnl"] == Money(999.00)
    assert c11_d0["realized_pnl_sent"] == 0.0 and c11_d0["commissions"] == 1.0
    assert (c11_d1["position"], c11_d1["prev_position"], c11_d1["mark"]) == (6.0, 10.0, 3.0)
    assert c11_d1["unrealized_pnl"] == Money(899.40)
    assert c11_d1["realized_pnl"] == Money(519.00)
    assert c11_d1["daily_pnl"] == Money(419.40)
    c12_d0, c12_d1 = eod[(d0, "DU1", 12)], eod[(d1, "DU1", 12)]
    assert c12_d0["daily_pnl"] is None and c12_d0["baseline"] is True
    assert c12_d0["realized_pnl_sent"] == UNSET_DOUBLE  # not traded this session: IB's sentinel
    assert (c12_d1["position"], c12_d1["closed"], c12_d1["mark"]) == (0.0, True, 5.0)
    assert c12_d1["realized_pnl"] == Money(60.00) and c12_d1["daily_pnl"] == Money(0.00)
    c13_d1 = eod[(d1, "DU1", 13)]
    assert (c13_d1["position"], c13_d1["mark"], c13_d1["realized_pnl"]) == (0.0, 0.0, Money(80.00))
    assert c13_d1["daily_pnl"] == Money(0.00)  # prev close mark was already 0 (1 day, far OTM, no vol)
    assert not any(e["session"] > d1 for e in sim.truth["eod"])  # expired positions do not linger
    _check_identity(sim)


def _check_identity(sim: GatewaySimulator) -> int:
    """(U_D - U_{D-1}) + R_D from the last portfolio row sent at or before each cut == daily_pnl, to the cent."""
    last_row: dict[tuple[str, str, int], dict[str, Any]] = {}
    for entry in sim.truth["sent"]:
        if entry["kind"] == "portfolio":
            session = sessions.session_for(datetime.fromisoformat(entry["sim_time"])).isoformat()
            last_row[(session, entry["account"], entry["con_id"])] = entry
    checked = 0
    for (session, account, con_id), eod in _eod(sim).items():
        if eod["baseline"]:
            continue
        row = last_row[(session, account, con_id)]
        previous = sessions.previous_session(datetime.fromisoformat(session).date()).isoformat()
        prev_row = last_row.get((previous, account, con_id))
        u_prev = prev_row["unrealized_pnl"] if prev_row and prev_row["position"] else 0.0
        realized = 0.0 if row["realized_pnl"] == UNSET_DOUBLE else row["realized_pnl"]
        assert row["unrealized_pnl"] == eod["unrealized_pnl"]
        if eod["position"]:  # open positions: the close refresh is the last row; a closed one's 0-row came earlier
            assert row["market_price"] == eod["mark"] and row["position"] == eod["position"]
        # to the cent and then some: the two computations differ only by float rounding
        assert abs(row["unrealized_pnl"] - u_prev + realized - eod["daily_pnl"]) < 1e-6, (session, con_id)
        checked += 1
    return checked


def test_identity_over_the_demo_book_and_client_sees_the_truth(tmp_path: Path) -> None:
    """Demo book (FOP m=50, adjusted m=103, shorts, same-day round trip, expiry): values sent satisfy the identity,
    and what ib_async surfaces equals the truth files."""
    scenario = load_scenario("demo", start_time=datetime.fromisoformat("2025-03-03T09:00:00-05:00"))
    accounts = scenario.account_ids

    async def main() -> tuple[GatewaySimulator, dict[str, list[Any]]]:
        sim = GatewaySimulator(scenario, speed=30000, truth_dir=tmp_path / "truth")
        await sim.start()
        seen: dict[str, list[Any]] = defaultdict(list)
        try:
            ib = IB()
            ib.updatePortfolioEvent += lambda item: seen["portfolio"].append(item)
            ib.pnlSingleEvent += lambda pnl: seen["pnl_single"].append(pnl)
            await ib.connectAsync("127.0.0.1", sim.port, clientId=1, readonly=True, account=accounts[0], timeout=5)
            seen["positions"] = list(ib.positions())
            for p in seen["positions"]:
                if p.account == accounts[0] and p.contract.secType in ("OPT", "FOP"):
                    ib.reqPnLSingle(p.account, "", p.contract.conId)
                    seen["tickers"].append(ib.reqMktData(p.contract, "", False, False))
            others = await _run_sessions(sim, 6, [(2, accounts[1]), (3, accounts[2])])
            for client in [ib, *others]:
                client.disconnect()
        finally:
            await sim.stop()
        return sim, seen

    sim, seen = run(main(), timeout=90)
    assert _check_identity(sim) >= 25
    # reqPnLSingle's dailyPnL (IB's formula since the reset at the previous cut) == the statement formula at the cut
    last_pnl: dict[tuple[str, str, int], float] = {}
    for entry in sim.truth["sent"]:
        if entry["kind"] == "pnl_single":
            session = sessions.session_for(datetime.fromisoformat(entry["sim_time"])).isoformat()
            last_pnl[(session, entry["account"], entry["con_id"])] = entry["daily_pnl"]
    compared = 0
    for key, row in _eod(sim).items():
        if not row["baseline"] and key in last_pnl:
            assert abs(last_pnl[key] - row["daily_pnl"]) < 1e-6, key
            compared += 1
    assert compared >= 10
    eod = sim.truth["eod"]
    assert {e["sec_type"] for e in eod} == {"OPT", "FOP"}  # the stock position is not in the EOD truth
    assert any(e["multiplier"] == 103.0 for e in eod) and any(e["multiplier"] == 50.0 for e in eod)
    assert any(e["closed"] and e["realized_pnl"] != 0 for e in eod)

    # the truth files equal the in-memory truth
    sent_file = [json.loads(line) for line in (tmp_path / "truth" / "sent.jsonl").read_text().splitlines()]
    eod_file = [json.loads(line) for line in (tmp_path / "truth" / "eod.jsonl").read_text().splitlines()]
    assert sent_file == sim.truth["sent"] and eod_file == eod
    sent_portfolio = {
        (e["con_id"], e["position"], e["market_price"], e["market_value"], e["average_cost"], e["unrealized_pnl"],
         e["realized_pnl"]) for e in sent_file if e["kind"] == "portfolio" and e["client_id"] == 1
    }  # fmt: skip
    assert len(seen["portfolio"]) > 20
    for item in seen["portfolio"]:
        key = (item.contract.conId, item.position, item.marketPrice, item.marketValue, item.averageCost,
               item.unrealizedPNL, item.realizedPNL)  # fmt: skip
        assert key in sent_portfolio
        assert item.account == accounts[0]
    sent_pnl = {(e["con_id"], e["position"], e["daily_pnl"], e["unrealized_pnl"], e["realized_pnl"], e["value"])
                for e in sent_file if e["kind"] == "pnl_single" and e["client_id"] == 1}  # fmt: skip
    assert seen["pnl_single"]
    for pnl in seen["pnl_single"]:
        assert (pnl.conId, pnl.position, pnl.dailyPnL, pnl.unrealizedPnL, pnl.realizedPnL, pnl.value) in sent_pnl
    sent_greeks = {
        (e["con_id"], e["delta"], e["gamma"], e["vega"], e["theta"], e["und_price"], e["implied_vol"])
        for e in sent_file if e["kind"] == "greeks" and e["client_id"] == 1
    }  # fmt: skip
    assert len(seen["tickers"]) == 4
    for ticker in seen["tickers"]:
        g = ticker.modelGreeks
        assert g is not None  # the last greeks the client saw were sent, exactly
        assert (ticker.contract.conId, g.delta, g.gamma, g.vega, g.theta, g.undPrice, g.impliedVol) in sent_greeks
    positions = {(p.account, p.contract.conId) for p in seen["positions"]}
    assert (accounts[0], 756733) in positions  # the stock position is sent (clients must ignore it)


def test_same_scenario_and_seed_give_identical_truth() -> None:
    async def once(seed: int) -> list[dict[str, Any]]:
        sim = GatewaySimulator(tiny_scenario(accounts=2, clock={"start": "2025-03-03T09:25:00-05:00",
                                                                 "speed": 20000}), seed=seed)  # fmt: skip
        await sim.start()
        try:
            async with asyncio.timeout(30):
                await sim.wait_sessions_closed(2)
        finally:
            await sim.stop()
        return sim.truth["eod"]

    first, second, other = run(once(5)), run(once(5)), run(once(6))
    assert len(first) == 4 and first == second
    assert [e["mark"] for e in first] != [e["mark"] for e in other]
