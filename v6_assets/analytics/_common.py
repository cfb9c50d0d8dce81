"""Shared pieces of the analytics: input/output schemas, input validation, session windows, FX roll-up helper.

Pure polars, no I/O. Every public function validates its input and raises :class:`AnalyticsInputError` with a clear
message instead of computing a number from a sentinel, a NaN or a missing column.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date

import polars as pl

from v6_assets import sessions as nyse
from v6_assets.contracts.streams import GREEKS_UPDATE_FIELDS, POSITION_UPDATE_FIELDS
from v6_assets.contracts.tables import (
    DAILY_PNL,
    EOD_POSITIONS,
    EXPOSURE,
    GREEKS_UPDATES,
    POSITION_UPDATES,
    ROLLUP_COLUMN,
    polars_dtypes,
)
from v6_assets.contracts.unset import ib_unset_expr

Frame = pl.LazyFrame | pl.DataFrame

POSITION_KEY: tuple[str, ...] = ("account", "con_id")
UTC_US = pl.Datetime("us", "UTC")


class AnalyticsInputError(ValueError):
    """The input frames cannot give a correct answer (missing column, sentinel value, bad session list...)."""


# Input: position_updates / greeks_updates as stored in Delta (the event's fields, then trade_date, stream_id,
# spool_offset), from the table contracts. ``ingested_at`` is the lake's bookkeeping: the analytics never read it.
POSITION_UPDATES_SCHEMA: dict[str, pl.DataType] = polars_dtypes(POSITION_UPDATES, without=("ingested_at",))
GREEKS_UPDATES_SCHEMA: dict[str, pl.DataType] = polars_dtypes(GREEKS_UPDATES, without=("ingested_at",))
# The columns the analytics read (the rest of the stored columns may be absent).
# Fields of the merged position state carried from the last update (after the account, con_id key): every field of
# the position stream that eod_positions holds too. Likewise the greeks carried into eod_positions.
STATE_COLUMNS: tuple[str, ...] = tuple(
    c for c in POSITION_UPDATE_FIELDS if c in EOD_POSITIONS.column_names and c not in POSITION_KEY
)
GREEK_COLUMNS: tuple[str, ...] = tuple(
    c for c in GREEKS_UPDATE_FIELDS if c in EOD_POSITIONS.column_names and c not in POSITION_KEY
)
POSITION_UPDATES_REQUIRED: tuple[str, ...] = (
    "account",
    "con_id",
    *STATE_COLUMNS,
    "source",
    "received_at",
    "spool_offset",
)
GREEKS_UPDATES_REQUIRED: tuple[str, ...] = ("con_id", *GREEK_COLUMNS, "received_at", "spool_offset")
POSITION_SOURCES: tuple[str, ...] = ("portfolio", "position", "pnl_single")

# Outputs: exactly the table contracts' columns in their order (exposure without the ``rollup`` column, which the
# pipeline adds with the roll-up rows).
EOD_POSITIONS_SCHEMA: dict[str, pl.DataType] = polars_dtypes(EOD_POSITIONS)
# Columns added to eod_positions after the first EODs were stored: filled with defaults when an input lacks them.
EOD_EXTRA_COLUMNS: tuple[str, ...] = ("ib_value", "portfolio_at", "pnl_single_at", "is_expired", "position_changed_at")
DAILY_PNL_SCHEMA: dict[str, pl.DataType] = polars_dtypes(DAILY_PNL)
EXPOSURE_SCHEMA: dict[str, pl.DataType] = polars_dtypes(EXPOSURE, without=(ROLLUP_COLUMN,))


def require_columns(frame: Frame, required: Iterable[str], what: str) -> list[str]:
    names = frame.collect_schema().names()
    missing = [c for c in required if c not in names]
    if missing:
        raise AnalyticsInputError(f"{what}: missing column(s) {missing}; got {names}")
    return names


def cast_present_columns(df: pl.DataFrame, schema: dict[str, pl.DataType], what: str) -> pl.DataFrame:
    """Cast the columns present in ``schema`` to its types (strictly); time stamps must be time-zone aware."""
    casts = []
    for name, dtype in schema.items():
        if name not in df.columns:
            continue
        actual = df.schema[name]
        if isinstance(dtype, pl.Datetime):
            if not isinstance(actual, pl.Datetime):
                raise AnalyticsInputError(f"{what}: column {name!r} must be a Datetime, got {actual}")
            if actual.time_zone is None:
                raise AnalyticsInputError(f"{what}: column {name!r} is a naive Datetime; UTC time stamps expected")
            if actual != UTC_US:  # a time-zone conversion costs ~0.1 s per million rows: only when needed
                casts.append(pl.col(name).dt.convert_time_zone("UTC").cast(UTC_US))
        elif actual != dtype:
            casts.append(pl.col(name).cast(dtype, strict=True))
    if not casts:
        return df
    try:
        return df.with_columns(casts)
    except (pl.exceptions.InvalidOperationError, pl.exceptions.ComputeError) as exc:
        raise AnalyticsInputError(f"{what}: a column has values of the wrong type: {exc}") from exc


def check_no_sentinels(df: pl.DataFrame, columns: Sequence[str], what: str) -> None:
    """Reject doubles without a value by the IB-unset rule (NaN, infinities, IB's UNSET_DOUBLE): they must have been
    stored as null ("unknown")."""
    present = [c for c in columns if c in df.columns]
    if not present or df.height == 0:
        return
    bad = df.select([ib_unset_expr(pl.col(c)).fill_null(False).sum().alias(c) for c in present]).row(0, named=True)
    offenders = {c: n for c, n in bad.items() if n}
    if offenders:
        raise AnalyticsInputError(
            f"{what}: sentinel/NaN/infinite values where null (unknown) was expected, rows per column: {offenders}"
        )


def check_no_nulls(df: pl.DataFrame, columns: Sequence[str], what: str) -> None:
    counts = df.select(pl.col(c).null_count() for c in columns).row(0, named=True)
    offenders = {c: n for c, n in counts.items() if n}
    if offenders:
        raise AnalyticsInputError(f"{what}: null values in key columns, rows per column: {offenders}")


def check_rule(df: pl.DataFrame, bad: pl.Expr, message: str, what: str) -> None:
    n = int(df.select(bad.fill_null(False).sum()).item())
    if n:
        raise AnalyticsInputError(f"{what}: {n} row(s) {message}")


def check_frame(
    df: pl.DataFrame,
    what: str,
    *,
    not_null: Sequence[str] = (),
    no_sentinels: Sequence[str] = (),
    rules: Sequence[tuple[pl.Expr, str]] = (),
) -> None:
    """:func:`check_no_nulls`, :func:`check_no_sentinels` and :func:`check_rule` in ONE pass over ``df``.

    ``rules``: (row is bad, message). All counts come from one ``select`` of aggregates (evaluated in parallel); the
    first failing check, in the order nulls, sentinels, rules, raises with the same message as the single checks.
    """
    if df.height == 0:
        return
    sentinel_columns = [c for c in no_sentinels if c in df.columns]
    exprs = [pl.col(c).null_count().alias(f"null:{c}") for c in not_null]
    exprs += [ib_unset_expr(pl.col(c)).fill_null(False).sum().alias(f"sentinel:{c}") for c in sentinel_columns]
    exprs += [bad.fill_null(False).sum().alias(f"rule:{i}") for i, (bad, _) in enumerate(rules)]
    if not exprs:
        return
    counts = df.select(exprs).row(0)
    nulls = {c: n for c, n in zip(not_null, counts, strict=False) if n}
    if nulls:
        raise AnalyticsInputError(f"{what}: null values in key columns, rows per column: {nulls}")
    offset = len(not_null)
    sentinels = {c: n for c, n in zip(sentinel_columns, counts[offset:], strict=False) if n}
    if sentinels:
        raise AnalyticsInputError(
            f"{what}: sentinel/NaN/infinite values where null (unknown) was expected, rows per column: {sentinels}"
        )
    offset += len(sentinel_columns)
    for (_, message), n in zip(rules, counts[offset:], strict=True):
        if n:
            raise AnalyticsInputError(f"{what}: {n} row(s) {message}")


def validate_sessions(sessions: Sequence[date]) -> list[date]:
    """A non-empty, contiguous, ascending range of NYSE sessions (one backfill range)."""
    days = list(sessions)
    if not days:
        raise AnalyticsInputError("sessions: empty list")
    for d in days:
        if not isinstance(d, date):
            raise AnalyticsInputError(f"sessions: {d!r} is not a date")
        if not nyse.is_session(d):
            raise AnalyticsInputError(f"sessions: {d} is not an NYSE trading session")
    expected = nyse.sessions_between(days[0], days[-1])
    if days != expected:
        raise AnalyticsInputError(
            f"sessions: must be the contiguous ascending sessions from {days[0]} to {days[-1]} without duplicates"
        )
    return days


def session_window(sessions: Sequence[date]) -> pl.DataFrame:
    """idx 0 = the session before the first, then 1..n: trade_date, its EOD cut, the previous session and its cut."""
    days = [nyse.previous_session(sessions[0]), *sessions]
    prev_days = [nyse.previous_session(d) for d in days]
    return pl.DataFrame(
        {
            "idx": list(range(len(days))),
            "trade_date": days,
            "cut": [nyse.eod_cut(d).astimezone(UTC) for d in days],
            "prev_date": prev_days,
            "prev_cut": [nyse.eod_cut(d).astimezone(UTC) for d in prev_days],
        },
        schema={"idx": pl.Int32, "trade_date": pl.Date, "cut": UTC_US, "prev_date": pl.Date, "prev_cut": UTC_US},
    )


def seconds_between(later: pl.Expr, earlier: pl.Expr) -> pl.Expr:
    return (later - earlier).dt.total_microseconds().cast(pl.Float64) / 1e6


def fresher(portfolio_value: str, pnl_single_value: str) -> pl.Expr:
    """The fresher of a portfolio (updatePortfolio) and a pnl_single (reqPnLSingle) figure with the same meaning.

    Both known: the one whose source stream reported last at or before the cut (ties go to reqPnLSingle, which
    updates about once a second); one known: that one.
    """
    p_at, s_at = pl.col("portfolio_at"), pl.col("pnl_single_at")
    single_is_fresher = s_at.is_not_null() & (p_at.is_null() | (s_at >= p_at))
    p, s = pl.col(portfolio_value), pl.col(pnl_single_value)
    return (
        pl.when(p.is_not_null() & s.is_not_null())
        .then(pl.when(single_is_fresher).then(s).otherwise(p))
        .otherwise(pl.coalesce(s, p))
    )


def strict_sum(col: str) -> pl.Expr:
    """Sum that is null as soon as one input is null: a partial total is never passed off as the total."""
    return pl.when(pl.col(col).null_count() == 0).then(pl.col(col).sum()).otherwise(None)


def known_sum(col: str) -> pl.Expr:
    """Sum of the known values; null when none is known (never a silent 0)."""
    return pl.when(pl.col(col).is_not_null().any()).then(pl.col(col).sum()).otherwise(None)


FX_RATES_COLUMNS: tuple[str, ...] = ("account", "currency", "base_currency", "fx_rate")


def to_reporting_currency(frame: pl.DataFrame, amounts: Sequence[str], fx_rates: pl.DataFrame | None) -> pl.DataFrame:
    """Convert ``amounts`` to each account's base currency where the FX rate is known.

    ``fx_rates``: columns account, currency, base_currency, fx_rate (units of base per unit of currency), optionally
    trade_date. Rows whose rate is unknown keep their own currency and ``is_base_currency`` false; without
    ``fx_rates`` nothing is converted and ``is_base_currency`` is null (base currency unknown). Currencies are never
    added together: roll-ups group by the resulting ``currency``.
    """
    if fx_rates is None:
        return frame.with_columns(pl.lit(None, dtype=pl.Boolean).alias("is_base_currency"))
    require_columns(fx_rates, FX_RATES_COLUMNS, "fx_rates")
    fx = cast_present_columns(
        fx_rates,
        {"account": pl.String(), "currency": pl.String(), "base_currency": pl.String(), "fx_rate": pl.Float64()},
        "fx_rates",
    )
    if "trade_date" in fx.columns:
        fx = cast_present_columns(fx, {"trade_date": pl.Date()}, "fx_rates")
    check_no_nulls(fx, ["account", "currency", "base_currency"], "fx_rates")
    bases = fx.group_by("account").agg(pl.col("base_currency").unique().alias("bases"))
    several = bases.filter(pl.col("bases").list.len() > 1)
    if several.height:
        raise AnalyticsInputError(f"fx_rates: several base currencies for account(s) {several['account'].to_list()}")
    bases = bases.select("account", pl.col("bases").list.first().alias("_base"))
    on = ["trade_date", "account", "currency"] if "trade_date" in fx.columns else ["account", "currency"]
    rates = fx.select(*on, pl.col("fx_rate").alias("_rate"))
    if rates.select(on).is_duplicated().any():
        raise AnalyticsInputError(f"fx_rates: duplicate rows for the same {on}")
    usable_rate = ~ib_unset_expr(pl.col("_rate")) & (pl.col("_rate") > 0)
    out = (
        frame.join(bases, on="account", how="left")
        .join(rates, on=on, how="left")
        .with_columns(
            pl.when(pl.col("currency") == pl.col("_base"))
            .then(pl.lit(1.0))
            .when(usable_rate.fill_null(False))
            .then(pl.col("_rate"))
            .otherwise(None)
            .alias("_rate")
        )
    )
    # amounts whose rate is unknown stay in their own currency, unconverted (never multiplied by null)
    return out.with_columns(
        *[
            pl.when(pl.col("_rate").is_null()).then(pl.col(a)).otherwise(pl.col(a) * pl.col("_rate")).alias(a)
            for a in amounts
        ],
        pl.when(pl.col("_rate").is_not_null()).then(pl.col("_base")).otherwise(pl.col("currency")).alias("currency"),
        pl.when(pl.col("_base").is_null())
        .then(pl.lit(None, dtype=pl.Boolean))
        .otherwise(pl.col("_rate").is_not_null())
        .alias("is_base_currency"),
    ).drop("_base", "_rate")
