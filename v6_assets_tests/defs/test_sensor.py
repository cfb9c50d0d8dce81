"""The sensor without a gateway: clear skip reasons, bad configuration and bad cursors."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import SensorResult, build_sensor_context, instance_for_test

from v6_assets.defs.resources import IBStreamResource, LakeResource
from v6_assets.defs.sensors import _read_cursor, ib_position_stream
from v6_assets.ib.settings import SettingsError
from v6_assets.ib.streamer import IBPositionStreamer


@pytest.fixture(autouse=True)
def no_streamer_leak() -> Iterator[None]:
    yield
    IBPositionStreamer.reset_for_tests()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_no_gateway_skips_with_a_reason_and_ingests_nothing(tmp_path: Path) -> None:
    ib = IBStreamResource(host="127.0.0.1", port=free_port(), client_id=77, home=str(tmp_path))
    lake = LakeResource(uri=str(tmp_path / "lake"))
    resources = {"ib_stream": ib, "lake": lake}
    with instance_for_test() as instance, build_sensor_context(instance=instance, resources=resources) as ctx:
        result = ib_position_stream(ctx)
    assert isinstance(result, SensorResult) and not result.run_requests and not result.asset_events
    message = result.skip_reason.skip_message if result.skip_reason else ""
    assert "not connected" in message or "circuit open until" in message, message
    assert not (tmp_path / "lake" / "position_updates").exists()


def test_bad_configuration_names_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ib = IBStreamResource(host="127.0.0.1", port=70000, client_id=61, home=str(tmp_path))
    with pytest.raises(SettingsError, match="V6_IB_PORT"):
        ib.settings()
    monkeypatch.setenv("V6_IB_ACCOUNTS", "DU1,bad account")
    with pytest.raises(SettingsError, match="V6_IB_ACCOUNTS"):
        IBStreamResource.from_env().process_config_and_initialize().settings()


def test_resources_use_env_vars_when_set_and_safe_defaults_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("V6_IB_HOST", "V6_IB_PORT", "V6_IB_CLIENT_ID", "V6_IB_ACCOUNTS", "V6_HOME", "V6_LAKE_URI"):
        monkeypatch.delenv(name, raising=False)
    defaults = IBStreamResource.from_env().process_config_and_initialize().settings()
    assert (defaults.host, defaults.port, defaults.client_id) == ("127.0.0.1", 4002, 61)
    monkeypatch.setenv("V6_IB_PORT", "4001")
    monkeypatch.setenv("V6_LAKE_URI", "/tmp/somewhere")
    assert IBStreamResource.from_env().process_config_and_initialize().settings().port == 4001
    assert LakeResource.from_env().process_config_and_initialize().lake().uri == "/tmp/somewhere"


def test_a_garbled_cursor_only_resets_the_refresh_throttle() -> None:
    for raw in (None, "", "not json", '{"refreshed_offset": "x"}', "[]"):
        assert _read_cursor(raw) == {"refreshed_offset": 0, "refreshed_at": 0.0}
    assert _read_cursor('{"refreshed_offset": 12, "refreshed_at": 3.5}') == {
        "refreshed_offset": 12,
        "refreshed_at": 3.5,
    }
