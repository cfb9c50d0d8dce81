"""The periodic lake integrity check (issue 17, point 4): a deleted data file or an offset gap fails visibly."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import build_sensor_context, instance_for_test

from v6_assets.defs.resources import IBStreamResource, LakeResource
from v6_assets.defs.sensors import ib_position_stream
from v6_assets.ib.spool import Spool
from v6_assets.ib.streamer import discard_process_streamer
from v6_assets.lake import Lake
from v6_assets.pipeline.ingest import drain_spool_to_lake
from v6_assets.pipeline.integrity import LakeIntegrityError, check_lake
from v6_assets_tests.pipeline.test_ingest import fill

STREAM = "ib-127.0.0.1-4002-61"


@pytest.fixture(autouse=True)
def no_streamer_leak() -> Iterator[None]:
    yield
    discard_process_streamer()


def _ingested(tmp_path: Path, stream: str = STREAM, spool_path: Path | None = None) -> Lake:
    lake = Lake.at(str(tmp_path / "lake"))
    with Spool(spool_path or tmp_path / "spool.sqlite") as spool:
        for start in (0, 20, 40):  # three commits: several data files per table
            fill(spool, 20, start)
            drain_spool_to_lake(spool, lake, stream)
    return lake


def test_a_healthy_lake_passes(tmp_path: Path) -> None:
    report = check_lake(_ingested(tmp_path), STREAM)
    assert report.ok, report.describe()
    assert report.files_checked >= 6 and report.offsets_checked == 60 and report.offset_range == (1, 60)


def test_a_deleted_data_file_is_reported_with_its_name_and_the_repair(tmp_path: Path) -> None:
    lake = _ingested(tmp_path)
    victim = sorted((tmp_path / "lake" / "position_updates").rglob("*.parquet"))[0]
    victim.unlink()
    report = check_lake(lake, STREAM)
    assert not report.ok
    assert report.missing_files == {"position_updates": [victim.name]}
    assert "LAKE INTEGRITY FAILURE" in report.describe() and "Restore" in report.describe()


def test_an_offset_gap_is_reported(tmp_path: Path) -> None:
    lake = Lake.at(str(tmp_path / "lake"))
    with Spool(tmp_path / "spool.sqlite") as spool:
        fill(spool, 10)
        drain_spool_to_lake(spool, lake, STREAM)
        spool.start_epoch(13)  # a (wrong) epoch leaving offsets 11..13 unassigned
        fill(spool, 5, 10)
        drain_spool_to_lake(spool, lake, STREAM)
    report = check_lake(lake, STREAM)
    assert (report.missing_offsets, report.duplicated_offsets, report.offset_range) == (3, 0, (1, 18))
    assert "3 spool offset(s) missing" in report.describe()


def test_the_sensor_fails_its_tick_on_a_deleted_file(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    ib = IBStreamResource(host="127.0.0.1", port=port, client_id=79, home=str(tmp_path))
    _ingested(tmp_path, ib.settings().stream_id, ib.settings().spool_path)
    next((tmp_path / "lake" / "greeks_updates").rglob("*.parquet")).unlink()
    resources = {"ib_stream": ib, "lake": LakeResource(uri=str(tmp_path / "lake"))}
    with (
        instance_for_test(set_dagster_home=False) as instance,
        build_sensor_context(instance=instance, resources=resources) as ctx,
        pytest.raises(LakeIntegrityError, match="greeks_updates: 1 data file"),
    ):
        ib_position_stream(ctx)
