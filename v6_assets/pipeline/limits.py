"""Risk limits: a YAML file of limits per account and/or underlying, and the breaches of a session's figures.

File format (an example ships as ``deploy/risk_limits.example.yaml``)::

    limits:
      - account: DU1000001            # account and/or underlying (at least one)
        underlying: SPY
        net_delta: {warn: 150000, error: 300000}   # |dollar delta| (sum of delta * q * m * S)
        vega: 5000                                 # a bare number is the ERROR level (no warning level)
        theta: {warn: 800, error: 1500}            # |theta| per calendar day
        worst_loss: {warn: 20000, error: 50000}    # the largest loss of the scenario grid (a positive amount)

A limit with an account and an underlying applies to that pair; with an account only to the account's total (all
underlyings; the scenario grid's account row); with an underlying only to that underlying over all accounts. Every
figure is per currency (never added across currencies). A breach is ``|figure| > level`` (``loss > level``).
A malformed file raises :class:`LimitsFileError` naming the file and the line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import yaml

MEASURES: tuple[str, ...] = ("net_delta", "vega", "theta", "worst_loss")
SCOPE_KEYS: tuple[str, ...] = ("account", "underlying")
WARN, ERROR = "WARN", "ERROR"


class LimitsFileError(ValueError):
    """The limits file cannot be used; the message names the file and the line."""


@dataclass(frozen=True)
class Level:
    warn: float | None
    error: float | None


@dataclass(frozen=True)
class Limit:
    account: str | None
    underlying: str | None
    levels: Mapping[str, Level]
    line: int  # 1-based line of the entry in the file

    @property
    def scope(self) -> str:
        parts = [
            f"account {self.account}" if self.account else "",
            f"underlying {self.underlying}" if self.underlying else "",
        ]
        return ", ".join(p for p in parts if p)


def _number(node: yaml.Node, where: str) -> float:
    if not isinstance(node, yaml.ScalarNode):
        raise LimitsFileError(f"{where}, line {node.start_mark.line + 1}: a number expected")
    try:
        value = float(node.value)
    except ValueError:
        raise LimitsFileError(f"{where}, line {node.start_mark.line + 1}: {node.value!r} is not a number") from None
    if not value >= 0 or value == float("inf"):
        raise LimitsFileError(
            f"{where}, line {node.start_mark.line + 1}: a finite number >= 0 expected, got {node.value}"
        )
    return value


def _level(node: yaml.Node, where: str) -> Level:
    if isinstance(node, yaml.ScalarNode):
        return Level(warn=None, error=_number(node, where))
    if not isinstance(node, yaml.MappingNode):
        raise LimitsFileError(f"{where}, line {node.start_mark.line + 1}: a number or {{warn: x, error: y}} expected")
    values: dict[str, float] = {}
    for key, value in node.value:
        if key.value not in (WARN.lower(), ERROR.lower()):
            raise LimitsFileError(f"{where}, line {key.start_mark.line + 1}: unknown level {key.value!r} (warn, error)")
        values[key.value] = _number(value, where)
    if not values:
        raise LimitsFileError(f"{where}, line {node.start_mark.line + 1}: warn and/or error expected")
    warn, error = values.get("warn"), values.get("error")
    if warn is not None and error is not None and warn > error:
        raise LimitsFileError(f"{where}, line {node.start_mark.line + 1}: warn {warn} is above error {error}")
    return Level(warn=warn, error=error)


def parse_limits(text: str, source: str = "limits file") -> tuple[Limit, ...]:
    """The limits of a YAML text; :class:`LimitsFileError` naming ``source`` and the line when malformed."""
    try:
        root = yaml.compose(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f"line {mark.line + 1}" if mark is not None else "unknown line"
        raise LimitsFileError(f"{source}, {line}: not valid YAML: {exc.problem or exc}") from None
    if root is None:
        return ()
    if not isinstance(root, yaml.MappingNode) or [k.value for k, _ in root.value] != ["limits"]:
        raise LimitsFileError(f"{source}, line {root.start_mark.line + 1}: a mapping with one key 'limits' expected")
    entries = root.value[0][1]
    if not isinstance(entries, yaml.SequenceNode):
        raise LimitsFileError(f"{source}, line {entries.start_mark.line + 1}: 'limits' must be a list")
    limits = []
    for entry in entries.value:
        line = entry.start_mark.line + 1
        where = f"{source}, limits entry at line {line}"
        if not isinstance(entry, yaml.MappingNode):
            raise LimitsFileError(f"{source}, line {line}: each limit must be a mapping")
        scope: dict[str, str] = {}
        levels: dict[str, Level] = {}
        for key, value in entry.value:
            name = key.value
            if name in SCOPE_KEYS:
                if not isinstance(value, yaml.ScalarNode) or not str(value.value).strip():
                    raise LimitsFileError(f"{source}, line {key.start_mark.line + 1}: {name} must be a non-empty name")
                scope[name] = str(value.value).strip()
            elif name in MEASURES:
                levels[name] = _level(value, f"{source}, {name}")
            else:
                raise LimitsFileError(
                    f"{source}, line {key.start_mark.line + 1}: unknown key {name!r} (expected {SCOPE_KEYS + MEASURES})"
                )
        if not scope:
            raise LimitsFileError(f"{where}: account and/or underlying expected")
        if not levels:
            raise LimitsFileError(f"{where}: at least one of {MEASURES} expected")
        limits.append(Limit(scope.get("account"), scope.get("underlying"), levels, line))
    return tuple(limits)


def load_limits(path: str | Path | None) -> tuple[Limit, ...]:
    """The limits of the file at ``path`` (empty/None: no limits). A missing or malformed file is an error."""
    if not path:
        return ()
    file = Path(path)
    try:
        text = file.read_text()
    except OSError as exc:
        raise LimitsFileError(f"limits file {file}: cannot be read: {exc.strerror or exc}") from None
    return parse_limits(text, f"limits file {file.name}")


def _figure(frame: pl.DataFrame, limit: Limit, column: str, how: str) -> pl.DataFrame:
    """Per trade_date x currency: the figure of ``limit``'s scope (``how``: sum of ``column``)."""
    rows = frame
    if limit.account is not None:
        rows = rows.filter(pl.col("account") == limit.account)
    if limit.underlying is not None:
        rows = rows.filter(pl.col("underlying") == limit.underlying)
    return rows.group_by("trade_date", "currency").agg(pl.col(column).sum().alias("figure"))


def greek_figures(ladder: pl.DataFrame) -> pl.DataFrame:
    """Per trade_date x account x underlying x currency: net_delta (dollar delta), vega, theta from expiry_ladder."""
    return ladder.group_by("trade_date", "account", "underlying", "currency").agg(
        pl.col("dollar_delta").sum().alias("net_delta"), pl.col("vega").sum(), pl.col("theta").sum()
    )


def scenario_losses(scenarios: pl.DataFrame) -> pl.DataFrame:
    """Per trade_date x account x underlying x cell (detail rows only): the cell pnl, to be summed by a scope."""
    return scenarios.filter(pl.col("underlying").is_not_null() & pl.col("pnl").is_not_null())


def breaches(
    limits: tuple[Limit, ...], greeks: pl.DataFrame | None = None, scenarios: pl.DataFrame | None = None
) -> list[dict[str, Any]]:
    """Every breach: one dict per (limit, measure, session, currency) whose figure passes its warn or error level."""
    out: list[dict[str, Any]] = []
    for limit in limits:
        for measure, level in limit.levels.items():
            if measure == "worst_loss":
                if scenarios is None:
                    continue
                cells = scenario_losses(scenarios)
                if limit.account is not None:
                    cells = cells.filter(pl.col("account") == limit.account)
                if limit.underlying is not None:
                    cells = cells.filter(pl.col("underlying") == limit.underlying)
                figures = (
                    cells.group_by("trade_date", "currency", "spot_shift_pct", "vol_shift_pts")
                    .agg(pl.col("pnl").sum())
                    .group_by("trade_date", "currency")
                    .agg((-pl.col("pnl").min()).clip(0.0).alias("figure"))
                )
            else:
                if greeks is None:
                    continue
                figures = _figure(greek_figures(greeks), limit, measure, "sum").with_columns(pl.col("figure").abs())
            for row in figures.filter(pl.col("figure").is_not_null()).iter_rows(named=True):
                value = float(row["figure"])
                severity = (
                    ERROR
                    if level.error is not None and value > level.error
                    else WARN
                    if level.warn is not None and value > level.warn
                    else None
                )
                if severity is None:
                    continue
                out.append(
                    {
                        "session": row["trade_date"].isoformat(),
                        "scope": limit.scope,
                        "measure": measure,
                        "currency": row["currency"],
                        "value": value,
                        "limit": level.error if severity == ERROR else level.warn,
                        "severity": severity,
                        "line": limit.line,
                    }
                )
    return sorted(out, key=lambda b: (b["session"], b["severity"] != ERROR, b["scope"], b["measure"]))
