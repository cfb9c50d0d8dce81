"""Run in a spawned subprocess: replay one spool into the lake with its own batch cut (see test_writer)."""

from __future__ import annotations

from typing import Any

from v6_assets.lake import Lake, MicroBatchWriter
from v6_assets_tests.lake.helpers import position_rows


def replay_spool(
    uri: str, storage_options: dict[str, str], app_id: str, n_rows: int, batch: int, use_offsets: bool, start: Any
) -> dict[str, int]:
    start.wait(60)  # both processes begin together so their commits interleave
    lake = Lake.at(uri, storage_options)
    writer = MicroBatchWriter(lake, "position_updates", reopen_every=5)
    committed = skipped_batches = attempts = 0
    for lo in range(0, n_rows, batch):
        offsets = range(lo, min(lo + batch, n_rows))
        result = writer.append(
            position_rows(offsets, stream_id=app_id),
            app_id=app_id,
            version=offsets[-1],
            offset_column="spool_offset" if use_offsets else None,
        )
        committed += result.rows_written
        skipped_batches += 0 if result.committed else 1
        attempts += result.attempts
    return {"rows_written": committed, "skipped_batches": skipped_batches, "attempts": attempts}
