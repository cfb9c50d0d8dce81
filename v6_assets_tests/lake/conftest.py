"""Lake fixtures: every ``lake`` test runs on a local directory and on a real S3 server (moto) on loopback."""

from __future__ import annotations

import multiprocessing
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto.server import ThreadedMotoServer

from v6_assets.lake import Lake

S3_ACCESS_KEY = "testing-access-key"  # moto accepts any credentials; these are not secrets
S3_SECRET_KEY = "testing-secret-key"
S3_REGION = "us-east-1"


def serve_moto(endpoint_queue: Any, stop: Any) -> None:
    """Child process body: a real moto S3 server on loopback until ``stop`` is set."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint_queue.put(f"http://{host}:{port}")
    stop.wait()
    server.stop()


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    # In its own process: some deltalake calls (is_deltatable, cleanup_metadata, its pyarrow filesystem) hold the
    # GIL while doing I/O, which starves a server thread living in the test process until the request times out.
    ctx = multiprocessing.get_context("spawn")
    endpoint_queue = ctx.Queue()
    stop = ctx.Event()
    process = ctx.Process(target=serve_moto, args=(endpoint_queue, stop), daemon=True)
    process.start()
    try:
        yield endpoint_queue.get(timeout=60)
    finally:
        stop.set()
        process.join(timeout=10)
        if process.is_alive():
            process.terminate()


def s3_storage_options(endpoint: str) -> dict[str, str]:
    return {
        "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY,
        "AWS_REGION": S3_REGION,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ALLOW_HTTP": "true",
    }


def make_s3_lake(endpoint: str) -> Lake:
    bucket = f"lake-{uuid.uuid4().hex[:12]}"
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=S3_ACCESS_KEY,
        aws_secret_access_key=S3_SECRET_KEY,
        region_name=S3_REGION,
    ).create_bucket(Bucket=bucket)
    return Lake.at(f"s3://{bucket}/v6", s3_storage_options(endpoint))


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def lake(request: pytest.FixtureRequest, tmp_path: Path) -> Lake:
    if request.param == "local":
        return Lake.at(str(tmp_path / "lake"))
    return make_s3_lake(request.getfixturevalue("s3_endpoint"))
