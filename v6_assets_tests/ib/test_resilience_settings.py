"""Backoff, circuit breaker (on an injected clock) and settings from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from v6_assets.ib.resilience import Backoff, CircuitBreaker, CircuitState
from v6_assets.ib.settings import SettingsError, StreamerSettings


def test_backoff_grows_exponentially_to_the_cap_with_jitter_below() -> None:
    exact = Backoff(0.5, 4.0, jitter=lambda d: d)
    assert [exact.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    exact.reset()
    assert exact.next_delay() == 0.5
    jittered = Backoff(0.5, 4.0)
    delays = [jittered.next_delay() for _ in range(50)]
    assert all(0 <= d <= 4.0 for d in delays)
    assert len(set(delays)) > 10


def test_circuit_opens_after_k_failures_then_one_half_open_probe() -> None:
    now = [0.0]
    breaker = CircuitBreaker(3, 10.0, clock=lambda: now[0])
    for _ in range(2):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state is CircuitState.CLOSED
    breaker.record_failure()
    assert breaker.state is CircuitState.OPEN and not breaker.allow()
    assert breaker.open_for_s == 10.0
    now[0] = 10.0
    assert breaker.state is CircuitState.HALF_OPEN
    assert breaker.allow() and not breaker.allow()  # exactly one probe
    breaker.record_failure()
    assert breaker.state is CircuitState.OPEN and breaker.opened_count == 2
    now[0] = 20.0
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state is CircuitState.CLOSED and breaker.consecutive_failures == 0


def test_settings_defaults_and_env(tmp_path: Path) -> None:
    default = StreamerSettings.from_env({})
    assert (default.host, default.port, default.client_id, default.accounts) == ("127.0.0.1", 4002, 61, ())
    assert default.home == Path("./.v6")
    assert default.sec_types == ("OPT", "FOP") and default.line_budget == 90 and default.greeks_throttle_s == 1.0
    env = {
        "V6_IB_HOST": "localhost",
        "V6_IB_PORT": "7497",
        "V6_IB_CLIENT_ID": "7",
        "V6_IB_ACCOUNTS": " DU1, DU2 ,",
        "V6_HOME": str(tmp_path),
        "V6_IB_SEC_TYPES": "opt",
    }
    settings = StreamerSettings.from_env(env)
    assert settings.accounts == ("DU1", "DU2") and settings.sec_types == ("OPT",)
    assert settings.stream_id == "ib-localhost-7497-7"
    assert settings.spool_path == tmp_path / "spool" / "ib-localhost-7497-7.sqlite"
    assert settings.locks_dir == tmp_path / "locks"


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("V6_IB_PORT", "abc"),
        ("V6_IB_PORT", "70000"),
        ("V6_IB_CLIENT_ID", "-1"),
        ("V6_IB_CLIENT_ID", "1.5"),
        ("V6_IB_ACCOUNTS", "DU1,bad account"),
        ("V6_IB_HEARTBEAT_S", "0"),
        ("V6_IB_LINE_BUDGET", "x"),
        ("V6_IB_SEC_TYPES", "opt;fop"),
        ("V6_IB_SPOOL_MAX_BYTES", "-5"),
        ("V6_IB_GREEKS_ROTATION_S", "nan"),
    ],
)
def test_bad_values_name_the_variable(var: str, value: str) -> None:
    with pytest.raises(SettingsError, match=var):
        StreamerSettings.from_env({var: value})
