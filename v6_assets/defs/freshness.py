"""Freshness of the daily assets: during market hours, a refresh at least every refresh period (with slack).

Dagster 1.13's public ``dagster.FreshnessPolicy`` (the new abstraction; the old one is ``LegacyFreshnessPolicy``,
deprecated) is attached with ``@asset(freshness_policy=...)`` and evaluated by the freshness daemon of ``dagster dev``
/ ``dagster-daemon`` (PASS / WARN / FAIL in the UI). It offers ``FreshnessPolicy.time_window`` (the last
materialization is younger than a window, at all hours) and ``FreshnessPolicy.cron`` (at each tick of a cron, the
last materialization is within ``lower_bound_delta`` before it, evaluated against the last COMPLETED tick). The cron
form is the one that can say "during market hours": ticks every ``window`` minutes from 10:00 to the last tick before
the 16:00 close, New York time, Monday to Friday. Outside those hours the state of the last tick of the day holds.

What it cannot say (Dagster evaluates the ASSET, not a partition, and knows no exchange calendar):
- it looks at the newest materialization of any partition; the sensor's refresh runs target the newest session
  (today's during market hours), so in practice it is today's partition, but a backfill of an old day counts too;
- on NYSE holidays and after an early close (13:00) the ticks still come and the state turns FAIL until the next
  refresh: read it together with the calendar.

The window is the smallest divisor of 60 minutes of at least twice ``V6_REFRESH_MINUTES`` (one missed refresh plus
the run time are tolerated, and the cron stays regular across the hour: Dagster requires ``lower_bound_delta`` to be
at most the smallest interval between ticks); capped at an hour.
"""

from __future__ import annotations

import math
from datetime import timedelta

from dagster import FreshnessPolicy

from v6_assets import sessions
from v6_assets.defs.settings import DefsEnvironment

_DIVISORS_OF_AN_HOUR = (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30, 60)
MARKET_HOURS = "10-15"  # ticks from 10:00 (half an hour after the open) to the last one before the 16:00 close


def freshness_window_minutes(refresh_minutes: float) -> int:
    """Smallest divisor of 60 that is >= twice the refresh period (at least 1 minute, at most 60)."""
    wanted = max(1, math.ceil(2 * refresh_minutes))
    return next((d for d in _DIVISORS_OF_AN_HOUR if d >= wanted), 60)


def daily_freshness_policy(refresh_minutes: float) -> FreshnessPolicy:
    """The policy of ``eod_positions``, ``daily_pnl`` and ``exposure`` for a refresh period in minutes."""
    window = freshness_window_minutes(refresh_minutes)
    minute = "0" if window == 60 else f"*/{window}"
    return FreshnessPolicy.cron(
        deadline_cron=f"{minute} {MARKET_HOURS} * * 1-5",
        lower_bound_delta=timedelta(minutes=window),
        timezone=sessions.NEW_YORK.key,
    )


DAILY_FRESHNESS = daily_freshness_policy(DefsEnvironment.read().refresh_minutes)
