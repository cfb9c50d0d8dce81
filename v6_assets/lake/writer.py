"""Exactly-once micro-batch appends, fenced by Delta ``txn`` app transactions.

Each batch carries ``(app_id, version)`` (stream id, last spool offset in the batch). The writer reads the table's
committed txn version for ``app_id`` and commits data + ``Transaction(app_id, version)`` in ONE commit on the SAME
``DeltaTable`` handle: if another writer committed that app id in between, delta-rs rejects the commit with
``CommitFailedError`` (concurrent transaction) and the writer re-reads and retries. delta-rs does not skip a replayed
version by itself, so the check is done here. The Delta log is the only record of what was committed.

With ``offset_column`` a replayed batch may be cut differently from the original: rows whose offset is at or below
the committed version are dropped and the rest commit with the new version.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

import polars as pl
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError

from v6_assets.contracts.tables import TRADE_DATE, TableDef
from v6_assets.failpoints import failpoint
from v6_assets.lake.store import Lake, check_compatible, hot_path_hooks, zstd_writer_properties
from v6_assets.lake.tables import cast_and_validate

log = logging.getLogger(__name__)

DEFAULT_REOPEN_EVERY = 100


class LakeCommitError(RuntimeError):
    """The batch could not be committed after all retries; nothing of it is in the table."""


@dataclass(frozen=True)
class AppendResult:
    table: str
    app_id: str
    status: Literal["committed", "skipped"]
    rows_written: int
    rows_skipped: int
    previous_version: int | None  # committed txn version for app_id before this call
    new_version: int | None  # committed txn version after this call
    table_version: int | None  # Delta table version after this call (None: table still absent)
    partitions: tuple[date, ...]
    attempts: int
    duration_s: float

    @property
    def committed(self) -> bool:
        return self.status == "committed"

    def as_metadata(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "app_id": self.app_id,
            "status": self.status,
            "rows_written": self.rows_written,
            "rows_skipped": self.rows_skipped,
            "previous_version": self.previous_version,
            "new_version": self.new_version,
            "table_version": self.table_version,
            "partitions": [d.isoformat() for d in self.partitions],
            "attempts": self.attempts,
            "duration_s": round(self.duration_s, 4),
        }


class MicroBatchWriter:
    """Appends batches to one table exactly once per (app_id, version). Not thread-safe: one per thread/process."""

    def __init__(
        self,
        lake: Lake,
        table: str | TableDef,
        *,
        reopen_every: int = DEFAULT_REOPEN_EVERY,
        max_attempts: int = 20,
    ) -> None:
        if reopen_every < 1 or max_attempts < 1:
            raise ValueError("reopen_every and max_attempts must be >= 1")
        self.lake = lake
        self.table = lake.table_def(table)
        self.reopen_every = reopen_every
        self.max_attempts = max_attempts
        self._dt: DeltaTable | None = None
        self._commits_on_handle = 0
        self._needs_merge: bool | None = None  # schema check result for the current handle

    # -- handle ---------------------------------------------------------------------------------------------------

    def _reset(self) -> None:
        self._dt = None
        self._commits_on_handle = 0
        self._needs_merge = None

    def _latest(self, create: bool = False) -> DeltaTable | None:
        """The handle, brought up to the latest version (None if the table does not exist and not ``create``)."""
        if self._dt is None or self._commits_on_handle >= self.reopen_every:
            # A long-lived handle grows its in-memory log state and slows commits down; reopen periodically.
            self._reset()
            self._dt = self.lake.ensure_table(self.table) if create else self.lake.open(self.table)
        else:
            self._dt.update_incremental()
        return self._dt

    def committed_version(self, app_id: str) -> int | None:
        """The txn version committed for ``app_id`` (None when it never committed), read from the Delta log."""
        dt = self._latest()
        return None if dt is None else dt.transaction_version(app_id)

    # -- append ---------------------------------------------------------------------------------------------------

    def append(self, df: pl.DataFrame, *, app_id: str, version: int, offset_column: str | None = None) -> AppendResult:
        """Commit ``df`` tagged ``(app_id, version)`` exactly once.

        Without ``offset_column``: the whole batch is skipped when ``version`` <= the committed version. With it:
        rows whose offset <= the committed version are dropped and the rest commit with ``version`` (which must be
        >= every offset in the batch). Validation errors raise before anything is written.
        """
        started = time.perf_counter()
        if not isinstance(app_id, str) or not app_id.strip():
            raise ValueError(f"{self.table.name}: app_id must be a non-empty string, got {app_id!r}")
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise ValueError(f"{self.table.name}: version must be a non-negative int, got {version!r}")
        frame = cast_and_validate(self.table, df)
        if offset_column is not None:
            self._check_offsets(frame, offset_column, version)

        for attempt in range(1, self.max_attempts + 1):
            dt = self._latest(create=True)
            assert dt is not None
            previous = dt.transaction_version(app_id)
            if previous is not None and version <= previous:
                return self._result(app_id, "skipped", 0, frame.height, previous, previous, dt, (), attempt, started)
            to_write = frame
            if offset_column is not None and previous is not None:
                to_write = frame.filter(pl.col(offset_column) > previous)
            try:
                self._commit(dt, to_write, app_id, version)
            except CommitFailedError as e:
                # Another writer committed meanwhile (maybe this very app id): re-read and decide again.
                log.info(
                    "%s: commit conflict for %s v%d (attempt %d): %s", self.table.name, app_id, version, attempt, e
                )
                self._reset()
                time.sleep(min(0.2, 0.01 * attempt))
                continue
            except Exception:
                self._reset()
                raise
            self._commits_on_handle += 1
            partitions = tuple(sorted(to_write[TRADE_DATE].unique().to_list())) if TRADE_DATE in to_write else ()
            return self._result(
                app_id,
                "committed",
                to_write.height,
                frame.height - to_write.height,
                previous,
                version,
                dt,
                partitions,
                attempt,
                started,
            )
        raise LakeCommitError(
            f"{self.table.name}: batch {app_id} v{version} not committed after {self.max_attempts} attempts"
        )

    def _commit(self, dt: DeltaTable, frame: pl.DataFrame, app_id: str, version: int) -> None:
        if self._needs_merge is None:
            self._needs_merge = check_compatible(self.table, dt)
        failpoint("delta_write")
        # The SAME handle that read the txn version writes: this is what makes the concurrent-txn check fence us.
        write_deltalake(
            dt,
            frame.to_arrow(),
            mode="append",
            schema_mode="merge" if self._needs_merge else None,
            writer_properties=zstd_writer_properties(),
            commit_properties=CommitProperties(app_transactions=[Transaction(app_id=app_id, version=version)]),
            post_commithook_properties=hot_path_hooks(),
        )
        self._needs_merge = False  # after a merge the table has the columns

    def _check_offsets(self, frame: pl.DataFrame, offset_column: str, version: int) -> None:
        name = self.table.name
        if offset_column not in frame.columns:
            raise ValueError(f"{name}: offset column {offset_column!r} is not in the batch")
        offsets = frame[offset_column]
        if not offsets.dtype.is_integer():
            raise ValueError(f"{name}.{offset_column}: offsets must be integers, got {offsets.dtype}")
        if offsets.null_count():
            raise ValueError(f"{name}.{offset_column}: {offsets.null_count()} null offset(s)")
        if frame.height:
            top = offsets.max()
            assert isinstance(top, int)
            if top > version:
                raise ValueError(f"{name}: batch holds offset {top} above its version {version}")
            if offsets.n_unique() != frame.height:
                raise ValueError(f"{name}.{offset_column}: duplicate offsets within one batch")
            if offsets.min() < 0:  # type: ignore[operator]
                raise ValueError(f"{name}.{offset_column}: negative offsets")

    def _result(
        self,
        app_id: str,
        status: Literal["committed", "skipped"],
        written: int,
        skipped: int,
        previous: int | None,
        new: int | None,
        dt: DeltaTable | None,
        partitions: tuple[date, ...],
        attempts: int,
        started: float,
    ) -> AppendResult:
        return AppendResult(
            table=self.table.name,
            app_id=app_id,
            status=status,
            rows_written=written,
            rows_skipped=skipped,
            previous_version=previous,
            new_version=new,
            table_version=None if dt is None else dt.version(),
            partitions=partitions,
            attempts=attempts,
            duration_s=time.perf_counter() - started,
        )
