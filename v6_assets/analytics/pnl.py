"""Daily PnL per (account, con_id) and its roll-ups by underlying and by account.

Definition (average-cost identity; equals IB's statement mark-to-market), for a position and trading day D:

    pnl_D = (U_D - U_{D-1}) + R_D

- U = unrealized PnL at the EOD cut; 0 when flat (closed or expired) or when the position was opened during D
  (U_{D-1} = 0). Source: the fresher of updatePortfolio's ``unrealized_pnl`` and reqPnLSingle's
  ``ib_unrealized_pnl`` (same meaning: market value - average cost x position); ``unrealized_source`` says which.
- R = realized PnL accumulated during D. A figure is complete only if its stream reported at or after D's last
  position change (``position_changed_at``: trades and expiries change the quantity; the streamer rotates the one
  updatePortfolio subscription across accounts, so another account's portfolio figure can predate a later trade).
  First usable of:
  1. ``expiry``: an option closed by its expiry (``is_expired``) realizes its last unrealized PnL: R_D = U_{D-1};
  2. ``portfolio``: updatePortfolio's ``realized_pnl`` if that stream reported during D at or after D's last position
     change (it resets daily; null means "not traded this session" = 0). Without a position change in D only a
     0/null figure is taken: a non-zero one is the previous session's (IB resets at 20:30 ET, after the cut);
  3. ``pnl_single``: reqPnLSingle's ``ib_realized_pnl`` is cumulative since inception, so R_D = its EOD value of D
     minus that of D-1 (0 for a position opened during D), each complete for its session as above;
  4. ``no_update``: no update at all during D (carried forward): no trade, R_D = 0;
  5. ``no_trade``: the position did not change during D: no trade, R_D = 0;
  otherwise unknown (null) and ``pnl`` is null. The meanings are never mixed (a daily figure is never differenced,
  a cumulative one never used as a day's figure).
- No D-1 state (the first session ever, ``previous_eod`` None): U_{D-1} is unknown and ``is_baseline`` is true --
  never U_D passed off as one day's PnL. ``pnl`` then carries IB's own daily PnL (reqPnLSingle) with
  ``pnl_source = "ib_daily"``, and is null only when IB gave none (``pnl_source`` says ``average_cost`` otherwise).
  With a D-1 state, a position absent from it was opened during D (U_{D-1} = 0).
- ``ib_daily_pnl``: reqPnLSingle's daily PnL when that stream reported during D, beside the computed one;
  ``pnl_minus_ib`` = pnl - ib_daily_pnl.
Amounts are in the position's currency; account roll-ups convert to the base currency only with a known FX rate.
"""

from __future__ import annotations

from datetime import date

import polars as pl

from v6_assets.analytics._common import (
    DAILY_PNL_SCHEMA,
    EOD_EXTRA_COLUMNS,
    EOD_POSITIONS_SCHEMA,
    POSITION_KEY,
    AnalyticsInputError,
    cast_present_columns,
    check_no_nulls,
    check_no_sentinels,
    known_sum,
    require_columns,
    session_window,
    strict_sum,
    to_reporting_currency,
    validate_sessions,
)

EOD_REQUIRED: tuple[str, ...] = tuple(c for c in EOD_POSITIONS_SCHEMA if c not in EOD_EXTRA_COLUMNS)
PNL_AMOUNTS: tuple[str, ...] = ("pnl", "unrealized_change", "realized_pnl", "ib_daily_pnl", "pnl_minus_ib")


def _eod_in_schema(eod: pl.DataFrame, what: str) -> pl.DataFrame:
    require_columns(eod, EOD_REQUIRED, what)
    for extra in EOD_EXTRA_COLUMNS:
        if extra not in eod.columns:  # written before the column existed: freshness unknown, not expired
            default = False if extra == "is_expired" else None
            eod = eod.with_columns(pl.lit(default, dtype=EOD_POSITIONS_SCHEMA[extra]).alias(extra))
    eod = cast_present_columns(eod.select(list(EOD_POSITIONS_SCHEMA)), EOD_POSITIONS_SCHEMA, what)
    check_no_nulls(eod, ["trade_date", *POSITION_KEY], what)
    if eod.select("trade_date", *POSITION_KEY).is_duplicated().any():
        raise AnalyticsInputError(f"{what}: duplicate (trade_date, account, con_id) rows")
    numbers = ["position", "unrealized_pnl", "realized_pnl", "ib_daily_pnl", "ib_unrealized_pnl", "ib_realized_pnl"]
    check_no_sentinels(eod, numbers, what)
    return eod


def _unrealized(prefix: str = "") -> tuple[pl.Expr, pl.Expr]:
    """U at the cut (0 when flat) and its source, from columns named ``prefix + name``."""
    position = pl.col(f"{prefix}position")
    p, s = pl.col(f"{prefix}unrealized_pnl"), pl.col(f"{prefix}ib_unrealized_pnl")
    p_at, s_at = pl.col(f"{prefix}portfolio_at"), pl.col(f"{prefix}pnl_single_at")
    single_is_fresher = s_at.is_not_null() & (p_at.is_null() | (s_at >= p_at))
    use_single = s.is_not_null() & (p.is_null() | single_is_fresher)
    flat = (position == 0).fill_null(False)
    value = pl.when(flat).then(0.0).when(use_single).then(s).otherwise(p)
    source = (
        pl.when(flat)
        .then(pl.lit("flat"))
        .when(use_single)
        .then(pl.lit("pnl_single"))
        .when(p.is_not_null())
        .then(pl.lit("portfolio"))
        .otherwise(None)
    )
    return value, source


def daily_pnl(eod: pl.DataFrame, previous_eod: pl.DataFrame | None, sessions: list[date]) -> pl.DataFrame:
    """Daily PnL of every (account, con_id) in ``eod`` for each session in ``sessions`` (a contiguous range).

    ``eod`` holds the EOD rows of exactly those sessions (``eod_positions``); ``previous_eod`` the EOD of the session
    before the first (None = no D-1 state: the first session is a baseline). Columns exactly
    :data:`DAILY_PNL_SCHEMA`, sorted by trade_date, account, con_id. Definitions in the module docstring.
    """
    days = validate_sessions(sessions)
    window = session_window(days)
    cur = _eod_in_schema(eod, "eod")
    outside = cur.filter(~pl.col("trade_date").is_in(days))
    if outside.height:
        raise AnalyticsInputError(
            f"eod: rows for trade_date(s) {sorted(set(outside['trade_date'].to_list()))} outside sessions "
            f"{days[0]}..{days[-1]}"
        )
    prev_frames = [cur.filter(pl.col("trade_date") < days[-1])]
    first_prev = window["trade_date"][0]
    if previous_eod is not None:
        prev = _eod_in_schema(previous_eod, "previous_eod")
        wrong = prev.filter(pl.col("trade_date") != first_prev)
        if wrong.height:
            raise AnalyticsInputError(
                f"previous_eod: holds trade_date(s) {sorted(set(wrong['trade_date'].to_list()))}, expected only "
                f"{first_prev} (the session before {days[0]})"
            )
        prev_frames.append(prev)
    prev_cols = [
        "position",
        "unrealized_pnl",
        "ib_unrealized_pnl",
        "ib_realized_pnl",
        "portfolio_at",
        "pnl_single_at",
        "position_changed_at",
    ]
    prev_all = pl.concat(prev_frames).select(
        *POSITION_KEY,
        pl.col("trade_date").alias("prev_date"),
        pl.lit(True).alias("_prev_exists"),
        *[pl.col(c).alias(f"prev_{c}") for c in prev_cols],
    )

    rows = (
        cur.lazy()
        .join(window.lazy().select("trade_date", "prev_date", "prev_cut"), on="trade_date", how="left")
        .join(prev_all.lazy(), on=[*POSITION_KEY, "prev_date"], how="left")
        .with_columns(
            pl.col("_prev_exists").fill_null(False),
            # D-1 state known: either D-1 is in the range or previous_eod was given
            ((pl.col("prev_date") != first_prev) | pl.lit(previous_eod is not None)).alias("_prev_known"),
        )
    )
    u_now, u_now_source = _unrealized()
    u_prev, _ = _unrealized("prev_")
    opened_today = ~pl.col("_prev_exists") & pl.col("_prev_known")
    rows = rows.with_columns(
        u_now.alias("unrealized_pnl_chosen"),
        u_now_source.alias("unrealized_source"),
        pl.when(pl.col("_prev_exists")).then(u_prev).when(opened_today).then(0.0).otherwise(None).alias("_u_prev"),
        pl.when(pl.col("_prev_exists"))
        .then(pl.col("prev_position"))
        .when(opened_today)
        .then(0.0)
        .otherwise(None)
        .alias("_prev_position"),
        (~pl.col("_prev_exists") & ~pl.col("_prev_known")).alias("is_baseline"),
    )
    portfolio_fresh = (pl.col("portfolio_at") > pl.col("prev_cut")).fill_null(False)
    single_fresh = (pl.col("pnl_single_at") > pl.col("prev_cut")).fill_null(False)
    # Trades (and expiries) change the quantity: a realized figure is complete for D only if its stream reported at
    # or after D's last quantity change. position_changed_at null = unknown (an EOD written before the column).
    changed_at = pl.col("position_changed_at")
    traded = changed_at > pl.col("prev_cut")
    no_trade = (changed_at <= pl.col("prev_cut")).fill_null(False)
    portfolio_realized = pl.col("realized_pnl").fill_null(0.0)
    portfolio_ok = portfolio_fresh & (
        pl.when(traded.is_null())
        .then(True)
        .when(traded)
        .then((pl.col("portfolio_at") >= changed_at).fill_null(False))
        # no trade in D: a non-zero figure is the previous session's (IB resets it at 20:30 ET, after the cut; or a
        # row sent before the cut was stamped after it), not D's
        .otherwise(portfolio_realized == 0.0)
    )
    ib_prev_realized = (
        pl.when(pl.col("_prev_exists"))
        .then(pl.col("prev_ib_realized_pnl"))
        .when(opened_today)
        .then(0.0)
        .otherwise(None)
    )
    single_complete_now = ~traded.fill_null(False) | (pl.col("pnl_single_at") >= changed_at).fill_null(False)
    single_complete_prev = (
        opened_today
        | pl.col("prev_position_changed_at").is_null()
        | (pl.col("prev_pnl_single_at") >= pl.col("prev_position_changed_at")).fill_null(False)
    )
    single_realized = pl.col("ib_realized_pnl") - ib_prev_realized
    single_ok = single_realized.is_not_null() & single_complete_now & single_complete_prev
    realized = (
        pl.when(pl.col("is_expired"))
        .then(pl.struct(v=pl.col("_u_prev"), s=pl.lit("expiry")))
        .when(portfolio_ok)
        .then(pl.struct(v=portfolio_realized, s=pl.lit("portfolio")))
        .when(single_ok)
        .then(pl.struct(v=single_realized, s=pl.lit("pnl_single")))
        .when(pl.col("carried_forward"))
        .then(pl.struct(v=pl.lit(0.0), s=pl.lit("no_update")))
        .when(no_trade)
        .then(pl.struct(v=pl.lit(0.0), s=pl.lit("no_trade")))
        .otherwise(pl.struct(v=pl.lit(None, dtype=pl.Float64), s=pl.lit(None, dtype=pl.String)))
    )
    rows = rows.with_columns(realized.struct.field("v").alias("_realized"), realized.struct.field("s").alias("_rsrc"))
    change = pl.col("unrealized_pnl_chosen") - pl.col("_u_prev")
    ib_daily = pl.when(single_fresh).then(pl.col("ib_daily_pnl")).otherwise(None)
    out = rows.with_columns(
        pl.col("_prev_position").alias("prev_position"),
        pl.col("unrealized_pnl_chosen").alias("unrealized_pnl"),
        pl.col("_u_prev").alias("prev_unrealized_pnl"),
        change.alias("unrealized_change"),
        pl.col("_realized").alias("realized_pnl"),
        pl.col("_rsrc").alias("realized_source"),
        (change + pl.col("_realized")).alias("_computed"),
        ib_daily.alias("ib_daily_pnl"),
    ).with_columns(
        # a baseline carries IB's own daily PnL (flagged), never a null that hides a real figure
        pl.when(pl.col("_computed").is_not_null())
        .then(pl.lit("average_cost"))
        .when(pl.col("is_baseline") & pl.col("ib_daily_pnl").is_not_null())
        .then(pl.lit("ib_daily"))
        .alias("pnl_source"),
        pl.coalesce(pl.col("_computed"), pl.when(pl.col("is_baseline")).then(pl.col("ib_daily_pnl"))).alias("pnl"),
        # a carried figure compared with itself proves nothing: no difference for it
        (pl.col("_computed") - pl.col("ib_daily_pnl")).alias("pnl_minus_ib"),
    )
    return (
        out.select([pl.col(c).cast(t) for c, t in DAILY_PNL_SCHEMA.items()])
        .collect()
        .sort(["trade_date", "account", "con_id"])
    )


def _pnl_aggregations() -> list[pl.Expr]:
    return [
        pl.len().alias("positions"),
        strict_sum("pnl").alias("pnl"),
        known_sum("pnl").alias("pnl_known"),
        pl.col("pnl").null_count().alias("unknown_pnl_positions"),
        pl.col("is_baseline").sum().alias("baseline_positions"),
        strict_sum("unrealized_change").alias("unrealized_change"),
        strict_sum("realized_pnl").alias("realized_pnl"),
        known_sum("ib_daily_pnl").alias("ib_daily_pnl"),
        known_sum("pnl_minus_ib").alias("pnl_minus_ib"),
    ]


def pnl_by_underlying(daily: pl.DataFrame) -> pl.DataFrame:
    """Daily PnL per trade_date x underlying (IB's contract symbol) x currency.

    ``pnl`` is null when any position's pnl is unknown (baseline or unknown realized); ``pnl_known`` sums the known
    ones and ``unknown_pnl_positions`` counts the others. ``ib_daily_pnl`` / ``pnl_minus_ib`` sum where IB gave one.
    """
    require_columns(daily, DAILY_PNL_SCHEMA, "daily_pnl")
    return (
        daily.lazy()
        .group_by("trade_date", pl.col("symbol").alias("underlying"), "currency")
        .agg(_pnl_aggregations())
        .collect()
        .sort(["trade_date", "underlying", "currency"])
    )


def pnl_by_account(daily: pl.DataFrame, fx_rates: pl.DataFrame | None = None) -> pl.DataFrame:
    """Daily PnL per trade_date x account x currency, in the account's base currency where the FX rate is known.

    ``fx_rates`` (optional): account, currency, base_currency, fx_rate (base per unit), optionally trade_date.
    ``is_base_currency``: true = converted/base, false = rate unknown (kept in its own currency, own row), null = no
    FX table given. Currencies are never added together. Same columns as :func:`pnl_by_underlying` otherwise.
    """
    require_columns(daily, DAILY_PNL_SCHEMA, "daily_pnl")
    converted = to_reporting_currency(daily, PNL_AMOUNTS, fx_rates)
    return (
        converted.lazy()
        .group_by("trade_date", "account", "currency", "is_base_currency")
        .agg(_pnl_aggregations())
        .collect()
        .sort(["trade_date", "account", "currency"])
    )
