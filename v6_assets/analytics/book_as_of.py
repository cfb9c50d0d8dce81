"""The book as of any moment: the EOD computation with the cut moved to that moment.

``book_as_of(updates, greeks, as_of, previous_eod)`` is :func:`eod_positions` over the updates received at or before
``as_of`` (so every rule of the EOD state holds: carry-forward, flat rows, expiry, greeks forward-fill), with the
ages and the stale-mark flag measured from ``as_of`` instead of the 16:15 cut, and the session's PnL so far from
:func:`daily_pnl` (``pnl_so_far`` = U_asof - U_{D-1} + R_asof; ``ib_daily_pnl`` is IB's own figure at that moment).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import polars as pl

from v6_assets import sessions as nyse
from v6_assets.analytics._common import UTC_US, AnalyticsInputError, Frame, seconds_between
from v6_assets.analytics.eod import DEFAULT_STALE_MARK_AFTER, eod_positions
from v6_assets.analytics.pnl import daily_pnl

BOOK_EXTRA_COLUMNS = ("as_of", "pnl_so_far", "is_baseline")


def _received_by(frame: Frame, as_of: datetime) -> pl.DataFrame:
    lazy = frame.lazy() if isinstance(frame, pl.DataFrame) else frame
    return lazy.filter(pl.col("received_at") <= pl.lit(as_of, dtype=UTC_US)).collect()


def book_as_of(
    updates: Frame,
    greeks: Frame,
    as_of: datetime,
    previous_eod: pl.DataFrame | None,
    *,
    stale_mark_after: timedelta = DEFAULT_STALE_MARK_AFTER,
) -> pl.DataFrame:
    """Every (account, con_id) of the session ``as_of`` falls in, as it stood at ``as_of``.

    ``updates``/``greeks``: the session's streamed rows (rows after ``as_of`` are ignored); ``previous_eod``: the EOD
    of the session before (None: the stream started in this session, so its first state is a baseline and
    ``pnl_so_far`` is null). The EOD columns, plus ``as_of``, ``pnl_so_far`` and ``is_baseline``.
    """
    if as_of.tzinfo is None:
        raise AnalyticsInputError(f"as_of must carry a time zone, got {as_of.isoformat()}")
    as_of = as_of.astimezone(UTC)
    session = nyse.session_for(as_of)
    book = eod_positions(
        _received_by(updates, as_of),
        _received_by(greeks, as_of),
        [session],
        previous_eod,
        stale_mark_after=stale_mark_after,
    )
    moment = pl.lit(as_of, dtype=UTC_US)
    mark_age = seconds_between(moment, pl.max_horizontal("portfolio_at", "pnl_single_at"))
    book = book.with_columns(
        mark_age.alias("mark_age_s"),
        (mark_age.is_null() | (mark_age > stale_mark_after.total_seconds())).alias("is_stale_mark"),
        seconds_between(moment, pl.col("greeks_at")).alias("greeks_age_s"),
    )
    pnl = daily_pnl(book, previous_eod, [session]).select(
        "account", "con_id", pl.col("pnl").alias("pnl_so_far"), "is_baseline"
    )
    return book.join(pnl, on=["account", "con_id"], how="left").with_columns(moment.alias("as_of"))
