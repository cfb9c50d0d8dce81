"""A large synthetic book for benchmarks (blast mode), built through the same parser as a scenario file."""

from __future__ import annotations

from datetime import datetime

from v6_assets.contracts.clock import utc_now
from v6_assets.gateway_sim.scenario import parse_scenario
from v6_assets.gateway_sim.scenario_model import Scenario, ScenarioError


def synthetic_scenario(
    positions: int, *, accounts: int = 1, start: datetime | None = None, speed: float = 1.0, seed: int = 0
) -> Scenario:
    """A large book for benchmarks (blast mode): ``positions`` SPY option positions spread over ``accounts``."""
    if positions < 1 or accounts < 1:
        raise ScenarioError("synthetic_scenario needs positions >= 1 and accounts >= 1")
    contracts = []
    held = []
    for i in range(positions):
        right = "C" if i % 2 == 0 else "P"
        contracts.append(
            {"con_id": 900_000_000 + i, "symbol": "SPY", "sec_type": "OPT", "expiry": {"days": 30 + 7 * (i % 20)},
             "strike": 400.0 + (i // 40) * 5.0, "right": right, "local_symbol": f"SYN{i:06d}"}
        )  # fmt: skip
        held.append(
            {"account": f"DU{9_000_000 + i % accounts}", "con_id": 900_000_000 + i,
             "qty": float((i % 7) - 3 or 1), "avg_cost": 250.0 + i % 100}
        )  # fmt: skip
    data = {
        "name": f"synthetic-{positions}",
        "seed": seed,
        "clock": {"start": (start or utc_now()).isoformat(), "speed": speed},
        "accounts": [{"id": f"DU{9_000_000 + a}"} for a in range(accounts)],
        "underlyings": [{"symbol": "SPY", "spot": 600.0, "vol": 0.18}],
        "contracts": contracts,
        "positions": held,
        "market_data_lines": max(100, positions),
    }
    return parse_scenario(data)
