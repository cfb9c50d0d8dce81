"""Pictures for the explain and risk assets' materialization metadata: small matplotlib PNGs as ``data:`` URIs
(``png_data_uri``) in ``MetadataValue.md``, each with its numbers as a table (the text fallback).

- explain waterfall per account: delta, gamma, vega, theta, trading, residual, unexplained -> the day's PnL;
- scenario grid heat map per account: PnL of every (spot shift, vol shift) cell;
- expiry ladder bars: |dollar delta| and positions per days-to-expiry bucket, per account.

No data is never drawn as 0: a session without rows is a "no data" note.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl
from dagster import MetadataValue
from matplotlib.figure import Figure

from v6_assets.analytics.ladder import BUCKET_ORDER
from v6_assets.contracts.money import format_cents
from v6_assets.contracts.tables import ROLLUP_ACCOUNT, ROLLUP_COLUMN
from v6_assets.defs.metadata import png_data_uri

MAX_PANELS = 4
WATERFALL_STEPS: tuple[tuple[str, str], ...] = (
    ("delta_pnl", "delta"),
    ("gamma_pnl", "gamma"),
    ("vega_pnl", "vega"),
    ("theta_pnl", "theta"),
    ("trading_pnl", "trading"),
    ("residual", "residual"),
    ("unexplained_pnl", "unexplained"),
)


def _heading(title: str, simulated: bool) -> str:
    return f"**{title}**" + (" (SIMULATED data)" if simulated else "")


def _panels(count: int) -> tuple[Figure, list[Any]]:
    cols = min(count, 2)
    rows = math.ceil(count / cols)
    fig = Figure(figsize=(4.2 * cols, 3.0 * rows), dpi=80)
    axes = fig.subplots(rows, cols, squeeze=False)
    flat = [ax for row in axes for ax in row]
    for ax in flat[count:]:
        ax.set_visible(False)
    return fig, flat[:count]


def explain_waterfall(explain: pl.DataFrame, *, title: str, simulated: bool) -> MetadataValue:
    """Waterfall per account (account roll-up rows of one session), money per currency."""
    rows = explain.filter(pl.col(ROLLUP_COLUMN) == ROLLUP_ACCOUNT).sort("account", "currency").head(MAX_PANELS)
    if not rows.height:
        return MetadataValue.md(f"{_heading(title, simulated)}\n\n_no data_")
    fig, axes = _panels(rows.height)
    lines = ["| account | currency | " + " | ".join(n for _, n in WATERFALL_STEPS) + " | pnl |", "|---" * 10 + "|"]
    for ax, r in zip(axes, rows.iter_rows(named=True), strict=True):
        values = [r[c] or 0.0 for c, _ in WATERFALL_STEPS]  # a null roll-up term: nothing of that kind to add
        starts = np.concatenate([[0.0], np.cumsum(values)[:-1]])
        labels = [n for _, n in WATERFALL_STEPS] + ["pnl"]
        total = r["pnl"]
        ax.bar(labels[:-1], values, bottom=starts, color=["#2e7d32" if v >= 0 else "#c62828" for v in values])
        if total is not None:
            ax.bar(labels[-1:], [total], color="#1565c0")
        ax.axhline(0, color="#555555", linewidth=0.8)
        # floating bars: autoscale misses their tops, so the limits come from every level the waterfall reaches
        levels = [0.0, *starts, *(starts + np.asarray(values)), *([total] if total is not None else [])]
        pad = 0.08 * (max(levels) - min(levels) or 1.0)
        ax.set_ylim(min(levels) - pad, max(levels) + pad)
        ax.set_title(f"{r['account']} ({r['currency']})", fontsize=9)
        ax.tick_params(labelsize=7, labelrotation=45)
        cells = [format_cents(r[c]) for c, _ in WATERFALL_STEPS]
        lines.append(f"| {r['account']} | {r['currency']} | " + " | ".join(cells) + f" | {format_cents(total)} |")
    fig.suptitle(title + (" (SIMULATED)" if simulated else ""), fontsize=10)
    fig.tight_layout()
    return MetadataValue.md(f"{_heading(title, simulated)}\n\n![{title}]({png_data_uri(fig)})\n\n" + "\n".join(lines))


def scenario_heatmap(scenarios: pl.DataFrame, *, title: str, simulated: bool) -> MetadataValue:
    """Heat map per account (account rows: every underlying shifted together) of one session."""
    rows = scenarios.filter(pl.col("underlying").is_null())
    keys = rows.select("account", "currency").unique().sort("account", "currency").head(MAX_PANELS)
    if not keys.height:
        return MetadataValue.md(f"{_heading(title, simulated)}\n\n_no data_")
    fig, axes = _panels(keys.height)
    lines = ["| account | currency | worst cell | worst pnl | complete |", "|---|---|---|---:|---|"]
    for ax, (account, currency) in zip(axes, keys.iter_rows(), strict=True):
        grid = rows.filter((pl.col("account") == account) & (pl.col("currency") == currency))
        spots = sorted(set(grid["spot_shift_pct"].to_list()))
        vols = sorted(set(grid["vol_shift_pts"].to_list()))
        matrix = np.full((len(vols), len(spots)), np.nan)
        for r in grid.iter_rows(named=True):
            if r["pnl"] is not None:
                matrix[vols.index(r["vol_shift_pts"]), spots.index(r["spot_shift_pct"])] = r["pnl"]
        bound = float(np.nanmax(np.abs(matrix))) if np.isfinite(matrix).any() else 1.0
        image = ax.imshow(matrix, cmap="RdYlGn", vmin=-bound, vmax=bound, aspect="auto", origin="lower")
        ax.set_xticks(range(len(spots)), [f"{s:+g}%" for s in spots], fontsize=6)
        ax.set_yticks(range(len(vols)), [f"{v:+g}" for v in vols], fontsize=6)
        ax.set_xlabel("spot shift", fontsize=7)
        ax.set_ylabel("vol shift (pts)", fontsize=7)
        ax.set_title(f"{account} ({currency})", fontsize=9)
        fig.colorbar(image, ax=ax)
        known = grid.filter(pl.col("pnl").is_not_null()).sort("pnl")
        if known.height:
            w = known.row(0, named=True)
            cell = f"{w['spot_shift_pct']:+g}% / {w['vol_shift_pts']:+g} pts"
            lines.append(f"| {account} | {currency} | {cell} | {format_cents(w['pnl'])} | {w['complete']} |")
        else:
            lines.append(f"| {account} | {currency} | n/a | n/a (nothing priced) | False |")
    fig.suptitle(title + (" (SIMULATED)" if simulated else ""), fontsize=10)
    fig.tight_layout()
    return MetadataValue.md(f"{_heading(title, simulated)}\n\n![{title}]({png_data_uri(fig)})\n\n" + "\n".join(lines))


def ladder_bars(ladder: pl.DataFrame, *, title: str, simulated: bool) -> MetadataValue:
    """|dollar delta| per days-to-expiry bucket, one bar group per account, positions in the table."""
    if not ladder.height:
        return MetadataValue.md(f"{_heading(title, simulated)}\n\n_no data_")
    buckets: Sequence[str] = [b for b in BUCKET_ORDER if b in set(ladder["bucket"].to_list())]
    per = ladder.group_by("account", "bucket").agg(
        pl.col("dollar_delta").abs().sum().alias("abs_dollar_delta"),
        pl.col("positions").sum(),
        pl.col("pin_risk_positions").sum(),
    )
    accounts = sorted(set(per["account"].to_list()))
    fig = Figure(figsize=(6.0, 3.0), dpi=80)
    ax = fig.subplots()
    width = 0.8 / max(len(accounts), 1)
    lines = ["| account | bucket | positions | \\|dollar delta\\| | pin risk |", "|---|---|---:|---:|---:|"]
    for i, account in enumerate(accounts):
        rows = {r["bucket"]: r for r in per.filter(pl.col("account") == account).iter_rows(named=True)}
        heights = [rows[b]["abs_dollar_delta"] if b in rows else 0.0 for b in buckets]
        ax.bar([x + i * width for x in range(len(buckets))], heights, width=width, label=account)
        for b in buckets:
            if b in rows:
                r = rows[b]
                lines.append(
                    f"| {account} | {b} | {r['positions']} | {format_cents(r['abs_dollar_delta'])} | "
                    f"{r['pin_risk_positions']} |"
                )
    ax.set_xticks([x + 0.4 - width / 2 for x in range(len(buckets))], list(buckets), fontsize=8)
    ax.set_xlabel("days to expiry", fontsize=8)
    ax.set_ylabel("|dollar delta|", fontsize=8)
    ax.legend(fontsize=7)
    ax.set_title(title + (" (SIMULATED)" if simulated else ""), fontsize=10)
    fig.tight_layout()
    return MetadataValue.md(f"{_heading(title, simulated)}\n\n![{title}]({png_data_uri(fig)})\n\n" + "\n".join(lines))
