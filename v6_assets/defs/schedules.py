"""Schedules (all RUNNING by default; times in America/New_York):

- ``finalize_session``: 16:30 on sessions (13:30 on early-close days) finalises session D: one run of the daily
  assets for D. Weekends/holidays and the other tick of the day skip with a reason.
- ``nightly_table_maintenance``: 02:00 every night: compact, checkpoint, log cleanup and vacuum of the last finished
  session's partitions (run_key per session, so a weekend does not redo Friday).
- ``nightly_rerun_last_sessions``: 03:00 every night: the last 5 finished sessions as ONE single-run backfill
  (a partition range via the ``dagster/asset_partition_range_start|end`` tags) to pick up late data.
"""

from datetime import datetime

from dagster import (
    DefaultScheduleStatus,
    RunRequest,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)

from v6_assets import sessions
from v6_assets.contracts.clock import utc_now
from v6_assets.defs.jobs import daily_assets_job, last_finished_session, table_maintenance

NEW_YORK_TZ = sessions.NEW_YORK.key  # Dagster takes the zone by name
RERUN_SESSIONS = 5
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def _scheduled_time(context: ScheduleEvaluationContext) -> datetime:
    scheduled = context.scheduled_execution_time
    if scheduled is None:  # evaluated by hand (tests, UI "test schedule")
        return utc_now().astimezone(sessions.NEW_YORK)
    return scheduled.astimezone(sessions.NEW_YORK)


def finalize_request(at: datetime) -> RunRequest | SkipReason:
    """What the finalize schedule does at ``at`` (New York time)."""
    day = at.astimezone(sessions.NEW_YORK).date()
    if not sessions.is_session(day):
        return SkipReason(f"{day} is not an NYSE session (weekend or holiday): nothing to finalise")
    early = sessions.is_early_close(day)
    if at.hour < 16 and not early:
        return SkipReason(f"{day} closes at 16:00 ET: finalised by the 16:30 tick")
    if at.hour >= 16 and early:
        return SkipReason(f"{day} was an early close: already finalised by the 13:30 tick")
    key = day.isoformat()
    return RunRequest(run_key=f"finalize:{key}", partition_key=key, tags={"v6/kind": "finalize"})


@schedule(
    name="finalize_session",
    cron_schedule=["30 13 * * 1-5", "30 16 * * 1-5"],
    execution_timezone=NEW_YORK_TZ,
    job=daily_assets_job,
    default_status=DefaultScheduleStatus.RUNNING,
    description="Finalise session D after its EOD cut: 16:30 ET, or 13:30 ET on early-close days; skips non-sessions.",
)
def finalize_session(context: ScheduleEvaluationContext) -> RunRequest | SkipReason:
    return finalize_request(_scheduled_time(context))


def maintenance_request(at: datetime) -> RunRequest:
    session = last_finished_session(at)
    key = session.isoformat()
    return RunRequest(
        run_key=f"maintenance:{key}",
        run_config={"ops": {"maintain_tables": {"config": {"session": key}}}},
        tags={"v6/kind": "maintenance", "v6/session": key},
    )


@schedule(
    name="nightly_table_maintenance",
    cron_schedule="0 2 * * *",
    execution_timezone=NEW_YORK_TZ,
    job=table_maintenance,
    default_status=DefaultScheduleStatus.RUNNING,
    description="02:00 ET: compact + checkpoint + log cleanup + vacuum for the last finished session's partitions.",
)
def nightly_table_maintenance(context: ScheduleEvaluationContext) -> RunRequest:
    return maintenance_request(_scheduled_time(context))


def rerun_request(at: datetime, count: int = RERUN_SESSIONS) -> RunRequest:
    last = last_finished_session(at)
    days = sessions.last_sessions(count, last)
    start, end = days[0].isoformat(), days[-1].isoformat()
    return RunRequest(
        run_key=f"rerun:{start}...{end}",
        tags={RANGE_START_TAG: start, RANGE_END_TAG: end, "v6/kind": "rerun"},
    )


@schedule(
    name="nightly_rerun_last_sessions",
    cron_schedule="0 3 * * *",
    execution_timezone=NEW_YORK_TZ,
    job=daily_assets_job,
    default_status=DefaultScheduleStatus.RUNNING,
    description=f"03:00 ET: recompute the last {RERUN_SESSIONS} finished sessions as one single-run backfill.",
)
def nightly_rerun_last_sessions(context: ScheduleEvaluationContext) -> RunRequest:
    return rerun_request(_scheduled_time(context))


ALL_SCHEDULES = [finalize_session, nightly_table_maintenance, nightly_rerun_last_sessions]
