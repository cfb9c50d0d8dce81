"""``ib_position_stream``: the sensor that keeps the streamer running and moves its spool into Delta.

Each tick (default every 5 s, ``V6_SENSOR_INTERVAL_S``, rounded up to the daemon's 5 s loop: see
``daemon_minimum_interval``), in the long-lived code-server process:

1. start the process-wide streamer if it is not running (it connects only if this process wins the cross-process
   lease; otherwise it reports who holds it);
2. drain the spool into ``position_updates`` / ``greeks_updates`` in bounded batches within a time budget well inside
   the 60 s tick timeout (a backlog is caught up over several ticks), exactly once (``pipeline.ingest``);
3. report one ``AssetMaterialization`` per touched session of each table (rows, offsets, lag, connection status);
4. when new data arrived and the last refresh is at least ``V6_REFRESH_MINUTES`` (default 5) old, request a run
   refreshing ``eod_positions``, ``daily_pnl`` and ``exposure`` for the newest session with data.

With several gateways (``V6_IB_GATEWAYS``) steps 1-3 are done for each gateway in turn (``defs/gateway_drain.py``):
one that is down is named in the tick's text while the others keep draining.

Every ``V6_INTEGRITY_MINUTES`` (default 5) it also checks the lake (``pipeline.integrity``: data files referenced by
the Delta log exist, the stream's offsets are contiguous); a finding fails the tick, every tick, until repaired.

The cursor only throttles refreshes; what was ingested is read from the Delta log, so a UI "Preview tick" (which
runs this function for real but keeps no cursor) cannot break exactly-once.
"""

import json
import re
import time
from datetime import UTC, date, datetime
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetMaterialization,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from v6_assets import sessions
from v6_assets.contracts.clock import utc_now
from v6_assets.defs.gateway_drain import GatewayDrain, drain_gateways, raise_first_error, take_drain_locks
from v6_assets.defs.jobs import daily_assets_job
from v6_assets.defs.partitions import trading_day_partitions
from v6_assets.defs.resources import IBStreamResource, LakeResource, is_simulated
from v6_assets.defs.settings import DefsEnvironment
from v6_assets.defs.stream_checks import landed_check_evaluations
from v6_assets.ib.status import StreamerStatus
from v6_assets.lake import Lake
from v6_assets.pipeline.ingest import DrainLimits, DrainResult
from v6_assets.pipeline.integrity import LakeIntegrityError, check_lake

REFRESH_TAG = "v6/kind"
REFRESH_TAG_VALUE = "refresh"
REASON_TAG = "v6/why"


SENSOR_INTERVAL_S = DefsEnvironment.read().sensor_interval_s
# The sensor daemon wakes every 5 s (dagster/_daemon/sensor.py MIN_INTERVAL_LOOP_TIME, not configurable in
# dagster.yaml) and skips a sensor while now - its last tick's START < minimum_interval_seconds. That start is stamped
# by a worker thread a few ms after the wake-up, so with minimum_interval_seconds = 5 the next wake-up sees 4.99 s and
# skips: 10 s gaps at random. Ticks can only happen on wake-ups anyway, so the minimum interval is set half a loop
# below the wanted cadence (rounded up to whole loops): 5 s -> 3, 10 s -> 8; one tick per wake-up whatever the jitter.
DAEMON_LOOP_S = 5


def daemon_minimum_interval(interval_s: int, loop_s: int = DAEMON_LOOP_S) -> int:
    """``minimum_interval_seconds`` making the daemon tick every ``interval_s`` rounded up to whole daemon loops."""
    if interval_s < 1 or loop_s < 2:
        raise ValueError(f"interval {interval_s} s must be >= 1 and the daemon loop {loop_s} s >= 2")
    loops = -(-interval_s // loop_s)
    return min(interval_s, loops * loop_s - loop_s // 2)


# What one tick may drain (V6_SENSOR_BUDGET_S / _MAX_ROWS / _BATCH_ROWS): well inside the 60 s gRPC tick timeout.
TICK_LIMITS = DrainLimits.from_env()


def refresh_minutes() -> float:
    return DefsEnvironment.read().refresh_minutes


def integrity_minutes() -> float:
    return DefsEnvironment.read().integrity_minutes


# (lake uri, stream id) -> monotonic time of the last PASSED integrity check in this process. A failed check is not
# recorded: every tick checks again (and fails) until the lake is repaired.
_INTEGRITY_PASSED: dict[tuple[str, str], float] = {}


def _check_integrity_if_due(context: SensorEvaluationContext, lake: Lake, stream_id: str) -> None:
    key = (lake.uri, stream_id)
    last = _INTEGRITY_PASSED.get(key)
    if last is not None and time.monotonic() - last < integrity_minutes() * 60:
        return
    report = check_lake(lake, stream_id)
    if not report.ok:
        raise LakeIntegrityError(report.describe())
    context.log.info(report.describe())
    _INTEGRITY_PASSED[key] = time.monotonic()


def _status_metadata(status: StreamerStatus) -> dict[str, Any]:
    return {
        **({"gateway": status.gateway} if status.gateway else {}),
        "connection": status.describe(),
        "connected": status.connection.connected,
        "lease_held_here": status.connection.lease_held,
        "circuit": status.connection.circuit_state,
        "ib_connection_state": status.connection.health or status.connection.health_state,
    }


def _partition_exists(key: str) -> bool:
    return trading_day_partitions.has_partition_key(key)


def _materializations(result: DrainResult, status: StreamerStatus, simulated: bool) -> list[AssetMaterialization]:
    events = []
    lag = result.lag_s()
    for table in result.tables.values():
        for session, rows in sorted(table.rows_per_session.items()):
            key = session.isoformat()
            if not _partition_exists(key):
                continue  # outside the partitions (before V6_PARTITIONS_START): the rows are in Delta all the same
            events.append(
                AssetMaterialization(
                    asset_key=table.table,
                    partition=key,
                    description=f"{rows} rows appended by ib_position_stream" + (" (SIMULATED)" if simulated else ""),
                    metadata={
                        "rows": rows,
                        "batch_rows_all_sessions": table.rows_written,
                        "rows_skipped_already_committed": table.rows_skipped,
                        "min_offset": table.min_offset,
                        "max_offset": table.max_offset,
                        "txn_version": table.committed_version,
                        "delta_version": table.table_version,
                        "lag_s": round(lag, 3) if lag is not None else None,
                        "stream_id": result.stream_id,
                        "spool_backlog": result.backlog,
                        "simulated": simulated,
                        **_status_metadata(status),
                    },
                )
            )
    return events


# The cursor is the only text the UI shows in full for every tick (the skip reason hides behind a hover or a click,
# the status badge says "0 runs requested"): so it is a sentence, the tick's own explanation first, then the refresh
# throttle's state (an older JSON cursor is still read).
_CURSOR = re.compile(r"refresh requested for spool offset (\d+) at .*\(epoch ([0-9.]+)\)")


def cursor_text(offset: int, at: float, said: str = "") -> str:
    """``<what this tick did> | last refresh requested for spool offset 1234 at 2026-... UTC (epoch ...)``."""
    when = datetime.fromtimestamp(at, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if at else "- (none yet)"
    throttle = f"last refresh requested for spool offset {offset} at {when} (epoch {at:.3f})"
    return f"{said} | {throttle}" if said else throttle


def _read_cursor(raw: str | None) -> dict[str, Any]:
    if not raw:
        return {"refreshed_offset": 0, "refreshed_at": 0.0}
    found = _CURSOR.search(raw)
    if found:
        return {"refreshed_offset": int(found[1]), "refreshed_at": float(found[2])}
    try:
        data = json.loads(raw)
        return {"refreshed_offset": int(data["refreshed_offset"]), "refreshed_at": float(data["refreshed_at"])}
    except (ValueError, KeyError, TypeError):
        # A cursor from an older version or edited by hand: start the refresh throttle over (ingest is unaffected).
        return {"refreshed_offset": 0, "refreshed_at": 0.0}


def _refresh_session(touched: list[date], now: datetime) -> date:
    """The newest session with new data; with none this tick (a preview tick ingested it), the current session."""
    session = max(touched) if touched else sessions.current_session(now)
    return session


def _spool_trouble(status: StreamerStatus) -> str:
    """What the streamer's spool writes say right now ("" when they work)."""
    spool = status.spool
    if not spool.error:
        return ""
    kind = "spool full" if "full" in spool.error else "spool refuses writes"
    dropped = spool.dropped_greeks + spool.dropped_positions
    shed = (
        f", {dropped} shed ({spool.dropped_greeks} greeks, {spool.dropped_positions} positions; the state is "
        "resynchronised when it recovers)"
        if dropped
        else ""
    )
    return f"{kind}: {spool.pending} updates held in memory (at most {spool.max_held}){shed}: {spool.error}"


def refresh_reason(drained: list[tuple[GatewayDrain, DrainResult]], session: date, cursor: dict[str, Any]) -> str:
    """Why this tick requests a refresh, in words (the run request's ``v6/why`` tag)."""
    last = cursor["refreshed_at"]
    since = f"last refresh {time.time() - last:.0f} s ago" if last else "first refresh since the sensor started"
    rows = sum(r.rows_written for _, r in drained)
    touched = {day for _, r in drained for day in r.sessions}
    if len(drained) == 1 and not drained[0][0].settings.gateway:
        up_to = f"spool offset {drained[0][1].acked_offset}"
    else:
        up_to = "spool offsets " + ", ".join(f"{d.settings.gateway} {r.acked_offset}" for d, r in drained)
    return (
        f"ingested {rows} rows for {len(touched)} session(s); new data up to {up_to}; {since} "
        f"(every V6_REFRESH_MINUTES={refresh_minutes():g} min at most): refreshing {session}"
    )


def _health_gap(status: StreamerStatus) -> str | None:
    """The connection's gap in words while one goes on ("competing live session since 14:02 ET: no marks, ...")."""
    conn = status.connection
    return conn.health if conn.health and conn.health_state != "connected" else None


def _idle_reason(status: StreamerStatus, result: DrainResult) -> str:
    trouble = _spool_trouble(status)
    if trouble:
        return trouble
    conn = status.connection
    if status.running and not conn.lease_held:
        holder = conn.lease_holder
        who = f"pid {holder.pid} on {holder.host}" if holder else "another process"
        return f"stream held by {who}; no new updates in the shared spool (acked to offset {result.acked_offset})"
    if conn.circuit_open_until is not None:
        until = conn.circuit_open_until.astimezone(sessions.NEW_YORK).strftime("%H:%M:%S")
        return f"circuit open until {until} ET after repeated connection failures ({conn.last_error})"
    if not conn.connected:
        return f"IB not connected ({status.describe()}); no new updates"
    if conn.health and conn.health_state != "connected":
        # the socket is up but IB holds data back: say what and since when, first
        return f"{conn.health}; no new updates (spool acked to offset {result.acked_offset})"
    return f"no new updates (spool acked to offset {result.acked_offset}; {status.describe()})"


@sensor(
    name="ib_position_stream",
    job=daily_assets_job,
    minimum_interval_seconds=daemon_minimum_interval(SENSOR_INTERVAL_S),
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        "Keeps the read-only IB connection streaming (one per gateway with V6_IB_GATEWAYS; in the code-server process "
        "holding each one's lease), appends the "
        "spooled position and greeks updates to Delta exactly once (txn version = spool offset), reports a "
        "materialization per touched session, and requests a refresh of the day's eod_positions, daily_pnl and "
        "exposure at most every V6_REFRESH_MINUTES when new data arrived. Each tick's own text says what it did "
        "(skip reason, or the run's v6/why tag). It ticks on every sensor-daemon loop (every "
        f"{-(-SENSOR_INTERVAL_S // DAEMON_LOOP_S) * DAEMON_LOOP_S} s, V6_SENSOR_INTERVAL_S rounded up to the "
        f"daemon's {DAEMON_LOOP_S} s loop); the interval shown, {daemon_minimum_interval(SENSOR_INTERVAL_S)} s, is the "
        "minimum Dagster waits, set half a loop below so no loop is skipped."
    ),
)
def ib_position_stream(
    context: SensorEvaluationContext, ib_stream: IBStreamResource, lake: LakeResource
) -> SensorResult | SkipReason:
    started = time.monotonic()
    gateways = ib_stream.gateway_settings()
    locks = take_drain_locks(gateways)
    if locks is None:
        return SkipReason("another evaluation of this sensor is still draining the spool in this process")
    try:
        drains = drain_gateways(gateways, lake.lake(), TICK_LIMITS, started)
    finally:
        for lock in locks:
            lock.release()
    raise_first_error(drains)
    if len(drains) == 1 and drains[0].skip is not None:
        return SkipReason(drains[0].skip)
    drained = [(d, d.result) for d in drains if d.result is not None]
    for d, _ in drained:
        _check_integrity_if_due(context, lake.lake(), d.settings.stream_id)
    simulated = is_simulated()
    # the stream checks evaluated on the rows just appended, reported after the materializations they check
    events: list[AssetMaterialization | AssetCheckEvaluation] = [
        *(e for d, result in drained for e in _materializations(result, d.status, simulated)),
        *(e for _, result in drained for e in landed_check_evaluations(lake.lake(), result, _partition_exists)),
    ]
    results = [result for _, result in drained]
    # the refresh throttle's offset: the sum of the gateways' acked spool offsets (the one spool's offset for one)
    acked = sum(r.acked_offset for r in results)
    rows_written = sum(r.rows_written for r in results)
    touched = sorted({day for r in results for day in r.sessions})
    cursor = _read_cursor(context.cursor)
    now = utc_now()
    new_data = acked > cursor["refreshed_offset"]
    due = time.time() - cursor["refreshed_at"] >= refresh_minutes() * 60
    for d, result in drained:
        context.log.info(
            d.named("drained %d rows in %d batches (%s), acked to %d, backlog %d"),
            result.rows_read,
            result.batches,
            result.stopped_by,
            result.acked_offset,
            result.backlog,
        )
    fleet = _gateways_said(drains)
    if new_data and due:
        session = _refresh_session(touched, now)
        if _partition_exists(session.isoformat()):
            run = RunRequest(
                run_key=f"refresh:{session.isoformat()}:{acked}",
                partition_key=session.isoformat(),
                tags={
                    REFRESH_TAG: REFRESH_TAG_VALUE,
                    "v6/refresh_offset": str(acked),
                    # the tick's own explanation, shown with the requested run in the sensor's tick history
                    REASON_TAG: refresh_reason(drained, session, cursor),
                },
            )
            said = run.tags[REASON_TAG] + fleet
            new_cursor = cursor_text(acked, time.time(), said)
            return SensorResult(run_requests=[run], asset_events=events, cursor=new_cursor)
    if rows_written or events:
        wait = (
            ""
            if not new_data
            else f"; refresh due in {max(0.0, cursor['refreshed_at'] + refresh_minutes() * 60 - time.time()):.0f} s"
        )
        said = f"ingested {rows_written} rows for {len(touched)} session(s)"
        if len(drains) == 1:
            said += _ingest_notes(drains[0].status, results[0], wait)
        else:
            said += wait + fleet
        return SensorResult(asset_events=events, skip_reason=said, cursor=_same_throttle(cursor, said))
    said = _idle_reason(drains[0].status, results[0]) if len(drains) == 1 else f"no new updates{fleet}"
    return SensorResult(skip_reason=said, cursor=_same_throttle(cursor, said))


def _ingest_notes(status: StreamerStatus, result: DrainResult, wait: str = "") -> str:
    """After "ingested N rows ...": a backlog left for the next tick, ``wait`` (when the refresh is due), the
    spool's trouble, the connection's gap."""
    more = f"; {result.backlog} more spooled, continuing next tick" if result.stopped_by != "drained" else ""
    return (
        more
        + wait
        + (f"; {trouble}" if (trouble := _spool_trouble(status)) else "")
        + (f"; {gap}" if (gap := _health_gap(status)) else "")
    )


def _gateways_said(drains: list[GatewayDrain]) -> str:
    """With several gateways, what each did, each named ("" with one: its texts are the tick's own)."""
    if len(drains) == 1:
        return ""
    parts = []
    for d in drains:
        if d.result is None:
            parts.append(d.named(d.skip or str(d.error)))
        elif d.result.rows_written:
            parts.append(d.named(f"{d.result.rows_written} rows{_ingest_notes(d.status, d.result)}"))
        else:
            parts.append(d.named(_idle_reason(d.status, d.result)))
    return "".join(f"; {part}" for part in parts)


def _same_throttle(cursor: dict[str, Any], said: str) -> str:
    """The cursor of a tick that requested nothing: its explanation, the refresh throttle unchanged."""
    return cursor_text(cursor["refreshed_offset"], cursor["refreshed_at"], said)
