"""Typed events the streamer emits. Pure data: no ib_async, no Dagster.

These dataclasses are the contract between the IB side, the spool, the Delta tables and the analytics:
every field here becomes a column of ``position_updates`` / ``greeks_updates`` (the lake adds
``trade_date``, ``stream_id`` and ``spool_offset``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

PositionSource = Literal["portfolio", "position", "pnl_single"]


@dataclass(slots=True, frozen=True)
class PositionUpdate:
    """Full known state of one (account, con_id) option position at ``received_at`` (UTC).

    Merged from three IB streams. Quantities with different meanings keep separate, source-named fields:
    ``realized_pnl`` is updatePortfolio's (resets daily), ``ib_realized_pnl`` is reqPnLSingle's.
    ``None`` means "unknown / IB sent a sentinel", never zero.
    """

    account: str
    con_id: int
    symbol: str
    sec_type: str
    expiry: date | None
    strike: float | None
    right: str | None
    multiplier: float | None
    currency: str
    exchange: str
    trading_class: str
    local_symbol: str
    position: float | None
    average_cost: float | None
    # updatePortfolio (account window, pushed ~every 3 min or on a position change)
    market_price: float | None
    market_value: float | None
    unrealized_pnl: float | None
    realized_pnl: float | None
    # reqPnLSingle (~1/s per position)
    ib_daily_pnl: float | None
    ib_unrealized_pnl: float | None
    ib_realized_pnl: float | None
    ib_value: float | None
    source: PositionSource
    seq: int
    received_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclass(slots=True, frozen=True)
class GreeksUpdate:
    """Model greeks for one option contract (IB tick 13 by default). Sentinels (-1/-2) are ``None``.

    Units as IB sends them: delta/gamma per share per 1.00 of the underlying, vega per vol point,
    theta per calendar day.
    """

    con_id: int
    tick_type: int
    delta: float | None
    gamma: float | None
    vega: float | None
    theta: float | None
    implied_vol: float | None
    und_price: float | None
    opt_price: float | None
    seq: int
    received_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


POSITION_UPDATE_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(PositionUpdate))
GREEKS_UPDATE_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(GreeksUpdate))
