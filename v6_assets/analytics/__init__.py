"""Analytics: EOD positions, daily PnL and exposure. Pure polars, no I/O, no Dagster.

- :func:`eod_positions` (``eod.py``): last known state per (account, con_id) at each session's EOD cut.
- :func:`daily_pnl`, :func:`pnl_by_underlying`, :func:`pnl_by_account` (``pnl.py``): pnl_D = (U_D - U_{D-1}) + R_D.
- :func:`exposure`, :func:`exposure_by_underlying`, :func:`exposure_by_account` (``exposure.py``).
- :func:`synthetic_updates` (``synthetic.py``): seeded synthetic input frames for benchmarks.
- :func:`pnl_explain`, :func:`explain_with_rollups` (``explain.py``): daily PnL split by greeks, trading, residual.
- :func:`risk_scenarios` (``scenarios.py``, pricing in ``pricing.py``): full-revaluation spot x vol grid.
- :func:`expiry_ladder` (``ladder.py``): exposure by days-to-expiry bucket and pin risk.

Output schemas: :data:`EOD_POSITIONS_SCHEMA`, :data:`DAILY_PNL_SCHEMA`, :data:`EXPOSURE_SCHEMA` (the contract's
columns in order, plus extra columns at the end: eod ``ib_value, portfolio_at, pnl_single_at, is_expired,
position_changed_at``; daily ``unrealized_source``). Bad input raises :class:`AnalyticsInputError`.
"""

from v6_assets.analytics._common import (
    DAILY_PNL_SCHEMA,
    EOD_POSITIONS_SCHEMA,
    EXPOSURE_SCHEMA,
    GREEK_COLUMNS,
    GREEKS_UPDATES_SCHEMA,
    POSITION_UPDATES_SCHEMA,
    STATE_COLUMNS,
    AnalyticsInputError,
)
from v6_assets.analytics.eod import DEFAULT_STALE_MARK_AFTER, eod_positions
from v6_assets.analytics.explain import PNL_EXPLAIN_SCHEMA, explain_with_rollups, pnl_explain
from v6_assets.analytics.exposure import exposure, exposure_by_account, exposure_by_underlying
from v6_assets.analytics.ladder import EXPIRY_LADDER_SCHEMA, expiry_ladder
from v6_assets.analytics.pnl import daily_pnl, pnl_by_account, pnl_by_underlying
from v6_assets.analytics.scenarios import RISK_SCENARIOS_SCHEMA, ScenarioGrid, risk_scenarios, worst_loss
from v6_assets.analytics.synthetic import SyntheticFrames, synthetic_updates

__all__ = [
    "DAILY_PNL_SCHEMA",
    "DEFAULT_STALE_MARK_AFTER",
    "EOD_POSITIONS_SCHEMA",
    "EXPIRY_LADDER_SCHEMA",
    "EXPOSURE_SCHEMA",
    "GREEKS_UPDATES_SCHEMA",
    "GREEK_COLUMNS",
    "PNL_EXPLAIN_SCHEMA",
    "POSITION_UPDATES_SCHEMA",
    "RISK_SCENARIOS_SCHEMA",
    "STATE_COLUMNS",
    "AnalyticsInputError",
    "ScenarioGrid",
    "SyntheticFrames",
    "daily_pnl",
    "eod_positions",
    "expiry_ladder",
    "explain_with_rollups",
    "exposure",
    "exposure_by_account",
    "exposure_by_underlying",
    "pnl_by_account",
    "pnl_by_underlying",
    "pnl_explain",
    "risk_scenarios",
    "synthetic_updates",
    "worst_loss",
]
