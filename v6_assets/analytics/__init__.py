"""Analytics: EOD positions, daily PnL and exposure. Pure polars, no I/O, no Dagster.

- :func:`eod_positions` (``eod.py``): last known state per (account, con_id) at each session's EOD cut.
- :func:`daily_pnl`, :func:`pnl_by_underlying`, :func:`pnl_by_account` (``pnl.py``): pnl_D = (U_D - U_{D-1}) + R_D.
- :func:`exposure`, :func:`exposure_by_underlying`, :func:`exposure_by_account` (``exposure.py``).
- :func:`synthetic_updates` (``synthetic.py``): seeded synthetic input frames for benchmarks.

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
from v6_assets.analytics.exposure import exposure, exposure_by_account, exposure_by_underlying
from v6_assets.analytics.pnl import daily_pnl, pnl_by_account, pnl_by_underlying
from v6_assets.analytics.synthetic import SyntheticFrames, synthetic_updates

__all__ = [
    "DAILY_PNL_SCHEMA",
    "DEFAULT_STALE_MARK_AFTER",
    "EOD_POSITIONS_SCHEMA",
    "EXPOSURE_SCHEMA",
    "GREEKS_UPDATES_SCHEMA",
    "GREEK_COLUMNS",
    "POSITION_UPDATES_SCHEMA",
    "STATE_COLUMNS",
    "AnalyticsInputError",
    "SyntheticFrames",
    "daily_pnl",
    "eod_positions",
    "exposure",
    "exposure_by_account",
    "exposure_by_underlying",
    "pnl_by_account",
    "pnl_by_underlying",
    "synthetic_updates",
]
