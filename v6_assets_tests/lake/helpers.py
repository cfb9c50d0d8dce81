"""Builders of realistic frames for the lake tests (real event dataclasses -> polars rows)."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import unquote

import polars as pl

from v6_assets.contracts.streams import GreeksUpdate, PositionUpdate
from v6_assets.lake import TABLES, Lake, TableDef
from v6_assets.lake.maintenance import table_filesystem

T0 = datetime(2024, 3, 4, 14, 30, tzinfo=UTC)  # Monday 09:30 ET, session 2024-03-04


def position_rows(offsets: range | list[int], stream_id: str = "stream-a", start: datetime = T0) -> pl.DataFrame:
    """One PositionUpdate per offset, 37 minutes apart (so a batch spans several sessions), plus lake columns."""
    rows: list[dict[str, Any]] = []
    for i in offsets:
        update = PositionUpdate(
            account="DU1234567",
            con_id=500_000 + i % 7,
            symbol="SPY",
            sec_type="OPT",
            expiry=date(2024, 6, 21),
            strike=500.0 + i % 7,
            right="C" if i % 2 else "P",
            multiplier=100.0,
            currency="USD",
            exchange="SMART",
            trading_class="SPY",
            local_symbol=f"SPY   240621C00{500 + i % 7}000",
            position=float(i % 5 - 2),
            average_cost=1234.5,
            market_price=12.5 + i / 100,
            market_value=None if i % 3 == 0 else 2500.0,
            unrealized_pnl=10.0 * i,
            realized_pnl=None,
            ib_daily_pnl=1.5,
            ib_unrealized_pnl=None,
            ib_realized_pnl=0.0,
            ib_value=None,
            source="portfolio",
            seq=i,
            received_at=start + timedelta(minutes=37 * i),
        )
        rows.append(update.as_dict() | {"stream_id": stream_id, "spool_offset": i})
    return pl.DataFrame(rows)


def greeks_rows(offsets: range, stream_id: str = "stream-g") -> pl.DataFrame:
    rows = []
    for i in offsets:
        g = GreeksUpdate(
            con_id=500_000 + i % 7,
            tick_type=13,
            delta=0.5,
            gamma=0.01,
            vega=None,
            theta=-0.2,
            implied_vol=0.2,
            und_price=510.0,
            opt_price=12.0,
            seq=i,
            received_at=T0 + timedelta(seconds=i),
        )
        rows.append(g.as_dict() | {"stream_id": stream_id, "spool_offset": i})
    return pl.DataFrame(rows)


def daily_rows(table: TableDef, sessions: list[date], per_session: int, tag: float = 0.0) -> pl.DataFrame:
    """Rows for a daily-output table: keys filled, numbers = tag so rewrites are distinguishable."""
    schema = table.polars_schema
    rows: list[dict[str, Any]] = []
    for d in sessions:
        for k in range(per_session):
            row: dict[str, Any] = {}
            for name, dtype in schema.items():
                if name == "trade_date":
                    row[name] = d
                elif dtype == pl.String:
                    row[name] = f"{name}-{k}"
                elif dtype == pl.Int64:
                    row[name] = 1000 + k
                elif dtype == pl.Float64:
                    row[name] = tag + k
                elif dtype == pl.Boolean:
                    row[name] = k % 2 == 0
                elif dtype == pl.Date:
                    row[name] = date(2024, 6, 21)
                else:
                    row[name] = T0
            rows.append(row)
    return pl.DataFrame(rows, schema=schema)


def partition_fingerprint(lake: Lake, table: str, session: date) -> dict[str, str]:
    """{file path: sha256 of its bytes} of the active files of one trade_date partition (works on S3 too)."""
    dt = lake.open(table)
    assert dt is not None
    actions = dt.get_add_actions(flatten=True)
    paths = actions.column("path").to_pylist()
    values = actions.column("partition.trade_date").to_pylist()
    fs, root = table_filesystem(lake, table)
    out = {}
    for path, value in zip(paths, values, strict=True):
        if str(value) == session.isoformat():
            with fs.open_input_stream(f"{root}/{unquote(path)}") as f:
                out[path] = hashlib.sha256(f.read()).hexdigest()
    return out


def offsets_in(lake: Lake, table: str = "position_updates") -> list[int]:
    return sorted(lake.scan(table).select("spool_offset").collect()["spool_offset"].to_list())


__all__ = ["TABLES", "daily_rows", "greeks_rows", "offsets_in", "partition_fingerprint", "position_rows"]
