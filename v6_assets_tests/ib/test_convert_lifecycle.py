"""The option book keeps a stock position only as the leg of an exercise/assignment: an option position shrinking
and the stock of its underlying changing by the delivered shares within a few minutes, in either order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ib_async import Option, Position, Stock

from v6_assets.contracts.lifecycle import delivered_shares
from v6_assets.ib.convert import DELIVERY_WINDOW_S, PositionMerger

T0 = datetime(2025, 3, 6, 7, 30, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def put(con_id: int = 503, strike: float = 110.0) -> Option:
    return Option("XYZ", "20250307", strike, "P", "SMART", "100", "USD", conId=con_id)


def stock(con_id: int = 500, symbol: str = "XYZ") -> Stock:
    s = Stock(symbol, "SMART", "USD")
    s.conId = con_id
    return s


def test_delivered_shares() -> None:
    assert delivered_shares("C", -2, 100) == 200  # two long calls exercised: shares received
    assert delivered_shares("C", 2, 100) == -200  # two short calls assigned: shares delivered
    assert delivered_shares("P", 2, 100) == 200  # two short puts assigned: shares received
    assert delivered_shares("P", -1, 103) == -103  # an adjusted long put exercised
    assert delivered_shares(None, 1, 100) is None


def test_the_stock_leg_after_the_option_is_kept() -> None:
    clock = Clock()
    merger = PositionMerger(clock=clock)
    merger.on_position(Position("DU1", put(), -2.0, 980.0))
    clock.now += timedelta(seconds=1)
    merger.on_position(Position("DU1", put(), 0.0, 0.0))  # assigned: the short puts go
    update = merger.on_position(Position("DU1", stock(), 200.0, 110.0))  # ... and 200 shares appear
    assert update is not None and (update.con_id, update.sec_type, update.position) == (500, "STK", 200.0)
    assert merger.counters.delivered_stock_kept == 1
    # from now on the stock is part of the book like an option
    assert ("DU1", 500) in merger.open_positions()
    assert merger.on_position(Position("DU1", stock(), 300.0, 110.0)) is not None


def test_the_stock_leg_before_the_option_is_kept_when_the_option_follows() -> None:
    clock = Clock()
    merger = PositionMerger(clock=clock)
    merger.on_position(Position("DU1", put(), -2.0, 980.0))
    assert merger.on_position(Position("DU1", stock(), 200.0, 110.0)) is None  # not (yet) a leg
    assert merger.take_kept_stock() == []
    merger.on_position(Position("DU1", put(), 0.0, 0.0))
    kept = merger.take_kept_stock()
    assert [(u.con_id, u.position) for u in kept] == [(500, 200.0)]


def test_unrelated_stock_is_dropped_and_counted() -> None:
    clock = Clock()
    merger = PositionMerger(clock=clock)
    # pre-existing stock; an option closed by a trade much later does not turn it into a leg
    assert merger.on_position(Position("DU1", stock(), 200.0, 100.0)) is None
    merger.on_position(Position("DU1", put(), -2.0, 980.0))
    clock.now += timedelta(seconds=DELIVERY_WINDOW_S + 60)
    merger.on_position(Position("DU1", put(), 0.0, 0.0))
    assert merger.take_kept_stock() == []
    # a stock change of the wrong size, or in another symbol, is not the leg either
    assert merger.on_position(Position("DU1", stock(), 250.0, 100.0)) is None
    assert merger.on_position(Position("DU1", stock(501, "ABC"), 200.0, 100.0)) is None
    assert merger.counters.delivered_stock_kept == 0
    assert merger.counters.non_option_dropped == 3
    assert ("DU1", 500) not in merger.known_keys()


def test_two_options_delivered_into_one_stock_position_at_once() -> None:
    clock = Clock()
    merger = PositionMerger(clock=clock)
    merger.on_position(Position("DU1", put(503, 110.0), -2.0, 980.0))
    merger.on_position(Position("DU1", put(505, 105.0), -1.0, 500.0))
    merger.on_position(Position("DU1", put(503, 110.0), 0.0, 0.0))
    merger.on_position(Position("DU1", put(505, 105.0), 0.0, 0.0))
    update = merger.on_position(Position("DU1", stock(), 300.0, 108.33))
    assert update is not None and update.position == 300.0
