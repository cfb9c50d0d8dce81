"""Daily PnL, hand-computed: pnl_D = (U_D - U_{D-1}) + R_D for every case of issue 5."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import polars as pl

from v6_assets import sessions
from v6_assets.analytics import daily_pnl, eod_positions, pnl_by_account, pnl_by_underlying
from v6_assets.contracts.money import Money
from v6_assets_tests.analytics.helpers import et, greeks_frame, pos, row_of, updates_frame

D0, D1, D2, D3, D4 = date(2026, 3, 10), date(2026, 3, 11), date(2026, 3, 12), date(2026, 3, 13), date(2026, 3, 16)
NO_GREEKS = greeks_frame([])


def run(rows: list[dict], days: list[date]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """EOD and daily PnL over ``days``; the first session is the stream's first (baseline)."""
    eod = eod_positions(updates_frame(rows), NO_GREEKS, days)
    return eod, daily_pnl(eod, None, days)


def test_hold_10_sell_4_the_check_example() -> None:
    # Notes' check: hold 10 @ A=5.00 (m=100), P0=6.00 -> P1=7.00, sell 4 @ S=6.50.
    # U_{D-1} = 10(6-5)100 = 1000; U_D = 6(7-5)100 = 1200; R_D = 4(6.5-5)100 = 600; pnl = 800
    # = m(6 P1 - 10 P0 + 4 S) = 100(42 - 60 + 26) = 10(P1-P0)m - 4(P1-S)m = 1000 - 200.
    rows = [
        pos("U1", 1, et(D0, 15, 0), position=10, average_cost=500.0, market_price=6.0),
        pos("U1", 1, et(D1, 10, 0), position=10, average_cost=500.0, market_price=6.2),
        pos("U1", 1, et(D1, 11, 0), position=6, average_cost=500.0, market_price=6.5, realized_pnl=600.0),
        pos("U1", 1, et(D1, 15, 59), position=6, average_cost=500.0, market_price=7.0, realized_pnl=600.0),
    ]
    eod, daily = run(rows, [D0, D1])
    state = row_of(eod, trade_date=D1)
    assert (state["position"], state["market_price"], state["realized_pnl"]) == (6, 7.0, 600.0)
    assert state["last_update_at"] == et(D1, 15, 59) and not state["carried_forward"] and not state["is_stale_mark"]
    first = row_of(daily, trade_date=D0)
    assert first["is_baseline"] and first["pnl"] is None and first["prev_unrealized_pnl"] is None
    assert first["unrealized_pnl"] == Money(1000.0)
    d = row_of(daily, trade_date=D1)
    assert d["prev_position"] == 10 and d["position"] == 6
    assert d["prev_unrealized_pnl"] == Money(1000.0)
    assert d["unrealized_pnl"] == Money(1200.0)
    assert d["unrealized_change"] == Money(200.0)
    assert d["realized_pnl"] == Money(600.0) and d["realized_source"] == "portfolio"
    assert d["pnl"] == Money(800.0) and not d["is_baseline"]
    assert d["pnl"] == Money(100 * (6 * 7.0 - 10 * 6.0 + 4 * 6.5))
    assert d["ib_daily_pnl"] is None and d["pnl_minus_ib"] is None and d["pnl_source"] == "average_cost"


def test_pnl_single_only_account_realized_is_difference_of_cumulative_values() -> None:
    # Account U2 is not the portfolio-subscribed one: only reqPnLSingle. Cumulative realized 250 -> 850: R_D = 600.
    rows = [
        pos("U2", 1, et(D0, 15, 0), position=10, average_cost=500.0, source="pnl_single",
            ib_unrealized_pnl=1000.0, ib_realized_pnl=250.0, ib_daily_pnl=40.0, ib_value=6000.0),
        pos("U2", 1, et(D1, 15, 0), position=6, average_cost=500.0, source="pnl_single",
            ib_unrealized_pnl=1200.0, ib_realized_pnl=850.0, ib_daily_pnl=805.0, ib_value=4200.0),
    ]  # fmt: skip
    _, daily = run(rows, [D0, D1])
    d = row_of(daily, trade_date=D1)
    assert d["realized_source"] == "pnl_single" and d["realized_pnl"] == Money(600.0)
    assert d["pnl"] == Money(800.0)
    assert d["ib_daily_pnl"] == Money(805.0) and d["pnl_minus_ib"] == Money(-5.0)
    assert d["unrealized_source"] == "pnl_single"


def test_fresher_pnl_single_unrealized_beats_older_portfolio_value() -> None:
    rows = [
        pos("U1", 1, et(D0, 15, 0), position=10, average_cost=500.0, market_price=6.0),  # U = 1000
        pos("U1", 1, et(D1, 12, 0), position=10, average_cost=500.0, market_price=6.5),  # U = 1500 (portfolio)
        # merged row: portfolio fields as before, pnl_single newer with U = 1700
        pos("U1", 1, et(D1, 16, 10), position=10, average_cost=500.0, market_price=6.5, source="pnl_single",
            market_value=6500.0, unrealized_pnl=1500.0, ib_unrealized_pnl=1700.0, ib_realized_pnl=0.0),
    ]  # fmt: skip
    _, daily = run(rows, [D0, D1])
    d = row_of(daily, trade_date=D1)
    assert d["unrealized_source"] == "pnl_single" and d["unrealized_pnl"] == Money(1700.0)
    assert d["realized_source"] == "portfolio" and d["realized_pnl"] == 0.0  # portfolio reported during D, unset = 0
    assert d["pnl"] == Money(700.0)


def test_short_put() -> None:
    # short 3 puts @ 2.00 (avg cost 200/contract): U0 = -3*2.5*100 + 600 = -150; U1 = -540 + 600 = 60; pnl = 210
    rows = [
        pos("U1", 2, et(D0, 15, 0), position=-3, average_cost=200.0, market_price=2.5),
        pos("U1", 2, et(D1, 15, 0), position=-3, average_cost=200.0, market_price=1.8),
    ]
    _, daily = run(rows, [D0, D1])
    d = row_of(daily, trade_date=D1)
    assert d["prev_unrealized_pnl"] == Money(-150.0) and d["unrealized_pnl"] == Money(60.0)
    assert d["pnl"] == Money(210.0) == Money(-3 * (1.8 - 2.5) * 100)


def test_fop_and_non_100_multiplier() -> None:
    # ES FOP m=50: long 2 @ 40.00 (avg 2000), 45 -> 43: pnl = 2*(43-45)*50 = -200
    # adjusted XYZ option m=150: short 4 @ 1.00 (avg 150), 1.2 -> 0.9: pnl = -4*(0.9-1.2)*150 = 180
    rows = [
        pos("U1", 3, et(D0, 15, 0), position=2, average_cost=2000.0, market_price=45.0),
        pos("U1", 4, et(D0, 15, 0), position=-4, average_cost=150.0, market_price=1.2),
        pos("U1", 3, et(D1, 15, 0), position=2, average_cost=2000.0, market_price=43.0),
        pos("U1", 4, et(D1, 15, 0), position=-4, average_cost=150.0, market_price=0.9),
    ]
    _, daily = run(rows, [D0, D1])
    assert row_of(daily, trade_date=D1, con_id=3)["pnl"] == Money(-200.0)
    assert row_of(daily, trade_date=D1, con_id=4)["pnl"] == Money(180.0)


def test_intraday_add() -> None:
    # hold 2 @ 3.00 (avg 300) marked 3.50; buy 3 @ 4.00 -> avg 360; close 4.50.
    # U0 = 700-600 = 100; U1 = 2250-1800 = 450; pnl = 350 = 2(4.5-3.5)100 + 3(4.5-4.0)100
    rows = [
        pos("U1", 1, et(D0, 15, 0), position=2, average_cost=300.0, market_price=3.5),
        pos("U1", 1, et(D1, 11, 0), position=5, average_cost=360.0, market_price=4.0),
        pos("U1", 1, et(D1, 15, 0), position=5, average_cost=360.0, market_price=4.5),
    ]
    _, daily = run(rows, [D0, D1])
    d = row_of(daily, trade_date=D1)
    assert d["realized_pnl"] == 0.0 and d["pnl"] == Money(350.0)


def test_open_and_close_same_day_then_gone() -> None:
    # An account with history; D1: buy 5 @ 1.00, sell 5 @ 1.40: realized 200, closed row at EOD D1, absent on D2.
    rows = [
        pos("U1", 1, et(D0, 15, 0), position=1, average_cost=500.0, market_price=5.0),
        pos("U1", 2, et(D1, 10, 0), position=5, average_cost=100.0, market_price=1.0),
        pos("U1", 2, et(D1, 14, 0), position=0, average_cost=0.0, market_price=1.4, realized_pnl=200.0,
            market_value=0.0, unrealized_pnl=0.0),
        pos("U1", 1, et(D2, 15, 0), position=1, average_cost=500.0, market_price=5.0),
    ]  # fmt: skip
    eod, daily = run(rows, [D0, D1, D2])
    closed = row_of(eod, trade_date=D1, con_id=2)
    assert closed["is_closed"] and closed["position"] == 0
    d = row_of(daily, trade_date=D1, con_id=2)
    assert d["prev_position"] == 0 and d["prev_unrealized_pnl"] == 0 and not d["is_baseline"]
    assert d["unrealized_pnl"] == 0 and d["realized_pnl"] == Money(200.0) and d["pnl"] == Money(200.0)
    assert eod.filter((pl.col("trade_date") == D2) & (pl.col("con_id") == 2)).height == 0
    assert daily.filter(pl.col("trade_date") == D2).height == 1


def test_expiry_without_an_update_closes_at_the_last_mark() -> None:
    # con 5 expires Fri D3, marked worthless (0.00) at D3's cut: U = -100 (avg 100). Mon D4: no update ->
    # expiry close: position 0, U 0, R = -100 (source expiry), pnl 0. Tue: gone.
    tue = sessions.next_session(D4)
    rows = [
        pos("U1", 5, et(D2, 15, 0), position=1, average_cost=100.0, market_price=0.3),  # U = -70
        pos("U1", 5, et(D3, 16, 0), position=1, average_cost=100.0, market_price=0.0),  # U = -100
        pos("U1", 1, et(tue, 15, 0), position=1, average_cost=500.0, market_price=5.0),
    ]
    eod, daily = run(rows, [D2, D3, D4, tue])
    assert row_of(daily, trade_date=D3, con_id=5)["pnl"] == Money(-30.0)
    expired = row_of(eod, trade_date=D4, con_id=5)
    assert expired["is_expired"] and expired["is_closed"] and expired["position"] == 0 and expired["carried_forward"]
    d = row_of(daily, trade_date=D4, con_id=5)
    assert d["realized_source"] == "expiry" and d["realized_pnl"] == Money(-100.0)
    assert d["unrealized_change"] == Money(100.0) and d["pnl"] == Money(0.0)
    assert eod.filter((pl.col("trade_date") == tue) & (pl.col("con_id") == 5)).height == 0


def test_expiry_closed_by_ib_and_lingering_zero_rows_dropped() -> None:
    tue = sessions.next_session(D4)
    rows = [
        pos("U1", 5, et(D3, 16, 0), position=1, average_cost=100.0, market_price=0.0),  # U = -100
        pos("U1", 5, et(D4, 6, 0), position=0, average_cost=0.0, market_price=0.0, realized_pnl=-100.0),
        pos("U1", 5, et(tue, 9, 0), position=0, average_cost=0.0, market_price=0.0),  # lingering expired row
    ]
    eod, daily = run(rows, [D3, D4, tue])
    d = row_of(daily, trade_date=D4, con_id=5)
    assert d["realized_source"] == "portfolio" and d["pnl"] == Money(0.0)
    assert not row_of(eod, trade_date=D4, con_id=5)["is_expired"]
    assert eod.filter(pl.col("trade_date") == tue).height == 0


def test_several_accounts_same_contract() -> None:
    rows = [
        pos("U1", 1, et(D0, 15, 0), position=1, average_cost=500.0, market_price=5.0),
        pos("U2", 1, et(D0, 15, 0), position=-2, average_cost=520.0, market_price=5.0),
        pos("U1", 1, et(D1, 15, 0), position=1, average_cost=500.0, market_price=6.0),
        pos("U2", 1, et(D1, 15, 0), position=-2, average_cost=520.0, market_price=6.0),
    ]
    _, daily = run(rows, [D0, D1])
    assert row_of(daily, trade_date=D1, account="U1")["pnl"] == Money(100.0)
    assert row_of(daily, trade_date=D1, account="U2")["pnl"] == Money(-200.0)
    by_account = pnl_by_account(daily)
    assert row_of(by_account, trade_date=D1, account="U2")["pnl"] == Money(-200.0)
    by_und = pnl_by_underlying(daily)
    spy = row_of(by_und, trade_date=D1, underlying="SPY")
    assert spy["pnl"] == Money(-100.0) and spy["positions"] == 2
    baseline = row_of(by_und, trade_date=D0, underlying="SPY")
    assert baseline["pnl"] is None and baseline["pnl_known"] is None and baseline["baseline_positions"] == 2


def test_session_with_no_updates_carries_forward_with_zero_pnl() -> None:
    rows = [
        pos("U1", 1, et(D0, 15, 0), position=3, average_cost=500.0, market_price=6.0),
        pos("U1", 1, et(D2, 15, 0), position=3, average_cost=500.0, market_price=5.5),
    ]
    eod, daily = run(rows, [D0, D1, D2])
    mid = row_of(eod, trade_date=D1)
    assert mid["carried_forward"] and mid["is_stale_mark"] and mid["position"] == 3
    d1 = row_of(daily, trade_date=D1)
    assert d1["pnl"] == 0.0 and d1["realized_source"] == "no_update"
    assert row_of(daily, trade_date=D2)["pnl"] == Money(-150.0)


def test_backfill_in_one_run_equals_session_by_session() -> None:
    rows = [
        pos("U1", 1, et(D0, 15, 0), position=3, average_cost=500.0, market_price=6.0),
        pos("U2", 2, et(D0, 15, 0), position=-1, average_cost=300.0, market_price=3.0),
        pos("U1", 1, et(D1, 12, 0), position=1, average_cost=500.0, market_price=6.5, realized_pnl=300.0),
        pos("U2", 2, et(D3, 12, 0), position=0, average_cost=0.0, market_price=2.0, realized_pnl=100.0),
        pos("U1", 3, et(D3, 13, 0), position=2, average_cost=2000.0, market_price=41.0),
        pos("U1", 1, et(D4, 12, 0), position=1, average_cost=500.0, market_price=7.0),
    ]
    days = [D0, D1, D2, D3, D4]
    upd = updates_frame(rows)
    eod_all = eod_positions(upd, NO_GREEKS, days)
    daily_all = daily_pnl(eod_all, None, days)
    prev_eod = None
    eods, dailies = [], []
    for d in days:
        e = eod_positions(upd, NO_GREEKS, [d], prev_eod)
        dailies.append(daily_pnl(e, prev_eod, [d]))
        eods.append(e)
        prev_eod = e
    assert pl.concat(eods).equals(eod_all)
    assert pl.concat(dailies).equals(daily_all)
    # and a range starting later with the stored previous EOD
    later = eod_positions(upd, NO_GREEKS, [D2, D3, D4], eods[1])
    assert later.equals(eod_all.filter(pl.col("trade_date") >= D2))
    assert daily_pnl(later, eods[1], [D2, D3, D4]).equals(daily_all.filter(pl.col("trade_date") >= D2))


def test_account_rollup_converts_with_known_fx_and_keeps_unknown_apart() -> None:
    rows = [
        pos("U1", 1, et(D0, 15, 0), position=1, average_cost=500.0, market_price=5.0),
        pos("U1", 2, et(D0, 15, 0), position=1, average_cost=300.0, market_price=3.0, currency="EUR"),
        pos("U1", 4, et(D0, 15, 0), position=1, average_cost=150.0, market_price=1.0, currency="GBP"),
        pos("U1", 1, et(D1, 15, 0), position=1, average_cost=500.0, market_price=6.0),  # +100 USD
        pos("U1", 2, et(D1, 15, 0), position=1, average_cost=300.0, market_price=4.0, currency="EUR"),  # +100 EUR
        pos("U1", 4, et(D1, 15, 0), position=1, average_cost=150.0, market_price=2.0, currency="GBP"),  # +150 GBP
    ]
    _, daily = run(rows, [D0, D1])
    fx = pl.DataFrame(
        {"account": ["U1", "U1"], "currency": ["USD", "EUR"], "base_currency": ["USD", "USD"], "fx_rate": [1.0, 1.1]}
    )
    out = pnl_by_account(daily, fx).filter(pl.col("trade_date") == D1)
    usd = row_of(out, currency="USD")
    assert usd["pnl"] == Money(100.0 + 110.0) and usd["is_base_currency"] and usd["positions"] == 2
    gbp = row_of(out, currency="GBP")
    assert gbp["pnl"] == Money(150.0) and gbp["is_base_currency"] is False
    no_fx = pnl_by_account(daily).filter(pl.col("trade_date") == D1)
    assert sorted(no_fx["currency"].to_list()) == ["EUR", "GBP", "USD"]
    assert no_fx["is_base_currency"].null_count() == 3


def _merged(account: str, con_id: int, at: datetime, source: str, **fields: Any) -> dict[str, Any]:
    """A merged row as the streamer emits it: every field given (what each stream last reported), no derivation."""
    return pos(account, con_id, at, source=source, **fields)


def test_stale_portfolio_realized_is_not_used_after_a_later_trade() -> None:
    # The one updatePortfolio subscription rotates across accounts: U3's portfolio last reported at 10:00 / 11:00,
    # before its later trades; the position and PnL-single streams saw them. R_D must come from PnL-single.
    # (a) con 2, same-day round trip: buy 5 @ 1.00 (10:00, avg 100), sell 5 @ 1.40 (14:00): R = 5*0.40*100 = 200,
    #     U_D = 0 (flat), U_{D-1} = 0 (opened today): pnl = 200. The stale portfolio says "unset" (= 0).
    # (b) con 1, short 4 @ avg 200 (2.00/share), D0 mark 2.50: U0 = -4*250 + 800 = -200, cumulative realized 30.
    #     D1 11:00 buy back 2 @ 1.75 (+50, portfolio reports it), 14:00 buy back 1 @ 1.50 (+50, portfolio rotated
    #     away), close mark 1.40: U1 = -140 + 200 = 60, R = 130 - 30 = 100, pnl = (60 + 200) + 100 = 360
    #     = statement: -4*(1.40-2.50)*100 + 2*(1.40-1.75)*100 + 1*(1.40-1.50)*100 = 440 - 70 - 10.
    stale_portfolio_2 = {"market_price": 1.0, "market_value": 500.0, "unrealized_pnl": 0.0, "realized_pnl": None}
    stale_portfolio_1 = {"market_price": 1.75, "market_value": -350.0, "unrealized_pnl": 50.0, "realized_pnl": 50.0}
    rows = [
        pos("U3", 1, et(D0, 15, 0), position=-4, average_cost=200.0, market_price=2.5),
        _merged("U3", 1, et(D0, 15, 0, 1), "pnl_single", position=-4, average_cost=200.0, market_price=2.5,
                market_value=-1000.0, unrealized_pnl=-200.0, ib_unrealized_pnl=-200.0, ib_realized_pnl=30.0),
        pos("U3", 2, et(D1, 10, 0), position=5, average_cost=100.0, market_price=1.0),
        _merged("U3", 2, et(D1, 10, 0, 1), "pnl_single", position=5, average_cost=100.0, **stale_portfolio_2,
                ib_unrealized_pnl=0.0, ib_realized_pnl=0.0),
        pos("U3", 1, et(D1, 11, 0), position=-2, average_cost=200.0, market_price=1.75, realized_pnl=50.0,
            ib_unrealized_pnl=-200.0, ib_realized_pnl=30.0),
        _merged("U3", 1, et(D1, 11, 0, 1), "pnl_single", position=-2, average_cost=200.0, **stale_portfolio_1,
                ib_unrealized_pnl=50.0, ib_realized_pnl=80.0),
        _merged("U3", 2, et(D1, 14, 0), "position", position=0, average_cost=0.0, **stale_portfolio_2,
                ib_unrealized_pnl=0.0, ib_realized_pnl=0.0),
        _merged("U3", 2, et(D1, 14, 0, 1), "pnl_single", position=0, average_cost=0.0, **stale_portfolio_2,
                ib_unrealized_pnl=0.0, ib_realized_pnl=200.0),
        _merged("U3", 1, et(D1, 14, 0), "position", position=-1, average_cost=200.0, **stale_portfolio_1,
                ib_unrealized_pnl=50.0, ib_realized_pnl=80.0),
        _merged("U3", 1, et(D1, 14, 0, 1), "pnl_single", position=-1, average_cost=200.0, **stale_portfolio_1,
                ib_unrealized_pnl=50.0, ib_realized_pnl=130.0),
        _merged("U3", 1, et(D1, 15, 59), "pnl_single", position=-1, average_cost=200.0, **stale_portfolio_1,
                ib_unrealized_pnl=60.0, ib_realized_pnl=130.0),
    ]  # fmt: skip
    eod, daily = run(rows, [D0, D1])
    assert row_of(eod, trade_date=D1, con_id=2)["position_changed_at"] == et(D1, 14, 0)
    assert row_of(eod, trade_date=D1, con_id=1)["position_changed_at"] == et(D1, 14, 0)
    round_trip = row_of(daily, trade_date=D1, con_id=2)
    assert round_trip["realized_source"] == "pnl_single" and round_trip["realized_pnl"] == Money(200.0)
    assert round_trip["unrealized_pnl"] == 0.0 and round_trip["pnl"] == Money(200.0)
    buy_back = row_of(daily, trade_date=D1, con_id=1)
    assert buy_back["realized_source"] == "pnl_single" and buy_back["realized_pnl"] == Money(100.0)
    assert buy_back["prev_unrealized_pnl"] == Money(-200.0) and buy_back["unrealized_pnl"] == Money(60.0)
    assert buy_back["pnl"] == Money(360.0)
    assert buy_back["pnl"] == Money(-4 * (1.40 - 2.50) * 100 + 2 * (1.40 - 1.75) * 100 + (1.40 - 1.50) * 100)


def test_stale_portfolio_and_no_complete_source_leaves_realized_unknown() -> None:
    # Same round trip, but PnL-single never reported the close: no source saw D's last trade, R_D is unknown (null),
    # never the stale portfolio's 0.
    stale = {"market_price": 1.0, "market_value": 500.0, "unrealized_pnl": 0.0, "realized_pnl": None}
    rows = [
        pos("U1", 1, et(D0, 15, 0), position=1, average_cost=500.0, market_price=5.0),
        pos("U3", 2, et(D1, 10, 0), position=5, average_cost=100.0, market_price=1.0),
        _merged("U3", 2, et(D1, 10, 0, 1), "pnl_single", position=5, average_cost=100.0, **stale,
                ib_unrealized_pnl=0.0, ib_realized_pnl=0.0),
        _merged("U3", 2, et(D1, 14, 0), "position", position=0, average_cost=0.0, **stale,
                ib_unrealized_pnl=0.0, ib_realized_pnl=0.0),
    ]  # fmt: skip
    _, daily = run(rows, [D0, D1])
    d = row_of(daily, trade_date=D1, con_id=2)
    assert d["realized_pnl"] is None and d["realized_source"] is None and d["pnl"] is None


def test_portfolio_row_stamped_after_the_cut_does_not_repeat_the_realized_pnl() -> None:
    # D1: sell 4 of 10 @ 6.50 (avg 500): R = 600 (the check example). A portfolio row sent before D1's cut but
    # received after it (still carrying D1's 600; IB itself only resets at 20:30 ET) belongs to D2. No trade in
    # D2: R_D2 = 0, pnl_D2 = U change only = 6*(7.20-7.00)*100 = 120.
    rows = [
        pos("U1", 1, et(D0, 15, 0), position=10, average_cost=500.0, market_price=6.0),
        pos("U1", 1, et(D1, 11, 0), position=6, average_cost=500.0, market_price=6.5, realized_pnl=600.0),
        pos("U1", 1, et(D1, 15, 59), position=6, average_cost=500.0, market_price=7.0, realized_pnl=600.0),
        pos("U1", 1, et(D1, 16, 16), position=6, average_cost=500.0, market_price=7.0, realized_pnl=600.0),
        pos("U1", 1, et(D2, 15, 0), position=6, average_cost=500.0, market_price=7.2, realized_pnl=600.0),
    ]
    _, daily = run(rows, [D0, D1, D2])
    assert row_of(daily, trade_date=D1)["realized_pnl"] == Money(600.0)
    d2 = row_of(daily, trade_date=D2)
    assert d2["realized_source"] == "no_trade" and d2["realized_pnl"] == 0.0
    assert d2["pnl"] == Money(120.0)


def test_flat_position_re_reported_after_the_cut_creates_no_row_next_session() -> None:
    # con 5 expires Fri D3 worthless: IB closes it at D3's close (position 0, realized -100 = 1 x (0 - 1.00) x 100),
    # pnl_D3 = (0 - (-70)) - 100 = -30. A flat portfolio row re-sent after D3's cut (belonging to D4) and a flat row
    # of a contract never held (con 4) must not create rows on D4 -- neither in one run nor session by session.
    rows = [
        pos("U1", 1, et(D2, 15, 0), position=1, average_cost=500.0, market_price=5.0),
        pos("U1", 5, et(D2, 15, 0), position=1, average_cost=100.0, market_price=0.3),  # U = -70
        pos("U1", 5, et(D3, 16, 0), position=0, average_cost=0.0, market_price=0.0, realized_pnl=-100.0,
            market_value=0.0, unrealized_pnl=0.0),
        pos("U1", 5, et(D3, 16, 20), position=0, average_cost=0.0, market_price=0.0, realized_pnl=-100.0,
            market_value=0.0, unrealized_pnl=0.0),
        pos("U1", 4, et(D4, 10, 0), position=0, average_cost=0.0, market_price=0.0),
        pos("U1", 1, et(D4, 15, 0), position=1, average_cost=500.0, market_price=5.5),
    ]  # fmt: skip
    days = [D2, D3, D4]
    eod, daily = run(rows, days)
    closed = row_of(eod, trade_date=D3, con_id=5)
    assert closed["is_closed"] and not closed["is_expired"] and closed["position_changed_at"] == et(D3, 16, 0)
    d3 = row_of(daily, trade_date=D3, con_id=5)
    assert d3["realized_source"] == "portfolio" and d3["pnl"] == Money(-30.0)
    assert eod.filter(pl.col("trade_date") == D4)["con_id"].to_list() == [1]
    assert daily.filter(pl.col("trade_date") == D4)["con_id"].to_list() == [1]
    upd, prev_eod, eods = updates_frame(rows), None, []
    for d in days:
        eods.append(eod_positions(upd, NO_GREEKS, [d], prev_eod))
        prev_eod = eods[-1]
    assert pl.concat(eods).equals(eod)


def test_baseline_carries_ib_daily_pnl_flagged_and_null_only_without_it() -> None:
    rows = [
        pos("U1", 1, et(D0, 15, 0), position=2, average_cost=500.0, market_price=6.0),
        pos("U1", 1, et(D0, 15, 1), position=2, ib_daily_pnl=-37.5, source="pnl_single"),
        pos("U1", 2, et(D0, 15, 0), position=3, average_cost=500.0, market_price=6.0),
    ]
    _, daily = run(rows, [D0])
    carried = row_of(daily, trade_date=D0, con_id=1)
    assert carried["is_baseline"] and carried["pnl"] == Money(-37.5) and carried["pnl_source"] == "ib_daily"
    assert carried["pnl_minus_ib"] is None  # IB's figure is not compared with itself
    unknown = row_of(daily, trade_date=D0, con_id=2)
    assert unknown["is_baseline"] and unknown["pnl"] is None and unknown["pnl_source"] is None
