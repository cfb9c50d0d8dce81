"""The demo book's EOD truth from the gateway simulator, driven synchronously (no sockets, no wall clock), as
eod_positions and daily_pnl frames: the simulator's Black-Scholes marks, greeks, underlying prices, implied vols and
its statement daily PnL."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from functools import cache
from typing import Any

import polars as pl

from v6_assets import sessions
from v6_assets.analytics import EOD_POSITIONS_SCHEMA
from v6_assets.contracts.tables import DAILY_PNL
from v6_assets.gateway_sim import GatewaySimulator, load_scenario

START = datetime(2025, 3, 3, 9, 0, tzinfo=sessions.NEW_YORK)


@cache
def simulated(last: date) -> tuple[GatewaySimulator, tuple[dict[str, Any], ...]]:
    """The demo book from 2025-03-03 to the cut of ``last``: the simulator and its EOD truth entries."""
    sim = GatewaySimulator(load_scenario("demo", start_time=START))
    sim.timeline.advance(sessions.eod_cut(last) + timedelta(minutes=1))
    return sim, tuple(sim.truth["eod"])


def eod_frame(entries: tuple[dict[str, Any], ...]) -> pl.DataFrame:
    rows = []
    for e in entries:
        day = date.fromisoformat(e["session"])
        expiry = date.fromisoformat(e["expiry"])
        row: dict[str, Any] = {c: None for c in EOD_POSITIONS_SCHEMA}
        row.update({k: e[k] for k in ("account", "con_id", "symbol", "sec_type", "strike", "right", "multiplier")})
        row.update({k: e[k] for k in ("currency", "position", "market_value", "average_cost", "unrealized_pnl")})
        row.update({k: e[k] for k in ("realized_pnl", "delta", "gamma", "vega", "theta", "implied_vol", "und_price")})
        row.update(
            trade_date=day,
            expiry=expiry,
            market_price=e["mark"],
            is_closed=e["closed"],
            is_expired=e["closed"] and expiry == day,
            missing_greeks=False,
            carried_forward=False,
        )
        rows.append(row)
    return pl.DataFrame(rows, schema=EOD_POSITIONS_SCHEMA)


def daily_frame(entries: tuple[dict[str, Any], ...]) -> pl.DataFrame:
    names = DAILY_PNL.column_names
    rows = []
    for e in entries:
        row: dict[str, Any] = {c: None for c in names}
        row.update({k: e[k] for k in ("account", "con_id", "symbol", "sec_type", "strike", "right", "multiplier")})
        row.update(
            trade_date=date.fromisoformat(e["session"]),
            expiry=date.fromisoformat(e["expiry"]),
            currency=e["currency"],
            position=e["position"],
            prev_position=e["prev_position"],
            pnl=e["daily_pnl"],
            is_baseline=e["baseline"],
        )
        rows.append(row)
    return pl.DataFrame(rows, schema=DAILY_PNL.polars_schema)
