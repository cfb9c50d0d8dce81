"""The daily computation: eod_positions, daily_pnl and exposure of a run's sessions, read from and written to the lake.

Dagster-free (``v6_assets.defs.assets`` declares the assets and calls these). A run covers one session or a contiguous
range (a single-run backfill); each table is written with ONE partition overwrite of the whole range. Updates are
read in chunks of sessions (``V6_SESSIONS_PER_CHUNK``, default 5) so memory is bounded whatever the range; the EOD of
the session before each chunk is carried into it. The EOD of the session before the run is the stored one when
present, else derived from the updates (from the first session of the stream); it is "none" (a baseline) only when
the stream had not started by then, and empty (flat, a known state) when nothing was held at its cut.

No green on nothing: daily_pnl and exposure of session D are computed from the eod_positions of D, never from the
updates behind its back. When the caller knows which eod_positions sessions were computed (Dagster's
materializations), a session that was never computed and holds no rows makes the run fail with
``MissingUpstreamError``, whose message says what to materialize first.
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import date

import polars as pl

from v6_assets import analytics, sessions
from v6_assets.analytics.health import carry_gaps
from v6_assets.contracts.tables import (
    DAILY_PNL,
    EOD_POSITIONS,
    EXPOSURE,
    GREEKS_UPDATES,
    POSITION_UPDATES,
    ROLLUP_ACCOUNT,
    ROLLUP_COLUMN,
    ROLLUP_DETAIL,
    ROLLUP_UNDERLYING,
    TRADE_DATE,
)
from v6_assets.lake import Lake, OverwriteResult
from v6_assets.pipeline.health import flag_eod
from v6_assets.pipeline.settings import PipelineEnvironment


def sessions_per_chunk() -> int:
    """Sessions computed together in a range run (``V6_SESSIONS_PER_CHUNK``, default 5): bounds the updates in memory
    (about 5 x 200,000 rows) whatever the length of the range; the previous EOD is carried from chunk to chunk."""
    return PipelineEnvironment.read().sessions_per_chunk


def session_chunks(days: Sequence[date], size: int | None = None) -> list[list[date]]:
    """``days`` (oldest first) in consecutive chunks of at most ``size`` sessions."""
    n = size or sessions_per_chunk()
    return [list(days[i : i + n]) for i in range(0, len(days), n)]


def _updates_of(scan: pl.LazyFrame, first: date, last: date) -> pl.LazyFrame:
    """Stream rows with trade_date in [first, last], lazily: only those partitions are read."""
    return scan.filter((pl.col(TRADE_DATE) >= first) & (pl.col(TRADE_DATE) <= last))


def first_stream_session(lake: Lake, up_to: date) -> date | None:
    """The oldest session with position updates at or before ``up_to`` (None: the stream had not started)."""
    frame = lake.scan(POSITION_UPDATES.name).filter(pl.col(TRADE_DATE) <= up_to).select(pl.col(TRADE_DATE).min())
    value = frame.collect().item()
    return value if isinstance(value, date) else None


def stream_started_by(lake: Lake, session: date) -> bool:
    """True when the position stream had reported anything at or before ``session``'s cut (D-1 state is known)."""
    return first_stream_session(lake, session) is not None


def stored_eod(lake: Lake, session: date) -> pl.DataFrame | None:
    """The stored EOD rows of ``session``, None when the partition holds no rows (never computed, or flat)."""
    frame = lake.read_sessions(EOD_POSITIONS, [session])
    return frame if frame.height else None


def _eod_of(frame: pl.DataFrame, session: date) -> pl.DataFrame | None:
    rows = frame.filter(pl.col(TRADE_DATE) == session)
    return rows if rows.height else None


def eod_chunks(lake: Lake, days: Sequence[date], previous: pl.DataFrame | None) -> Iterator[pl.DataFrame]:
    """The EOD of the contiguous sessions ``days``, one frame per chunk of sessions, each chunk reading only its own
    trade_date partitions and starting from the EOD of the session before it (``previous`` for the first chunk,
    None when there is no open position to carry). Memory: one chunk of updates, whatever the range."""
    pu, gu = lake.scan(POSITION_UPDATES.name), lake.scan(GREEKS_UPDATES.name)
    for chunk in session_chunks(days):
        frame = analytics.eod_positions(
            _updates_of(pu, chunk[0], chunk[-1]), _updates_of(gu, chunk[0], chunk[-1]), chunk, previous
        )
        previous = _eod_of(frame, chunk[-1])
        yield frame


def derived_eod(lake: Lake, session: date) -> pl.DataFrame | None:
    """The EOD of ``session`` computed from the updates (chunk by chunk from the first session of the stream), None
    when the stream had not started by then or nothing was held at its cut."""
    first = first_stream_session(lake, session)
    if first is None:
        return None
    previous: pl.DataFrame | None = None
    for frame in eod_chunks(lake, sessions.sessions_between(first, session), None):
        previous = frame  # only the last chunk's last session is kept
    return _eod_of(previous, session) if previous is not None else None


def previous_eod_state(lake: Lake, first: date) -> pl.DataFrame | None:
    """The EOD of the session before ``first`` for carry-forward and U_{D-1}: stored when present, else derived
    from the updates (an empty frame when nothing was held: flat is a known state); None only when the stream had not
    started by then (the first session ever is a baseline)."""
    return previous_eod_with_origin(lake, first)[0]


def previous_eod_with_origin(lake: Lake, first: date) -> tuple[pl.DataFrame | None, str]:
    """``previous_eod_state`` and a sentence saying where it came from (shown in the run's metadata)."""
    prev = sessions.previous_session(first)
    if not stream_started_by(lake, prev):
        return None, f"none: the stream had not started by {prev} (the first session of the stream is a baseline)"
    stored = stored_eod(lake, prev)
    if stored is not None:
        return stored, f"stored eod_positions of {prev}"
    derived = derived_eod(lake, prev)
    if derived is not None:
        return derived, f"eod_positions of {prev} derived from the updates (not stored)"
    return pl.DataFrame(schema=EOD_POSITIONS.polars_schema), f"flat: no position held at the cut of {prev}"


class MissingUpstreamError(RuntimeError):
    """A daily table was asked for sessions whose upstream was never computed (the run must fail, not write 0)."""


def missing_sessions(lake: Lake, days: Sequence[date], computed: Collection[date] | None) -> list[date]:
    """Sessions of ``days`` whose eod_positions were never computed: not in ``computed`` (None: unknown, nothing is
    missing) and without stored rows (rows in the lake are a computed EOD whatever Dagster remembers)."""
    if computed is None:
        return []
    absent = [d for d in days if d not in computed]
    if not absent:
        return []
    present = lake.read_sessions(EOD_POSITIONS, absent)[TRADE_DATE].unique().to_list()
    return [d for d in absent if d not in set(present)]


def missing_upstream_message(table: str, missing: Sequence[date], days: Sequence[date]) -> str:
    """What is missing and what to do, e.g. "eod_positions for 2026-11-17 was never computed: materialize it first
    (or run eod_positions and daily_pnl together for 2026-11-17..2026-11-19)"."""
    if len(missing) == 1:
        what = f"{EOD_POSITIONS.name} for {missing[0]} was never computed"
        it = "it"
    else:
        shown = ", ".join(d.isoformat() for d in missing[:5]) + (", ..." if len(missing) > 5 else "")
        what = f"{EOD_POSITIONS.name} for {len(missing)} sessions ({shown}) was never computed"
        it = "them"
    span = f"{missing[0]}" if missing[0] == days[-1] else f"{missing[0]}..{days[-1]}"
    return (
        f"{table} cannot be computed: {what}: materialize {it} first (or run {EOD_POSITIONS.name} and {table} "
        f"together for {span}). Nothing was written."
    )


def require_eod(lake: Lake, table: str, days: Sequence[date], computed: Collection[date] | None) -> None:
    """Raise ``MissingUpstreamError`` when an eod_positions session of ``days`` was never computed."""
    missing = missing_sessions(lake, days, computed)
    if missing:
        raise MissingUpstreamError(missing_upstream_message(table, missing, days))


def previous_eod_by_session(days: Sequence[date], first_origin: str) -> dict[date, str]:
    """Where each session's D-1 state came from: ``first_origin`` for the first, the run's own EOD for the rest."""
    out = {days[0]: first_origin}
    for prev, day in itertools.pairwise(days):
        out[day] = f"eod_positions of {prev} (this run)"
    return out


@dataclass(frozen=True)
class EodRun:
    """What ``refresh_eod_positions`` computed and wrote."""

    frame: pl.DataFrame
    written: OverwriteResult
    chunks: int
    previous_eod: str  # where the EOD of the session before the run came from


def refresh_eod_positions(lake: Lake, days: Sequence[date]) -> EodRun:
    """Compute eod_positions of the contiguous sessions ``days`` (oldest first) chunk by chunk and write them with one
    partition overwrite. Positions without updates are carried from the previous session's EOD."""
    previous, origin = previous_eod_with_origin(lake, days[0])
    if previous is not None and not previous.height:
        previous = None  # flat: nothing to carry
    # Outputs (positions x sessions) are small: the whole range is still written with ONE partition overwrite.
    parts = list(eod_chunks(lake, days, previous))
    frame = pl.concat(parts) if len(parts) > 1 else parts[0]
    frame = flag_eod(lake, frame)  # marks, PnL and greeks held back by a connection gap
    written = lake.overwrite_sessions(EOD_POSITIONS, frame, days)
    return EodRun(frame=frame, written=written, chunks=len(parts), previous_eod=origin)


@dataclass(frozen=True)
class DailyPnlRun:
    """What ``refresh_daily_pnl`` computed and wrote."""

    frame: pl.DataFrame
    written: OverwriteResult
    previous_known: bool  # False: the stream started on the first session (a baseline)
    previous_eod: dict[date, str]  # per session: where its D-1 state came from


def refresh_daily_pnl(lake: Lake, days: Sequence[date], eod_computed: Collection[date] | None = None) -> DailyPnlRun:
    """daily_pnl of ``days`` from the stored eod_positions of D and D-1 (the previous NYSE session), written with one
    partition overwrite. ``eod_computed``: the eod_positions sessions known to be computed (a session outside it and
    without rows fails the run, see ``require_eod``); None: not known, the stored rows are taken as they are."""
    require_eod(lake, DAILY_PNL.name, days, eod_computed)
    eod = lake.read_sessions(EOD_POSITIONS, days)
    previous, origin = previous_eod_with_origin(lake, days[0])
    frame = carry_gaps(analytics.daily_pnl(eod, previous, list(days)), eod)
    written = lake.overwrite_sessions(DAILY_PNL, frame, days)
    return DailyPnlRun(
        frame=frame,
        written=written,
        previous_known=previous is not None,
        previous_eod=previous_eod_by_session(days, origin),
    )


def exposure_with_rollups(eod: pl.DataFrame) -> pl.DataFrame:
    """Detail rows (account x underlying x expiry) plus roll-ups by underlying and by account (``rollup`` column)."""
    detail = analytics.exposure(eod).with_columns(pl.lit(ROLLUP_DETAIL).alias(ROLLUP_COLUMN))
    by_underlying = analytics.exposure_by_underlying(detail.drop(ROLLUP_COLUMN)).with_columns(
        pl.lit(ROLLUP_UNDERLYING).alias(ROLLUP_COLUMN)
    )
    by_account = analytics.exposure_by_account(detail.drop(ROLLUP_COLUMN)).drop("is_base_currency", strict=False)
    by_account = by_account.with_columns(pl.lit(ROLLUP_ACCOUNT).alias(ROLLUP_COLUMN))
    columns = list(EXPOSURE.column_names)
    schema = EXPOSURE.polars_schema
    parts = []
    for part in (detail, by_underlying, by_account):
        missing = [pl.lit(None, dtype=schema[c]).alias(c) for c in columns if c not in part.columns]
        parts.append(part.with_columns(missing).select([pl.col(c).cast(schema[c]) for c in columns]))
    return pl.concat(parts)


@dataclass(frozen=True)
class ExposureRun:
    """What ``refresh_exposure`` computed and wrote."""

    frame: pl.DataFrame
    written: OverwriteResult


def refresh_exposure(lake: Lake, days: Sequence[date], eod_computed: Collection[date] | None = None) -> ExposureRun:
    """exposure of ``days`` (detail and roll-up rows) from the stored eod_positions, one partition overwrite
    (``eod_computed`` as in ``refresh_daily_pnl``)."""
    require_eod(lake, EXPOSURE.name, days, eod_computed)
    frame = exposure_with_rollups(lake.read_sessions(EOD_POSITIONS, days))
    return ExposureRun(frame=frame, written=lake.overwrite_sessions(EXPOSURE, frame, days))
