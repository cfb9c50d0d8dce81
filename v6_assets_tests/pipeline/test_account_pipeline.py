"""account_eod / account_pnl on real Delta tables: bad account values (an ExchangeRate of 0, IB's sentinels, NaN, "",
an unknown currency) are counted and leave the base-currency figures null with the reason, the stored stream keeps
every row; a missing upstream fails with a message and writes nothing."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from v6_assets import sessions
from v6_assets.contracts.tables import ACCOUNT_VALUES, DAILY_PNL, EOD_POSITIONS
from v6_assets.ib.account_values import value_problem
from v6_assets.lake import Lake
from v6_assets.pipeline.account import refresh_account_eod, refresh_account_pnl
from v6_assets.pipeline.daily import MissingUpstreamError

MON, TUE = date(2026, 11, 16), date(2026, 11, 17)
BAD_RATES = ("0", "1.7976931348623157e308", "-1", "nan", "")


def _values(day: date, rows: list[tuple[str, str, str]]) -> pl.DataFrame:
    """(key, currency, text) of account U1 an hour before the cut, as the streamer emits them (value_problem)."""
    at = sessions.eod_cut(day).astimezone(UTC) - timedelta(hours=1)
    records: list[dict[str, Any]] = []
    for i, (key, currency, text) in enumerate(rows):
        number, problem = value_problem(key, currency, text)
        records.append({"account": "U1", "key": key, "currency": currency, "value": number, "value_text": text,
                        "problem": problem, "seq": i, "received_at": at + timedelta(seconds=i), "trade_date": day,
                        "stream_id": "s", "spool_offset": i + (0 if day == MON else 1000),
                        "ingested_at": datetime(2026, 11, 18, tzinfo=UTC)})  # fmt: skip
    return pl.DataFrame(records, schema=ACCOUNT_VALUES.polars_schema)


GOOD = [
    ("NetLiquidation", "EUR", "100000.00"),
    ("TotalCashValue", "EUR", "90000.00"),
    ("InitMarginReq", "EUR", "1.00"),
    ("MaintMarginReq", "EUR", "0.80"),
    ("AvailableFunds", "EUR", "99999.00"),
    ("ExcessLiquidity", "EUR", "99999.20"),
    ("CashBalance", "BASE", "90000.00"),
    ("Currency", "EUR", "EUR"),
    ("ExchangeRate", "USD", "0.9231"),
]


def test_missing_upstream_fails_with_a_message_and_writes_nothing(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    with pytest.raises(MissingUpstreamError, match="account_values was never written"):
        refresh_account_eod(lake, [MON])
    lake.overwrite_sessions(ACCOUNT_VALUES, _values(TUE, GOOD), [TUE])
    with pytest.raises(MissingUpstreamError, match=f"for {MON}: no account value was received"):
        refresh_account_eod(lake, [MON])
    with pytest.raises(MissingUpstreamError, match="account_eod for 2026-11-17 was never computed"):
        refresh_account_pnl(lake, [TUE])
    assert not lake.exists("account_eod") and not lake.exists("account_pnl")


def test_bad_rates_and_unknown_currencies_are_counted_and_never_used(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    lake.overwrite_sessions(ACCOUNT_VALUES, _values(MON, GOOD), [MON])
    # Tuesday: the USD rate goes bad in every way IB can send it (the last one stays at the cut), a GBP rate of 0,
    # a cash balance in a currency that is not a code
    bad = [("ExchangeRate", "USD", text) for text in BAD_RATES]
    bad += [("ExchangeRate", "GBP", "0"), ("CashBalance", "usd$", "12.00"), ("NetLiquidation", "EUR", "100500.00")]
    lake.overwrite_sessions(ACCOUNT_VALUES, _values(TUE, bad), [TUE])
    run = refresh_account_eod(lake, [MON, TUE])
    assert int(run.bad_values["rows"].sum()) == len(BAD_RATES) + 2  # every bad value counted, once
    assert set(run.bad_values["currency"].to_list()) == {"USD", "GBP", "usd$"}
    eod = lake.read_sessions("account_eod", [MON, TUE])
    usd = eod.filter(pl.col("currency") == "USD").sort("trade_date")
    assert usd["fx_rate"].to_list() == [0.9231, None]  # Monday's good rate is not carried over Tuesday's bad one
    assert "ExchangeRate" in usd["problem"][1]
    assert "unknown currency 'usd$'" in eod.filter(pl.col("currency") == "usd$")["problem"][0]
    # nothing lost: every streamed row is still stored with its raw text
    assert lake.scan(ACCOUNT_VALUES).select(pl.len()).collect().item() == len(GOOD) + len(bad)

    row = {"trade_date": TUE, "account": "U1", "con_id": 1, "currency": "USD", "position": 1.0}
    lake.overwrite_sessions(EOD_POSITIONS, pl.DataFrame([row], schema=EOD_POSITIONS.polars_schema), [TUE])
    lake.overwrite_sessions(DAILY_PNL, pl.DataFrame([{**row, "pnl": 100.0}], schema=DAILY_PNL.polars_schema), [TUE])
    frame = refresh_account_pnl(lake, [TUE]).frame
    currency = frame.filter(pl.col("level") == "currency").row(0, named=True)
    assert currency["pnl"] == 100.0 and currency["fx_rate"] is None and currency["pnl_base"] is None
    assert "no usable ExchangeRate for USD at the cut" in currency["reason"]
    total = frame.filter(pl.col("level") == "account").row(0, named=True)
    assert total["pnl"] is None and total["net_liquidation_change"] == 500.0
    assert total["pnl_minus_net_liquidation"] is None
