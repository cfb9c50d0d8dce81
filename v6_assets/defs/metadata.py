"""Materialization metadata: column schema from the lake registry, column lineage, markdown previews, charts.

Charts are small matplotlib PNGs embedded as base64 ``data:`` URIs in ``MetadataValue.md``: the Dagster UI's markdown
sanitizer (dagster-webserver bundle) allows the ``data`` protocol for ``img src``, so they render inline in the
asset catalog without any file server.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import Any

import polars as pl
from dagster import (
    AssetKey,
    MetadataValue,
    TableColumn,
    TableColumnConstraints,
    TableColumnDep,
    TableColumnLineage,
    TableRecord,
    TableSchema,
)
from matplotlib.figure import Figure

from v6_assets.contracts.money import format_cents
from v6_assets.lake import TableDef

PREVIEW_ROWS = 10


def _type_name(arrow_type: Any) -> str:
    return str(arrow_type)


def table_schema(table: TableDef) -> TableSchema:
    """``dagster/column_schema`` from the lake's table contract (every column carries its description)."""
    return TableSchema(
        columns=[
            TableColumn(
                name=c.name,
                type=_type_name(c.arrow_type),
                description=c.description,
                constraints=TableColumnConstraints(nullable=c.nullable),
            )
            for c in table.columns
        ]
    )


def column_lineage(deps: Mapping[str, Sequence[tuple[str, str]]]) -> TableColumnLineage:
    """``{"out_col": [("asset", "in_col"), ...]}`` -> ``dagster/column_lineage``."""
    return TableColumnLineage(
        deps_by_column={
            column: [TableColumnDep(asset_key=AssetKey(asset), column_name=source) for asset, source in sources]
            for column, sources in deps.items()
        }
    )


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        return f"{value:,.2f}" if abs(value) >= 1 else f"{value:.4g}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    return str(value).replace("|", "\\|")


def markdown_table(frame: pl.DataFrame, columns: Sequence[str]) -> str:
    cols = [c for c in columns if c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in frame.select(cols).iter_rows():
        lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
    return "\n".join(lines)


def largest_rows_preview(
    frame: pl.DataFrame, by: str, columns: Sequence[str], *, title: str, rows: int = PREVIEW_ROWS
) -> MetadataValue:
    """Markdown table of the ``rows`` rows with the largest ``|by|`` (nulls last)."""
    if frame.height == 0:
        return MetadataValue.md(f"**{title}**\n\n_no rows_")
    top = frame.sort(pl.col(by).abs(), descending=True, nulls_last=True).head(rows)
    return MetadataValue.md(
        f"**{title}** (top {top.height} of {frame.height} by \\|{by}\\|)\n\n" + markdown_table(top, columns)
    )


def bar_chart_markdown(
    labels: Sequence[str], values: Sequence[float | None], *, title: str, unit: str, simulated: bool
) -> MetadataValue:
    """A horizontal bar chart PNG embedded as a data URI, plus the numbers as a table (the chart's text fallback)."""
    heading = f"**{title}**" + (" (SIMULATED data)" if simulated else "")
    if not labels:
        return MetadataValue.md(f"{heading}\n\n_no data_")
    known = [(label, v) for label, v in zip(labels, values, strict=True) if v is not None and math.isfinite(v)]
    height = max(1.6, 0.32 * len(known) + 0.9)
    fig = Figure(figsize=(6.0, height), dpi=80)
    ax = fig.subplots()
    names = [k for k, _ in known]
    numbers = [v for _, v in known]
    ax.barh(names, numbers, color=["#2e7d32" if v >= 0 else "#c62828" for v in numbers])
    ax.axvline(0, color="#555555", linewidth=0.8)
    ax.invert_yaxis()
    ax.set_xlabel(unit)
    ax.set_title(title + (" (SIMULATED)" if simulated else ""), fontsize=10)
    ax.tick_params(labelsize=8)
    uri = png_data_uri(fig)
    table = "\n".join(
        ["| | " + unit + " |", "|---|---:|"]
        + [f"| {label} | {_cell(v) if v is not None else 'unknown'} |" for label, v in zip(labels, values, strict=True)]
    )
    return MetadataValue.md(f"{heading}\n\n![{title}]({uri})\n\n{table}")


def line_chart_markdown(
    x_labels: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    *,
    title: str,
    unit: str,
    simulated: bool,
    table_note: str = "",
) -> MetadataValue:
    """One line per series over ``x_labels`` (a gap where a value is unknown) as a PNG data URI, plus the numbers as a
    table (the chart's text fallback: unknown values say so, never 0)."""
    heading = f"**{title}**" + (" (SIMULATED data)" if simulated else "")
    if not x_labels or not series:
        return MetadataValue.md(f"{heading}\n\n_no data_")
    fig = Figure(figsize=(7.5, 3.2), dpi=80)
    ax = fig.subplots()
    positions = list(range(len(x_labels)))
    for name, values in series.items():
        ys = [v if v is not None and math.isfinite(v) else math.nan for v in values]
        ax.plot(positions, ys, marker="o", markersize=3, linewidth=1.4, label=name)
    ax.axhline(0, color="#555555", linewidth=0.8)
    ax.set_xticks(positions, [label[5:] for label in x_labels], rotation=60, fontsize=7)  # MM-DD
    ax.set_ylabel(unit, fontsize=8)
    ax.tick_params(axis="y", labelsize=8)
    ax.legend(fontsize=7, loc="best")
    ax.set_title(title + (" (SIMULATED)" if simulated else ""), fontsize=10)
    uri = png_data_uri(fig)
    names = list(series)
    rows = ["| session | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for i, label in enumerate(x_labels):
        cells = [format_cents(series[n][i]) if series[n][i] is not None else "n/a" for n in names]
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    note = f"\n\n{table_note}" if table_note else ""
    return MetadataValue.md(f"{heading}\n\n![{title}]({uri})\n\n" + "\n".join(rows) + note)


def money_text(value: float | None) -> str:
    """An amount for metadata: to the cent (``format_cents``), unknown as "n/a", never 0.0 for nothing."""
    return format_cents(value)


def records_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[tuple[str, str, str]]) -> MetadataValue:
    """``MetadataValue.table`` with a schema: ``columns`` = (name, dagster type, description); values as given
    (money already formatted to the cent as strings, unknown as None)."""
    schema = TableSchema(columns=[TableColumn(name=n, type=t, description=d) for n, t, d in columns])
    names = [n for n, _, _ in columns]
    return MetadataValue.table(
        records=[TableRecord({n: row.get(n) for n in names}) for row in rows],
        schema=schema,
    )


def range_label(days: Sequence[date]) -> str:
    """What a run's metadata covers: one session, or a range whose per-session figures are in the tables."""
    if len(days) == 1:
        return f"session {days[0]}"
    return (
        f"RANGE of {len(days)} sessions {days[0]}..{days[-1]} (one run): every figure below is per session "
        "(tables with a session column); this entry is shared by all of them"
    )


def png_data_uri(fig: Figure) -> str:
    """A matplotlib figure as a ``data:image/png;base64,...`` URI (renders inline in the Dagster UI's markdown)."""
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
