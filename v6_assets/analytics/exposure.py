"""Exposure (greeks in money terms) by account x underlying x expiry, by underlying and by account.

Per open position (q = signed position, m = multiplier, S = underlying price at the greeks' time, greeks per share
per IB: delta/gamma per 1.00 of S, vega per vol point, theta per calendar day):

- delta_shares = delta * q * m;  dollar_delta = delta_shares * S
- gamma_shares = gamma * q * m (change of delta_shares per 1.00 of S)
- dollar_gamma_1pct = 0.5 * gamma * q * m * (0.01 * S)^2 (PnL of a 1% move from gamma, IB Risk Navigator)
- vega = vega * q * m (per vol point);  theta = theta * q * m (per calendar day)
- notional = |q| * m * S;  market_value = IB's (the fresher of updatePortfolio's and reqPnLSingle's value)
- contracts = sum of |q|;  positions = number of open positions.

Closed positions (position 0) carry no exposure and are left out. A position whose greeks, underlying price or
multiplier are unknown is NOT counted as 0: the greek sums cover the known positions only, ``greeks_coverage`` is
the covered fraction of positions and ``missing_greeks_positions`` counts the others (a sum is null when no
position of the group is covered). ``market_value`` is null when any position's value is unknown.
Signs: short = negative q; a long put has delta < 0, gamma > 0, vega > 0.
"""

from __future__ import annotations

import polars as pl

from v6_assets.analytics._common import (
    EOD_POSITIONS_SCHEMA,
    EXPOSURE_SCHEMA,
    cast_present_columns,
    check_no_sentinels,
    fresher,
    known_sum,
    require_columns,
    strict_sum,
    to_reporting_currency,
)
from v6_assets.analytics.pnl import EOD_REQUIRED

GREEK_SUMS: tuple[str, ...] = (
    "delta_shares",
    "dollar_delta",
    "gamma_shares",
    "dollar_gamma_1pct",
    "vega",
    "theta",
    "notional",
)
MONEY_COLUMNS: tuple[str, ...] = ("dollar_delta", "dollar_gamma_1pct", "vega", "theta", "notional", "market_value")


def _aggregations(greek_sums: tuple[str, ...]) -> list[pl.Expr]:
    return [
        pl.col("positions").sum().alias("positions"),
        pl.col("contracts").sum().alias("contracts"),
        *[known_sum(c).alias(c) for c in greek_sums],
        strict_sum("market_value").alias("market_value"),
        (1.0 - pl.col("missing_greeks_positions").sum() / pl.col("positions").sum()).alias("greeks_coverage"),
        pl.col("missing_greeks_positions").sum().alias("missing_greeks_positions"),
    ]


def exposure(eod: pl.DataFrame) -> pl.DataFrame:
    """Exposure per trade_date x account x underlying x expiry x currency from ``eod_positions`` rows.

    Columns exactly :data:`EXPOSURE_SCHEMA` (underlying = IB's contract symbol), sorted by the group keys.
    """
    require_columns(eod, EOD_REQUIRED, "eod")
    frame = eod
    for extra in ("ib_value", "portfolio_at", "pnl_single_at"):
        if extra not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=EOD_POSITIONS_SCHEMA[extra]).alias(extra))
    frame = cast_present_columns(frame, EOD_POSITIONS_SCHEMA, "eod")
    check_no_sentinels(frame, ["position", "multiplier", "delta", "gamma", "vega", "theta", "und_price"], "eod")
    q, m, s = pl.col("position"), pl.col("multiplier"), pl.col("und_price")
    covered = ~pl.col("missing_greeks").fill_null(True) & m.is_not_null() & s.is_not_null()
    per_position = {
        "delta_shares": pl.col("delta") * q * m,
        "dollar_delta": pl.col("delta") * q * m * s,
        "gamma_shares": pl.col("gamma") * q * m,
        "dollar_gamma_1pct": 0.5 * pl.col("gamma") * q * m * (0.01 * s) ** 2,
        "vega": pl.col("vega") * q * m,
        "theta": pl.col("theta") * q * m,
        "notional": q.abs() * m * s,
    }
    rows = (
        frame.lazy()
        .filter(~(q == 0).fill_null(False))
        .with_columns(
            *[pl.when(covered).then(expr).otherwise(None).alias(name) for name, expr in per_position.items()],
            fresher("market_value", "ib_value").alias("market_value"),
            pl.lit(1, dtype=pl.UInt32).alias("positions"),
            q.abs().alias("contracts"),
            (~covered).cast(pl.UInt32).alias("missing_greeks_positions"),
        )
    )
    out = rows.group_by("trade_date", "account", pl.col("symbol").alias("underlying"), "expiry", "currency").agg(
        _aggregations(GREEK_SUMS)
    )
    return (
        out.select([pl.col(c).cast(t) for c, t in EXPOSURE_SCHEMA.items()])
        .collect()
        .sort(["trade_date", "account", "underlying", "expiry", "currency"], nulls_last=True)
    )


def exposure_by_underlying(exp: pl.DataFrame) -> pl.DataFrame:
    """Exposure per trade_date x underlying x currency, over all accounts and expiries (same measures)."""
    require_columns(exp, EXPOSURE_SCHEMA, "exposure")
    out = exp.lazy().group_by("trade_date", "underlying", "currency").agg(_aggregations(GREEK_SUMS))
    return out.collect().sort(["trade_date", "underlying", "currency"])


def exposure_by_account(exp: pl.DataFrame, fx_rates: pl.DataFrame | None = None) -> pl.DataFrame:
    """Money exposure per trade_date x account x currency, in the base currency where the FX rate is known.

    Share-based figures (delta_shares, gamma_shares) do not add across underlyings and are left out. ``fx_rates`` and
    ``is_base_currency`` as in :func:`v6_assets.analytics.pnl.pnl_by_account`.
    """
    require_columns(exp, EXPOSURE_SCHEMA, "exposure")
    money_sums = tuple(c for c in GREEK_SUMS if c in MONEY_COLUMNS)
    converted = to_reporting_currency(exp, MONEY_COLUMNS, fx_rates)
    out = (
        converted.lazy()
        .group_by("trade_date", "account", "currency", "is_base_currency")
        .agg(_aggregations(money_sums))
    )
    return out.collect().sort(["trade_date", "account", "currency"])
