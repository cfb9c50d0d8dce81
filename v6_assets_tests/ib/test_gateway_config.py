"""Several IB logins (``V6_IB_GATEWAYS``): the list's two forms, its errors, one gateway unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from v6_assets.contracts.settings import SettingsError
from v6_assets.ib.gateways import describe_gateway, gateway_streamer
from v6_assets.ib.lease import ConnectionLease
from v6_assets.ib.settings import IBEnvironment, StreamerSettings
from v6_assets.ib.streamer import IBPositionStreamer

COMPACT = "fund-a=127.0.0.1:4002/61/DU111,DU112; fund-b=10.0.0.7:4012/62/DU211"
JSON = json.dumps(
    [
        {"name": "fund-a", "port": 4002, "client_id": 61, "accounts": ["DU111", "DU112"]},
        {"name": "fund-b", "host": "10.0.0.7", "port": 4012, "client_id": 62, "accounts": "DU211"},
    ]
)


def gateways(value: str, **more: str) -> tuple[StreamerSettings, ...]:
    return IBEnvironment.read({"V6_IB_GATEWAYS": value, "V6_HOME": "/srv/v6", **more}).gateway_settings()


def test_one_gateway_is_exactly_as_before() -> None:
    assert IBEnvironment.read({}).gateway_settings() == (StreamerSettings(),)
    env = {"V6_IB_HOST": "gw.local", "V6_IB_PORT": "4001", "V6_IB_CLIENT_ID": "7", "V6_IB_ACCOUNTS": "U1,U2"}
    (one,) = IBEnvironment.read(env).gateway_settings()
    assert one == StreamerSettings.from_env(env)
    assert (one.gateway, one.stream_id, one.accounts) == ("", "ib-gw.local-4001-7", ("U1", "U2"))
    assert gateway_streamer(one) is IBPositionStreamer()
    assert describe_gateway(one) == "ib-gw.local-4001-7"


@pytest.mark.parametrize("value", [COMPACT, JSON], ids=["compact", "json"])
def test_both_forms_give_each_gateway_its_own_connection_spool_status_and_stream(value: str) -> None:
    a, b = gateways(value)
    assert (a.gateway, a.host, a.port, a.client_id, a.accounts) == ("fund-a", "127.0.0.1", 4002, 61, ("DU111", "DU112"))
    assert (b.gateway, b.host, b.port, b.client_id, b.accounts) == ("fund-b", "10.0.0.7", 4012, 62, ("DU211",))
    assert (a.stream_id, b.stream_id) == ("ib-fund-a", "ib-fund-b")
    assert a.spool_path == Path("/srv/v6/spool/ib-fund-a.sqlite") and a.spool_path != b.spool_path
    assert a.status_path != b.status_path
    leases = {ConnectionLease(s.locks_dir, s.host, s.port, s.client_id).path for s in (a, b)}
    assert len(leases) == 2
    # the tuning knobs are shared
    assert a.heartbeat_s == b.heartbeat_s == StreamerSettings().heartbeat_s
    assert describe_gateway(a) == "gateway fund-a (127.0.0.1:4002 client 61)"


def test_each_named_gateway_has_its_own_process_wide_streamer() -> None:
    a, b = gateways(COMPACT)
    assert gateway_streamer(a) is gateway_streamer(a) is IBPositionStreamer("fund-a")
    assert gateway_streamer(a) is not gateway_streamer(b)
    assert gateway_streamer(a) is not IBPositionStreamer()


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("a=127.0.0.1:4002/61/DU1,DU2;b=127.0.0.1:4012/62/DU2", "account DU2 is on two gateways, 'a' and 'b'"),
        ("a=127.0.0.1:4002/61/DU1;a=127.0.0.1:4012/62/DU2", "gateway name 'a' is used twice"),
        ("a=127.0.0.1:4002/61/DU1;b=127.0.0.1:4002/61/DU2", "gateways 'a' and 'b' are the same connection"),
        ("a=127.0.0.1:4002/61/DU1;b=127.0.0.1:4012/62", "gateway 'b' has no accounts"),
        ("a=127.0.0.1:4002/61/DU1;b=127.0.0.1:4012/62/", "gateway 'b' has no accounts"),
        ("a=127.0.0.1:4002-61", "is not name=host:port/client_id/ACCOUNT,ACCOUNT"),
        ("a=127.0.0.1:70000/61/DU1", "less than or equal to 65535"),
        ("a=127.0.0.1:4002/x/DU1", "valid integer"),
        ("1a=127.0.0.1:4002/61/DU1", "should match pattern"),
        ("a=127.0.0.1:4002/61/bad account", "should match pattern"),
        ('[{"name": "a", "port": 4002}', "not valid JSON"),
        ('[{"name": "a", "port": 4002, "client_id": 1, "password": "x"}]', "Extra inputs are not permitted"),
    ],
)
def test_a_bad_list_is_a_clear_error_naming_the_variable(value: str, why: str) -> None:
    with pytest.raises(SettingsError, match="V6_IB_GATEWAYS") as raised:
        gateways(value)
    assert why in str(raised.value), str(raised.value)


def test_the_list_and_the_one_gateway_variables_together_are_an_error() -> None:
    with pytest.raises(SettingsError, match=r"V6_IB_GATEWAYS: set it or .*V6_IB_PORT.*not both"):
        gateways(COMPACT, V6_IB_PORT="4001")
    # the tuning knobs are not the one gateway's: they go with the list
    a, _ = gateways(COMPACT, V6_IB_HEARTBEAT_S="4")
    assert a.heartbeat_s == 4.0


def test_a_list_of_one_may_stream_every_account() -> None:
    (only,) = gateways("main=127.0.0.1:4002/61")
    assert (only.stream_id, only.accounts) == ("ib-main", ())
