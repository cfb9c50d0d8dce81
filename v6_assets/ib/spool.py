"""The durable spool: every accepted event is on disk (SQLite, WAL) before it counts as received.

One global monotonic offset across both kinds (``AUTOINCREMENT``: an offset is never reused, even after garbage
collection). Consumers ``read(after_offset, limit)`` and ``ack(up_to_offset)``; acknowledged rows are deleted and
never re-delivered. Any process may open the same path (WAL + busy timeout): a reloaded process drains what the old
one wrote. ``synchronous=NORMAL`` makes a committed batch survive a crash of the process (kill -9); power loss
may lose the last batches (use ``synchronous="FULL"`` for that).
"""

from __future__ import annotations

import asyncio
import json
import logging
import operator
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

import polars as pl

from v6_assets.ib.models import GREEKS_UPDATE_FIELDS, POSITION_UPDATE_FIELDS, GreeksUpdate, PositionUpdate

log = logging.getLogger(__name__)

SpoolKind = Literal["position", "greeks"]
SpoolEvent = PositionUpdate | GreeksUpdate

_POSITION_VALUES = operator.attrgetter(*POSITION_UPDATE_FIELDS)
_GREEKS_VALUES = operator.attrgetter(*GREEKS_UPDATE_FIELDS)
_POS_EXPIRY = POSITION_UPDATE_FIELDS.index("expiry")
_POS_RECEIVED = POSITION_UPDATE_FIELDS.index("received_at")
_GRK_RECEIVED = GREEKS_UPDATE_FIELDS.index("received_at")

POSITION_SCHEMA: dict[str, Any] = {
    "account": pl.String,
    "con_id": pl.Int64,
    "symbol": pl.String,
    "sec_type": pl.String,
    "expiry": pl.Date,
    "strike": pl.Float64,
    "right": pl.String,
    "multiplier": pl.Float64,
    "currency": pl.String,
    "exchange": pl.String,
    "trading_class": pl.String,
    "local_symbol": pl.String,
    "position": pl.Float64,
    "average_cost": pl.Float64,
    "market_price": pl.Float64,
    "market_value": pl.Float64,
    "unrealized_pnl": pl.Float64,
    "realized_pnl": pl.Float64,
    "ib_daily_pnl": pl.Float64,
    "ib_unrealized_pnl": pl.Float64,
    "ib_realized_pnl": pl.Float64,
    "ib_value": pl.Float64,
    "source": pl.String,
    "seq": pl.Int64,
    "received_at": pl.Datetime("us", "UTC"),
}
GREEKS_SCHEMA: dict[str, Any] = {
    "con_id": pl.Int64,
    "tick_type": pl.Int64,
    "delta": pl.Float64,
    "gamma": pl.Float64,
    "vega": pl.Float64,
    "theta": pl.Float64,
    "implied_vol": pl.Float64,
    "und_price": pl.Float64,
    "opt_price": pl.Float64,
    "seq": pl.Int64,
    "received_at": pl.Datetime("us", "UTC"),
}
assert tuple(POSITION_SCHEMA) == POSITION_UPDATE_FIELDS, "POSITION_SCHEMA must follow models.PositionUpdate"
assert tuple(GREEKS_SCHEMA) == GREEKS_UPDATE_FIELDS, "GREEKS_SCHEMA must follow models.GreeksUpdate"


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


def _json_default(value: Any) -> str:
    if isinstance(value, date | datetime):
        return value.isoformat()
    raise TypeError(f"cannot spool value {value!r} of type {type(value).__name__}")


def encode(event: SpoolEvent) -> tuple[SpoolKind, str]:
    if type(event) is PositionUpdate:
        return "position", json.dumps(_POSITION_VALUES(event), default=_json_default, separators=(",", ":"))
    if type(event) is GreeksUpdate:
        return "greeks", json.dumps(_GREEKS_VALUES(event), default=_json_default, separators=(",", ":"))
    raise TypeError(f"only PositionUpdate and GreeksUpdate can be spooled, not {type(event).__name__}")


def _decode_position_values(payload: str) -> list[Any]:
    values = json.loads(payload)
    if values[_POS_EXPIRY] is not None:
        values[_POS_EXPIRY] = date.fromisoformat(values[_POS_EXPIRY])
    values[_POS_RECEIVED] = datetime.fromisoformat(values[_POS_RECEIVED])
    return values


def _decode_greeks_values(payload: str) -> list[Any]:
    values = json.loads(payload)
    values[_GRK_RECEIVED] = datetime.fromisoformat(values[_GRK_RECEIVED])
    return values


def decode(kind: str, payload: str) -> SpoolEvent:
    if kind == "position":
        return PositionUpdate(*_decode_position_values(payload))
    if kind == "greeks":
        return GreeksUpdate(*_decode_greeks_values(payload))
    raise SpoolError(f"unknown spool record kind {kind!r}")


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
                " spool_offset INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, payload TEXT NOT NULL)"
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
                    self._db.executemany("INSERT INTO spool (kind, payload) VALUES (?, ?)", rows)
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
    def _rows(self, after_offset: int, limit: int) -> list[tuple[int, str, str]]:
        if limit <= 0:
            raise ValueError(f"limit must be positive, got {limit}")
        with self._lock:
            try:
                return self._db.execute(
                    "SELECT spool_offset, kind, payload FROM spool"
                    " WHERE spool_offset > max(?, (SELECT acked FROM spool_ack WHERE id = 1))"
                    " ORDER BY spool_offset LIMIT ?",
                    (after_offset, limit),
                ).fetchall()
            except sqlite3.Error as exc:
                raise self._error(exc, "read") from exc

    def read(self, after_offset: int, limit: int) -> list[SpoolRecord]:
        """Unacknowledged records with offset > ``after_offset``, oldest first, at most ``limit``."""
        rows = self._rows(after_offset, limit)
        return [SpoolRecord(offset, kind, decode(kind, payload)) for offset, kind, payload in rows]  # type: ignore[arg-type]

    def read_frames(self, after_offset: int, limit: int) -> SpoolFrames:
        """Like ``read`` but columnar: polars frames with a ``spool_offset`` column (faster for the lake)."""
        rows = self._rows(after_offset, limit)
        positions: list[list[Any]] = []
        greeks: list[list[Any]] = []
        for offset, kind, payload in rows:
            if kind == "position":
                positions.append([offset, *_decode_position_values(payload)])
            elif kind == "greeks":
                greeks.append([offset, *_decode_greeks_values(payload)])
            else:
                raise SpoolError(f"unknown spool record kind {kind!r} at offset {offset}")
        return SpoolFrames(
            positions=pl.DataFrame(positions, schema={"spool_offset": pl.Int64, **POSITION_SCHEMA}, orient="row"),
            greeks=pl.DataFrame(greeks, schema={"spool_offset": pl.Int64, **GREEKS_SCHEMA}, orient="row"),
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
