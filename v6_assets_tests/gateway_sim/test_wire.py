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
