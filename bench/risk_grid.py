"""Risk scenario grid: 2,000 option positions x 45 cells (spot -10..+10 % x vol -10..+10 points), full
Black-Scholes / Black-76 revaluation, ``analytics.risk_scenarios`` next to a straightforward pandas/numpy version.

    .venv/bin/python -m bench.risk_grid [--positions 2000] [--repeats 5] [--quick] [--json OUT]

Input (not timed): a seeded EOD book of ``--positions`` open options over 20 underlyings and 4 accounts (calls and
puts, long and short, OPT with multiplier 100 or 103 and FOP with multiplier 50). The peer is what one writes first
in pandas: a cross join of positions x cells in a DataFrame, Black-Scholes/Black-76 on its columns (numpy, the
normal CDF from ``scipy.special.ndtr``), ``groupby(account, underlying, cell).sum()``. Both outputs are cross-checked
(every cell's pnl, 1e-9 relative) BEFORE anything is timed; a mismatch fails the benchmark. Target: <= 1 s.
"""

from __future__ import annotations

import sys
from datetime import date, timedelta

import numpy as np
import pandas as pd
import polars as pl
from scipy.special import ndtr

from bench.common import BenchResult, Record, bench_argparser, finish, median_time
from v6_assets.analytics import EOD_POSITIONS_SCHEMA, ScenarioGrid, risk_scenarios
from v6_assets.analytics.pricing import session_close, years_to_expiry_expr

SESSION = date(2026, 3, 3)
TARGET_S = 1.0


def book(positions: int, seed: int = 5) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    underlyings = [f"U{i:02d}" for i in range(20)]
    spot = {u: float(rng.uniform(20, 6000)) for u in underlyings}
    futures = set(underlyings[:4])
    rows = []
    for i in range(positions):
        u = underlyings[i % len(underlyings)]
        fop = u in futures
        s = spot[u]
        row = {c: None for c in EOD_POSITIONS_SCHEMA}
        row.update(
            trade_date=SESSION,
            account=f"DU{i % 4}",
            con_id=i + 1,
            symbol=u,
            sec_type="FOP" if fop else "OPT",
            expiry=SESSION + timedelta(days=int(rng.integers(1, 400))),
            strike=round(s * float(rng.uniform(0.7, 1.3)), 2),
            right="C" if rng.random() < 0.5 else "P",
            multiplier=50.0 if fop else (103.0 if i % 17 == 0 else 100.0),
            currency="USD",
            position=float(rng.integers(1, 30)) * (1 if rng.random() < 0.6 else -1),
            und_price=s,
            implied_vol=float(rng.uniform(0.08, 0.9)),
        )
        rows.append(row)
    return pl.DataFrame(rows, schema=EOD_POSITIONS_SCHEMA)


def pandas_grid(eod: pd.DataFrame, grid: ScenarioGrid, years: np.ndarray) -> pd.DataFrame:
    """The straightforward version: cross join positions x cells, price every row, group and sum."""
    positions = eod.assign(years=years)
    cells = pd.DataFrame(
        [(x, y) for x in grid.spot_shifts_pct for y in grid.vol_shifts_pts], columns=["spot_shift_pct", "vol_shift_pts"]
    )
    rows = positions.merge(cells, how="cross")

    def price(spot: pd.Series, vol: pd.Series) -> pd.Series:
        t, k = rows["years"], rows["strike"]
        sd = np.maximum(vol, 1e-12) * np.sqrt(t)
        d1 = (np.log(spot / k) + 0.5 * sd * sd) / sd
        d2 = d1 - sd
        call = spot * ndtr(d1) - k * ndtr(d2)  # r = 0: Black-Scholes and Black-76 coincide
        put = k * ndtr(-d2) - spot * ndtr(-d1)
        value = np.where(rows["right"] == "C", call, put)
        limit = np.where(rows["right"] == "C", np.maximum(spot - k, 0), np.maximum(k - spot, 0))
        return pd.Series(np.where(vol > 0, value, limit), index=rows.index)

    qm = rows["position"] * rows["multiplier"]
    base = price(rows["und_price"], rows["implied_vol"])
    shifted = price(
        rows["und_price"] * (1 + rows["spot_shift_pct"] / 100), rows["implied_vol"] + rows["vol_shift_pts"] / 100
    )
    rows["pnl"] = qm * (shifted - base)
    out = rows.groupby(["account", "symbol", "spot_shift_pct", "vol_shift_pts"], as_index=False)["pnl"].sum()
    return out.rename(columns={"symbol": "underlying"})


def cross_check(ours: pl.DataFrame, peer: pd.DataFrame) -> int:
    keys = ["account", "underlying", "spot_shift_pct", "vol_shift_pts"]
    mine = ours.filter(pl.col("underlying").is_not_null()).select(*keys, "pnl").sort(keys)
    theirs = pl.from_pandas(peer).select(*keys, pl.col("pnl").alias("peer_pnl")).sort(keys)
    joined = mine.join(theirs, on=keys, how="full", coalesce=True)
    bad = joined.filter(
        pl.col("pnl").is_null()
        | pl.col("peer_pnl").is_null()
        | ((pl.col("pnl") - pl.col("peer_pnl")).abs() > 1e-9 * pl.max_horizontal(pl.col("pnl").abs(), 1.0))
    )
    if bad.height:
        raise RuntimeError(f"risk grid and the pandas peer disagree on {bad.height} cells:\n{bad.head(5)}")
    return joined.height


def run(positions: int = 2000, repeats: int = 5) -> BenchResult:
    result = BenchResult("risk_grid")
    grid = ScenarioGrid()
    eod = book(positions)
    years = (
        eod.with_columns(pl.lit(session_close(SESSION)).alias("_at"))
        .select(years_to_expiry_expr(pl.col("expiry"), pl.col("_at")))
        .to_series()
        .to_numpy()
    )
    eod_pd = eod.to_pandas()
    cells = cross_check(risk_scenarios(eod, [SESSION], grid), pandas_grid(eod_pd, grid, years))
    ours_s, ours_all, _ = median_time(lambda: risk_scenarios(eod, [SESSION], grid), repeats)
    peer_s, peer_all, _ = median_time(lambda: pandas_grid(eod_pd, grid, years), repeats)
    n = len(grid.spot_shifts_pct) * len(grid.vol_shifts_pts)
    result.add(
        Record(
            f"risk grid {positions:,} positions x {n} cells",
            ours_s,
            "s",
            peer="pandas/numpy cross join",
            peer_value=peer_s,
            ratio=ours_s / peer_s,
            target=f"<= {TARGET_S:g} s",
            met=ours_s <= TARGET_S,
        )
    )
    result.details = {
        "positions": positions,
        "cells": n,
        "groups_cross_checked": cells,
        "ours_s": ours_all,
        "peer_s": peer_all,
    }
    return result


def main(argv: list[str] | None = None) -> BenchResult:
    parser = bench_argparser(__doc__.splitlines()[0])
    parser.add_argument("--positions", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    return finish(run(args.positions, 3 if args.quick else args.repeats), args.json)


if __name__ == "__main__":
    main()
