"""Helpers for streamer tests against the gateway simulator over real loopback sockets."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from v6_assets.contracts.streams import PositionUpdate
from v6_assets.gateway_sim import GatewaySimulator
from v6_assets.ib.convert import clean_float
from v6_assets.ib.spool import Spool

OPTION_TYPES = ("OPT", "FOP")


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, step: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(step)


def spooled_positions(spool_path: Any) -> list[PositionUpdate]:
    with Spool(spool_path) as spool:
        return [r.event for r in spool.read(0, 10_000_000) if isinstance(r.event, PositionUpdate)]


def option_con_ids(sim: GatewaySimulator) -> set[int]:
    return {cid for cid, c in sim.scenario.contracts.items() if c.sec_type in OPTION_TYPES}


_FIELDS = {
    "pnl_single": (
        ("position", "position"),
        ("daily_pnl", "ib_daily_pnl"),
        ("unrealized_pnl", "ib_unrealized_pnl"),
        ("realized_pnl", "ib_realized_pnl"),
        ("value", "ib_value"),
    ),
    "portfolio": (
        ("position", "position"),
        ("market_price", "market_price"),
        ("market_value", "market_value"),
        ("average_cost", "average_cost"),
        ("unrealized_pnl", "unrealized_pnl"),
        ("realized_pnl", "realized_pnl"),
    ),
    "position": (("position", "position"), ("average_cost", "average_cost")),
}


def missing_from_spool(
    sent: list[dict[str, Any]],
    rows: list[PositionUpdate],
    option_ids: set[int],
    client_id: int,
    keep: Callable[[dict[str, Any]], bool] = lambda e: True,
) -> list[dict[str, Any]]:
    """Sent values (per ground truth) that no spooled row carries. Sentinels compare as None."""
    states: dict[tuple[str, int], list[PositionUpdate]] = {}
    for row in rows:
        states.setdefault((row.account, row.con_id), []).append(row)
    missing = []
    for entry in sent:
        kind = entry["kind"]
        if entry["client_id"] != client_id or kind not in _FIELDS or entry["con_id"] not in option_ids:
            continue
        if not keep(entry):
            continue
        pairs = [(clean_float(entry[src]), dst) for src, dst in _FIELDS[kind]]
        candidates = states.get((entry["account"], entry["con_id"]), [])
        if not any(all(v is None or getattr(r, dst) == v for v, dst in pairs) for r in candidates):
            missing.append(entry)
    return missing
