"""The book's side of the daily run: executions per session and ``book_pnl`` (the statement MTM from the book),
read from and written to the lake, and the comparison behind its blocking check. No Dagster import here."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import date

import polars as pl

from v6_assets import sessions
from v6_assets.analytics.book_executions import book_executions
from v6_assets.analytics.book_pnl import book_pnl, eod_marks
from v6_assets.contracts.lifecycle import LIFECYCLE_EVENTS
from v6_assets.contracts.money import amounts_disagree_expr
from v6_assets.contracts.tables import BOOK_PNL, DAILY_PNL, EOD_POSITIONS, EXECUTIONS, TRADE_DATE
from v6_assets.lake import Lake, OverwriteResult
from v6_assets.pipeline.daily import MissingUpstreamError, previous_eod_state, require_eod


def session_executions(lake: Lake, days: Sequence[date]) -> pl.DataFrame:
    """The executions booked in ``days`` (latest revision of each, commission once known), ``trade_date`` = the
    session of the execution time. Partitions are by arrival: a fill re-requested after a reconnect may arrive in the
    next session, so that one is read too."""
    if not lake.exists(EXECUTIONS):
        return pl.DataFrame(schema={**EXECUTIONS.polars_schema, "exec_base": pl.String, "revision": pl.Int64})
    last = sessions.next_session(days[-1])
    stream = lake.scan(EXECUTIONS.name).filter((pl.col(TRADE_DATE) >= days[0]) & (pl.col(TRADE_DATE) <= last)).collect()
    booked = book_executions(stream).with_columns(sessions.trade_date_expr("exec_time").alias(TRADE_DATE))
    return booked.filter(pl.col(TRADE_DATE).is_in(list(days)))


def lifecycle_bookings(lake: Lake, days: Sequence[date]) -> pl.DataFrame:
    """IB's bookings of expiries, exercises and assignments in ``days`` (position_events' lifecycle rows, computed
    from the same EOD and executions): trade_date, account, con_id, quantity, price."""
    from v6_assets.pipeline.position_events import compute_position_events  # it builds on this module

    events, _ = compute_position_events(lake, days)
    return events.filter(pl.col("event").is_in(LIFECYCLE_EVENTS)).select(
        TRADE_DATE, "account", "con_id", "quantity", "price"
    )


def _previous_marks(lake: Lake, days: Sequence[date], eod: pl.DataFrame) -> pl.DataFrame:
    """mark_{D-1} keyed by D: the run's own EOD for all but the first session, the stored/derived one before it."""
    previous = previous_eod_state(lake, days[0])
    frames = [previous, eod] if previous is not None and previous.height else [eod]
    marks = eod_marks(pl.concat(frames, how="diagonal_relaxed"))
    following = {sessions.previous_session(d): d for d in days}
    return (
        marks.filter(pl.col(TRADE_DATE).is_in(list(following)))
        .with_columns(pl.col(TRADE_DATE).replace_strict(following, return_dtype=pl.Date))
        .select(TRADE_DATE, "account", "con_id", pl.col("mark").alias("prev_mark"))
    )


@dataclass(frozen=True)
class BookPnlRun:
    frame: pl.DataFrame
    written: OverwriteResult
    executions: int


def refresh_book_pnl(lake: Lake, days: Sequence[date], eod_computed: Collection[date] | None = None) -> BookPnlRun:
    """book_pnl of ``days`` from the stored eod_positions (marks of D and D-1), daily_pnl and the executions, with one
    partition overwrite. daily_pnl of a session with EOD rows but none of its own was never computed: the run fails."""
    require_eod(lake, BOOK_PNL.name, days, eod_computed)
    eod = lake.read_sessions(EOD_POSITIONS, days)
    daily = lake.read_sessions(DAILY_PNL, days)
    missing = sorted(set(eod[TRADE_DATE].unique().to_list()) - set(daily[TRADE_DATE].unique().to_list()))
    if missing:
        raise MissingUpstreamError(
            f"{BOOK_PNL.name} cannot be computed: {DAILY_PNL.name} for {', '.join(map(str, missing))} was never "
            f"computed: materialize it first. Nothing was written."
        )
    executions = session_executions(lake, days)
    frame = book_pnl(
        daily, eod_marks(eod), _previous_marks(lake, days, eod), executions, lifecycle_bookings(lake, days)
    )
    return BookPnlRun(frame=frame, written=lake.overwrite_sessions(BOOK_PNL, frame, days), executions=executions.height)


@dataclass(frozen=True)
class BookComparison:
    """statement_pnl against daily_pnl's pnl: ``compared`` rows where both exist, ``off`` where they differ by more
    than ``tolerance``, ``unexplained`` rows without a statement figure (with their reason)."""

    compared: int
    off: pl.DataFrame
    unexplained: pl.DataFrame
    open_positions: int

    @property
    def passed(self) -> bool:
        return self.off.height == 0 and not (self.compared == 0 and self.open_positions > 0)


def statement_against_pnl(lake: Lake, days: Sequence[date], tolerance: float) -> BookComparison:
    frame = lake.read_sessions(BOOK_PNL, days)
    both = frame.filter(pl.col("statement_pnl").is_not_null() & pl.col("pnl").is_not_null())
    off = both.filter(amounts_disagree_expr(pl.col("statement_pnl"), pl.col("pnl"), tolerance))
    columns = [TRADE_DATE, "account", "con_id", "statement_pnl", "pnl", "statement_minus_pnl", "reason"]
    unexplained = frame.filter(pl.col("statement_pnl").is_null()).select(columns)
    open_positions = frame.filter(pl.col("position") != 0).height
    return BookComparison(both.height, off.select(columns), unexplained, open_positions)
