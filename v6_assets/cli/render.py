"""Output of the read commands: a rich table for people, ``--json`` for programs (one JSON document on stdout)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import click
import polars as pl
from rich.console import Console
from rich.table import Table

from v6_assets.contracts.money import format_cents

# Columns shown as money (to the cent, "n/a" when unknown: never 0 for nothing).
MONEY_COLUMNS = frozenset(
    {
        "pnl",
        "pnl_so_far",
        "ib_daily_pnl",
        "pnl_minus_ib",
        "unrealized_pnl",
        "realized_pnl",
        "market_value",
        "unrealized_change",
        "dollar_delta",
        "dollar_gamma_1pct",
        "notional",
        "vega",
        "theta",
    }
)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def emit_json(document: Any) -> None:
    click.echo(json.dumps(document, default=_json_default, indent=1, allow_nan=False))


def frame_records(frame: pl.DataFrame) -> list[dict[str, Any]]:
    return [{k: _clean(v) for k, v in row.items()} for row in frame.to_dicts()]


def _cell(column: str, value: Any) -> str:
    if value is None:
        return "n/a" if column in MONEY_COLUMNS else ""
    if column in MONEY_COLUMNS and isinstance(value, int | float):
        return format_cents(float(value))
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else f"{value:,.4g}" if abs(value) < 1 else f"{value:,.2f}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S %Z")
    return str(value)


def print_table(title: str, frame: pl.DataFrame, columns: Sequence[str], caption: str | None = None) -> None:
    table = Table(title=title, caption=caption, show_lines=False)
    shown = [c for c in columns if c in frame.columns]
    for c in shown:
        numeric = frame.schema[c].is_numeric()
        table.add_column(c, justify="right" if numeric else "left", no_wrap=True)
    for row in frame.select(shown).iter_rows(named=True):
        table.add_row(*(_cell(c, row[c]) for c in shown))
    Console(width=200).print(table)
