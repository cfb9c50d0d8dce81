"""Expiry ladder: open option exposure by days-to-expiry bucket, and pin risk.

DTE = calendar days from the session D to the option's expiry date. Buckets: 0-1, 2-7, 8-30, 31-90, >90; an option
whose expiry is before D is ``expired`` and one without an expiry ``unknown`` (flagged, still counted). Greek sums as
in ``exposure`` (delta_shares = delta * q * m, ...), over the positions with usable greeks only; the others are
counted in ``missing_greeks_positions``, never as 0.

Pin risk: a short option (q < 0) whose underlying price is within ``pin_pct`` percent of its strike
(|S - K| / K <= pin_pct / 100) and whose expiry is at most ``pin_sessions`` NYSE sessions after D (0 = expires on D).
A position without an underlying price cannot be judged and is not counted as pinned (its row is in
``missing_greeks_positions``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import polars as pl

from v6_assets import sessions as nyse
from v6_assets.analytics._common import EOD_POSITIONS_SCHEMA, cast_present_columns, require_columns
from v6_assets.analytics.pricing import greeks_problem_expr
from v6_assets.contracts.tables import EXPIRY_LADDER, polars_dtypes

EXPIRY_LADDER_SCHEMA: dict[str, pl.DataType] = polars_dtypes(EXPIRY_LADDER)
BUCKETS: tuple[tuple[str, int, int], ...] = (("0-1", 0, 1), ("2-7", 2, 7), ("8-30", 8, 30), ("31-90", 31, 90))
BUCKET_OVER, BUCKET_EXPIRED, BUCKET_UNKNOWN = ">90", "expired", "unknown"
BUCKET_ORDER: tuple[str, ...] = (*[b for b, _, _ in BUCKETS], BUCKET_OVER, BUCKET_EXPIRED, BUCKET_UNKNOWN)
DEFAULT_PIN_PCT = 1.0
DEFAULT_PIN_SESSIONS = 1
_READ = ("trade_date", "account", "con_id", "symbol", "expiry", "strike", "multiplier", "currency", "position")
_GREEKS = ("delta", "gamma", "vega", "theta", "implied_vol", "und_price")


def _bucket(dte: pl.Expr) -> pl.Expr:
    expr = pl.when(dte.is_null()).then(pl.lit(BUCKET_UNKNOWN)).when(dte < 0).then(pl.lit(BUCKET_EXPIRED))
    for name, _, high in BUCKETS:
        expr = expr.when(dte <= high).then(pl.lit(name))
    return expr.otherwise(pl.lit(BUCKET_OVER))


def sessions_to_expiry(days: Sequence[date], expiries: Sequence[date]) -> pl.DataFrame:
    """NYSE sessions after each trade_date up to and including each expiry (0 when the expiry is D or earlier)."""
    rows: dict[str, list[object]] = {"trade_date": [], "expiry": [], "sessions_to_expiry": []}
    for d in days:
        for e in expiries:
            rows["trade_date"].append(d)
            rows["expiry"].append(e)
            rows["sessions_to_expiry"].append(len(nyse.sessions_between(nyse.next_session(d), e)) if e > d else 0)
    return pl.DataFrame(rows, schema={"trade_date": pl.Date, "expiry": pl.Date, "sessions_to_expiry": pl.Int64})


def expiry_ladder(
    eod: pl.DataFrame, *, pin_pct: float = DEFAULT_PIN_PCT, pin_sessions: int = DEFAULT_PIN_SESSIONS
) -> pl.DataFrame:
    """The ladder of the EOD rows in ``eod`` (open positions only). Columns exactly :data:`EXPIRY_LADDER_SCHEMA`."""
    if pin_pct < 0 or pin_sessions < 0:
        raise ValueError(f"pin_pct and pin_sessions must be >= 0, got {pin_pct}, {pin_sessions}")
    require_columns(eod, (*_READ, *_GREEKS), "eod")
    frame = cast_present_columns(eod.select(*_READ, *_GREEKS), EOD_POSITIONS_SCHEMA, "eod")
    frame = frame.filter((pl.col("position") != 0.0).fill_null(False))
    days = sorted(set(frame["trade_date"].to_list()))
    expiries = sorted({e for e in frame["expiry"].to_list() if e is not None})
    frame = frame.join(sessions_to_expiry(days, expiries), on=["trade_date", "expiry"], how="left")
    q, m, s = pl.col("position"), pl.col("multiplier"), pl.col("und_price")
    dte = (pl.col("expiry") - pl.col("trade_date")).dt.total_days()
    covered = greeks_problem_expr().is_null() & m.is_not_null()
    distance = (s - pl.col("strike")).abs() / pl.col("strike")
    pinned = (
        (q < 0)
        & (distance <= pin_pct / 100.0)
        & (pl.col("sessions_to_expiry") <= pin_sessions)
        & (dte >= 0)
        & (pl.col("strike") > 0)
    ).fill_null(False)
    per_position = {
        "delta_shares": pl.col("delta") * q * m,
        "dollar_delta": pl.col("delta") * q * m * s,
        "gamma_shares": pl.col("gamma") * q * m,
        "vega": pl.col("vega") * q * m,
        "theta": pl.col("theta") * q * m,
        "notional": q.abs() * m * s,
    }
    rows = frame.with_columns(
        _bucket(dte).alias("bucket"),
        *[pl.when(covered).then(e).otherwise(None).alias(k) for k, e in per_position.items()],
        pinned.alias("_pinned"),
        (~covered).alias("_missing"),
    )
    order = pl.DataFrame({"bucket": list(BUCKET_ORDER), "bucket_order": list(range(len(BUCKET_ORDER)))})
    out = (
        rows.group_by("trade_date", "account", pl.col("symbol").alias("underlying"), "currency", "bucket")
        .agg(
            pl.len().alias("positions"),
            q.abs().sum().alias("contracts"),
            *[pl.when(pl.col(k).is_not_null().any()).then(pl.col(k).sum()).otherwise(None) for k in per_position],
            pl.col("_missing").sum().alias("missing_greeks_positions"),
            pl.col("_pinned").sum().alias("pin_risk_positions"),
            q.abs().filter(pl.col("_pinned")).sum().alias("pin_risk_contracts"),
            pl.col("con_id").filter(pl.col("_pinned")).sort().cast(pl.String).str.join(",").alias("pin_risk_con_ids"),
        )
        .join(order, on="bucket", how="left")
    )
    return out.select([pl.col(c).cast(t) for c, t in EXPIRY_LADDER_SCHEMA.items()]).sort(
        ["trade_date", "account", "underlying", "currency", "bucket_order"], nulls_last=True
    )
