"""account_eod and account_pnl from hand-made account values: the latest value at or before the cut, FX at the cut,
bad rates and unknown currencies (null + reason, counted), the net liquidation change next to the positions' PnL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import polars as pl

from v6_assets import sessions
from v6_assets.analytics.account import account_eod, account_pnl, fx_rates_at_cut
from v6_assets.contracts.money import Money
from v6_assets.contracts.tables import ACCOUNT_VALUES, DAILY_PNL

MON, TUE = date(2026, 11, 16), date(2026, 11, 17)
UNSET = 1.7976931348623157e308


def _at(day: date, minutes_before_cut: float) -> datetime:
    return sessions.eod_cut(day).astimezone(UTC) - timedelta(minutes=minutes_before_cut)


def _values(rows: list[tuple[str, str, str, float | None, str | None, datetime]]) -> pl.DataFrame:
    """(account, key, currency, value, problem, received_at) -> account_values rows (value_text = the value)."""
    records: list[dict[str, Any]] = []
    for offset, (acct, key, currency, value, problem, at) in enumerate(rows):
        records.append({"account": acct, "key": key, "currency": currency, "value": value,
                        "value_text": "" if value is None else repr(value), "problem": problem, "seq": offset,
                        "received_at": at, "trade_date": sessions.session_for(at), "stream_id": "s",
                        "spool_offset": offset, "ingested_at": at})  # fmt: skip
    return pl.DataFrame(records, schema=ACCOUNT_VALUES.polars_schema)


def _account(acct: str, base: str, net_liq: float, at: datetime, **extra: float) -> list[Any]:
    figures = {"NetLiquidation": net_liq, "TotalCashValue": 1000.0, "InitMarginReq": 10.0, "MaintMarginReq": 8.0,
               "AvailableFunds": 990.0, "ExcessLiquidity": 992.0}  # fmt: skip
    rows: list[Any] = [(acct, k, base, v, None, at) for k, v in {**figures, **extra}.items()]
    return [*rows, (acct, "CashBalance", "BASE", 1000.0, None, at), (acct, "Currency", base, None, None, at)]


def _daily(rows: list[tuple[date, str, int, str, float | None]]) -> pl.DataFrame:
    records = [{"trade_date": d, "account": a, "con_id": c, "currency": cur, "pnl": pnl} for d, a, c, cur, pnl in rows]
    return pl.DataFrame(records, schema={k: DAILY_PNL.polars_schema[k] for k in records[0]})


def _row(frame: pl.DataFrame, **match: Any) -> dict[str, Any]:
    found = frame.filter(pl.all_horizontal(pl.col(k) == v for k, v in match.items()))
    assert found.height == 1, (match, found)
    return found.row(0, named=True)


def test_latest_value_at_or_before_the_cut_is_carried_and_after_the_cut_is_not_used() -> None:
    values = _values([
        *_account("U1", "EUR", 100_000.0, _at(MON, 30)),
        ("U1", "ExchangeRate", "USD", 0.9, None, _at(MON, 30)),
        ("U1", "CashBalance", "USD", -500.0, None, _at(MON, 30)),
        ("U1", "NetLiquidation", "EUR", 100_500.0, None, _at(MON, 5)),
        ("U1", "NetLiquidation", "EUR", 999_999.0, None, _at(MON, -1)),  # after Monday's cut: Tuesday's
    ])  # fmt: skip
    eod = account_eod(values, [MON, TUE])
    mon = _row(eod, trade_date=MON, account="U1", currency="BASE")
    assert mon["net_liquidation"] == Money(100_500.0) and mon["base_currency"] == "EUR" and mon["problem"] is None
    usd = _row(eod, trade_date=MON, account="U1", currency="USD")
    assert usd["fx_rate"] == 0.9 and usd["cash_balance_base"] == Money(-450.0)
    # Tuesday: only the late NetLiquidation changed, everything else is carried from Monday
    tue = _row(eod, trade_date=TUE, account="U1", currency="BASE")
    assert tue["net_liquidation"] == Money(999_999.0) and tue["total_cash_value"] == Money(1000.0)


def test_bad_exchange_rates_and_unknown_currencies_are_null_with_the_reason_never_substituted() -> None:
    rows = [*_account("U1", "EUR", 100_000.0, _at(MON, 60))]
    rows.append(("U1", "ExchangeRate", "USD", 0.9, None, _at(MON, 60)))
    # the latest rate at the cut is a sentinel: the earlier good one is NOT used
    rows.append(("U1", "ExchangeRate", "USD", None, f"ExchangeRate '{UNSET}' is not a usable rate", _at(MON, 10)))
    rows.append(("U1", "ExchangeRate", "GBP", None, "ExchangeRate '0' is not a usable rate", _at(MON, 10)))
    rows.append(("U1", "CashBalance", "usd$", None, "unknown currency 'usd$'", _at(MON, 10)))
    eod = account_eod(_values(rows), [MON])
    usd = _row(eod, account="U1", currency="USD")
    assert usd["fx_rate"] is None and "not a usable rate" in usd["problem"]
    assert _row(eod, account="U1", currency="GBP")["fx_rate"] is None
    assert "unknown currency 'usd$'" in _row(eod, account="U1", currency="usd$")["problem"]
    assert set(fx_rates_at_cut(eod)["currency"].to_list()) == set()  # nothing usable but the base's own
    daily = _daily([(MON, "U1", 1, "USD", 100.0), (MON, "U1", 2, "EUR", 50.0)])
    pnl = account_pnl(daily, eod, None, None)
    usd_pnl = _row(pnl, account="U1", level="currency", currency="USD")
    assert usd_pnl["pnl"] == Money(100.0) and usd_pnl["pnl_base"] is None
    assert "no usable ExchangeRate for USD" in usd_pnl["reason"]
    eur_pnl = _row(pnl, account="U1", level="currency", currency="EUR")
    assert eur_pnl["fx_rate"] == 1.0 and eur_pnl["pnl_base"] == Money(50.0)
    total = _row(pnl, account="U1", level="account")
    assert total["pnl"] is None and "no usable ExchangeRate for USD" in total["reason"]  # never a partial total


def test_missing_net_liquidation_is_a_reason_not_zero() -> None:
    eod = account_eod(_values([("U2", "ExchangeRate", "USD", 0.9, None, _at(MON, 5))]), [MON])
    base = _row(eod, account="U2", currency="BASE")
    assert base["net_liquidation"] is None and "no NetLiquidation at or before the cut" in base["problem"]
    assert "base currency unknown" in base["problem"]


def test_account_pnl_in_base_currency_next_to_the_net_liquidation_change() -> None:
    values = _values([
        *_account("U1", "EUR", 100_000.0, _at(MON, 5)),
        ("U1", "ExchangeRate", "USD", 0.9, None, _at(MON, 5)),
        ("U1", "NetLiquidation", "EUR", 100_180.0, None, _at(TUE, 5)),
        ("U1", "ExchangeRate", "USD", 0.8, None, _at(TUE, 5)),
        *_account("U2", "USD", 50_000.0, _at(TUE, 5)),
    ])  # fmt: skip
    eod = account_eod(values, [MON, TUE])
    daily = _daily([(TUE, "U1", 1, "USD", 200.0), (TUE, "U1", 2, "USD", 25.0), (TUE, "U2", 3, "USD", None)])
    pnl = account_pnl(daily, eod.filter(pl.col("trade_date") == TUE), eod.filter(pl.col("trade_date") == MON), None)
    usd = _row(pnl, account="U1", level="currency")
    # the day's USD PnL at Tuesday's cut rate (0.8), not Monday's
    assert usd["pnl"] == Money(225.0) and usd["fx_rate"] == 0.8 and usd["pnl_base"] == Money(180.0)
    total = _row(pnl, account="U1", level="account")
    assert total["currency"] == "EUR" and total["pnl"] == Money(180.0)
    assert total["net_liquidation_change"] == Money(180.0) and total["pnl_minus_net_liquidation"] == Money(0.0)
    assert total["deposits_withdrawals"] is None and "deposits/withdrawals unknown" in total["reason"]
    # U2: a position's PnL unknown -> the total is unknown; no previous cut -> no change
    u2 = _row(pnl, account="U2", level="account")
    assert u2["pnl"] is None and u2["net_liquidation_change"] is None and "previous cut" in u2["reason"]
    # known transfers are taken out of the net liquidation change
    flows = pl.DataFrame({"trade_date": [TUE], "account": ["U1"], "deposits_withdrawals": [1000.0]})
    with_flows = account_pnl(daily, eod.filter(pl.col("trade_date") == TUE), eod.filter(pl.col("trade_date") == MON),
                             flows)  # fmt: skip
    moved = _row(with_flows, account="U1", level="account")
    assert moved["net_liquidation_pnl"] == Money(-820.0) and moved["reason"] is None
