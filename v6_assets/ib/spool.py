"""The durable spool: every accepted event is on disk (SQLite, WAL) before it counts as received.

One global monotonic offset across both kinds (``AUTOINCREMENT``: an offset is never reused, even after garbage
collection). Consumers ``read(after_offset, limit)`` and ``ack(up_to_offset)``; acknowledged rows are deleted and
never re-delivered. Any process may open the same path (WAL + busy timeout): a reloaded process drains what the old
one wrote. ``synchronous=NORMAL`` makes a committed batch survive a crash of the process (kill -9); power loss
may lose the last batches (use ``synchronous="FULL"`` for that).

Disk use is bounded on both files: ``max_bytes`` caps the database (``max_page_count``), and the write-ahead log is
checkpointed after every ``ack`` and automatically every ``WAL_AUTOCHECKPOINT_PAGES`` pages, and truncated back to
``WAL_SIZE_LIMIT`` bytes (``journal_size_limit``): an empty spool needs well under a megabyte, not SQLite's default
~4 MB of WAL. A spool can be *fenced* (``fence``): appends then fail with ``SpoolFencedError`` until
``v6_assets.pipeline.recover_spool`` starts a new epoch, so a spool the lake can never accept is not filled in vain.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import operator
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import polars as pl

from v6_assets.contracts.streams import (
    ACCOUNT_VALUE_FIELDS,
    EXECUTION_UPDATE_FIELDS,
    GREEKS_UPDATE_FIELDS,
    POSITION_UPDATE_FIELDS,
    AccountValueUpdate,
    ExecutionUpdate,
    GreeksUpdate,
    PositionUpdate,
)
from v6_assets.contracts.tables import ACCOUNT_VALUES, EXECUTIONS, GREEKS_UPDATES, POSITION_UPDATES
from v6_assets.failpoints import failpoint

log = logging.getLogger(__name__)

SpoolKind = Literal["position", "greeks", "execution", "account_value"]
SpoolEvent = PositionUpdate | GreeksUpdate | ExecutionUpdate | AccountValueUpdate

_POSITION_VALUES = operator.attrgetter(*POSITION_UPDATE_FIELDS)
_GREEKS_VALUES = operator.attrgetter(*GREEKS_UPDATE_FIELDS)
_POS_EXPIRY = POSITION_UPDATE_FIELDS.index("expiry")
_POS_RECEIVED = POSITION_UPDATE_FIELDS.index("received_at")
_GRK_RECEIVED = GREEKS_UPDATE_FIELDS.index("received_at")

# The events' columns as polars types, from the table contracts (the lake's extra columns left out).
POSITION_SCHEMA: dict[str, Any] = {c: POSITION_UPDATES.polars_schema[c] for c in POSITION_UPDATE_FIELDS}
GREEKS_SCHEMA: dict[str, Any] = {c: GREEKS_UPDATES.polars_schema[c] for c in GREEKS_UPDATE_FIELDS}
EXECUTION_SCHEMA: dict[str, Any] = {c: EXECUTIONS.polars_schema[c] for c in EXECUTION_UPDATE_FIELDS}
ACCOUNT_VALUE_SCHEMA: dict[str, Any] = {c: ACCOUNT_VALUES.polars_schema[c] for c in ACCOUNT_VALUE_FIELDS}


class SpoolError(RuntimeError):
    """The spool cannot take or give data (the message says why)."""


class SpoolFullError(SpoolError):
    """The disk (or the configured size cap) is full: nothing was written, nothing accepted was lost."""


class SpoolFencedError(SpoolError):
    """The spool was fenced (it cannot be drained into the lake): appends are refused until it is recovered."""


# SQLite's default checkpoints the WAL only past 1,000 pages (~4 MB) and never shrinks the file again.
WAL_AUTOCHECKPOINT_PAGES = 64
WAL_SIZE_LIMIT = 256 * 1024


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
    executions: pl.DataFrame = dataclasses.field(default_factory=lambda: _frame([], EXECUTION_SCHEMA))
    account_values: pl.DataFrame = dataclasses.field(default_factory=lambda: _frame([], ACCOUNT_VALUE_SCHEMA))


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)
_N_COLS = len(POSITION_UPDATE_FIELDS)
_GREEKS_PAD = (None,) * (_N_COLS - len(GREEKS_UPDATE_FIELDS))
# Executions share the columns: their fields fit in a position row's (checked here, at import).
assert len(EXECUTION_UPDATE_FIELDS) <= _N_COLS, "an execution has more fields than the spool has columns"
_EXECUTION_VALUES = operator.attrgetter(*EXECUTION_UPDATE_FIELDS)
_EXECUTION_PAD = (None,) * (_N_COLS - len(EXECUTION_UPDATE_FIELDS))
_EXE_EXPIRY = EXECUTION_UPDATE_FIELDS.index("expiry")
_EXE_TIMES = (EXECUTION_UPDATE_FIELDS.index("exec_time"), EXECUTION_UPDATE_FIELDS.index("received_at"))
_ACCOUNT_VALUES = operator.attrgetter(*ACCOUNT_VALUE_FIELDS)
_ACCOUNT_PAD = (None,) * (_N_COLS - len(ACCOUNT_VALUE_FIELDS))
_ACV_RECEIVED = ACCOUNT_VALUE_FIELDS.index("received_at")
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
    if type(event) is ExecutionUpdate:
        values = list(_EXECUTION_VALUES(event))
        if values[_EXE_EXPIRY] is not None:
            values[_EXE_EXPIRY] = _iso(values[_EXE_EXPIRY])
        for i in _EXE_TIMES:
            values[i] = _micros(values[i])
        return ("execution", *values, *_EXECUTION_PAD)
    if type(event) is AccountValueUpdate:
        values = list(_ACCOUNT_VALUES(event))
        values[_ACV_RECEIVED] = _micros(values[_ACV_RECEIVED])
        return ("account_value", *values, *_ACCOUNT_PAD)
    raise TypeError(
        f"only PositionUpdate, GreeksUpdate, ExecutionUpdate and AccountValueUpdate can be spooled, not "
        f"{type(event).__name__}"
    )


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


def _decode_execution_values(cols: Sequence[Any]) -> list[Any]:
    values = list(cols[: len(EXECUTION_UPDATE_FIELDS)])
    if values[_EXE_EXPIRY] is not None:
        values[_EXE_EXPIRY] = date.fromisoformat(values[_EXE_EXPIRY])
    for i in _EXE_TIMES:
        values[i] = _from_micros(values[i])
    return values


def decode(kind: str, cols: Sequence[Any]) -> SpoolEvent:
    if kind == "account_value":
        values = list(cols[: len(ACCOUNT_VALUE_FIELDS)])
        values[_ACV_RECEIVED] = _from_micros(values[_ACV_RECEIVED])
        return AccountValueUpdate(*values)
    if kind == "execution":
        return ExecutionUpdate(*_decode_execution_values(cols))
    if kind == "position":
        return PositionUpdate(*_decode_position_values(cols))
    if kind == "greeks":
        return GreeksUpdate(*_decode_greeks_values(cols))
    raise SpoolError(f"unknown spool record kind {kind!r}")


def _frame(rows: list[tuple[Any, ...]], schema: dict[str, Any]) -> pl.DataFrame:
    wire = {"spool_offset": pl.Int64, **schema}
    stamps = [c for c in ("exec_time", "received_at") if c in wire]
    for column in stamps:
        wire[column] = pl.Int64
    if "expiry" in wire:
        wire["expiry"] = pl.String
    frame = pl.DataFrame(rows, schema=wire, orient="row")
    casts = [pl.from_epoch(c, time_unit="us").dt.replace_time_zone("UTC") for c in stamps]
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
            self._db.execute("CREATE TABLE IF NOT EXISTS spool_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            self._db.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
            self._db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
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

    @contextlib.contextmanager
    def _transaction(self, action: str) -> Iterator[None]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (the caller holds ``_lock``). On any error what is still open is rolled
        back (SQLite rolls back by itself on SQLITE_FULL); a sqlite3 error becomes a SpoolError naming ``action``."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise self._error(exc, action) from exc

    def _last_assigned(self) -> int:
        """The last offset ever assigned (0 before the first write); inside a transaction or under ``_lock``."""
        row = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'spool'").fetchone()
        return int(row[0]) if row else 0

    # -- writing ----------------------------------------------------------------------------------------------
    def append(self, events: Sequence[SpoolEvent]) -> int:
        """Write ``events`` in one transaction; returns the last offset assigned (0 if ``events`` is empty)."""
        if not events:
            return 0
        rows = [encode(event) for event in events]
        with self._lock, self._transaction(f"append of {len(rows)} events"):
            fence = self._db.execute("SELECT value FROM spool_meta WHERE key = 'fence'").fetchone()
            if fence is not None:
                raise SpoolFencedError(f"spool {self.path} is fenced, {len(rows)} events refused: {fence[0]}")
            self._db.executemany(_INSERT, rows)
            last = self._last_assigned()
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
        n_executions = len(EXECUTION_UPDATE_FIELDS) + 1
        executions = [row[:1] + row[2 : 1 + n_executions] for row in rows if row[1] == "execution"]
        n_values = len(ACCOUNT_VALUE_FIELDS) + 1
        values = [row[:1] + row[2 : 1 + n_values] for row in rows if row[1] == "account_value"]
        if len(positions) + len(greeks) + len(executions) + len(values) != len(rows):
            raise SpoolError(f"unknown spool record kinds in {self.path} after offset {after_offset}")
        return SpoolFrames(
            positions=_frame(positions, POSITION_SCHEMA),
            greeks=_frame(greeks, GREEKS_SCHEMA),
            last_offset=rows[-1][0] if rows else None,
            executions=_frame(executions, EXECUTION_SCHEMA),
            account_values=_frame(values, ACCOUNT_VALUE_SCHEMA),
        )

    # -- acknowledging ----------------------------------------------------------------------------------------
    def ack(self, up_to_offset: int) -> int:
        """Acknowledge every record with offset <= ``up_to_offset`` and delete them; returns rows deleted.

        Acknowledging an offset that was never assigned is an error (it would hide future records)."""
        with self._lock:
            with self._transaction(f"ack up to {up_to_offset}"):
                last = self._last_assigned()
                if up_to_offset > last:
                    raise SpoolError(f"cannot ack offset {up_to_offset}: the last offset written is {last}")
                self._db.execute("UPDATE spool_ack SET acked = max(acked, ?) WHERE id = 1", (up_to_offset,))
                deleted = self._db.execute("DELETE FROM spool WHERE spool_offset <= ?", (up_to_offset,)).rowcount
            self._checkpoint()
        return int(deleted)

    def _checkpoint(self) -> None:
        # PASSIVE never waits for other connections; the next write restarts the WAL from its start and
        # journal_size_limit truncates it. A failed checkpoint only delays that: it is not an error of the ack.
        try:
            self._db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:
            log.debug("spool %s: checkpoint failed: %s", self.path, exc)

    def wal_bytes(self) -> int:
        """Size of the write-ahead log file now (0 when absent)."""
        wal = self.path.with_name(self.path.name + "-wal")
        try:
            return wal.stat().st_size
        except FileNotFoundError:
            return 0

    # -- fencing and epochs (v6_assets.pipeline.recover_spool) ------------------------------------------------------
    def fence(self, reason: str, *, unless_assigned: int | None = None) -> bool:
        """Refuse every later append (from any process) with ``reason`` until ``start_epoch`` lifts the fence.

        With ``unless_assigned``, atomically: no fence if offsets up to it are assigned by now (a concurrent
        ``start_epoch`` already moved the spool above the lake). Returns whether the spool is fenced."""
        with self._lock, self._transaction("fence"):
            last = self._last_assigned()
            fenced = unless_assigned is None or last < unless_assigned
            if fenced:
                self._db.execute("INSERT OR REPLACE INTO spool_meta (key, value) VALUES ('fence', ?)", (reason,))
        return fenced

    def fenced(self) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM spool_meta WHERE key = 'fence'").fetchone()
        return str(row[0]) if row else None

    def start_epoch(self, above: int, *, discard_unacked: bool = False) -> dict[str, int]:
        """Continue the offsets strictly above ``above`` (the lake's committed version) and lift the fence.

        Unacknowledged records at or below ``above`` would be mistaken for ingested ones: they are renumbered above
        it (kept, in order) unless ``discard_unacked``. Returns counts: renumbered, discarded, first_new_offset."""
        if above < 0:
            raise ValueError(f"above must be >= 0, got {above}")
        with self._lock:
            with self._transaction(f"new epoch above offset {above}"):
                last = self._last_assigned()
                # Only a spool BEHIND the lake holds records the lake never saw at offsets it has committed; in
                # a spool at or ahead of the lake, records at or below ``above`` are committed already.
                stale = (
                    self._db.execute(
                        f"SELECT kind, {_COLS} FROM spool WHERE spool_offset <= ? ORDER BY spool_offset", (above,)
                    ).fetchall()
                    if last < above
                    else []
                )
                self._db.execute("DELETE FROM spool WHERE spool_offset <= ?", (above,))
                base = max(last, above)
                moved = self._db.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'spool'", (base,))
                if moved.rowcount == 0:  # nothing was ever written: no sequence row yet
                    self._db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('spool', ?)", (base,))
                renumbered = 0
                if stale and not discard_unacked:
                    self._db.executemany(_INSERT, stale)
                    renumbered = len(stale)
                self._db.execute("UPDATE spool_ack SET acked = max(acked, ?) WHERE id = 1", (above,))
                self._db.execute("DELETE FROM spool_meta WHERE key = 'fence'")
            self._checkpoint()
        return {
            "renumbered": renumbered,
            "discarded": 0 if renumbered else len(stale),
            "first_new_offset": base + 1,
        }

    def acked_offset(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT acked FROM spool_ack WHERE id = 1").fetchone()[0])

    def last_offset(self) -> int:
        with self._lock:
            return self._last_assigned()

    def depth(self) -> int:
        """Unacknowledged records on disk."""
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM spool").fetchone()[0])


DEFAULT_MAX_HELD = 50_000


class SpoolHandler:
    """The durable consumer: events accepted in one event-loop iteration are written in one transaction.

    If the spool refuses a write (full disk or size cap, fenced, broken), the batch stays in memory and the write is
    retried every ``retry_s`` while the streamer keeps its connection. Memory is bounded: past ``max_held`` events
    the handler sheds, in this order, (1) held greeks (snapshots that the next ones supersede), (2) position updates
    superseded by a later held update of the same (account, con_id), (3) the oldest position updates, down to 3/4
    of ``max_held``. What is shed is counted (``dropped_greeks``, ``dropped_positions``) and is lost from the event
    history; the current state is restored once the spool takes writes again: ``on_resync`` is called (the streamer
    publishes every known position's current state and reconnects). The condition is logged once when it starts and
    once when it ends, never per retry.
    """

    name = "spool"

    def __init__(
        self,
        spool: Spool,
        retry_s: float = 1.0,
        *,
        max_held: int = DEFAULT_MAX_HELD,
        on_resync: Callable[[int, int], None] | None = None,
    ) -> None:
        if max_held < 4:
            raise ValueError(f"max_held must be >= 4, got {max_held}")
        self.spool = spool
        self.retry_s = retry_s
        self.max_held = max_held
        self.on_resync = on_resync
        self.written = 0
        self.last_offset = 0
        self.last_error: str | None = None
        self.flushes = 0
        self.dropped_greeks = 0
        self.dropped_positions = 0
        self.max_pending_seen = 0
        self._dropped_since_ok = 0
        self._pending: list[SpoolEvent] = []
        self._scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def dropped(self) -> int:
        return self.dropped_greeks + self.dropped_positions

    def accept(self, event: SpoolEvent) -> None:
        """Queue ``event`` for the write at the end of this loop iteration (call on the event loop thread)."""
        self._pending.append(event)
        if len(self._pending) > self.max_held:
            self._shed()
        if not self._scheduled:
            self._scheduled = True
            loop = self._loop or asyncio.get_running_loop()
            self._loop = loop
            loop.call_soon(self.flush)

    def _shed(self) -> None:
        held = self._pending
        self.max_pending_seen = max(self.max_pending_seen, len(held))
        target = self.max_held * 3 // 4
        kept: list[SpoolEvent] = [e for e in held if type(e) is not GreeksUpdate]
        self.dropped_greeks += len(held) - len(kept)
        if len(kept) > target:
            latest: set[tuple[str, int]] = set()
            newest_first: list[SpoolEvent] = []
            for event in reversed(kept):
                if type(event) is ExecutionUpdate or type(event) is AccountValueUpdate:
                    newest_first.append(event)  # a fill / an account value is never superseded by a position update
                    continue
                key = (event.account, event.con_id)  # type: ignore[union-attr]
                if key not in latest:
                    latest.add(key)
                    newest_first.append(event)
            newest_first.reverse()
            self.dropped_positions += len(kept) - len(newest_first)
            kept = newest_first
        if len(kept) > target:
            # the oldest position updates go; executions stay (a fill is never superseded)
            droppable = [i for i, e in enumerate(kept) if type(e) is PositionUpdate]
            drop = set(droppable[: len(kept) - target])
            self.dropped_positions += len(drop)
            kept = [e for i, e in enumerate(kept) if i not in drop]
        self._dropped_since_ok += len(held) - len(kept)
        self._pending = kept

    def flush(self) -> None:
        self._scheduled = False
        if not self._pending:
            return
        batch = self._pending
        self.max_pending_seen = max(self.max_pending_seen, len(batch))
        try:
            self.last_offset = self.spool.append(batch)
            failpoint("after_spool_append")
        except SpoolError as exc:
            if self.last_error is None:
                log.error(
                    "spool write failed; updates are held in memory (at most %d, then shed: greeks first, then "
                    "superseded and oldest positions) and retried every %.1f s until it works again: %s",
                    self.max_held, self.retry_s, exc,
                )  # fmt: skip
            self.last_error = str(exc)
            if self._loop is not None and not self._scheduled:
                self._scheduled = True
                self._loop.call_later(self.retry_s, self.flush)
            return
        self._pending = []
        self.written += len(batch)
        self.flushes += 1
        if self.last_error is not None:
            dropped, self._dropped_since_ok = self._dropped_since_ok, 0
            log.warning(
                "spool writes work again (%d held updates written); %d updates were shed while it failed "
                "(%d greeks, %d positions in total)%s",
                len(batch), dropped, self.dropped_greeks, self.dropped_positions,
                "; resynchronising the current state" if dropped else "",
            )  # fmt: skip
            self.last_error = None
            if dropped and self.on_resync is not None:
                self.on_resync(self.dropped_greeks, self.dropped_positions)
