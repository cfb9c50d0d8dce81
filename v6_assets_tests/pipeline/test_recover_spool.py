"""The recovery of a reset or damaged spool (issue 17, point 3), end to end through the real command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from v6_assets.ib.lease import ConnectionLease
from v6_assets.ib.settings import StreamerSettings
from v6_assets.ib.spool import Spool, SpoolFencedError
from v6_assets.lake import Lake
from v6_assets.pipeline.ingest import SpoolBehindLakeError, drain_spool_to_lake
from v6_assets_tests.ib.conftest import greeks_update, position_update


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(V6_HOME=str(tmp_path / "home"), V6_LAKE_URI=str(tmp_path / "lake"), V6_IB_CLIENT_ID="91")
    env.update(V6_IB_HOST="127.0.0.1", V6_IB_PORT="4002")
    return env


def _recover(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "v6_assets.pipeline.recover_spool", *args],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def _fill(spool: Spool, n: int, start: int) -> None:
    spool.append([position_update(start + i, con_id=i % 5) if i % 3 else greeks_update(start + i) for i in range(n)])


def _lake_offsets(lake: Lake) -> list[int]:
    rows: list[int] = []
    for table in ("position_updates", "greeks_updates"):
        rows += lake.scan(table).select("spool_offset").collect()["spool_offset"].to_list()
    return sorted(rows)


def test_a_reset_spool_is_fenced_then_recovered_into_a_new_epoch_exactly_once(tmp_path: Path) -> None:
    env = _env(tmp_path)
    settings = StreamerSettings.from_env(env)
    lake = Lake.at(env["V6_LAKE_URI"])
    with Spool(settings.spool_path) as spool:
        _fill(spool, 50, 0)
        drain_spool_to_lake(spool, lake, settings.stream_id)
    assert _lake_offsets(lake) == list(range(1, 51))
    # The spool file is lost; a new one is started by the streamer and gets 7 new events at offsets 1..7.
    for suffix in ("", "-wal", "-shm"):
        Path(str(settings.spool_path) + suffix).unlink(missing_ok=True)
    with Spool(settings.spool_path) as spool:
        _fill(spool, 7, 100)
        with pytest.raises(SpoolBehindLakeError, match="recover_spool"):
            drain_spool_to_lake(spool, lake, settings.stream_id)
        with pytest.raises(SpoolFencedError):  # the streamer no longer fills a dead end
            _fill(spool, 1, 200)
    check = _recover(env, "--check")
    assert check.returncode == 1 and "BEHIND the lake" in check.stdout, check.stdout + check.stderr
    # Unacked events need a choice.
    choose = _recover(env)
    assert choose.returncode == 2 and "--keep-unacked" in choose.stdout, choose.stdout
    # A spool that is only behind is recovered beside a running stream (its lease held, the file open).
    lease = ConnectionLease(settings.locks_dir, settings.host, settings.port, settings.client_id)
    assert lease.try_acquire()
    with Spool(settings.spool_path) as streamer_side:
        done = _recover(env, "--keep-unacked")
        assert done.returncode == 0 and "offsets continue at 51" in done.stdout, done.stdout + done.stderr
        assert streamer_side.append([position_update(400)]) == 58  # the fence is lifted for the open connection
    lease.release()
    with Spool(settings.spool_path) as spool:
        _fill(spool, 4, 300)
        result = drain_spool_to_lake(spool, lake, settings.stream_id)
        assert result.rows_written == 12 and spool.depth() == 0
    assert _lake_offsets(lake) == list(range(1, 63))  # 0 duplicated, 0 missing, the reset's 7 events kept
    assert _recover(env, "--check").returncode == 0


def test_a_damaged_spool_is_moved_aside_and_a_new_epoch_starts_above_the_lake(tmp_path: Path) -> None:
    env = _env(tmp_path)
    settings = StreamerSettings.from_env(env)
    lake = Lake.at(env["V6_LAKE_URI"])
    with Spool(settings.spool_path) as spool:
        _fill(spool, 30, 0)
        drain_spool_to_lake(spool, lake, settings.stream_id)
    for suffix in ("-wal", "-shm"):
        Path(str(settings.spool_path) + suffix).unlink(missing_ok=True)
    data = bytearray(settings.spool_path.read_bytes())
    data[100:4096] = b"\x5a" * (4096 - 100)  # clobber the header page and the schema
    settings.spool_path.write_bytes(bytes(data))
    check = _recover(env, "--check")
    assert check.returncode == 1 and "damaged" in check.stdout, check.stdout + check.stderr
    lease = ConnectionLease(settings.locks_dir, settings.host, settings.port, settings.client_id)
    assert lease.try_acquire()
    refused = _recover(env)  # never replace a file a running streamer has open
    lease.release()
    assert refused.returncode == 2 and "stop it first" in refused.stdout, refused.stdout
    done = _recover(env)
    assert done.returncode == 0 and "moved the damaged spool aside" in done.stdout, done.stdout + done.stderr
    assert list(settings.spool_path.parent.glob("*.corrupt-*"))
    with Spool(settings.spool_path) as spool:
        _fill(spool, 4, 100)
        assert spool.last_offset() == 34
        result = drain_spool_to_lake(spool, lake, settings.stream_id)
        assert result.rows_written == 4
    assert _lake_offsets(lake) == list(range(1, 35))
