"""Session overwrite of the daily outputs and schema evolution, on real tables (local and S3)."""

from __future__ import annotations

from datetime import date

import polars as pl
import pyarrow as pa
import pytest

from v6_assets.lake import TABLES, ColumnDef, Lake, LakeSchemaError, MicroBatchWriter, TableDef
from v6_assets.sessions import sessions_between
from v6_assets_tests.lake.helpers import daily_rows, partition_fingerprint, position_rows

SESSIONS = sessions_between(date(2024, 3, 1), date(2024, 3, 14))  # 10 sessions
PNL = TABLES["daily_pnl"]


def _seed(lake: Lake) -> None:
    for d in SESSIONS:  # one overwrite per session, like one Dagster partition run each
        lake.overwrite_sessions(PNL, daily_rows(PNL, [d], 3, tag=1.0), [d])


def test_overwrite_of_a_three_session_range_leaves_other_sessions_byte_identical(lake: Lake) -> None:
    _seed(lake)
    rewritten = SESSIONS[3:6]
    untouched = [d for d in SESSIONS if d not in rewritten]
    before = {d: partition_fingerprint(lake, "daily_pnl", d) for d in untouched}
    new_rows = pl.concat([daily_rows(PNL, [rewritten[0]], 5, tag=9.0), daily_rows(PNL, [rewritten[2]], 2, tag=9.0)])
    result = lake.overwrite_sessions("daily_pnl", new_rows, rewritten)  # the middle session gets no rows
    assert result.rows_per_session == {rewritten[0]: 5, rewritten[1]: 0, rewritten[2]: 2}
    assert result.files_removed == 3
    after = {d: partition_fingerprint(lake, "daily_pnl", d) for d in untouched}
    assert after == before and all(after.values())
    counts = dict(lake.scan("daily_pnl").group_by("trade_date").len().collect().iter_rows())
    assert counts == {d: 3 for d in untouched} | {rewritten[0]: 5, rewritten[2]: 2}
    read = lake.read_sessions("daily_pnl", rewritten)
    assert read.height == 7 and set(read["pnl"].to_list()) == {9.0, 10.0, 11.0, 12.0, 13.0}


def test_overwrite_rejects_rows_outside_the_range_and_non_sessions(lake: Lake) -> None:
    _seed(lake)
    version = lake.open(PNL).version()  # type: ignore[union-attr]
    with pytest.raises(LakeSchemaError, match="outside the overwrite range"):
        lake.overwrite_sessions(PNL, daily_rows(PNL, SESSIONS[:2], 1), SESSIONS[:1])
    with pytest.raises(ValueError, match="not NYSE sessions"):
        lake.overwrite_sessions(PNL, daily_rows(PNL, [date(2024, 3, 9)], 1), [date(2024, 3, 9)])  # a Saturday
    with pytest.raises(ValueError, match="at least one session"):
        lake.overwrite_sessions(PNL, daily_rows(PNL, [], 1), [])
    assert lake.open(PNL).version() == version  # type: ignore[union-attr]
    assert lake.scan(PNL).collect().height == 3 * len(SESSIONS)


def test_read_and_scan_of_a_missing_table_are_empty_with_the_contract_schema(lake: Lake) -> None:
    assert not lake.exists("exposure")
    empty = lake.read_sessions("exposure", SESSIONS[:1])
    assert empty.height == 0 and empty.schema == TABLES["exposure"].polars_schema


def test_a_new_nullable_column_merges(lake: Lake) -> None:
    writer = MicroBatchWriter(lake, "position_updates")
    writer.append(position_rows(range(5)), app_id="a", version=4, offset_column="spool_offset")
    evolved = TABLES["position_updates"].with_columns(ColumnDef("venue_latency_ms", pa.float64(), "Latency."))
    rows = position_rows(range(5, 10)).with_columns(venue_latency_ms=pl.lit(3.5))
    result = MicroBatchWriter(lake, evolved).append(rows, app_id="a", version=9, offset_column="spool_offset")
    assert result.committed and result.rows_written == 5
    stored = lake.scan(evolved).sort("spool_offset").collect()
    assert stored["venue_latency_ms"].to_list() == [None] * 5 + [3.5] * 5
    assert stored.height == 10


def test_daily_table_schema_merge_through_overwrite(lake: Lake) -> None:
    _seed(lake)
    evolved = PNL.with_columns(ColumnDef("fx_rate", pa.float64(), "FX rate to the base currency."))
    rows = daily_rows(evolved, SESSIONS[:1], 2, tag=5.0)
    lake.overwrite_sessions(evolved, rows, SESSIONS[:1])
    stored = lake.scan(evolved).collect()
    assert stored.filter(pl.col("trade_date") == SESSIONS[0])["fx_rate"].to_list() == [5.0, 6.0]
    assert stored.filter(pl.col("trade_date") != SESSIONS[0])["fx_rate"].null_count() == 3 * (len(SESSIONS) - 1)


@pytest.mark.parametrize(
    "evolved",
    [
        TableDef(
            name="daily_pnl",
            description="pnl retyped",
            columns=tuple(ColumnDef(c.name, pa.string(), c.description) if c.name == "pnl" else c for c in PNL.columns),
        ),
        PNL.with_columns(ColumnDef("must_have", pa.int64(), "A non-nullable addition.", nullable=False)),
        TableDef(name="daily_pnl", description="dropped", columns=tuple(c for c in PNL.columns if c.name != "pnl")),
    ],
    ids=["type-change", "new-non-nullable", "dropped-column"],
)
def test_incompatible_changes_are_clear_errors_not_rewrites(lake: Lake, evolved: TableDef) -> None:
    _seed(lake)
    version = lake.open(PNL).version()  # type: ignore[union-attr]
    rows = daily_rows(evolved, SESSIONS[:1], 1)
    if "must_have" in rows.columns:
        rows = rows.with_columns(must_have=pl.lit(1, pl.Int64))
    with pytest.raises(LakeSchemaError, match=r"incompatible change|must be nullable|not in the contract"):
        lake.overwrite_sessions(evolved, rows, SESSIONS[:1])
    assert lake.open(PNL).version() == version  # type: ignore[union-attr]
    assert lake.scan(PNL).collect().schema == PNL.polars_schema
