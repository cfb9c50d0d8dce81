"""The table registry and cast_and_validate(): contracts derived from the event dataclasses, clear errors on bad
input."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime

import polars as pl
import pyarrow as pa
import pytest

from v6_assets.contracts.streams import GREEKS_UPDATE_FIELDS, POSITION_UPDATE_FIELDS
from v6_assets.contracts.unset import is_ib_unset
from v6_assets.lake import GREEKS_UPDATES, POSITION_UPDATES, TABLES, LakeSchemaError, cast_and_validate
from v6_assets_tests.lake.helpers import daily_rows, position_rows


def test_registry_holds_every_table_with_descriptions_and_trade_date_partitions() -> None:
    assert set(TABLES) == {
        "position_updates",
        "greeks_updates",
        "stream_health",
        "executions",
        "account_values",
        "eod_positions",
        "daily_pnl",
        "exposure",
        "book_pnl",
        "position_events",
        "pnl_explain",
        "risk_scenarios",
        "expiry_ladder",
        "account_eod",
        "account_pnl",
        "statement_positions",
        "statement_trades",
        "statement_mtm",
        "statement_cash",
        "statement_files",
        "reconciliation",
    }
    for table in TABLES.values():
        assert table.partition_by == ("trade_date",)
        assert table.schema.field("trade_date").type == pa.date32()
        assert all(desc.strip() for desc in table.column_descriptions.values()), table.name
        assert len(set(table.column_names)) == len(table.column_names)


def test_stream_tables_are_the_event_fields_plus_lake_columns() -> None:
    extra = ["trade_date", "stream_id", "spool_offset", "ingested_at"]
    assert list(POSITION_UPDATES.column_names) == [*POSITION_UPDATE_FIELDS, *extra]
    assert list(GREEKS_UPDATES.column_names) == [*GREEKS_UPDATE_FIELDS, *extra]
    schema = POSITION_UPDATES.schema
    assert schema.field("expiry").type == pa.date32() and schema.field("expiry").nullable
    assert schema.field("received_at").type == pa.timestamp("us", tz="UTC")
    assert schema.field("strike").type == pa.float64() and schema.field("strike").nullable
    assert not schema.field("account").nullable and not schema.field("con_id").nullable
    assert schema.field("source").type == pa.string()


def test_daily_output_columns_match_the_contract() -> None:
    assert TABLES["exposure"].column_names[:5] == ("trade_date", "account", "underlying", "expiry", "currency")
    assert "pnl_minus_ib" in TABLES["daily_pnl"].column_names
    assert TABLES["eod_positions"].column("missing_greeks").arrow_type == pa.bool_()


def test_conform_derives_trade_date_by_the_eod_cut_and_stamps_ingestion() -> None:
    times = [
        datetime(2024, 3, 8, 21, 14, tzinfo=UTC),  # Fri 16:14 ET: Friday's session
        datetime(2024, 3, 8, 21, 16, tzinfo=UTC),  # Fri 16:16 ET: after the cut -> Monday
        datetime(2024, 3, 9, 15, 0, tzinfo=UTC),  # Saturday -> Monday
        datetime(2024, 11, 29, 18, 16, tzinfo=UTC),  # day after Thanksgiving, 13:16 ET: after the 13:15 cut
    ]
    df = position_rows(range(4)).with_columns(received_at=pl.Series(times, dtype=pl.Datetime("us", "UTC")))
    now = datetime(2024, 12, 1, tzinfo=UTC)
    out = cast_and_validate(POSITION_UPDATES, df, now=now)
    assert out["trade_date"].to_list() == [date(2024, 3, 8), date(2024, 3, 11), date(2024, 3, 11), date(2024, 12, 2)]
    assert out["ingested_at"].to_list() == [now] * 4
    assert out.columns == list(POSITION_UPDATES.column_names)


def test_conform_casts_compatible_types_and_turns_nan_into_null() -> None:
    df = position_rows(range(3)).with_columns(
        con_id=pl.col("con_id").cast(pl.Int32),
        position=pl.Series([1.0, float("nan"), None]),
        received_at=pl.col("received_at").dt.convert_time_zone("America/New_York").dt.cast_time_unit("ns"),
    )
    out = cast_and_validate(POSITION_UPDATES, df)
    assert out.schema["con_id"] == pl.Int64
    assert out["position"].to_list() == [1.0, None, None]
    assert out["received_at"].dtype == pl.Datetime("us", "UTC")
    assert out["received_at"].to_list() == position_rows(range(3))["received_at"].to_list()


def test_conform_rejects_a_trade_date_that_contradicts_received_at() -> None:
    df = position_rows(range(2)).with_columns(trade_date=pl.lit(date(2024, 1, 2)))
    with pytest.raises(LakeSchemaError, match="trade_date: 2 row"):
        cast_and_validate(POSITION_UPDATES, df)


@pytest.mark.parametrize("value", [float("inf"), -1.7976931348623157e308, 1e305, 1e300])
def test_cast_and_validate_rejects_what_the_unset_rule_rejects(value: float) -> None:
    assert is_ib_unset(value)
    df = position_rows(range(2)).with_columns(ib_daily_pnl=pl.lit(value))
    with pytest.raises(LakeSchemaError, match=r"position_updates\.ib_daily_pnl: 2 row"):
        cast_and_validate(POSITION_UPDATES, df)


def test_cast_and_validate_keeps_large_real_numbers_and_stores_nan_as_null() -> None:
    df = position_rows(range(2)).with_columns(ib_daily_pnl=pl.lit(9.99e299), ib_value=pl.lit(float("nan")))
    out = cast_and_validate(POSITION_UPDATES, df)
    assert out["ib_daily_pnl"].to_list() == [9.99e299, 9.99e299] and out["ib_value"].null_count() == 2


def test_conform_rejects_non_frames_and_reports_the_column() -> None:
    with pytest.raises(TypeError, match="polars DataFrame"):
        cast_and_validate(POSITION_UPDATES, [{"a": 1}])  # type: ignore[arg-type]
    frame = daily_rows(TABLES["daily_pnl"], [date(2024, 3, 4)], 2).drop("pnl")
    with pytest.raises(LakeSchemaError) as info:
        cast_and_validate(TABLES["daily_pnl"], frame)
    assert (info.value.table, info.value.column) == ("daily_pnl", "pnl")


def test_table_def_is_frozen_data() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        POSITION_UPDATES.name = "x"  # type: ignore[misc]
