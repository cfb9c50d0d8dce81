"""IB's day and night as the simulator plays it: pacing, the nightly reset, the daily restart, competing sessions."""

from __future__ import annotations

import time
from datetime import datetime

from v6_assets.gateway_sim import GatewaySimulator, pacing
from v6_assets_tests.gateway_sim.helpers import RawClient, tiny_scenario


def _ready(port: int, client_id: int = 5) -> RawClient:
    client = RawClient(port)
    client.handshake("v157..178")
    client.send(71, 2, client_id, "")
    client.read_until("15")
    return client


def _drain(client: RawClient, seconds: float) -> list[list[str]]:
    """Every message arriving within ``seconds`` (stops early at a close)."""
    client.sock.settimeout(0.05)
    messages: list[list[str]] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            fields = client.read()
        except TimeoutError:
            continue
        except ConnectionResetError:
            # the server closed while our requests were still unread: the kernel answers with a reset, not an EOF
            fields = None
        if fields is None:
            messages.append(["closed"])
            break
        messages.append(fields)
    return messages


def test_pacing_check_allows_the_limit_and_counts_a_run_of_seconds() -> None:
    state = pacing.PacingState()
    verdicts = [pacing.check(state, 50, 2, now=0.001 * i) for i in range(51)]
    assert [v for v, _ in verdicts[:50]] == [pacing.Verdict.SERVE] * 50
    assert verdicts[50] == (pacing.Verdict.REJECT, True)  # the 51st within a second: error 100
    assert pacing.check(state, 50, 2, now=0.06) == (pacing.Verdict.REJECT, False)  # one warning per second
    # a fresh second is served again
    assert pacing.check(state, 50, 2, now=1.2)[0] == pacing.Verdict.SERVE


def test_fifty_messages_a_second_pass_and_more_draw_error_100_then_a_disconnect() -> None:
    scenario = tiny_scenario(pacing={"max_per_s": 50, "disconnect_after": 2})
    with GatewaySimulator(scenario).running() as sim:
        calm = _ready(sim.port, client_id=5)
        for _ in range(45):
            calm.send(49, 1)  # reqCurrentTime
        answers = _drain(calm, 0.5)
        assert [m[0] for m in answers].count("49") == 45 and not [m for m in answers if m[0] == "4"]

        burst = _ready(sim.port, client_id=6)
        for _ in range(80):
            burst.send(49, 1)
        answers = _drain(burst, 0.5)
        errors = [m for m in answers if m[0] == "4"]
        assert [m[0] for m in answers].count("49") == 50  # the excess is not served
        assert len(errors) == 1 and errors[0][3] == "100" and "max=50" in errors[0][4]
        assert not any(m == ["closed"] for m in answers)
        # going on: one error 100 a second, and the connection is closed after the allowed run
        closed = False
        for _ in range(6):
            for _ in range(80):
                try:
                    burst.send(49, 1)
                except OSError:
                    break
            answers = _drain(burst, 1.0)
            if ["closed"] in answers:
                closed = True
                break
        assert closed
        health = [e for e in sim.truth["health"] if e["client_id"] == 6]
        assert [e["event"] for e in health][-1] == "pacing_disconnect"
        assert [e["event"] for e in health].count("pacing_violation") == 3  # strikes 1, 2, then 3 > 2: closed
        assert not [e for e in sim.truth["health"] if e["client_id"] == 5]
        assert 5 in sim.active_client_ids() and 6 not in sim.active_client_ids()
        calm.close()


def _subscribed(port: int) -> RawClient:
    """A client with a PnL single (req 7) and a market data (req 5) subscription on the tiny scenario's position."""
    client = _ready(port)
    client.send(94, 7, "DU1", "", 100)  # reqPnLSingle
    client.send(1, 11, 5, 100, "SPY", "OPT", "20250321", 600.0, "C", "100", "SMART", "", "USD", "", "", 0, "", 0, 0, "")
    return client


def _timed(client: RawClient, seconds: float) -> list[tuple[float, list[str]]]:
    """Like ``_drain``, each message with its arrival (wall) time."""
    client.sock.settimeout(0.05)
    out: list[tuple[float, list[str]]] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            fields = client.read()
        except TimeoutError:
            continue
        except ConnectionResetError:
            # the server closed while our requests were still unread: the kernel answers with a reset, not an EOF
            fields = None
        if fields is None:
            out.append((time.time(), ["closed"]))
            break
        out.append((time.time(), fields))
    return out


DATA = ("95", "21", "1")  # PnL single, greeks, ticks


def _codes(messages: list[tuple[float, list[str]]]) -> list[int]:
    return [int(m[3]) for _, m in messages if m[0] == "4"]


def _index_of(messages: list[tuple[float, list[str]]], code: int) -> int:
    return next(i for i, (_, m) in enumerate(messages) if m[0] == "4" and m[3] == str(code))


def test_nightly_reset_with_data_lost_stops_data_then_forgets_subscriptions() -> None:
    scenario = tiny_scenario(events=[{"kind": "reset", "after": 600, "seconds": 600, "data_lost": True}])
    with GatewaySimulator(scenario).running() as sim:
        client = _subscribed(sim.port)
        messages = _timed(client, 3.0)
        assert _codes(messages) == [1100, 2103, 2105, 2157, 1101, 2104, 2106, 2158]
        lost, restored = _index_of(messages, 1100), _index_of(messages, 1101)
        assert any(m[0] in DATA for _, m in messages[:lost])  # data flowed before
        assert not [m for _, m in messages[lost:] if m[0] in DATA]  # none during the reset, none after 1101
        start, end = (e for e in sim.truth["health"] if e["event"].startswith("reset"))
        assert (start["event"], end["event"], end["data_lost"]) == ("reset_start", "reset_end", True)
        assert (datetime.fromisoformat(end["sim_time"]) - datetime.fromisoformat(start["sim_time"])).seconds == 600
        assert restored > lost
        # the client resubscribes and data flows again
        client.send(94, 8, "DU1", "", 100)
        assert client.read_until("95")[1] == "8"
        client.close()


def test_nightly_reset_with_data_kept_resumes_the_same_subscriptions() -> None:
    scenario = tiny_scenario(events=[{"kind": "reset", "after": 600, "seconds": 600}])
    with GatewaySimulator(scenario).running() as sim:
        client = _subscribed(sim.port)
        messages = _timed(client, 3.0)
        assert _codes(messages) == [1100, 2103, 2105, 2157, 1102, 2104, 2106, 2158]
        lost, restored = _index_of(messages, 1100), _index_of(messages, 1102)
        assert not [m for _, m in messages[lost:restored] if m[0] in DATA]
        after = [m for _, m in messages[restored:] if m[0] in DATA]
        assert {m[1] for m in after if m[0] == "95"} == {"7"} and [m for m in after if m[0] == "21"]
        client.close()


def test_competing_session_sends_10197_and_holds_market_data_and_pnl_until_it_ends() -> None:
    scenario = tiny_scenario(events=[{"kind": "competing_session", "after": 600, "seconds": 600}])
    with GatewaySimulator(scenario).running() as sim:
        client = _subscribed(sim.port)
        messages = _timed(client, 3.0)
        competing = [m for _, m in messages if m[0] == "4"]
        assert [(m[2], m[3]) for m in competing] == [("5", "10197")]  # per market data subscription
        began = _index_of(messages, 10197)
        end = next(e for e in sim.truth["health"] if e["event"] == "competing_session_end")
        during = [m for t, m in messages[began:] if t < end["wall_time"] - 0.05 and m[0] in DATA]
        after = [m for t, m in messages if t > end["wall_time"] + 0.1 and m[0] in DATA]
        assert not during and after  # the socket stayed up; data resumed without a message
        assert not [m for _, m in messages if m == ["closed"]]
        client.close()


def test_daily_restart_drops_the_socket_and_refuses_connections_for_a_while() -> None:
    scenario = tiny_scenario(events=[{"kind": "restart", "after": 300, "seconds": 1.0}])
    with GatewaySimulator(scenario).running() as sim:
        port = sim.port
        client = _ready(port)
        messages = _timed(client, 2.0)
        assert messages[-1][1] == ["closed"]
        dropped = messages[-1][0]
        refused = 0
        while True:
            try:
                again = _ready(port, client_id=5)
                break
            except OSError:
                refused += 1
                time.sleep(0.05)
        assert refused > 0 and time.time() - dropped >= 0.8
        assert [e["event"] for e in sim.truth["health"]] == ["restart"]
        again.close()


def test_farm_drop_without_1100_holds_market_data_and_pnl_then_2104() -> None:
    scenario = tiny_scenario(events=[{"kind": "farm_down", "after": 600, "seconds": 600}])
    with GatewaySimulator(scenario).running() as sim:
        client = _subscribed(sim.port)
        messages = _timed(client, 3.0)
        assert _codes(messages) == [2103, 2104]  # no 1100, no 1101/1102: only the farm's own messages
        down, up = _index_of(messages, 2103), _index_of(messages, 2104)
        assert any(m[0] in DATA for _, m in messages[:down])
        assert not [m for _, m in messages[down:up] if m[0] in DATA]
        after = [m for _, m in messages[up:] if m[0] in DATA]
        assert {m[1] for m in after if m[0] == "95"} == {"7"}  # the same subscriptions resume
        start, end = (e for e in sim.truth["health"] if e["event"].startswith("farm_down"))
        assert (start["event"], end["event"]) == ("farm_down_start", "farm_down_end")
        assert (datetime.fromisoformat(end["sim_time"]) - datetime.fromisoformat(start["sim_time"])).seconds == 600
        assert not [m for _, m in messages if m == ["closed"]]
        client.close()
