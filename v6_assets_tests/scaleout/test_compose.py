"""deploy/compose: the real-account deployment is valid against the Compose specification and Dagster's schemas,
and keeps the project's rules (read-only API, secrets from files, loopback ports, one streaming code server).

The Compose schema is the compose-spec JSON schema that check-jsonschema ships (``vendor.compose-spec``). Where a
Docker engine with the compose plugin is installed, ``docker compose config`` checks the file too.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from dagster._config import process_config
from dagster._core.workspace.config_schema import WORKSPACE_CONFIG_SCHEMA

from v6_assets.cli import main as v6_main
from v6_assets_tests.scaleout.conftest import POSTGRES_INSTANCE_YAML, PROJECT_ROOT

pytestmark = [pytest.mark.scaleout]

COMPOSE_DIR = PROJECT_ROOT / "deploy" / "compose"
COMPOSE = COMPOSE_DIR / "compose.yaml"


def _compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def _check_schema(path: Path) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("check-jsonschema")
    return subprocess.run(
        [str(script), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_compose_file_passes_the_compose_specification() -> None:
    done = _check_schema(COMPOSE)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_schema_check_rejects_a_broken_compose_file(tmp_path: Path) -> None:
    broken = _compose()
    broken["services"]["v6-webserver"]["ports"] = {"ui": 3000}  # must be a list
    path = tmp_path / "compose.yaml"
    path.write_text(yaml.safe_dump(broken))
    done = _check_schema(path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "ports" in done.stdout + done.stderr


def test_workspace_and_instance_pass_dagsters_schemas() -> None:
    workspace = yaml.safe_load((COMPOSE_DIR / "workspace.yaml").read_text())
    result = process_config(WORKSPACE_CONFIG_SCHEMA, workspace)
    assert result.success, [e.message for e in result.errors or []]
    grpc = workspace["load_from"][0]["grpc_server"]
    assert (grpc["host"], grpc["port"]) == ("v6-code", 4000)
    # The image's instance file is the PostgreSQL one, validated in test_deploy_files.py.
    dockerfile = (COMPOSE_DIR / "Dockerfile").read_text()
    assert f"COPY deploy/{POSTGRES_INSTANCE_YAML.name} /opt/dagster/dagster_home/dagster.yaml" in dockerfile


def test_gateway_is_read_only_and_restarts_daily() -> None:
    gateway = _compose()["services"]["ib-gateway"]
    env = gateway["environment"]
    assert env["READ_ONLY_API"] == "yes"
    assert env["AUTO_RESTART_TIME"]
    assert env["TWOFA_TIMEOUT_ACTION"] == "restart"
    assert "ports" not in gateway  # the API is reachable on the compose network only


def test_secrets_come_from_files_never_from_the_compose_file() -> None:
    compose = _compose()
    for name, service in compose["services"].items():
        env = service.get("environment") or {}
        for key, value in env.items():
            if "PASSWORD" in key or "TOKEN" in key:
                assert key.endswith("_FILE"), (name, key)
                assert str(value).startswith("/run/secrets/"), (name, key, value)
    assert {s["file"] for s in compose["secrets"].values()} == {"./secrets/ib_password", "./secrets/pg_password"}
    ignored = (COMPOSE_DIR / "secrets" / ".gitignore").read_text().split()
    assert set(ignored) == {"ib_password", "pg_password"}


def test_published_ports_bind_loopback_only() -> None:
    for name, service in _compose()["services"].items():
        for port in service.get("ports") or []:
            assert str(port).startswith("127.0.0.1:"), (name, port)


def test_only_the_code_server_streams_and_its_health_check_is_v6_status() -> None:
    services = _compose()["services"]
    with_ib = {name for name, s in services.items() if any(k.startswith("V6_IB_") for k in s.get("environment") or {})}
    assert with_ib == {"v6-code"}
    test = services["v6-code"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "v6", "status"]
    # the health check's arguments are valid for the installed command
    result = CliRunner().invoke(v6_main, [*test[2:], "--help"])
    assert result.exit_code == 0, result.output


def test_docker_compose_config_when_an_engine_is_installed(tmp_path: Path) -> None:
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("no docker engine with the compose plugin on this machine (the schema check above still runs)")
    work = tmp_path / "compose"
    shutil.copytree(COMPOSE_DIR, work)
    (work / "secrets" / "ib_password").write_text("placeholder")
    (work / "secrets" / "pg_password").write_text("placeholder")
    env = {"PATH": "/usr/bin:/bin:/usr/local/bin", "TWS_USERID": "placeholder"}
    done = subprocess.run(
        [docker, "compose", "-f", str(work / "compose.yaml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
