"""Where the tables live and how they are opened, read and overwritten per session.

``Lake.from_env()`` reads ``V6_LAKE_URI`` (default ``./.v6/lake``); an ``s3://bucket/prefix`` URI takes its storage
options from the AWS_* environment variables (``AWS_ENDPOINT_URL`` + ``AWS_ALLOW_HTTP`` for an S3-compatible server,
``V6_LAKE_S3_CONDITIONAL_PUT=etag`` for MinIO/R2). Each table is the directory ``<uri>/<table name>``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow as pa
from deltalake import CommitProperties, DeltaTable, PostCommitHookProperties, WriterProperties, write_deltalake
from deltalake.exceptions import CommitFailedError, TableNotFoundError

from v6_assets.contracts.tables import TABLES, TRADE_DATE, TableDef
from v6_assets.lake.settings import DEFAULT_LAKE_URI as DEFAULT_LAKE_URI
from v6_assets.lake.settings import LakeEnvironment
from v6_assets.lake.tables import LakeSchemaError, cast_and_validate
from v6_assets.sessions import is_session

if TYPE_CHECKING:
    from v6_assets.lake.maintenance import CheckpointResult, CleanupLogsResult, CompactResult, VacuumResult

DEFAULT_CHECKPOINT_INTERVAL = 100
# env var -> delta-rs storage option key (object_store's AWS config keys)
_S3_ENV_OPTIONS = {
    "AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN": "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION": "AWS_REGION",
    "AWS_REGION": "AWS_REGION",
    "AWS_ENDPOINT_URL": "AWS_ENDPOINT_URL",
    "AWS_ALLOW_HTTP": "AWS_ALLOW_HTTP",
    "V6_LAKE_S3_CONDITIONAL_PUT": "aws_conditional_put",
}


# Rows per parquet row group: a file of a large session is several row groups, so readers (polars, DuckDB) read them
# in parallel and skip by the row-group statistics (deltalake's default puts a whole write into one row group).
ROW_GROUP_ROWS = 128 * 1024


def zstd_writer_properties() -> WriterProperties:
    return WriterProperties(compression="ZSTD", max_row_group_size=ROW_GROUP_ROWS)


def hot_path_hooks() -> PostCommitHookProperties:
    # Checkpoints follow delta.checkpointInterval; expired-log cleanup lists the whole _delta_log on every commit,
    # so it is off here and done by maintenance (cleanup_logs).
    return PostCommitHookProperties(create_checkpoint=True, cleanup_expired_logs=False)


@dataclass(frozen=True)
class OverwriteResult:
    table: str
    sessions: tuple[date, ...]
    rows_written: int
    rows_per_session: dict[date, int]
    table_version_before: int | None
    table_version_after: int
    files_added: int | None
    files_removed: int | None
    duration_s: float

    def as_metadata(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "sessions": [d.isoformat() for d in self.sessions],
            "rows_written": self.rows_written,
            "table_version_before": self.table_version_before,
            "table_version_after": self.table_version_after,
            "files_added": self.files_added,
            "files_removed": self.files_removed,
            "duration_s": round(self.duration_s, 4),
        }


def check_compatible(table: TableDef, existing: DeltaTable) -> bool:
    """Raise ``LakeSchemaError`` if ``table``'s contract cannot be written to ``existing``; True if a merge is needed.

    Compatible = same types for shared columns, same partitioning; new columns must be nullable (old rows get null).
    """
    existing_schema = pl.DataFrame(pa.schema(existing.schema().to_arrow()).empty_table()).schema
    if tuple(existing.metadata().partition_columns) != table.partition_by:
        raise LakeSchemaError(
            table.name,
            None,
            f"partitioned by {existing.metadata().partition_columns} on disk but {list(table.partition_by)} in the "
            "contract; repartitioning is not done implicitly",
        )
    contract = table.polars_schema
    for name, dtype in existing_schema.items():
        if name not in contract:
            raise LakeSchemaError(
                table.name, name, "column exists in the table but not in the contract (dropping columns is not done)"
            )
        if contract[name] != dtype:
            raise LakeSchemaError(
                table.name, name, f"incompatible change: {dtype} in the table, {contract[name]} in the contract"
            )
    new_columns = [c for c in table.columns if c.name not in existing_schema]
    for col in new_columns:
        if not col.nullable:
            raise LakeSchemaError(table.name, col.name, "a new column must be nullable (existing rows get null)")
    return bool(new_columns)


@dataclass(frozen=True)
class Lake:
    """The project's Delta tables under one root URI."""

    uri: str
    storage_options: Mapping[str, str] = field(default_factory=dict, repr=False)  # may hold secrets: never logged
    tables: Mapping[str, TableDef] = field(default_factory=lambda: dict(TABLES), repr=False)
    checkpoint_interval: int = DEFAULT_CHECKPOINT_INTERVAL

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Lake:
        """The lake at ``V6_LAKE_URI`` (default ``./.v6/lake``), with S3 credentials from ``env`` for an S3 URI."""
        return cls.for_uri(LakeEnvironment.read(env).uri, env)

    @classmethod
    def for_uri(cls, uri: str, env: Mapping[str, str] | None = None) -> Lake:
        """The lake at ``uri``; for ``s3://`` the storage options come from the ``AWS_*`` variables of ``env``."""
        environ = os.environ if env is None else env
        options: dict[str, str] = {}
        if uri.startswith(("s3://", "s3a://")):
            for env_name, option in _S3_ENV_OPTIONS.items():
                value = environ.get(env_name, "").strip()
                if value:
                    options[option] = value
        return cls.at(uri, options)

    @classmethod
    def at(cls, uri: str, storage_options: Mapping[str, str] | None = None, **kwargs: Any) -> Lake:
        """A lake at ``uri``; local paths are made absolute (and created) so every process agrees on them."""
        if "://" not in uri or uri.startswith("file://"):
            path = Path(uri.removeprefix("file://")).expanduser().resolve()
            path.mkdir(parents=True, exist_ok=True)
            uri = str(path)
        return cls(uri=uri.rstrip("/"), storage_options=dict(storage_options or {}), **kwargs)

    @property
    def is_local(self) -> bool:
        return "://" not in self.uri

    def table_def(self, table: str | TableDef) -> TableDef:
        if isinstance(table, TableDef):
            return table
        try:
            return self.tables[table]
        except KeyError:
            raise KeyError(f"unknown table {table!r}; known: {sorted(self.tables)}") from None

    def table_uri(self, table: str | TableDef) -> str:
        return f"{self.uri}/{self.table_def(table).name}"

    def exists(self, table: str | TableDef) -> bool:
        return self.open(table) is not None

    def open(self, table: str | TableDef) -> DeltaTable | None:
        """A fresh handle on the latest version, or None when the table was never written."""
        try:
            return DeltaTable(self.table_uri(table), storage_options=dict(self.storage_options))
        except TableNotFoundError:
            return None

    def table_configuration(self) -> dict[str, str | None]:
        return {"delta.checkpointInterval": str(self.checkpoint_interval)}

    def ensure_table(self, table: str | TableDef) -> DeltaTable:
        """Open the table, creating it empty from its contract when absent (safe when processes race to create).

        Data is never written by URI: a URI write to a table that appeared meanwhile would bypass the txn fence.
        """
        tdef = self.table_def(table)
        existing = self.open(tdef)
        if existing is not None:
            return existing
        try:
            return DeltaTable.create(
                self.table_uri(tdef),
                tdef.schema,
                mode="ignore",
                partition_by=list(tdef.partition_by),
                name=tdef.name,
                description=tdef.description,
                configuration=self.table_configuration(),
                storage_options=dict(self.storage_options),
                post_commithook_properties=hot_path_hooks(),
            )
        except Exception:
            # Another process committed version 0 first: its table is as good as ours.
            created = self.open(tdef)
            if created is None:
                raise
            return created

    def ensure_tables(self) -> dict[str, int]:
        """Create every registered table that does not exist yet; returns {name: version}."""
        return {name: self.ensure_table(name).version() for name in self.tables}

    # -- reads ----------------------------------------------------------------------------------------------------

    def scan(self, table: str | TableDef) -> pl.LazyFrame:
        """Lazy frame over the table's latest version (empty with the contract's schema when never written)."""
        tdef = self.table_def(table)
        dt = self.open(tdef)
        if dt is None:
            return pl.LazyFrame(schema=tdef.polars_schema)
        return pl.scan_delta(dt, storage_options=dict(self.storage_options) or None, credential_provider=None)

    def read_sessions(self, table: str | TableDef, sessions: Iterable[date]) -> pl.DataFrame:
        wanted = sorted(set(sessions))
        return self.scan(table).filter(pl.col(TRADE_DATE).is_in(wanted)).collect()

    # -- daily outputs --------------------------------------------------------------------------------------------

    def overwrite_sessions(
        self, table: str | TableDef, df: pl.DataFrame, sessions: Sequence[date], *, max_attempts: int = 5
    ) -> OverwriteResult:
        """Replace exactly the ``trade_date`` partitions in ``sessions`` with ``df``'s rows; nothing else changes.

        A session without rows in ``df`` ends up empty. Rows outside ``sessions`` are an error (nothing is written).
        """
        started = time.perf_counter()
        tdef = self.table_def(table)
        if TRADE_DATE not in tdef.partition_by:
            raise LakeSchemaError(tdef.name, None, "overwrite_sessions needs a table partitioned by trade_date")
        wanted = sorted(set(sessions))
        if not wanted:
            raise ValueError(f"{tdef.name}: overwrite_sessions needs at least one session")
        not_sessions = [d for d in wanted if not isinstance(d, date) or not is_session(d)]
        if not_sessions:
            raise ValueError(f"{tdef.name}: not NYSE sessions: {[str(d) for d in not_sessions]}")
        frame = cast_and_validate(tdef, df)
        stray = sorted(set(frame[TRADE_DATE].unique().to_list()) - set(wanted))
        if stray:
            raise LakeSchemaError(
                tdef.name, TRADE_DATE, f"rows for sessions outside the overwrite range: {[str(d) for d in stray]}"
            )
        counts = frame.group_by(TRADE_DATE).len()
        rows_per_session = {d: 0 for d in wanted} | dict(zip(counts[TRADE_DATE], counts["len"], strict=True))
        predicate = f"{TRADE_DATE} IN ({', '.join(repr(d.isoformat()) for d in wanted)})"
        data = frame.to_arrow()
        for attempt in range(1, max_attempts + 1):
            dt = self.ensure_table(tdef)
            version_before = dt.version()
            try:
                merge = check_compatible(tdef, dt)
                write_deltalake(
                    dt,
                    data,
                    mode="overwrite",
                    predicate=predicate,
                    schema_mode="merge" if merge else None,
                    writer_properties=zstd_writer_properties(),
                    commit_properties=CommitProperties(custom_metadata={"v6.sessions": predicate}),
                    post_commithook_properties=hot_path_hooks(),
                )
            except CommitFailedError:
                if attempt == max_attempts:
                    raise
                time.sleep(0.05 * attempt)
                continue
            metrics = _last_operation_metrics(dt)
            return OverwriteResult(
                table=tdef.name,
                sessions=tuple(wanted),
                rows_written=frame.height,
                rows_per_session=rows_per_session,
                table_version_before=version_before,
                table_version_after=dt.version(),
                files_added=_int_or_none(metrics.get("num_added_files", metrics.get("numAddedFiles"))),
                files_removed=_int_or_none(metrics.get("num_removed_files", metrics.get("numRemovedFiles"))),
                duration_s=time.perf_counter() - started,
            )
        raise AssertionError("unreachable")

    # -- maintenance (see v6_assets.lake.maintenance) ---------------------------------------------------------------

    def compact(self, table: str | TableDef, sessions: Iterable[date] | None = None) -> CompactResult:
        from v6_assets.lake.maintenance import compact

        return compact(self, table, sessions)

    def checkpoint(self, table: str | TableDef) -> CheckpointResult:
        from v6_assets.lake.maintenance import checkpoint

        return checkpoint(self, table)

    def cleanup_logs(self, table: str | TableDef, *, log_retention: timedelta | None = None) -> CleanupLogsResult:
        from v6_assets.lake.maintenance import cleanup_logs

        return cleanup_logs(self, table, log_retention=log_retention)

    def vacuum(self, table: str | TableDef, retention: timedelta = timedelta(days=7)) -> VacuumResult:
        from v6_assets.lake.maintenance import vacuum

        return vacuum(self, table, retention)


def _last_operation_metrics(dt: DeltaTable) -> dict[str, Any]:
    history = dt.history(limit=1)
    if not history:
        return {}
    metrics = history[0].get("operationMetrics") or {}
    return dict(metrics) if isinstance(metrics, dict) else {}


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
