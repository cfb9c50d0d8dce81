"""Delta Lake layer: the table contracts (``v6_assets.contracts``) enforced, the exactly-once micro-batch writer,
session overwrites, maintenance.

No Dagster, no IB imports. Typical use::

    lake = Lake.from_env()                                   # V6_LAKE_URI, default ./.v6/lake
    writer = MicroBatchWriter(lake, "position_updates")
    writer.append(df, app_id=stream_id, version=last_offset, offset_column="spool_offset")
    lake.overwrite_sessions("daily_pnl", df, [session])      # daily outputs: replace exactly those partitions
    lake.read_sessions("eod_positions", [session]); lake.scan("position_updates")
"""

from v6_assets.contracts.tables import (
    ACCOUNT_VALUES,
    DAILY_PNL,
    EOD_POSITIONS,
    EXECUTIONS,
    EXPOSURE,
    GREEKS_UPDATES,
    POSITION_UPDATES,
    TABLES,
    TRADE_DATE,
    ColumnDef,
    TableDef,
)
from v6_assets.lake.maintenance import (
    CheckpointResult,
    CleanupLogsResult,
    CompactResult,
    VacuumResult,
    checkpoint,
    cleanup_logs,
    compact,
    vacuum,
)
from v6_assets.lake.store import DEFAULT_LAKE_URI, Lake, OverwriteResult, check_compatible
from v6_assets.lake.tables import LakeSchemaError, cast_and_validate
from v6_assets.lake.writer import AppendResult, LakeCommitError, MicroBatchWriter

__all__ = [
    "ACCOUNT_VALUES",
    "DAILY_PNL",
    "DEFAULT_LAKE_URI",
    "EOD_POSITIONS",
    "EXECUTIONS",
    "EXPOSURE",
    "GREEKS_UPDATES",
    "POSITION_UPDATES",
    "TABLES",
    "TRADE_DATE",
    "AppendResult",
    "CheckpointResult",
    "CleanupLogsResult",
    "ColumnDef",
    "CompactResult",
    "Lake",
    "LakeCommitError",
    "LakeSchemaError",
    "MicroBatchWriter",
    "OverwriteResult",
    "TableDef",
    "VacuumResult",
    "cast_and_validate",
    "check_compatible",
    "checkpoint",
    "cleanup_logs",
    "compact",
    "vacuum",
]
