"""Asset checks. Blocking where a wrong number would propagate downstream in the same run.

Each check evaluates the sessions of the run (one partition or a single-run range); run alone, outside a partitioned
run, it evaluates the newest session in the table.

- ``position_updates`` / ``greeks_updates``: ``no_duplicate_offsets`` (blocking: a duplicate would double-count in
  eod_positions) and ``no_sentinel_values`` (blocking: IB's UNSET_DOUBLE, infinities, NaN, -1/-2 greeks sentinels in
  columns that cannot be negative, empty account strings).
- ``eod_positions``: ``reconciles_with_stream`` (blocking): each EOD position equals the last position the stream
  reported for that (account, con_id) at or before the cut, every open stream position is present, keys are unique.
- ``daily_pnl``: ``matches_ib_daily_pnl`` (warning): |pnl - IB's daily PnL| within tolerance where both exist.
- ``exposure``: ``greeks_coverage`` (warning): the share of open positions with greeks is above a threshold.
"""

import os
from collections.abc import Iterator, Sequence
from datetime import date

import polars as pl
from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetChecksDefinition, AssetCheckSeverity, asset_check

from v6_assets import sessions
from v6_assets.contracts.unset import ib_unset_expr
from v6_assets.defs.assets import (
    EOD_TABLE,
    ROLLUP_DETAIL,
    daily_lake,
    daily_pnl,
    eod_positions,
    exposure,
    greeks_updates,
    position_updates,
    run_sessions,
    session_chunks,
)
from v6_assets.defs.metadata import markdown_table
from v6_assets.defs.resources import LakeResource
from v6_assets.lake import TRADE_DATE, Lake

# Greeks columns that cannot be negative: a -1/-2 there is IB's "not computed" sentinel stored as a number.
NON_NEGATIVE_GREEKS = ("gamma", "vega", "implied_vol", "und_price", "opt_price")


def pnl_tolerance() -> float:
    return float(os.environ.get("V6_PNL_TOLERANCE", "0.01"))


def coverage_threshold() -> float:
    return float(os.environ.get("V6_GREEKS_COVERAGE_MIN", "0.9"))


def check_sessions(context: AssetCheckExecutionContext, lake: Lake, table: str) -> list[date]:
    if context.has_partition_key or context.has_partition_key_range:
        return run_sessions(context)
    newest = lake.scan(table).select(pl.col(TRADE_DATE).max()).collect().item()
    return [newest] if newest is not None else []


def duplicate_offsets(scan: pl.LazyFrame, days: Sequence[date]) -> tuple[int, pl.DataFrame]:
    """(rows, duplicated (stream_id, spool_offset) with their count) over the sessions ``days``, chunk by chunk.

    Exact within a chunk of sessions (a group-by over its offsets). Across chunks, a duplicate needs two sessions of
    one stream whose offset ranges [min, max] overlap: offsets grow with arrival, so ranges are disjoint and nothing
    more is read; an overlap (a replayed spool) is re-checked exactly over the overlapping offsets only.
    """
    keys = ["stream_id", "spool_offset"]
    rows = 0
    found: list[pl.DataFrame] = []
    ranges: list[pl.DataFrame] = []
    for n, chunk in enumerate(session_chunks(days)):
        frame = scan.filter(pl.col(TRADE_DATE).is_in(chunk)).select(TRADE_DATE, *keys).collect()
        rows += frame.height
        found.append(frame.group_by(keys).len().filter(pl.col("len") > 1))
        ranges.append(
            frame.group_by("stream_id", TRADE_DATE)
            .agg(pl.col("spool_offset").min().alias("lo"), pl.col("spool_offset").max().alias("hi"))
            .with_columns(pl.lit(n).alias("chunk"))
        )
    if ranges:
        spans = pl.concat(ranges).sort("stream_id", "lo")
        # an interval overlaps an earlier one (by lo) of another chunk when it starts before their running max hi
        reach = pl.col("hi").cum_max().shift(1).over("stream_id")
        overlapping = spans.with_columns(reach.alias("_reach")).filter(pl.col("lo") <= pl.col("_reach"))
        for row in overlapping.iter_rows(named=True):
            wide = spans.filter(
                (pl.col("stream_id") == row["stream_id"]) & (pl.col("hi") >= row["lo"]) & (pl.col("lo") <= row["hi"])
            )
            if wide["chunk"].n_unique() < 2:
                continue  # overlap within one chunk: already checked exactly
            frame = (
                scan.filter(pl.col(TRADE_DATE).is_in(wide[TRADE_DATE].to_list()))
                .filter(
                    (pl.col("stream_id") == row["stream_id"]) & pl.col("spool_offset").is_between(row["lo"], row["hi"])
                )
                .select(*keys)
                .collect()
            )
            found.append(frame.group_by(keys).len().filter(pl.col("len") > 1))
    schema = pl.Schema({"stream_id": pl.String(), "spool_offset": pl.Int64(), "len": pl.UInt32()})
    dups = pl.concat([f.cast(schema) for f in found]) if found else pl.DataFrame(schema=schema)
    return rows, dups.group_by(keys).agg(pl.col("len").max()).sort(keys)


def sentinel_counts(scan: pl.LazyFrame, days: Sequence[date]) -> tuple[int, dict[str, int]]:
    """(rows, {column: values that are IB sentinels stored as numbers}) over ``days``, one chunk of sessions at a
    time; only the counts are collected."""
    schema = scan.collect_schema()
    exprs: dict[str, pl.Expr] = {}
    for c, t in schema.items():
        if t != pl.Float64:
            continue
        bad = ib_unset_expr(pl.col(c))
        if c in NON_NEGATIVE_GREEKS:
            bad = bad | (pl.col(c) < 0)
        exprs[c] = bad.fill_null(False).sum()
    if "account" in schema:
        exprs["account"] = (pl.col("account").str.strip_chars() == "").fill_null(True).sum()
    rows = 0
    counts: dict[str, int] = {}
    for chunk in session_chunks(days):
        selected = [pl.len().alias("_rows"), *[e.alias(c) for c, e in exprs.items()]]
        totals = scan.filter(pl.col(TRADE_DATE).is_in(chunk)).select(selected).collect().row(0, named=True)
        rows += int(totals.pop("_rows"))
        for c, n in totals.items():
            if n:
                counts[c] = counts.get(c, 0) + int(n)
    return rows, counts


def _stream_checks(spec_key: str, spec: object) -> list[AssetChecksDefinition]:
    @asset_check(
        asset=spec_key,
        name="no_duplicate_offsets",
        blocking=True,
        description=f"No (stream_id, spool_offset) appears twice in {spec_key} for the run's sessions (exactly-once).",
    )
    def no_duplicate_offsets(context: AssetCheckExecutionContext, lake: LakeResource) -> AssetCheckResult:
        lk = lake.lake()
        days = check_sessions(context, lk, spec_key)
        rows, dups = duplicate_offsets(lk.scan(spec_key), days)
        return AssetCheckResult(
            passed=dups.height == 0,
            metadata={
                "sessions": [d.isoformat() for d in days],
                "rows": rows,
                "duplicated_offsets": dups.height,
                "examples": markdown_table(dups.head(10), ["stream_id", "spool_offset", "len"]),
            },
        )

    @asset_check(
        asset=spec_key,
        name="no_sentinel_values",
        blocking=True,
        description=(
            f"No IB sentinel stored as a number in {spec_key}: UNSET_DOUBLE (1.7976931348623157e308), infinities, NaN, "
            "-1/-2 in greeks that cannot be negative, empty account strings. Unknown values must be null."
        ),
    )
    def no_sentinel_values(context: AssetCheckExecutionContext, lake: LakeResource) -> AssetCheckResult:
        lk = lake.lake()
        days = check_sessions(context, lk, spec_key)
        rows, counts = sentinel_counts(lk.scan(spec_key), days)
        return AssetCheckResult(
            passed=not counts,
            metadata={"sessions": [d.isoformat() for d in days], "rows": rows, "bad_values_by_column": counts},
        )

    return [no_duplicate_offsets, no_sentinel_values]


position_updates_checks = _stream_checks("position_updates", position_updates)
greeks_updates_checks = _stream_checks("greeks_updates", greeks_updates)


_STREAM_COLUMNS = ("account", "con_id", "position", "expiry", "received_at", "spool_offset", TRADE_DATE)
_KEYS = ["account", "con_id"]


def _fold_last(state: pl.DataFrame, rows: pl.DataFrame) -> pl.DataFrame:
    """The last row per (account, con_id) by (received_at, spool_offset) of ``state`` and ``rows`` together."""
    if not rows.height:
        return state
    both = pl.concat([state, rows.select(state.columns)]) if state.height else rows.select(state.columns)
    return both.sort("received_at", "spool_offset").group_by(_KEYS, maintain_order=True).last()


def stream_positions_by_session(lake: Lake, days: Sequence[date]) -> Iterator[tuple[date, pl.DataFrame]]:
    """Independent of the analytics: for each session of ``days`` (contiguous, oldest first), the last position the
    stream reported per (account, con_id) at or before its cut (``stream_position``, ``stream_expiry``).

    Incremental: the last-row state is folded session by session (the history before ``days`` too, in chunks), so
    the stream is read once, one chunk of sessions at a time, however long the range.
    """
    scan = lake.scan("position_updates")
    first = scan.filter(pl.col(TRADE_DATE) <= days[-1]).select(pl.col(TRADE_DATE).min()).collect().item()
    state = pl.DataFrame(schema={c: t for c, t in scan.collect_schema().items() if c in _STREAM_COLUMNS}).select(
        _STREAM_COLUMNS
    )
    # Rows stamped after their own partition's cut (inconsistent trade_date) wait here for the first cut after them.
    pending = state.clear()
    history = sessions.sessions_between(first, days[-1]) if isinstance(first, date) and first <= days[-1] else []
    wanted = set(days)
    for chunk in session_chunks([d for d in history if d < days[0]] + list(days)):
        rows = scan.filter(pl.col(TRADE_DATE).is_in(chunk)).select(_STREAM_COLUMNS).collect()
        by_day = rows.partition_by(TRADE_DATE, as_dict=True, maintain_order=False)
        for day in chunk:
            cut = sessions.eod_cut(day)
            today = pending.vstack(by_day.get((day,), state.clear()).select(state.columns))
            state = _fold_last(state, today.filter(pl.col("received_at") <= cut))
            pending = today.filter(pl.col("received_at") > cut)
            if day in wanted:
                yield (
                    day,
                    state.select(
                        *_KEYS, pl.col("position").alias("stream_position"), pl.col("expiry").alias("stream_expiry")
                    ),
                )


def reconcile_session(day: date, stream: pl.DataFrame, eod: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """(problems: trade_date, account, con_id, problem; keys compared) of one session's EOD against the stream."""
    dup = eod.group_by(_KEYS).len().filter(pl.col("len") > 1).select(*_KEYS, pl.lit("duplicate").alias("problem"))
    joined = stream.join(eod.select(*_KEYS, "position", "is_expired"), on=_KEYS, how="full", coalesce=True)
    stream_pos, eod_pos = pl.col("stream_position"), pl.col("position")
    # absent from the EOD: fine when flat, or an option that expired before this session
    open_in_stream = stream_pos.is_not_null() & (stream_pos != 0.0)
    expired_before = pl.col("stream_expiry").is_not_null() & (pl.col("stream_expiry") < day)
    expired = pl.col("is_expired").fill_null(False)
    problem = (
        pl.when(eod_pos.is_null() & open_in_stream & ~expired_before)
        .then(pl.format("open in stream ({}) but missing from EOD", stream_pos))
        .when(eod_pos.is_not_null() & stream_pos.is_null())
        .then(pl.format("in EOD ({}) but never reported by the stream", eod_pos))
        .when(eod_pos.is_not_null() & expired & (eod_pos != 0.0))
        .then(pl.format("expired but EOD position {}", eod_pos))
        .when(eod_pos.is_not_null() & ~expired & ((eod_pos - stream_pos).abs() > 1e-9))
        .then(pl.format("EOD {} != stream {}", eod_pos, stream_pos))
    )
    mismatches = joined.select(*_KEYS, problem.alias("problem")).filter(pl.col("problem").is_not_null())
    return (
        pl.concat([dup, mismatches])
        .with_columns(pl.lit(day).alias(TRADE_DATE))
        .select(TRADE_DATE, "account", "con_id", "problem"),
        joined.height,
    )


@asset_check(
    asset=eod_positions,
    name="reconciles_with_stream",
    blocking=True,
    description=(
        "Every eod_positions row equals the last position the stream reported for its (account, con_id) at or before "
        "the cut (0 for an expired option), every position the stream shows open at the cut is present, and "
        "(account, con_id) is unique per session."
    ),
)
def eod_reconciles_with_stream(context: AssetCheckExecutionContext, lake: LakeResource) -> AssetCheckResult:
    lk = daily_lake(lake)
    days = check_sessions(context, lk, EOD_TABLE.name)
    problem_schema = pl.Schema(
        {
            "trade_date": pl.Date(),
            "account": pl.String(),
            "con_id": pl.Int64(),
            "problem": pl.String(),
        }
    )
    found: list[pl.DataFrame] = []
    checked = 0
    if days:
        # the EOD just written, only the compared columns (positions x sessions: small)
        eod_all = (
            lk.scan(EOD_TABLE)
            .filter(pl.col(TRADE_DATE).is_in(days))
            .select(TRADE_DATE, *_KEYS, "position", "is_expired")
            .collect()
        )
        eod_by_day = eod_all.partition_by(TRADE_DATE, as_dict=True)
        empty_eod = eod_all.clear()
        for day, stream in stream_positions_by_session(lk, days):
            problems, keys = reconcile_session(day, stream, eod_by_day.get((day,), empty_eod))
            checked += keys
            if problems.height:
                found.append(problems.cast(problem_schema))
    frame = pl.concat(found) if found else pl.DataFrame(schema=problem_schema)
    return AssetCheckResult(
        passed=frame.height == 0,
        metadata={
            "sessions": [d.isoformat() for d in days],
            "keys_checked": checked,
            "mismatches": frame.height,
            "examples": markdown_table(frame.head(20), list(problem_schema)),
        },
    )


@asset_check(
    asset=daily_pnl,
    name="matches_ib_daily_pnl",
    blocking=False,
    description=(
        "Where IB's own daily PnL (reqPnLSingle) exists, |pnl - ib_daily_pnl| <= V6_PNL_TOLERANCE (default 0.01) "
        "for every position. IB resets its figure on its own schedule, so a failure is a warning to investigate."
    ),
)
def pnl_matches_ib(context: AssetCheckExecutionContext, lake: LakeResource) -> AssetCheckResult:
    lk = daily_lake(lake)
    days = check_sessions(context, lk, "daily_pnl")
    tolerance = pnl_tolerance()
    frame = lk.read_sessions("daily_pnl", days)
    both = frame.filter(pl.col("pnl").is_not_null() & pl.col("ib_daily_pnl").is_not_null())
    off = both.filter((pl.col("pnl") - pl.col("ib_daily_pnl")).abs() > tolerance)
    worst = both.select((pl.col("pnl") - pl.col("ib_daily_pnl")).abs().max()).item() if both.height else None
    return AssetCheckResult(
        passed=off.height == 0,
        severity=AssetCheckSeverity.WARN,
        metadata={
            "sessions": [d.isoformat() for d in days],
            "tolerance": tolerance,
            "compared_positions": both.height,
            "outside_tolerance": off.height,
            "max_abs_difference": float(worst) if worst is not None else None,
            "examples": markdown_table(
                off.sort((pl.col("pnl") - pl.col("ib_daily_pnl")).abs(), descending=True).head(10),
                ["trade_date", "account", "con_id", "symbol", "pnl", "ib_daily_pnl", "pnl_minus_ib", "realized_source"],
            ),
        },
    )


@asset_check(
    asset=exposure,
    name="greeks_coverage",
    blocking=False,
    description=(
        "The share of open positions with known greeks is at least V6_GREEKS_COVERAGE_MIN (default 0.9) in every "
        "session: exposure sums cover known greeks only."
    ),
)
def exposure_greeks_coverage(context: AssetCheckExecutionContext, lake: LakeResource) -> AssetCheckResult:
    lk = daily_lake(lake)
    days = check_sessions(context, lk, "exposure")
    threshold = coverage_threshold()
    frame = lk.read_sessions("exposure", days).filter(pl.col("rollup") == ROLLUP_DETAIL)
    per_session = frame.group_by(TRADE_DATE).agg(
        pl.col("positions").sum().alias("positions"), pl.col("missing_greeks_positions").sum().alias("missing")
    )
    coverage = {
        row[TRADE_DATE].isoformat(): (1.0 - row["missing"] / row["positions"]) if row["positions"] else 1.0
        for row in per_session.iter_rows(named=True)
    }
    low = {d: c for d, c in coverage.items() if c < threshold}
    return AssetCheckResult(
        passed=not low,
        severity=AssetCheckSeverity.WARN,
        metadata={"threshold": threshold, "coverage_by_session": coverage, "below_threshold": low},
    )


def all_checks() -> Sequence[AssetChecksDefinition]:
    return [
        *position_updates_checks,
        *greeks_updates_checks,
        eod_reconciles_with_stream,
        pnl_matches_ib,
        exposure_greeks_coverage,
    ]
