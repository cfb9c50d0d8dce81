"""Seeding twice gives identical tables (issue 14): the lock-step seed, through the real path, compared row by row.

The demo scenario is seeded twice, two sessions back from a pinned Wednesday 14:00 New York (the clock pinned with
time-machine), each time through its own simulator (real TCP), the unmodified ib_async streamer, its own spool and
its own Delta lake. Every streamed table of the closed sessions must be equal row by row in every column except:

- ``stream_id``: ``ib-<host>-<port>-<client id>``, and each simulator listens on a port the OS picks;
- ``ingested_at``: the wall-clock time of the drain into Delta;
- ``spool_offset`` is compared as the row's rank within its table (the order of the table's rows must be the same),
  not as a number: it is ONE sequence over the five streams, and how rows of different streams received at the same
  simulated instant interleave depends on how ib_async batches a TCP read (it publishes ticker changes, so greeks,
  at the end of each read; the first health interval is written while the position snapshot arrives).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
import pytest
import time_machine

from v6_assets.contracts.tables import TABLES
from v6_assets.gateway_sim import GatewaySimulator, load_scenario
from v6_assets.history_seed import SeedResult, history_start, seed_history
from v6_assets.ib import StreamerSettings
from v6_assets.ib.streamer import discard_process_streamer
from v6_assets.lake import Lake

NY = ZoneInfo("America/New_York")
PINNED = datetime(2026, 11, 18, 14, 0, tzinfo=NY)
SESSIONS_BACK = 2
CLOSED = [date(2026, 11, 16), date(2026, 11, 17)]
PER_RUN_COLUMNS = ("stream_id", "ingested_at")


@dataclass(frozen=True)
class Seeded:
    seed: SeedResult
    lake: Lake


def _seed(tmp: Path) -> Seeded:
    with time_machine.travel(PINNED, tick=True):
        scenario = load_scenario("demo", start_time=history_start(SESSIONS_BACK))
        lake = Lake(str(tmp / "lake"))
        sim = GatewaySimulator(scenario, speed=12000.0, port=0, lockstep=True)
        with sim.running():
            settings = StreamerSettings(port=sim.port, client_id=62, home=tmp / "v6")
            try:
                seed = seed_history(sim, settings, lake, timeout_s=120)
            finally:
                discard_process_streamer()
    return Seeded(seed, lake)


@pytest.fixture(scope="module")
def twice(tmp_path_factory: pytest.TempPathFactory) -> tuple[Seeded, Seeded]:
    return _seed(tmp_path_factory.mktemp("seed_a")), _seed(tmp_path_factory.mktemp("seed_b"))


def _closed_rows(lake: Lake, table: str) -> pl.DataFrame:
    if not lake.exists(table):
        return pl.DataFrame()
    frame = lake.scan(table).filter(pl.col("trade_date").is_in(CLOSED)).collect().sort("spool_offset")
    return frame.drop(PER_RUN_COLUMNS).with_columns(pl.int_range(pl.len()).alias("spool_offset"))


class TestSeedTwice:
    def test_both_seeds_closed_the_same_sessions(self, twice: tuple[Seeded, Seeded]) -> None:
        a, b = twice
        assert [date.fromisoformat(d) for d in a.seed.sessions_closed] == CLOSED
        assert b.seed.sessions_closed == a.seed.sessions_closed

    @pytest.mark.parametrize("table", sorted(t.name for t in TABLES.values() if t.kind == "stream"))
    def test_streamed_table_of_the_closed_sessions_is_identical(self, twice: tuple[Seeded, Seeded], table: str) -> None:
        a, b = (_closed_rows(s.lake, table) for s in twice)
        if table == "position_updates":
            assert a.height > 0, "the seed wrote no position rows for the closed sessions"
        assert a.columns == b.columns
        assert a.height == b.height, (table, a.height, b.height)
        diff = a.join(b, on=a.columns, how="anti", nulls_equal=True)
        assert diff.is_empty(), (table, diff.head(5))
        assert a.equals(b), table
