"""pnl_explain and the revaluation pricing against the gateway simulator's Black-Scholes market (its ground truth).

The simulator's timeline is driven synchronously over 14 sessions of the demo book from a fixed start (no wall clock,
no sockets): its EOD truth gives, per session and position, the mark (Black-Scholes rounded to 4 decimals as IB
sends it), the greeks, the underlying price, the implied vol and the statement daily PnL.
"""

from __future__ import annotations

from datetime import date
from functools import cache
from typing import Any

import numpy as np
import polars as pl
import pytest

from v6_assets import analytics, sessions
from v6_assets.analytics.pricing import expiry_instant, option_values, session_close
from v6_assets.contracts.money import amounts_agree
from v6_assets.gateway_sim import GatewaySimulator
from v6_assets.gateway_sim.market import YEAR_SECONDS, black_scholes
from v6_assets_tests.pipeline import sim_book
from v6_assets_tests.pipeline.sim_book import daily_frame, eod_frame

DAYS = sessions.sessions_between(date(2025, 3, 3), date(2025, 3, 20))
TERMS = ("delta_pnl", "gamma_pnl", "vega_pnl", "theta_pnl")


def simulated() -> tuple[GatewaySimulator, tuple[dict[str, Any], ...]]:
    return sim_book.simulated(DAYS[-1])


@cache
def explained() -> pl.DataFrame:
    _, entries = simulated()
    return analytics.pnl_explain(daily_frame(entries), eod_frame(entries), None, DAYS)


def test_the_simulators_expiry_instant_and_valuation_instant_are_the_analytics_ones() -> None:
    sim, _ = simulated()
    for contract in sim.scenario.contracts.values():
        if contract.is_option:
            assert contract.expiry_at == expiry_instant(contract.expiry_date)
    for day in DAYS:
        assert sim.state.market.calendar.session_of(day).close == session_close(day)


def test_full_revaluation_at_the_d_inputs_is_the_simulators_mark() -> None:
    sim, entries = simulated()
    checked = 0
    for e in entries:
        day = date.fromisoformat(e["session"])
        years = (expiry_instant(date.fromisoformat(e["expiry"])) - session_close(day)).total_seconds() / YEAR_SECONDS
        if years <= 0:
            continue
        ours = option_values(
            spot=np.array([e["und_price"]]),
            strike=np.array([e["strike"]]),
            years=np.array([years]),
            vol=np.array([e["implied_vol"]]),
            is_call=np.array([e["right"] == "C"]),
            is_future_option=np.array([e["sec_type"] == "FOP"]),
            rate=sim.scenario.rate,
        )[0]
        truth = black_scholes(e["und_price"], e["strike"], years, e["implied_vol"], sim.scenario.rate, e["right"])
        assert ours == pytest.approx(truth.price, rel=1e-6), e
        assert round(ours, 4) == e["mark"], e  # the mark IB sends: the price to 4 decimals
        checked += 1
    assert checked > 100


def test_greek_terms_plus_residual_equal_the_daily_pnl_to_the_cent() -> None:
    out = explained()
    assert set(out["status"].unique().to_list()) <= {"explained", "opened", "expired", "unknown_pnl"}
    held = out.filter(pl.col("status") == "explained")
    assert held.height > 80
    for r in held.iter_rows(named=True):
        total = sum(r[k] for k in TERMS) + r["trading_pnl"] + r["residual"]
        assert amounts_agree(total, r["pnl"]), r
    opened = out.filter(pl.col("status") == "opened")
    assert opened.height >= 2 and all(amounts_agree(r["trading_pnl"], r["pnl"]) for r in opened.iter_rows(named=True))
    baseline = out.filter(pl.col("status") == "unknown_pnl")
    assert baseline.height and (baseline["flag"] == "baseline session").all()


def test_residual_is_the_models_higher_order_remainder_exactly() -> None:
    """Against the known model: q m (V(S_D, iv_D, t_D) - V(S_{D-1}, iv_{D-1}, t_{D-1})), each price rounded to the
    4-decimal mark, minus the four greek terms, is the residual of an untraded position, to the cent."""
    sim, _ = simulated()
    out = explained().filter((pl.col("status") == "explained") & (pl.col("trading_pnl") == 0.0))
    assert out.height > 60
    for r in out.iter_rows(named=True):
        prev_day = sessions.previous_session(r["trade_date"])

        def value(day: date, spot: float, vol: float, r: dict[str, Any] = r) -> float:
            years = (expiry_instant(r["expiry"]) - session_close(day)).total_seconds() / YEAR_SECONDS
            return round(black_scholes(spot, r["strike"], years, vol, sim.scenario.rate, r["right"]).price, 4)

        move = value(r["trade_date"], r["und_price"], r["implied_vol"])
        move -= value(prev_day, r["prev_und_price"], r["prev_implied_vol"])
        full = r["prev_position"] * r["multiplier"] * move
        assert amounts_agree(full - sum(r[k] for k in TERMS), r["residual"]), r


def test_small_moves_leave_a_small_residual() -> None:
    """The bound tested (moves under 1 %, untraded): |residual| <= share x max(|pnl|, sum of |greek terms|) + the
    marks' rounding (|q| m 1e-4: two 4-decimal marks) + 0.50, share = 5 % over one calendar day and 10 % over a
    weekend or holiday (theta's own change over 3 days, a dt^2 term the first-order theta term cannot hold).

    Not 5 % of |pnl| alone: where delta and theta cancel, the day's PnL is near 0 while the higher-order remainder
    (dS^3, dS dt, dt^2 terms) is not; relative to the gross attribution it is small. The 0.50 floor covers deep OTM
    short-dated options worth cents, whose remainder is all rounding-sized."""
    out = explained().filter(
        (pl.col("status") == "explained")
        & (pl.col("trading_pnl") == 0.0)
        & ((pl.col("und_move") / pl.col("prev_und_price")).abs() < 0.01)
    )
    assert out.height > 20
    for r in out.iter_rows(named=True):
        rounding = abs(r["prev_position"]) * r["multiplier"] * 1e-4
        gross = max(abs(r["pnl"]), sum(abs(r[k]) for k in TERMS))
        share = 0.05 if r["days_elapsed"] <= 1.0 else 0.10
        assert abs(r["residual"]) <= share * gross + rounding + 0.50, r
