"""Connection gaps (stream_health rows) collapsed into intervals and the daily rows they affect."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import polars as pl

from v6_assets.analytics.health import carry_gaps, flag_gaps, gap_intervals, health_intervals

UTC_US = pl.Datetime("us", "UTC")
DAY = date(2025, 3, 4)  # a Tuesday; its cut is 16:15 ET = 21:15 UTC
NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)


def et(hour: int, minute: int, day: date = DAY) -> datetime:
    # EST (before the DST change): UTC = ET + 5 h
    return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(hours=hour + 5, minutes=minute)


def rows(*intervals: tuple[str, datetime, datetime | None, bool]) -> pl.DataFrame:
    """(state, start, end, end_written): each interval's begin row, and its end row when ``end_written``."""
    out = []
    for state, start, end, end_written in intervals:
        out.append(("s1", state, start, None, f"{state} detail", start))
        if end_written and end is not None:
            out.append(("s1", state, start, end, f"{state} detail", end))
    return pl.DataFrame(
        out,
        schema={
            "stream_id": pl.String,
            "state": pl.String,
            "started_at": UTC_US,
            "ended_at": UTC_US,
            "detail": pl.String,
            "received_at": UTC_US,
        },
        orient="row",
    )


def eod(*value_times: datetime | None) -> pl.DataFrame:
    n = len(value_times)
    return pl.DataFrame(
        {
            "trade_date": [DAY] * n,
            "account": ["DU1"] * n,
            "con_id": list(range(n)),
            "portfolio_at": list(value_times),
            "pnl_single_at": list(value_times),
            "greeks_at": list(value_times),
        },
        schema={
            "trade_date": pl.Date,
            "account": pl.String,
            "con_id": pl.Int64,
            "portfolio_at": UTC_US,
            "pnl_single_at": UTC_US,
            "greeks_at": UTC_US,
        },
    )


def test_intervals_take_their_end_row_else_the_next_start_else_now() -> None:
    frame = rows(
        ("connected", et(9, 0), et(14, 2), True),
        ("competing_session", et(14, 2), et(14, 40), True),
        ("connected", et(14, 40), None, False),  # the process was killed: no end row
        ("restarting", et(23, 45), None, False),  # still going on
    )
    intervals = health_intervals(frame, NOW)
    assert intervals["state"].to_list() == ["connected", "competing_session", "connected", "restarting"]
    assert intervals["ended_at"].to_list() == [et(14, 2), et(14, 40), et(23, 45), NOW]
    assert intervals["open"].to_list() == [False, False, True, True]
    gaps = gap_intervals(intervals)
    assert gaps["words"].to_list() == [
        "competing live session 03-04 14:02-14:40 ET: no marks, PnL or greeks",
        "gateway restarting (socket dropped) since 23:45 ET: no data",  # still going on
    ]


def test_rows_whose_values_were_held_back_by_a_gap_are_flagged_in_words() -> None:
    gaps = gap_intervals(health_intervals(rows(("competing_session", et(14, 2), et(16, 30), True)), NOW))
    # values from before the gap (held back), from after it, and none at all (checked over the whole session)
    flagged = flag_gaps(
        eod(et(14, 1), et(16, 10), None).with_columns(pl.lit(None, pl.String).alias("health_gap")), gaps
    )
    words = flagged["health_gap"].to_list()
    assert words[0] == "competing live session 03-04 14:02-16:30 ET: no marks, PnL or greeks"
    assert words[1] == words[0]  # 16:10 is inside the gap: the gap overlaps (16:10, cut]
    assert words[2] == words[0]
    assert flagged.columns == [
        "trade_date",
        "account",
        "con_id",
        "portfolio_at",
        "pnl_single_at",
        "greeks_at",
        "health_gap",
    ]
    # values taken after the gap ended, and gaps on other days, flag nothing
    short = gap_intervals(health_intervals(rows(("farm_down", et(14, 2), et(15, 0), True)), NOW))
    assert flag_gaps(eod(et(15, 30)), short)["health_gap"].to_list() == [None]
    assert flag_gaps(eod(et(13, 59)), short)["health_gap"].to_list() == [
        "market data farm down 03-04 14:02-15:00 ET: no marks, PnL or greeks"
    ]
    other_day = gap_intervals(
        health_intervals(rows(("reset", et(0, 15, date(2025, 3, 6)), et(0, 30, date(2025, 3, 6)), True)), NOW)
    )
    assert flag_gaps(eod(et(9, 0)), other_day)["health_gap"].to_list() == [None]


def test_a_connected_interval_is_no_gap_and_no_rows_mean_nothing_flagged() -> None:
    ok = gap_intervals(health_intervals(rows(("connected", et(9, 0), et(17, 0), True)), NOW))
    assert ok.height == 0
    assert flag_gaps(eod(et(10, 0)), ok)["health_gap"].to_list() == [None]
    assert gap_intervals(health_intervals(pl.DataFrame(), NOW)).height == 0


def test_daily_pnl_rows_carry_the_gap_of_their_eod_row() -> None:
    eod_rows = pl.DataFrame(
        {"trade_date": [DAY, DAY], "account": ["DU1", "DU1"], "con_id": [1, 2], "health_gap": ["farm down", None]}
    )
    daily = pl.DataFrame(
        {
            "trade_date": [DAY, DAY],
            "account": ["DU1", "DU1"],
            "con_id": [2, 1],
            "pnl": [1.0, 2.0],
            "health_gap": [None, None],
        },
        schema_overrides={"health_gap": pl.String},
    )
    assert carry_gaps(daily, eod_rows)["health_gap"].to_list() == [None, "farm down"]
