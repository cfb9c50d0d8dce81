"""The stream's health as an operator needs it, read from files alone (no Dagster, no IB connection): the status
file the streamer rewrites, the connection lease, the spool, and the last Delta commit of each table.

``stream_report`` returns the facts and ``problems``: an empty list means healthy (``v6 status`` exits 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from v6_assets.contracts.health import describe_state
from v6_assets.contracts.tables import STREAM_HEALTH, TABLES
from v6_assets.ib.lease import ConnectionLease
from v6_assets.ib.settings import StreamerSettings
from v6_assets.ib.spool import Spool, SpoolError
from v6_assets.ib.status_file import STATUS_WRITE_INTERVAL_S, read_status
from v6_assets.lake import Lake

# The status file is rewritten every 5 s: three missed writes mean no process is streaming.
STATUS_STALE_AFTER_S = 3 * STATUS_WRITE_INTERVAL_S
# Spooled events the sensor has not moved to Delta after this long: ingestion is stuck.
SPOOL_LAG_LIMIT_S = 120.0


@dataclass
class StreamReport:
    stream_id: str
    checked_at: datetime
    status: dict[str, Any] | None = None
    status_age_s: float | None = None
    lease: dict[str, Any] | None = None
    spool: dict[str, Any] = field(default_factory=dict)
    last_commits: dict[str, str | None] = field(default_factory=dict)
    health_24h: list[str] = field(default_factory=list)  # the stream_health intervals of the last 24 h, in words
    problems: list[str] = field(default_factory=list)
    gateway: str = ""  # its name in V6_IB_GATEWAYS ("" for the one gateway of V6_IB_HOST...)

    @property
    def healthy(self) -> bool:
        return not self.problems

    def as_json(self) -> dict[str, Any]:
        return {
            **({"gateway": self.gateway} if self.gateway else {}),
            "stream_id": self.stream_id,
            "checked_at": self.checked_at.isoformat(),
            "healthy": self.healthy,
            "problems": self.problems,
            "status_age_s": self.status_age_s,
            "status": self.status,
            "lease": self.lease,
            "spool": self.spool,
            "last_commits": self.last_commits,
            "stream_health_24h": self.health_24h,
        }


def _lease(settings: StreamerSettings) -> dict[str, Any] | None:
    """Who holds the connection lease (pid, host, since), or None when nobody does."""
    holder = ConnectionLease(settings.locks_dir, settings.host, settings.port, settings.client_id).holder()
    return None if holder is None else {"pid": holder.pid, "host": holder.host, "acquired_at": holder.acquired_at}


def _spool(path: Path, now: datetime) -> tuple[dict[str, Any], list[str]]:
    if not path.exists():
        return {"path": path.name, "exists": False}, []
    try:
        with Spool(path) as spool:
            acked = spool.acked_offset()
            last = spool.last_offset()
            depth = spool.depth()
            fenced = spool.fenced()
            oldest = spool.read(acked, 1)
    except SpoolError as exc:
        return {"path": path.name, "exists": True, "error": str(exc)}, [f"spool unreadable: {exc}"]
    info: dict[str, Any] = {"path": path.name, "exists": True, "depth": depth, "acked": acked, "last_offset": last}
    problems: list[str] = []
    if fenced:
        info["fenced"] = fenced
        problems.append(f"spool fenced: {fenced} (python -m v6_assets.pipeline.recover_spool)")
    if oldest:
        lag = (now - oldest[0].event.received_at).total_seconds()
        info["lag_s"] = round(lag, 1)
        if lag > SPOOL_LAG_LIMIT_S:
            problems.append(f"ingestion lagging: the oldest spooled update is {lag:.0f} s old ({depth} waiting)")
    return info, problems


def _last_commits(lake: Lake) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in TABLES:
        table = lake.open(name)
        if table is None:
            out[name] = None
            continue
        history = table.history(1)
        stamp = history[0].get("timestamp") if history else None
        out[name] = datetime.fromtimestamp(stamp / 1000, tz=UTC).isoformat(timespec="seconds") if stamp else None
    return out


def _health_24h(lake: Lake, stream_id: str, now: datetime) -> list[str]:
    """The stream's connection states of the last 24 hours in words, oldest first (``stream_health``: an interval is
    written when it begins and again when it ends; the latest row of each wins)."""
    if not lake.exists(STREAM_HEALTH.name):
        return []
    since = now - timedelta(hours=24)
    rows = (
        lake.scan(STREAM_HEALTH.name)
        .filter(
            (pl.col("stream_id") == stream_id)
            & (pl.col("ended_at").is_null() | (pl.col("ended_at") >= since))
            & (pl.col("started_at") <= now)
        )
        .sort("received_at", "spool_offset")
        .group_by("state", "started_at")
        .last()
        .sort("started_at")
        .collect()
    )
    return [describe_state(r["state"], r["started_at"], r["ended_at"]) for r in rows.iter_rows(named=True)]


def stream_report(settings: StreamerSettings, lake: Lake | None, now: datetime) -> StreamReport:
    report = StreamReport(stream_id=settings.stream_id, checked_at=now, gateway=settings.gateway)
    try:
        report.status = read_status(settings.status_path)
    except ValueError as exc:
        report.problems.append(str(exc))
    if report.status is None and not report.problems:
        report.problems.append(f"no streamer has written a status for {settings.stream_id} (is the code server up?)")
    elif report.status is not None:
        written = datetime.fromisoformat(report.status["written_at"])
        report.status_age_s = round((now - written).total_seconds(), 1)
        conn = report.status.get("connection") or {}
        if not report.status.get("running"):
            report.problems.append("the streamer is stopped")
        elif report.status_age_s > STATUS_STALE_AFTER_S:
            report.problems.append(
                f"status not rewritten for {report.status_age_s:.0f} s: the streaming process is gone or hung"
            )
        elif not conn.get("lease_held"):
            report.problems.append("this process waits for the connection lease (another process streams)")
        elif not conn.get("connected"):
            report.problems.append(f"disconnected (circuit {conn.get('circuit_state')}): {conn.get('last_error')}")
        elif conn.get("health_state") not in (None, "connected"):
            # the socket is up but nothing flows (IB's reset, a farm down, a competing session)
            report.problems.append(conn.get("health") or str(conn.get("health_state")))
        spool_status = report.status.get("spool") or {}
        if spool_status.get("error"):
            report.problems.append(f"spool: {spool_status['error']}")
    report.lease = _lease(settings)
    spool_info, spool_problems = _spool(settings.spool_path, now)
    report.spool = spool_info
    report.problems.extend(spool_problems)
    if lake is not None:
        report.last_commits = _last_commits(lake)
        report.health_24h = _health_24h(lake, settings.stream_id, now)
    return report
