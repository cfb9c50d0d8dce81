"""Maintenance on a table written by many micro-batches: compact, checkpoint, clean up logs, vacuum."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from v6_assets.lake import Lake, MicroBatchWriter
from v6_assets_tests.lake.helpers import offsets_in, partition_fingerprint, position_rows

MONDAY, TUESDAY = date(2024, 3, 4), date(2024, 3, 5)


def _many_commits(lake: Lake, n_batches: int = 24) -> MicroBatchWriter:
    writer = MicroBatchWriter(lake, "position_updates")
    for b in range(n_batches):  # 4 rows, 37 min apart: the first 11 offsets are Monday, the rest Tuesday onwards
        offsets = range(4 * b, 4 * b + 4)
        writer.append(position_rows(offsets), app_id="a", version=offsets[-1], offset_column="spool_offset")
    return writer


def test_compact_given_sessions_only_and_reads_are_unchanged(lake: Lake) -> None:
    _many_commits(lake)
    data_before = lake.scan("position_updates").sort("spool_offset").collect()
    tuesday_files = partition_fingerprint(lake, "position_updates", TUESDAY)
    result = lake.compact("position_updates", [MONDAY])
    assert result.files_before == 3 and result.files_after == 1  # offsets 0-3, 4-7, 8-10 -> one file
    assert result.files_removed == 3 and result.files_added == 1
    assert result.version_after == result.version_before + 1
    assert partition_fingerprint(lake, "position_updates", TUESDAY) == tuesday_files
    assert lake.scan("position_updates").sort("spool_offset").collect().equals(data_before)
    meta = result.as_metadata()
    assert meta["sessions"] == ["2024-03-04"] and meta["files_after"] == 1
    # The txn survives compaction: a replay is still skipped.
    again = MicroBatchWriter(lake, "position_updates").append(
        position_rows(range(90, 96)), app_id="a", version=95, offset_column="spool_offset"
    )
    assert again.status == "skipped"
    with pytest.raises(ValueError, match="at least one session"):
        lake.compact("position_updates", [])


def test_checkpoint_cleanup_and_vacuum_report_what_they_did(lake: Lake) -> None:
    _many_commits(lake)
    whole = lake.compact("position_updates")
    assert whole.files_after < whole.files_before
    checkpoint = lake.checkpoint("position_updates")
    assert checkpoint.log_files_after == checkpoint.log_files_before + 1
    cleanup = lake.cleanup_logs("position_updates", log_retention=timedelta(0))
    assert cleanup.log_files_after < cleanup.log_files_before and cleanup.log_bytes_after < cleanup.log_bytes_before
    assert cleanup.log_retention == "interval 0 seconds"
    kept = lake.vacuum("position_updates")  # default 7 days: the freshly compacted-away files stay
    assert kept.files_deleted == 0 and kept.files_after == kept.files_before
    vacuum = lake.vacuum("position_updates", retention=timedelta(0))
    assert vacuum.files_deleted == whole.files_removed
    assert vacuum.files_after == whole.files_after and vacuum.bytes_deleted > 0
    # After all of it the table loads from the checkpoint, data and txn intact.
    assert offsets_in(lake) == list(range(96))
    assert MicroBatchWriter(lake, "position_updates").committed_version("a") == 95
    assert set(vacuum.as_metadata()) >= {"files_deleted", "bytes_deleted", "version_before", "version_after"}


def test_maintenance_of_a_missing_table_is_a_clear_error(lake: Lake) -> None:
    with pytest.raises(FileNotFoundError, match="eod_positions does not exist"):
        lake.compact("eod_positions", [MONDAY])
    with pytest.raises(ValueError, match="must not be negative"):
        _many_commits(lake, 1)
        lake.vacuum("position_updates", retention=timedelta(hours=-1))
