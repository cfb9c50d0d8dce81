"""Executions and commissions end to end: the simulator's fills -> ib_async -> the streamer -> spool -> Delta.

Ground truth is the simulator's execution log (every revision it issued, with its commission); the test compares
the lake's ``executions`` table, reduced by ``analytics.book_executions``, to it to the cent.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from v6_assets.analytics.book_executions import book_executions
from v6_assets.contracts.money import amounts_agree
from v6_assets.gateway_sim import GatewaySimulator, parse_scenario
from v6_assets.ib import IBPositionStreamer, Spool, StreamerSettings
from v6_assets.ib.streamer import discard_process_streamer
from v6_assets.lake import EXECUTIONS, Lake
from v6_assets.pipeline.ingest import drain_spool_to_lake
from v6_assets_tests.ib.simhelpers import wait_for

CLIENT_ID = 71
START = "2025-03-03T09:50:00-05:00"  # a Monday, regular session

SCENARIO = f"""
name: executions
seed: 5
clock: {{start: "{START}", speed: 300, min_real_interval_s: 0.02, tick_real_s: 0.02, skip_nights: false}}
accounts: [{{id: DU1, base_currency: USD}}, {{id: DU2, base_currency: USD}}]
underlyings: [{{symbol: XYZ, spot: 100.0, vol: 0.000001}}]
contracts:
  - {{con_id: 11, symbol: XYZ, sec_type: OPT, expiry: "20250321", strike: 100, right: C}}
  - {{con_id: 12, symbol: XYZ, sec_type: OPT, expiry: "20250321", strike: 95, right: C}}
  - {{con_id: 14, symbol: XYZ, sec_type: OPT, expiry: "20250321", strike: 90, right: P, multiplier: 50}}
positions:
  - {{account: DU1, con_id: 12, qty: 3, avg_cost: 480.0}}
events:
  # open, then a partial close
  - {{kind: trade, session: 0, time: "10:00", account: DU1, con_id: 11, qty: 10, price: 1.5, commission: 1.0}}
  - {{kind: trade, session: 0, time: "10:03", account: DU1, con_id: 11, qty: -4, price: 1.8, commission: 0.6}}
  # same-day round trip on the second account
  - {{kind: trade, session: 0, time: "10:05", account: DU2, con_id: 14, qty: 2, price: 3.0, commission: 0.5}}
  - {{kind: trade, session: 0, time: "10:07", account: DU2, con_id: 14, qty: -2, price: 3.4, commission: 0.5}}
  # a partial close of a pre-existing position, corrected two minutes later
  - {{kind: trade, session: 0, time: "10:09", account: DU1, con_id: 12, qty: -1, price: 4.0, commission: 0.7}}
  - {{kind: correct_execution, session: 0, time: "10:11", account: DU1, con_id: 12, price: 4.1}}
  # a commission that arrives after a reconnect
  - {{kind: trade, session: 0, time: "10:13", account: DU1, con_id: 11, qty: 1, price: 2.0, commission: 0.3,
      commission_delay_s: 600}}
  - {{kind: disconnect, session: 0, time: "10:15"}}
  # executions missed while disconnected (connections refused), recovered by the re-request
  - {{kind: refuse, session: 0, time: "10:30", seconds: 3}}  # real seconds
  - {{kind: disconnect, session: 0, time: "10:30"}}
  - {{kind: trade, session: 0, time: "10:32", account: DU1, con_id: 11, qty: -2, price: 2.2, commission: 0.4}}
  - {{kind: trade, session: 0, time: "10:34", account: DU2, con_id: 11, qty: -1, price: 2.3, commission: 0.25}}
"""
DONE_AT = "2025-03-03T11:00:00-05:00"


@pytest.fixture
def sim() -> Iterator[GatewaySimulator]:
    scenario = parse_scenario(yaml.safe_load(SCENARIO))
    with GatewaySimulator(scenario, port=0).running() as simulator:
        yield simulator
        assert simulator.order_violations() == 0


def _settings(sim: GatewaySimulator, home: Path) -> StreamerSettings:
    return StreamerSettings(port=sim.port, client_id=CLIENT_ID, home=home, backoff_initial_s=0.1, backoff_max_s=0.3,
                            connect_timeout_s=2.0, circuit_cooldown_s=0.5)  # type: ignore[call-arg]  # fmt: skip


def _truth(sim: GatewaySimulator) -> dict[str, dict[str, Any]]:
    """The latest revision of every execution the simulator issued, by exec id base."""
    latest: dict[str, dict[str, Any]] = {}
    for entry in sim.state.executions.history:
        base = str(entry["exec_id"]).rsplit(".", 1)[0]
        latest[base] = entry
    return latest


def test_executions_reach_the_lake_exactly_once_and_equal_truth(sim: GatewaySimulator, tmp_path: Path) -> None:
    settings = _settings(sim, tmp_path)
    streamer = IBPositionStreamer()
    try:
        streamer.ensure_started(settings, clock=sim.clock.now)
        assert sim.wait_sim_time(datetime.fromisoformat(DONE_AT), timeout=60)
        truth = _truth(sim)
        assert len(truth) == 8
        wait_for(lambda: streamer.status().counters.executions_emitted >= 2 * len(truth), 20,
                 f"executions ({streamer.status()})")  # fmt: skip
        wait_for(lambda: streamer.status().connection.connected, 20, "reconnect")
        status = streamer.status()
    finally:
        discard_process_streamer()
    assert status.counters.execution_errors == 0
    lake = Lake(str(tmp_path / "lake"))
    with Spool(settings.spool_path) as spool:
        first = drain_spool_to_lake(spool, lake, settings.stream_id)
        again = drain_spool_to_lake(spool, lake, settings.stream_id)
    assert first.tables[EXECUTIONS.name].rows_written > 0 and again.rows_written == 0
    rows = lake.scan(EXECUTIONS.name).collect()
    # exactly once: every (stream, offset) once
    assert rows.select(pl.struct("stream_id", "spool_offset").n_unique()).item() == rows.height
    book = book_executions(rows)
    assert book.height == len(truth)
    for row in book.iter_rows(named=True):
        expected = truth[row["exec_id"].rsplit(".", 1)[0]]
        assert row["exec_id"] == expected["exec_id"]  # the correction's revision replaced the first
        assert (row["account"], row["con_id"], row["side"]) == (expected["account"], expected["con_id"],
                                                                expected["side"])  # fmt: skip
        assert row["quantity"] == expected["quantity"] and row["perm_id"] == expected["perm_id"]
        assert amounts_agree(row["price"], expected["price"])
        assert row["commission"] is not None and amounts_agree(row["commission"], expected["commission"])
        if expected["realized_pnl"] is None:
            assert row["realized_pnl"] is None  # an opening fill: IB's unset, not 0
        else:
            assert amounts_agree(row["realized_pnl"], expected["realized_pnl"])
        assert row["exec_time"] == datetime.fromisoformat(str(expected["time"]))
    first_seen = rows.group_by("exec_id").agg(pl.col("received_at").min(), pl.col("exec_time").first())
    late = first_seen.filter(pl.col("received_at") > pl.col("exec_time") + pl.duration(minutes=5))
    # the two fills while connections were refused came with the re-request after the reconnect, nothing else did
    assert sorted(late["exec_time"].dt.convert_time_zone("America/New_York").dt.strftime("%H:%M")) == ["10:32", "10:34"]
    assert status.connection.reconnects >= 2
    delayed = rows.filter(pl.col("exec_time") == datetime.fromisoformat("2025-03-03T10:13:00-05:00")).sort(
        "spool_offset"
    )
    # the delayed commission: the fill first without it (null, not 0), then joined after the 10:15 reconnect
    assert delayed["commission"].to_list()[0] is None and amounts_agree(delayed["commission"].to_list()[-1], 0.3)
    assert delayed["received_at"].to_list()[-1] >= datetime.fromisoformat("2025-03-03T10:23:00-05:00")
    corrected = book.filter(pl.col("con_id") == 12)
    assert corrected["exec_id"].item().endswith(".02") and amounts_agree(corrected["price"].item(), 4.1)
    # the partial close and the correction moved the simulator's book exactly as the fills say
    pos = sim.state.book[("DU1", 12)]
    assert pos.qty == 2
    assert amounts_agree(pos.realized_session or 0.0, (4.1 * 100 - 480.0) - 0.7)  # sold 1 of 3 held at 480
