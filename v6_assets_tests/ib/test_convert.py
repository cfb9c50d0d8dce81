"""Conversion from real ib_async objects: every sentinel becomes None, repeats are not emitted."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime

import pytest
from ib_async import Contract, FuturesOption, Option, PnLSingle, PortfolioItem, Position, Stock
from ib_async.objects import OptionComputation

from v6_assets.contracts.unset import IB_UNSET_DOUBLE as UNSET_DOUBLE
from v6_assets.contracts.unset import is_ib_unset
from v6_assets.ib.convert import (
    GreeksThrottle,
    PositionMerger,
    clean_float,
    contract_fields,
    greeks_from_computation,
    parse_expiry,
    parse_multiplier,
    plan_greeks_lines,
)

T0 = datetime(2025, 3, 3, 15, 0, tzinfo=UTC)


def spx_call(con_id: int = 1001, multiplier: str = "100", expiry: str = "20250321") -> Option:
    return Option(
        symbol="SPX",
        lastTradeDateOrContractMonth=expiry,
        strike=5800.0,
        right="C",
        exchange="SMART",
        multiplier=multiplier,
        currency="USD",
        conId=con_id,
        tradingClass="SPXW",
        localSymbol="SPXW  250321C05800000",
    )


@pytest.mark.parametrize(
    "value", [UNSET_DOUBLE, -UNSET_DOUBLE, 1e300, "1.7976931348623157E307", math.nan, math.inf, None, "", "abc"]
)
def test_clean_float_maps_sentinels_to_none(value: object) -> None:
    assert clean_float(value) is None


@pytest.mark.parametrize("value", [0.0, -1.5, 9.99e299, 1e300, -1e305, UNSET_DOUBLE, math.nan, -math.inf])
def test_clean_float_applies_the_one_unset_rule(value: float) -> None:
    assert (clean_float(value) is None) is is_ib_unset(value)


def test_clean_float_keeps_real_numbers_including_zero_and_negatives() -> None:
    assert clean_float(0.0) == 0.0
    assert clean_float(-1.5) == -1.5
    assert clean_float("9.99E299") == 9.99e299  # just below the IB-unset magnitude (v6_assets.contracts.unset)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("100", 100.0), ("0.5", 0.5), ("10", 10.0), ("", None), ("0", None), ("abc", None), (None, None), (50, 50.0)],
)
def test_parse_multiplier(raw: object, expected: float | None) -> None:
    assert parse_multiplier(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("20250321", date(2025, 3, 21)),
        ("20230624 04:00:00 Asia/Shanghai", date(2023, 6, 23)),
        ("20250321 16:00:00 US/Eastern", date(2025, 3, 21)),
        ("20250321 15:00", date(2025, 3, 21)),
        ("202503", None),
        ("", None),
        ("2025-03-21", None),
        ("20250231", None),
        ("20250321 16:00:00 Mars/Olympus", None),
    ],
)
def test_parse_expiry(raw: str, expected: date | None) -> None:
    assert parse_expiry(raw) == expected


def test_contract_fields_fop_and_normalisation() -> None:
    fop = FuturesOption(
        symbol="ES",
        lastTradeDateOrContractMonth="20250321",
        strike=0.0,
        right="PUT",
        exchange="",
        multiplier="",
        currency="USD",
        conId=77,
    )
    fop.primaryExchange = "CME"
    fields = contract_fields(fop)
    assert fields.sec_type == "FOP"
    assert fields.right == "P"
    assert fields.strike is None
    assert fields.multiplier is None
    assert fields.exchange == "CME"


def test_portfolio_row_with_sentinels_emits_none_not_numbers() -> None:
    merger = PositionMerger(clock=lambda: T0)
    item = PortfolioItem(spx_call(), 2.0, 12.5, 2500.0, 1100.0, 300.0, UNSET_DOUBLE, "DU1")
    update = merger.on_portfolio(item)
    assert update is not None
    assert update.realized_pnl is None
    assert (update.position, update.market_price, update.market_value, update.average_cost) == (
        2.0,
        12.5,
        2500.0,
        1100.0,
    )
    assert update.unrealized_pnl == 300.0
    assert update.expiry == date(2025, 3, 21)
    assert update.multiplier == 100.0
    assert update.source == "portfolio"
    assert update.received_at == T0
    assert update.seq == 1
    assert update.ib_daily_pnl is None


def test_repeats_are_not_emitted_and_changes_are() -> None:
    merger = PositionMerger(clock=lambda: T0)
    item = PortfolioItem(spx_call(), 2.0, 12.5, 2500.0, 1100.0, 300.0, 0.0, "DU1")
    assert merger.on_portfolio(item) is not None
    assert merger.on_portfolio(item) is None
    assert merger.on_position(Position("DU1", spx_call(), 2.0, 1100.0)) is None
    changed = merger.on_portfolio(item._replace(marketPrice=13.0))
    assert changed is not None and changed.market_price == 13.0 and changed.seq == 2


def test_pnl_single_keeps_its_own_fields_and_never_overwrites_portfolio_ones() -> None:
    merger = PositionMerger(clock=lambda: T0)
    merger.on_portfolio(PortfolioItem(spx_call(), 2.0, 12.5, 2500.0, 1100.0, 300.0, 40.0, "DU1"))
    pnl = PnLSingle(
        "DU1", "", 1001, dailyPnL=25.0, unrealizedPnL=310.0, realizedPnL=UNSET_DOUBLE, position=2, value=2510.0
    )
    update = merger.on_pnl_single(pnl)
    assert update is not None and update.source == "pnl_single"
    assert (update.ib_daily_pnl, update.ib_unrealized_pnl, update.ib_realized_pnl, update.ib_value) == (
        25.0,
        310.0,
        None,
        2510.0,
    )
    assert (update.unrealized_pnl, update.realized_pnl, update.market_value) == (300.0, 40.0, 2500.0)
    assert merger.on_pnl_single(pnl) is None


def test_pnl_single_with_nan_defaults_and_unknown_position() -> None:
    merger = PositionMerger(clock=lambda: T0)
    assert merger.on_pnl_single(PnLSingle("DU1", "", 5)) is None
    assert merger.counters.pnl_for_unknown_position == 1
    merger.on_position(Position("DU1", spx_call(), 1.0, 500.0))
    update = merger.on_pnl_single(PnLSingle("DU1", "", 1001, dailyPnL=math.nan, position=1, value=math.nan))
    # Only NaN: nothing new, no row.
    assert update is None


def test_non_option_rows_and_foreign_accounts_are_dropped_and_counted() -> None:
    merger = PositionMerger(accounts=["DU1"], clock=lambda: T0)
    stock = Stock("AAPL", "SMART", "USD")
    stock.conId = 265598
    assert merger.on_position(Position("DU1", stock, 100.0, 150.0)) is None
    assert merger.on_portfolio(PortfolioItem(stock, 100.0, 1.0, 100.0, 150.0, 0.0, 0.0, "DU1")) is None
    assert merger.counters.non_option_dropped == 2
    assert merger.on_position(Position("DU2", spx_call(), 1.0, 500.0)) is None
    assert merger.counters.foreign_account_dropped == 1
    assert merger.known_keys() == set()


def test_sec_types_are_configurable() -> None:
    merger = PositionMerger(sec_types=["OPT"], clock=lambda: T0)
    fop = FuturesOption("ES", "20250321", 5800.0, "C", "CME", "50", "USD")
    fop.conId = 9
    assert merger.on_position(Position("DU1", fop, 1.0, 10.0)) is None
    assert merger.counters.non_option_dropped == 1


def test_all_sentinel_first_row_is_emitted_once() -> None:
    merger = PositionMerger(clock=lambda: T0)
    nan_row = Position("DU1", spx_call(), math.nan, UNSET_DOUBLE)
    first = merger.on_position(nan_row)
    assert first is not None and first.position is None and first.average_cost is None
    assert merger.on_position(nan_row) is None


def test_close_missing_after_resync() -> None:
    merger = PositionMerger(clock=lambda: T0)
    merger.on_position(Position("DU1", spx_call(1), 1.0, 5.0))
    merger.on_position(Position("DU1", spx_call(2), 3.0, 5.0))
    closed = merger.close_missing({("DU1", 1)})
    assert [(u.con_id, u.position) for u in closed] == [(2, 0.0)]
    assert set(merger.open_positions()) == {("DU1", 1)}
    assert merger.close_missing({("DU1", 1)}) == []


def test_greeks_sentinels_including_ib_async_vega_theta_leak() -> None:
    # What ib_async 2.1 builds for "not computed": delta/gamma None, but vega/theta stay -2.0.
    comp = OptionComputation(0, impliedVol=None, delta=None, optPrice=None, gamma=None, vega=-2.0, theta=-2.0)
    update = greeks_from_computation(1001, 13, comp, 1, T0)
    assert (update.delta, update.gamma, update.vega, update.theta, update.implied_vol) == (None,) * 5
    raw = OptionComputation(0, -1.0, -2.0, -1.0, -1.0, -2.0, -2.0, -2.0, -1.0)
    update = greeks_from_computation(1001, 13, raw, 2, T0)
    assert all(getattr(update, f) is None for f in ("delta", "gamma", "vega", "theta", "implied_vol", "und_price"))
    assert update.opt_price is None
    weird = OptionComputation(0, UNSET_DOUBLE, math.nan, 1.25, 0.0, 0.01, 0.2, -0.05, 5800.0)
    update = greeks_from_computation(1001, 13, weird, 3, T0)
    assert (update.implied_vol, update.delta, update.opt_price) == (None, None, 1.25)
    assert (update.gamma, update.vega, update.theta, update.und_price) == (0.01, 0.2, -0.05, 5800.0)


def test_greeks_throttle_at_most_one_per_interval_with_trailing_value() -> None:
    throttle = GreeksThrottle(1.0, clock=lambda: T0)
    comps = [OptionComputation(0, 0.2, 0.5 + i / 100, 1.0, 0.0, 0.01, 0.1, -0.1, 5800.0) for i in range(4)]
    assert throttle.offer(1, 13, comps[0], now=0.0) is not None
    assert throttle.offer(1, 13, comps[1], now=0.3) is None
    assert throttle.offer(1, 13, comps[2], now=0.6) is None
    assert throttle.offer(2, 13, comps[0], now=0.6) is not None  # other contracts are independent
    assert throttle.flush_due(0.9) == []
    trailing = throttle.flush_due(1.0)
    assert [(g.con_id, g.delta) for g in trailing] == [(1, 0.52)]
    assert throttle.offer(1, 13, comps[3], now=1.5) is None
    assert throttle.suppressed == 1


def test_plan_greeks_lines_budget_priority_and_rotation() -> None:
    priorities = {cid: float(cid) for cid in range(1, 21)}
    assert plan_greeks_lines(priorities, 90, 0) == set(priorities)
    assert plan_greeks_lines(priorities, 0, 0) == set()
    plans = [plan_greeks_lines(priorities, 10, i) for i in range(11)]
    pinned = {20, 19, 18, 17, 16, 15, 14, 13, 12}
    for plan in plans:
        assert len(plan) == 10 and pinned <= plan
    rotated = {next(iter(plan - pinned)) for plan in plans}
    assert rotated == set(range(1, 12))


def test_contract_without_con_id_type_is_rejected_loudly() -> None:
    bad = Contract(secType="OPT", conId="x")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        PositionMerger().on_position(Position("DU1", bad, 1.0, 1.0))


def test_cached_contract_fields_follow_a_contract_that_changes() -> None:
    # The merger caches converted contract fields by the raw attribute values: a changed attribute is a new entry.
    merger = PositionMerger(clock=lambda: T0)
    first = merger.on_portfolio(PortfolioItem(spx_call(multiplier="100"), 2.0, 12.5, 2500.0, 1100.0, 300.0, 0.0, "DU1"))
    again = merger.on_portfolio(PortfolioItem(spx_call(multiplier="100"), 2.0, 12.6, 2520.0, 1100.0, 320.0, 0.0, "DU1"))
    changed = merger.on_portfolio(PortfolioItem(spx_call(multiplier="10"), 2.0, 12.7, 254.0, 1100.0, 30.0, 0.0, "DU1"))
    assert first is not None and again is not None and changed is not None
    assert (first.multiplier, again.multiplier, changed.multiplier) == (100.0, 100.0, 10.0)
    assert changed.local_symbol == "SPXW  250321C05800000" and changed.exchange == "SMART"


def test_portfolio_values_as_the_wrapper_passes_them_equal_the_portfolio_item_path() -> None:
    # UpdatePublisher.hook_portfolio takes rows from ib_async's wrapper call (contract, position, price, value,
    # average cost, unrealized, realized, account): the same update as from a PortfolioItem, sentinels included.
    args = (spx_call(), 2.0, 12.5, 2500.0, 1100.0, 300.0, UNSET_DOUBLE, "DU1")
    from_item = PositionMerger(clock=lambda: T0).on_portfolio(PortfolioItem(*args))
    from_wrapper = PositionMerger(clock=lambda: T0).on_portfolio_values(*args)
    assert from_item is not None and from_item == from_wrapper and from_wrapper.realized_pnl is None
