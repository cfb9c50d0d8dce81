"""Schedules: finalise on sessions only (early closes at 13:30), maintenance and the 5-session single-run re-run."""

from __future__ import annotations

from datetime import date, datetime

from dagster import RunRequest, SkipReason, build_schedule_context

from v6_assets import sessions
from v6_assets.defs.schedules import (
    RANGE_END_TAG,
    RANGE_START_TAG,
    finalize_request,
    finalize_session,
    maintenance_request,
    nightly_rerun_last_sessions,
    rerun_request,
)

NY = sessions.NEW_YORK


def test_finalize_runs_at_1630_on_a_regular_session() -> None:
    request = finalize_request(datetime(2025, 3, 4, 16, 30, tzinfo=NY))
    assert isinstance(request, RunRequest)
    assert request.partition_key == "2025-03-04" and request.run_key == "finalize:2025-03-04"
    assert isinstance(finalize_request(datetime(2025, 3, 4, 13, 30, tzinfo=NY)), SkipReason)


def test_finalize_skips_holidays_and_weekends_with_a_reason() -> None:
    for at in (datetime(2025, 7, 4, 16, 30, tzinfo=NY), datetime(2025, 12, 25, 16, 30, tzinfo=NY)):
        skip = finalize_request(at)
        assert isinstance(skip, SkipReason) and "not an NYSE session" in (skip.skip_message or "")


def test_finalize_early_close_day_runs_at_1330_not_1630() -> None:
    day = date(2025, 11, 28)  # day after Thanksgiving: 13:00 close
    assert sessions.is_early_close(day)
    early = finalize_request(datetime(2025, 11, 28, 13, 30, tzinfo=NY))
    assert isinstance(early, RunRequest) and early.partition_key == "2025-11-28"
    assert isinstance(finalize_request(datetime(2025, 11, 28, 16, 30, tzinfo=NY)), SkipReason)


def test_finalize_schedule_evaluates_through_dagster() -> None:
    context = build_schedule_context(scheduled_execution_time=datetime(2025, 3, 5, 16, 30, tzinfo=NY))
    result = finalize_session(context)
    assert isinstance(result, RunRequest) and result.partition_key == "2025-03-05"


def test_maintenance_targets_the_last_finished_session_once() -> None:
    tuesday_night = maintenance_request(datetime(2025, 3, 5, 2, 0, tzinfo=NY))
    assert tuesday_night.run_config["ops"]["maintain_tables"]["config"]["session"] == "2025-03-04"
    saturday = maintenance_request(datetime(2025, 3, 8, 2, 0, tzinfo=NY))
    sunday = maintenance_request(datetime(2025, 3, 9, 2, 0, tzinfo=NY))
    # Friday's partitions, and the same run key, so the weekend does not redo it
    assert saturday.run_key == sunday.run_key == "maintenance:2025-03-07"


def test_rerun_is_one_single_run_range_of_the_last_five_sessions() -> None:
    request = rerun_request(datetime(2025, 7, 8, 3, 0, tzinfo=NY))
    # last finished: Mon 2025-07-07; five sessions back skips the July 4 holiday
    assert request.tags[RANGE_START_TAG] == "2025-06-30" and request.tags[RANGE_END_TAG] == "2025-07-07"
    assert request.partition_key is None
    assert sessions.sessions_between(date(2025, 6, 30), date(2025, 7, 7)) == [
        date(2025, 6, 30), date(2025, 7, 1), date(2025, 7, 2), date(2025, 7, 3), date(2025, 7, 7)
    ]  # fmt: skip
    via_dagster = nightly_rerun_last_sessions(
        build_schedule_context(scheduled_execution_time=datetime(2025, 7, 8, 3, 0, tzinfo=NY))
    )
    assert isinstance(via_dagster, RunRequest) and via_dagster.run_key == request.run_key
