"""daily_pnl's first entries: the session status (pre-open labelled), the last closed session per account with
per-currency totals, the PnL history chart. The clock is passed in (never the wall clock)."""

from __future__ import annotations

from datetime import date, datetime

import polars as pl

from v6_assets.defs.pnl_overview import (
    NO_BASE_CURRENCY,
    PRE_OPEN,
    history_chart,
    last_closed_session_text,
    session_status,
)
from v6_assets.sessions import NEW_YORK

MON, TUE = date(2026, 11, 16), date(2026, 11, 17)


def _at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=NEW_YORK)


def test_a_session_before_its_open_says_pre_open_then_open_then_closed() -> None:
    assert session_status(TUE, _at(TUE, 3)).startswith(f"{PRE_OPEN} (the session opens 2026-11-17 09:30 ET)")
    assert session_status(TUE, _at(TUE, 9, 29)).startswith(PRE_OPEN)
    assert session_status(TUE, _at(TUE, 9, 30)).startswith(
        "open: intraday marks, not final before the EOD cut at 16:15"
    )
    assert session_status(TUE, _at(TUE, 16, 15)) == "closed: final at the EOD cut"
    # the day after Thanksgiving closes at 13:00: its cut is 13:15
    assert "13:15 ET" in session_status(date(2026, 11, 27), _at(date(2026, 11, 27), 12))


def _by_account(rows: list[tuple[date, str, str, int, float, int]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows,
        schema={
            "trade_date": pl.Date,
            "account": pl.String,
            "currency": pl.String,
            "positions": pl.Int64,
            "pnl_known": pl.Float64,
            "unknown_pnl_positions": pl.Int64,
        },
        orient="row",
    )


HISTORY = _by_account(
    [
        (MON, "DU1", "USD", 4, 1234.567, 0),
        (MON, "DU2", "USD", 3, -100.0, 1),
        (MON, "DU3", "EUR", 2, 0.0, 2),  # every PnL unknown: n/a, never 0
        (TUE, "DU1", "USD", 4, 0.0, 0),
    ]
)


def test_last_closed_session_is_per_account_with_per_currency_totals_and_no_invented_conversion() -> None:
    # at 03:00 on Tuesday, Tuesday has not opened: the last closed session is Monday
    text = last_closed_session_text(HISTORY, _at(TUE, 3))
    assert text.splitlines() == [
        "2026-11-16 (last closed session)",
        "DU1 USD 1,234.57",
        "DU2 USD -100.00 (+1 positions unknown)",
        "DU3 EUR n/a (pnl unknown)",
        "total EUR n/a (pnl unknown) (1 account)",
        "total USD 1,134.57 (2 accounts)",
        NO_BASE_CURRENCY,
    ]
    # after Tuesday's cut, Tuesday is the last closed one
    after_cut = last_closed_session_text(HISTORY, _at(TUE, 17)).splitlines()
    assert after_cut[:2] == ["2026-11-17 (last closed session)", "DU1 USD 0.00"]
    assert last_closed_session_text(HISTORY.head(0), _at(TUE, 17)).startswith("n/a: no closed session")


def test_history_chart_has_a_line_per_account_labels_pre_open_and_never_shows_nothing_as_zero() -> None:
    chart = history_chart(HISTORY, _at(TUE, 3), simulated=True).value
    assert "data:image/png;base64," in chart and "(SIMULATED data)" in chart
    assert "| session | DU1 (USD) | DU2 (USD) | DU3 (EUR) |" in chart
    assert "| 2026-11-16 | 1,234.57 | -100.00 | n/a |" in chart
    assert "| 2026-11-17 pre-open | 0.00 | n/a | n/a |" in chart
    assert f"2026-11-17: {PRE_OPEN}" in chart
    assert history_chart(HISTORY.head(0), _at(TUE, 3), simulated=False).value.endswith("_no data_")


def test_base_currency_totals_per_account_and_n_a_where_the_rate_at_the_cut_is_unusable() -> None:
    from v6_assets import analytics
    from v6_assets.contracts.tables import DAILY_PNL
    from v6_assets.defs.pnl_overview import BASE_HEADING, base_currency_lines

    rows = [("DU1", 1, "USD", 100.0), ("DU3", 2, "USD", 200.0), ("DU3", 3, "EUR", 10.0), ("DU4", 4, "USD", 50.0)]
    daily = pl.DataFrame(
        [{"trade_date": MON, "account": a, "con_id": c, "currency": cur, "pnl": pnl} for a, c, cur, pnl in rows],
        schema=DAILY_PNL.polars_schema,
    )
    # DU4's USD rate at the cut was a sentinel (left out of the usable rates by account_eod): n/a, never at 1
    fx = pl.DataFrame({"trade_date": [MON] * 3, "account": ["DU1", "DU3", "DU4"], "currency": ["USD", "USD", "EUR"],
                       "base_currency": ["USD", "EUR", "EUR"], "fx_rate": [1.0, 0.9, 1.0]})  # fmt: skip
    lines = base_currency_lines(analytics.pnl_by_account(daily, fx))
    assert lines == [
        BASE_HEADING,
        "DU1 USD 100.00",
        "DU3 EUR 190.00",
        "DU4 n/a (no usable ExchangeRate at the cut for USD)",
        "total EUR 190.00 (1 account)",
        "total USD 100.00 (1 account)",
    ]
    assert base_currency_lines(None) == [NO_BASE_CURRENCY]
