"""deploy/dagster.postgres.yaml loaded the way production loads it, against a real PostgreSQL server."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from dagster import (
    AssetKey,
    DagsterInstance,
    DagsterRunStatus,
    MaterializeResult,
    asset,
    job,
    materialize,
    op,
)
from dagster._core.definitions.run_request import InstigatorType
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.scheduler.instigation import TickStatus
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

from v6_assets_tests.pyenv import del_env, set_env
from v6_assets_tests.scaleout.conftest import POSTGRES_INSTANCE_YAML, PROJECT_ROOT, Services

pytestmark = [pytest.mark.scaleout]

PRUNE_SCRIPT = PROJECT_ROOT / "deploy" / "prune_runs.py"


@asset
def scaleout_probe() -> MaterializeResult:
    return MaterializeResult(metadata={"rows": 3})


@asset
def failing_probe() -> None:
    raise RuntimeError("this run fails on purpose")


@op
def noop() -> None:
    pass


@job
def noop_job() -> None:
    noop()


def test_instance_uses_postgres_with_queue_limits_and_retention(pg_instance: DagsterInstance) -> None:
    assert isinstance(pg_instance.run_storage, PostgresRunStorage)
    assert isinstance(pg_instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(pg_instance.schedule_storage, PostgresScheduleStorage)
    queue = pg_instance.get_concurrency_config().run_queue_config
    assert queue is not None
    assert queue.max_concurrent_runs == 8
    assert [(lim["key"], lim.get("value"), lim["limit"]) for lim in queue.tag_concurrency_limits] == [
        ("v6/kind", "refresh", 1)
    ]
    assert pg_instance.get_tick_retention_settings(InstigatorType.SENSOR) == {
        TickStatus.STARTED: -1,
        TickStatus.SKIPPED: 7,
        TickStatus.SUCCESS: 7,
        TickStatus.FAILURE: 30,
    }
    assert pg_instance.run_monitoring_enabled
    assert not pg_instance.telemetry_enabled


def test_runs_and_materializations_land_in_postgres(
    pg_instance: DagsterInstance, services: Services, pg_database: str
) -> None:
    result = materialize([scaleout_probe], instance=pg_instance)
    assert result.success
    # Read back through a second, independent connection: the rows are in the server, not in a local file.
    with services.pg_connect(pg_database) as conn, conn.cursor() as cur:
        cur.execute("SELECT status FROM runs WHERE run_id = %s", (result.run_id,))
        assert cur.fetchall() == [("SUCCESS",)]
        cur.execute(
            "SELECT count(*) FROM event_logs WHERE run_id = %s AND dagster_event_type = 'ASSET_MATERIALIZATION'",
            (result.run_id,),
        )
        assert cur.fetchone() == (1,)
    event = pg_instance.get_latest_materialization_event(AssetKey("scaleout_probe"))
    assert event is not None and event.run_id == result.run_id
    assert not list(Path(pg_instance.root_directory).glob("**/*.db")), "no SQLite storage may be created"


def test_missing_credential_is_a_clear_error(scaleout_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    del_env(monkeypatch, "DAGSTER_PG_PASSWORD")
    with pytest.raises(DagsterInvalidConfigError, match="DAGSTER_PG_PASSWORD"):
        DagsterInstance.from_config(scaleout_env["DAGSTER_HOME"])


def test_wrong_password_fails_without_echoing_it(
    scaleout_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = "not-the-password-" + scaleout_env["DAGSTER_PG_PASSWORD"][:6]
    set_env(monkeypatch, "DAGSTER_PG_PASSWORD", wrong)
    with (
        pytest.raises(Exception, match="too many retries for DB connection") as excinfo,
        DagsterInstance.from_config(scaleout_env["DAGSTER_HOME"]) as instance,
    ):
        instance.get_runs(limit=1)
    # dagster-postgres logs the server's reason on each retry; neither that nor the error carries the password.
    assert "password authentication failed" in caplog.text
    for secret in (wrong, scaleout_env["DAGSTER_PG_PASSWORD"]):
        assert secret not in str(excinfo.value)
        assert secret not in caplog.text


def test_yaml_names_no_secret() -> None:
    text = POSTGRES_INSTANCE_YAML.read_text()
    assert "password:\n        env: DAGSTER_PG_PASSWORD" in text
    # Every storage field is an env reference: no literal host, user, password or database in the file.
    for field in ("hostname", "port", "username", "password", "db_name"):
        assert f"{field}:\n        env: DAGSTER_PG_" in text, field


def test_prune_runs_deletes_old_finished_runs_and_keeps_the_rest(pg_instance: DagsterInstance) -> None:
    sys.path.insert(0, str(PRUNE_SCRIPT.parent))
    try:
        from prune_runs import prune_runs
    finally:
        sys.path.remove(str(PRUNE_SCRIPT.parent))

    asset_run = materialize([scaleout_probe], instance=pg_instance).run_id
    failed_run = materialize([failing_probe], instance=pg_instance, raise_on_error=False).run_id
    # A run of a job without assets: what a maintenance job's run looks like to the pruner.
    not_started = pg_instance.create_run_for_job(noop_job, status=DagsterRunStatus.NOT_STARTED).run_id

    assert prune_runs(pg_instance, timedelta(days=1)).deleted == []  # nothing is a day old yet

    dry = prune_runs(pg_instance, timedelta(0), dry_run=True)
    assert dry.deleted == [failed_run] and dry.kept_asset_runs == [asset_run]
    assert pg_instance.has_run(failed_run)

    done = prune_runs(pg_instance, timedelta(0))
    assert done.deleted == [failed_run]
    assert not pg_instance.has_run(failed_run)
    assert pg_instance.get_records_for_run(failed_run).records == []
    assert pg_instance.has_run(asset_run) and pg_instance.has_run(not_started)

    everything = prune_runs(pg_instance, timedelta(0), include_asset_runs=True)
    assert everything.deleted == [asset_run]
    assert pg_instance.get_records_for_run(asset_run).records == []
    assert pg_instance.has_run(not_started)  # never finished: never pruned

    with pytest.raises(ValueError, match="negative"):
        prune_runs(pg_instance, timedelta(days=-1))


def test_prune_runs_cli_against_dagster_home(scaleout_env: dict[str, str]) -> None:
    with DagsterInstance.from_config(scaleout_env["DAGSTER_HOME"]) as instance:
        materialize([failing_probe], instance=instance, raise_on_error=False)
    cli = [sys.executable, str(PRUNE_SCRIPT)]
    env = dict(os.environ)  # the fixture set DAGSTER_HOME & co. for Python readers only (v6_assets_tests.pyenv)
    out = subprocess.run(
        [*cli, "--older-than-days", "0"], capture_output=True, text=True, timeout=120, check=False, env=env
    )
    assert out.returncode == 0, out.stderr
    assert "deleted 1 finished run(s)" in out.stdout
    bad = subprocess.run(
        [*cli, "--older-than-days", "-3"], capture_output=True, text=True, timeout=60, check=False, env=env
    )
    assert bad.returncode == 2 and "must be >= 0" in bad.stderr
