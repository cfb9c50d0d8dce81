"""The explain and risk assets in Dagster: a 250-session single-run backfill of the demo book, the pictures in the
metadata, the limit checks (WARN / ERROR, every breach listed), a malformed limits file stopping the code location.

The demo book's EOD state and statement daily PnL come from the gateway simulator driven synchronously over 250
sessions (``v6_assets_tests.pipeline.sim_book``) and are written to eod_positions / daily_pnl of a real Delta lake;
the three assets are then materialized over the whole range in ONE run on a real Dagster instance.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from dagster import AssetCheckSeverity, AssetMaterialization, DagsterInstance, instance_for_test, materialize

from v6_assets import sessions
from v6_assets.contracts.tables import DAILY_PNL, EOD_POSITIONS
from v6_assets.defs.resources import LakeResource
from v6_assets.defs.risk_assets import RISK_ASSETS, RISK_CHECKS, _limits_at
from v6_assets.defs.schedules import RANGE_END_TAG, RANGE_START_TAG
from v6_assets.lake import Lake
from v6_assets_tests.pipeline.sim_book import daily_frame, eod_frame, simulated
from v6_assets_tests.pyenv import set_env

ROOT = Path(__file__).resolve().parents[2]
FIRST = date(2025, 3, 3)
DAYS = sessions.sessions_between(FIRST, date(2026, 6, 1))[:250]


SHORT = DAYS[:8]


def demo_lake_of(days: list[date], root: Path) -> Lake:
    _, entries = simulated(days[-1])
    lake = Lake.at(str(root / "lake"))
    lake.overwrite_sessions(EOD_POSITIONS, eod_frame(entries), days)
    lake.overwrite_sessions(DAILY_PNL, daily_frame(entries), days)
    return lake


@pytest.fixture(scope="module")
def demo_lake(tmp_path_factory: pytest.TempPathFactory) -> Lake:
    return demo_lake_of(SHORT, tmp_path_factory.mktemp("risk"))


def record_upstream(instance: DagsterInstance, days: list[date]) -> None:
    """The upstream sessions were computed (written to the lake, flat ones included: the demo book has expired after
    ~45 sessions): recorded as Dagster would have, so an empty session is "flat", not "never computed"."""
    for table in (EOD_POSITIONS.name, DAILY_PNL.name):
        for day in days:
            instance.report_runless_asset_event(AssetMaterialization(asset_key=table, partition=day.isoformat()))


def run_range(lake: Lake, instance: DagsterInstance, first: date, last: date) -> object:
    record_upstream(instance, sessions.sessions_between(first, last))
    return materialize(
        [*RISK_ASSETS, *RISK_CHECKS],
        instance=instance,
        resources={"lake": LakeResource(uri=lake.uri)},
        tags={RANGE_START_TAG: first.isoformat(), RANGE_END_TAG: last.isoformat()},
        raise_on_error=False,
    )


@pytest.mark.slow  # ~3 min on the shared 2-core machine: make test-all, not make test
def test_backfill_of_250_sessions_runs_the_three_assets_in_one_run(tmp_path: Path) -> None:
    assert len(DAYS) == 250
    demo_lake = demo_lake_of(DAYS, tmp_path)
    with instance_for_test() as instance:
        result = run_range(demo_lake, instance, DAYS[0], DAYS[-1])
        assert result.success  # type: ignore[attr-defined]
        assert len(instance.get_runs()) == 1  # the whole range in ONE run
        materialized = {
            key: len(instance.get_materialized_partitions(key))
            for key in (a.key for a in RISK_ASSETS)  # type: ignore[attr-defined]
        }
    assert set(materialized.values()) == {250}
    explain = demo_lake.read_sessions("pnl_explain", DAYS)
    grid = demo_lake.read_sessions("risk_scenarios", DAYS)
    ladder = demo_lake.read_sessions("expiry_ladder", DAYS)
    _, entries = simulated(DAYS[-1])
    held_sessions = sorted({date.fromisoformat(e["session"]) for e in entries})
    assert set(explain["trade_date"].unique().to_list()) == set(held_sessions)
    assert grid.height and ladder.height
    # the first session is a baseline (pre-existing positions), never a number passed off as a day's PnL
    first = explain.filter((pl.col("trade_date") == DAYS[0]) & (pl.col("rollup") == "detail"))
    assert (first["status"] == "unknown_pnl").all() and first["delta_pnl"].null_count() == first.height


def test_metadata_has_the_three_pictures(demo_lake: Lake) -> None:
    days = SHORT[3:6]
    with instance_for_test() as instance:
        result = run_range(demo_lake, instance, days[0], days[-1])
        assert result.success  # type: ignore[attr-defined]
        found = {}
        for event in result.get_asset_materialization_events():  # type: ignore[attr-defined]
            md = event.materialization.metadata
            for name in ("explain_waterfall", "scenario_heatmap", "expiry_ladder_bars"):
                if name in md:
                    found[name] = md[name].value
    assert set(found) == {"explain_waterfall", "scenario_heatmap", "expiry_ladder_bars"}
    for name, text in found.items():
        assert "](data:image/png;base64," in text, name


def write_limits(tmp_path: Path, text: str) -> str:
    path = tmp_path / "limits.yaml"
    path.write_text(text)
    return str(path)


def test_limit_checks_warn_and_error_and_list_every_breach(
    demo_lake: Lake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    limits_file = write_limits(
        tmp_path,
        "limits:\n"
        "  - account: DU1000001\n"
        "    vega: {warn: 1, error: 1000000000}\n"  # any vega passes the warning level only
        "    worst_loss: {warn: 1, error: 2}\n"  # any loss of the grid is an error
        "  - underlying: SPY\n"
        "    net_delta: {warn: 1000000000, error: 2000000000}\n",  # never breached
    )
    set_env(monkeypatch, "V6_RISK_LIMITS_FILE", limits_file)
    _limits_at.cache_clear()
    day = SHORT[5]
    with instance_for_test() as instance:
        result = run_range(demo_lake, instance, day, day)
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}  # type: ignore[attr-defined]
    greek = evaluations["within_greek_limits"]
    assert not greek.passed and greek.severity == AssetCheckSeverity.WARN
    breaches = greek.metadata["breach_list"].value.records
    assert [(r.data["scope"], r.data["measure"], r.data["severity"], r.data["line"]) for r in breaches] == [
        ("account DU1000001", "vega", "WARN", 2)
    ]
    loss = evaluations["within_worst_loss_limits"]
    assert not loss.passed and loss.severity == AssetCheckSeverity.ERROR
    assert [r.data["severity"] for r in loss.metadata["breach_list"].value.records] == ["ERROR"]
    _limits_at.cache_clear()


def test_a_malformed_limits_file_stops_the_code_location_naming_the_line(tmp_path: Path) -> None:
    """One case here (a process loading the definitions); the other malformations: pipeline/test_limits.py."""
    text, message = "limits:\n  - account: DU1\n    vega: lots\n", "line 3: 'lots' is not a number"
    env = {**os.environ, "V6_RISK_LIMITS_FILE": write_limits(tmp_path, text), "V6_HOME": str(tmp_path / "v6")}
    proc = subprocess.run(
        [sys.executable, "-c", "import v6_assets.definitions"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "LimitsFileError" in proc.stderr and "limits file limits.yaml" in proc.stderr
    assert message in proc.stderr, proc.stderr[-2000:]
