"""No green on nothing: a daily table is computed from the real eod_positions of its sessions or the run fails saying
what is missing; the previous EOD is "none" only before the stream started; audits that compared nothing while
positions exist do not pass."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest

from v6_assets import analytics, sessions
from v6_assets.lake import Lake
from v6_assets.pipeline import audit, daily

DAYS = sessions.sessions_between(date(2025, 1, 2), date(2025, 1, 8))  # 5 sessions


def _lake(tmp_path: Path, flat_first: bool = False) -> Lake:
    lk = Lake.at(str(tmp_path / "lake"))
    frames = [analytics.synthetic_updates(200, 10, d, seed=5) for d in DAYS]
    updates = pl.concat([f.updates for f in frames])
    if flat_first:  # the stream starts on DAYS[0] with everything closed, and says nothing more
        updates = updates.filter(pl.col("trade_date") == DAYS[0]).with_columns(pl.lit(0.0).alias("position"))
    greeks = pl.concat([f.greeks for f in frames]).filter(
        pl.col("trade_date").is_in(updates["trade_date"].unique().to_list())
    )
    updates = updates.with_columns(pl.int_range(1, updates.height + 1).alias("spool_offset"))
    greeks = greeks.with_columns(
        pl.int_range(updates.height + 1, updates.height + greeks.height + 1).alias("spool_offset")
    )
    lk.overwrite_sessions("position_updates", updates, DAYS)
    lk.overwrite_sessions("greeks_updates", greeks, DAYS)
    return lk


def test_daily_pnl_of_a_never_computed_eod_fails_saying_what_to_do(tmp_path: Path) -> None:
    lk = _lake(tmp_path)
    with pytest.raises(daily.MissingUpstreamError) as err:
        daily.refresh_daily_pnl(lk, DAYS[1:3], eod_computed=set())
    message = str(err.value)
    assert f"eod_positions for 2 sessions ({DAYS[1]}, {DAYS[2]}) was never computed: materialize them first" in message
    assert f"run eod_positions and daily_pnl together for {DAYS[1]}..{DAYS[2]}" in message
    with pytest.raises(daily.MissingUpstreamError) as one:
        daily.refresh_exposure(lk, DAYS[2:3], eod_computed={DAYS[1]})
    assert str(one.value) == (
        f"exposure cannot be computed: eod_positions for {DAYS[2]} was never computed: materialize it first (or run "
        f"eod_positions and exposure together for {DAYS[2]}). Nothing was written."
    )
    assert not lk.exists("daily_pnl") and not lk.exists("exposure"), "nothing is written"


def test_stored_rows_or_a_recorded_materialization_count_as_computed(tmp_path: Path) -> None:
    lk = _lake(tmp_path)
    daily.refresh_eod_positions(lk, DAYS[1:3])
    run = daily.refresh_daily_pnl(lk, DAYS[1:3], eod_computed=set())  # rows in the lake: computed
    assert run.frame.height > 0 and set(run.frame["trade_date"]) == set(DAYS[1:3])
    # a computed session that held nothing (recorded by Dagster, no rows) is computed: empty, not an error
    empty = daily.refresh_exposure(lk, DAYS[-1:], eod_computed={DAYS[-1]})
    assert empty.frame.height == 0


def test_previous_eod_is_none_only_before_the_stream_started(tmp_path: Path) -> None:
    lk = _lake(tmp_path)
    first = daily.refresh_daily_pnl(lk, DAYS[:1])
    assert not first.previous_known and "the stream had not started" in first.previous_eod[DAYS[0]]
    assert first.frame["is_baseline"].all()
    daily.refresh_eod_positions(lk, DAYS[:3])
    ranged = daily.refresh_daily_pnl(lk, DAYS[1:3])
    assert ranged.previous_known
    assert ranged.previous_eod == {
        DAYS[1]: f"stored eod_positions of {DAYS[0]}",
        DAYS[2]: f"eod_positions of {DAYS[1]} (this run)",
    }
    assert not ranged.frame["is_baseline"].any()
    _, origin = daily.previous_eod_with_origin(lk, DAYS[3])
    assert origin == f"stored eod_positions of {DAYS[2]}"


def test_a_flat_previous_session_is_a_known_state_not_a_baseline(tmp_path: Path) -> None:
    lk = _lake(tmp_path, flat_first=True)
    previous, origin = daily.previous_eod_with_origin(lk, DAYS[2])
    assert previous is not None and previous.height == 0
    assert origin == f"flat: no position held at the cut of {DAYS[1]}"
    run = daily.refresh_eod_positions(lk, DAYS[2:3])
    assert run.frame.height == 0 and run.previous_eod.startswith("flat")


def test_pnl_audit_that_compared_nothing_while_positions_exist_does_not_pass(tmp_path: Path) -> None:
    lk = _lake(tmp_path)
    daily.refresh_eod_positions(lk, DAYS[:2])
    daily.refresh_daily_pnl(lk, DAYS[1:2])
    frame = lk.read_sessions("daily_pnl", DAYS[1:2]).with_columns(pl.lit(None, dtype=pl.Float64).alias("ib_daily_pnl"))
    lk.overwrite_sessions("daily_pnl", frame, DAYS[1:2])
    comparison = audit.pnl_against_ib(lk, DAYS[1:2], 0.01)
    assert comparison.open_positions > 0 and comparison.compared.height == 0
    assert comparison.compared_nothing and not comparison.passed
    assert comparison.verdict().startswith(f"compared 0 positions while {comparison.open_positions} are open")
    # a session without any position: nothing to compare is said, and is not a failure
    nothing = audit.pnl_against_ib(lk, DAYS[-1:], 0.01)
    assert nothing.passed and nothing.verdict().startswith("no open position")


def test_greeks_coverage_of_nothing_is_not_a_pass(tmp_path: Path) -> None:
    lk = _lake(tmp_path)
    daily.refresh_eod_positions(lk, DAYS[:3])
    daily.refresh_exposure(lk, DAYS[1:2])
    found = audit.greeks_coverage_audit(lk, DAYS[1:3])
    assert found.coverage[DAYS[1]] is not None
    assert found.coverage[DAYS[2]] is None and found.not_measured() == [DAYS[2]]
    assert not found.passed(0.0)
    assert audit.greeks_coverage(lk, DAYS[-1:]) == {DAYS[-1].isoformat(): None}
    assert audit.greeks_coverage_audit(lk, DAYS[-1:]).passed(0.9)  # no position, nothing to cover: said, not failed
