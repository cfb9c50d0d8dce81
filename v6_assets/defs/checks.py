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
from collections.abc import Sequence
from datetime import date

import polars as pl
from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetChecksDefinition, AssetCheckSeverity, asset_check

from v6_assets import sessions
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
)
from v6_assets.defs.metadata import markdown_table
from v6_assets.defs.resources import LakeResource
from v6_assets.lake import IB_UNSET_DOUBLE, TRADE_DATE, Lake

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
        frame = lk.read_sessions(spec_key, days).select("stream_id", "spool_offset")
        dups = frame.group_by("stream_id", "spool_offset").len().filter(pl.col("len") > 1)
        return AssetCheckResult(
            passed=dups.height == 0,
            metadata={
                "sessions": [d.isoformat() for d in days],
                "rows": frame.height,
                "duplicated_offsets": dups.height,
                "examples": markdown_table(dups.sort("spool_offset").head(10), ["stream_id", "spool_offset", "len"]),
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
        frame = lk.read_sessions(spec_key, days)
        float_cols = [c for c, t in frame.schema.items() if t == pl.Float64]
        counts: dict[str, int] = {}
        for c in float_cols:
            bad = pl.col(c).is_nan() | pl.col(c).is_infinite() | (pl.col(c).abs() >= IB_UNSET_DOUBLE / 2)
            if c in NON_NEGATIVE_GREEKS:
                bad = bad | (pl.col(c) < 0)
            n = int(frame.select(bad.fill_null(False).sum()).item()) if frame.height else 0
            if n:
                counts[c] = n
        if "account" in frame.columns and frame.height:
            n = int(frame.select((pl.col("account").str.strip_chars() == "").fill_null(True).sum()).item())
            if n:
                counts["account"] = n
        return AssetCheckResult(
            passed=not counts,
            metadata={"sessions": [d.isoformat() for d in days], "rows": frame.height, "bad_values_by_column": counts},
        )

    return [no_duplicate_offsets, no_sentinel_values]


position_updates_checks = _stream_checks("position_updates", position_updates)
greeks_updates_checks = _stream_checks("greeks_updates", greeks_updates)


def last_stream_positions(lake: Lake, day: date) -> pl.DataFrame:
    """Independent of the analytics: the last reported position per (account, con_id) at or before ``day``'s cut."""
    cut = sessions.eod_cut(day)
    return (
        lake.scan("position_updates")
        .filter(pl.col(TRADE_DATE) <= day)
        .filter(pl.col("received_at") <= cut)
        .sort("received_at", "spool_offset")
        .group_by("account", "con_id")
        .agg(pl.col("position").last().alias("stream_position"), pl.col("expiry").last().alias("stream_expiry"))
        .collect()
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
    problems: list[dict[str, object]] = []
    checked = 0
    for day in days:
        eod = lk.read_sessions(EOD_TABLE, [day])
        dup = eod.group_by("account", "con_id").len().filter(pl.col("len") > 1)
        for row in dup.iter_rows(named=True):
            problems.append(
                {"trade_date": day, "account": row["account"], "con_id": row["con_id"], "problem": "duplicate"}
            )
        stream = last_stream_positions(lk, day)
        eod_keys = eod.select("account", "con_id", "position", "is_expired")
        joined = stream.join(eod_keys, on=["account", "con_id"], how="full", coalesce=True)
        checked += joined.height
        for row in joined.iter_rows(named=True):
            stream_pos, eod_pos = row["stream_position"], row["position"]
            if eod_pos is None:
                # absent from the EOD: fine when flat, or an option that expired before this session
                if stream_pos not in (None, 0.0) and not (
                    row["stream_expiry"] is not None and row["stream_expiry"] < day
                ):
                    problems.append(
                        {**_key(day, row), "problem": f"open in stream ({stream_pos}) but missing from EOD"}
                    )
            elif stream_pos is None:
                problems.append({**_key(day, row), "problem": f"in EOD ({eod_pos}) but never reported by the stream"})
            elif row["is_expired"]:
                if eod_pos != 0.0:
                    problems.append({**_key(day, row), "problem": f"expired but EOD position {eod_pos}"})
            elif abs(eod_pos - stream_pos) > 1e-9:
                problems.append({**_key(day, row), "problem": f"EOD {eod_pos} != stream {stream_pos}"})
    problem_schema = {"trade_date": pl.Date, "account": pl.String, "con_id": pl.Int64, "problem": pl.String}
    frame = pl.DataFrame(problems, schema=problem_schema)
    return AssetCheckResult(
        passed=not problems,
        metadata={
            "sessions": [d.isoformat() for d in days],
            "keys_checked": checked,
            "mismatches": len(problems),
            "examples": markdown_table(frame.head(20), list(problem_schema)),
        },
    )


def _key(day: date, row: dict[str, object]) -> dict[str, object]:
    return {"trade_date": day, "account": row["account"], "con_id": row["con_id"]}


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
