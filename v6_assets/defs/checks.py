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

The audit logic is ``v6_assets.pipeline.audit``; this module declares the checks and their metadata.
"""

from collections.abc import Sequence
from datetime import date

from dagster import AssetCheckExecutionContext, AssetCheckResult, AssetChecksDefinition, AssetCheckSeverity, asset_check

from v6_assets.contracts.money import format_cents
from v6_assets.contracts.tables import DAILY_PNL, EOD_POSITIONS, EXPOSURE
from v6_assets.defs.assets import daily_pnl, eod_positions, exposure, greeks_updates, position_updates, run_sessions
from v6_assets.defs.metadata import markdown_table
from v6_assets.defs.resources import LakeResource
from v6_assets.defs.settings import DefsEnvironment
from v6_assets.lake import Lake
from v6_assets.pipeline import audit


def pnl_tolerance() -> float:
    return DefsEnvironment.read().pnl_tolerance


def coverage_threshold() -> float:
    return DefsEnvironment.read().greeks_coverage_min


def check_sessions(context: AssetCheckExecutionContext, lake: Lake, table: str) -> list[date]:
    partitioned = context.has_partition_key or context.has_partition_key_range
    return audit.audited_sessions(lake, table, run_sessions(context) if partitioned else None)


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
        found = audit.stream_audit(lk, spec_key, days)  # one read for both checks of this table
        rows, dups = found.rows, found.duplicates
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
        found = audit.stream_audit(lk, spec_key, days)
        rows, counts = found.rows, found.sentinels
        return AssetCheckResult(
            passed=not counts,
            metadata={"sessions": [d.isoformat() for d in days], "rows": rows, "bad_values_by_column": counts},
        )

    return [no_duplicate_offsets, no_sentinel_values]


position_updates_checks = _stream_checks("position_updates", position_updates)
greeks_updates_checks = _stream_checks("greeks_updates", greeks_updates)


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
    lk = lake.lake()
    days = check_sessions(context, lk, EOD_POSITIONS.name)
    frame, checked = audit.eod_reconciliation(lk, days)
    return AssetCheckResult(
        passed=frame.height == 0,
        metadata={
            "sessions": [d.isoformat() for d in days],
            "keys_checked": checked,
            "mismatches": frame.height,
            "examples": markdown_table(frame.head(20), list(audit.PROBLEM_SCHEMA)),
        },
    )


@asset_check(
    asset=daily_pnl,
    name="matches_ib_daily_pnl",
    blocking=False,
    description=(
        "Where IB's own daily PnL (reqPnLSingle) exists, pnl and ib_daily_pnl agree within V6_PNL_TOLERANCE (default "
        "0.01, plus float noise: the money rule of the README) "
        "for every position. IB resets its figure on its own schedule, so a failure is a warning to investigate."
    ),
)
def pnl_matches_ib(context: AssetCheckExecutionContext, lake: LakeResource) -> AssetCheckResult:
    lk = lake.lake()
    days = check_sessions(context, lk, DAILY_PNL.name)
    tolerance = pnl_tolerance()
    comparison = audit.pnl_against_ib(lk, days, tolerance)
    off = comparison.outside_tolerance
    return AssetCheckResult(
        passed=comparison.passed,
        severity=AssetCheckSeverity.WARN,
        description=comparison.verdict(),
        metadata={
            "sessions": [d.isoformat() for d in days],
            "verdict": comparison.verdict(),
            "tolerance": tolerance,
            "open_positions": comparison.open_positions,
            "compared_positions": comparison.compared.height,
            "outside_tolerance": off.height,
            "max_abs_difference": format_cents(comparison.max_abs_difference),
            "examples": markdown_table(
                off.head(10),
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
    lk = lake.lake()
    days = check_sessions(context, lk, EXPOSURE.name)
    threshold = coverage_threshold()
    found = audit.greeks_coverage_audit(lk, days)
    low, unmeasured = found.below(threshold), found.not_measured()
    if unmeasured:
        verdict = (
            f"no greeks coverage measured for {', '.join(d.isoformat() for d in unmeasured)} although eod_positions "
            "holds open positions: exposure has no rows for them (not computed?)"
        )
    elif low:
        verdict = f"coverage below {threshold:.0%} in {len(low)} session(s)"
    elif all(c is None for c in found.coverage.values()):
        verdict = "no open position in these sessions: nothing to cover"
    else:
        verdict = f"coverage at least {threshold:.0%} in every session with open positions"
    return AssetCheckResult(
        passed=found.passed(threshold),
        severity=AssetCheckSeverity.WARN,
        description=verdict,
        metadata={
            "verdict": verdict,
            "threshold": threshold,
            "coverage_by_session": {
                d.isoformat(): (f"{c:.1%}" if c is not None else "n/a (no open position)")
                for d, c in found.coverage.items()
            },
            "open_positions_by_session": {d.isoformat(): n for d, n in found.open_positions.items()},
            "below_threshold": {d.isoformat(): c for d, c in low.items()},
        },
    )


def all_checks() -> Sequence[AssetChecksDefinition]:
    return [
        *position_updates_checks,
        *greeks_updates_checks,
        eod_reconciles_with_stream,
        pnl_matches_ib,
        exposure_greeks_coverage,
    ]
