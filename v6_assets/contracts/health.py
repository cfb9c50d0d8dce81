"""The connection-health states in words: what the user reads in sensor skip reasons, the streamer's status and the
daily assets' metadata ("competing live session since 14:02 ET: no marks, PnL or greeks"). Pure functions."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from v6_assets.contracts.streams import GAP_STATES, HealthState

_NEW_YORK = ZoneInfo("America/New_York")

# (what it is, what is missing while it lasts)
STATE_WORDS: dict[HealthState, tuple[str, str]] = {
    "connected": ("connected", ""),
    "reset": ("IB's nightly reset", "no data"),
    "farm_down": ("market data farm down", "no marks, PnL or greeks"),
    "competing_session": ("competing live session", "no marks, PnL or greeks"),
    "restarting": ("gateway restarting (socket dropped)", "no data"),
    "disconnected": ("disconnected", "no data"),
}


def is_gap(state: str) -> bool:
    """Whether marks, PnL and greeks stop in this state."""
    return state in GAP_STATES


def et_time(at: datetime) -> str:
    """``14:02 ET``."""
    return at.astimezone(_NEW_YORK).strftime("%H:%M ET")


def describe_state(state: HealthState, since: datetime, until: datetime | None = None) -> str:
    """``competing live session since 14:02 ET: no marks, PnL or greeks``; with ``until``: ``... 03-04 14:02-14:17 ET``
    (the end's date too when it is another day)."""
    what, missing = STATE_WORDS[state]
    when = f"since {et_time(since)}"
    if until is not None:
        start, end = since.astimezone(_NEW_YORK), until.astimezone(_NEW_YORK)
        end_words = f"{end:%H:%M}" if end.date() == start.date() else f"{end:%m-%d %H:%M}"
        when = f"{start:%m-%d %H:%M}-{end_words} ET"
    return f"{what} {when}: {missing}" if missing else f"{what} {when}"
