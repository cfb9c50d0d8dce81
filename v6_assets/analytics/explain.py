"""PnL explain: the daily PnL of each position split into delta, gamma, vega, theta, trading and residual.

For a position held over the cut of D-1 (q = position at D-1, m = multiplier), with the greeks, underlying price S
and implied vol (decimal) of the D-1 cut and S, implied vol of the D cut (``eod_positions``):

- delta_pnl = delta_{D-1} * q * m * (S_D - S_{D-1})
- gamma_pnl = 0.5 * gamma_{D-1} * q * m * (S_D - S_{D-1})^2
- vega_pnl  = vega_{D-1} * q * m * (iv_D - iv_{D-1}) * 100          (vega per vol point)
- theta_pnl = theta_{D-1} * q * m * calendar days between the two cuts   (theta per calendar day)
- trading_pnl = pnl_D - q * m * (P_D - P_{D-1}): the part of the day's PnL due to position changes during D
  (transaction MTM, commissions included; P = the mark at the cut); 0 when the quantity did not change
- residual = pnl_D - trading_pnl - (delta + gamma + vega + theta)_pnl: higher-order terms and model mismatch.

``pnl_D`` is ``daily_pnl.pnl`` ((U_D - U_{D-1}) + R_D). A position opened during D (q = 0 at D-1) is all trading
(the greek terms are 0: nothing was held). Rows whose attribution cannot be computed are flagged (``status``,
``flag``) and their PnL stays in ``unexplained_pnl``, never spread over the terms: greeks, implied vol or underlying
price missing/sentinel at D-1 (``missing_greeks``), the underlying price or implied vol missing at D
(``missing_market``), a quantity change without both marks (``missing_mark``), an option expired during D
(``expired``: its last day is the move to intrinsic, not a greek move), a null pnl (``unknown_pnl``: baseline or
unknown realized). Per row: pnl = delta + gamma + vega + theta + trading + residual + unexplained (null terms as 0).
Roll-ups by underlying and by account (``rollup`` column) sum the known terms per currency (never across currencies).
"""

from __future__ import annotations

from datetime import date

import polars as pl

from v6_assets.analytics._common import (
    DAILY_PNL_SCHEMA,
    EOD_POSITIONS_SCHEMA,
    POSITION_KEY,
    AnalyticsInputError,
    cast_present_columns,
    known_sum,
    require_columns,
    session_window,
    validate_sessions,
)
from v6_assets.analytics.pricing import greeks_problem_expr, usable
from v6_assets.contracts.tables import (
    PNL_EXPLAIN,
    ROLLUP_ACCOUNT,
    ROLLUP_COLUMN,
    ROLLUP_DETAIL,
    ROLLUP_UNDERLYING,
    polars_dtypes,
)

PNL_EXPLAIN_SCHEMA: dict[str, pl.DataType] = polars_dtypes(PNL_EXPLAIN)
EXPLAIN_TERMS: tuple[str, ...] = ("delta_pnl", "gamma_pnl", "vega_pnl", "theta_pnl")
EXPLAIN_AMOUNTS: tuple[str, ...] = ("pnl", *EXPLAIN_TERMS, "trading_pnl", "residual", "unexplained_pnl")
STATUS_EXPLAINED, STATUS_OPENED = "explained", "opened"
STATUSES: tuple[str, ...] = (
    STATUS_EXPLAINED,
    STATUS_OPENED,
    "missing_greeks",
    "missing_market",
    "missing_mark",
    "expired",
    "unknown_pnl",
)
_EOD_READ: tuple[str, ...] = (
    "trade_date",
    *POSITION_KEY,
    "market_price",
    "delta",
    "gamma",
    "vega",
    "theta",
    "implied_vol",
    "und_price",
)


def _eod_part(eod: pl.DataFrame, what: str) -> pl.DataFrame:
    require_columns(eod, _EOD_READ, what)
    frame = cast_present_columns(eod.select(_EOD_READ), EOD_POSITIONS_SCHEMA, what)
    extra = eod.select(pl.col("is_expired").cast(pl.Boolean)) if "is_expired" in eod.columns else None
    frame = frame.with_columns(
        extra.to_series() if extra is not None else pl.lit(False).alias("is_expired")
    ).with_columns(pl.col("is_expired").fill_null(False))
    if frame.select("trade_date", *POSITION_KEY).is_duplicated().any():
        raise AnalyticsInputError(f"{what}: duplicate (trade_date, account, con_id) rows")
    return frame


def pnl_explain(
    daily: pl.DataFrame, eod: pl.DataFrame, previous_eod: pl.DataFrame | None, sessions: list[date]
) -> pl.DataFrame:
    """Detail rows (``rollup`` = detail) of the PnL explain of ``sessions`` (contiguous, oldest first).

    ``daily``: daily_pnl rows of those sessions; ``eod``: eod_positions of those sessions; ``previous_eod``: the
    eod_positions of the session before the first (None: unknown, rows held over it are flagged). Columns exactly
    :data:`PNL_EXPLAIN_SCHEMA`, sorted by trade_date, account, con_id. Bad values are flagged rows, never raised.
    """
    days = validate_sessions(sessions)
    require_columns(daily, DAILY_PNL_SCHEMA, "daily_pnl")
    pnl = cast_present_columns(daily.select(list(DAILY_PNL_SCHEMA)), DAILY_PNL_SCHEMA, "daily_pnl")
    window = session_window(days).with_columns(
        ((pl.col("cut") - pl.col("prev_cut")).dt.total_microseconds().cast(pl.Float64) / 86_400e6).alias("days_elapsed")
    )
    cur = _eod_part(eod, "eod")
    prev_frames = [cur.filter(pl.col("trade_date") < days[-1])]
    if previous_eod is not None and previous_eod.height:
        prev_frames.append(_eod_part(previous_eod, "previous_eod"))
    prev = pl.concat(prev_frames).select(
        *POSITION_KEY,
        pl.col("trade_date").alias("prev_date"),
        *[pl.col(c).alias(f"prev_{c}") for c in ("market_price", "delta", "gamma", "vega", "theta")],
        pl.col("implied_vol").alias("prev_implied_vol"),
        pl.col("und_price").alias("prev_und_price"),
    )
    rows = (
        pnl.lazy()
        .join(window.lazy().select("trade_date", "prev_date", "days_elapsed"), on="trade_date", how="left")
        .join(cur.lazy().drop("delta", "gamma", "vega", "theta"), on=["trade_date", *POSITION_KEY], how="left")
        .join(prev.lazy(), on=[*POSITION_KEY, "prev_date"], how="left")
    )
    q, m = pl.col("prev_position"), pl.col("multiplier")
    held = (q != 0.0).fill_null(False)
    ds = pl.col("und_price") - pl.col("prev_und_price")
    dvol_pts = (pl.col("implied_vol") - pl.col("prev_implied_vol")) * 100.0
    traded = (pl.col("position") != q).fill_null(True)
    marks_known = usable("market_price") & usable("prev_market_price")
    held_mtm = q * m * (pl.col("market_price") - pl.col("prev_market_price"))
    market_ok = usable("und_price") & usable("implied_vol") & (pl.col("implied_vol") > 0.0) & (pl.col("und_price") > 0)
    greeks_problem = greeks_problem_expr("prev_")
    rows = rows.with_columns(
        greeks_problem.alias("_greeks_problem"),
        pl.when(pl.col("pnl").is_null())
        .then(pl.lit("unknown_pnl"))
        .when(~held)
        .then(pl.lit(STATUS_OPENED))
        .when(pl.col("is_expired"))
        .then(pl.lit("expired"))
        .when(greeks_problem.is_not_null() | ~usable("multiplier"))
        .then(pl.lit("missing_greeks"))
        .when(~market_ok)
        .then(pl.lit("missing_market"))
        .when(traded & ~marks_known)
        .then(pl.lit("missing_mark"))
        .otherwise(pl.lit(STATUS_EXPLAINED))
        .alias("status"),
    )
    status = pl.col("status")
    explained = status == STATUS_EXPLAINED
    opened = status == STATUS_OPENED
    trading = (
        pl.when(opened)
        .then(pl.col("pnl"))
        .when(status.is_in(["unknown_pnl", "expired"]))
        .then(None)
        .when(~traded)
        .then(0.0)
        .when(marks_known & usable("multiplier"))
        .then(pl.col("pnl") - held_mtm)
        .otherwise(None)
    )
    terms = {
        "delta_pnl": pl.col("prev_delta") * q * m * ds,
        "gamma_pnl": 0.5 * pl.col("prev_gamma") * q * m * ds * ds,
        "vega_pnl": pl.col("prev_vega") * q * m * dvol_pts,
        "theta_pnl": pl.col("prev_theta") * q * m * pl.col("days_elapsed"),
    }
    rows = rows.with_columns(
        *[pl.when(explained).then(expr).when(opened).then(0.0).otherwise(None).alias(k) for k, expr in terms.items()],
        trading.alias("trading_pnl"),
        pl.when(explained).then(ds).otherwise(None).alias("und_move"),
        pl.when(explained).then(dvol_pts).otherwise(None).alias("vol_move_pts"),
        pl.when(status == "missing_greeks")
        .then(pl.coalesce(pl.col("_greeks_problem"), pl.lit("missing multiplier")) + pl.lit(" at D-1"))
        .when(status == "missing_market")
        .then(pl.lit("underlying price or implied vol missing/invalid at D"))
        .when(status == "missing_mark")
        .then(pl.lit("position changed and a mark at D or D-1 is missing"))
        .when(status == "expired")
        .then(pl.lit("expired during D (move to intrinsic is not a greek move)"))
        .when(status == "unknown_pnl")
        .then(pl.when(pl.col("is_baseline")).then(pl.lit("baseline session")).otherwise(pl.lit("pnl unknown")))
        .otherwise(None)
        .alias("flag"),
    )
    greek_sum = pl.sum_horizontal(*[pl.col(k) for k in EXPLAIN_TERMS])
    rows = rows.with_columns(
        pl.when(explained | opened)
        .then(pl.col("pnl") - pl.col("trading_pnl") - greek_sum)
        .otherwise(None)
        # opened rows: pnl - trading = 0 exactly
        .alias("residual"),
    ).with_columns(
        pl.when(explained | opened)
        .then(0.0)
        .otherwise(pl.col("pnl") - pl.col("trading_pnl").fill_null(0.0))
        .alias("unexplained_pnl"),
        pl.lit(ROLLUP_DETAIL).alias(ROLLUP_COLUMN),
        pl.lit(1, dtype=pl.Int64).alias("positions"),
        (~(explained | opened)).cast(pl.Int64).alias("flagged_positions"),
    )
    return (
        rows.select([pl.col(c).cast(t) for c, t in PNL_EXPLAIN_SCHEMA.items()])
        .collect()
        .sort(["trade_date", "account", "con_id"])
    )


def _rollup(detail: pl.DataFrame, keys: list[str], level: str) -> pl.DataFrame:
    out = (
        detail.lazy()
        .group_by(keys)
        .agg(
            *[known_sum(c).alias(c) for c in EXPLAIN_AMOUNTS],
            pl.col("positions").sum(),
            pl.col("flagged_positions").sum(),
        )
        .with_columns(pl.lit(level).alias(ROLLUP_COLUMN))
    )
    missing = [pl.lit(None, dtype=t).alias(c) for c, t in PNL_EXPLAIN_SCHEMA.items() if c not in [*keys]]
    existing = set(keys) | set(EXPLAIN_AMOUNTS) | {"positions", "flagged_positions", ROLLUP_COLUMN}
    out = out.with_columns([e for e in missing if e.meta.output_name() not in existing])
    return out.select([pl.col(c).cast(t) for c, t in PNL_EXPLAIN_SCHEMA.items()]).collect()


def explain_with_rollups(detail: pl.DataFrame) -> pl.DataFrame:
    """Detail rows plus roll-ups by underlying (``symbol``, over accounts) and by account, per currency."""
    require_columns(detail, PNL_EXPLAIN_SCHEMA, "pnl_explain")
    rows = detail.filter(pl.col(ROLLUP_COLUMN) == ROLLUP_DETAIL)
    by_underlying = _rollup(rows, ["trade_date", "symbol", "currency"], ROLLUP_UNDERLYING)
    by_account = _rollup(rows, ["trade_date", "account", "currency"], ROLLUP_ACCOUNT)
    return pl.concat([rows, by_underlying, by_account]).sort(
        ["trade_date", ROLLUP_COLUMN, "account", "symbol", "con_id"], nulls_last=True
    )
