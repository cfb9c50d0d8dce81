"""book_pnl with IB's lifecycle bookings: a physically settled short put closes at 0 and its stock leg opens at the
strike (IB's statement convention), each leg's statement PnL by hand; without the bookings the change is unexplained."""

from datetime import date

import polars as pl

from v6_assets.analytics.book_pnl import book_pnl
from v6_assets.contracts.money import amounts_agree
from v6_assets.contracts.tables import CONTRACT_COLUMNS, TRADE_DATE

DAY = date(2025, 3, 4)


def _daily() -> pl.DataFrame:
    base = {c: None for c in CONTRACT_COLUMNS}
    put = {**base, "account": "DU2", "con_id": 21, "symbol": "ABC", "sec_type": "OPT", "strike": 55.0, "right": "P",
           "multiplier": 100.0, "position": 0.0, "prev_position": -1.0}  # fmt: skip
    stock = {**base, "account": "DU2", "con_id": 20, "symbol": "ABC", "sec_type": "STK", "multiplier": 1.0,
             "position": 100.0, "prev_position": 0.0}  # fmt: skip
    rows = [{TRADE_DATE: DAY, **r, "pnl": None, "is_baseline": False, "ib_daily_pnl": None} for r in (put, stock)]
    return pl.DataFrame(rows, infer_schema_length=None)


def _inputs() -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    marks = pl.DataFrame({TRADE_DATE: [DAY, DAY], "account": ["DU2", "DU2"], "con_id": [21, 20], "mark": [5.0, 50.0],
                          "is_stale_mark": [False, False], "is_expired": [False, False]})  # fmt: skip
    prev = pl.DataFrame({TRADE_DATE: [DAY], "account": ["DU2"], "con_id": [21], "prev_mark": [5.0]})
    executions = pl.DataFrame(schema={TRADE_DATE: pl.Date, "account": pl.String, "con_id": pl.Int64,
                                      "quantity": pl.Float64, "price": pl.Float64, "commission": pl.Float64,
                                      "multiplier": pl.Float64})  # fmt: skip
    return marks, prev, executions


def test_an_assignment_books_the_option_at_zero_and_the_stock_at_the_strike() -> None:
    marks, prev, executions = _inputs()
    bookings = pl.DataFrame({TRADE_DATE: [DAY, DAY], "account": ["DU2", "DU2"], "con_id": [21, 20],
                             "quantity": [1.0, 100.0], "price": [0.0, 55.0]})  # fmt: skip
    out = {r["con_id"]: r for r in book_pnl(_daily(), marks, prev, executions, bookings).iter_rows(named=True)}
    # the short put's premium is kept: -1 x (0 - 5) x 100; the shares bought at 55 are marked at 50: 100 x (50 - 55)
    assert amounts_agree(out[21]["statement_pnl"], 500.0) and amounts_agree(out[20]["statement_pnl"], -500.0)
    assert out[21]["executions"] == 0 and out[21]["unexplained_quantity"] == 0.0
    assert "booked by IB" in out[21]["reason"]


def test_without_the_bookings_the_change_is_unexplained() -> None:
    marks, prev, executions = _inputs()
    out = {r["con_id"]: r for r in book_pnl(_daily(), marks, prev, executions).iter_rows(named=True)}
    assert out[21]["unexplained_quantity"] == 1.0 and "without an execution" in out[21]["reason"]
