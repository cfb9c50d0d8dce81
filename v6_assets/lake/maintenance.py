"""Table maintenance: compact partitions, checkpoint, clean up expired log files, vacuum.

Thousands of micro-batch commits leave thousands of small files and log entries; these keep reads fast. Each
function returns a small result (files/bytes/versions before and after) with ``as_metadata()`` for Dagster. They run
beside the streaming writer safely: compaction commits with dataChange=false and does not conflict with appends.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import pyarrow.fs as pafs
from deltalake import DeltaTable

from v6_assets.contracts.tables import TRADE_DATE, TableDef
from v6_assets.lake.store import Lake, hot_path_hooks, zstd_writer_properties

DEFAULT_VACUUM_RETENTION = timedelta(days=7)
DEFAULT_TARGET_FILE_SIZE = 128 * 1024 * 1024
_LOG_JSON = re.compile(r"^\d{20}\.json$")
_LOG_CHECKPOINT = re.compile(r"^\d{20}\.checkpoint(\.\d+\.\d+)?\.parquet$")


@dataclass(frozen=True)
class FileStats:
    files: int
    bytes: int


@dataclass(frozen=True)
class _Result:
    table: str
    version_before: int
    version_after: int
    duration_s: float

    def as_metadata(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                value = [v.isoformat() if isinstance(v, date) else v for v in value]
            elif isinstance(value, float):
                value = round(value, 4)
            out[f.name] = value
        return out


@dataclass(frozen=True)
class CompactResult(_Result):
    sessions: tuple[date, ...]  # () = whole table
    files_before: int  # active data files in the compacted scope
    files_after: int
    bytes_before: int
    bytes_after: int
    files_added: int
    files_removed: int


@dataclass(frozen=True)
class CheckpointResult(_Result):
    log_files_before: int  # commit json files + checkpoint parquet files in _delta_log
    log_files_after: int
    checkpoint_version: int


@dataclass(frozen=True)
class CleanupLogsResult(_Result):
    log_files_before: int
    log_files_after: int
    log_bytes_before: int
    log_bytes_after: int
    log_retention: str


@dataclass(frozen=True)
class VacuumResult(_Result):
    retention_hours: float
    files_deleted: int
    bytes_deleted: int
    files_before: int  # every data file in storage (referenced or not)
    files_after: int
    bytes_before: int
    bytes_after: int


def _open(lake: Lake, table: str | TableDef) -> tuple[TableDef, DeltaTable]:
    tdef = lake.table_def(table)
    dt = lake.open(tdef)
    if dt is None:
        raise FileNotFoundError(f"table {tdef.name} does not exist at {lake.table_uri(tdef)}")
    return tdef, dt


def table_filesystem(lake: Lake, table: str | TableDef) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and the table's root path in it (local or S3), for listing and reading raw files."""
    uri = lake.table_uri(table)
    if lake.is_local:
        return pafs.LocalFileSystem(), uri
    scheme, _, path = uri.partition("://")
    if scheme not in ("s3", "s3a"):
        raise ValueError(f"unsupported lake URI scheme {scheme!r} for maintenance listings")
    opts = {k.upper(): v for k, v in lake.storage_options.items()}
    endpoint = opts.get("AWS_ENDPOINT_URL", "")
    fs = pafs.S3FileSystem(
        access_key=opts.get("AWS_ACCESS_KEY_ID"),
        secret_key=opts.get("AWS_SECRET_ACCESS_KEY"),
        session_token=opts.get("AWS_SESSION_TOKEN"),
        region=opts.get("AWS_REGION") or "us-east-1",
        endpoint_override=endpoint.split("://", 1)[-1] or None,
        scheme="http" if endpoint.startswith("http://") else "https",
    )
    return fs, path


def _listing(lake: Lake, tdef: TableDef, base: str, recursive: bool) -> list[pafs.FileInfo]:
    fs, root = table_filesystem(lake, tdef)
    directory = f"{root}/{base}" if base else root
    infos = fs.get_file_info(pafs.FileSelector(directory, allow_not_found=True, recursive=recursive))
    prefix = root.rstrip("/") + "/"
    return [i for i in infos if i.type == pafs.FileType.File and i.path.startswith(prefix)]


def _log_stats(lake: Lake, tdef: TableDef) -> FileStats:
    infos = [
        i
        for i in _listing(lake, tdef, "_delta_log", recursive=False)
        if _LOG_JSON.match(i.base_name) or _LOG_CHECKPOINT.match(i.base_name)
    ]
    return FileStats(len(infos), sum(i.size or 0 for i in infos))


def _storage_data_stats(lake: Lake, tdef: TableDef) -> FileStats:
    infos = [
        i
        for i in _listing(lake, tdef, "", recursive=True)
        if i.base_name.endswith(".parquet") and "/_delta_log/" not in i.path
    ]
    return FileStats(len(infos), sum(i.size or 0 for i in infos))


def active_files(dt: DeltaTable, sessions: Iterable[date] | None = None) -> FileStats:
    """Data files the current version references (optionally only in the given trade_date partitions)."""
    actions = dt.get_add_actions(flatten=True)
    sizes = actions.column("size_bytes").to_pylist()
    if sessions is None:
        return FileStats(len(sizes), sum(sizes))
    wanted = set(sessions)
    values = actions.column(f"partition.{TRADE_DATE}").to_pylist()
    picked = [s for s, v in zip(sizes, values, strict=True) if _as_date(v) in wanted]
    return FileStats(len(picked), sum(picked))


def _as_date(value: Any) -> date | None:
    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


def compact(
    lake: Lake,
    table: str | TableDef,
    sessions: Iterable[date] | None = None,
    *,
    target_file_size: int = DEFAULT_TARGET_FILE_SIZE,
) -> CompactResult:
    """Bin-pack the small files of the given trade_date partitions (all partitions when ``sessions`` is None)."""
    started = time.perf_counter()
    tdef, dt = _open(lake, table)
    wanted = tuple(sorted(set(sessions))) if sessions is not None else ()
    if sessions is not None and not wanted:
        raise ValueError(f"{tdef.name}: compact needs at least one session (or None for the whole table)")
    scope = wanted if sessions is not None else None
    before = active_files(dt, scope)
    version_before = dt.version()
    filters = [(TRADE_DATE, "in", [d.isoformat() for d in wanted])] if wanted else None
    metrics = dt.optimize.compact(
        partition_filters=filters,
        target_size=target_file_size,
        max_concurrent_tasks=2,
        writer_properties=zstd_writer_properties(),
        post_commithook_properties=hot_path_hooks(),
    )
    after = active_files(dt, scope)
    return CompactResult(
        table=tdef.name,
        version_before=version_before,
        version_after=dt.version(),
        duration_s=time.perf_counter() - started,
        sessions=wanted,
        files_before=before.files,
        files_after=after.files,
        bytes_before=before.bytes,
        bytes_after=after.bytes,
        files_added=int(metrics.get("numFilesAdded", 0)),
        files_removed=int(metrics.get("numFilesRemoved", 0)),
    )


def checkpoint(lake: Lake, table: str | TableDef) -> CheckpointResult:
    """Write a checkpoint at the current version so loads need not replay the JSON log."""
    started = time.perf_counter()
    tdef, dt = _open(lake, table)
    before = _log_stats(lake, tdef)
    dt.create_checkpoint()
    after = _log_stats(lake, tdef)
    return CheckpointResult(
        table=tdef.name,
        version_before=dt.version(),
        version_after=dt.version(),
        duration_s=time.perf_counter() - started,
        log_files_before=before.files,
        log_files_after=after.files,
        checkpoint_version=dt.version(),
    )


def cleanup_logs(lake: Lake, table: str | TableDef, *, log_retention: timedelta | None = None) -> CleanupLogsResult:
    """Delete log files older than the log retention that precede the latest checkpoint.

    ``log_retention`` (when given and different) is stored first as the table's ``delta.logRetentionDuration``
    (one metadata commit), since delta-rs reads the retention from the table configuration.
    """
    started = time.perf_counter()
    tdef, dt = _open(lake, table)
    version_before = dt.version()
    if log_retention is not None:
        if log_retention < timedelta(0):
            raise ValueError("log_retention must not be negative")
        wanted = f"interval {int(log_retention.total_seconds())} seconds"
        if dt.metadata().configuration.get("delta.logRetentionDuration") != wanted:
            dt.alter.set_table_properties(
                {"delta.logRetentionDuration": wanted},
                raise_if_not_exists=False,
                post_commithook_properties=hot_path_hooks(),
            )
    retention = dt.metadata().configuration.get("delta.logRetentionDuration") or "interval 30 days (default)"
    before = _log_stats(lake, tdef)
    dt.cleanup_metadata()
    after = _log_stats(lake, tdef)
    return CleanupLogsResult(
        table=tdef.name,
        version_before=version_before,
        version_after=dt.version(),
        duration_s=time.perf_counter() - started,
        log_files_before=before.files,
        log_files_after=after.files,
        log_bytes_before=before.bytes,
        log_bytes_after=after.bytes,
        log_retention=retention,
    )


def vacuum(lake: Lake, table: str | TableDef, retention: timedelta = DEFAULT_VACUUM_RETENTION) -> VacuumResult:
    """Delete data files no longer referenced and older than ``retention`` (default 7 days).

    A retention below the table's deletedFileRetentionDuration is honoured (the caller chose it); readers of
    versions older than ``retention`` may then fail.
    """
    started = time.perf_counter()
    tdef, dt = _open(lake, table)
    if retention < timedelta(0):
        raise ValueError("retention must not be negative")
    hours = retention.total_seconds() / 3600
    before = _storage_data_stats(lake, tdef)
    version_before = dt.version()
    deleted = dt.vacuum(
        retention_hours=int(hours),
        dry_run=False,
        enforce_retention_duration=False,
        post_commithook_properties=hot_path_hooks(),
    )
    after = _storage_data_stats(lake, tdef)
    return VacuumResult(
        table=tdef.name,
        version_before=version_before,
        version_after=dt.version(),
        duration_s=time.perf_counter() - started,
        retention_hours=hours,
        files_deleted=len(deleted),
        bytes_deleted=max(0, before.bytes - after.bytes),
        files_before=before.files,
        files_after=after.files,
        bytes_before=before.bytes,
        bytes_after=after.bytes,
    )
