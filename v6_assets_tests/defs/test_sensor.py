"""The sensor without a gateway: clear skip reasons, bad configuration and bad cursors."""

from __future__ import annotations

import itertools
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import SensorResult, build_sensor_context, instance_for_test

from v6_assets.defs.resources import IBStreamResource, LakeResource
from v6_assets.defs.sensors import (
    DAEMON_LOOP_S,
    _read_cursor,
    cursor_text,
    daemon_minimum_interval,
    ib_position_stream,
)
from v6_assets.ib.settings import SettingsError
from v6_assets.ib.streamer import IBPositionStreamer, discard_process_streamer
from v6_assets_tests.pyenv import del_env, set_env


@pytest.fixture(autouse=True)
def no_streamer_leak() -> Iterator[None]:
    yield
    discard_process_streamer()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tick(tmp_path: Path, port: int) -> SensorResult:
    ib = IBStreamResource(host="127.0.0.1", port=port, client_id=77, home=str(tmp_path))
    lake = LakeResource(uri=str(tmp_path / "lake"))
    resources = {"ib_stream": ib, "lake": lake}
    with (
        instance_for_test(set_dagster_home=False) as instance,
        build_sensor_context(instance=instance, resources=resources) as ctx,
    ):
        result = ib_position_stream(ctx)
    assert isinstance(result, SensorResult) and not result.run_requests and not result.asset_events
    assert not (tmp_path / "lake" / "position_updates").exists()
    assert result.skip_reason is not None
    return result


def test_no_gateway_skips_with_a_reason_and_ingests_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the breaker never opens here, so the one reason is "not connected"
    set_env(monkeypatch, "V6_IB_CIRCUIT_FAILURES", "1000000")
    port = free_port()
    message = _tick(tmp_path, port).skip_reason.skip_message  # type: ignore[union-attr]
    assert message.startswith("IB not connected ("), message
    assert message.endswith("); no new updates"), message


def test_open_circuit_skips_saying_until_when(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # one failed connect opens the breaker for 10 minutes: the next tick says so, with the last error
    set_env(monkeypatch, "V6_IB_CIRCUIT_FAILURES", "1")
    set_env(monkeypatch, "V6_IB_CIRCUIT_COOLDOWN_S", "600")
    port = free_port()
    _tick(tmp_path, port)
    streamer = IBPositionStreamer()
    deadline = time.monotonic() + 20
    while streamer.status().connection.circuit_open_until is None:
        assert time.monotonic() < deadline, "the breaker did not open after a refused connect"
        time.sleep(0.05)
    message = _tick(tmp_path, port).skip_reason.skip_message  # type: ignore[union-attr]
    assert re.fullmatch(
        rf"circuit open until \d\d:\d\d:\d\d ET after repeated connection failures "
        rf"\(connect to 127\.0\.0\.1:{port} failed: .+\)",
        message,
    ), message


def test_bad_configuration_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ib = IBStreamResource(host="127.0.0.1", port=70000, client_id=61, home=str(tmp_path))
    with pytest.raises(SettingsError, match="V6_IB_PORT"):
        ib.settings()
    set_env(monkeypatch, "V6_IB_ACCOUNTS", "DU1,bad account")
    with pytest.raises(SettingsError, match="V6_IB_ACCOUNTS"):
        IBStreamResource.from_env().process_config_and_initialize().settings()


def test_resources_use_env_vars_when_set_and_safe_defaults_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("V6_IB_HOST", "V6_IB_PORT", "V6_IB_CLIENT_ID", "V6_IB_ACCOUNTS", "V6_HOME", "V6_LAKE_URI"):
        del_env(monkeypatch, name)
    defaults = IBStreamResource.from_env().process_config_and_initialize().settings()
    assert (defaults.host, defaults.port, defaults.client_id) == ("127.0.0.1", 4002, 61)
    set_env(monkeypatch, "V6_IB_PORT", "4001")
    set_env(monkeypatch, "V6_LAKE_URI", "/tmp/somewhere")
    assert IBStreamResource.from_env().process_config_and_initialize().settings().port == 4001
    assert LakeResource.from_env().process_config_and_initialize().lake().uri == "/tmp/somewhere"


def test_a_garbled_cursor_only_resets_the_refresh_throttle() -> None:
    for raw in (None, "", "not json", '{"refreshed_offset": "x"}', "[]"):
        assert _read_cursor(raw) == {"refreshed_offset": 0, "refreshed_at": 0.0}
    assert _read_cursor('{"refreshed_offset": 12, "refreshed_at": 3.5}') == {
        "refreshed_offset": 12,
        "refreshed_at": 3.5,
    }


def test_the_cursor_the_ui_shows_is_a_sentence_that_reads_back() -> None:
    text = cursor_text(1234, 1764679801.25, "ingested 40 rows for 1 session(s); refresh due in 240 s")
    assert text == (
        "ingested 40 rows for 1 session(s); refresh due in 240 s | "
        "last refresh requested for spool offset 1234 at 2025-12-02 12:50:01 UTC (epoch 1764679801.250)"
    )
    assert "{" not in text
    assert _read_cursor(text) == {"refreshed_offset": 1234, "refreshed_at": 1764679801.25}
    # before any refresh: says so, and reads back as "never"
    first = cursor_text(0, 0.0, "no new updates")
    assert first == "no new updates | last refresh requested for spool offset 0 at - (none yet) (epoch 0.000)"
    assert _read_cursor(first) == {"refreshed_offset": 0, "refreshed_at": 0.0}


def simulated_tick_gaps(minimum_interval: int, start_delays: list[float], loop_s: float = 5.0) -> list[float]:
    """Gaps between the wake-ups that ticked under the daemon's rule: wake up every ``loop_s``, tick when
    now - last tick START >= minimum_interval, the START being stamped ``start_delays[i]`` after the i-th wake-up
    (thread hand-off, DB write)."""
    last_start: float | None = None
    ticks = []
    for i, delay in enumerate(start_delays):
        now = i * loop_s
        if last_start is None or now - last_start >= minimum_interval:
            last_start = now + delay
            ticks.append(now)
    return [b - a for a, b in itertools.pairwise(ticks)]


def test_daemon_loop_is_the_one_of_the_installed_dagster() -> None:
    from dagster._daemon.sensor import MIN_INTERVAL_LOOP_TIME

    assert DAEMON_LOOP_S == MIN_INTERVAL_LOOP_TIME


def test_minimum_interval_gives_one_tick_per_wanted_cadence_despite_start_jitter() -> None:
    delays = [0.001, 0.3, 0.002, 1.5, 0.0, 0.05] * 10
    # the plain 5 s minimum interval misses wake-ups (the 10 s gaps the latency benchmark saw)
    assert 10.0 in [round(g) for g in simulated_tick_gaps(5, delays)]
    for wanted, expected_gap in ((5, 5), (1, 5), (10, 10), (7, 10), (15, 15)):
        minimum = daemon_minimum_interval(wanted)
        assert minimum <= wanted
        gaps = {round(g) for g in simulated_tick_gaps(minimum, delays)}
        assert gaps == {expected_gap}, (wanted, minimum, gaps)
    with pytest.raises(ValueError):
        daemon_minimum_interval(0)


def test_a_full_disk_during_the_drain_is_a_spool_full_skip_not_a_failed_tick(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from v6_assets.ib.spool import Spool, SpoolFullError
    from v6_assets_tests.ib.conftest import position_update

    ib = IBStreamResource(host="127.0.0.1", port=free_port(), client_id=78, home=str(tmp_path))
    with Spool(ib.settings().spool_path) as spool:
        spool.append([position_update(i + 1, con_id=i) for i in range(5)])

    def full_disk(self: Spool, up_to_offset: int) -> int:
        raise SpoolFullError(f"spool {self.path} is full (database or disk is full); ack did not happen")

    monkeypatch.setattr(Spool, "ack", full_disk)
    resources = {"ib_stream": ib, "lake": LakeResource(uri=str(tmp_path / "lake"))}
    with (
        instance_for_test(set_dagster_home=False) as instance,
        build_sensor_context(instance=instance, resources=resources) as ctx,
    ):
        result = ib_position_stream(ctx)
    message = result.skip_message if hasattr(result, "skip_message") else ""
    assert message.startswith("spool full"), message
    monkeypatch.undo()
    with Spool(ib.settings().spool_path) as spool:
        assert spool.depth() == 5  # nothing acked, nothing lost: the next tick catches the ack up


def test_the_idle_reason_says_spool_full_with_what_is_held_and_shed() -> None:
    from v6_assets.defs.sensors import _idle_reason
    from v6_assets.ib.status import ConnectionStatus, SpoolStatus, StreamCounters, StreamerStatus, SubscriptionStatus
    from v6_assets.pipeline.ingest import DrainResult

    status = StreamerStatus(
        running=True,
        stream_id="s",
        connection=ConnectionStatus(lease_held=True, connected=True),
        subscriptions=SubscriptionStatus(),
        spool=SpoolStatus(error="spool x is full (disk full)", pending=900, max_held=1000, dropped_greeks=40),
        counters=StreamCounters(),
    )
    result = DrainResult("s", 0, 0, 0, 0, 0, 0, "drained", {}, 0.0)
    reason = _idle_reason(status, result)
    assert reason.startswith("spool full: 900 updates held in memory (at most 1000), 40 shed"), reason
