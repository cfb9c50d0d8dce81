"""Vectorized European option pricing (numpy arrays in, numpy arrays out) and the inputs' validity rules.

One formula for both models, written on the forward: ``value = df * (F N(d1) - K N(d2))`` for a call and
``df * (K N(-d2) - F N(-d1))`` for a put, ``d1 = (ln(F/K) + vol^2 T / 2) / (vol sqrt(T))``, ``d2 = d1 - vol sqrt(T)``,
``df = exp(-r T)``:

- Black-Scholes (equity/index options, ``OPT``, no dividends): the underlying is spot, ``F = S exp(r T)``;
- Black-76 (futures options, ``FOP``): the underlying is the future, ``F = S``.

With ``r = 0`` both are the same function of (S, K, T, vol). ``N`` is ``scipy.special.ndtr`` (accurate to the last
bits in both tails, vectorized; numpy has no normal CDF). At zero volatility the value is the limit of the formula,
``df * max(F - K, 0)`` (call) / ``df * max(K - F, 0)`` (put): a scenario that shifts vol to or below 0 is priced at
that limit (and counted by the caller), never at an invented vol.

Time: the valuation instant of a session is its close (marks are frozen from the close to the EOD cut); an option
expires at 16:00 New York on its expiry date (the US close; IB's expiry date); ``T`` is in years of 365 days.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import numpy as np
import polars as pl
from scipy.special import ndtr

from v6_assets import sessions
from v6_assets.contracts.unset import ib_unset_expr

YEAR_SECONDS = 365.0 * 86_400.0
EXPIRY_TIME_NY = time(16, 0)
BLACK_76_SEC_TYPES: tuple[str, ...] = ("FOP",)
PRICED_SEC_TYPES: tuple[str, ...] = ("OPT", "FOP")


def option_values(
    *,
    spot: np.ndarray,
    strike: np.ndarray,
    years: np.ndarray,
    vol: np.ndarray,
    is_call: np.ndarray,
    is_future_option: np.ndarray,
    rate: float = 0.0,
) -> np.ndarray:
    """Value per share of each option (arrays broadcast together). ``years`` > 0 and ``spot``, ``strike`` > 0 are
    the caller's to ensure (rows breaking them are flagged before pricing); ``vol`` <= 0 is priced at its limit."""
    df = np.exp(-rate * years)
    forward = np.where(is_future_option, spot, spot * np.exp(rate * years))
    positive_vol = vol > 0.0
    safe_vol = np.where(positive_vol, vol, 1.0)
    sd = safe_vol * np.sqrt(years)
    d1 = (np.log(forward / strike) + 0.5 * sd * sd) / sd
    d2 = d1 - sd
    call = df * (forward * ndtr(d1) - strike * ndtr(d2))
    put = df * (strike * ndtr(-d2) - forward * ndtr(-d1))
    value = np.where(is_call, call, put)
    limit = df * np.where(is_call, np.maximum(forward - strike, 0.0), np.maximum(strike - forward, 0.0))
    return np.where(positive_vol, np.maximum(value, 0.0), limit)


def session_close(day: date) -> datetime:
    """The close of an NYSE session (UTC): the valuation instant of its EOD marks."""
    return (sessions.eod_cut(day) - sessions.EOD_CUT_AFTER_CLOSE).astimezone(UTC)


def expiry_instant(expiry: date) -> datetime:
    """When an option with this expiry date expires: 16:00 New York that day (UTC)."""
    return datetime.combine(expiry, EXPIRY_TIME_NY, sessions.NEW_YORK).astimezone(UTC)


def years_to_expiry_expr(expiry: pl.Expr, valuation: pl.Expr) -> pl.Expr:
    """Years (365 days) from ``valuation`` (UTC datetime) to 16:00 New York of ``expiry`` (date)."""
    instant = (
        expiry.cast(pl.Datetime("us"))
        .dt.offset_by(f"{EXPIRY_TIME_NY.hour}h")
        .dt.replace_time_zone(str(sessions.NEW_YORK), ambiguous="earliest", non_existent="null")
        .dt.convert_time_zone("UTC")
    )
    return (instant - valuation).dt.total_microseconds().cast(pl.Float64) / 1e6 / YEAR_SECONDS


def closes_frame(days: list[date]) -> pl.DataFrame:
    """trade_date -> its close (UTC), the valuation instant."""
    return pl.DataFrame(
        {"trade_date": days, "valuation_at": [session_close(d) for d in days]},
        schema={"trade_date": pl.Date, "valuation_at": pl.Datetime("us", "UTC")},
    )


def usable(column: str) -> pl.Expr:
    """Known and not an IB sentinel/NaN/infinity."""
    return pl.col(column).is_not_null() & ~ib_unset_expr(pl.col(column)).fill_null(True)


def greeks_problem_expr(prefix: str = "") -> pl.Expr:
    """Why a row's greeks cannot be used (null when they can), from columns ``prefix + name``.

    Greeks per share as IB sends them: |delta| <= 1, gamma >= 0, vega >= 0 (IB's -1/-2 sentinels land outside),
    implied vol > 0, underlying price > 0. A theta of -1/-2 alone cannot be told from a real theta: it is accepted.
    """

    def c(name: str) -> str:
        return f"{prefix}{name}"

    all_known = usable(c("delta")) & usable(c("gamma")) & usable(c("vega")) & usable(c("theta"))
    return (
        pl.when(~all_known)
        .then(pl.lit("missing greeks"))
        .when((pl.col(c("delta")).abs() > 1.0) | (pl.col(c("gamma")) < 0.0) | (pl.col(c("vega")) < 0.0))
        .then(pl.lit("greeks sentinel"))
        .when(~usable(c("implied_vol")))
        .then(pl.lit("missing implied vol"))
        .when(pl.col(c("implied_vol")) <= 0.0)
        .then(pl.lit("implied vol <= 0"))
        .when(~usable(c("und_price")))
        .then(pl.lit("missing underlying price"))
        .when(pl.col(c("und_price")) <= 0.0)
        .then(pl.lit("underlying price <= 0"))
        .otherwise(None)
    )
