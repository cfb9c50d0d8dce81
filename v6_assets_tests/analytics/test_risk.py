"""risk_scenarios against a second, independent pricing; expiry_ladder buckets and pin risk; pnl_explain's rules
(opened = trading, missing/sentinel greeks flagged, the trading split of the notes' worked example); bad input."""

from __future__ import annotations

import math
from datetime import date
from typing import Any

import polars as pl
import pytest

from v6_assets import analytics
from v6_assets.analytics import EOD_POSITIONS_SCHEMA, ScenarioGrid
from v6_assets.analytics.pricing import expiry_instant, session_close
from v6_assets.contracts.money import amounts_agree
from v6_assets.contracts.tables import DAILY_PNL

D0, D1 = date(2026, 3, 2), date(2026, 3, 3)  # Monday, Tuesday (NYSE sessions): a fixed calendar, no wall clock
UNSET = 1.7976931348623157e308


def eod_row(**fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {c: None for c in EOD_POSITIONS_SCHEMA}
    row.update(
        trade_date=D1,
        account="DU1",
        con_id=1,
        symbol="SPY",
        sec_type="OPT",
        expiry=date(2026, 4, 17),
        strike=600.0,
        right="C",
        multiplier=100.0,
        currency="USD",
        position=10.0,
        und_price=600.0,
        implied_vol=0.2,
        delta=0.5,
        gamma=0.01,
        vega=0.7,
        theta=-0.2,
        market_price=10.0,
        missing_greeks=False,
        is_expired=False,
        is_closed=False,
        carried_forward=False,
    )
    row.update(fields)
    return row


def eod_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=EOD_POSITIONS_SCHEMA)


# -- an independent pricing: scalar math.erf, Black-76 from its textbook form, puts by put-call parity ----------


def _n(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def reference_value(sec_type: str, right: str, s: float, k: float, t: float, vol: float, r: float) -> float:
    if vol <= 0.0:  # the zero-vol limit: discounted intrinsic on the forward
        f = s if sec_type == "FOP" else s * math.exp(r * t)
        intrinsic = max(f - k, 0.0) if right == "C" else max(k - f, 0.0)
        return math.exp(-r * t) * intrinsic
    if sec_type == "FOP":  # Black-76 on the future
        d1 = (math.log(s / k) + 0.5 * vol * vol * t) / (vol * math.sqrt(t))
        call = math.exp(-r * t) * (s * _n(d1) - k * _n(d1 - vol * math.sqrt(t)))
        forward_pv = math.exp(-r * t) * s
    else:  # Black-Scholes on spot
        d1 = (math.log(s / k) + (r + 0.5 * vol * vol) * t) / (vol * math.sqrt(t))
        call = s * _n(d1) - k * math.exp(-r * t) * _n(d1 - vol * math.sqrt(t))
        forward_pv = s
    return call if right == "C" else call - forward_pv + k * math.exp(-r * t)


BOOK = [
    # (account, con_id, symbol, sec_type, right, strike, multiplier, position, und_price, iv, expiry)
    ("DU1", 1, "SPY", "OPT", "C", 600.0, 100.0, 10.0, 603.2, 0.16, date(2026, 4, 17)),
    ("DU1", 2, "SPY", "OPT", "P", 570.0, 100.0, -5.0, 603.2, 0.19, date(2026, 4, 17)),
    ("DU1", 3, "ES", "FOP", "C", 6000.0, 50.0, 2.0, 6050.0, 0.15, date(2026, 4, 10)),
    ("DU1", 4, "ES", "FOP", "P", 5900.0, 50.0, -3.0, 6050.0, 0.17, date(2026, 4, 10)),
    ("DU2", 5, "AAPL", "OPT", "C", 225.0, 103.0, 6.0, 231.0, 0.28, date(2026, 5, 15)),
    ("DU2", 6, "AAPL", "OPT", "P", 220.0, 103.0, -4.0, 231.0, 0.07, date(2026, 3, 20)),  # vol -10 pts < 0
]


def book_eod() -> pl.DataFrame:
    rows = []
    for account, con_id, symbol, sec_type, right, strike, m, q, s, iv, expiry in BOOK:
        rows.append(
            eod_row(
                account=account,
                con_id=con_id,
                symbol=symbol,
                sec_type=sec_type,
                right=right,
                strike=strike,
                multiplier=m,
                position=q,
                und_price=s,
                implied_vol=iv,
                expiry=expiry,
            )
        )
    return eod_frame(rows)


@pytest.mark.parametrize("rate", [0.0, 0.045])
def test_scenario_grid_matches_an_independent_pricing(rate: float) -> None:
    grid = ScenarioGrid()
    out = analytics.risk_scenarios(book_eod(), [D1], grid, rate=rate)
    assert out.columns == list(analytics.RISK_SCENARIOS_SCHEMA)
    valuation = session_close(D1)
    checked = 0
    for (account, symbol), rows in out.filter(pl.col("underlying").is_not_null()).group_by("account", "underlying"):
        book = [b for b in BOOK if b[0] == account and b[2] == symbol]
        assert rows.height == 45 and rows["complete"].all()
        for cell in rows.iter_rows(named=True):
            x, y = cell["spot_shift_pct"] / 100.0, cell["vol_shift_pts"] / 100.0
            expected_base = expected_cell = 0.0
            for _, _, _, sec_type, right, k, m, q, s, iv, expiry in book:
                t = (expiry_instant(expiry) - valuation).total_seconds() / (365 * 86400)
                expected_base += q * m * reference_value(sec_type, right, s, k, t, iv, rate)
                expected_cell += q * m * reference_value(sec_type, right, s * (1 + x), k, t, iv + y, rate)
            assert cell["base_value"] == pytest.approx(expected_base, rel=1e-6, abs=1e-9)
            assert cell["scenario_value"] == pytest.approx(expected_cell, rel=1e-6, abs=1e-9)
            assert cell["pnl"] == pytest.approx(expected_cell - expected_base, rel=1e-6, abs=1e-6)
            checked += 1
    assert checked == 3 * 45  # DU1 SPY, DU1 ES, DU2 AAPL
    base = out.filter((pl.col("spot_shift_pct") == 0) & (pl.col("vol_shift_pts") == 0))
    assert (base["pnl"] == 0.0).all()
    # the account rows shift every underlying together: the sum of its underlyings' cells
    du1 = out.filter((pl.col("account") == "DU1") & (pl.col("spot_shift_pct") == -10) & (pl.col("vol_shift_pts") == 5))
    assert du1.filter(pl.col("underlying").is_null())["pnl"].item() == pytest.approx(
        du1.filter(pl.col("underlying").is_not_null())["pnl"].sum(), rel=1e-12
    )
    floored = out.filter((pl.col("account") == "DU2") & pl.col("underlying").is_not_null())
    assert floored["vol_floored_positions"].unique().to_list() == [1]  # 7 % vol - 10 points: the zero-vol limit


def test_a_long_call_gains_when_spot_rises_and_a_short_put_loses_when_spot_falls() -> None:
    out = analytics.risk_scenarios(book_eod().filter(pl.col("con_id").is_in([1, 2])), [D1])
    by = {
        (r["spot_shift_pct"], r["vol_shift_pts"]): r["pnl"]
        for r in out.filter(pl.col("underlying") == "SPY").rows(named=True)
    }
    assert by[(10.0, 0.0)] > 0 and by[(-10.0, 0.0)] < 0
    assert by[(0.0, 10.0)] > 0  # long 10 calls outweigh short 5 far OTM puts in vega


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        ({"implied_vol": 0.0}, "implied vol <= 0"),
        ({"implied_vol": -0.2}, "implied vol <= 0"),
        ({"implied_vol": None}, "missing implied vol"),
        ({"implied_vol": UNSET}, "missing implied vol"),
        ({"und_price": None}, "missing underlying price"),
        ({"und_price": float("nan")}, "missing underlying price"),
        ({"expiry": date(2026, 3, 3)}, "expired"),
        ({"expiry": date(2026, 2, 20)}, "expired"),
        ({"multiplier": None}, "missing multiplier"),
        ({"right": None}, "missing strike/right"),
    ],
)
def test_bad_input_is_counted_never_valued(bad: dict[str, Any], reason: str) -> None:
    eod = eod_frame([eod_row(), eod_row(con_id=2, **bad)])
    out = analytics.risk_scenarios(eod, [D1])
    rows = out.filter(pl.col("underlying") == "SPY")
    assert rows.height == 45
    assert (rows["unpriced_positions"] == 1).all() and (~rows["complete"]).all()
    assert rows["unpriced_reasons"].unique().to_list() == [f"{reason}: 1"]
    alone = analytics.risk_scenarios(eod_frame([eod_row()]), [D1]).filter(pl.col("underlying") == "SPY")
    assert rows["pnl"].to_list() == alone["pnl"].to_list()  # the bad row adds nothing, not a 0-valued guess
    only_bad = analytics.risk_scenarios(eod_frame([eod_row(con_id=2, **bad)]), [D1])
    assert only_bad["pnl"].null_count() == only_bad.height  # nothing priced: unknown, never 0


def test_grid_is_configurable_and_validated() -> None:
    grid = ScenarioGrid(spot_shifts_pct=(-3.0, 0.0, 3.0), vol_shifts_pts=(0.0, 2.5))
    out = analytics.risk_scenarios(book_eod(), [D1], grid)
    assert out.filter(pl.col("underlying") == "SPY").height == 6
    with pytest.raises(ValueError, match="distinct"):
        ScenarioGrid(spot_shifts_pct=(0.0, 0.0))
    with pytest.raises(ValueError, match="-100"):
        ScenarioGrid(spot_shifts_pct=(-100.0, 0.0))


# -- expiry ladder ----------------------------------------------------------------------------------------------


def test_expiry_ladder_buckets_and_pin_risk() -> None:
    rows = [
        eod_row(con_id=1, expiry=date(2026, 3, 3), position=-2.0, strike=601.0),  # 0 DTE, short, 0.17 % away: pin
        eod_row(con_id=2, expiry=date(2026, 3, 4), position=-1.0, strike=640.0),  # 1 DTE, 6.7 % away: no pin
        eod_row(con_id=3, expiry=date(2026, 3, 4), position=3.0, strike=600.0),  # 1 DTE, long: no pin
        eod_row(con_id=4, expiry=date(2026, 3, 10)),  # 7 DTE
        eod_row(con_id=5, expiry=date(2026, 4, 2)),  # 30 DTE
        eod_row(con_id=6, expiry=date(2026, 6, 1)),  # 90 DTE
        eod_row(con_id=7, expiry=date(2026, 6, 2), delta=None),  # 91 DTE, greeks missing
        eod_row(con_id=8, expiry=date(2026, 3, 2)),  # expired before D
        eod_row(con_id=9, expiry=None),
        eod_row(con_id=10, expiry=date(2026, 3, 5), position=-1.0, strike=602.0),  # 2 sessions away: outside N=1
        eod_row(con_id=11, position=0.0),  # closed: not in the ladder
    ]
    out = analytics.expiry_ladder(eod_frame(rows), pin_pct=1.0, pin_sessions=1)
    assert out.columns == list(analytics.EXPIRY_LADDER_SCHEMA)
    got = {r["bucket"]: r for r in out.rows(named=True)}
    assert {b: got[b]["positions"] for b in got} == {
        "0-1": 3, "2-7": 2, "8-30": 1, "31-90": 1, ">90": 1, "expired": 1, "unknown": 1,
    }  # fmt: skip
    assert got["0-1"]["pin_risk_positions"] == 1 and got["0-1"]["pin_risk_con_ids"] == "1"
    assert got["0-1"]["pin_risk_contracts"] == 2.0
    assert got["2-7"]["pin_risk_positions"] == 0
    assert got[">90"]["missing_greeks_positions"] == 1 and got[">90"]["delta_shares"] is None  # never 0
    assert got["0-1"]["delta_shares"] == pytest.approx(0.5 * 100 * (-2 - 1 + 3))
    wider = analytics.expiry_ladder(eod_frame(rows), pin_pct=1.0, pin_sessions=2)
    assert {r["bucket"]: r["pin_risk_con_ids"] for r in wider.rows(named=True)}["2-7"] == "10"


# -- pnl explain ------------------------------------------------------------------------------------------------


def daily_row(**fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {c: None for c in DAILY_PNL.column_names}
    row.update(
        trade_date=D1,
        account="DU1",
        con_id=1,
        symbol="SPY",
        sec_type="OPT",
        expiry=date(2026, 4, 17),
        strike=600.0,
        right="C",
        multiplier=100.0,
        currency="USD",
        position=10.0,
        prev_position=10.0,
        pnl=0.0,
        is_baseline=False,
    )
    row.update(fields)
    return row


def explain(daily: list[dict[str, Any]], eod_d: list[dict[str, Any]], eod_prev: list[dict[str, Any]]) -> pl.DataFrame:
    frame = pl.DataFrame(daily, schema=DAILY_PNL.polars_schema)
    prev = eod_frame([{**r, "trade_date": D0} for r in eod_prev])
    return analytics.pnl_explain(frame, eod_frame(eod_d), prev, [D1])


def test_notes_worked_example_trading_split() -> None:
    """Hold 10 @ avg A, P0 -> P1, sell 4 @ S: pnl = 10(P1-P0)m - 4(P1-S)m: trading = -4(P1-S)m."""
    p0, p1, s, m = 10.0, 11.0, 10.8, 100.0
    pnl = 10 * (p1 - p0) * m - 4 * (p1 - s) * m
    out = explain(
        [daily_row(position=6.0, prev_position=10.0, pnl=pnl)],
        [eod_row(position=6.0, market_price=p1, und_price=602.0, implied_vol=0.21)],
        [eod_row(market_price=p0)],
    )
    row = out.row(0, named=True)
    assert row["status"] == "explained"
    assert amounts_agree(row["trading_pnl"], -4 * (p1 - s) * m)
    assert amounts_agree(row["delta_pnl"], 0.5 * 10 * m * 2.0)
    assert amounts_agree(row["gamma_pnl"], 0.5 * 0.01 * 10 * m * 4.0)
    assert amounts_agree(row["vega_pnl"], 0.7 * 10 * m * 1.0)
    assert amounts_agree(row["theta_pnl"], -0.2 * 10 * m * 1.0)  # Monday cut -> Tuesday cut: 1 calendar day
    total = sum(row[k] for k in ("delta_pnl", "gamma_pnl", "vega_pnl", "theta_pnl", "trading_pnl", "residual"))
    assert amounts_agree(total, pnl)


def test_opened_is_all_trading_missing_greeks_flagged_never_zero() -> None:
    out = explain(
        [
            daily_row(con_id=1, prev_position=0.0, pnl=123.45),  # opened during D
            daily_row(con_id=2, pnl=-50.0),  # D-1 greeks missing
            daily_row(con_id=3, pnl=20.0),  # D-1 vega = -2 (IB's sentinel leaked)
            daily_row(con_id=4, pnl=15.0),  # D-1 implied vol 0
            daily_row(con_id=5, pnl=7.0),  # D underlying price missing
            daily_row(con_id=6, pnl=None, is_baseline=True),
            daily_row(con_id=7, pnl=0.0, position=0.0),  # expired during D
        ],
        [eod_row(con_id=i) for i in range(1, 5)]
        + [eod_row(con_id=5, und_price=None), eod_row(con_id=6), eod_row(con_id=7, position=0.0, is_expired=True)],
        [
            eod_row(con_id=2, delta=None, gamma=None, vega=None, theta=None),
            eod_row(con_id=3, vega=-2.0, theta=-2.0),
            *[eod_row(con_id=i) for i in (5, 6, 7)],
            eod_row(con_id=4, implied_vol=0.0),
        ],
    )
    by = {r["con_id"]: r for r in out.rows(named=True)}
    assert by[1]["status"] == "opened" and by[1]["trading_pnl"] == 123.45 and by[1]["residual"] == 0.0
    expected = {2: "missing_greeks", 3: "missing_greeks", 4: "missing_greeks", 5: "missing_market", 6: "unknown_pnl"}
    for con_id, status in {**expected, 7: "expired"}.items():
        r = by[con_id]
        assert r["status"] == status, (con_id, r["flag"])
        assert r["flag"] and r["flagged_positions"] == 1
        assert all(r[k] is None for k in ("delta_pnl", "gamma_pnl", "vega_pnl", "theta_pnl", "residual"))
    assert by[3]["flag"] == "greeks sentinel at D-1" and by[4]["flag"] == "implied vol <= 0 at D-1"
    assert by[2]["unexplained_pnl"] == -50.0 and by[6]["unexplained_pnl"] is None
    rolled = analytics.explain_with_rollups(out)
    acct = rolled.filter(pl.col("rollup") == "account").row(0, named=True)
    assert acct["positions"] == 7 and acct["flagged_positions"] == 6
    assert amounts_agree(acct["unexplained_pnl"], -50.0 + 20.0 + 15.0 + 7.0 + 0.0)
