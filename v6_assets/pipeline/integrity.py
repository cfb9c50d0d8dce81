"""The lake's integrity, checked periodically by the streaming sensor (issue 17, point 4). No Dagster import here.

Two checks, both cheap enough for every few minutes:

- every data file the Delta log of each table references exists (a deleted or lost ``part-*.parquet`` otherwise goes
  unnoticed until the next read fails): a stat per file on a local lake; on an object store (S3, MinIO, R2) one
  recursive LIST of the table's prefix (about one request per 1,000 objects) through delta-rs' own object store with
  the lake's storage options, compared with the log;
- the spool offsets of the stream in the streamed tables (positions, greeks, executions, account values) are
  contiguous from the lowest to the
  highest and none is stored twice (exactly-once, observed rather than assumed).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

import polars as pl
from deltalake import DeltaTable
from deltalake.fs import DeltaStorageHandler
from pyarrow.fs import FileSelector, FileType

from v6_assets.lake import ACCOUNT_VALUES, EXECUTIONS, GREEKS_UPDATES, POSITION_UPDATES, Lake

# Every table fed by the spool: the offsets of one stream are spread over them.
_STREAMED = (POSITION_UPDATES.name, GREEKS_UPDATES.name, EXECUTIONS.name, ACCOUNT_VALUES.name)

REPAIR_HINT = (
    "Restore the missing files from a backup or snapshot of the lake. If they cannot be restored, remove them from "
    "the log (deltalake: DeltaTable(table_uri).repair()) and accept the gap: the streamed rows they held are gone "
    "from the spool once acknowledged; the daily tables are rebuilt by re-materializing their partitions."
)


class LakeIntegrityError(RuntimeError):
    """The lake lost data files or spool offsets: the message lists them and says how to repair."""


@dataclass(frozen=True)
class IntegrityReport:
    stream_id: str
    files_checked: int = 0
    missing_files: dict[str, list[str]] = field(default_factory=dict)  # table -> missing file paths
    offsets_checked: int = 0
    offset_range: tuple[int, int] | None = None
    missing_offsets: int = 0
    duplicated_offsets: int = 0

    @property
    def ok(self) -> bool:
        return not self.missing_files and not self.missing_offsets and not self.duplicated_offsets

    def describe(self) -> str:
        if self.ok:
            return (
                f"lake integrity ok: {self.files_checked} data files present; {self.offsets_checked} offsets of "
                f"{self.stream_id} contiguous {self.offset_range}"
            )
        parts = []
        for table, files in sorted(self.missing_files.items()):
            shown = ", ".join(files[:3]) + (f" and {len(files) - 3} more" if len(files) > 3 else "")
            parts.append(f"{table}: {len(files)} data file(s) referenced by the Delta log are missing ({shown})")
        if self.missing_offsets or self.duplicated_offsets:
            parts.append(
                f"stream {self.stream_id}: {self.missing_offsets} spool offset(s) missing and "
                f"{self.duplicated_offsets} duplicated in {self.offset_range}"
            )
        return "LAKE INTEGRITY FAILURE: " + "; ".join(parts) + ". " + REPAIR_HINT


def _local_path(uri: str) -> Path | None:
    if "://" not in uri:
        return Path(uri)
    parsed = urlparse(uri)
    return Path(unquote(parsed.path)) if parsed.scheme == "file" else None


def _missing_local(uris: list[str]) -> list[str]:
    missing = []
    for uri in uris:
        path = _local_path(uri)
        if path is not None and not path.exists():
            missing.append(path.name)
    return missing


def _missing_in_store(lake: Lake, table: str, dt: DeltaTable) -> list[str]:
    """Data files the log references that a LIST of the table's prefix does not return (names, sorted)."""
    store = DeltaStorageHandler(lake.table_uri(table), dict(lake.storage_options))
    listed = {
        unquote(info.path).lstrip("/")
        for info in store.get_file_info_selector(FileSelector("", recursive=True))
        if info.type == FileType.File
    }
    referenced = [unquote(str(p)).lstrip("/") for p in dt.get_add_actions(flatten=True).column("path").to_pylist()]
    return sorted(Path(p).name for p in referenced if p not in listed)


def check_lake(lake: Lake, stream_id: str, tables: Iterable[str] | None = None) -> IntegrityReport:
    """Check ``tables`` (default: every table of the lake) and the stream's offsets; never raises for a finding."""
    missing: dict[str, list[str]] = {}
    checked = 0
    for table in tables if tables is not None else sorted(lake.tables):
        dt = lake.open(table)
        if dt is None:
            continue
        uris = dt.file_uris()
        checked += len(uris)
        lost = _missing_local(uris) if _local_path(lake.table_uri(table)) else _missing_in_store(lake, table, dt)
        if lost:
            missing[table] = lost
    if any(missing.get(table) for table in _STREAMED):
        # The offsets cannot be read without the files: report the files alone.
        return IntegrityReport(stream_id, checked, missing)
    frames = []
    for table in _STREAMED:
        if lake.open(table) is not None:
            frames.append(lake.scan(table).filter(pl.col("stream_id") == stream_id).select("spool_offset"))
    if not frames:
        return IntegrityReport(stream_id, checked, missing)
    stats = (
        pl.concat(frames)
        .select(
            n=pl.len(),
            distinct=pl.col("spool_offset").n_unique(),
            lo=pl.col("spool_offset").min(),
            hi=pl.col("spool_offset").max(),
        )
        .collect()
        .row(0, named=True)
    )
    if not stats["n"]:
        return IntegrityReport(stream_id, checked, missing)
    lo, hi = int(stats["lo"]), int(stats["hi"])
    return IntegrityReport(
        stream_id,
        checked,
        missing,
        offsets_checked=int(stats["n"]),
        offset_range=(lo, hi),
        missing_offsets=(hi - lo + 1) - int(stats["distinct"]),
        duplicated_offsets=int(stats["n"]) - int(stats["distinct"]),
    )
