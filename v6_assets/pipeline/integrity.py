"""The lake's integrity, checked periodically by the streaming sensor (issue 17, point 4). No Dagster import here.

Two checks, both cheap enough for every few minutes:

- every data file the Delta log of each table references exists (a deleted or lost ``part-*.parquet`` otherwise goes
  unnoticed until the next read fails); local lakes only: an object store's own durability covers the rest;
- the spool offsets of the stream in ``position_updates`` + ``greeks_updates`` are contiguous from the lowest to the
  highest and none is stored twice (exactly-once, observed rather than assumed).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlparse

import polars as pl

from v6_assets.lake import GREEKS_UPDATES, POSITION_UPDATES, STREAM_HEALTH, Lake

# The tables a stream's spool offsets go to (each offset in exactly one of them).
_OFFSET_TABLES = (POSITION_UPDATES.name, GREEKS_UPDATES.name, STREAM_HEALTH.name)

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


def check_lake(lake: Lake, stream_id: str, tables: Iterable[str] | None = None) -> IntegrityReport:
    """Check ``tables`` (default: every table of the lake) and the stream's offsets; never raises for a finding."""
    missing: dict[str, list[str]] = {}
    checked = 0
    for table in tables if tables is not None else sorted(lake.tables):
        dt = lake.open(table)
        if dt is None:
            continue
        for uri in dt.file_uris():
            path = _local_path(uri)
            if path is None:
                continue
            checked += 1
            if not path.exists():
                missing.setdefault(table, []).append(path.name)
    if any(missing.get(table) for table in _OFFSET_TABLES):
        # The offsets cannot be read without the files: report the files alone.
        return IntegrityReport(stream_id, checked, missing)
    frames = []
    for table in _OFFSET_TABLES:
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
