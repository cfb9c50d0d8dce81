"""The streamed tables' checks, evaluated where their data lands: in the sensor tick that appended the rows.

The sensor reports a materialization of ``position_updates`` / ``greeks_updates`` on every tick with data, and
Dagster shows a check as evaluated only against the latest materialization: checks run in a later job were stale
within seconds ("0 / 2 Passed"). So the tick that appends a batch also evaluates ``no_duplicate_offsets`` and
``no_sentinel_values`` (the same audits as the job's checks, ``v6_assets.defs.checks``) over the rows it appended,
and reports them right after the materialization. Only the batch's spool offsets are read (file statistics skip the
rest), so the cost follows the batch, not the day.

The evaluations carry no partition (the session is in their metadata): Dagster stores a runless evaluation under the
unique key (asset, check, run id "", partition), so a second runless evaluation of one partition fails the tick;
without a partition it is compared with the asset's latest materialization, which is what the UI shows.
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl
from dagster import AssetCheckEvaluation, AssetCheckSeverity, AssetKey

from v6_assets.lake import Lake
from v6_assets.pipeline import audit
from v6_assets.pipeline.ingest import DrainResult

DUPLICATES = "no_duplicate_offsets"
SENTINELS = "no_sentinel_values"


def landed_check_evaluations(
    lake: Lake, result: DrainResult, has_partition: Callable[[str], bool]
) -> list[AssetCheckEvaluation]:
    """One evaluation of each stream check per (table, session) this drain appended rows to."""
    evaluations: list[AssetCheckEvaluation] = []
    for table in result.tables.values():
        if table.min_offset is None or table.max_offset is None or not table.rows_written:
            continue
        offsets = f"{table.min_offset}..{table.max_offset}"
        scope = f"the rows this tick appended (stream {result.stream_id}, spool offsets {offsets})"
        landed = lake.scan(table.table).filter(
            (pl.col("stream_id") == result.stream_id)
            & pl.col("spool_offset").is_between(table.min_offset, table.max_offset)
        )
        for session in sorted(table.rows_per_session):
            key = session.isoformat()
            if not has_partition(key):
                continue
            rows, dups = audit.duplicate_offsets(landed, [session])
            checked, bad = audit.sentinel_counts(landed, [session])
            common = {"session": key, "checked": scope}
            evaluations.append(
                AssetCheckEvaluation(
                    asset_key=AssetKey(table.table),
                    check_name=DUPLICATES,
                    passed=rows > 0 and dups.height == 0,
                    severity=AssetCheckSeverity.ERROR,
                    description=(
                        f"{dups.height} duplicated spool offsets in {rows} rows"
                        if rows
                        else "none of the appended rows found in Delta: nothing compared"
                    ),
                    metadata={**common, "rows": rows, "duplicated_offsets": dups.height},
                )
            )
            evaluations.append(
                AssetCheckEvaluation(
                    asset_key=AssetKey(table.table),
                    check_name=SENTINELS,
                    passed=checked > 0 and not bad,
                    severity=AssetCheckSeverity.ERROR,
                    description=(
                        f"{sum(bad.values())} IB sentinel values stored as numbers in {checked} rows"
                        if checked
                        else "none of the appended rows found in Delta: nothing compared"
                    ),
                    metadata={**common, "rows": checked, "bad_values_by_column": bad},
                )
            )
    return evaluations
