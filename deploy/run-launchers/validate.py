"""Validate the instance files against Dagster's own config schemas, launchers included, without Docker or Kubernetes.

dagster-docker and dagster-k8s are not project dependencies; install them into a throwaway directory first:

    .venv/bin/pip install --no-deps --target /tmp/v6-launchers dagster-docker==0.29.27 dagster-k8s==0.29.27 \
        docker-image-py "kubernetes<37" oauthlib requests-oauthlib google-auth websocket-client durationpy \
        pyasn1-modules rsa cachetools pyasn1
    PYTHONPATH=/tmp/v6-launchers .venv/bin/python deploy/run-launchers/validate.py

Checks, per file: the whole file against the instance schema (``dagster.yaml``), every ``env:`` reference resolved
from placeholder values, the ``run_launcher`` block against the launcher class's ``config_type()``, and the
DockerRunLauncher constructed from it (the K8s launcher's constructor needs a cluster, so it is schema-checked only).
Exit 0 when everything passes.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from dagster._config import process_config
from dagster._core.instance.config import dagster_instance_config_schema

HERE = Path(__file__).resolve().parent
FILES = [HERE.parent / "dagster.postgres.yaml", HERE / "dagster.docker.yaml", HERE / "dagster.k8s.yaml"]
PLACEHOLDER_ENV = {
    "DAGSTER_PG_HOST": "127.0.0.1",
    "DAGSTER_PG_PORT": "5432",
    "DAGSTER_PG_USER": "v6",
    "DAGSTER_PG_PASSWORD": "placeholder",
    "DAGSTER_PG_DB": "v6",
    "V6_IMAGE": "v6_assets:validate",
    "V6_DOCKER_NETWORK": "v6_net",
}


def _errors(result: Any) -> list[str]:
    return [str(e.message) for e in result.errors or []]


def validate_file(path: Path) -> list[str]:
    problems: list[str] = []
    raw = yaml.safe_load(path.read_text())
    instance = process_config(dagster_instance_config_schema(), raw)
    if not instance.success:
        return [f"{path.name}: instance schema: {m}" for m in _errors(instance)]
    launcher: Mapping[str, Any] | None = raw.get("run_launcher")
    if launcher is None:
        return problems
    module = importlib.import_module(launcher["module"])
    cls = getattr(module, launcher["class"])
    checked = process_config(cls.config_type(), launcher.get("config") or {})
    if not checked.success:
        return [f"{path.name}: {launcher['class']} config: {m}" for m in _errors(checked)]
    if launcher["class"] == "DockerRunLauncher":
        cls.from_config_value(None, checked.value)
    return problems


def main() -> int:
    for key, value in PLACEHOLDER_ENV.items():
        os.environ.setdefault(key, value)
    try:
        importlib.import_module("dagster_docker")
        importlib.import_module("dagster_k8s")
    except ImportError as e:
        print(f"validate: {e}; install the launcher packages first (see this file's docstring)", file=sys.stderr)
        return 2
    problems = [p for f in FILES for p in validate_file(f)]
    for f in FILES:
        print(
            f"validate: {f.relative_to(HERE.parent.parent)}: {'FAILED' if any(f.name in p for p in problems) else 'ok'}"
        )
    for p in problems:
        print(f"  {p}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
