"""The book's executions: the ``executions`` stream reduced to one row per execution, its latest known state.

The stream holds one row per exec id revision and known state (the execution, then again once its commission
joined; again after a restart re-requested the day's executions). An execution is its exec id without the last
suffix (``...01.01`` / ``...01.02``): a correction re-uses it with a higher suffix and replaces the earlier revision.
Per execution the highest revision wins, and within it the latest row that knows the commission, else the latest
row (commission then null: unknown, never 0). Pure polars, no I/O.
"""

from __future__ import annotations

import polars as pl

from v6_assets.analytics._common import AnalyticsInputError, require_columns
from v6_assets.contracts.streams import EXECUTION_UPDATE_FIELDS

EXEC_BASE = "exec_base"
REVISION = "revision"


def exec_id_parts(exec_id: pl.Expr) -> tuple[pl.Expr, pl.Expr]:
    """(base, revision) of an exec id: the part before the last '.', and the number after it (1 when none)."""
    suffix = exec_id.str.extract(r"\.(\d+)$", 1)
    base = pl.when(suffix.is_not_null()).then(exec_id.str.replace(r"\.\d+$", "")).otherwise(exec_id)
    return base, suffix.cast(pl.Int64, strict=False).fill_null(1)


def book_executions(stream: pl.DataFrame) -> pl.DataFrame:
    """One row per execution (latest revision, commission once known), with ``exec_base`` and ``revision``,
    ordered by execution time. Columns: the stream's, plus those two."""
    names = require_columns(stream, EXECUTION_UPDATE_FIELDS, "executions")
    if stream.filter(pl.col("exec_id").is_null() | (pl.col("exec_id") == "")).height:
        raise AnalyticsInputError("executions: rows without an exec id")
    order = [c for c in ("received_at", "spool_offset") if c in names]
    base, revision = exec_id_parts(pl.col("exec_id"))
    rows = stream.with_columns(base.alias(EXEC_BASE), revision.alias(REVISION))
    top = rows.group_by(EXEC_BASE).agg(pl.col(REVISION).max().alias("_top"))
    latest = (
        rows.join(top, on=EXEC_BASE)
        .filter(pl.col(REVISION) == pl.col("_top"))
        .drop("_top")
        .with_columns(pl.col("commission").is_not_null().alias("_known"))
        .sort([*(["_known"]), *order])
        .group_by(EXEC_BASE, maintain_order=True)
        .last()
        .drop("_known")
    )
    return latest.select([*stream.columns, EXEC_BASE, REVISION]).sort("exec_time", EXEC_BASE)
