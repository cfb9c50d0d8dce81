"""Spool disk and memory bounds (issue 17, point 2): ``python -m bench.spool_bounds [--events N]``.

1. WAL size: 10 cycles of appending 2,000 position updates and acknowledging them, with SQLite's defaults (1,000-page
   autocheckpoint, no size limit, no checkpoint after ack) and with the spool's settings; the WAL's largest size and
   its size once the spool is empty again.
2. Memory while the spool refuses writes: ``--events`` updates (half positions over 2,000 contracts, half greeks)
   offered to a ``SpoolHandler`` whose spool is fenced (like a full disk), with the default ``max_held`` and with no
   bound; RSS growth of this process and the updates held and shed.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import tempfile
from datetime import UTC, date, datetime
from pathlib import Path

import psutil

import v6_assets.ib.spool as spool_mod
from v6_assets.ib.models import GreeksUpdate, PositionUpdate
from v6_assets.ib.spool import DEFAULT_MAX_HELD, Spool, SpoolHandler

T0 = datetime(2025, 3, 3, 15, 0, tzinfo=UTC)


def position(seq: int, con_id: int) -> PositionUpdate:
    return PositionUpdate(
        "DU1", con_id, "SPX", "OPT", date(2025, 3, 21), 5800.0, "C", 100.0, "USD", "SMART", "SPXW",
        "SPXW  250321C05800000", 2.0, 1100.0, 12.5 + seq / 1e6, 2500.0, 300.0, None, float(seq), 300.0, None,
        2500.0, "pnl_single", seq, T0,
    )  # fmt: skip


def greeks(seq: int, con_id: int) -> GreeksUpdate:
    return GreeksUpdate(con_id, 13, 0.5, 0.01, None, -0.1, 0.2 + seq / 1e9, 5800.0, 12.5, seq, T0)


def wal_sizes(defaults: bool) -> tuple[int, int]:
    saved = spool_mod.WAL_AUTOCHECKPOINT_PAGES, spool_mod.WAL_SIZE_LIMIT, spool_mod.Spool._checkpoint
    if defaults:
        spool_mod.WAL_AUTOCHECKPOINT_PAGES, spool_mod.WAL_SIZE_LIMIT = 1000, -1
        spool_mod.Spool._checkpoint = lambda self: None  # type: ignore[method-assign]
    try:
        with tempfile.TemporaryDirectory() as tmp, Spool(Path(tmp) / "s.sqlite") as spool:
            largest = 0
            for cycle in range(10):
                last = spool.append([position(cycle * 2000 + i, i) for i in range(2000)])
                largest = max(largest, spool.wal_bytes())
                spool.ack(last)
            spool.append([position(1, 1)])
            spool.ack(spool.last_offset())
            return largest, spool.wal_bytes()
    finally:
        spool_mod.WAL_AUTOCHECKPOINT_PAGES, spool_mod.WAL_SIZE_LIMIT, spool_mod.Spool._checkpoint = saved  # type: ignore[method-assign]


def held_memory(events: int, max_held: int) -> dict[str, int]:
    gc.collect()
    proc = psutil.Process()
    before = proc.memory_info().rss
    with tempfile.TemporaryDirectory() as tmp:
        spool = Spool(Path(tmp) / "s.sqlite")
        spool.fence("bench: refuse writes like a full disk")
        # Unbounded, every retry would re-encode everything held (quadratic): retry once a minute there instead.
        handler = SpoolHandler(spool, retry_s=0.01 if max_held <= DEFAULT_MAX_HELD else 60.0, max_held=max_held)

        async def offer() -> None:
            for start in range(0, events, 5_000):
                for i in range(start, min(events, start + 5_000)):
                    handler.accept(position(i, i % 2_000) if i % 2 else greeks(i, i % 2_000))
                await asyncio.sleep(0)

        asyncio.run(offer())
        grown = proc.memory_info().rss - before
        result = {
            "events": events,
            "max_held": max_held,
            "held": handler.pending,
            "max_pending_seen": handler.max_pending_seen,
            "dropped_greeks": handler.dropped_greeks,
            "dropped_positions": handler.dropped_positions,
            "rss_growth_mb": round(grown / 2**20),
        }
        spool.close()
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.spool_bounds")
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    for label, defaults in (("sqlite defaults", True), ("spool settings", False)):
        largest, empty = wal_sizes(defaults)
        print(f"WAL {label}: largest {largest / 1024:.0f} KiB, when empty again {empty / 1024:.0f} KiB")
    print("held while refused (bounded):", held_memory(args.events, DEFAULT_MAX_HELD))
    print("held while refused (unbounded):", held_memory(args.events, 10**12))


if __name__ == "__main__":
    main()
