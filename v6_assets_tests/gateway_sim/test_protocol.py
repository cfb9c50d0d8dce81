"""Protocol behaviour over real sockets with the unmodified ib_async client (and a raw client where needed)."""

from __future__ import annotations

import asyncio

import pytest
from ib_async import IB, Option

from v6_assets.gateway_sim import GatewaySimulator
from v6_assets_tests.gateway_sim.helpers import RawClient, run, tiny_scenario


async def connect(port: int, client_id: int = 1, account: str = "", max_version: int | None = None) -> IB:
    ib = IB()
    if max_version is not None:
        ib.client.MaxClientVersion = max_version  # an older client offering a narrower version range
    await ib.connectAsync("127.0.0.1", port, clientId=client_id, readonly=True, account=account, timeout=5)
    return ib


@pytest.mark.parametrize(("max_version", "expected"), [(157, 157), (178, 178)])
def test_ib_async_negotiates_both_ends_of_the_range(max_version: int, expected: int) -> None:
    async def main() -> None:
        sim = GatewaySimulator(tiny_scenario())
        await sim.start()
        try:
            ib = await connect(sim.port, max_version=max_version)
            assert ib.client.serverVersion() == expected
            assert [p.contract.conId for p in ib.positions()] == [100]
            # errors are version-correct: ERR_MSG carries the extra field only from 166, else ib_async misparses
            errors: list[tuple[int, int, str]] = []
            ib.errorEvent += lambda req_id, code, msg, contract: errors.append((req_id, code, msg))
            sim.send_error(2104, "Market data farm connection is OK:usfarm", req_id=-1)
            await asyncio.sleep(0.3)
            assert errors == [(-1, 2104, "Market data farm connection is OK:usfarm")]
            ib.disconnect()
        finally:
            await sim.stop()

    run(main())


def test_raw_negotiation_answers_min_of_client_max_and_178_and_closes_below_client_min() -> None:
    with GatewaySimulator(tiny_scenario()).running() as sim:
        old = RawClient(sim.port)
        reply = old.handshake("v100..151")
        assert reply is not None and reply[0] == "151" and len(reply) == 2
        old.send(71, 2, 9, "")
        assert old.read_until("9") == ["9", "1", "1"]
        # below 156, tick 21 keeps its version field and has no tickAttrib (12 fields either way)
        old.send(
            1, 11, 5, 100, "SPY", "OPT", "20250321", 600.0, "C", "100", "SMART", "", "USD", "", "", 0, "", 0, 0, ""
        )
        greeks = old.read_until("21")
        assert greeks[:4] == ["21", "6", "5", "13"] and len(greeks) == 12
        sim.send_error(1100, "Connectivity between IB and TWS has been lost.")
        assert old.read_until("4") == ["4", "2", "-1", "1100", "Connectivity between IB and TWS has been lost."]
        old.close()

        newer = RawClient(sim.port)
        assert newer.handshake("v170..190")[0] == "178"  # type: ignore[index]
        newer.send(71, 2, 10, "")
        newer.read_until("15")
        sim.send_error(1100, "lost")
        assert newer.read_until("4") == ["4", "2", "-1", "1100", "lost", ""]  # advancedOrderRejectJson from 166
        newer.close()

        too_new = RawClient(sim.port)
        assert too_new.handshake("v179..200") is None  # no common version: the server closes
        too_new.close()

        garbage = RawClient(sim.port)
        assert garbage.handshake("hello") is None  # not a version range: closed, nothing else happens
        garbage.close()
        assert any(r["fields"] == ["hello"] for r in sim.requests())


def test_duplicate_client_id_gets_326_and_close() -> None:
    async def main() -> None:
        sim = GatewaySimulator(tiny_scenario())
        await sim.start()
        try:
            first = await connect(sim.port, client_id=7)
            second = IB()
            errors: list[int] = []
            second.errorEvent += lambda req_id, code, msg, contract: errors.append(code)
            with pytest.raises((ConnectionError, TimeoutError, asyncio.TimeoutError)):
                await second.connectAsync("127.0.0.1", sim.port, clientId=7, readonly=True, timeout=2)
            assert 326 in errors
            assert not second.isConnected()
            assert first.isConnected() and sim.active_client_ids() == [7]
            assert sim.max_concurrent_connections(7) == 2
            first.disconnect()
            await asyncio.sleep(0.1)
            third = await connect(sim.port, client_id=7)  # free again once the first one left
            assert sim.active_client_ids() == [7]
            third.disconnect()
        finally:
            await sim.stop()

    run(main())


def test_client_limit() -> None:
    with GatewaySimulator(tiny_scenario(max_clients=2)).running() as sim:
        clients = []
        for client_id in (1, 2, 3):
            raw = RawClient(sim.port)
            raw.handshake("v157..178")
            raw.send(71, 2, client_id, "")
            clients.append(raw)
        assert clients[0].read_until("15")[2] == "DU1"
        assert clients[1].read_until("15")[2] == "DU1"
        error = clients[2].read_until("4")
        assert error[3] == "502"
        assert clients[2].read() is None
        assert sim.active_client_ids() == [1, 2]
        for raw in clients:
            raw.close()


def test_market_data_line_budget_error_101() -> None:
    async def main() -> None:
        sim = GatewaySimulator(tiny_scenario(market_data_lines=2))
        await sim.start()
        try:
            ib = await connect(sim.port)
            errors: list[tuple[int, int]] = []
            ib.errorEvent += lambda req_id, code, msg, contract: errors.append((req_id, code))
            contracts = [
                Option("SPY", "20250321", 600 + 5 * i, "C", "SMART", "100", "USD", conId=100 + i) for i in range(3)
            ]
            tickers = [ib.reqMktData(c, "", False, False) for c in contracts]
            await asyncio.sleep(0.5)
            assert tickers[0].modelGreeks is not None and tickers[1].modelGreeks is not None
            assert tickers[2].modelGreeks is None
            third_req_id = next(r for r, t in ib.wrapper.reqId2Ticker.items() if t is tickers[2])
            assert errors == [(third_req_id, 101)]
            assert sim.lines_in_use() == 2
            ib.cancelMktData(contracts[0])  # frees a line
            await asyncio.sleep(0.2)
            assert sim.lines_in_use() == 1
            ib.reqMktData(contracts[2], "", False, False)
            await asyncio.sleep(0.3)
            assert sim.lines_in_use() == 2 and len(errors) == 1
            ib.disconnect()
            await asyncio.sleep(0.1)
            assert sim.lines_in_use() == 0  # a disconnect releases its lines
        finally:
            await sim.stop()

    run(main())


def test_order_requests_are_refused_and_recorded_as_violations(tmp_path) -> None:  # type: ignore[no-untyped-def]
    record = tmp_path / "requests.jsonl"

    async def main() -> None:
        sim = GatewaySimulator(tiny_scenario(), record_path=record)
        await sim.start()
        try:
            ib = await connect(sim.port, client_id=3)
            errors: list[int] = []
            ib.errorEvent += lambda req_id, code, msg, contract: errors.append(code)
            ib.client.cancelOrder(42)
            ib.client.reqGlobalCancel()
            await asyncio.sleep(0.3)
            assert errors == [321, 321]
            assert sim.order_violations() == 2
            violations = [r for r in sim.requests() if r["violation"]]
            assert [(r["client_id"], r["msg_id"]) for r in violations] == [(3, 4), (3, 58)]
            ib.disconnect()
        finally:
            await sim.stop()

    run(main())
    import json

    lines = [json.loads(line) for line in record.read_text().splitlines()]
    assert sum(1 for r in lines if r["violation"]) == 2
    assert {r["msg_id"] for r in lines} >= {None, 71, 61, 7, 4, 58}


def test_multi_account_semantics() -> None:
    async def main() -> None:
        sim = GatewaySimulator(tiny_scenario(accounts=2))
        await sim.start()
        try:
            # no account= with 2 managed accounts: ib_async never subscribes, so no portfolio rows (as real IB)
            ib = await connect(sim.port, client_id=1)
            rows: list[str] = []
            ib.updatePortfolioEvent += lambda item: rows.append(item.account)
            await asyncio.sleep(0.5)
            assert ib.portfolio() == [] and rows == []
            assert sorted(p.account for p in ib.positions()) == ["DU1", "DU2"]
            assert not any(r["msg_id"] == 6 for r in sim.requests())
            # one subscription at a time: subscribing DU2 then DU1 replaces DU2
            await ib.reqAccountUpdatesAsync("DU2")
            assert set(rows) == {"DU2"}
            rows.clear()
            await ib.reqAccountUpdatesAsync("DU1")
            await asyncio.sleep(0.5)  # several portfolio cadences at this speed
            assert rows and set(rows) == {"DU1"}
            ib.disconnect()
        finally:
            await sim.stop()

    run(main())


def test_bad_requests_get_errors_and_are_recorded() -> None:
    with GatewaySimulator(tiny_scenario()).running() as sim:
        raw = RawClient(sim.port)
        raw.handshake("v157..178")
        raw.send(61, 1)  # a request before startApi: protocol violation, the server closes
        assert raw.read() is None
        raw.close()

        raw = RawClient(sim.port)
        raw.handshake("v157..178")
        raw.send(71, 2, 5, "")
        raw.read_until("15")
        raw.send(94, 7, "DU1", "")  # reqPnLSingle without its conId field
        assert raw.read_until("4")[3] == "320"
        raw.send(94, 8, "DU1", "", 999)  # a position the account does not hold
        assert raw.read_until("4")[2:4] == ["8", "200"]
        raw.send(6, 2, 1, "DU404")  # an account that is not managed
        assert raw.read_until("4")[3] == "321"
        raw.send("NaN-id", 1)  # not a message id: recorded, connection closed
        assert raw.read() is None
        raw.close()
        records = sim.requests()
        assert any(r["fields"] and "protocol error" in r["fields"][0] for r in records)
        assert sim.order_violations() == 0


def test_contract_details_fail_fast() -> None:
    async def main() -> None:
        sim = GatewaySimulator(tiny_scenario())
        await sim.start()
        try:
            ib = await connect(sim.port)
            async with asyncio.timeout(3):  # error 200 ends the request at once (no 4 s request timeout)
                details = await ib.reqContractDetailsAsync(Option("SPY", "20250321", 600, "C", "SMART"))
            assert details == []
            ib.disconnect()
        finally:
            await sim.stop()

    run(main())
