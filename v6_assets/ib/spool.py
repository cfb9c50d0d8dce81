"""The durable spool: every accepted event is on disk (SQLite, WAL) before it counts as received.

One global monotonic offset across both kinds (``AUTOINCREMENT``: an offset is never reused, even after garbage
collection). Consumers ``read(after_offset, limit)`` and ``ack(up_to_offset)``; acknowledged rows are deleted and
never re-delivered. Any process may open the same path (WAL + busy timeout): a reloaded process drains what the old
one wrote. ``synchronous=NORMAL`` makes a committed batch survive a crash of the process (kill -9); power loss
may lose the last batches (use ``synchronous="FULL"`` for that).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import operator
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import polars as pl

from v6_assets.contracts.streams import GREEKS_UPDATE_FIELDS, POSITION_UPDATE_FIELDS, GreeksUpdate, PositionUpdate
from v6_assets.contracts.tables import GREEKS_UPDATES, POSITION_UPDATES
from v6_assets.failpoints import failpoint

log = logging.getLogger(__name__)

SpoolKind = Literal["position", "greeks"]
SpoolEvent = PositionUpdate | GreeksUpdate

_POSITION_VALUES = operator.attrgetter(*POSITION_UPDATE_FIELDS)
_GREEKS_VALUES = operator.attrgetter(*GREEKS_UPDATE_FIELDS)
_POS_EXPIRY = POSITION_UPDATE_FIELDS.index("expiry")
_POS_RECEIVED = POSITION_UPDATE_FIELDS.index("received_at")
_GRK_RECEIVED = GREEKS_UPDATE_FIELDS.index("received_at")

# The events' columns as polars types, from the table contracts (the lake's extra columns left out).
POSITION_SCHEMA: dict[str, Any] = {c: POSITION_UPDATES.polars_schema[c] for c in POSITION_UPDATE_FIELDS}
GREEKS_SCHEMA: dict[str, Any] = {c: GREEKS_UPDATES.polars_schema[c] for c in GREEKS_UPDATE_FIELDS}


class SpoolError(RuntimeError):
    """The spool cannot take or give data (the message says why)."""


class SpoolFullError(SpoolError):
    """The disk (or the configured size cap) is full: nothing was written, nothing accepted was lost."""


@dataclass(frozen=True, slots=True)
class SpoolRecord:
    offset: int
    kind: SpoolKind
    event: SpoolEvent


@dataclass(frozen=True, slots=True)
class SpoolFrames:
    """Columnar read: each frame has a leading ``spool_offset`` column; ``last_offset`` is the highest read."""

    positions: pl.DataFrame
    greeks: pl.DataFrame
    last_offset: int | None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
_N_COLS = len(POSITION_UPDATE_FIELDS)
_GREEKS_PAD = (None,) * (_N_COLS - len(GREEKS_UPDATE_FIELDS))
_COLS = ", ".join(f"c{i}" for i in range(_N_COLS))
_INSERT = f"INSERT INTO spool (kind, {_COLS}) VALUES (?, {', '.join('?' * _N_COLS)})"
_SELECT = f"SELECT spool_offset, kind, {_COLS} FROM spool"


@functools.lru_cache(maxsize=4096)
def _iso(day: date) -> str:
    return day.isoformat()


def _micros(ts: datetime) -> int:
    if ts.tzinfo is None:
        raise ValueError(f"received_at {ts!r} is naive: events must carry UTC timestamps")
    return (ts - _EPOCH) // _ONE_US


def _from_micros(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def encode(event: SpoolEvent) -> tuple[Any, ...]:
    """One spool row: kind, then the event's fields in model order (expiry as ISO text, received_at as UTC µs)."""
    if type(event) is PositionUpdate:
        v = _POSITION_VALUES(event)
        expiry = v[_POS_EXPIRY]
        return (
            "position",
            *v[:_POS_EXPIRY],
            _iso(expiry) if expiry is not None else None,
            *v[_POS_EXPIRY + 1 : _POS_RECEIVED],
            _micros(v[_POS_RECEIVED]),
            *v[_POS_RECEIVED + 1 :],
        )
    if type(event) is GreeksUpdate:
        v = _GREEKS_VALUES(event)
        return ("greeks", *v[:_GRK_RECEIVED], _micros(v[_GRK_RECEIVED]), *v[_GRK_RECEIVED + 1 :], *_GREEKS_PAD)
    raise TypeError(f"only PositionUpdate and GreeksUpdate can be spooled, not {type(event).__name__}")


def _decode_position_values(cols: Sequence[Any]) -> list[Any]:
    values = list(cols)
    if values[_POS_EXPIRY] is not None:
        values[_POS_EXPIRY] = date.fromisoformat(values[_POS_EXPIRY])
    values[_POS_RECEIVED] = _from_micros(values[_POS_RECEIVED])
    return values


def _decode_greeks_values(cols: Sequence[Any]) -> list[Any]:
    values = list(cols[: len(GREEKS_UPDATE_FIELDS)])
    values[_GRK_RECEIVED] = _from_micros(values[_GRK_RECEIVED])
    return values


def decode(kind: str, cols: Sequence[Any]) -> SpoolEvent:
    if kind == "position":
        return PositionUpdate(*_decode_position_values(cols))
    if kind == "greeks":
        return GreeksUpdate(*_decode_greeks_values(cols))
    raise SpoolError(f"unknown spool record kind {kind!r}")


def _frame(rows: list[tuple[Any, ...]], schema: dict[str, Any]) -> pl.DataFrame:
    wire = {"spool_offset": pl.Int64, **schema}
    wire["received_at"] = pl.Int64
    if "expiry" in wire:
        wire["expiry"] = pl.String
    frame = pl.DataFrame(rows, schema=wire, orient="row")
    casts = [pl.from_epoch("received_at", time_unit="us").dt.replace_time_zone("UTC")]
    if "expiry" in wire:
        casts.append(pl.col("expiry").str.to_date("%Y-%m-%d"))
    return frame.with_columns(casts)


class Spool:
    """An on-disk queue of events, openable by path from any process and thread."""

    def __init__(self, path: str | Path, *, max_bytes: int = 0, synchronous: str = "NORMAL") -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS spool ("
                f" spool_offset INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, {_COLS})"
            )
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS spool_ack (id INTEGER PRIMARY KEY CHECK (id = 1), acked INTEGER NOT NULL)"
            )
            self._db.execute("INSERT OR IGNORE INTO spool_ack (id, acked) VALUES (1, 0)")
            if max_bytes:
                page_size = int(self._db.execute("PRAGMA page_size").fetchone()[0])
                self._db.execute(f"PRAGMA max_page_count={max(2, max_bytes // page_size)}")
        except sqlite3.Error as exc:
            raise self._error(exc, "open") from exc

    def _error(self, exc: sqlite3.Error, action: str) -> SpoolError:
        if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
            return SpoolFullError(f"spool {self.path} is full ({exc}); {action} did not happen, nothing was lost")
        return SpoolError(f"spool {self.path}: {action} failed: {exc}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ----------------------------------------------------------------------------------------------
    def append(self, events: Sequence[SpoolEvent]) -> int:
        """Write ``events`` in one transaction; returns the last offset assigned (0 if ``events`` is empty)."""
        if not events:
            return 0
        rows = [encode(event) for event in events]
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.executemany(_INSERT, rows)
                    last = int(self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'spool'").fetchone()[0])
                    self._db.execute("COMMIT")
                except BaseException:
                    # SQLite rolls back by itself on SQLITE_FULL; roll back only what is still open.
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise self._error(exc, f"append of {len(rows)} events") from exc
        return last

    # -- reading ----------------------------------------------------------------------------------------------
    def _rows(self, after_offset: int, limit: int) -> list[tuple[Any, ...]]:
        if limit <= 0:
            raise ValueError(f"limit must be positive, got {limit}")
        with self._lock:
            try:
                return self._db.execute(
                    _SELECT + " WHERE spool_offset > max(?, (SELECT acked FROM spool_ack WHERE id = 1))"
                    " ORDER BY spool_offset LIMIT ?",
                    (after_offset, limit),
                ).fetchall()
            except sqlite3.Error as exc:
                raise self._error(exc, "read") from exc

    def read(self, after_offset: int, limit: int) -> list[SpoolRecord]:
        """Unacknowledged records with offset > ``after_offset``, oldest first, at most ``limit``."""
        rows = self._rows(after_offset, limit)
        return [SpoolRecord(row[0], row[1], decode(row[1], row[2:])) for row in rows]

    def read_frames(self, after_offset: int, limit: int) -> SpoolFrames:
        """Like ``read`` but columnar: polars frames with a ``spool_offset`` column (faster for the lake)."""
        rows = self._rows(after_offset, limit)
        positions = [row[:1] + row[2:] for row in rows if row[1] == "position"]
        n_greeks = len(GREEKS_UPDATE_FIELDS) + 1
        greeks = [row[:1] + row[2 : 1 + n_greeks] for row in rows if row[1] == "greeks"]
        if len(positions) + len(greeks) != len(rows):
            raise SpoolError(f"unknown spool record kinds in {self.path} after offset {after_offset}")
        return SpoolFrames(
            positions=_frame(positions, POSITION_SCHEMA),
            greeks=_frame(greeks, GREEKS_SCHEMA),
            last_offset=rows[-1][0] if rows else None,
        )

    # -- acknowledging ----------------------------------------------------------------------------------------
    def ack(self, up_to_offset: int) -> int:
        """Acknowledge every record with offset <= ``up_to_offset`` and delete them; returns rows deleted.

        Acknowledging an offset that was never assigned is an error (it would hide future records)."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'spool'").fetchone()
                    last = int(row[0]) if row else 0
                    if up_to_offset > last:
                        raise SpoolError(f"cannot ack offset {up_to_offset}: the last offset written is {last}")
                    self._db.execute("UPDATE spool_ack SET acked = max(acked, ?) WHERE id = 1", (up_to_offset,))
                    deleted = self._db.execute("DELETE FROM spool WHERE spool_offset <= ?", (up_to_offset,)).rowcount
                    self._db.execute("COMMIT")
                except BaseException:
                    # SQLite rolls back by itself on SQLITE_FULL; roll back only what is still open.
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise self._error(exc, f"ack up to {up_to_offset}") from exc
        return int(deleted)

    def acked_offset(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT acked FROM spool_ack WHERE id = 1").fetchone()[0])

    def last_offset(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'spool'").fetchone()
        return int(row[0]) if row else 0

    def depth(self) -> int:
        """Unacknowledged records on disk."""
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM spool").fetchone()[0])


class SpoolHandler:
    """The durable consumer: events accepted in one event-loop iteration are written in one transaction.

    Never drops: if the spool is full, the batch stays in memory, the error is reported in ``last_error`` and the
    write is retried every ``retry_s`` while the streamer keeps its connection.
    """

    name = "spool"

    def __init__(self, spool: Spool, retry_s: float = 1.0) -> None:
        self.spool = spool
        self.retry_s = retry_s
        self.written = 0
        self.last_offset = 0
        self.last_error: str | None = None
        self.flushes = 0
        self._pending: list[SpoolEvent] = []
        self._scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def pending(self) -> int:
        return len(self._pending)

    def accept(self, event: SpoolEvent) -> None:
        """Queue ``event`` for the write at the end of this loop iteration (call on the event loop thread)."""
        self._pending.append(event)
        if not self._scheduled:
            self._scheduled = True
            loop = self._loop or asyncio.get_running_loop()
            self._loop = loop
            loop.call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        if not self._pending:
            return
        batch = self._pending
        try:
            self.last_offset = self.spool.append(batch)
            failpoint("after_spool_append")
        except SpoolError as exc:
            if self.last_error != str(exc):
                log.error("spool write failed, %d events held in memory and retried: %s", len(batch), exc)
            self.last_error = str(exc)
            if self._loop is not None and not self._scheduled:
                self._scheduled = True
                self._loop.call_later(self.retry_s, self.flush)
            return
        self._pending = []
        self.written += len(batch)
        self.flushes += 1
        self.last_error = None
