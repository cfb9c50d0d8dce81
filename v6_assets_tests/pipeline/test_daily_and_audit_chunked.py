"""Range runs chunk by chunk: the EOD carried from chunk to chunk equals the one-shot computation, and the checks that
read the stream per chunk of sessions still find duplicates (also across chunks), sentinels and EOD mismatches."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from v6_assets import analytics, sessions
from v6_assets.contracts.tables import ROLLUP_COLUMN, ROLLUP_DETAIL
from v6_assets.lake import Lake
from v6_assets.pipeline import audit, daily
from v6_assets.pipeline.audit import duplicate_offsets, reconcile_session, sentinel_counts, stream_positions_by_session
from v6_assets.pipeline.daily import derived_eod, eod_chunks, session_chunks
from v6_assets_tests.pyenv import set_env

DAYS = sessions.sessions_between(date(2025, 1, 2), date(2025, 1, 10))  # 6 sessions (Jan 9: market closed)
ROWS, POSITIONS = 600, 30


@pytest.fixture
def lake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Lake:
    set_env(monkeypatch, "V6_SESSIONS_PER_CHUNK", "2")
    lk = Lake.at(str(tmp_path / "lake"))
    # the same book every session (one seed), as the stream of one account would be
    frames = [analytics.synthetic_updates(ROWS, POSITIONS, d, seed=3) for d in DAYS]
    updates = pl.concat([f.updates for f in frames])
    greeks = pl.concat([f.greeks for f in frames])
    updates = updates.with_columns(pl.int_range(1, updates.height + 1).alias("spool_offset"))
    greeks = greeks.with_columns(
        pl.int_range(updates.height + 1, updates.height + greeks.height + 1).alias("spool_offset")
    )
    lk.overwrite_sessions("position_updates", updates, DAYS)
    lk.overwrite_sessions("greeks_updates", greeks, DAYS)
    return lk


def test_session_chunks_cover_the_range_in_order() -> None:
    assert session_chunks(DAYS, 4) == [DAYS[:4], DAYS[4:]]
    assert [d for c in session_chunks(DAYS, 1) for d in c] == DAYS


def test_chunked_eod_equals_the_one_shot_computation(lake: Lake) -> None:
    whole = analytics.eod_positions(lake.scan("position_updates"), lake.scan("greeks_updates"), DAYS)
    chunked = pl.concat(list(eod_chunks(lake, DAYS, None)))
    assert chunked["trade_date"].n_unique() == len(DAYS)
    assert_frame_equal(whole, chunked, check_exact=False, rel_tol=1e-9, abs_tol=1e-9)
    # a range starting mid-history with no stored previous EOD derives it chunk by chunk
    previous = derived_eod(lake, DAYS[2])
    assert previous is not None
    assert_frame_equal(previous, whole.filter(pl.col("trade_date") == DAYS[2]), check_exact=False, rel_tol=1e-9)
    rest = pl.concat(list(eod_chunks(lake, DAYS[3:], previous)))
    assert_frame_equal(rest, whole.filter(pl.col("trade_date") >= DAYS[3]), check_exact=False, rel_tol=1e-9)


def test_duplicates_are_found_within_a_chunk_and_across_chunks(lake: Lake) -> None:
    scan = lake.scan("position_updates")
    rows, dups = duplicate_offsets(scan, DAYS)
    assert (rows, dups.height) == (ROWS * len(DAYS), 0)
    first = lake.read_sessions("position_updates", [DAYS[0]])
    last = lake.read_sessions("position_updates", [DAYS[-1]])
    # a spool offset written again in the last session (another chunk: a replayed spool re-stamped) and one written
    # twice in the first session
    replayed = first.head(1).with_columns(
        pl.lit(DAYS[-1]).alias("trade_date"), pl.lit(last["received_at"][0]).alias("received_at")
    )
    lake.overwrite_sessions("position_updates", pl.concat([last, replayed]), [DAYS[-1]])
    lake.overwrite_sessions("position_updates", pl.concat([first, first.slice(5, 1)]), [DAYS[0]])
    rows, dups = duplicate_offsets(lake.scan("position_updates"), DAYS)
    assert rows == ROWS * len(DAYS) + 2
    offsets = first["spool_offset"]
    assert dups.select("spool_offset", "len").rows() == [(offsets[0], 2), (offsets[5], 2)]


def test_sentinels_are_counted_over_all_chunks(lake: Lake) -> None:
    greeks_rows = lake.read_sessions("greeks_updates", DAYS).height
    assert sentinel_counts(lake.scan("greeks_updates"), DAYS) == (greeks_rows, {})
    last = lake.read_sessions("greeks_updates", [DAYS[-1]])
    # IB's "not computed" -2 stored as a gamma (the lake itself refuses infinities and UNSET_DOUBLE)
    bad = last.with_columns(pl.when(pl.int_range(pl.len()) < 3).then(-2.0).otherwise(pl.col("gamma")).alias("gamma"))
    lake.overwrite_sessions("greeks_updates", bad, [DAYS[-1]])
    assert sentinel_counts(lake.scan("greeks_updates"), DAYS) == (greeks_rows, {"gamma": 3})


def test_reconcile_folds_the_stream_incrementally_and_finds_a_wrong_position(lake: Lake) -> None:
    eod = pl.concat(list(eod_chunks(lake, DAYS, None)))
    checked = DAYS[3:]  # the history before the range is folded too
    seen = []
    for day, stream in stream_positions_by_session(lake, checked):
        seen.append(day)
        # independent reference: last reported position per key over the whole history up to the cut
        reference = (
            lake.scan("position_updates")
            .filter(pl.col("received_at") <= sessions.eod_cut(day))
            .sort("received_at", "spool_offset")
            .group_by("account", "con_id")
            .agg(pl.col("position").last().alias("stream_position"))
            .collect()
        )
        got = stream.select("account", "con_id", "stream_position")
        assert_frame_equal(got.sort("account", "con_id"), reference.sort("account", "con_id"))
        problems, keys = reconcile_session(day, stream, eod.filter(pl.col("trade_date") == day))
        assert problems.height == 0 and keys == reference.height
        wrong = eod.filter(pl.col("trade_date") == day).with_columns(
            pl.when(pl.int_range(pl.len()) == 0).then(pl.col("position") + 1).otherwise(pl.col("position"))
        )
        problems, _ = reconcile_session(day, stream, wrong)
        assert problems["problem"].to_list() and "!= stream" in problems["problem"][0], problems
        missing = eod.filter(pl.col("trade_date") == day).slice(1)
        problems, _ = reconcile_session(day, stream, missing)
        assert problems.height == 1 and "missing from EOD" in problems["problem"][0]
    assert seen == checked


def test_the_daily_refresh_writes_what_the_analytics_compute_and_reconciles(lake: Lake) -> None:
    """The Dagster-free daily pipeline end to end: eod_positions, daily_pnl and exposure written for a range, the
    audits pass on what was written."""
    run = daily.refresh_eod_positions(lake, DAYS[1:])
    assert "derived from the updates" in run.previous_eod and run.chunks == 3
    stored = lake.read_sessions("eod_positions", DAYS[1:])
    assert stored.height == run.frame.height and stored.height > 0
    pnl = daily.refresh_daily_pnl(lake, DAYS[1:])
    assert pnl.previous_known and pnl.written.rows_per_session
    exposure = daily.refresh_exposure(lake, DAYS[1:])
    detail = exposure.frame.filter(pl.col(ROLLUP_COLUMN) == ROLLUP_DETAIL).drop(ROLLUP_COLUMN)
    assert_frame_equal(detail, analytics.exposure(stored).cast(dict(detail.schema)), check_row_order=False)
    assert set(exposure.frame[ROLLUP_COLUMN]) == {"detail", "underlying", "account"}
    problems, keys = audit.eod_reconciliation(lake, DAYS[1:])
    assert problems.height == 0 and keys > 0
    assert set(audit.greeks_coverage(lake, DAYS[1:])) == {d.isoformat() for d in DAYS[1:]}
    assert audit.audited_sessions(lake, "daily_pnl", None) == [DAYS[-1]]


def test_the_two_checks_of_a_stream_share_one_audit_per_table_version(lake: Lake) -> None:
    first = audit.stream_audit(lake, "greeks_updates", DAYS)
    assert audit.stream_audit(lake, "greeks_updates", DAYS) is first  # the second check reads nothing again
    assert (first.rows, first.sentinels, first.duplicates.height) == (
        lake.read_sessions("greeks_updates", DAYS).height,
        {},
        0,
    )
    # a new commit is a new version: audited afresh, never the stale result
    last = lake.read_sessions("greeks_updates", [DAYS[-1]])
    bad = last.with_columns(pl.when(pl.int_range(pl.len()) < 2).then(-1.0).otherwise(pl.col("vega")).alias("vega"))
    lake.overwrite_sessions("greeks_updates", pl.concat([bad, bad.head(1)]), [DAYS[-1]])
    again = audit.stream_audit(lake, "greeks_updates", DAYS)
    assert again is not first
    assert (again.rows, again.sentinels, again.duplicates.height) == (first.rows + 1, {"vega": 3}, 1)
