"""The code location: it validates, has the specified lineage and partitions, and describes every asset and column."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest
from dagster import AssetKey, DefaultScheduleStatus, DefaultSensorStatus, Definitions

from v6_assets import sessions
from v6_assets.contracts.tables import EXPOSURE, TABLES
from v6_assets.definitions import defs
from v6_assets.defs.freshness import daily_freshness_policy
from v6_assets.defs.partitions import build_trading_day_partitions
from v6_assets.defs.sensors import daemon_minimum_interval

ROOT = Path(__file__).resolve().parents[2]


def test_definitions_load_and_validate() -> None:
    Definitions.validate_loadable(defs)
    repo = defs.get_repository_def()
    assert {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()} == {
        "position_updates",
        "greeks_updates",
        "stream_health",
        "eod_positions",
        "daily_pnl",
        "exposure",
        "executions",
        "account_values",
        "book_pnl",
        "position_events",
        "pnl_explain",
        "risk_scenarios",
        "expiry_ladder",
        "account_eod",
        "account_pnl",
        "statement_positions",
        "statement_trades",
        "statement_mtm",
        "statement_cash",
        "reconciliation",
    }


def test_dagster_cli_validate_passes(tmp_path: Path) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "V6_HOME": str(tmp_path / "v6"),
        "V6_LAKE_URI": str(tmp_path / "lake"),
    }
    dagster = Path(sys.executable).with_name("dagster")
    proc = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "All code locations passed validation" in proc.stdout + proc.stderr
    # importing the definitions never opened an IB connection: no lease file was created
    assert not (tmp_path / "v6" / "locks").exists()


def test_lineage_is_as_specified() -> None:
    graph = defs.get_repository_def().asset_graph
    parents = {
        key.to_user_string(): {p.to_user_string() for p in graph.get(key).parent_keys}
        for key in graph.get_all_asset_keys()
    }
    assert parents == {
        "position_updates": set(),
        "greeks_updates": set(),
        "stream_health": set(),
        "eod_positions": {"position_updates", "greeks_updates", "stream_health"},
        "daily_pnl": {"eod_positions"},
        "exposure": {"eod_positions"},
        "executions": set(),
        "account_values": set(),
        "book_pnl": {"eod_positions", "daily_pnl", "executions"},
        "position_events": {"eod_positions", "executions"},
        "pnl_explain": {"daily_pnl", "eod_positions"},
        "risk_scenarios": {"eod_positions"},
        "expiry_ladder": {"eod_positions"},
        "account_eod": {"account_values"},
        "account_pnl": {"account_eod", "daily_pnl"},
        "statement_positions": set(),
        "statement_trades": set(),
        "statement_mtm": set(),
        "statement_cash": set(),
        "reconciliation": {"eod_positions", "daily_pnl", "statement_positions", "statement_trades", "statement_mtm"},
    }
    assert graph.get(AssetKey("position_updates")).is_external
    assert graph.get(AssetKey("executions")).is_external
    assert graph.get(AssetKey("greeks_updates")).is_external
    assert graph.get(AssetKey("stream_health")).is_external


def test_daily_pnl_maps_to_its_own_session_so_a_backfill_covers_exactly_the_range() -> None:
    """daily_pnl[D] depends on eod_positions[D] only (D-1 is read from the lake): a declared D-1 mapping made Dagster's
    asset backfill add the session after the range to daily_pnl's run (the e2e backfill tests pin the range)."""
    graph = defs.get_repository_def().asset_graph
    pnl = graph.get(AssetKey("daily_pnl"))
    mapping = pnl.assets_def.get_partition_mapping_for_dep(AssetKey("eod_positions"))
    partitions = graph.get(AssetKey("eod_positions")).partitions_def
    assert partitions is not None
    for day in (date(2025, 7, 7), date(2025, 1, 21), date(2025, 3, 4)):
        subset = partitions.subset_with_partition_keys([day.isoformat()])
        if mapping is None:  # Dagster's default for equal partitions: identity
            continue
        upstream = mapping.get_upstream_mapped_partitions_result_for_partitions(subset, partitions, partitions)
        assert upstream.partitions_subset.get_partition_keys() == [day.isoformat()]


def test_partition_keys_are_exactly_the_nyse_sessions() -> None:
    partitions = build_trading_day_partitions("2025-01-02")
    from datetime import datetime

    keys = partitions.get_partition_keys(current_time=datetime(2026, 1, 2, 12, 0))
    in_2025 = [k for k in keys if k.startswith("2025")]
    assert in_2025 == [d.isoformat() for d in sessions.sessions_between(date(2025, 1, 2), date(2025, 12, 31))]
    assert "2025-12-25" not in keys and "2025-07-04" not in keys and "2025-01-04" not in keys


def test_every_asset_and_column_is_described() -> None:
    graph = defs.get_repository_def().asset_graph
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        spec = next(s for s in node.assets_def.specs if s.key == key)
        assert spec.description and len(spec.description) > 40, key
        schema = spec.metadata["dagster/column_schema"]
        assert schema.columns, key
        for column in schema.columns:
            assert column.description and len(column.description) > 5, (key, column.name)
    assert "rollup" in EXPOSURE.column_names
    for table in TABLES.values():
        assert all(c.description for c in table.columns)


def test_sensor_and_schedules_run_by_default() -> None:
    sensor = defs.get_sensor_def("ib_position_stream")
    assert sensor.default_status == DefaultSensorStatus.RUNNING
    # the default cadence (V6_SENSOR_INTERVAL_S unset) is 5 s, one daemon loop: half a loop below it, 5 - 5 // 2 = 3
    assert "V6_SENSOR_INTERVAL_S" not in os.environ, "this test checks the default cadence"
    assert sensor.minimum_interval_seconds == 3
    # other cadences, by hand: one wake-up per whole loop, half a loop below it (1 s: every wake-up)
    assert [daemon_minimum_interval(s) for s in (1, 5, 7, 10, 15)] == [1, 3, 7, 8, 13]
    for name in ("finalize_session", "nightly_table_maintenance", "nightly_rerun_last_sessions"):
        assert defs.get_schedule_def(name).default_status == DefaultScheduleStatus.RUNNING


def test_checks_are_defined_and_blocking_where_numbers_propagate() -> None:
    graph = defs.get_repository_def().asset_graph
    checks = {(k.asset_key.to_user_string(), k.name): graph.get_check_spec(k) for k in graph.asset_check_keys}
    blocking = {key for key, spec in checks.items() if spec.blocking}
    assert blocking == {
        ("position_updates", "no_duplicate_offsets"),
        ("position_updates", "no_sentinel_values"),
        ("greeks_updates", "no_duplicate_offsets"),
        ("greeks_updates", "no_sentinel_values"),
        ("stream_health", "no_duplicate_offsets"),
        ("stream_health", "no_sentinel_values"),
        ("eod_positions", "reconciles_with_stream"),
        ("executions", "no_duplicate_offsets"),
        ("executions", "no_sentinel_values"),
        ("account_values", "no_duplicate_offsets"),
        ("account_values", "no_sentinel_values"),
        ("book_pnl", "statement_matches_pnl"),
        ("reconciliation", "positions_match_statement"),
        ("reconciliation", "marks_match_statement"),
        ("reconciliation", "pnl_matches_statement_mtm"),
        ("reconciliation", "trades_match_statement"),
        ("reconciliation", "lifecycle_matches_statement"),
    }
    assert ("daily_pnl", "matches_ib_daily_pnl") in checks and ("exposure", "greeks_coverage") in checks
    assert ("expiry_ladder", "within_greek_limits") in checks
    # an unexplained position change warns (executions can be missed); the PnL does not depend on it
    assert ("position_events", "every_change_explained") in set(checks) - blocking
    assert ("risk_scenarios", "within_worst_loss_limits") in checks
    assert ("account_eod", "figures_known_at_cut") in checks
    assert ("account_pnl", "positions_match_net_liquidation") in checks


def test_daily_assets_are_fresh_within_the_refresh_period_in_market_hours() -> None:
    graph = defs.get_repository_def().asset_graph
    policies = {key.to_user_string(): graph.get(key).freshness_policy for key in graph.get_all_asset_keys()}
    daily = {name: policy for name, policy in policies.items() if policy is not None}
    assert set(daily) == {
        *("eod_positions", "daily_pnl", "exposure", "book_pnl", "position_events"),
        *("pnl_explain", "risk_scenarios", "expiry_ladder"),
        *("account_eod", "account_pnl"),
    }
    # V6_REFRESH_MINUTES unset: 5 min refreshes, checked every 10 min from 10:00 to 15:50 New York, Mon-Fri
    assert "V6_REFRESH_MINUTES" not in os.environ, "this test checks the default refresh period"
    for policy in daily.values():
        assert type(policy).__name__ == "CronFreshnessPolicy"  # what FreshnessPolicy.cron builds
        assert policy.deadline_cron == "*/10 10-15 * * 1-5"
        assert policy.lower_bound_delta == timedelta(minutes=10)
        assert policy.timezone == "America/New_York"


@pytest.mark.parametrize(
    ("refresh_minutes", "cron", "window"),
    [(0, "*/1", 1), (0.5, "*/1", 1), (2, "*/4", 4), (2.5, "*/5", 5), (4, "*/10", 10), (7, "*/15", 15),
     (12, "*/30", 30), (20, "0", 60), (90, "0", 60)],
)  # fmt: skip
def test_freshness_window_is_twice_the_refresh_period_rounded_up_to_a_divisor_of_an_hour(
    refresh_minutes: float, cron: str, window: int
) -> None:
    policy = daily_freshness_policy(refresh_minutes)
    assert policy.deadline_cron == f"{cron} 10-15 * * 1-5"
    assert policy.lower_bound_delta == timedelta(minutes=window)


def test_daily_job_runs_every_check_of_its_assets_and_of_every_streamed_table() -> None:
    """A check left out of the daily job's selection would show "0 / N passed" (never ran) on its asset."""
    from v6_assets.defs.jobs import DAILY_ASSETS_SELECTION

    graph = defs.get_repository_def().asset_graph
    selected = {(k.asset_key.to_user_string(), k.name) for k in DAILY_ASSETS_SELECTION.resolve_checks(graph)}
    for table in ("position_updates", "greeks_updates", "stream_health", "executions", "account_values"):
        assert {(table, "no_duplicate_offsets"), (table, "no_sentinel_values")} <= selected, table
    assets = {k.to_user_string() for k in DAILY_ASSETS_SELECTION.resolve(graph)}
    every_check_of_the_assets = {(k.asset_key.to_user_string(), k.name) for k in graph.asset_check_keys}
    assert {c for c in every_check_of_the_assets if c[0] in assets} <= selected
    assert {("account_eod", "figures_known_at_cut"), ("account_pnl", "positions_match_net_liquidation")} <= selected
