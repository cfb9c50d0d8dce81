"""drain_spool_to_lake: exactly once into real Delta tables, through crashes, replays and bad input."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from v6_assets.contracts.streams import GreeksUpdate, PositionUpdate
from v6_assets.ib.spool import Spool
from v6_assets.lake import Lake, LakeSchemaError
from v6_assets.pipeline.ingest import DrainError, committed_offsets, drain_spool_to_lake

STREAM = "ib-127.0.0.1-4002-61"
# 2025-03-03 (Mon) 15:00 UTC is inside session 2025-03-03; +1 day per step crosses into later sessions.
T0 = datetime(2025, 3, 3, 15, 0, tzinfo=UTC)


def position(seq: int, at: datetime, *, account: str = "DU1", con_id: int = 1001, qty: float | None = 2.0,
             unrealized: float | None = 300.0) -> PositionUpdate:  # fmt: skip
    return PositionUpdate(
        account=account, con_id=con_id, symbol="SPY", sec_type="OPT", expiry=date(2025, 4, 17), strike=600.0,
        right="P", multiplier=100.0, currency="USD", exchange="SMART", trading_class="SPY",
        local_symbol="SPY   250417P00600000", position=qty, average_cost=905.5, market_price=9.5, market_value=None,
        unrealized_pnl=unrealized, realized_pnl=None, ib_daily_pnl=float(seq), ib_unrealized_pnl=None,
        ib_realized_pnl=None, ib_value=1900.0, source="pnl_single", seq=seq, received_at=at,
    )  # fmt: skip


def greeks(seq: int, at: datetime, con_id: int = 1001) -> GreeksUpdate:
    return GreeksUpdate(con_id, 13, -0.4, 0.01, 0.3, -0.05, 0.2, 600.0, 9.5, seq, at)


def fill(spool: Spool, n: int, start: int = 0) -> list[PositionUpdate | GreeksUpdate]:
    events: list[PositionUpdate | GreeksUpdate] = []
    for i in range(start, start + n):
        at = T0 + timedelta(hours=6 * i)  # spans several sessions
        events.append(position(i, at, con_id=1000 + i % 3) if i % 4 else greeks(i, at, con_id=1000 + i % 3))
    spool.append(events)
    return events


def offsets(lake: Lake, table: str) -> list[int]:
    return sorted(lake.scan(table).select("spool_offset").collect()["spool_offset"].to_list())


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    return Lake.at(str(tmp_path / "lake"))


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    with Spool(tmp_path / "spool.sqlite") as s:
        yield s


def test_every_record_lands_once_with_its_session_and_the_spool_is_acked(lake: Lake, spool: Spool) -> None:
    fill(spool, 40)
    result = drain_spool_to_lake(spool, lake, STREAM, batch_rows=7)
    assert result.batches == 6 and result.rows_read == 40 and result.stopped_by == "drained"
    pos, grk = offsets(lake, "position_updates"), offsets(lake, "greeks_updates")
    assert sorted(pos + grk) == list(range(1, 41)) and len(grk) == 10
    assert spool.depth() == 0 and spool.acked_offset() == 40 and result.backlog == 0
    frame = lake.scan("position_updates").collect()
    assert set(frame["stream_id"]) == {STREAM}
    assert result.tables["position_updates"].rows_per_session == dict(frame.group_by("trade_date").len().iter_rows())
    # Saturday/Sunday updates belong to Monday's session, none lands on a weekend
    assert all(d.weekday() < 5 for d in frame["trade_date"])
    assert committed_offsets(lake, STREAM) == {
        "position_updates": 40,
        "greeks_updates": 40,
        "executions": None,
        "account_values": None,
    }
    again = drain_spool_to_lake(spool, lake, STREAM)  # a repeated (or preview) tick finds nothing left
    assert again.rows_read == 0 and again.rows_written == 0
    assert sorted(offsets(lake, "position_updates") + offsets(lake, "greeks_updates")) == list(range(1, 41))


def test_backlog_is_caught_up_over_several_bounded_calls(lake: Lake, spool: Spool) -> None:
    fill(spool, 30)
    first = drain_spool_to_lake(spool, lake, STREAM, max_rows=12, batch_rows=5)
    assert first.stopped_by == "max_rows" and first.rows_read == 12 and first.backlog == 18
    past = drain_spool_to_lake(spool, lake, STREAM, deadline=time.monotonic() - 1)
    assert past.stopped_by == "deadline" and past.rows_read == 0
    rest = drain_spool_to_lake(spool, lake, STREAM, max_rows=100)
    assert rest.rows_read == 18 and rest.backlog == 0
    assert sorted(offsets(lake, "position_updates") + offsets(lake, "greeks_updates")) == list(range(1, 31))


CRASH_SCRIPT = textwrap.dedent(
    """
    import os, sys
    from v6_assets.pipeline.ingest import drain_spool_to_lake
    from v6_assets.ib.spool import Spool
    from v6_assets.lake import Lake

    def die(self, up_to):  # the process dies after the Delta commits, before the spool ack
        os._exit(17)

    Spool.ack = die
    spool = Spool(sys.argv[1])
    drain_spool_to_lake(spool, Lake.at(sys.argv[2]), sys.argv[3], batch_rows=1000)
    """
)


def test_crash_between_delta_commit_and_ack_neither_duplicates_nor_loses(
    lake: Lake, spool: Spool, tmp_path: Path
) -> None:
    fill(spool, 25)
    proc = subprocess.run(
        [sys.executable, "-c", CRASH_SCRIPT, str(spool.path), lake.uri, STREAM],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 17, proc.stderr
    # the crashed process committed both tables but never acknowledged
    assert spool.acked_offset() == 0 and spool.depth() == 25
    assert len(offsets(lake, "position_updates") + offsets(lake, "greeks_updates")) == 25
    fill(spool, 5, start=25)
    result = drain_spool_to_lake(spool, lake, STREAM)
    assert sorted(offsets(lake, "position_updates") + offsets(lake, "greeks_updates")) == list(range(1, 31))
    assert result.rows_written == 5 and spool.depth() == 0 and spool.acked_offset() == 30


def test_two_processes_draining_the_same_spool_write_each_record_once(lake: Lake, spool: Spool) -> None:
    fill(spool, 200)
    script = textwrap.dedent(
        """
        import sys
        from v6_assets.pipeline.ingest import drain_spool_to_lake
        from v6_assets.ib.spool import Spool
        from v6_assets.lake import Lake
        drain_spool_to_lake(Spool(sys.argv[1]), Lake.at(sys.argv[2]), sys.argv[3], batch_rows=20)
        """
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", script, str(spool.path), lake.uri, STREAM], stderr=subprocess.PIPE)
        for _ in range(2)
    ]  # like an old and a new code server during a Reload
    for p in procs:
        _, err = p.communicate(timeout=180)
        assert p.returncode == 0, err.decode()
    assert sorted(offsets(lake, "position_updates") + offsets(lake, "greeks_updates")) == list(range(1, 201))
    assert spool.depth() == 0


def test_a_replaced_spool_is_refused_with_a_clear_error(lake: Lake, spool: Spool, tmp_path: Path) -> None:
    fill(spool, 10)
    drain_spool_to_lake(spool, lake, STREAM)
    with Spool(tmp_path / "fresh.sqlite") as fresh:
        fill(fresh, 3)
        with pytest.raises(DrainError, match="spool was replaced or reset"):
            drain_spool_to_lake(fresh, lake, STREAM)
        assert fresh.depth() == 3  # nothing acknowledged, nothing lost
    assert len(offsets(lake, "position_updates") + offsets(lake, "greeks_updates")) == 10


def test_a_sentinel_in_the_spool_is_an_error_and_nothing_is_lost(lake: Lake, spool: Spool) -> None:
    fill(spool, 3)
    spool.append([position(99, T0, unrealized=1.7976931348623157e308)])
    with pytest.raises(LakeSchemaError, match="UNSET_DOUBLE"):
        drain_spool_to_lake(spool, lake, STREAM)
    assert spool.depth() == 4 and spool.acked_offset() == 0
    assert lake.scan("position_updates").select(pl.len()).collect().item() == 0


def test_bad_arguments_are_refused(lake: Lake, spool: Spool) -> None:
    with pytest.raises(ValueError, match="stream_id"):
        drain_spool_to_lake(spool, lake, "  ")
    with pytest.raises(ValueError, match="max_rows"):
        drain_spool_to_lake(spool, lake, STREAM, max_rows=0)
