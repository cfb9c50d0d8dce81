""".ci/services.sh itself: loopback only, private credentials, idempotent start, deletes only its own state."""

from __future__ import annotations

import stat
from pathlib import Path

import psutil
import psycopg2
import pytest

from v6_assets_tests.scaleout.conftest import Services, read_env_file, run_services_script

pytestmark = [pytest.mark.scaleout]


def _ports(services: Services) -> set[int]:
    return {int(services.env["DAGSTER_PG_PORT"]), int(services.env["AWS_ENDPOINT_URL"].rsplit(":", 1)[1])}


def test_servers_listen_on_loopback_only(services: Services) -> None:
    ports = _ports(services)
    listening = [
        (c.laddr[0], c.laddr[1])
        for c in psutil.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr[1] in ports
    ]
    assert {port for _, port in listening} == ports
    assert {ip for ip, _ in listening} == {"127.0.0.1"}


def test_env_file_is_private_and_credentials_work(services: Services) -> None:
    mode = stat.S_IMODE(services.env_file.stat().st_mode)
    assert mode == 0o600, oct(mode)
    with services.pg_connect() as conn, conn.cursor() as cur:
        cur.execute("SELECT current_user, rolsuper, rolcreatedb FROM pg_roles WHERE rolname = current_user")
        assert cur.fetchone() == (services.env["DAGSTER_PG_USER"], False, True)
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(
            host="127.0.0.1",
            port=int(services.env["DAGSTER_PG_PORT"]),
            user=services.env["DAGSTER_PG_USER"],
            password="wrong-" + services.env["DAGSTER_PG_PASSWORD"],
            dbname=services.env["DAGSTER_PG_DB"],
            connect_timeout=5,
        )
    client = services.s3_client()
    assert services.bucket in [b["Name"] for b in client.list_buckets()["Buckets"]]  # type: ignore[attr-defined]


def test_start_again_is_idempotent(services: Services) -> None:
    again = run_services_script("start", str(services.env_file.parent), timeout_s=120)
    assert again.returncode == 0, again.stderr
    assert Path(again.stdout.strip()) == services.env_file
    assert read_env_file(services.env_file) == dict(services.env)  # same servers, same ports, same credentials
    assert run_services_script("status", str(services.env_file.parent), timeout_s=60).returncode == 0


def test_stop_refuses_a_directory_it_did_not_make(tmp_path: Path) -> None:
    keep = tmp_path / "keep.txt"
    keep.write_text("not the script's")
    refused = run_services_script("stop", str(tmp_path), timeout_s=60)
    assert refused.returncode == 1 and "not made by this script" in refused.stderr
    assert keep.read_text() == "not the script's"
    usage = run_services_script("restart", timeout_s=60)
    assert usage.returncode == 2 and "usage" in usage.stderr
