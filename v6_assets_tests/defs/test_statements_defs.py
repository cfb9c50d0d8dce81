"""The flex_statements sensor and the reconciliation asset on a real Dagster instance, over a book built by the real
pipeline from the simulator (3 sessions of the demo book), with the simulator's statements dropped into a folder:
green sessions, one planted mark difference red with its difference table, a file still settling waits a tick,
the same file is a no-op, a bad file is refused with its reason and writes nothing."""

import dataclasses
import json
import logging
import time
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from dagster import (
    AssetSpec,
    DagsterInstance,
    SensorResult,
    SkipReason,
    build_sensor_context,
    instance_for_test,
    materialize,
)

from v6_assets import sessions
from v6_assets.defs.partitions import trading_day_partitions
from v6_assets.defs.resources import IBStreamResource, LakeResource
from v6_assets.defs.statement_assets import RECONCILIATION_CHECKS, STATEMENT_SPECS, reconciliation
from v6_assets.defs.statement_sensors import FlexStatementsResource, flex_statements, maybe_fetch
from v6_assets.gateway_sim import GatewaySimulator, load_scenario
from v6_assets.gateway_sim.scenario_model import Scenario
from v6_assets.gateway_sim.statements import StatementFaults, write_session_statements
from v6_assets.ib import IBPositionStreamer, Spool
from v6_assets.ib.settings import StreamerSettings
from v6_assets.lake import Lake
from v6_assets.pipeline import daily
from v6_assets.pipeline.ingest import drain_spool_to_lake

NY = sessions.NEW_YORK
SIM_START = datetime(2025, 3, 3, 9, 0, tzinfo=NY)
SESSIONS = 3
CLIENT_ID = 68
RED = 2  # the session with a planted mark difference (DU1000002's AAPL 230 C)


@dataclasses.dataclass
class Setup:
    instance: DagsterInstance
    home: Path
    lake: Lake
    days: list[date]
    scenario: Scenario
    eod: list[dict[str, Any]]
    resources: dict[str, Any]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    home = tmp_path_factory.mktemp("stmt-defs")
    scenario = load_scenario("demo", start_time=SIM_START)
    lake = Lake.at(str(home / "lake"))
    days = sessions.sessions_between(SIM_START.date(), SIM_START.date() + timedelta(days=7))[:SESSIONS]
    settings = StreamerSettings(port=1, client_id=CLIENT_ID, home=home, greeks_throttle_s=0.0, portfolio_rotation_s=0.3)
    with GatewaySimulator(scenario, port=0, speed=6000.0).running() as sim:
        settings = dataclasses.replace(settings, port=sim.port)
        streamer = IBPositionStreamer()
        streamer.start(settings, clock=sim.clock.now)
        try:
            deadline = time.monotonic() + 120
            while sim.clock.now() < sessions.eod_cut(days[-1]) + timedelta(minutes=1):
                assert time.monotonic() < deadline, "the simulation did not reach the last cut in time"
                time.sleep(0.2)
            time.sleep(1.0)
        finally:
            streamer.stop()
        eod = [dict(e) for e in sim.truth["eod"]]
    with Spool(settings.spool_path) as spool:
        drain_spool_to_lake(spool, lake, settings.stream_id, max_rows=10_000_000)
    daily.refresh_eod_positions(lake, days)
    daily.refresh_daily_pnl(lake, days)
    resources = {
        "lake": LakeResource(uri=lake.uri),
        "ib_stream": IBStreamResource(home=str(home), accounts=",".join(scenario.account_ids)),
        "flex": FlexStatementsResource(),
    }
    with instance_for_test(set_dagster_home=False) as instance:
        yield Setup(instance, home, lake, days, scenario, eod, resources)


def _tick(s: Setup, cursor: str | None) -> SensorResult | SkipReason:
    with build_sensor_context(instance=s.instance, cursor=cursor, resources=s.resources) as ctx:
        result = flex_statements(ctx)
        assert isinstance(result, SensorResult | SkipReason)
        if isinstance(result, SkipReason):
            result = SensorResult(skip_reason=result, cursor=ctx.cursor)
        return result


def test_sensor_ingests_settled_files_once_and_reconciles(setup: Setup) -> None:
    folder = setup.home / "statements"
    faults = {setup.days[RED]: StatementFaults(mark_offset=("DU1000002", 720000001, 0.5))}
    write_session_statements(setup.scenario, setup.eod, folder, setup.days, faults=faults)
    (folder / "broken.xml").write_bytes(b"<FlexQueryResponse><FlexStatements count='1'><FlexStat")

    first = _tick(setup, None)
    assert not first.run_requests and "settle" in str(first.skip_reason)
    second = _tick(setup, first.cursor)
    assert sorted(r.partition_key for r in second.run_requests) == [d.isoformat() for d in setup.days]
    assert len(second.asset_events) == len(STATEMENT_SPECS) * len(setup.scenario.account_ids) * SESSIONS
    assert "broken.xml" in second.cursor and setup.lake.read_sessions("statement_files", setup.days).height == 9
    third = _tick(setup, second.cursor)
    assert not third.run_requests and not third.asset_events  # the same files: nothing again

    upstream = [AssetSpec(k, partitions_def=trading_day_partitions) for k in ("eod_positions", "daily_pnl")]
    for i, day in enumerate(setup.days):
        result = materialize(
            [*upstream, *STATEMENT_SPECS, reconciliation, *RECONCILIATION_CHECKS],
            instance=setup.instance,
            resources={"lake": setup.resources["lake"]},
            partition_key=day.isoformat(),
            selection=[reconciliation.key],
            raise_on_error=False,
        )
        evaluations = result.get_asset_check_evaluations()
        checks = {e.check_name: e.passed for e in evaluations}
        assert len(checks) == len(RECONCILIATION_CHECKS)
        assert {e.partition for e in evaluations} == {day.isoformat()}  # the UI shows each session's verdict
        failing = {name for name, ok in checks.items() if not ok}
        assert failing == ({"marks_match_statement"} if i == RED else set()), (day, checks)
        materialization = result.asset_materializations_for_node("reconciliation")[0]
        meta = materialization.metadata
        verdict = str(meta["verdict"].value)
        assert ("DU1000002**: DIFFERS" in verdict) == (i == RED), verdict
        if i == RED:
            records = meta["differences"].value.records  # type: ignore[attr-defined]
            marks = [r.data for r in records if r.data["check_name"] == "marks"]
            assert len(marks) == 1 and marks[0]["con_id"] == 720000001


def test_the_web_service_is_off_unless_token_and_query_are_set() -> None:
    assert FlexStatementsResource().web_client() is None
    assert FlexStatementsResource(token="x" * 24).web_client() is None
    client = FlexStatementsResource(token="x" * 24, query_id="1").web_client()
    assert client is not None and "x" * 24 not in repr(client)


def test_the_sensor_fetches_from_the_web_service_into_the_folder(tmp_path: Path) -> None:
    from v6_assets_tests.ib.test_flex_web import IN_PROGRESS, QUERY, STATEMENT, TOKEN, FakeFlexService

    service = FakeFlexService([IN_PROGRESS])
    service.thread.start()
    try:
        flex = FlexStatementsResource(token=TOKEN, query_id=QUERY, url=service.base_url)
        lake = LakeResource(uri=str(tmp_path / "lake"))
        state: dict[str, Any] = {}
        log = logging.getLogger("test")
        before = datetime(2025, 3, 4, 20, 0, tzinfo=NY)  # 2025-03-03's statement is not final yet (IB's EOD)
        assert maybe_fetch(log, flex, tmp_path, state, lake, now=before) is None and not service.requests
        now = datetime(2025, 3, 5, 8, 0, tzinfo=NY)
        note = maybe_fetch(log, flex, tmp_path, state, lake, now=now)
        assert note == "fetched flex-web-2025-03-04.xml from the Flex Web Service"
        assert (tmp_path / "flex-web-2025-03-04.xml").read_bytes() == STATEMENT
        assert maybe_fetch(log, flex, tmp_path, state, lake, now=now + timedelta(hours=2)) is None  # once
        assert TOKEN not in json.dumps(state) and TOKEN not in repr(flex.web_client())
    finally:
        service.server.shutdown()
        service.server.server_close()
