"""Connection gaps (``stream_health``) and the daily rows they affect. Pure polars, no I/O.

``health_intervals`` collapses the stream_health rows (each interval written when it begins and when it ends) into
one row per interval; an interval never ended (the streamer stopped, or it goes on) ends where the stream's next
interval begins, else ``now``. ``flag_gaps`` gives each daily row the gaps, in words, that overlap the time between
its oldest value (mark, PnL single, greeks) and its session's EOD cut: what happened while those values could not
be refreshed ("competing live session 03-04 14:02-16:15 ET: no marks, PnL or greeks"). Null: nothing was missed.
"""

from __future__ import annotations

from datetime import date, datetime

import polars as pl

from v6_assets import sessions
from v6_assets.contracts.health import describe_state
from v6_assets.contracts.streams import GAP_STATES

HEALTH_GAP = "health_gap"
# The value times of an EOD row: the oldest one tells since when a value may have been held back.
VALUE_TIMES = ("portfolio_at", "pnl_single_at", "greeks_at")
_SEP = "; "


def health_intervals(rows: pl.DataFrame, now: datetime) -> pl.DataFrame:
    """One row per (stream_id, state, started_at): its latest end, else the next interval's start, else ``now``."""
    if rows.height == 0:
        return pl.DataFrame(
            schema={
                "stream_id": pl.String,
                "state": pl.String,
                "started_at": pl.Datetime("us", "UTC"),
                "ended_at": pl.Datetime("us", "UTC"),
                "detail": pl.String,
                "open": pl.Boolean,
            }
        )
    intervals = (
        rows.sort("started_at", "received_at")
        .group_by("stream_id", "state", "started_at", maintain_order=True)
        .agg(pl.col("ended_at").drop_nulls().max(), pl.col("detail").first())
        .sort("stream_id", "started_at")
    )
    next_start = pl.col("started_at").shift(-1).over("stream_id")
    return intervals.with_columns(
        pl.col("ended_at").is_null().alias("open"),
        pl.coalesce("ended_at", next_start, pl.lit(now).cast(pl.Datetime("us", "UTC"))).alias("ended_at"),
    )


def gap_intervals(intervals: pl.DataFrame) -> pl.DataFrame:
    """The intervals in which marks, PnL and greeks did not flow, with their words."""
    gaps = intervals.filter(pl.col("state").is_in(GAP_STATES) & (pl.col("ended_at") > pl.col("started_at")))
    words = [
        describe_state(state, start, None if still_open else end)
        for state, start, end, still_open in gaps.select("state", "started_at", "ended_at", "open").iter_rows()
    ]
    return gaps.with_columns(pl.Series("words", words, dtype=pl.String))


def flag_gaps(frame: pl.DataFrame, gaps: pl.DataFrame, times: tuple[str, ...] = VALUE_TIMES) -> pl.DataFrame:
    """``frame`` (daily rows with ``trade_date`` and some of ``times``) with ``health_gap`` filled: the words of every
    gap overlapping (oldest value time, the session's cut]; a row without any value time is checked over its whole
    session (previous cut, cut]. Rows keep their order; an existing ``health_gap`` column is replaced."""
    base = frame.drop(HEALTH_GAP, strict=False).with_row_index("_row")
    if base.height == 0 or gaps.height == 0:
        return (
            base.drop("_row")
            .with_columns(pl.lit(None, dtype=pl.String).alias(HEALTH_GAP))
            .select(frame.columns if HEALTH_GAP in frame.columns else [*frame.columns, HEALTH_GAP])
        )
    days: list[date] = base["trade_date"].unique().to_list()
    cuts = pl.DataFrame(
        {
            "trade_date": days,
            "_cut": [sessions.eod_cut(d) for d in days],
            "_prev_cut": [sessions.eod_cut(sessions.previous_session(d)) for d in days],
        },
        schema={"trade_date": pl.Date, "_cut": pl.Datetime("us", "UTC"), "_prev_cut": pl.Datetime("us", "UTC")},
    )
    present = [c for c in times if c in base.columns]
    oldest = pl.min_horizontal([pl.col(c) for c in present]) if present else pl.lit(None)
    spans = base.select("_row", "trade_date", oldest.cast(pl.Datetime("us", "UTC")).alias("_from")).join(
        cuts, on="trade_date", how="left"
    )
    spans = spans.with_columns(pl.coalesce("_from", "_prev_cut").alias("_from"))
    hits = (
        spans.join(gaps.select("started_at", "ended_at", "words"), how="cross")
        .filter((pl.col("started_at") < pl.col("_cut")) & (pl.col("ended_at") > pl.col("_from")))
        .sort("_row", "started_at")
        .group_by("_row", maintain_order=True)
        .agg(pl.col("words").unique(maintain_order=True).str.join(_SEP).alias(HEALTH_GAP))
    )
    out = base.join(hits, on="_row", how="left").sort("_row").drop("_row")
    return out.select(frame.columns if HEALTH_GAP in frame.columns else [*frame.columns, HEALTH_GAP])


def carry_gaps(daily: pl.DataFrame, eod: pl.DataFrame) -> pl.DataFrame:
    """``daily`` (keyed by trade_date, account, con_id) with the ``health_gap`` of its EOD row."""
    keys = ["trade_date", "account", "con_id"]
    if HEALTH_GAP not in eod.columns:
        return daily
    flags = eod.select(*keys, pl.col(HEALTH_GAP).alias("_gap"))
    out = daily.join(flags, on=keys, how="left", maintain_order="left")
    return out.with_columns(pl.col("_gap").alias(HEALTH_GAP)).drop("_gap").select(daily.columns)
