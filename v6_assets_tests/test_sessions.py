"""The EOD-cut session assignment that partitions every table (holidays, early closes, DST, weekends)."""

from datetime import UTC, date, datetime

import polars as pl
import pytest

from v6_assets import sessions


def et(y: int, m: int, d: int, hh: int, mm: int) -> datetime:
    return datetime(y, m, d, hh, mm, tzinfo=sessions.NEW_YORK)


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        (et(2026, 11, 25, 10, 0), date(2026, 11, 25)),  # regular session, intraday
        (et(2026, 11, 25, 16, 15), date(2026, 11, 25)),  # exactly at the cut: still D
        (et(2026, 11, 25, 16, 16), date(2026, 11, 27)),  # after the cut; 26th is Thanksgiving
        (et(2026, 11, 27, 13, 15), date(2026, 11, 27)),  # early close: cut 13:15
        (et(2026, 11, 27, 13, 16), date(2026, 11, 30)),  # ... after it, Saturday and Sunday roll to Monday
        (et(2026, 11, 29, 12, 0), date(2026, 11, 30)),  # Sunday
        (et(2026, 3, 9, 16, 10), date(2026, 3, 9)),  # first Monday after the DST change (EDT)
        (et(2026, 3, 6, 16, 20), date(2026, 3, 9)),  # Friday before DST (EST) after the cut
        (et(2026, 1, 1, 12, 0), date(2026, 1, 2)),  # New Year holiday
    ],
)
def test_session_for(ts: datetime, expected: date) -> None:
    assert sessions.session_for(ts) == expected


def test_eod_cut_regular_and_early_close() -> None:
    assert sessions.eod_cut(date(2026, 11, 25)) == et(2026, 11, 25, 16, 15).astimezone(UTC)
    assert sessions.eod_cut(date(2026, 11, 27)) == et(2026, 11, 27, 13, 15).astimezone(UTC)
    assert sessions.is_early_close(date(2026, 11, 27))
    assert not sessions.is_early_close(date(2026, 11, 25))
    with pytest.raises(sessions.SessionCalendarError, match="not an NYSE trading session"):
        sessions.eod_cut(date(2026, 11, 26))


def test_naive_datetime_is_rejected() -> None:
    with pytest.raises(sessions.SessionCalendarError, match="naive"):
        sessions.session_for(datetime(2026, 11, 25, 12, 0))


def test_navigation() -> None:
    assert sessions.previous_session(date(2026, 11, 27)) == date(2026, 11, 25)
    assert sessions.next_session(date(2026, 11, 25)) == date(2026, 11, 27)
    assert sessions.last_sessions(3, date(2026, 11, 29)) == [date(2026, 11, 24), date(2026, 11, 25), date(2026, 11, 27)]
    assert date(2026, 11, 26) not in sessions.sessions_between(date(2026, 11, 20), date(2026, 11, 30))


def test_polars_expression_matches_scalar_function() -> None:
    stamps = [et(2026, 11, 20, 9, 0) + (et(2026, 11, 20, 9, 47) - et(2026, 11, 20, 9, 0)) * k for k in range(400)]
    utc = [s.astimezone(UTC) for s in stamps]
    df = pl.DataFrame({"received_at": utc}).with_columns(trade_date=sessions.trade_date_expr("received_at"))
    assert df["trade_date"].to_list() == [sessions.session_for(s) for s in utc]
