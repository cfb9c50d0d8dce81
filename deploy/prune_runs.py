"""Run retention for a long-lived Dagster instance: delete finished runs (and their event logs) older than N days.

Dagster purges sensor/schedule ticks by itself (``retention:`` in dagster.yaml) but keeps every run forever; with a
maintenance job a day and many backfills the Postgres tables only grow. This deletes finished runs (success, failure,
canceled) whose last update is older than the cutoff. Runs that materialized an asset are kept unless
``--include-asset-runs``: deleting them deletes their materialization events, i.e. the assets' history in the UI
and the evidence behind each partition's status.

    DAGSTER_HOME=/srv/dagster python deploy/prune_runs.py --older-than-days 90 [--dry-run]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter

FINISHED = [DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED]


@dataclass(frozen=True)
class PruneResult:
    cutoff: datetime
    deleted: list[str]
    kept_asset_runs: list[str]
    dry_run: bool


def _materialized_assets(instance: DagsterInstance, run_id: str) -> bool:
    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION, limit=1)
    return bool(records.records)


def prune_runs(
    instance: DagsterInstance,
    older_than: timedelta,
    *,
    include_asset_runs: bool = False,
    dry_run: bool = False,
    batch_size: int = 200,
    now: datetime | None = None,
) -> PruneResult:
    if older_than < timedelta(0):
        raise ValueError(f"older_than must not be negative, got {older_than}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    cutoff = (now or datetime.now(UTC)) - older_than
    deleted: list[str] = []
    kept: list[str] = []
    cursor: str | None = None
    while True:
        records = instance.get_run_records(
            filters=RunsFilter(statuses=FINISHED, updated_before=cutoff), limit=batch_size, cursor=cursor
        )
        if not records:
            break
        for record in records:
            run_id = record.dagster_run.run_id
            if not include_asset_runs and _materialized_assets(instance, run_id):
                kept.append(run_id)
                continue
            if not dry_run:
                instance.delete_run(run_id)
            deleted.append(run_id)
        # Deleted rows leave the result set, but kept (and dry-run) ones do not: page past them by cursor.
        cursor = records[-1].dagster_run.run_id
    return PruneResult(cutoff=cutoff, deleted=deleted, kept_asset_runs=kept, dry_run=dry_run)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--older-than-days", type=float, required=True, help="delete runs last updated before this")
    parser.add_argument("--include-asset-runs", action="store_true", help="also delete runs that materialized assets")
    parser.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")
    args = parser.parse_args(argv)
    if args.older_than_days < 0:
        parser.error("--older-than-days must be >= 0")
    with DagsterInstance.get() as instance:
        result = prune_runs(
            instance,
            timedelta(days=args.older_than_days),
            include_asset_runs=args.include_asset_runs,
            dry_run=args.dry_run,
        )
    verb = "would delete" if result.dry_run else "deleted"
    print(
        f"prune_runs: {verb} {len(result.deleted)} finished run(s) last updated before {result.cutoff.isoformat()}; "
        f"kept {len(result.kept_asset_runs)} run(s) that materialized assets"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
