"""Risk scenarios: a full-revaluation grid of every open option position, per account x underlying and per account.

Each option of the EOD state of session D is repriced (``v6_assets.analytics.pricing``: Black-Scholes for ``OPT``,
Black-76 for ``FOP``) at spot x (1 + spot_shift_pct / 100) and implied vol + vol_shift_pts / 100, time to expiry
from D's close; ``pnl`` of a cell = sum over positions of q * m * (value in the cell - value at the base inputs). The
base is the model value at the EOD inputs, so the (0, 0) cell is 0 exactly. A position that cannot be priced
(missing/sentinel implied vol or underlying price, vol <= 0, no strike/right/expiry/multiplier, expired by D's
close, a sec type other than OPT/FOP) is counted in ``unpriced_positions`` with its reason and valued at nothing:
``complete`` is false for its group. A cell whose shifted vol is <= 0 is priced at the zero-vol limit and counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np
import polars as pl

from v6_assets.analytics._common import EOD_POSITIONS_SCHEMA, cast_present_columns, require_columns
from v6_assets.analytics.pricing import (
    BLACK_76_SEC_TYPES,
    PRICED_SEC_TYPES,
    closes_frame,
    option_values,
    usable,
    years_to_expiry_expr,
)
from v6_assets.contracts.tables import RISK_SCENARIOS, polars_dtypes

RISK_SCENARIOS_SCHEMA: dict[str, pl.DataType] = polars_dtypes(RISK_SCENARIOS)
DEFAULT_SPOT_SHIFTS_PCT: tuple[float, ...] = (-10.0, -5.0, -2.0, -1.0, 0.0, 1.0, 2.0, 5.0, 10.0)
DEFAULT_VOL_SHIFTS_PTS: tuple[float, ...] = (-10.0, -5.0, 0.0, 5.0, 10.0)
_READ: tuple[str, ...] = (
    "trade_date",
    "account",
    "con_id",
    "symbol",
    "sec_type",
    "expiry",
    "strike",
    "right",
    "multiplier",
    "currency",
    "position",
    "implied_vol",
    "und_price",
)


@dataclass(frozen=True)
class ScenarioGrid:
    """The grid: spot shifts in percent x implied-vol shifts in vol points (both must contain 0: the base)."""

    spot_shifts_pct: tuple[float, ...] = DEFAULT_SPOT_SHIFTS_PCT
    vol_shifts_pts: tuple[float, ...] = DEFAULT_VOL_SHIFTS_PTS

    def __post_init__(self) -> None:
        for name, values in (("spot_shifts_pct", self.spot_shifts_pct), ("vol_shifts_pts", self.vol_shifts_pts)):
            if not values or len(set(values)) != len(values):
                raise ValueError(f"{name}: a non-empty list of distinct shifts expected, got {values!r}")
            if not all(np.isfinite(v) for v in values):
                raise ValueError(f"{name}: finite numbers expected, got {values!r}")
        if min(self.spot_shifts_pct) <= -100.0:
            raise ValueError("spot_shifts_pct: a shift of -100 % or less leaves no underlying price")

    def cells(self) -> tuple[np.ndarray, np.ndarray]:
        """(spot shift as a fraction, vol shift as a decimal) per cell, spot-major."""
        spot = np.repeat(np.asarray(self.spot_shifts_pct, dtype=float), len(self.vol_shifts_pts)) / 100.0
        vol = np.tile(np.asarray(self.vol_shifts_pts, dtype=float), len(self.spot_shifts_pct)) / 100.0
        return spot, vol


def scenario_inputs(eod: pl.DataFrame, *, include_closed: bool = False) -> pl.DataFrame:
    """Open positions of ``eod`` with ``years`` (to expiry from the session's close) and ``unpriced_reason`` (null
    when the row can be priced)."""
    require_columns(eod, _READ, "eod")
    frame = cast_present_columns(eod.select(_READ), EOD_POSITIONS_SCHEMA, "eod")
    if not include_closed:
        frame = frame.filter((pl.col("position") != 0.0).fill_null(True))
    days = sorted(set(frame["trade_date"].to_list()))
    frame = frame.join(closes_frame(days), on="trade_date", how="left").with_columns(
        years_to_expiry_expr(pl.col("expiry"), pl.col("valuation_at")).alias("years")
    )
    reason = (
        pl.when(~pl.col("sec_type").is_in(list(PRICED_SEC_TYPES)).fill_null(False))
        .then(pl.lit("not an option"))
        .when(~usable("position"))
        .then(pl.lit("missing position"))
        .when(~usable("multiplier") | (pl.col("multiplier") <= 0.0))
        .then(pl.lit("missing multiplier"))
        .when(~usable("strike") | (pl.col("strike") <= 0.0) | ~pl.col("right").is_in(["C", "P"]).fill_null(False))
        .then(pl.lit("missing strike/right"))
        .when(pl.col("years").is_null())
        .then(pl.lit("missing expiry"))
        .when(pl.col("years") <= 0.0)
        .then(pl.lit("expired"))
        .when(~usable("und_price"))
        .then(pl.lit("missing underlying price"))
        .when(pl.col("und_price") <= 0.0)
        .then(pl.lit("underlying price <= 0"))
        .when(~usable("implied_vol"))
        .then(pl.lit("missing implied vol"))
        .when(pl.col("implied_vol") <= 0.0)
        .then(pl.lit("implied vol <= 0"))
        .otherwise(None)
    )
    return frame.with_columns(reason.alias("unpriced_reason"))


def value_matrix(priced: pl.DataFrame, grid: ScenarioGrid, rate: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Money values q * m * price of priced rows (``unpriced_reason`` null): the base per row and the cells (rows x
    cells, spot-major as :meth:`ScenarioGrid.cells`)."""
    spot_shift, vol_shift = grid.cells()
    spot = priced["und_price"].to_numpy()[:, None]
    vol = priced["implied_vol"].to_numpy()[:, None]
    strike = priced["strike"].to_numpy()[:, None]
    years = priced["years"].to_numpy()[:, None]
    is_call = (priced["right"] == "C").to_numpy()[:, None]
    is_fop = priced["sec_type"].is_in(list(BLACK_76_SEC_TYPES)).to_numpy()[:, None]
    qm = (priced["position"] * priced["multiplier"]).to_numpy()

    def values(spot_in: np.ndarray, vol_in: np.ndarray) -> np.ndarray:
        return option_values(
            spot=spot_in, strike=strike, years=years, vol=vol_in, is_call=is_call, is_future_option=is_fop, rate=rate
        )

    base = values(spot, vol)[:, 0] * qm
    cells = values(spot * (1.0 + spot_shift[None, :]), vol + vol_shift[None, :]) * qm[:, None]
    return base, cells


def risk_scenarios(
    eod: pl.DataFrame, sessions: Sequence[date], grid: ScenarioGrid | None = None, rate: float = 0.0
) -> pl.DataFrame:
    """The scenario grid of the EOD state of ``sessions``: one row per (trade_date, account, underlying, currency,
    cell), then the account rows (underlying null). Columns exactly :data:`RISK_SCENARIOS_SCHEMA`."""
    grid = grid or ScenarioGrid()
    spot_shift, vol_shift = grid.cells()
    n_cells = len(spot_shift)
    inputs = scenario_inputs(eod).filter(pl.col("trade_date").is_in(list(sessions)))
    ok = pl.col("unpriced_reason").is_null()
    priced = inputs.filter(ok)
    cell_names = [f"_c{i}" for i in range(n_cells)]
    if priced.height:
        base, cells = value_matrix(priced, grid, rate)
        vol = priced["implied_vol"].to_numpy()[:, None]
        floored_rows = ((vol + vol_shift[None, :]) <= 0.0).any(axis=1)
        priced = priced.with_columns(
            pl.Series("_base", base),
            pl.Series("_floored", floored_rows.astype(np.int64)),
            *[pl.Series(name, cells[:, i]) for i, name in enumerate(cell_names)],
        )
    else:
        priced = priced.with_columns(
            pl.lit(0.0).alias("_base"),
            pl.lit(0, dtype=pl.Int64).alias("_floored"),
            *[pl.lit(0.0).alias(name) for name in cell_names],
        )
    unpriced = inputs.filter(~ok).with_columns(
        pl.lit(None, dtype=pl.Float64).alias("_base"),
        pl.lit(0, dtype=pl.Int64).alias("_floored"),
        *[pl.lit(None, dtype=pl.Float64).alias(name) for name in cell_names],
    )
    rows = pl.concat([priced, unpriced], how="vertical_relaxed").rename({"symbol": "underlying"})
    parts = []
    for keys in (["trade_date", "account", "underlying", "currency"], ["trade_date", "account", "currency"]):
        parts.append(_aggregate(rows, keys, cell_names, spot_shift, vol_shift))
    out = pl.concat(parts, how="diagonal_relaxed")
    return out.select([pl.col(c).cast(t) for c, t in RISK_SCENARIOS_SCHEMA.items()]).sort(
        ["trade_date", "account", "underlying", "currency", "spot_shift_pct", "vol_shift_pts"], nulls_last=True
    )


def _aggregate(
    rows: pl.DataFrame, keys: list[str], cell_names: list[str], spot_shift: np.ndarray, vol_shift: np.ndarray
) -> pl.DataFrame:
    priced = pl.col("unpriced_reason").is_null()
    reasons = (
        rows.filter(~priced)
        .group_by([*keys, "unpriced_reason"])
        .agg(pl.len().alias("_n"))
        .sort("unpriced_reason")
        .group_by(keys)
        .agg(pl.format("{}: {}", pl.col("unpriced_reason"), pl.col("_n")).str.join("; ").alias("unpriced_reasons"))
    )
    groups = rows.group_by(keys).agg(
        pl.len().cast(pl.Int64).alias("positions"),
        priced.sum().cast(pl.Int64).alias("priced_positions"),
        pl.col("_floored").sum().cast(pl.Int64).alias("vol_floored_positions"),
        pl.col("_base").filter(priced).sum().alias("base_value"),
        *[pl.col(c).filter(priced).sum().alias(c) for c in cell_names],
    )
    groups = groups.join(reasons, on=keys, how="left", nulls_equal=True)
    cells = pl.DataFrame({"_cell": cell_names, "spot_shift_pct": spot_shift * 100.0, "vol_shift_pts": vol_shift * 100})
    long = groups.unpivot(
        index=[c for c in groups.columns if c not in cell_names], on=cell_names, variable_name="_cell"
    )
    any_priced = pl.col("priced_positions") > 0
    return (
        long.join(cells, on="_cell", how="left")
        .with_columns(
            pl.when(any_priced).then(pl.col("base_value")).otherwise(None).alias("base_value"),
            pl.when(any_priced).then(pl.col("value")).otherwise(None).alias("scenario_value"),
            (pl.col("positions") - pl.col("priced_positions")).alias("unpriced_positions"),
            (pl.col("priced_positions") == pl.col("positions")).alias("complete"),
            pl.col("unpriced_reasons").fill_null(""),
        )
        .with_columns((pl.col("scenario_value") - pl.col("base_value")).alias("pnl"))
        .drop("_cell", "value")
    )


def worst_loss(scenarios: pl.DataFrame) -> pl.DataFrame:
    """Per trade_date x account x underlying x currency: the lowest cell pnl (``worst_pnl``), its cell, and whether
    the group was complete."""
    return (
        scenarios.filter(pl.col("pnl").is_not_null())
        .sort("pnl")
        .group_by("trade_date", "account", "underlying", "currency", maintain_order=True)
        .agg(
            pl.col("pnl").first().alias("worst_pnl"),
            pl.col("spot_shift_pct").first(),
            pl.col("vol_shift_pts").first(),
            pl.col("complete").first(),
            pl.col("unpriced_positions").first(),
        )
    )
