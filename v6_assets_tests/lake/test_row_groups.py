"""Files written to the lake hold row groups of ``ROW_GROUP_ROWS`` rows (not one row group per file), so readers
parallelise and skip by row-group statistics: both the session overwrite and the micro-batch append."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pyarrow.parquet as pq

from v6_assets import analytics
from v6_assets.lake import Lake, MicroBatchWriter
from v6_assets.lake.store import ROW_GROUP_ROWS

SESSION = date(2025, 6, 3)
ROWS = 2 * ROW_GROUP_ROWS + 1_000


def _row_groups(lake: Lake, table: str) -> list[list[int]]:
    dt = lake.open(table)
    assert dt is not None
    out = []
    for uri in dt.file_uris():
        meta = pq.ParquetFile(uri.removeprefix("file://")).metadata
        out.append([meta.row_group(i).num_rows for i in range(meta.num_row_groups)])
    return out


def test_a_session_overwrite_writes_row_groups_of_the_configured_size(tmp_path: Path) -> None:
    lake = Lake.at(str(tmp_path / "lake"))
    frames = analytics.synthetic_updates(ROWS, 50, SESSION, seed=3)
    lake.overwrite_sessions("position_updates", frames.updates, [SESSION])
    groups = _row_groups(lake, "position_updates")
    assert sum(map(sum, groups)) == frames.updates.height == ROWS
    assert max(map(len, groups)) >= 2, groups  # before: one row group per file
    assert max(n for file in groups for n in file) == ROW_GROUP_ROWS


def test_a_micro_batch_append_writes_row_groups_of_the_configured_size(tmp_path: Path) -> None:
    lake = Lake.at(str(tmp_path / "lake"))
    frames = analytics.synthetic_updates(ROWS, 50, SESSION, seed=4)
    updates = frames.updates.with_columns(spool_offset=frames.updates["spool_offset"].rank("ordinal").cast(int))
    result = MicroBatchWriter(lake, "position_updates").append(
        updates, app_id="s", version=ROWS, offset_column="spool_offset"
    )
    assert result.committed
    groups = _row_groups(lake, "position_updates")
    assert sum(map(sum, groups)) == ROWS
    assert max(n for file in groups for n in file) == ROW_GROUP_ROWS
