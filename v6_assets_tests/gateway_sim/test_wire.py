"""The wire encoder: layouts per negotiated server version, templates and truncated frames."""

from __future__ import annotations

import pytest

from v6_assets.gateway_sim import protocol, wire
from v6_assets.gateway_sim.protocol import Out


def _fields(frame: bytes) -> list[str]:
    return protocol.split_frames(bytearray(frame))[0]


def test_error_gains_advanced_reject_field_from_166() -> None:
    old = wire.encoder_for(protocol.MIN_VERSION_ADVANCED_ORDER_REJECT - 1)
    new = wire.encoder_for(protocol.MIN_VERSION_ADVANCED_ORDER_REJECT)
    assert _fields(old.encode(Out.ERR_MSG, req_id=-1, code=2110, message="x")) == ["4", "2", "-1", "2110", "x"]
    assert _fields(new.encode(Out.ERR_MSG, req_id=-1, code=2110, message="x")) == ["4", "2", "-1", "2110", "x", ""]


def test_option_computation_layout_changes_at_156() -> None:
    greeks = {name: 0.5 for name in ("implied_vol", "delta", "opt_price", "pv_dividend", "gamma", "vega", "theta")}
    values = {"req_id": 7, "tick_type": 13, "und_price": 100.0, **greeks}
    old = wire.encoder_for(protocol.MIN_VERSION_PRICE_BASED_VOLATILITY - 1).encode(
        Out.TICK_OPTION_COMPUTATION, **values
    )
    new = wire.encoder_for(protocol.MIN_VERSION_PRICE_BASED_VOLATILITY).encode(Out.TICK_OPTION_COMPUTATION, **values)
    assert _fields(old)[:4] == ["21", "6", "7", "13"]
    assert _fields(new)[:4] == ["21", "7", "13", "0"]  # no version field; tickAttrib after the tick type


def test_unknown_and_missing_fields_are_rejected() -> None:
    encoder = wire.encoder_for(protocol.SERVER_MAX_VERSION)
    with pytest.raises(ValueError, match="no fields"):
        encoder.encode(Out.PNL, req_id=1, daily_pnl=0.0, unrealized_pnl=0.0, realized_pnl=0.0, typo=1)
    with pytest.raises(ValueError, match="needs field"):
        encoder.encode(Out.PNL, req_id=1)


def test_template_matches_encode() -> None:
    encoder = wire.encoder_for(protocol.SERVER_MAX_VERSION)
    values = {"req_id": 3, "position": 2.0, "daily_pnl": -1.25, "unrealized_pnl": 0.1, "realized_pnl": 1e308,
              "value": 12.5}  # fmt: skip
    template = encoder.template(Out.PNL_SINGLE)
    assert template.encode(*values.values()) == encoder.encode(Out.PNL_SINGLE, **values)
    with pytest.raises(ValueError, match="leading fields"):
        encoder.template(Out.PNL_SINGLE, position=1.0)


def test_truncated_keeps_only_the_leading_fields() -> None:
    encoder = wire.encoder_for(protocol.SERVER_MAX_VERSION)
    frame = encoder.truncated(Out.PORTFOLIO_VALUE, con_id=1, symbol="TRUNC")
    assert _fields(frame) == ["7", "8", "1", "TRUNC"]


def test_integer_fields_below_their_decimal_version() -> None:
    """ibapi 9.81 (v157) parses PnL single's position and tick sizes with ``int()``: ``3.0`` there is a decode error."""
    values = {"req_id": 3, "position": 3.0, "daily_pnl": -1.25, "unrealized_pnl": 0.5, "realized_pnl": 0.0,
              "value": 12.5}  # fmt: skip
    before = wire.encoder_for(protocol.MIN_VERSION_FRACTIONAL_SIZE_SUPPORT - 1)
    after = wire.encoder_for(protocol.MIN_VERSION_FRACTIONAL_SIZE_SUPPORT)
    assert _fields(before.encode(Out.PNL_SINGLE, **values))[:3] == ["95", "3", "3"]
    assert _fields(after.encode(Out.PNL_SINGLE, **{**values, "position": 2.5}))[:3] == ["95", "3", "2.5"]
    with pytest.raises(ValueError, match="not an integer"):
        before.encode(Out.PNL_SINGLE, **{**values, "position": 2.5})
    tick = {"req_id": 1, "tick_type": 1, "price": 9.5, "size": 10.0, "attrib_mask": 0}
    assert _fields(before.encode(Out.TICK_PRICE, **tick))[5] == "10"


def test_positions_are_integers_only_before_101() -> None:
    row = {"account": "DU1", **dict.fromkeys(wire.CONTRACT_FIELDS, ""), "con_id": 5, "strike": 1.0, "position": 2.0,
           "average_cost": 1.5}  # fmt: skip
    assert _fields(wire.encoder_for(100).encode(Out.POSITION_DATA, **row))[-2] == "2"
    assert _fields(wire.encoder_for(101).encode(Out.POSITION_DATA, **{**row, "position": 0.5}))[-2] == "0.5"


def test_pnl_fields_arrive_with_their_versions() -> None:
    values = {"req_id": 1, "daily_pnl": 1.0, "unrealized_pnl": 2.0, "realized_pnl": 3.0}
    assert not wire.encoder_for(protocol.MIN_VERSION_PNL - 1).has(Out.PNL)
    with pytest.raises(ValueError, match="does not exist"):
        wire.encoder_for(protocol.MIN_VERSION_PNL - 1).encode(Out.PNL, **values)
    assert _fields(wire.encoder_for(protocol.MIN_VERSION_PNL).encode(Out.PNL, **values)) == ["94", "1", "1.0"]
    assert _fields(wire.encoder_for(protocol.MIN_VERSION_UNREALIZED_PNL).encode(Out.PNL, **values))[2:] == [
        "1.0",
        "2.0",
    ]
    assert _fields(wire.encoder_for(protocol.MIN_VERSION_REALIZED_PNL).encode(Out.PNL, **values))[2:] == [
        "1.0", "2.0", "3.0"]  # fmt: skip


def test_templates_match_encode_at_every_version() -> None:
    values = {"req_id": 3, "position": 2.0, "daily_pnl": -1.25, "unrealized_pnl": 0.1, "realized_pnl": 1e308,
              "value": 12.5}  # fmt: skip
    for version in range(protocol.SERVER_MIN_VERSION, protocol.SERVER_MAX_VERSION + 1):
        encoder = wire.encoder_for(version)
        if encoder.has(Out.PNL_SINGLE):
            template = encoder.template(Out.PNL_SINGLE)
            assert template.encode(*values.values()) == encoder.encode(Out.PNL_SINGLE, **values), version


def test_every_layout_is_an_ordered_subset_of_the_newest() -> None:
    """What templates rely on: a message's older layouts only leave fields out of its newest one (in order)."""
    for msg_id, layouts in wire.LAYOUTS.items():
        newest = layouts[-1].fields
        assert [lay.since for lay in layouts] == sorted({lay.since for lay in layouts}), msg_id
        for lay in layouts:
            assert [f for f in newest if f in lay.fields] == list(lay.fields), (msg_id, lay.since)


def test_version_rules_table() -> None:
    rules = {(r.msg_id, r.field, r.since): r.kind for r in wire.version_rules()}
    assert rules[(Out.PNL_SINGLE, "position", protocol.MIN_VERSION_PNL)] is wire.Kind.INT
    assert rules[(Out.PNL_SINGLE, "position", protocol.MIN_VERSION_FRACTIONAL_SIZE_SUPPORT)] is wire.Kind.DECIMAL
    assert rules[(Out.PNL_SINGLE, "realized_pnl", protocol.MIN_VERSION_REALIZED_PNL)] is wire.Kind.FLOAT
    assert rules[(Out.ERR_MSG, "advanced_order_reject_json", protocol.MIN_VERSION_ADVANCED_ORDER_REJECT)] is (
        wire.Kind.TEXT
    )
