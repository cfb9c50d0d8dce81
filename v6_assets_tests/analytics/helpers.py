"""Builders for hand-written position_updates / greeks_updates frames in the lake schema."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime
from typing import Any

import polars as pl

from v6_assets import sessions
from v6_assets.analytics import GREEKS_UPDATES_SCHEMA, POSITION_UPDATES_SCHEMA

_offsets = itertools.count(1)

CONTRACTS: dict[int, dict[str, Any]] = {
    # con_id -> contract fields
    1: {
        "symbol": "SPY",
        "sec_type": "OPT",
        "expiry": date(2026, 6, 19),
        "strike": 500.0,
        "right": "C",
        "multiplier": 100.0,
    },
    2: {
        "symbol": "SPY",
        "sec_type": "OPT",
        "expiry": date(2026, 6, 19),
        "strike": 480.0,
        "right": "P",
        "multiplier": 100.0,
    },
    3: {
        "symbol": "ES",
        "sec_type": "FOP",
        "expiry": date(2026, 6, 18),
        "strike": 5000.0,
        "right": "C",
        "multiplier": 50.0,
    },
    4: {
        "symbol": "XYZ",
        "sec_type": "OPT",
        "expiry": date(2026, 6, 19),
        "strike": 20.0,
        "right": "C",
        "multiplier": 150.0,
    },
    5: {
        "symbol": "QQQ",
        "sec_type": "OPT",
        "expiry": date(2026, 3, 13),
        "strike": 450.0,
        "right": "C",
        "multiplier": 100.0,
    },
}


def et(day: date, hh: int, mm: int, ss: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, ss, tzinfo=sessions.NEW_YORK).astimezone(UTC)


def pos(
    account: str,
    con_id: int,
    at: datetime,
    *,
    position: float | None,
    average_cost: float | None = None,
    market_price: float | None = None,
    realized_pnl: float | None = None,
    ib_daily_pnl: float | None = None,
    ib_unrealized_pnl: float | None = None,
    ib_realized_pnl: float | None = None,
    ib_value: float | None = None,
    source: str = "portfolio",
    offset: int | None = None,
    **overrides: Any,
) -> dict[str, Any]:
    """A full merged position row; market value and unrealized PnL follow IB's definitions unless overridden."""
    c = CONTRACTS[con_id]
    mv = up = None
    if position is not None and market_price is not None and source == "portfolio":
        mv = position * market_price * c["multiplier"]
        up = mv - (average_cost or 0.0) * position
    row: dict[str, Any] = {
        "account": account,
        "con_id": con_id,
        **c,
        "currency": "USD",
        "exchange": "SMART",
        "trading_class": c["symbol"],
        "local_symbol": f"{c['symbol']} {con_id}",
        "position": position,
        "average_cost": average_cost,
        "market_price": market_price,
        "market_value": mv,
        "unrealized_pnl": up,
        "realized_pnl": realized_pnl,
        "ib_daily_pnl": ib_daily_pnl,
        "ib_unrealized_pnl": ib_unrealized_pnl,
        "ib_realized_pnl": ib_realized_pnl,
        "ib_value": ib_value,
        "source": source,
        "seq": 0,
        "received_at": at,
        "trade_date": sessions.session_for(at),
        "stream_id": "test",
        "spool_offset": next(_offsets) if offset is None else offset,
    }
    row.update(overrides)
    return row


def greek(
    con_id: int,
    at: datetime,
    *,
    delta: float | None,
    gamma: float | None = 0.01,
    vega: float | None = 0.1,
    theta: float | None = -0.05,
    und_price: float | None = 100.0,
    implied_vol: float | None = 0.2,
) -> dict[str, Any]:
    return {
        "con_id": con_id,
        "tick_type": 13,
        "delta": delta,
        "gamma": gamma,
        "vega": vega,
        "theta": theta,
        "implied_vol": implied_vol,
        "und_price": und_price,
        "opt_price": None,
        "seq": 0,
        "received_at": at,
        "trade_date": sessions.session_for(at),
        "stream_id": "test-greeks",
        "spool_offset": next(_offsets),
    }


def updates_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=POSITION_UPDATES_SCHEMA)


def greeks_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=GREEKS_UPDATES_SCHEMA)


def row_of(frame: pl.DataFrame, **where: Any) -> dict[str, Any]:
    hit = frame.filter(*[pl.col(k) == v for k, v in where.items()])
    assert hit.height == 1, f"expected one row for {where}, got {hit.height}:\n{frame}"
    return hit.row(0, named=True)
