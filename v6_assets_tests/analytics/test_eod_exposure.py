"""EOD cut, carry-forward, greeks as-of and exposure, hand-computed."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest

from v6_assets.analytics import (
    EOD_POSITIONS_SCHEMA,
    EXPOSURE_SCHEMA,
    eod_positions,
    exposure,
    exposure_by_account,
    exposure_by_underlying,
)
from v6_assets_tests.analytics.helpers import et, greek, greeks_frame, pos, row_of, updates_frame

D0, D1 = date(2026, 3, 10), date(2026, 3, 11)
NO_GREEKS = greeks_frame([])


def test_columns_exactly_as_the_contract() -> None:
    eod = eod_positions(updates_frame([pos("U1", 1, et(D0, 10, 0), position=1, market_price=1.0)]), NO_GREEKS, [D0])
    assert eod.schema == pl.Schema(EOD_POSITIONS_SCHEMA)
    assert exposure(eod).schema == pl.Schema(EXPOSURE_SCHEMA)


def test_early_close_cut_is_13_15() -> None:
    friday, monday = date(2026, 11, 27), date(2026, 11, 30)  # day after Thanksgiving: close 13:00, cut 13:15 ET
    rows = [
        pos("U1", 1, et(friday, 13, 10), position=2, average_cost=500.0, market_price=5.0, expiry=date(2026, 12, 18)),
        pos("U1", 1, et(friday, 13, 20), position=2, average_cost=500.0, market_price=9.0, expiry=date(2026, 12, 18)),
    ]
    eod = eod_positions(updates_frame(rows), NO_GREEKS, [friday, monday])
    assert row_of(eod, trade_date=friday)["market_price"] == 5.0
    assert row_of(eod, trade_date=friday)["mark_age_s"] == pytest.approx(300.0)
    assert row_of(eod, trade_date=monday)["market_price"] == 9.0


def test_dst_change_moves_the_cut_in_utc() -> None:
    fri, mon = date(2026, 3, 6), date(2026, 3, 9)  # EST on Friday (cut 21:15 UTC), EDT on Monday (cut 20:15 UTC)
    rows = [
        pos("U1", 1, datetime(2026, 3, 6, 21, 10, tzinfo=UTC), position=1, average_cost=500.0, market_price=5.0),
        pos("U1", 1, datetime(2026, 3, 9, 20, 10, tzinfo=UTC), position=1, average_cost=500.0, market_price=6.0),
        pos("U1", 1, datetime(2026, 3, 9, 20, 20, tzinfo=UTC), position=1, average_cost=500.0, market_price=7.0),
    ]
    eod = eod_positions(updates_frame(rows), NO_GREEKS, [fri, mon])
    assert row_of(eod, trade_date=fri)["market_price"] == 5.0
    assert row_of(eod, trade_date=mon)["market_price"] == 6.0  # 16:20 ET belongs to Tuesday


def test_equal_received_at_is_broken_by_spool_offset_whatever_the_row_order() -> None:
    at = et(D0, 12, 0)
    rows = [
        pos("U1", 1, at, position=3, market_price=2.0, offset=900_002),
        pos("U1", 1, at, position=4, market_price=2.0, offset=900_001),
    ]
    eod = eod_positions(updates_frame(rows), NO_GREEKS, [D0])
    assert row_of(eod, trade_date=D0)["position"] == 3


def test_stale_mark_and_threshold() -> None:
    rows = [pos("U1", 1, et(D0, 12, 0), position=1, average_cost=500.0, market_price=5.0)]
    eod = eod_positions(updates_frame(rows), NO_GREEKS, [D0])
    r = row_of(eod, trade_date=D0)
    assert r["mark_age_s"] == pytest.approx(4 * 3600 + 15 * 60) and r["is_stale_mark"]
    fresh = eod_positions(updates_frame(rows), NO_GREEKS, [D0], stale_mark_after=timedelta(hours=5))
    assert not row_of(fresh, trade_date=D0)["is_stale_mark"]
    only_position = [pos("U1", 1, et(D0, 12, 0), position=1, average_cost=500.0, source="position")]
    r = row_of(eod_positions(updates_frame(only_position), NO_GREEKS, [D0]), trade_date=D0)
    assert r["mark_age_s"] is None and r["is_stale_mark"]
    # flat at the cut: no mark needed, never flagged stale however old the last one
    closed = [*rows, pos("U1", 1, et(D0, 12, 5), position=0, average_cost=0.0, market_price=5.0)]
    r = row_of(eod_positions(updates_frame(closed), NO_GREEKS, [D0]), trade_date=D0)
    assert r["is_closed"] and r["mark_age_s"] > 3600 and not r["is_stale_mark"]


def test_greeks_as_of_the_cut_with_age_and_missing_flag() -> None:
    rows = [
        pos("U1", 1, et(D0, 10, 0), position=1, average_cost=500.0, market_price=5.0),
        pos("U1", 2, et(D0, 10, 0), position=1, average_cost=300.0, market_price=3.0),
    ]
    greeks = [
        greek(1, et(D0, 15, 0), delta=0.40),
        greek(1, et(D0, 16, 0), delta=0.45),
        greek(1, et(D0, 16, 20), delta=0.90),  # after the cut
        greek(2, et(D0, 16, 5), delta=None, gamma=None),  # "not computed": ignored, no earlier row -> missing
    ]
    eod = eod_positions(updates_frame(rows), greeks_frame(greeks), [D0, D1])
    a = row_of(eod, trade_date=D0, con_id=1)
    assert a["delta"] == 0.45 and a["greeks_age_s"] == pytest.approx(900.0) and not a["missing_greeks"]
    assert row_of(eod, trade_date=D1, con_id=1)["delta"] == 0.90  # 16:20 ET belongs to D1
    b = row_of(eod, trade_date=D0, con_id=2)
    assert b["missing_greeks"] and b["delta"] is None and b["greeks_at"] is None


def _position_with_greeks(
    account: str, con_id: int, q: float, m_price: float, delta: float, gamma: float, vega: float, theta: float, s: float
) -> tuple[dict, dict]:
    return (
        pos(account, con_id, et(D0, 15, 0), position=q, average_cost=100.0, market_price=m_price),
        greek(con_id, et(D0, 15, 30), delta=delta, gamma=gamma, vega=vega, theta=theta, und_price=s),
    )


def test_exposure_short_put_fop_multiplier_and_coverage() -> None:
    p1, g1 = _position_with_greeks("U1", 2, -3, 2.0, -0.30, 0.04, 0.12, -0.05, 100.0)  # short SPY put, m=100
    p2, g2 = _position_with_greeks("U1", 3, 2, 40.0, 0.50, 0.002, 5.0, -2.0, 5000.0)  # long ES FOP call, m=50
    p3, g3 = _position_with_greeks("U2", 4, -4, 1.0, 0.60, 0.10, 0.02, -0.01, 20.0)  # short XYZ call, m=150
    p4 = pos("U1", 1, et(D0, 15, 0), position=5, average_cost=500.0, market_price=5.0)  # SPY call, no greeks
    eod = eod_positions(updates_frame([p1, p2, p3, p4]), greeks_frame([g1, g2, g3]), [D0])
    exp = exposure(eod)
    put = row_of(exp, account="U1", underlying="SPY", expiry=date(2026, 6, 19))
    # only the put is covered: delta_shares = -0.3*-3*100 = 90; $delta = 9000; gamma_sh = 0.04*-300 = -12;
    # $gamma 1% = 0.5*0.04*-300*(1.0)^2 = -6; vega = 0.12*-300 = -36; theta = -0.05*-300 = 15; notional 3*100*100
    assert put["positions"] == 2 and put["contracts"] == 8
    assert put["delta_shares"] == pytest.approx(90.0) and put["dollar_delta"] == pytest.approx(9000.0)
    assert put["gamma_shares"] == pytest.approx(-12.0) and put["dollar_gamma_1pct"] == pytest.approx(-6.0)
    assert put["vega"] == pytest.approx(-36.0) and put["theta"] == pytest.approx(15.0)
    assert put["notional"] == pytest.approx(30000.0)
    assert put["greeks_coverage"] == pytest.approx(0.5) and put["missing_greeks_positions"] == 1
    assert put["market_value"] == pytest.approx(-3 * 2.0 * 100 + 5 * 5.0 * 100)
    es = row_of(exp, underlying="ES")
    # 0.5*2*50 = 50 shares; $delta 250,000; $gamma = 0.5*0.002*100*(50)^2 = 250; notional 2*50*5000 = 500,000
    assert es["delta_shares"] == pytest.approx(50.0) and es["dollar_delta"] == pytest.approx(250000.0)
    assert es["dollar_gamma_1pct"] == pytest.approx(250.0) and es["notional"] == pytest.approx(500000.0)
    assert es["vega"] == pytest.approx(500.0) and es["theta"] == pytest.approx(-200.0)
    xyz = row_of(exp, underlying="XYZ")  # 0.6*-4*150 = -360 shares; $delta -7200
    assert xyz["delta_shares"] == pytest.approx(-360.0) and xyz["dollar_delta"] == pytest.approx(-7200.0)

    by_account = exposure_by_account(exp)
    u1 = row_of(by_account, account="U1")
    assert u1["dollar_delta"] == pytest.approx(259000.0) and u1["positions"] == 3
    assert u1["greeks_coverage"] == pytest.approx(2 / 3) and "delta_shares" not in by_account.columns
    by_und = exposure_by_underlying(exp)
    assert row_of(by_und, underlying="SPY")["delta_shares"] == pytest.approx(90.0)


def test_exposure_never_counts_missing_greeks_as_zero() -> None:
    rows = [pos("U1", 1, et(D0, 15, 0), position=5, average_cost=500.0, market_price=5.0)]
    exp = exposure(eod_positions(updates_frame(rows), NO_GREEKS, [D0]))
    r = row_of(exp, underlying="SPY")
    assert r["delta_shares"] is None and r["dollar_delta"] is None and r["notional"] is None
    assert r["greeks_coverage"] == 0.0 and r["missing_greeks_positions"] == 1


def test_closed_positions_carry_no_exposure() -> None:
    rows = [
        pos("U1", 1, et(D0, 10, 0), position=5, average_cost=500.0, market_price=5.0),
        pos("U1", 1, et(D0, 11, 0), position=0, average_cost=0.0, market_price=5.0, realized_pnl=10.0),
    ]
    eod = eod_positions(updates_frame(rows), greeks_frame([greek(1, et(D0, 12, 0), delta=0.5)]), [D0])
    assert row_of(eod, trade_date=D0)["is_closed"] and not row_of(eod, trade_date=D0)["missing_greeks"]
    assert exposure(eod).height == 0
