"""position_events from EOD states and executions (pure): each fill named by the position before and after it, the
remainder named by the lifecycle (a matching stock leg, the expiry, the cut mark) or left unexplained."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import polars as pl

from v6_assets.analytics.position_events import EOD_INPUT, EXEC_INPUT, position_events

D = date(2025, 3, 6)
AT = datetime(2025, 3, 6, 15, 0, tzinfo=UTC)
EXEC_SCHEMA = {"trade_date": pl.Date, "account": pl.String, "con_id": pl.Int64, "exec_id": pl.String,
               "exec_time": pl.Datetime("us", "UTC"), "quantity": pl.Float64, "price": pl.Float64,
               "commission": pl.Float64}  # fmt: skip


def _eod(rows: list[dict[str, Any]]) -> pl.DataFrame:
    base = {"trade_date": D, "account": "DU1", "symbol": "XYZ", "sec_type": "OPT", "expiry": date(2025, 3, 21),
            "strike": 100.0, "right": "C", "multiplier": 100.0, "currency": "USD", "market_price": 1.0,
            "position_changed_at": AT}  # fmt: skip
    frame = pl.DataFrame([{**base, **r} for r in rows])
    return frame.select(EOD_INPUT).cast({"expiry": pl.Date, "strike": pl.Float64, "right": pl.String})


def _prev(rows: dict[int, float]) -> pl.DataFrame:
    return pl.DataFrame(
        [{"trade_date": D, "account": "DU1", "con_id": c, "prev_position": q} for c, q in rows.items()],
        schema={"trade_date": pl.Date, "account": pl.String, "con_id": pl.Int64, "prev_position": pl.Float64},
    )


def _fills(rows: list[tuple[int, float, float]]) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "trade_date": D,
                "account": "DU1",
                "con_id": c,
                "exec_id": f"e{i}",
                "exec_time": AT + timedelta(minutes=i),
                "quantity": q,
                "price": p,
                "commission": 1.0,
            }
            for i, (c, q, p) in enumerate(rows)
        ],
        schema=EXEC_SCHEMA,
    ).select(EXEC_INPUT)


def _events(frame: pl.DataFrame) -> list[tuple[Any, ...]]:
    return [(r["con_id"], r["seq"], r["event"], r["quantity"], r["position_after"], r["exec_id"], r["linked_con_id"])
            for r in frame.sort("con_id", "seq").iter_rows(named=True)]  # fmt: skip


def test_every_fill_is_named_by_the_position_before_and_after_it() -> None:
    eod = _eod([{"con_id": 1, "position": -1.0}, {"con_id": 2, "position": 0.0}])
    fills = _fills([(1, 2.0, 3.0), (1, 1.0, 3.1), (1, -2.0, 3.2), (1, -3.0, 3.3), (2, 5.0, 1.0), (2, -5.0, 1.2)])
    assert _events(position_events(eod, _prev({1: 1.0}), fills)) == [
        (1, 1, "increased", 2.0, 3.0, "e0", None),
        (1, 2, "increased", 1.0, 4.0, "e1", None),
        (1, 3, "reduced", -2.0, 2.0, "e2", None),
        (1, 4, "reversed", -3.0, -1.0, "e3", None),
        (2, 1, "opened", 5.0, 5.0, "e4", None),  # a same-day round trip
        (2, 2, "closed", -5.0, 0.0, "e5", None),
    ]


def test_the_remainder_is_the_lifecycle() -> None:
    eod = _eod([
        {"con_id": 10, "position": 0.0, "right": "P", "strike": 110.0},  # short puts assigned: +200 shares
        {"con_id": 11, "position": 1.0},  # one of three long calls exercised early: +200 shares
        {"con_id": 12, "position": 0.0, "expiry": D, "market_price": 0.0},  # expired worthless
        {"con_id": 13, "position": 0.0, "expiry": D, "market_price": 4.5, "sec_type": "FOP"},  # cash-settled
        {"con_id": 14, "position": 2.0},  # shrank by 1 before its expiry, nothing delivered: unexplained
        {"con_id": 500, "position": 400.0, "sec_type": "STK", "expiry": None, "strike": None, "right": None,
         "multiplier": 1.0},
    ])  # fmt: skip
    prev = _prev({10: -2.0, 11: 3.0, 12: 5.0, 13: 2.0, 14: 3.0, 500: 0.0})
    events = position_events(eod, prev, _fills([]))
    assert _events(events) == [
        (10, 1, "assigned", 2.0, 0.0, None, 500),
        (11, 1, "exercised", -2.0, 1.0, None, 500),
        (12, 1, "expired", -5.0, 0.0, None, None),
        (13, 1, "exercised", -2.0, 0.0, None, None),
        (14, 1, "unexplained", -1.0, 2.0, None, None),
        (500, 1, "assigned", 200.0, 200.0, None, 10),
        (500, 2, "exercised", 200.0, 400.0, None, 11),
    ]
    legs = events.filter(pl.col("con_id") == 500)
    assert legs["price"].to_list() == [110.0, 100.0]  # at the strike
    assert events.filter(pl.col("con_id") == 13)["price"].to_list() == [4.5]  # cash: the intrinsic (cut mark)


def test_a_baseline_session_infers_no_lifecycle() -> None:
    eod = _eod([{"con_id": 1, "position": 4.0}])
    events = position_events(eod, _prev({}), _fills([(1, 1.0, 2.0)]), baseline_days=[D])
    assert _events(events) == [(1, 1, "increased", 1.0, 4.0, "e0", None)]
