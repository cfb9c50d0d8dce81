"""Several IB logins: two gateway simulators at once over loopback, each streamed by its own real streamer (ib_async),
drained by real sensor ticks into the same real Delta tables; then one gateway goes away and the other keeps flowing.

One run (three sensor ticks over a few seconds of two fast simulated sessions) is shared by the tests of this module.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from click.testing import CliRunner
from dagster import AssetMaterialization, DagsterInstance, SensorResult, build_sensor_context

from v6_assets import sessions
from v6_assets.cli.app import main as cli_main
from v6_assets.contracts.settings import SettingsError
from v6_assets.defs.resources import IBStreamResource, LakeResource
from v6_assets.defs.sensors import ib_position_stream
from v6_assets.gateway_sim import GatewaySimulator, load_scenario
from v6_assets.ib.gateways import gateway_streamer
from v6_assets.ib.settings import StreamerSettings
from v6_assets.ib.spool import Spool
from v6_assets.ib.streamer import discard_process_streamer
from v6_assets.lake import Lake
from v6_assets.pipeline.ingest import STREAMED_TABLES
from v6_assets_tests.ib.simhelpers import spooled_positions, wait_for
from v6_assets_tests.pyenv import set_env, set_envs

SIM_START = datetime(2025, 3, 3, 9, 0, tzinfo=sessions.NEW_YORK)
SPEED = 200.0
ALPHA_ACCOUNTS = ("DU1000001", "DU1000002", "DU1000003")  # the demo scenario's
BETA_ACCOUNTS = ("DU2000001", "DU2000002")  # the reference scenario's
# what a tick says of beta once its gateway is gone: its last rows, then its gap, or refused connects
BETA_DOWN = re.compile(
    r"; gateway beta \(127\.0\.0\.1:\d+ client 72\): "
    r"(\d+ rows; )?(IB not connected \(|circuit open until \d\d:\d\d:\d\d ET after repeated connection failures \(|"
    r"gateway restarting \(socket dropped\))"
)


@dataclasses.dataclass
class Run:
    home: Path
    gateways: str
    lake: Lake
    both_flowing: list[Any]  # tick results while both gateways ran
    after_beta_stopped: list[Any]  # tick results once beta's gateway was gone
    alpha_rows_when_beta_stopped: int
    alpha_rows_after: int
    final: list[Any]  # the ticks draining what was left once both were gone
    cli_status: tuple[int, str]
    cli_status_text: str


def tick(instance: DagsterInstance, ib: IBStreamResource, lake: LakeResource, cursor: str | None) -> Any:
    """One real evaluation of the sensor (its events are checked as returned; nothing here reads them back)."""
    with build_sensor_context(instance=instance, cursor=cursor, resources={"ib_stream": ib, "lake": lake}) as ctx:
        return ib_position_stream(ctx)


def rows_of(lake: Lake, table: str, stream_id: str) -> pl.DataFrame:
    if not lake.exists(table):
        return pl.DataFrame()
    return lake.scan(table).filter(pl.col("stream_id") == stream_id).collect()


def stored_rows(lake: Lake, stream_id: str) -> int:
    """Rows of the stream in every streamed table."""
    return sum(rows_of(lake, table, stream_id).height for table in STREAMED_TABLES)


def spool_last_offset(settings: StreamerSettings) -> int:
    with Spool(settings.spool_path) as spool:
        return spool.last_offset()


def cursor_after(result: Any, cursor: str | None) -> str | None:
    return result.cursor if isinstance(result, SensorResult) and result.cursor is not None else cursor


def said(result: Any) -> str:
    if isinstance(result, SensorResult):
        return result.skip_reason.skip_message if result.skip_reason else str(result.cursor)
    return str(result.skip_message)


@pytest.fixture(autouse=True)
def no_streamer_leak() -> Iterator[None]:
    yield
    discard_process_streamer()


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    home = tmp_path_factory.mktemp("v6home")
    with (
        pytest.MonkeyPatch.context() as mp,
        DagsterInstance.ephemeral() as instance,
        contextlib.ExitStack() as stack,
    ):
        set_env(mp, "V6_IB_GREEKS_THROTTLE_S", "0")
        set_env(mp, "V6_REFRESH_MINUTES", "60")  # one refresh request, then the ticks' own texts
        set_env(mp, "V6_IB_BACKOFF_MAX_S", "1")
        alpha_sim = stack.enter_context(
            GatewaySimulator(load_scenario("demo", start_time=SIM_START), port=0, speed=SPEED).running()
        )
        beta_stack = contextlib.ExitStack()
        beta_sim = beta_stack.enter_context(
            GatewaySimulator(load_scenario("reference", start_time=SIM_START), port=0, speed=SPEED).running()
        )
        stack.push(beta_stack)
        gateways = (
            f"alpha=127.0.0.1:{alpha_sim.port}/71/{','.join(ALPHA_ACCOUNTS)}; "
            f"beta=127.0.0.1:{beta_sim.port}/72/{','.join(BETA_ACCOUNTS)}"
        )
        ib = IBStreamResource(gateways=gateways, home=str(home))
        lake_resource = LakeResource(uri=str(home / "lake"))
        lake = lake_resource.lake()
        alpha, beta = ib.gateway_settings()
        # the streamers on the simulators' clocks (the sensor finds them running with the same settings)
        gateway_streamer(alpha).ensure_started(alpha, clock=alpha_sim.clock.now)
        gateway_streamer(beta).ensure_started(beta, clock=beta_sim.clock.now)

        # 1. both gateways stream (every account of each is spooled), one tick drains both
        for settings, accounts in ((alpha, ALPHA_ACCOUNTS), (beta, BETA_ACCOUNTS)):
            wait_for(
                lambda s=settings, a=accounts: {p.account for p in spooled_positions(s.spool_path)} == set(a),
                30,
                f"{settings.gateway}'s accounts in its spool",
            )
        cursor: str | None = None
        both = [tick(instance, ib, lake_resource, cursor)]
        cursor = cursor_after(both[-1], cursor)

        # 2. beta's gateway goes away; alpha keeps streaming; one tick drains alpha and says what beta does
        beta_stack.close()
        alpha_at_stop = stored_rows(lake, alpha.stream_id)
        spooled_at_stop = spool_last_offset(alpha)
        wait_for(lambda: not gateway_streamer(beta).status().connection.connected, 30, "beta's streamer to notice")
        wait_for(lambda: spool_last_offset(alpha) > spooled_at_stop + 10, 30, "alpha to keep streaming")
        after = [tick(instance, ib, lake_resource, cursor)]
        cursor = cursor_after(after[-1], cursor)
        alpha_after = stored_rows(lake, alpha.stream_id)

        # 3. alpha's gateway goes too; the streamers stop (flushing their spools); the last tick drains what is left
        stack.close()
        for settings in (alpha, beta):
            gateway_streamer(settings).stop()
        final = [tick(instance, ib, lake_resource, cursor)]
        discard_process_streamer()  # each status file's last word: stopped
        env = {"V6_IB_GATEWAYS": gateways, "V6_HOME": str(home), "V6_LAKE_URI": str(home / "lake")}
        set_envs(mp, env)
        as_json = CliRunner().invoke(cli_main, ["status", "--json"])
        as_text = CliRunner().invoke(cli_main, ["status"])
        yield Run(
            home,
            gateways,
            lake,
            both,
            after,
            alpha_at_stop,
            alpha_after,
            final,
            (as_json.exit_code, as_json.output),
            as_text.output,
        )
    discard_process_streamer()


def test_rows_of_both_gateways_arrive_exactly_once_each_with_its_stream_id(run: Run) -> None:
    ib = IBStreamResource(gateways=run.gateways, home=str(run.home))
    for settings, accounts in zip(ib.gateway_settings(), (ALPHA_ACCOUNTS, BETA_ACCOUNTS), strict=True):
        with Spool(settings.spool_path) as spool:
            assert spool.depth() == 0  # all drained and acknowledged
            last = spool.last_offset()
        for table in STREAMED_TABLES:
            offsets = rows_of(run.lake, table, settings.stream_id)
            assert offsets.height == 0 or offsets["spool_offset"].n_unique() == offsets.height, f"duplicates in {table}"
        # every record of this gateway's spool is in Delta once, under its own stream id
        stored = stored_rows(run.lake, settings.stream_id)
        assert stored == last > 0, (settings.stream_id, stored, last)
        positions = rows_of(run.lake, "position_updates", settings.stream_id)
        assert set(positions["account"].unique()) <= set(accounts)
        assert positions["account"].n_unique() == len(accounts)
    streams = {
        stream
        for table in STREAMED_TABLES
        if run.lake.exists(table)
        for stream in run.lake.scan(table).select("stream_id").unique().collect()["stream_id"]
    }
    assert streams == {"ib-alpha", "ib-beta"}


def test_every_materialization_and_health_row_names_its_gateway(run: Run) -> None:
    events = [
        e
        for r in run.both_flowing + run.after_beta_stopped + run.final
        if isinstance(r, SensorResult)
        for e in (r.asset_events or [])
        if isinstance(e, AssetMaterialization)
    ]
    named = {(e.metadata["gateway"].value, e.metadata["stream_id"].value) for e in events}
    assert named == {("alpha", "ib-alpha"), ("beta", "ib-beta")}
    beta_health = rows_of(run.lake, "stream_health", "ib-beta")
    alpha_health = rows_of(run.lake, "stream_health", "ib-alpha")
    assert "connected" in set(alpha_health["state"]) and "connected" in set(beta_health["state"])
    # beta's gateway went away: its own health rows say so, alpha's connected interval is not ended by it
    assert set(beta_health["state"]) - {"connected"}, beta_health.select("state", "started_at", "ended_at")


def test_one_gateway_down_does_not_stop_the_other_and_the_tick_says_which(run: Run) -> None:
    # alpha spooled 10 more records after beta's gateway went away: the tick stored them
    assert run.alpha_rows_after >= run.alpha_rows_when_beta_stopped + 10
    text = said(run.after_beta_stopped[-1])
    assert "gateway alpha (127.0.0.1:" in text and "gateway beta (127.0.0.1:" in text, text
    assert BETA_DOWN.search(text), text
    # the first tick with new data requested a refresh naming each gateway's spool offset
    refreshes = [r for r in run.both_flowing if isinstance(r, SensorResult) and r.run_requests]
    assert refreshes, [said(r) for r in run.both_flowing]
    why = refreshes[0].run_requests[0].tags["v6/why"]
    assert "spool offsets alpha " in why and ", beta " in why, why


def test_cli_status_reports_every_gateway_by_name(run: Run) -> None:
    code, output = run.cli_status
    doc = json.loads(output)
    assert code == 1 and doc["healthy"] is False  # both streamers were stopped
    assert [(g["gateway"], g["stream_id"]) for g in doc["gateways"]] == [("alpha", "ib-alpha"), ("beta", "ib-beta")]
    assert all("the streamer is stopped" in g["problems"] for g in doc["gateways"])
    assert "gateway     alpha" in run.cli_status_text and "gateway     beta" in run.cli_status_text


def test_a_damaged_spool_of_one_gateway_fails_the_tick_naming_it_after_the_others_were_drained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from v6_assets_tests.defs.test_sensor import free_port
    from v6_assets_tests.ib.conftest import position_update

    set_env(monkeypatch, "V6_IB_CIRCUIT_FAILURES", "1000000")  # no gateway listens: only "not connected"
    gateways = f"alpha=127.0.0.1:{free_port()}/71/DU1; beta=127.0.0.1:{free_port()}/72/DU2"
    ib = IBStreamResource(gateways=gateways, home=str(tmp_path))
    lake = LakeResource(uri=str(tmp_path / "lake"))
    alpha, beta = ib.gateway_settings()
    with Spool(alpha.spool_path) as spool:
        spool.append([position_update(i + 1, con_id=i, account="DU1") for i in range(5)])
    beta.spool_path.write_bytes(b"not a spool" * 100)
    with pytest.raises(RuntimeError, match=r"^gateway beta \(127\.0\.0\.1:\d+ client 72\): .*file is not a database"):
        tick(DagsterInstance.ephemeral(), ib, lake, None)
    assert rows_of(lake.lake(), "position_updates", "ib-alpha").height == 5  # alpha was drained all the same
    assert not rows_of(lake.lake(), "position_updates", "ib-beta").height


def test_a_bad_gateway_list_fails_the_tick_naming_the_variable(tmp_path: Path) -> None:
    ib = IBStreamResource(gateways="a=127.0.0.1:4002/61/DU1; b=127.0.0.1:4012/62/DU1", home=str(tmp_path))
    with pytest.raises(SettingsError, match=r"V6_IB_GATEWAYS=.* account DU1 is on two gateways, 'a' and 'b'"):
        tick(DagsterInstance.ephemeral(), ib, LakeResource(uri=str(tmp_path / "lake")), None)
    assert not (tmp_path / "spool").exists()  # nothing started


def test_cli_status_with_a_bad_gateway_list_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    twice = "a=127.0.0.1:4002/61/DU1;a=127.0.0.1:4012/62/DU2"
    set_envs(monkeypatch, {"V6_IB_GATEWAYS": twice, "V6_HOME": str(tmp_path)})
    result = CliRunner().invoke(cli_main, ["status", "--json"])
    assert result.exit_code == 1
    assert json.loads(result.output) == {
        "ok": False,
        "problem": f"V6_IB_GATEWAYS={twice!r} is invalid: gateway name 'a' is used twice",
    }
