"""The pipeline's e2e subset on the scale-out backends: Dagster on PostgreSQL (deploy/dagster.postgres.yaml), the
Delta tables on an S3 server (moto on loopback), the IB side from the gateway simulator over real sockets.

One test, in order (each step needs the previous one's data): sensor ingest exactly once, a single-run backfill of
the daily assets with their checks, and the maintenance job (compaction + vacuum on S3).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from datetime import date
from pathlib import Path

import polars as pl
import pytest
from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    AssetKey,
    DagsterInstance,
    Definitions,
    SensorResult,
    SkipReason,
    build_sensor_context,
)

from v6_assets import sessions
from v6_assets.definitions import defs as project_defs
from v6_assets.defs.account_assets import account_checks
from v6_assets.defs.book_assets import account_values_checks, executions_checks, statement_matches_pnl
from v6_assets.defs.checks import all_checks
from v6_assets.defs.jobs import daily_assets_job, table_maintenance
from v6_assets.defs.lifecycle_assets import LIFECYCLE_CHECKS
from v6_assets.defs.resources import IBStreamResource, LakeResource
from v6_assets.defs.risk_assets import RISK_CHECKS
from v6_assets.defs.sensors import ib_position_stream
from v6_assets.gateway_sim import GatewaySimulator
from v6_assets.ib.spool import Spool
from v6_assets.ib.streamer import IBPositionStreamer, discard_process_streamer
from v6_assets.lake import GREEKS_UPDATES, POSITION_UPDATES, TRADE_DATE, Lake
from v6_assets.lake.maintenance import active_files
from v6_assets.pipeline.ingest import STREAMED_TABLES
from v6_assets_tests.scaleout.conftest import Services

pytestmark = [pytest.mark.scaleout, pytest.mark.s3]

# 1 simulated hour per real second: a session passes in ~7 s (nights are skipped above speed 60), so 12 s of stream
# span at least two sessions and every session gets several sensor commits even on a loaded machine.
SIM_SPEED = 3600
STREAM_FOR_S = 12.0
CLIENT_ID = 61
# Every table the spool feeds (positions, greeks, executions, account values, stream_health): one offset space.
STREAMED = STREAMED_TABLES
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


@pytest.fixture
def streamer() -> Iterator[IBPositionStreamer]:
    yield IBPositionStreamer()
    discard_process_streamer()


def _tick(instance: DagsterInstance, resources: dict[str, object], cursor: str | None) -> SensorResult | SkipReason:
    """One sensor evaluation, then what the daemon does with its result: store the runless asset events."""
    with build_sensor_context(instance=instance, resources=resources, cursor=cursor) as context:
        result = ib_position_stream(context)
    assert isinstance(result, SensorResult | SkipReason)
    if isinstance(result, SensorResult):
        for event in result.asset_events or []:
            instance.report_runless_asset_event(event)
    return result


def _s3_keys(services: Services, lake: Lake, table: str) -> set[str]:
    bucket, _, prefix = lake.table_uri(table).removeprefix("s3://").partition("/")
    client = services.s3_client()
    keys: set[str] = set()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix + "/"):  # type: ignore[attr-defined]
        keys.update(obj["Key"] for obj in page.get("Contents", []))
    return keys


def test_ingest_backfill_checks_and_maintenance_on_postgres_and_s3(
    scaleout_env: dict[str, str],
    pg_instance: DagsterInstance,
    s3_lake: Lake,
    services: Services,
    pg_database: str,
    streamer: IBPositionStreamer,
) -> None:
    with GatewaySimulator("demo", port=0, speed=SIM_SPEED).running() as sim:
        # Literal values (from_env() gives EnvVar fields, resolved only inside Dagster); the lake's S3 credentials
        # still come from the AWS_* variables, as in production.
        ib_stream = IBStreamResource(port=sim.port, client_id=CLIENT_ID, home=scaleout_env["V6_HOME"])
        lake_resource = LakeResource(uri=scaleout_env["V6_LAKE_URI"])
        resources: dict[str, object] = {"ib_stream": ib_stream, "lake": lake_resource}
        settings = ib_stream.settings()
        assert settings.port == sim.port and str(settings.home) == scaleout_env["V6_HOME"]
        # Timestamps in simulated time, so the stream spans several sessions; the sensor's own ensure_started then
        # finds it running with the same settings (idempotent) and only drains.
        streamer.ensure_started(settings, clock=sim.clock.now)

        # -- sensor ingest, exactly once ------------------------------------------------------------------------
        first = _tick(pg_instance, resources, None)
        deadline = time.monotonic() + STREAM_FOR_S
        while time.monotonic() < deadline:
            time.sleep(2.0)
            _tick(pg_instance, resources, None)
        streamer.stop()
        assert sim.order_violations() == 0
    # Drains what arrived before the stop (its ensure_started restarts the streamer, which cannot connect any more:
    # what the sensor does while IB is down).
    final = _tick(pg_instance, resources, None)
    with Spool(settings.spool_path) as spool:
        last_offset = spool.last_offset()
        assert spool.depth() == 0 and spool.acked_offset() == last_offset
    assert last_offset > 200, f"the simulator should have streamed hundreds of updates, got {last_offset}"
    frames = {t: s3_lake.scan(t).collect() for t in STREAMED if s3_lake.exists(t)}
    offsets = pl.concat([f.select("spool_offset") for f in frames.values()])["spool_offset"].sort()
    # Every spooled record is in Delta once: offsets 1..last, no gap, no duplicate.
    assert offsets.to_list() == list(range(1, last_offset + 1))
    replay = _tick(pg_instance, resources, None)  # a "Preview tick" has no cursor: nothing may be written again
    assert isinstance(replay, SensorResult) and not replay.asset_events
    assert sum(f.height for f in frames.values()) == last_offset
    assert isinstance(first, SensorResult | SkipReason) and isinstance(final, SensorResult | SkipReason)

    # The runless materializations the sensor reported are in Postgres.
    with services.pg_connect(pg_database) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*), count(DISTINCT partition) FROM event_logs "
            "WHERE dagster_event_type = 'ASSET_MATERIALIZATION' AND asset_key = %s",
            (AssetKey("position_updates").to_string(),),
        )
        events, partitions_reported = cur.fetchone()
    touched = sorted(set(frames[POSITION_UPDATES.name][TRADE_DATE].to_list()))
    assert len(touched) >= 2, f"a multi-session stream was expected, got sessions {touched}"
    assert events >= len(touched) and partitions_reported == len(touched)

    # -- single-run backfill of the daily assets over every streamed session, with the checks -----------------
    # the project's own assets and checks (every asset the daily job selects), on this test's resources
    defs = Definitions(
        assets=project_defs.assets,
        asset_checks=project_defs.asset_checks,
        jobs=[daily_assets_job, table_maintenance],
        resources=resources,
    )
    first_day, last_day = touched[0], touched[-1]
    backfill = defs.resolve_job_def("daily_assets").execute_in_process(
        instance=pg_instance,
        tags={RANGE_START_TAG: first_day.isoformat(), RANGE_END_TAG: last_day.isoformat()},
        raise_on_error=False,
    )
    assert backfill.success
    expected_days = sessions.sessions_between(first_day, last_day)
    for table in ("eod_positions", "daily_pnl", "exposure"):
        materialized = [
            str(e.materialization.partition)
            for e in backfill.get_asset_materialization_events()
            if e.asset_key == AssetKey(table)
        ]
        assert sorted(materialized) == [d.isoformat() for d in expected_days], table
        stored: list[date] = s3_lake.scan(table).select(pl.col(TRADE_DATE).unique()).collect()[TRADE_DATE].to_list()
        assert sorted(stored) == expected_days, table
    evaluations: Sequence[AssetCheckEvaluation] = backfill.get_asset_check_evaluations()
    # the checks of the assets the daily job selects, and every streamed table's checks (also run by the sensor)
    in_job = [*all_checks(), statement_matches_pnl, *LIFECYCLE_CHECKS, *RISK_CHECKS, *executions_checks,
              *account_values_checks, *account_checks()]  # fmt: skip
    defined = {key for checks_def in in_job for key in checks_def.check_keys}
    assert {ev.asset_check_key for ev in evaluations} == defined  # every check ran, on every table
    # WARN-severity checks (IB's own daily PnL vs ours) may flag a partial last session; ERROR-severity ones may not.
    failed = [
        (ev.asset_key.to_user_string(), ev.check_name, ev.metadata)
        for ev in evaluations
        if not ev.passed and ev.severity == AssetCheckSeverity.ERROR
    ]
    assert not failed, failed
    with services.pg_connect(pg_database) as conn, conn.cursor() as cur:
        # The evaluations are stored in Postgres. (Per-partition rows of a range run stay PLANNED beside them:
        # the checks report one result for the whole range, without a partition.)
        cur.execute(
            "SELECT count(DISTINCT (asset_key, check_name)) FROM asset_check_executions "
            "WHERE run_id = %s AND execution_status IN ('SUCCEEDED', 'FAILED')",
            (backfill.run_id,),
        )
        assert cur.fetchone() == (len(defined),)
        cur.execute("SELECT status FROM runs WHERE run_id = %s", (backfill.run_id,))
        assert cur.fetchone() == ("SUCCESS",)

    # -- maintenance on S3: compaction, then vacuum deletes the replaced files -------------------------------
    # The session with the most data files (one per sensor commit): compaction has something to merge.
    position_table = s3_lake.open(POSITION_UPDATES.name)
    assert position_table is not None
    files_per_session = {d: active_files(position_table, [d]).files for d in touched}
    busiest = max(touched, key=lambda d: files_per_session[d])
    assert files_per_session[busiest] >= 2, f"every session got a single commit: {files_per_session}"
    keys_before = _s3_keys(services, s3_lake, POSITION_UPDATES.name)
    rows_before = s3_lake.scan(POSITION_UPDATES.name).select(pl.len()).collect().item()
    maintenance = defs.resolve_job_def("table_maintenance").execute_in_process(
        instance=pg_instance,
        run_config={
            "ops": {"maintain_tables": {"config": {"session": busiest.isoformat(), "vacuum_retention_hours": 0}}}
        },
    )
    assert maintenance.success
    report = maintenance.output_for_node("maintain_tables")[POSITION_UPDATES.name]
    assert report["compact"]["files_before"] > report["compact"]["files_after"] >= 1
    assert report["vacuum"]["files_deleted"] >= report["compact"]["files_before"] - report["compact"]["files_after"]
    keys_after = _s3_keys(services, s3_lake, POSITION_UPDATES.name)
    data_removed = {k for k in keys_before - keys_after if k.endswith(".parquet")}
    assert len(data_removed) == report["vacuum"]["files_deleted"]
    assert s3_lake.scan(POSITION_UPDATES.name).select(pl.len()).collect().item() == rows_before


def test_integrity_check_catches_a_deleted_object_on_s3(services: Services, s3_lake: Lake, tmp_path: Path) -> None:
    """Issue 17, point 4 on an object store: a data object deleted from the bucket is reported by name, with the
    repair hint, while the Delta log still references it; before the deletion the same lake passes."""
    from v6_assets.pipeline.ingest import drain_spool_to_lake
    from v6_assets.pipeline.integrity import REPAIR_HINT, check_lake
    from v6_assets_tests.pipeline.test_ingest import fill

    stream = "ib-127.0.0.1-4002-61"
    with Spool(tmp_path / "spool.sqlite") as spool:
        for start in (0, 20):  # two commits: several objects per table
            fill(spool, 20, start)
            drain_spool_to_lake(spool, s3_lake, stream)
    healthy = check_lake(s3_lake, stream)
    assert healthy.ok, healthy.describe()
    assert healthy.files_checked >= 4 and healthy.offset_range == (1, 40)
    parquet = sorted(k for k in _s3_keys(services, s3_lake, GREEKS_UPDATES.name) if k.endswith(".parquet"))
    assert len(parquet) >= 2, parquet
    services.s3_client().delete_object(Bucket=services.bucket, Key=parquet[0])  # type: ignore[attr-defined]
    report = check_lake(s3_lake, stream)
    assert not report.ok
    assert report.missing_files == {GREEKS_UPDATES.name: [parquet[0].rsplit("/", 1)[-1]]}
    assert "LAKE INTEGRITY FAILURE" in report.describe() and REPAIR_HINT in report.describe()
