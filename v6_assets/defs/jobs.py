"""Jobs: the daily assets (with their checks and the streamed tables' checks) and the nightly table maintenance."""

from datetime import date, timedelta
from typing import Any

from dagster import AssetSelection, Config, OpExecutionContext, define_asset_job, job, op
from pydantic import Field

from v6_assets import sessions
from v6_assets.contracts.tables import TABLES
from v6_assets.defs.account_assets import ACCOUNT_ASSETS
from v6_assets.defs.assets import DAILY_ASSETS, STREAM_SPECS
from v6_assets.defs.book_assets import BOOK_ASSETS, BOOK_STREAM_SPECS
from v6_assets.defs.lifecycle_assets import LIFECYCLE_ASSETS
from v6_assets.defs.resources import LakeResource
from v6_assets.defs.risk_assets import RISK_ASSETS
from v6_assets.lake import checkpoint, cleanup_logs, compact, vacuum

DAILY_ASSETS_SELECTION = AssetSelection.assets(
    *DAILY_ASSETS, *BOOK_ASSETS, *LIFECYCLE_ASSETS, *RISK_ASSETS, *ACCOUNT_ASSETS
) | AssetSelection.checks_for_assets(*(s.key for s in (*STREAM_SPECS, *BOOK_STREAM_SPECS)))

daily_assets_job = define_asset_job(
    name="daily_assets",
    selection=DAILY_ASSETS_SELECTION,
    description=(
        "eod_positions -> daily_pnl, exposure for one session or a range (one run, one partition overwrite per table), "
        "with their checks and the streamed tables' checks (blocking where a wrong number would propagate)."
    ),
    tags={"v6/kind": "daily"},
)

MAINTAINED_TABLES: tuple[str, ...] = tuple(TABLES)


class MaintenanceConfig(Config):
    session: str = Field(
        default="", description="Session (YYYY-MM-DD) whose partitions to compact; empty = the last finished session."
    )
    vacuum_retention_hours: float = Field(default=168.0, description="Vacuum files unreferenced for longer than this.")


def last_finished_session(now: Any = None) -> date:
    """The latest session whose EOD cut has passed."""
    return sessions.previous_session(sessions.current_session(now))


@op(description="Compact the session's partitions, checkpoint, clean up expired logs and vacuum every table.")
def maintain_tables(context: OpExecutionContext, config: MaintenanceConfig, lake: LakeResource) -> dict[str, Any]:
    session = date.fromisoformat(config.session) if config.session else last_finished_session()
    if not sessions.is_session(session):
        raise ValueError(f"{session} is not an NYSE session")
    if config.vacuum_retention_hours < 0:
        raise ValueError("vacuum_retention_hours must be >= 0")
    lk = lake.lake()
    report: dict[str, Any] = {}
    for table in MAINTAINED_TABLES:
        if not lk.exists(table):
            report[table] = "absent (never written)"
            continue
        done = {
            "compact": compact(lk, table, [session]).as_metadata(),
            "checkpoint": checkpoint(lk, table).as_metadata(),
            "cleanup_logs": cleanup_logs(lk, table).as_metadata(),
            "vacuum": vacuum(lk, table, timedelta(hours=config.vacuum_retention_hours)).as_metadata(),
        }
        report[table] = done
        context.log.info(
            "%s: compacted %s files into %s, vacuumed %s files",
            table,
            done["compact"]["files_before"],
            done["compact"]["files_after"],
            done["vacuum"]["files_deleted"],
        )
    context.add_output_metadata({"session": session.isoformat(), **{t: r for t, r in report.items()}})
    return report


@job(description="Nightly Delta maintenance of the previous session's partitions (compact, checkpoint, logs, vacuum).")
def table_maintenance() -> None:
    maintain_tables()
