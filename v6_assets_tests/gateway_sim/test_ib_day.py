"""IB's day and night as the simulator plays it: pacing, the nightly reset, the daily restart, competing sessions."""

from __future__ import annotations

import time

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
