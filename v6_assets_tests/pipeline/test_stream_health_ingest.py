"""stream_health rows go through the same spool into Delta exactly once, interleaved with the other streams."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from v6_assets.contracts.streams import GreeksUpdate, HealthInterval, PositionUpdate
from v6_assets.ib.spool import Spool
from v6_assets.lake import Lake
from v6_assets.pipeline.ingest import drain_spool_to_lake
from v6_assets.pipeline.integrity import check_lake
from v6_assets_tests.pipeline.test_ingest import CRASH_SCRIPT, STREAM, T0, greeks, offsets, position

TABLES = ("position_updates", "greeks_updates", "stream_health")


def health(seq: int, state: str, minutes: int, ended: int | None = None) -> HealthInterval:
    started = T0 + timedelta(minutes=minutes)
    return HealthInterval(
        state=state,  # type: ignore[arg-type]
        started_at=started,
        ended_at=None if ended is None else T0 + timedelta(minutes=ended),
        detail=f"{state} for the test",
        seq=seq,
        received_at=T0 + timedelta(minutes=ended if ended is not None else minutes),
    )


def mixed(spool: Spool, n: int) -> list[PositionUpdate | GreeksUpdate | HealthInterval]:
    """Every 5th event a health row (begin, then end of a competing session), the rest positions and greeks."""
    events: list[PositionUpdate | GreeksUpdate | HealthInterval] = []
    for i in range(n):
        at = T0 + timedelta(minutes=i)
        if i % 5 == 0:
            begins = i % 10 == 0
            events.append(health(i, "competing_session", i) if begins else health(i, "competing_session", i - 5, i))
        else:
            events.append(position(i, at) if i % 2 else greeks(i, at))
    spool.append(events)
    return events


def all_offsets(lake: Lake) -> list[int]:
    return sorted(o for t in TABLES for o in offsets(lake, t))


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake.at(str(tmp_path / "lake"))


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    with Spool(tmp_path / "spool.sqlite") as s:
        yield s


def test_health_rows_land_once_with_their_times_and_the_spool_is_acked(lake: Lake, spool: Spool) -> None:
    events = mixed(spool, 30)
    result = drain_spool_to_lake(spool, lake, STREAM, batch_rows=4)
    assert all_offsets(lake) == list(range(1, 31)) and spool.depth() == 0
    rows = lake.scan("stream_health").sort("spool_offset").collect()
    expected = [e for e in events if isinstance(e, HealthInterval)]
    assert rows.height == len(expected) == 6 == result.tables["stream_health"].rows_written
    assert rows["state"].to_list() == [e.state for e in expected]
    assert rows["started_at"].to_list() == [e.started_at for e in expected]
    assert rows["ended_at"].to_list() == [e.ended_at for e in expected]  # null while it went on
    assert rows["ended_at"].null_count() == 3
    report = check_lake(lake, STREAM)
    assert report.offsets_checked == 30 and report.missing_offsets == 0 and report.duplicated_offsets == 0
    assert drain_spool_to_lake(spool, lake, STREAM).rows_written == 0


def test_a_crash_between_commit_and_ack_neither_duplicates_nor_loses_health_rows(
    lake: Lake, spool: Spool, tmp_path: Path
) -> None:
    mixed(spool, 20)
    proc = subprocess.run([sys.executable, "-c", CRASH_SCRIPT, str(spool.path), lake.uri, STREAM],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 17, proc.stderr
    assert spool.acked_offset() == 0 and len(all_offsets(lake)) == 20
    mixed(spool, 10)  # offsets 21..30, two more health rows
    drain_spool_to_lake(spool, lake, STREAM)
    assert all_offsets(lake) == list(range(1, 31)) and spool.depth() == 0
    assert len(offsets(lake, "stream_health")) == 6
