"""Drain the durable spool into the streamed Delta tables, exactly once. No Dagster import here.

The Delta log is the record of what was ingested, not a Dagster cursor: each append carries the Delta ``txn``
``(stream_id, version)`` where ``version`` is the highest spool offset of the batch, and rows at or below the
committed version are dropped on replay (``MicroBatchWriter(offset_column="spool_offset")``). The spool is
acknowledged only after EVERY streamed table holds every row of the batch. So:

- a crash between the Delta commit and the ack re-reads the batch, the writer drops what is already committed and
  the ack catches up;
- a UI "Preview tick" (which runs the sensor function for real) ingests and acks like a normal tick: the next tick
  finds nothing left to write;
- a reloaded process (a new code server beside the old one) re-reads from the ack; txn fencing rejects a concurrent
  duplicate commit of the same version.

The sensor (``v6_assets.defs.sensors``) calls ``drain_spool_to_lake`` every tick within ``DrainLimits``; the demo's
history seeding and the benchmarks call it directly.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import polars as pl

from v6_assets.contracts.clock import utc_now
from v6_assets.failpoints import failpoint
from v6_assets.ib.spool import Spool
from v6_assets.lake import (
    ACCOUNT_VALUES,
    EXECUTIONS,
    GREEKS_UPDATES,
    POSITION_UPDATES,
    TRADE_DATE,
    AppendResult,
    Lake,
    MicroBatchWriter,
)
from v6_assets.pipeline.settings import PipelineEnvironment
from v6_assets.sessions import trade_date_expr

DEFAULT_BATCH_ROWS = 5_000
DEFAULT_MAX_ROWS = 50_000
STREAMED_TABLES: tuple[str, ...] = (POSITION_UPDATES.name, GREEKS_UPDATES.name, EXECUTIONS.name, ACCOUNT_VALUES.name)


@dataclass(frozen=True)
class DrainLimits:
    """How much one drain may do: a time budget, rows read in all, rows per batch (one Delta commit per table)."""

    budget_s: float = 30.0
    max_rows: int = 200_000
    batch_rows: int = 20_000

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DrainLimits:
        """From ``V6_SENSOR_BUDGET_S``, ``V6_SENSOR_MAX_ROWS`` and ``V6_SENSOR_BATCH_ROWS`` (the sensor's per tick)."""
        env = PipelineEnvironment.read(environ)
        return cls(budget_s=env.sensor_budget_s, max_rows=env.sensor_max_rows, batch_rows=env.sensor_batch_rows)


class DrainError(RuntimeError):
    """The spool and the lake disagree in a way that would lose or duplicate data; nothing was written."""


RECOVER_COMMAND = "python -m v6_assets.pipeline.recover_spool"


class SpoolBehindLakeError(DrainError):
    """The spool's offsets are behind the lake's committed txn version (it was reset or replaced): it is fenced."""


@dataclass(frozen=True)
class TableIngest:
    """What one drain did to one streamed table."""

    table: str
    rows_written: int = 0
    rows_skipped: int = 0  # already committed by an earlier (crashed or concurrent) drain
    commits: int = 0
    rows_per_session: Mapping[date, int] = field(default_factory=dict)
    min_offset: int | None = None
    max_offset: int | None = None
    committed_version: int | None = None  # Delta txn version for the stream after the drain
    table_version: int | None = None  # Delta table version after the drain
    last_received_at: datetime | None = None

    def merged(self, result: AppendResult, written: pl.DataFrame) -> TableIngest:
        per_session = dict(self.rows_per_session)
        if written.height:
            counts = written.group_by(TRADE_DATE).len()
            for session, n in zip(counts[TRADE_DATE].to_list(), counts["len"].to_list(), strict=True):
                per_session[session] = per_session.get(session, 0) + int(n)
        offsets = written["spool_offset"] if written.height else None
        received = written["received_at"].max() if written.height else None
        return TableIngest(
            table=self.table,
            rows_written=self.rows_written + result.rows_written,
            rows_skipped=self.rows_skipped + result.rows_skipped,
            commits=self.commits + (1 if result.committed else 0),
            rows_per_session=per_session,
            min_offset=_lowest(self.min_offset, None if offsets is None else int(offsets.min())),  # type: ignore[arg-type]
            max_offset=_highest(self.max_offset, None if offsets is None else int(offsets.max())),  # type: ignore[arg-type]
            committed_version=result.new_version if result.new_version is not None else self.committed_version,
            table_version=result.table_version if result.table_version is not None else self.table_version,
            last_received_at=_latest_time(self.last_received_at, received),  # type: ignore[arg-type]
        )


@dataclass(frozen=True)
class DrainResult:
    """Outcome of one ``drain_spool_to_lake`` call."""

    stream_id: str
    batches: int
    rows_read: int
    acked_before: int
    acked_offset: int  # the spool is acknowledged up to here (both tables hold every row at or below it)
    spool_last_offset: int
    backlog: int  # unacknowledged records left in the spool
    stopped_by: str  # "drained", "max_rows" or "deadline"
    tables: Mapping[str, TableIngest]
    duration_s: float

    @property
    def rows_written(self) -> int:
        return sum(t.rows_written for t in self.tables.values())

    @property
    def sessions(self) -> list[date]:
        return sorted({d for t in self.tables.values() for d in t.rows_per_session})

    def lag_s(self, now: datetime | None = None) -> float | None:
        """Seconds between the newest event written and ``now`` (None when nothing was written)."""
        stamps = [t.last_received_at for t in self.tables.values() if t.last_received_at is not None]
        if not stamps:
            return None
        return max(0.0, ((now or utc_now()) - max(stamps)).total_seconds())

    def as_metadata(self) -> dict[str, Any]:
        return {
            "stream_id": self.stream_id,
            "batches": self.batches,
            "rows_read": self.rows_read,
            "rows_written": self.rows_written,
            "acked_before": self.acked_before,
            "acked_offset": self.acked_offset,
            "spool_last_offset": self.spool_last_offset,
            "backlog": self.backlog,
            "stopped_by": self.stopped_by,
            "duration_s": round(self.duration_s, 4),
        }


def _lowest(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _highest(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


def _latest_time(a: datetime | None, b: datetime | None) -> datetime | None:
    return b if a is None else a if b is None else max(a, b)


_WRITERS: dict[tuple[str, str], MicroBatchWriter] = {}
_WRITERS_LOCK = threading.Lock()
_DRAIN_LOCKS: dict[str, threading.Lock] = {}


def writer_for(lake: Lake, table: str) -> MicroBatchWriter:
    """The process-wide writer of ``table`` (keeps its Delta handle warm between sensor ticks)."""
    key = (lake.uri, table)
    with _WRITERS_LOCK:
        writer = _WRITERS.get(key)
        if writer is None or writer.lake != lake:
            writer = MicroBatchWriter(lake, table)
            _WRITERS[key] = writer
        return writer


def drain_lock(stream_id: str) -> threading.Lock:
    """One drain per stream at a time in this process (a UI preview tick may overlap a daemon tick)."""
    with _WRITERS_LOCK:
        return _DRAIN_LOCKS.setdefault(stream_id, threading.Lock())


def committed_offsets(lake: Lake, stream_id: str) -> dict[str, int | None]:
    """The Delta txn version committed for ``stream_id`` in each streamed table (None: never committed)."""
    return {table: writer_for(lake, table).committed_version(stream_id) for table in STREAMED_TABLES}


def _with_lake_columns(frame: pl.DataFrame, stream_id: str) -> pl.DataFrame:
    return frame.with_columns(
        pl.lit(stream_id, dtype=pl.String).alias("stream_id"),
        trade_date_expr("received_at").alias(TRADE_DATE),
    )


def drain_spool_to_lake(
    spool: Spool,
    lake: Lake,
    stream_id: str,
    *,
    max_rows: int = DEFAULT_MAX_ROWS,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    deadline: float | None = None,
) -> DrainResult:
    """Append unacknowledged spool records to ``position_updates`` / ``greeks_updates`` / ``executions`` exactly
    once, then ack.

    Reads in batches of at most ``batch_rows`` until the spool is empty, ``max_rows`` were read, or the monotonic
    clock passes ``deadline`` (checked before each batch, allowing for the last batch's duration). Raises
    ``DrainError`` when the lake has committed offsets this spool never assigned (the spool file was replaced): the
    writer would otherwise drop every new record as "already committed".
    """
    if not stream_id.strip():
        raise ValueError("stream_id must be a non-empty string")
    if max_rows < 1 or batch_rows < 1:
        raise ValueError(f"max_rows and batch_rows must be >= 1, got {max_rows} and {batch_rows}")
    started = time.monotonic()
    writers = {table: writer_for(lake, table) for table in STREAMED_TABLES}
    committed = {table: w.committed_version(stream_id) for table, w in writers.items()}
    spool_last = spool.last_offset()
    acked_before = spool.acked_offset()
    known = [v for v in committed.values() if v is not None]
    if known and max(known) > spool_last:
        message = (
            f"stream {stream_id}: the lake has committed spool offset {max(known)} but the spool at {spool.path} has "
            f"only assigned offsets up to {spool_last}; the spool was replaced or reset. It is fenced (the streamer "
            f"stops writing into it). Run `{RECOVER_COMMAND}` (with the stream's V6_* settings) to continue the "
            "offsets above the lake, or restore the old spool file."
        )
        # Stop filling a spool that can never be drained: every streamer's next append is refused (and counted).
        reason = f"behind the lake (committed {max(known)}, spool at {spool_last}): run {RECOVER_COMMAND}"
        if spool.fence(reason, unless_assigned=max(known)):
            raise SpoolBehindLakeError(message)
        spool_last = spool.last_offset()  # recovered meanwhile (a new epoch above the lake): drain it
    # Both tables hold everything up to the lower committed version: a crash after the commits but before the ack
    # leaves the ack behind; catch it up first (nothing is re-written).
    both_committed = min(v or 0 for v in committed.values())
    acked = acked_before
    if both_committed > acked:
        spool.ack(both_committed)
        acked = both_committed

    tables = {table: TableIngest(table) for table in STREAMED_TABLES}
    batches = rows_read = 0
    after = acked
    stopped_by = "drained"
    last_batch_s = 0.0
    while True:
        if rows_read >= max_rows:
            stopped_by = "max_rows"
            break
        if deadline is not None and time.monotonic() + last_batch_s > deadline:
            stopped_by = "deadline"
            break
        batch_started = time.monotonic()
        frames = spool.read_frames(after, min(batch_rows, max_rows - rows_read))
        if frames.last_offset is None:
            break
        version = frames.last_offset
        per_table = (
            (POSITION_UPDATES.name, frames.positions),
            (GREEKS_UPDATES.name, frames.greeks),
            (EXECUTIONS.name, frames.executions),
            (ACCOUNT_VALUES.name, frames.account_values),
        )
        for table, frame in per_table:
            if frame.height == 0:
                continue  # no commit for an empty batch: the ack below still covers it
            batch = _with_lake_columns(frame, stream_id)
            result = writers[table].append(batch, app_id=stream_id, version=version, offset_column="spool_offset")
            previous = result.previous_version
            written = batch if previous is None else batch.filter(pl.col("spool_offset") > previous)
            if not result.committed:
                written = written.clear()
            tables[table] = tables[table].merged(result, written)
            failpoint("after_delta_commit")
        spool.ack(version)
        acked = version
        after = version
        batches += 1
        rows_read += (
            frames.positions.height + frames.greeks.height + frames.executions.height + frames.account_values.height
        )
        last_batch_s = time.monotonic() - batch_started
    return DrainResult(
        stream_id=stream_id,
        batches=batches,
        rows_read=rows_read,
        acked_before=acked_before,
        acked_offset=acked,
        spool_last_offset=spool.last_offset(),
        backlog=spool.depth(),
        stopped_by=stopped_by,
        tables=tables,
        duration_s=time.monotonic() - started,
    )
