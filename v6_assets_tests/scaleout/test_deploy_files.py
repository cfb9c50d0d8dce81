"""The deploy/ instance variants stay consistent and valid against Dagster's instance schema (no servers needed).

The launcher blocks themselves are checked against dagster-docker's / dagster-k8s' schemas by
deploy/run-launchers/validate.py (those packages are not project dependencies).
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from dagster._config import process_config
from dagster._core.instance.config import dagster_instance_config_schema

from v6_assets_tests.pyenv import set_env
from v6_assets_tests.scaleout.conftest import POSTGRES_INSTANCE_YAML, PROJECT_ROOT

pytestmark = [pytest.mark.scaleout]

LAUNCHERS = PROJECT_ROOT / "deploy" / "run-launchers"
VARIANTS = {"docker": LAUNCHERS / "dagster.docker.yaml", "k8s": LAUNCHERS / "dagster.k8s.yaml"}
PLACEHOLDERS = {
    "DAGSTER_PG_HOST": "127.0.0.1",
    "DAGSTER_PG_PORT": "5432",
    "DAGSTER_PG_USER": "v6",
    "DAGSTER_PG_PASSWORD": "placeholder",
    "DAGSTER_PG_DB": "v6",
    "V6_IMAGE": "v6_assets:test",
    "V6_DOCKER_NETWORK": "v6_net",
}


def _load(path: Any) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_launcher_variant_is_the_postgres_instance_plus_a_launcher(variant: str) -> None:
    config = _load(VARIANTS[variant])
    launcher = config.pop("run_launcher")
    postgres = _load(POSTGRES_INSTANCE_YAML)
    assert postgres.pop("run_launcher")["class"] == "LocalWorkerRunLauncher"  # the process launcher, health-checked
    assert config == postgres
    assert launcher["module"] == f"dagster_{variant}"
    # Run workers get no IB settings: they never connect.
    assert "V6_IB" not in yaml.safe_dump(launcher)


@pytest.mark.parametrize("path", [POSTGRES_INSTANCE_YAML, *VARIANTS.values()], ids=lambda p: p.name)
def test_instance_files_pass_dagsters_schema(path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in PLACEHOLDERS.items():
        set_env(monkeypatch, key, value)
    result = process_config(dagster_instance_config_schema(), _load(path))
    assert result.success, [e.message for e in result.errors or []]
    processed = result.value
    assert processed is not None
    assert processed["storage"]["postgres"]["postgres_db"]["password"] == "placeholder"  # resolved from env


def test_schema_check_rejects_a_bad_value(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in PLACEHOLDERS.items():
        set_env(monkeypatch, key, value)
    config = _load(POSTGRES_INSTANCE_YAML)
    config["run_queue"]["max_concurrent_runs"] = "eight"
    result = process_config(dagster_instance_config_schema(), config)
    assert not result.success and "max_concurrent_runs" in str(result.errors)


def test_k8s_code_server_is_a_single_pod_by_construction() -> None:
    documents = list(yaml.safe_load_all((LAUNCHERS / "k8s-code-server.yaml").read_text()))
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    claim = next(d for d in documents if d["kind"] == "PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    workspace = _load(LAUNCHERS / "workspace.docker.yaml")
    assert [entry["grpc_server"]["location_name"] for entry in workspace["load_from"]] == ["v6_assets"]


def test_k8s_code_server_is_restarted_when_its_grpc_child_dies() -> None:
    """The liveness probe is the project's own (Ping through the proxy), not dagster's health check (answered by the
    proxy even with its child dead): see v6_assets_tests/devserver/test_probe.py."""
    documents = list(yaml.safe_load_all((LAUNCHERS / "k8s-code-server.yaml").read_text()))
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    probe = container["livenessProbe"]
    port = container["args"][container["args"].index("-p") + 1]
    assert probe["exec"]["command"] == ["python", "-m", "v6_assets.devserver", "--probe", port]
    assert probe["periodSeconds"] * probe["failureThreshold"] <= 60
