"""Casting and validating a polars frame to a table's contract before anything is written to the lake.

The contracts themselves (columns, types, descriptions) live in ``v6_assets.contracts.tables`` (``v6_assets.lake``
re-exports them for the lake's users). ``cast_and_validate`` is the lake's gate: bad input raises
``LakeSchemaError`` naming the column, and nothing is written.
"""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

from v6_assets.contracts.clock import utc_now
from v6_assets.contracts.tables import TRADE_DATE, ColumnDef, TableDef
from v6_assets.contracts.unset import ib_unset_expr
from v6_assets.sessions import trade_date_expr


class LakeSchemaError(ValueError):
    """A frame does not fit a table's schema (missing column, uncastable type, null/sentinel in a checked column)."""

    def __init__(self, table: str, column: str | None, problem: str) -> None:
        self.table = table
        self.column = column
        self.problem = problem
        where = f"{table}.{column}" if column else table
        super().__init__(f"{where}: {problem}")


def _cast_column(table: TableDef, col: ColumnDef, series: pl.Series, target: pl.DataType) -> pl.Series:
    if isinstance(target, pl.Datetime) and isinstance(series.dtype, pl.Datetime):
        if series.dtype.time_zone is None:
            raise LakeSchemaError(table.name, col.name, "naive datetime: timestamps must carry a time zone (UTC)")
        return series.dt.convert_time_zone("UTC").dt.cast_time_unit("us")
    if isinstance(target, pl.Datetime) and series.dtype not in (pl.Null,):
        raise LakeSchemaError(table.name, col.name, f"expected a UTC timestamp, got {series.dtype}")
    try:
        return series.cast(target, strict=True)
    except (pl.exceptions.InvalidOperationError, pl.exceptions.ComputeError) as e:
        raise LakeSchemaError(table.name, col.name, f"cannot cast {series.dtype} to {target}: {e}") from None


def _check_values(table: TableDef, col: ColumnDef, series: pl.Series) -> pl.Series:
    if series.dtype == pl.Float64:
        # NaN is stored as null below; what else the unset rule catches (infinity, IB's UNSET_DOUBLE) is refused.
        value = pl.col(series.name)
        n_bad = int(series.to_frame().select((ib_unset_expr(value) & value.is_not_nan()).fill_null(False).sum()).item())
        if n_bad:
            raise LakeSchemaError(
                table.name,
                col.name,
                f"{n_bad} row(s) hold infinity or IB's UNSET_DOUBLE sentinel (|x| >= 1e300); convert to null",
            )
        # NaN means "unknown" here: store it as null so sums and counts treat it like every other unknown.
        series = series.fill_nan(None)
    if not col.nullable:
        n_null = series.null_count()
        if n_null:
            raise LakeSchemaError(table.name, col.name, f"{n_null} null value(s) in a non-nullable column")
    if col.non_empty and series.dtype == pl.String:
        n_empty = int((series.str.strip_chars() == "").sum())
        if n_empty:
            raise LakeSchemaError(table.name, col.name, f"{n_empty} empty string(s) in a key column")
    return series


def cast_and_validate(table: TableDef, df: pl.DataFrame, *, now: datetime | None = None) -> pl.DataFrame:
    """Cast and validate ``df`` to ``table``'s schema; returns the columns in schema order.

    Derived columns (``trade_date`` from ``received_at``, ``ingested_at``) are filled when absent. Raises
    ``LakeSchemaError`` naming the column for: a missing column, an extra column (not in the contract), a type that
    cannot be cast, a null in a non-nullable column, a double that carries no value by the IB-unset rule
    (``v6_assets.contracts.unset``: infinity, UNSET_DOUBLE), an empty key string, or a
    ``trade_date`` that disagrees with ``received_at``. NaN in float columns becomes null.
    """
    if not isinstance(df, pl.DataFrame):
        raise TypeError(f"{table.name}: expected a polars DataFrame, got {type(df).__name__}")
    extra = [c for c in df.columns if c not in table.column_names]
    if extra:
        raise LakeSchemaError(table.name, extra[0], f"column(s) not in the table contract: {extra}")
    frame = df
    if "received_at" in table.column_names and "received_at" in frame.columns:
        received = _cast_column(table, table.column("received_at"), frame["received_at"], pl.Datetime("us", "UTC"))
        frame = frame.with_columns(received)
    if TRADE_DATE in table.derived and "received_at" in frame.columns:
        if frame["received_at"].null_count():
            raise LakeSchemaError(table.name, "received_at", "null timestamps: cannot assign a trade_date")
        computed = frame.select(trade_date_expr("received_at").alias(TRADE_DATE)).to_series()
        if TRADE_DATE in frame.columns:
            given = frame[TRADE_DATE].cast(pl.Date, strict=False)
            mismatches = int((given != computed).fill_null(True).sum())
            if mismatches:
                raise LakeSchemaError(
                    table.name, TRADE_DATE, f"{mismatches} row(s) disagree with the session of received_at"
                )
        frame = frame.with_columns(computed)
    if "ingested_at" in table.derived and "ingested_at" not in frame.columns:
        stamp = (now or utc_now()).astimezone(UTC)
        frame = frame.with_columns(pl.lit(stamp).cast(pl.Datetime("us", "UTC")).alias("ingested_at"))

    target_schema = table.polars_schema
    out: list[pl.Series] = []
    for col in table.columns:
        if col.name not in frame.columns:
            raise LakeSchemaError(table.name, col.name, "missing column")
        series = _cast_column(table, col, frame[col.name], target_schema[col.name])
        out.append(_check_values(table, col, series))
    return pl.DataFrame(out)
