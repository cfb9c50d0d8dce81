"""make demo computes the seeded sessions before the current one (the sensor's first refresh computes that one)."""

from __future__ import annotations

from datetime import UTC, datetime

from v6_assets.history_seed import SeedResult, history_sessions
from v6_assets.sessions import NEW_YORK


def _seed(days: list[str]) -> SeedResult:
    return SeedResult(
        stream_id="s",
        rows_written=len(days),
        rows_per_session=dict.fromkeys(days, 1),
        rows_per_table_session={},
        sessions_closed=[],
        caught_up_at=datetime(2026, 11, 17, tzinfo=UTC),
        duration_s=1.0,
    )


def test_history_is_every_seeded_session_before_the_current_one_oldest_first() -> None:
    seeded = ["2026-11-17", "2026-11-13", "2026-11-16", "2026-11-18"]
    # 03:00 ET on Wednesday 18th: the 18th has not opened; Friday 13th .. Tuesday 17th are history
    at_3am = datetime(2026, 11, 18, 3, 0, tzinfo=NEW_YORK)
    assert history_sessions(_seed(seeded), at_3am) == ["2026-11-13", "2026-11-16", "2026-11-17"]
    # after the 18th's cut the current session is the 19th: the 18th is history too
    evening = datetime(2026, 11, 18, 17, 0, tzinfo=NEW_YORK)
    assert history_sessions(_seed(seeded), evening) == ["2026-11-13", "2026-11-16", "2026-11-17", "2026-11-18"]
    assert history_sessions(_seed([]), at_3am) == []
