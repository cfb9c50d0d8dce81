"""The exactly-once micro-batch writer on real Delta tables (local dir and moto S3 on loopback)."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from datetime import date

import polars as pl
import pytest
from deltalake import CommitProperties, Transaction, write_deltalake
from deltalake.exceptions import CommitFailedError

from v6_assets.lake import POSITION_UPDATES, Lake, LakeSchemaError, MicroBatchWriter, cast_and_validate
from v6_assets_tests.lake._concurrent_worker import replay_spool
from v6_assets_tests.lake.helpers import greeks_rows, offsets_in, position_rows

APP = "stream-a"


def test_first_append_creates_partitioned_table_and_records_txn(lake: Lake) -> None:
    writer = MicroBatchWriter(lake, "position_updates")
    assert writer.committed_version(APP) is None
    result = writer.append(position_rows(range(40)), app_id=APP, version=39, offset_column="spool_offset")
    assert result.committed and result.rows_written == 40 and result.rows_skipped == 0
    assert (result.previous_version, result.new_version, result.table_version) == (None, 39, 1)  # v0 = create
    # 40 updates 37 min apart from Monday 09:30 ET: Monday's session until its 16:15 ET cut, then Tuesday's.
    assert result.partitions == (date(2024, 3, 4), date(2024, 3, 5))
    dt = lake.open("position_updates")
    assert dt is not None and dt.metadata().partition_columns == ["trade_date"]
    stored = lake.scan("position_updates").collect()
    assert stored.height == 40
    assert stored.schema["received_at"] == pl.Datetime("us", "UTC")
    # A fresh writer (another process after a restart) reads the version from the Delta log alone.
    assert MicroBatchWriter(lake, "position_updates").committed_version(APP) == 39


def test_replay_after_crash_with_a_different_cut_adds_no_duplicate(lake: Lake) -> None:
    writer = MicroBatchWriter(lake, "position_updates")
    for lo in range(0, 30, 10):  # the original run committed offsets 0..29 in batches of 10
        writer.append(position_rows(range(lo, lo + 10)), app_id=APP, version=lo + 9, offset_column="spool_offset")
    # Crash: the write of 20..29 landed, the caller's cursor still says 19; it re-reads 15..44 as one batch.
    restarted = MicroBatchWriter(lake, "position_updates")
    result = restarted.append(position_rows(range(15, 45)), app_id=APP, version=44, offset_column="spool_offset")
    assert result.committed
    assert (result.rows_written, result.rows_skipped) == (15, 15)
    assert (result.previous_version, result.new_version) == (29, 44)
    # Replaying the very same range again is a reported skip.
    again = restarted.append(position_rows(range(15, 45)), app_id=APP, version=44, offset_column="spool_offset")
    assert again.status == "skipped" and again.rows_written == 0 and again.rows_skipped == 30
    assert offsets_in(lake) == list(range(45))


def test_whole_batch_semantics_without_offset_column(lake: Lake) -> None:
    writer = MicroBatchWriter(lake, "greeks_updates")
    first = writer.append(greeks_rows(range(5)), app_id="g", version=1)
    replay = writer.append(greeks_rows(range(5)), app_id="g", version=1)
    older = writer.append(greeks_rows(range(5, 9)), app_id="g", version=0)
    newer = writer.append(greeks_rows(range(5, 9)), app_id="g", version=2)
    assert [r.status for r in (first, replay, older, newer)] == ["committed", "skipped", "skipped", "committed"]
    assert older.previous_version == 1 and older.new_version == 1  # a lower version never moves the txn back
    assert writer.committed_version("g") == 2
    assert offsets_in(lake, "greeks_updates") == list(range(9))


def test_app_ids_are_independent(lake: Lake) -> None:
    writer = MicroBatchWriter(lake, "position_updates")
    writer.append(position_rows(range(3), stream_id="a"), app_id="a", version=2, offset_column="spool_offset")
    result = writer.append(position_rows(range(3), stream_id="b"), app_id="b", version=2, offset_column="spool_offset")
    assert result.committed and result.rows_written == 3
    assert (writer.committed_version("a"), writer.committed_version("b")) == (2, 2)


def test_stale_handle_is_fenced_by_the_concurrent_txn_and_retried(lake: Lake) -> None:
    first = MicroBatchWriter(lake, "position_updates")
    first.append(position_rows(range(10)), app_id=APP, version=9, offset_column="spool_offset")
    stale = lake.open("position_updates")
    assert stale is not None and stale.transaction_version(APP) == 9
    # A second writer commits 10..19 for the same app id behind the stale handle's back.
    MicroBatchWriter(lake, "position_updates").append(
        position_rows(range(10, 20)), app_id=APP, version=19, offset_column="spool_offset"
    )
    # delta-rs itself rejects a commit of the same app id from the handle that read the older version.
    with pytest.raises(CommitFailedError, match=r"(?i)concurrent transaction"):
        write_deltalake(
            stale,
            cast_and_validate(POSITION_UPDATES, position_rows(range(10, 20))).to_arrow(),
            mode="append",
            commit_properties=CommitProperties(app_transactions=[Transaction(APP, 19)]),
        )
    # The writer's own handle misses the refresh (as if the other commit landed between its read and its write):
    # its first attempt is fenced, it re-reads the log and commits only the new rows.
    handle = first._dt
    assert handle is not None
    handle.update_incremental = lambda: None  # type: ignore[method-assign]
    result = first.append(position_rows(range(10, 25)), app_id=APP, version=24, offset_column="spool_offset")
    assert result.attempts == 2
    assert (result.previous_version, result.rows_written, result.rows_skipped) == (19, 5, 10)
    assert offsets_in(lake) == list(range(25))


@pytest.mark.parametrize("use_offsets", [True, False], ids=["offset-rows", "whole-batch"])
def test_two_processes_same_app_id_each_batch_exactly_once(lake: Lake, use_offsets: bool) -> None:
    n_rows = 120
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager, ProcessPoolExecutor(max_workers=2, mp_context=ctx) as pool:
        start = manager.Event()
        # Offset mode: the two processes cut the same spool differently (like a replay after a lost cursor).
        batches = (8, 13) if use_offsets else (10, 10)
        futures = [
            pool.submit(replay_spool, lake.uri, dict(lake.storage_options), APP, n_rows, b, use_offsets, start)
            for b in batches
        ]
        start.set()
        reports = [f.result(timeout=240) for f in futures]
    assert offsets_in(lake) == list(range(n_rows))  # every row exactly once
    assert sum(r["rows_written"] for r in reports) == n_rows
    assert MicroBatchWriter(lake, "position_updates").committed_version(APP) == n_rows - 1
    if not use_offsets:  # identical cuts: each batch committed by exactly one of the two processes
        assert sum(r["skipped_batches"] for r in reports) == n_rows // 10


def test_empty_remainder_still_advances_the_version(lake: Lake) -> None:
    writer = MicroBatchWriter(lake, "position_updates")
    writer.append(position_rows(range(10)), app_id=APP, version=9, offset_column="spool_offset")
    # Offsets 10..12 were filtered out upstream (other accounts): the batch is empty but the cursor moves on.
    result = writer.append(position_rows(range(5, 10)), app_id=APP, version=12, offset_column="spool_offset")
    assert result.committed and result.rows_written == 0 and result.rows_skipped == 5
    assert writer.committed_version(APP) == 12
    assert offsets_in(lake) == list(range(10))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda df: df.drop("account"), "account: missing column"),
        (lambda df: df.with_columns(position=pl.lit("abc")), "position: cannot cast"),
        (lambda df: df.with_columns(market_price=pl.lit(1.7976931348623157e308)), "UNSET_DOUBLE"),
        (lambda df: df.with_columns(account=pl.lit("")), "empty string"),
        (lambda df: df.with_columns(con_id=pl.lit(None, pl.Int64)), "con_id: 10 null"),
        (lambda df: df.with_columns(received_at=pl.col("received_at").dt.replace_time_zone(None)), "naive"),
        (lambda df: df.with_columns(bogus=pl.lit(1)), "not in the table contract"),
    ],
    ids=["missing", "uncastable", "sentinel", "empty-account", "null-key", "naive-ts", "extra-column"],
)
def test_bad_batches_raise_clearly_and_write_nothing(lake: Lake, mutate: object, message: str) -> None:
    writer = MicroBatchWriter(lake, "position_updates")
    writer.append(position_rows(range(5)), app_id=APP, version=4, offset_column="spool_offset")
    bad = mutate(position_rows(range(5, 15)))  # type: ignore[operator]
    with pytest.raises(LakeSchemaError, match=message):
        writer.append(bad, app_id=APP, version=14, offset_column="spool_offset")
    assert writer.committed_version(APP) == 4
    assert offsets_in(lake) == list(range(5))
    # The good batch still goes in afterwards: nothing was lost.
    writer.append(position_rows(range(5, 15)), app_id=APP, version=14, offset_column="spool_offset")
    assert offsets_in(lake) == list(range(15))


def test_bad_offsets_and_versions_are_rejected(lake: Lake) -> None:
    writer = MicroBatchWriter(lake, "position_updates")
    rows = position_rows(range(5))
    with pytest.raises(ValueError, match="above its version"):
        writer.append(rows, app_id=APP, version=3, offset_column="spool_offset")
    with pytest.raises(ValueError, match="duplicate offsets"):
        writer.append(pl.concat([rows, rows]), app_id=APP, version=4, offset_column="spool_offset")
    with pytest.raises(ValueError, match="non-negative int"):
        writer.append(rows, app_id=APP, version=-1, offset_column="spool_offset")
    with pytest.raises(ValueError, match="app_id"):
        writer.append(rows, app_id="", version=4, offset_column="spool_offset")
    assert not lake.exists("position_updates")
