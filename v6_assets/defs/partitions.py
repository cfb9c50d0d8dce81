"""Trading-day partitions: one partition per NYSE session, keyed by the session date (YYYY-MM-DD).

Weekends and NYSE holidays (from exchange_calendars, via ``v6_assets.sessions``) are excluded, so every key is a
real session. ``end_offset=2`` keeps the session that is currently accumulating updates visible: after the 16:15 ET
cut (and all weekend) new updates belong to the NEXT session, which must already exist as a partition.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from dagster import DailyPartitionsDefinition

from v6_assets import sessions
from v6_assets.defs.settings import DefsEnvironment

NEW_YORK_TZ = sessions.NEW_YORK.key  # Dagster takes the zone by name


def _holidays(start: date, end: date) -> list[datetime]:
    """Weekdays in [start, end] that are not NYSE sessions (holidays), as naive midnights for Dagster."""
    open_days = set(sessions.sessions_between(start, end))
    out: list[datetime] = []
    day = start
    while day <= end:
        if day.weekday() < 5 and day not in open_days:
            out.append(datetime(day.year, day.month, day.day))
        day += timedelta(days=1)
    return out


def partitions_start(start: str | None = None) -> date:
    """The first partition: ``start``, else ``V6_PARTITIONS_START`` (README; a bad value names the variable)."""
    if start:
        try:
            return date.fromisoformat(start.strip())
        except ValueError:
            raise ValueError(f"partitions start {start!r} is not a date (YYYY-MM-DD)") from None
    return DefsEnvironment.read().partitions_start


def build_trading_day_partitions(start: str | None = None) -> DailyPartitionsDefinition:
    start_date = partitions_start(start)
    calendar_end = sessions.last_sessions(1, date(9999, 1, 1))[0]
    return DailyPartitionsDefinition(
        start_date=start_date.isoformat(),
        timezone=NEW_YORK_TZ,
        end_offset=2,
        exclusions=["0 0 * * 6", "0 0 * * 0", *_holidays(start_date, calendar_end)],
        fmt="%Y-%m-%d",
    )


trading_day_partitions = build_trading_day_partitions()
