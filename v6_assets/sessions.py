"""NYSE trading sessions and the EOD cut that assigns every update to one session.

Definitions (see README "Definitions"): a trading day D is an NYSE session in America/New_York. Its EOD cut is
the session close plus 15 minutes (16:15 ET on a regular day, 13:15 ET on an early-close day). An update belongs to
the first session whose cut is at or after its timestamp, so overnight and weekend updates fall into the next
session. Pure module (no I/O beyond the calendar library's bundled data): the lake, the analytics, the Dagster
partitions and the gateway simulator's ground truth all use it, so they cannot disagree.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import exchange_calendars as xcals
import numpy as np
import pandas as pd
import polars as pl

from v6_assets.contracts.clock import utc_now

NEW_YORK = ZoneInfo("America/New_York")
EOD_CUT_AFTER_CLOSE = timedelta(minutes=15)
CALENDAR_START = date(2015, 1, 2)


class SessionCalendarError(ValueError):
    """A time or date outside the range the calendar covers."""


@functools.cache
def _calendar() -> xcals.ExchangeCalendar:
    # exchange_calendars' XNYS has holidays and early closes; its default end is about a year ahead.
    return xcals.get_calendar("XNYS", start=CALENDAR_START.isoformat())


@functools.cache
def _tables() -> tuple[np.ndarray, np.ndarray]:
    """Sessions (datetime64[D]) and their EOD cuts (int64 ns UTC), sorted."""
    cal = _calendar()
    closes = cal.schedule["close"]  # tz-aware UTC
    sessions = np.array([d.date() for d in closes.index], dtype="datetime64[D]")
    cuts = (closes + pd.Timedelta(EOD_CUT_AFTER_CLOSE)).to_numpy(dtype="datetime64[ns]").astype(np.int64)
    return sessions, cuts


def _to_utc(ts: datetime) -> datetime:
    if ts.tzinfo is None:
        raise SessionCalendarError(f"naive datetime {ts!r}: timestamps must carry a time zone (UTC expected)")
    return ts.astimezone(UTC)


def _as_date(value: np.datetime64) -> date:
    return date.fromisoformat(str(value))


def session_for(ts: datetime) -> date:
    """The session an update at ``ts`` belongs to: the first session whose EOD cut is at or after ``ts``."""
    sessions, cuts = _tables()
    ns = int(pd.Timestamp(_to_utc(ts)).value)
    i = int(np.searchsorted(cuts, ns, side="left"))
    if i >= len(sessions):
        raise SessionCalendarError(f"{ts.isoformat()} is past the end of the NYSE calendar ({_as_date(sessions[-1])})")
    if i == 0 and ns < cuts[0] - 7 * 86_400 * 10**9:
        raise SessionCalendarError(f"{ts.isoformat()} is before the calendar start {CALENDAR_START}")
    return _as_date(sessions[i])


def eod_cut(session: date) -> datetime:
    """The EOD cut (UTC) of ``session``; raises if ``session`` is not an NYSE session."""
    sessions, cuts = _tables()
    i = int(np.searchsorted(sessions, np.datetime64(session, "D")))
    if i >= len(sessions) or _as_date(sessions[i]) != session:
        raise SessionCalendarError(f"{session} is not an NYSE trading session")
    return datetime.fromtimestamp(int(cuts[i]) / 1e9, tz=UTC)


def session_open(session: date) -> datetime:
    """The opening bell (UTC) of ``session`` (09:30 ET); raises if ``session`` is not an NYSE session."""
    if not is_session(session):
        raise SessionCalendarError(f"{session} is not an NYSE trading session")
    return _calendar().session_open(session.isoformat()).to_pydatetime().astimezone(UTC)


def is_session(day: date) -> bool:
    sessions, _ = _tables()
    i = int(np.searchsorted(sessions, np.datetime64(day, "D")))
    return i < len(sessions) and _as_date(sessions[i]) == day


def is_early_close(session: date) -> bool:
    """True when the session closes before 16:00 ET (e.g. the day after Thanksgiving)."""
    return eod_cut(session).astimezone(NEW_YORK).hour < 16


def sessions_between(start: date, end: date) -> list[date]:
    """All sessions with start <= session <= end."""
    sessions, _ = _tables()
    lo = int(np.searchsorted(sessions, np.datetime64(start, "D"), side="left"))
    hi = int(np.searchsorted(sessions, np.datetime64(end, "D"), side="right"))
    return [_as_date(s) for s in sessions[lo:hi]]


def previous_session(session: date) -> date:
    sessions, _ = _tables()
    i = int(np.searchsorted(sessions, np.datetime64(session, "D"), side="left"))
    if i == 0:
        raise SessionCalendarError(f"no session before {session}")
    return _as_date(sessions[i - 1])


def next_session(day: date) -> date:
    """The first session strictly after ``day``."""
    sessions, _ = _tables()
    i = int(np.searchsorted(sessions, np.datetime64(day, "D"), side="right"))
    if i >= len(sessions):
        raise SessionCalendarError(f"no session after {day} in the calendar")
    return _as_date(sessions[i])


def last_sessions(n: int, up_to: date) -> list[date]:
    """The last ``n`` sessions at or before ``up_to``, oldest first."""
    sessions, _ = _tables()
    hi = int(np.searchsorted(sessions, np.datetime64(up_to, "D"), side="right"))
    return [_as_date(s) for s in sessions[max(0, hi - n) : hi]]


def current_session(now: datetime | None = None) -> date:
    """The session that updates arriving now belong to (today's before 16:15 ET, else the next one)."""
    return session_for(now or utc_now())


def trade_date_expr(received_at: pl.Expr | str) -> pl.Expr:
    """Polars expression mapping a UTC datetime column to its session date (vectorised ``session_for``)."""
    sessions, cuts = _tables()
    col = pl.col(received_at) if isinstance(received_at, str) else received_at
    cut_series = pl.Series("cut", cuts, dtype=pl.Int64)
    session_series = pl.Series("session", sessions.astype("datetime64[D]")).cast(pl.Date)
    idx = pl.lit(cut_series).search_sorted(col.dt.convert_time_zone("UTC").dt.epoch("ns"), side="left")
    return pl.lit(session_series).gather(idx)


def assign_trade_dates(received_at: Sequence[datetime]) -> list[date]:
    return [session_for(ts) for ts in received_at]
