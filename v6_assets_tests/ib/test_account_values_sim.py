"""Account values: every allowed account through reqAccountUpdatesMulti beside the one-account portfolio rule,
through the spool into the ``account_values`` table, equal to what the simulator sent; bad values counted, kept."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import polars as pl
import pytest
from ib_async import AccountValue

from v6_assets.contracts.streams import AccountValueUpdate
from v6_assets.gateway_sim import GatewaySimulator
from v6_assets.gateway_sim.protocol import In
from v6_assets.ib import IBPositionStreamer, Spool, StreamerSettings
from v6_assets.ib.account_values import AccountValueTracker, value_problem
from v6_assets.ib.streamer import discard_process_streamer
from v6_assets.lake import ACCOUNT_VALUES, Lake
from v6_assets.pipeline.ingest import drain_spool_to_lake
from v6_assets_tests.gateway_sim.helpers import tiny_scenario
from v6_assets_tests.ib.simhelpers import wait_for

CLIENT_ID = 73
AT = datetime(2025, 3, 3, 15, tzinfo=UTC)


def test_every_account_lands_in_the_lake_equal_to_what_was_sent(tmp_path: Path) -> None:
    with GatewaySimulator(tiny_scenario(accounts=3), port=0).running() as sim:
        settings = StreamerSettings(port=sim.port, client_id=CLIENT_ID, home=tmp_path, connect_timeout_s=2.0)  # type: ignore[call-arg]
        streamer = IBPositionStreamer()
        try:
            streamer.ensure_started(settings, clock=sim.clock.now)
            wait_for(lambda: streamer.status().counters.account_values_emitted >= 3 * 12, 20, "account values")
            status = streamer.status()
        finally:
            discard_process_streamer()
        requests = sim.requests()
        sent = [e for e in sim.truth["sent"] if e["kind"] == "account_value" and e["client_id"] == CLIENT_ID]
    # one multi request per account, and still one portfolio subscription at a time
    multi = [r["fields"][3] for r in requests if r["msg_id"] == In.REQ_ACCOUNT_UPDATES_MULTI]
    assert sorted(multi) == ["DU1", "DU2", "DU3"]
    assert status.counters.account_value_errors == 0
    lake = Lake(str(tmp_path / "lake"))
    with Spool(settings.spool_path) as spool:
        drain_spool_to_lake(spool, lake, settings.stream_id)
    rows = lake.scan(ACCOUNT_VALUES.name).collect()
    latest = rows.sort("spool_offset").group_by("account", "key", "currency").last()
    got = {(r["account"], r["key"], r["currency"]): r["value_text"] for r in latest.iter_rows(named=True)}
    expected: dict[tuple[str, str, str], str] = {}
    for entry in sent:  # the last value sent per key is the one the lake ends with
        expected[(entry["account"], entry["key"], entry["currency"])] = entry["value"]
    assert got == expected
    keys = set(latest.filter(pl.col("account") == "DU2")["key"])
    assert {"NetLiquidation", "TotalCashValue", "CashBalance", "ExchangeRate", "InitMarginReq", "MaintMarginReq",
            "AvailableFunds", "ExcessLiquidity"} <= keys  # fmt: skip
    net = latest.filter((pl.col("account") == "DU2") & (pl.col("key") == "NetLiquidation"))
    assert net["value"].item() == float(net["value_text"].item())


@pytest.mark.parametrize(
    ("key", "currency", "text", "problem"),
    [
        ("ExchangeRate", "EUR", "0", "not a usable rate"),
        ("ExchangeRate", "EUR", "1.7976931348623157E308", "is not a number"),
        ("ExchangeRate", "EUR", "-1", "not a usable rate"),
        ("NetLiquidation", "usd$", "100.00", "unknown currency"),
        ("NetLiquidation", "USD", "", "is not a number"),
    ],
)
def test_bad_values_are_kept_as_text_and_counted(key: str, currency: str, text: str, problem: str) -> None:
    emitted: list[AccountValueUpdate] = []
    tracker = AccountValueTracker(("DU1",), lambda: AT, emitted.append)
    tracker.on_account_value(AccountValue("DU1", key, text, currency, ""))
    tracker.on_account_value(AccountValue("DU9", key, text, currency, ""))  # not an allowed account
    (row,) = emitted
    assert row.value is None and row.value_text == text and row.problem is not None and problem in row.problem
    assert tracker.counters.errors == 1 and tracker.counters.foreign_account_dropped == 1


def test_good_values_and_text_values() -> None:
    assert value_problem("ExchangeRate", "USD", "0.9215") == (0.9215, None)
    assert value_problem("ExchangeRate", "BASE", "1.00") == (1.0, None)
    assert value_problem("AccountType", "", "INDIVIDUAL") == (None, None)
