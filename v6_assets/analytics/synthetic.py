"""Synthetic ``position_updates`` / ``greeks_updates`` frames (lake schema) for benchmarks. No I/O, seeded.

The rows are internally consistent (market value = q x price x m, unrealized = market value - average cost x q),
spread uniformly over one session's window (after the previous EOD cut, up to this session's cut), and every
position gets at least one update and one greeks row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date

import numpy as np
import polars as pl

from v6_assets import sessions as nyse
from v6_assets.analytics._common import GREEKS_UPDATES_SCHEMA, POSITION_UPDATES_SCHEMA, AnalyticsInputError

UNDERLYINGS: tuple[tuple[str, str, float, float], ...] = (
    # symbol, sec_type, multiplier, underlying price
    ("SPY", "OPT", 100.0, 500.0),
    ("QQQ", "OPT", 100.0, 430.0),
    ("AAPL", "OPT", 100.0, 190.0),
    ("ES", "FOP", 50.0, 5000.0),
    ("CL", "FOP", 1000.0, 80.0),
)


@dataclass(frozen=True, slots=True)
class SyntheticFrames:
    updates: pl.DataFrame
    greeks: pl.DataFrame
    session: date


def synthetic_updates(
    n_rows: int,
    n_positions: int,
    session: date,
    *,
    n_accounts: int = 4,
    n_greeks_rows: int | None = None,
    seed: int = 0,
    trade_fraction: float = 0.0,
    flat_fraction: float = 0.0,
) -> SyntheticFrames:
    """``n_rows`` position updates over ``n_positions`` (account, con_id) option positions during ``session``.

    ``trade_fraction`` of the positions trade once during the session (at a random time; a third of them close to
    0): later rows show the new quantity, updatePortfolio's daily ``realized_pnl`` and reqPnLSingle's cumulative
    ``ib_realized_pnl`` of the trade. ``flat_fraction`` of the positions are flat all session (IB's lingering rows
    of closed contracts). Both are drawn from a separate random stream: with the defaults (0) the frames are the
    same as without these options, and the same seed gives the same book of positions whatever the fractions.
    """
    if n_positions < 1 or n_rows < n_positions or n_accounts < 1:
        raise AnalyticsInputError("synthetic_updates: need n_positions >= 1, n_rows >= n_positions, n_accounts >= 1")
    if not (0.0 <= trade_fraction <= 1.0 and 0.0 <= flat_fraction <= 1.0):
        raise AnalyticsInputError("synthetic_updates: trade_fraction and flat_fraction must be within [0, 1]")
    n_greeks = n_rows // 4 if n_greeks_rows is None else n_greeks_rows
    if n_greeks < n_positions:
        n_greeks = n_positions
    rng = np.random.default_rng(seed)
    start_us = int(nyse.eod_cut(nyse.previous_session(session)).astimezone(UTC).timestamp() * 1e6) + 1
    cut_us = int(nyse.eod_cut(session).astimezone(UTC).timestamp() * 1e6)

    # positions
    und = rng.integers(0, len(UNDERLYINGS), n_positions)
    symbols = np.array([u[0] for u in UNDERLYINGS])[und]
    sec_types = np.array([u[1] for u in UNDERLYINGS])[und]
    multipliers = np.array([u[2] for u in UNDERLYINGS])[und]
    und_prices = np.array([u[3] for u in UNDERLYINGS])[und]
    accounts = np.array([f"DU{1000 + i}" for i in range(n_accounts)])[rng.integers(0, n_accounts, n_positions)]
    con_ids = 100_000 + np.arange(n_positions, dtype=np.int64)
    rights = np.where(rng.random(n_positions) < 0.5, "C", "P")
    strikes = np.round(und_prices * rng.uniform(0.85, 1.15, n_positions), 0)
    expiries = np.datetime64(session, "D") + rng.integers(0, 60, n_positions).astype("timedelta64[D]")
    quantity = rng.integers(1, 20, n_positions).astype(np.float64) * np.where(rng.random(n_positions) < 0.4, -1, 1)
    base_price = np.round(und_prices * rng.uniform(0.005, 0.05, n_positions), 2)
    average_cost = base_price * multipliers * rng.uniform(0.9, 1.1, n_positions)

    # updates: the first n_positions rows cover every position once
    pos = np.concatenate([rng.permutation(n_positions), rng.integers(0, n_positions, n_rows - n_positions)])
    times = np.sort(rng.integers(start_us, cut_us + 1, n_rows))

    price = np.round(base_price[pos] * (1.0 + 0.02 * rng.standard_normal(n_rows)).clip(0.01), 2)
    q, m = quantity[pos], multipliers[pos]
    realized = np.full(n_rows, np.nan)  # updatePortfolio's daily figure: null = not traded this session
    cumulative_realized = np.zeros(n_rows)  # reqPnLSingle's, since inception
    if trade_fraction > 0.0 or flat_fraction > 0.0:
        trades = np.random.default_rng([seed, 1])
        flat = trades.random(n_positions) < flat_fraction
        traded = (trades.random(n_positions) < trade_fraction) & ~flat
        trade_us = trades.integers(start_us, cut_us + 1, n_positions)
        closes = trades.random(n_positions) < 1 / 3
        # reduce by 1..|q|-1 contracts (or close): realizes (trade price x m - average cost) per contract sold
        cut_back = np.where(
            closes, np.abs(quantity), np.floor(np.abs(quantity) * trades.uniform(0.1, 0.9, n_positions))
        )
        new_quantity = quantity - np.sign(quantity) * cut_back
        trade_realized = np.round((base_price * multipliers - average_cost) * np.sign(quantity) * cut_back, 2)
        after = traded[pos] & (times >= trade_us[pos])
        q = np.where(flat[pos], 0.0, np.where(after, new_quantity[pos], q))
        realized = np.where(after, trade_realized[pos], realized)
        cumulative_realized = np.where(after, trade_realized[pos], cumulative_realized)
    market_value = q * price * m
    unrealized = market_value - average_cost[pos] * q
    from_portfolio = rng.random(n_rows) < 0.3
    updates = pl.DataFrame(
        {
            "account": accounts[pos],
            "con_id": con_ids[pos],
            "symbol": symbols[pos],
            "sec_type": sec_types[pos],
            "expiry": expiries[pos],
            "strike": strikes[pos],
            "right": rights[pos],
            "multiplier": m,
            "currency": np.full(n_rows, "USD"),
            "exchange": np.full(n_rows, "SMART"),
            "trading_class": symbols[pos],
            "local_symbol": symbols[pos],
            "position": q,
            "average_cost": average_cost[pos],
            "market_price": price,
            "market_value": market_value,
            "unrealized_pnl": unrealized,
            "realized_pnl": realized,
            "ib_daily_pnl": unrealized * 0.1,
            "ib_unrealized_pnl": unrealized,
            "ib_realized_pnl": cumulative_realized,
            "ib_value": market_value,
            "source": np.where(from_portfolio, "portfolio", "pnl_single"),
            "seq": np.arange(n_rows, dtype=np.int64),
            "received_at": times,
            "trade_date": np.full(n_rows, np.datetime64(session, "D")),
            "stream_id": np.full(n_rows, "synthetic"),
            "spool_offset": np.arange(n_rows, dtype=np.int64),
        }
    ).with_columns(
        pl.col("realized_pnl").fill_nan(None),
        pl.col("received_at").cast(pl.Datetime("us", "UTC")),
    )
    updates = updates.select([pl.col(c).cast(t) for c, t in POSITION_UPDATES_SCHEMA.items()])

    # greeks, by con_id
    g_con = np.concatenate([rng.permutation(n_positions), rng.integers(0, n_positions, n_greeks - n_positions)])
    g_times = np.sort(rng.integers(start_us, cut_us + 1, n_greeks))
    call = rights[g_con] == "C"
    delta = np.where(call, rng.uniform(0.05, 0.95, n_greeks), -rng.uniform(0.05, 0.95, n_greeks))
    greeks = pl.DataFrame(
        {
            "con_id": con_ids[g_con],
            "tick_type": np.full(n_greeks, 13, dtype=np.int64),
            "delta": delta,
            "gamma": rng.uniform(0.0001, 0.05, n_greeks),
            "vega": rng.uniform(0.01, 1.0, n_greeks),
            "theta": -rng.uniform(0.01, 1.0, n_greeks),
            "implied_vol": rng.uniform(0.1, 0.6, n_greeks),
            "und_price": und_prices[g_con] * (1.0 + 0.005 * rng.standard_normal(n_greeks)),
            "opt_price": base_price[g_con],
            "seq": np.arange(n_greeks, dtype=np.int64),
            "received_at": g_times,
            "trade_date": np.full(n_greeks, np.datetime64(session, "D")),
            "stream_id": np.full(n_greeks, "synthetic-greeks"),
            "spool_offset": np.arange(n_greeks, dtype=np.int64),
        }
    ).with_columns(pl.col("received_at").cast(pl.Datetime("us", "UTC")))
    greeks = greeks.select([pl.col(c).cast(t) for c, t in GREEKS_UPDATES_SCHEMA.items()])
    return SyntheticFrames(updates=updates, greeks=greeks, session=session)
