"""What a trader reads first on daily_pnl's page: where each session stands (pre-open / open / closed), the last
closed session's total PnL per account, and the PnL history of the last sessions per account as a chart.

Amounts are never added across currencies: per-currency totals, then each account's total in its base currency at
the ExchangeRate of the session's cut (account_values, ``v6_assets.analytics.account``); an account whose rate is
unusable shows n/a with the reason (never an invented conversion). Without any account value streamed there is no
base-currency total, and the text says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import polars as pl

from v6_assets import analytics, sessions
from v6_assets.contracts.money import format_cents
from v6_assets.contracts.tables import DAILY_PNL, TRADE_DATE
from v6_assets.defs.metadata import line_chart_markdown
from v6_assets.lake import Lake
from v6_assets.pipeline import account

HISTORY_SESSIONS = 20
PRE_OPEN = "pre-open: marks are the previous close"
NO_BASE_CURRENCY = "no base-currency total: no account values (FX rates) streamed, amounts stay in their own currency"
BASE_HEADING = "in base currency (FX at the cut):"


def session_status(day: date, now: datetime) -> str:
    """Where ``day`` stands at ``now``: not opened yet (its PnL is only the carry of the previous close), open
    (intraday, not final), or closed (final at the EOD cut)."""
    opens, cut = sessions.session_open(day), sessions.eod_cut(day)
    if now < opens:
        return f"{PRE_OPEN} (the session opens {opens.astimezone(sessions.NEW_YORK):%Y-%m-%d %H:%M} ET)"
    if now < cut:
        return f"open: intraday marks, not final before the EOD cut at {cut.astimezone(sessions.NEW_YORK):%H:%M} ET"
    return "closed: final at the EOD cut"


def is_closed(day: date, now: datetime) -> bool:
    return now >= sessions.eod_cut(day)


def pnl_history(lake: Lake, last: date, count: int = HISTORY_SESSIONS) -> pl.DataFrame:
    """daily_pnl per session x account x currency for the last ``count`` sessions up to ``last`` (what is stored,
    this run's write included); sessions without rows are absent."""
    days = sessions.last_sessions(count, last)
    return analytics.pnl_by_account(lake.read_sessions(DAILY_PNL, days))


def _amount(row: dict[str, Any]) -> str:
    """The known PnL of an account row; "n/a" when every position's PnL is unknown, never 0 for nothing."""
    if row["positions"] <= row["unknown_pnl_positions"]:
        return "n/a (pnl unknown)"
    unknown = f" (+{row['unknown_pnl_positions']} positions unknown)" if row["unknown_pnl_positions"] else ""
    return f"{format_cents(row['pnl_known'])}{unknown}"


def base_currency_lines(in_base: pl.DataFrame | None) -> list[str]:
    """Each account's total in its base currency (``pnl_by_account`` with the cut's FX rates, one session), then the
    total per base currency; an account with a currency it cannot convert is n/a with that currency named."""
    if in_base is None or not in_base.height:
        return [NO_BASE_CURRENCY]
    lines: list[str] = [BASE_HEADING]
    totals: dict[str, list[float]] = {}
    for (acct,), rows in in_base.sort("account").group_by("account", maintain_order=True):
        unconverted = rows.filter(~pl.col("is_base_currency").fill_null(False))["currency"].to_list()
        if unconverted:
            lines.append(f"{acct} n/a (no usable ExchangeRate at the cut for {', '.join(sorted(unconverted))})")
            continue
        currency = rows["currency"][0]
        unknown = int(rows["unknown_pnl_positions"].sum())
        if int(rows["positions"].sum()) <= unknown:
            lines.append(f"{acct} {currency} n/a (pnl unknown)")
            continue
        amount = float(rows["pnl_known"].sum())
        totals.setdefault(currency, []).append(amount)
        more = f" (+{unknown} positions unknown)" if unknown else ""
        lines.append(f"{acct} {currency} {format_cents(amount)}{more}")
    for currency, amounts in sorted(totals.items()):
        lines.append(
            f"total {currency} {format_cents(sum(amounts))} ({len(amounts)} account{'s' if len(amounts) > 1 else ''})"
        )
    return lines


def last_closed_day(history: pl.DataFrame, now: datetime) -> date | None:
    closed = sorted(d for d in history[TRADE_DATE].unique().to_list() if is_closed(d, now)) if history.height else []
    return closed[-1] if closed else None


def last_closed_session_text(history: pl.DataFrame, now: datetime, in_base: pl.DataFrame | None = None) -> str:
    """One line per account, then the per-currency totals (short lines: the UI shows the whole text, no scrolling)::

    2026-11-16 (last closed session)
    DU1 USD 1,234.56
    DU3 USD -98.10
    total USD 1,136.46 (2 accounts)
    no base-currency total: ...
    """
    day = last_closed_day(history, now)
    if day is None:
        return "n/a: no closed session with daily_pnl rows in the last sessions (compute them: see README)"
    rows = history.filter(pl.col(TRADE_DATE) == day).sort("account", "currency")
    accounts = [f"{r['account']} {r['currency']} {_amount(r)}" for r in rows.iter_rows(named=True)]
    totals = []
    for currency in sorted(rows["currency"].unique().to_list()):
        of = rows.filter(pl.col("currency") == currency)
        known = of.filter(pl.col("positions") > pl.col("unknown_pnl_positions"))
        amount = format_cents(float(known["pnl_known"].sum())) if known.height else "n/a (pnl unknown)"
        totals.append(f"total {currency} {amount} ({of.height} account{'s' if of.height > 1 else ''})")
    return "\n".join([f"{day} (last closed session)", *accounts, *totals, *base_currency_lines(in_base)])


def history_chart(history: pl.DataFrame, now: datetime, *, simulated: bool) -> Any:
    """PnL of the last sessions, one line per account (and currency), from the stored daily_pnl."""
    days = sorted(history[TRADE_DATE].unique().to_list()) if history.height else []
    series: dict[str, list[float | None]] = {}
    for key in history.select("account", "currency").unique().sort("account", "currency").iter_rows():
        of = history.filter((pl.col("account") == key[0]) & (pl.col("currency") == key[1]))
        known = {
            r[TRADE_DATE]: (r["pnl_known"] if r["positions"] > r["unknown_pnl_positions"] else None)
            for r in of.iter_rows(named=True)
        }
        series[f"{key[0]} ({key[1]})"] = [known.get(d) for d in days]
    pre_open = [d.isoformat() for d in days if now < sessions.session_open(d)]
    note = f"{', '.join(pre_open)}: {PRE_OPEN} (not a trading result)." if pre_open else ""
    return line_chart_markdown(
        [d.isoformat() + (" pre-open" if d.isoformat() in pre_open else "") for d in days],
        series,
        title=f"Daily PnL per account, last {len(days)} sessions",
        unit="known PnL (own currency)",
        simulated=simulated,
        table_note=note + (" " if note else "") + "n/a: no position or PnL unknown (never 0).",
    )


def overview_metadata(lake: Lake, days: Sequence[date], now: datetime, *, simulated: bool) -> dict[str, Any]:
    """The first entries of daily_pnl's materialization: status, the last closed session's totals, the history."""
    history = pnl_history(lake, days[-1])
    status = (
        session_status(days[0], now)
        if len(days) == 1
        else f"{days[-1]}: {session_status(days[-1], now)} (every session's status: pnl_by_session)"
    )
    day = last_closed_day(history, now)
    in_base = None
    if day is not None:
        fx = account.fx_rates_for(lake, [day])
        in_base = analytics.pnl_by_account(lake.read_sessions(DAILY_PNL, [day]), fx) if fx is not None else None
    return {
        "session_status": status,
        "last_closed_session_pnl": last_closed_session_text(history, now, in_base),
        "pnl_history_chart": history_chart(history, now, simulated=simulated),
    }
