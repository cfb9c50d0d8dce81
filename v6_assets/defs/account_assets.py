"""The accounts' assets: ``account_eod`` (each account at the cut) and ``account_pnl`` (daily PnL per account, in the
position currency and the base currency, next to the change in net liquidation).

    account_values ──> account_eod ──┐
    daily_pnl ───────────────────────┴─> account_pnl   (check: positions_match_net_liquidation)

The rules (FX at the cut, which PnL is summed, net liquidation net of deposits/withdrawals) are stated in
``v6_assets.analytics.account``; the computation is ``v6_assets.pipeline.account``; this module declares the assets,
their checks, charts and metadata.
"""

from collections.abc import Sequence
from datetime import date
from typing import Any

import polars as pl
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    AssetDep,
    AssetExecutionContext,
    BackfillPolicy,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)
from matplotlib.figure import Figure

from v6_assets import sessions
from v6_assets.contracts.money import HALF_CENT, format_cents
from v6_assets.contracts.tables import ACCOUNT_BASE_ROW, ACCOUNT_EOD, ACCOUNT_PNL, ACCOUNT_VALUES, DAILY_PNL, TRADE_DATE
from v6_assets.defs.assets import _SIM_NOTE, GROUP_DAILY, SIMULATED, _common_metadata, run_sessions
from v6_assets.defs.checks import check_sessions
from v6_assets.defs.freshness import DAILY_FRESHNESS
from v6_assets.defs.metadata import (
    largest_rows_preview,
    line_chart_markdown,
    markdown_table,
    png_data_uri,
    range_label,
    records_table,
)
from v6_assets.defs.metadata import table_schema as contract_schema
from v6_assets.defs.partitions import trading_day_partitions
from v6_assets.defs.resources import LakeResource
from v6_assets.lake import Lake
from v6_assets.pipeline import account
from v6_assets.pipeline.daily import MissingUpstreamError

HISTORY_SESSIONS = 20
_SIM = " (SIMULATED)" if SIMULATED else ""
_AV, _AE, _PNL = ACCOUNT_VALUES.name, ACCOUNT_EOD.name, DAILY_PNL.name

ACCOUNT_EOD_LINEAGE: dict[str, list[tuple[str, str]]] = {
    "account": [(_AV, "account")],
    "currency": [(_AV, "currency")],
    "base_currency": [(_AV, "currency"), (_AV, "value_text")],
    **{
        c: [(_AV, "value"), (_AV, "key")]
        for c in (
            "net_liquidation",
            "total_cash_value",
            "init_margin_req",
            "maint_margin_req",
            "available_funds",
            "excess_liquidity",
            "cash_balance",
            "fx_rate",
            "cash_balance_base",
        )
    },
    "values_at": [(_AV, "received_at")],
    "problem": [(_AV, "problem"), (_AV, "value_text")],
}
ACCOUNT_PNL_LINEAGE: dict[str, list[tuple[str, str]]] = {
    "account": [(_PNL, "account"), (_AE, "account")],
    "currency": [(_PNL, "currency"), (_AE, "base_currency")],
    "base_currency": [(_AE, "base_currency")],
    "positions": [(_PNL, "con_id")],
    "unknown_pnl_positions": [(_PNL, "pnl")],
    "pnl": [(_PNL, "pnl")],
    "fx_rate": [(_AE, "fx_rate")],
    "pnl_base": [(_PNL, "pnl"), (_AE, "fx_rate")],
    "net_liquidation": [(_AE, "net_liquidation")],
    "prev_net_liquidation": [(_AE, "net_liquidation")],
    "net_liquidation_change": [(_AE, "net_liquidation")],
    "net_liquidation_pnl": [(_AE, "net_liquidation")],
    "pnl_minus_net_liquidation": [(_PNL, "pnl"), (_AE, "fx_rate"), (_AE, "net_liquidation")],
    "reason": [(_AE, "problem"), (_PNL, "pnl")],
}


def _fail(context: Any, exc: MissingUpstreamError) -> Failure:
    context.log.error(str(exc))
    return Failure(description=str(exc), allow_retries=False)


def _money_records(frame: pl.DataFrame, columns: Sequence[str], money: Sequence[str]) -> list[dict[str, Any]]:
    rows = []
    for r in frame.iter_rows(named=True):
        row = {c: (format_cents(r[c]) if c in money else r[c]) for c in columns}
        rows.append({c: (v.isoformat() if isinstance(v, date) else v) for c, v in row.items()})
    return rows


_EOD_TABLE = (
    (TRADE_DATE, "string", "Session."),
    ("account", "string", "IB account."),
    ("currency", "string", "'BASE' = the account's figures in its base currency; else one currency's cash and rate."),
    ("base_currency", "string", "Base currency."),
    ("net_liquidation", "string", "NetLiquidation (base), to the cent; n/a = unknown."),
    ("total_cash_value", "string", "TotalCashValue (base)."),
    ("cash_balance", "string", "CashBalance in the row's currency."),
    ("fx_rate", "float", "ExchangeRate (base per unit of the row's currency)."),
    ("init_margin_req", "string", "InitMarginReq (base)."),
    ("maint_margin_req", "string", "MaintMarginReq (base)."),
    ("available_funds", "string", "AvailableFunds (base)."),
    ("excess_liquidity", "string", "ExcessLiquidity (base)."),
    ("problem", "string", "Why a figure is unknown."),
)
_EOD_MONEY = ("net_liquidation", "total_cash_value", "cash_balance", "init_margin_req", "maint_margin_req",
              "available_funds", "excess_liquidity")  # fmt: skip


_DAILY: dict[str, Any] = {
    "partitions_def": trading_day_partitions,
    "backfill_policy": BackfillPolicy.single_run(),
    "kinds": {"polars", "deltalake"},
    "group_name": GROUP_DAILY,
    "freshness_policy": DAILY_FRESHNESS,
}


@asset(
    **_DAILY,
    deps=[AssetDep(_AV)],
    description=ACCOUNT_EOD.description
    + " Values of earlier sessions are carried (IB sends a value when it changed)."
    + _SIM_NOTE,
    metadata={"dagster/column_schema": contract_schema(ACCOUNT_EOD), "dagster/table_name": ACCOUNT_EOD.name},
)
def account_eod(context: AssetExecutionContext, lake: LakeResource) -> MaterializeResult:
    days = run_sessions(context)
    try:
        run = account.refresh_account_eod(lake.lake(), days)
    except MissingUpstreamError as exc:
        raise _fail(context, exc) from None
    frame = run.frame
    base = frame.filter(pl.col("currency") == ACCOUNT_BASE_ROW)
    with_problem = frame.filter(pl.col("problem").is_not_null())
    last = frame.filter(pl.col(TRADE_DATE) == days[-1])
    return MaterializeResult(
        metadata={
            **_common_metadata(ACCOUNT_EOD, frame, days, run.written, ACCOUNT_EOD_LINEAGE),
            "covers": range_label(days),
            "preview": largest_rows_preview(
                base,
                "net_liquidation",
                [TRADE_DATE, "account", "base_currency", "net_liquidation", "total_cash_value", "excess_liquidity"],
                title="Largest net liquidation" + _SIM,
            ),
            "accounts": base["account"].n_unique(),
            "account_values_read": run.values_read,
            "rows_with_unknown_figures": with_problem.height,
            "bad_account_values": int(run.bad_values["rows"].sum()) if run.bad_values.height else 0,
            "bad_account_values_by_key": markdown_table(
                run.bad_values.head(30), [TRADE_DATE, "account", "key", "currency", "problem", "rows", "last_text"]
            ),
            "accounts_at_last_cut": records_table(
                _money_records(last, [c for c, _, _ in _EOD_TABLE], _EOD_MONEY), _EOD_TABLE
            ),
            "net_liquidation_chart": net_liquidation_chart(lake.lake(), days[-1]),
        }
    )


@asset_check(
    asset=account_eod,
    name="figures_known_at_cut",
    blocking=False,
    description=(
        "Every account of the run's sessions has its base currency, NetLiquidation, TotalCashValue, margin, "
        "AvailableFunds and ExcessLiquidity at the cut and a usable ExchangeRate for every currency it holds; the "
        "account values the streamer flagged (an ExchangeRate of 0 or a sentinel, an unknown currency, a text that "
        "is not a number) are counted. No account at all is a failure, never a pass."
    ),
)
def figures_known_at_cut(context: AssetCheckExecutionContext, lake: LakeResource) -> AssetCheckResult:
    lk = lake.lake()
    days = check_sessions(context, lk, ACCOUNT_EOD.name)
    frame = lk.read_sessions(ACCOUNT_EOD, days)
    unknown = frame.filter(pl.col("problem").is_not_null())
    bad = account.bad_account_values(lk.scan(ACCOUNT_VALUES).filter(pl.col(TRADE_DATE).is_in(days)).collect(), days)
    bad_rows = int(bad["rows"].sum()) if bad.height else 0
    accounts = frame.filter(pl.col("currency") == ACCOUNT_BASE_ROW).height
    if not accounts:
        verdict = "no account in account_eod for these sessions: nothing checked"
    else:
        verdict = (
            f"{frame.height} rows of {accounts} account-sessions checked: {unknown.height} with unknown figures, "
            f"{bad_rows} bad account values received"
        )
    return AssetCheckResult(
        passed=accounts > 0 and unknown.height == 0 and bad_rows == 0,
        severity=AssetCheckSeverity.ERROR,
        description=verdict,
        metadata={
            "sessions": [d.isoformat() for d in days],
            "rows_checked": frame.height,
            "account_sessions": accounts,
            "rows_with_unknown_figures": unknown.height,
            "bad_account_values": bad_rows,
            "unknown_figures": markdown_table(unknown.head(30), [TRADE_DATE, "account", "currency", "problem"]),
            "bad_values": markdown_table(bad.head(30), [TRADE_DATE, "account", "key", "currency", "problem", "rows"]),
        },
    )


_PNL_TABLE = (
    (TRADE_DATE, "string", "Session."),
    ("account", "string", "IB account."),
    ("level", "string", "currency: one position currency; account: the base-currency total."),
    ("currency", "string", "Currency of pnl."),
    ("positions", "int", "Positions of the row."),
    ("pnl", "string", "Sum of the positions' daily PnL (daily_pnl.pnl) in the row's currency; n/a = unknown."),
    ("fx_rate", "float", "ExchangeRate at the cut (base per unit)."),
    ("pnl_base", "string", "pnl in the base currency (FX at the cut)."),
    ("net_liquidation", "string", "NetLiquidation at the cut (base)."),
    ("net_liquidation_pnl", "string", "Change of NetLiquidation since the previous cut, net of known transfers."),
    ("pnl_minus_net_liquidation", "string", "pnl_base - net_liquidation_pnl."),
    ("reason", "string", "Why a figure is unknown, what the comparison cannot see."),
)
_PNL_MONEY = ("pnl", "pnl_base", "net_liquidation", "net_liquidation_pnl", "pnl_minus_net_liquidation")


@asset(
    **_DAILY,
    deps=[AssetDep(_AE), AssetDep(_PNL)],
    description=ACCOUNT_PNL.description
    + " FX rule: a currency's whole daily PnL at its ExchangeRate at the session's cut; no usable rate -> null with "
    "the reason. Positions' PnL = daily_pnl.pnl (average cost; IB's daily PnL on a baseline session)." + _SIM_NOTE,
    metadata={"dagster/column_schema": contract_schema(ACCOUNT_PNL), "dagster/table_name": ACCOUNT_PNL.name},
)
def account_pnl(context: AssetExecutionContext, lake: LakeResource) -> MaterializeResult:
    days = run_sessions(context)
    lk = lake.lake()
    try:
        run = account.refresh_account_pnl(lk, days)
    except MissingUpstreamError as exc:
        raise _fail(context, exc) from None
    frame = run.frame
    totals = frame.filter(pl.col("level") == "account")
    last = frame.filter(pl.col(TRADE_DATE) == days[-1])
    history = lk.read_sessions(ACCOUNT_PNL, sessions.last_sessions(HISTORY_SESSIONS, days[-1]))
    return MaterializeResult(
        metadata={
            **_common_metadata(ACCOUNT_PNL, frame, days, run.written, ACCOUNT_PNL_LINEAGE),
            "covers": range_label(days),
            "rules": MetadataValue.md(
                "- positions' PnL: daily_pnl.pnl summed per account x position currency (null if one is unknown)\n"
                "- base currency: the currency's ExchangeRate at the session's cut (account_eod); no usable rate: "
                "null with the reason\n- net liquidation PnL: NetLiquidation(cut D) - NetLiquidation(cut D-1) - "
                "deposits/withdrawals (Flex statement_cash where ingested, else unknown and said so)"
            ),
            "preview": largest_rows_preview(
                totals,
                "pnl",
                [
                    TRADE_DATE,
                    "account",
                    "currency",
                    "pnl",
                    "net_liquidation_pnl",
                    "pnl_minus_net_liquidation",
                    "reason",
                ],
                title="Largest account PnL (base currency)" + _SIM,
            ),
            "accounts": totals["account"].n_unique(),
            "account_sessions_with_base_pnl": totals.filter(pl.col("pnl").is_not_null()).height,
            "account_sessions_without_base_pnl": totals.filter(pl.col("pnl").is_null()).height,
            "account_sessions_with_known_transfers": run.flows_known,
            "account_pnl_last_session": records_table(
                _money_records(last, [c for c, _, _ in _PNL_TABLE], _PNL_MONEY), _PNL_TABLE
            ),
            "account_pnl_chart": account_pnl_bars(history),
            "net_liquidation_chart": net_liquidation_chart(lk, days[-1]),
        }
    )


@asset_check(
    asset=account_pnl,
    name="positions_match_net_liquidation",
    blocking=False,
    description=(
        "Per account and session, the positions' daily PnL in the base currency agrees to the cent with the change "
        "in net liquidation (net of known deposits/withdrawals). A difference is a warning: net liquidation also "
        "moves with what the option book does not hold (stock, cash interest, fees, FX on cash) and unknown "
        "transfers. Reports the rows compared; comparing none while accounts exist never passes."
    ),
)
def positions_match_net_liquidation(context: AssetCheckExecutionContext, lake: LakeResource) -> AssetCheckResult:
    lk = lake.lake()
    days = check_sessions(context, lk, ACCOUNT_PNL.name)
    found = account.positions_against_net_liquidation(lk, days, HALF_CENT)
    worst = found.off["pnl_minus_net_liquidation"].abs().max() if found.off.height else None
    if found.compared == 0:
        verdict = f"compared nothing: {found.accounts} account rows, none with both figures known"
    else:
        verdict = f"{found.compared} account-sessions compared, {found.off.height} differ by more than a cent"
    columns = list(account.COMPARISON_COLUMNS)
    return AssetCheckResult(
        passed=found.passed,
        severity=AssetCheckSeverity.WARN,
        description=verdict,
        metadata={
            "sessions": [d.isoformat() for d in days],
            "compared_rows": found.compared,
            "account_rows": found.accounts,
            "differ": found.off.height,
            "not_compared": found.not_compared.height,
            "max_abs_difference": format_cents(float(worst) if isinstance(worst, int | float) else None),
            "differences": markdown_table(found.off.head(30), columns),
            "not_compared_rows": markdown_table(found.not_compared.head(30), columns),
        },
    )


def account_pnl_bars(history: pl.DataFrame) -> MetadataValue:
    """Grouped bars: each account's base-currency PnL per session (an unknown one is a gap, listed as n/a)."""
    title = f"Account PnL in base currency, last {HISTORY_SESSIONS} sessions"
    totals = history.filter(pl.col("level") == "account").sort(TRADE_DATE, "account")
    heading = f"**{title}**" + (" (SIMULATED data)" if SIMULATED else "")
    if not totals.height:
        return MetadataValue.md(f"{heading}\n\n_no data_")
    days = sorted(totals[TRADE_DATE].unique().to_list())
    accounts = totals.select("account", "currency").unique().sort("account").rows()
    fig = Figure(figsize=(7.5, 3.2), dpi=80)
    ax = fig.subplots()
    width = 0.8 / max(len(accounts), 1)
    lines = ["| session | " + " | ".join(f"{a} ({c})" for a, c in accounts) + " |", "|---|" + "---:|" * len(accounts)]
    values: dict[tuple[str, str | None], dict[date, float | None]] = {
        (a, c): {r[TRADE_DATE]: r["pnl"] for r in totals.filter(pl.col("account") == a).iter_rows(named=True)}
        for a, c in accounts
    }
    for i, key in enumerate(accounts):
        ys = [values[key].get(d) for d in days]
        xs = [j + i * width for j, y in enumerate(ys) if y is not None]
        ax.bar(xs, [y for y in ys if y is not None], width=width, label=f"{key[0]} ({key[1]})")
    for d in days:
        lines.append(f"| {d} | " + " | ".join(format_cents(values[k].get(d)) for k in accounts) + " |")
    ax.axhline(0, color="#555555", linewidth=0.8)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(days))], [d.isoformat()[5:] for d in days], rotation=60,
                  fontsize=7)  # fmt: skip
    ax.set_ylabel("PnL (base currency)", fontsize=8)
    ax.legend(fontsize=7, loc="best")
    ax.set_title(title + _SIM, fontsize=10)
    note = "\n\nn/a: unknown (a position's PnL or the FX rate at the cut unknown), never 0."
    return MetadataValue.md(f"{heading}\n\n![{title}]({png_data_uri(fig)})\n\n" + "\n".join(lines) + note)


def net_liquidation_chart(lk: Lake, last: date) -> MetadataValue:
    """Net liquidation (base currency) of each account at the cuts of the last sessions, from account_eod."""
    days = sessions.last_sessions(HISTORY_SESSIONS, last)
    rows = lk.read_sessions(ACCOUNT_EOD, days).filter(pl.col("currency") == ACCOUNT_BASE_ROW).sort(TRADE_DATE)
    stored = sorted(rows[TRADE_DATE].unique().to_list())
    series: dict[str, list[float | None]] = {}
    for (acct, base), of in rows.group_by("account", "base_currency", maintain_order=True):
        by_day = {r[TRADE_DATE]: r["net_liquidation"] for r in of.iter_rows(named=True)}
        series[f"{acct} ({base})"] = [by_day.get(d) for d in stored]
    return line_chart_markdown(
        [d.isoformat() for d in stored],
        dict(sorted(series.items())),
        title=f"Net liquidation at the cut, last {len(stored)} sessions",
        unit="net liquidation (base currency)",
        simulated=SIMULATED,
        table_note="n/a: NetLiquidation unknown at the cut (never 0).",
    )


ACCOUNT_ASSETS: list[Any] = [account_eod, account_pnl]


def account_checks() -> Sequence[AssetChecksDefinition]:
    return [figures_known_at_cut, positions_match_net_liquidation]
