"""The table contracts are derived from the stream dataclasses: one edit adds a field everywhere."""

from __future__ import annotations

import dataclasses

from v6_assets.contracts.streams import GREEKS_UPDATE_FIELDS, POSITION_UPDATE_FIELDS, GreeksUpdate, PositionUpdate
from v6_assets.contracts.tables import GREEKS_UPDATES, POSITION_UPDATES, TABLES, stream_columns


def test_stream_tables_start_with_the_event_fields_in_order() -> None:
    assert POSITION_UPDATES.column_names[: len(POSITION_UPDATE_FIELDS)] == POSITION_UPDATE_FIELDS
    assert GREEKS_UPDATES.column_names[: len(GREEKS_UPDATE_FIELDS)] == GREEKS_UPDATE_FIELDS
    lake_columns = ("trade_date", "stream_id", "spool_offset", "ingested_at")
    assert POSITION_UPDATES.column_names[len(POSITION_UPDATE_FIELDS) :] == lake_columns


def test_every_column_is_described_and_nullability_follows_the_annotation() -> None:
    for table in TABLES.values():
        assert all(c.description.strip() for c in table.columns), table.name
    columns = {c.name: c for c in stream_columns(PositionUpdate)}
    assert not columns["con_id"].nullable and columns["position"].nullable
    assert POSITION_UPDATES.column("account").non_empty


def test_a_new_event_field_becomes_a_described_column() -> None:
    @dataclasses.dataclass(frozen=True)
    class Extended(GreeksUpdate):  # type: ignore[misc]
        rho: float | None = dataclasses.field(default=None, metadata={"description": "Rho per share."})

    added = stream_columns(Extended)[-1]
    assert (added.name, str(added.arrow_type), added.nullable, added.description) == (
        "rho",
        "double",
        True,
        "Rho per share.",
    )
