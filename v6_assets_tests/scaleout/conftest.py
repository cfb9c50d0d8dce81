"""Scale-out fixtures: a real PostgreSQL and a real moto S3 server on loopback, from ``.ci/services.sh``.

One code path for both cases: in CI the script was started by ``.ci/run`` and exported ``V6_SERVICES_ENV`` (its env
file); when a developer runs pytest directly that variable is absent and the session fixture calls the same script
(``start`` into a temp dir, ``stop`` at the end). Each test gets its own PostgreSQL database and its own S3 prefix.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import boto3
import psycopg2
import pytest
from dagster import DagsterInstance
from psycopg2 import sql

from v6_assets.lake import Lake
from v6_assets_tests.pyenv import del_env, set_env

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SERVICES_SCRIPT = PROJECT_ROOT / ".ci" / "services.sh"
POSTGRES_INSTANCE_YAML = PROJECT_ROOT / "deploy" / "dagster.postgres.yaml"
PG_KEYS = ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB")
S3_KEYS = ("AWS_ENDPOINT_URL", "AWS_ALLOW_HTTP", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")
# Script start may include an apt-get install of PostgreSQL on a fresh machine.
SERVICES_START_TIMEOUT_S = 900


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "scaleout: against real PostgreSQL + S3 servers from .ci/services.sh")


def read_env_file(path: str | Path) -> dict[str, str]:
    """KEY=VALUE lines (comments and blank lines ignored), as written by ``.ci/services.sh``."""
    values: dict[str, str] = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"{path}: not KEY=VALUE: {line!r}")
        values[key] = value
    missing = [k for k in (*PG_KEYS, *S3_KEYS, "V6_S3_BUCKET") if not values.get(k)]
    if missing:
        raise ValueError(f"{path}: missing {missing}")
    return values


@dataclass(frozen=True)
class Services:
    """Connection settings of the running servers (the env file's contents)."""

    env: Mapping[str, str]
    env_file: Path
    started_here: bool

    @property
    def bucket(self) -> str:
        return self.env["V6_S3_BUCKET"]

    def pg_connect(self, db_name: str | None = None) -> psycopg2.extensions.connection:
        return psycopg2.connect(
            host=self.env["DAGSTER_PG_HOST"],
            port=int(self.env["DAGSTER_PG_PORT"]),
            user=self.env["DAGSTER_PG_USER"],
            password=self.env["DAGSTER_PG_PASSWORD"],
            dbname=db_name or self.env["DAGSTER_PG_DB"],
            connect_timeout=10,
        )

    def s3_client(self) -> object:
        return boto3.client(
            "s3",
            endpoint_url=self.env["AWS_ENDPOINT_URL"],
            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=self.env["AWS_SECRET_ACCESS_KEY"],
            region_name=self.env["AWS_REGION"],
        )


def run_services_script(*args: str, timeout_s: float) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.setdefault("V6_PYTHON", sys.executable)  # moto from the interpreter running the tests
    return subprocess.run(
        ["bash", str(SERVICES_SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    given = os.environ.get("V6_SERVICES_ENV", "").strip()
    if given:
        status = run_services_script("status", str(Path(given).parent), timeout_s=60)
        if status.returncode != 0:
            pytest.fail(f"V6_SERVICES_ENV={given} is set but its servers do not answer: {status.stderr.strip()}")
        yield Services(read_env_file(given), Path(given), started_here=False)
        return
    state_dir = tempfile.mkdtemp(prefix="v6-services-pytest-")
    try:
        started = run_services_script("start", state_dir, timeout_s=SERVICES_START_TIMEOUT_S)
        if started.returncode != 0:
            pytest.fail(f".ci/services.sh start failed (exit {started.returncode}):\n{started.stderr}")
        env_file = Path(started.stdout.strip().splitlines()[-1])
        yield Services(read_env_file(env_file), env_file, started_here=True)
    finally:
        stopped = run_services_script("stop", state_dir, timeout_s=120)
        if stopped.returncode != 0 and Path(state_dir).exists():
            shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture
def pg_database(services: Services) -> Iterator[str]:
    """A fresh, empty database owned by the test user; dropped afterwards."""
    name = f"v6_t_{uuid.uuid4().hex[:12]}"
    admin = services.pg_connect()
    admin.autocommit = True
    try:
        with admin.cursor() as cur:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        yield name
        with admin.cursor() as cur:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    finally:
        admin.close()


@pytest.fixture
def scaleout_env(
    services: Services, pg_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The process environment of a scaled-out deployment, applied with monkeypatch: Dagster on this test's
    database via ``deploy/dagster.postgres.yaml`` (copied into a fresh DAGSTER_HOME) and the lake on this test's
    S3 prefix. Returns the variables set."""
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copyfile(POSTGRES_INSTANCE_YAML, dagster_home / "dagster.yaml")
    env = {key: services.env[key] for key in (*PG_KEYS, *S3_KEYS)}
    env["DAGSTER_PG_DB"] = pg_database
    env["DAGSTER_HOME"] = str(dagster_home)
    env["V6_HOME"] = str(tmp_path / "v6_home")
    env["V6_LAKE_URI"] = f"s3://{services.bucket}/t-{uuid.uuid4().hex[:12]}"
    for key, value in env.items():
        set_env(monkeypatch, key, value)
    # A developer's own settings must not leak into the servers under test.
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION", "V6_LAKE_S3_CONDITIONAL_PUT"):
        del_env(monkeypatch, key)
    return env


@pytest.fixture
def pg_instance(scaleout_env: dict[str, str]) -> Iterator[DagsterInstance]:
    """The Dagster instance exactly as production loads it: ``$DAGSTER_HOME/dagster.yaml`` = the Postgres variant."""
    with DagsterInstance.from_config(scaleout_env["DAGSTER_HOME"]) as instance:
        yield instance


@pytest.fixture
def s3_lake(scaleout_env: dict[str, str]) -> Lake:
    """The lake as production opens it: ``Lake.from_env()`` with ``V6_LAKE_URI=s3://...`` and the AWS_* variables."""
    lake = Lake.from_env()
    assert lake.uri == scaleout_env["V6_LAKE_URI"]
    return lake
