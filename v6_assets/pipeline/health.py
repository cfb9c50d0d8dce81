"""The connection's gaps for the daily tables: ``stream_health`` read from the lake, the EOD rows they affect
flagged, and a sentence per session for the run's metadata and the sensor. Dagster-free."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime

import polars as pl

from v6_assets import sessions
from v6_assets.analytics import health
from v6_assets.contracts.clock import utc_now
from v6_assets.contracts.tables import STREAM_HEALTH, TRADE_DATE
from v6_assets.lake import Lake


def stream_gaps(lake: Lake, now: datetime | None = None) -> pl.DataFrame:
    """Every gap interval recorded by any stream (empty when the table does not exist yet)."""
    if lake.open(STREAM_HEALTH.name) is None:
        return health.gap_intervals(health.health_intervals(pl.DataFrame(), now or utc_now()))
    rows = lake.scan(STREAM_HEALTH.name).select("stream_id", "state", "started_at", "ended_at", "detail",
                                                "received_at").collect()  # fmt: skip
    return health.gap_intervals(health.health_intervals(rows, now or utc_now()))


def flag_eod(lake: Lake, eod: pl.DataFrame, now: datetime | None = None) -> pl.DataFrame:
    """``eod`` with ``health_gap`` filled from the lake's stream_health."""
    return health.flag_gaps(eod, stream_gaps(lake, now))


def gaps_by_session(frame: pl.DataFrame, days: Sequence[date]) -> dict[date, tuple[int, str | None]]:
    """Per session: how many rows a gap affected and the gaps in words (None when none)."""
    out: dict[date, tuple[int, str | None]] = {}
    for day in days:
        rows = frame.filter(pl.col(TRADE_DATE) == day)
        flagged = (
            rows.filter(pl.col(health.HEALTH_GAP).is_not_null()) if health.HEALTH_GAP in rows.columns else rows.clear()
        )
        words = sorted(set(flagged[health.HEALTH_GAP].to_list())) if flagged.height else []
        out[day] = (flagged.height, "; ".join(dict.fromkeys(w for text in words for w in text.split("; "))) or None)
    return out


def session_gap_words(lake: Lake, day: date, now: datetime | None = None) -> str | None:
    """The gaps overlapping ``day``'s session (previous cut, cut], in words; None when the connection was fine."""
    gaps = stream_gaps(lake, now)
    start, end = sessions.eod_cut(sessions.previous_session(day)), sessions.eod_cut(day)
    hit = gaps.filter((pl.col("started_at") < end) & (pl.col("ended_at") > start))
    return "; ".join(hit["words"].to_list()) or None


def gap_metadata(frame: pl.DataFrame, days: Sequence[date], lake: Lake | None = None) -> dict[str, str | int]:
    """What the run's metadata says about the connection: the rows taken during a gap and the gaps in words
    ("2025-03-04: 12 rows flagged: competing live session 03-04 14:02-16:15 ET: no marks, PnL or greeks"). A frame
    without ``health_gap`` (exposure) gets the gaps of its sessions from ``lake``."""
    parts: list[str] = []
    flagged_rows = 0
    if health.HEALTH_GAP in frame.columns:
        for day, (count, words) in gaps_by_session(frame, days).items():
            flagged_rows += count
            if words:
                parts.append(f"{day}: {count} rows flagged: {words}")
    elif lake is not None:
        for day in days:
            words = session_gap_words(lake, day)
            if words:
                parts.append(f"{day}: {words}")
    text = "; ".join(parts) if parts else "none: marks, PnL and greeks were flowing for every value used"
    return {"connection_gaps": text, "rows_in_connection_gaps": flagged_rows}
