"""The accounts' side of the daily run: ``account_eod`` from the streamed ``account_values`` and ``account_pnl`` from
it, ``daily_pnl`` and (where ingested) the Flex statements' deposits/withdrawals. No Dagster import here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import polars as pl

from v6_assets import sessions
from v6_assets.analytics.account import account_eod, account_pnl, fx_rates_at_cut
from v6_assets.contracts.money import amounts_disagree_expr
from v6_assets.contracts.statement_tables import STATEMENT_CASH, STATEMENT_FILES
from v6_assets.contracts.tables import ACCOUNT_EOD, ACCOUNT_PNL, ACCOUNT_VALUES, DAILY_PNL, EOD_POSITIONS, TRADE_DATE
from v6_assets.lake import Lake, OverwriteResult
from v6_assets.pipeline.daily import MissingUpstreamError

# Flex CashTransaction types that move money into or out of the account (ibflex CashAction.DEPOSITWITHDRAW)
DEPOSIT_TYPES: tuple[str, ...] = ("Deposits/Withdrawals", "Deposits & Withdrawals")
PROBLEM_COLUMNS = ("key", "currency", "problem")


def _values_up_to(lake: Lake, last: date) -> pl.DataFrame:
    """Every account value received at or before the cut of ``last`` (IB sends a value when it changed, so earlier
    sessions' values are carried)."""
    if not lake.exists(ACCOUNT_VALUES):
        raise MissingUpstreamError(
            f"{ACCOUNT_EOD.name} cannot be computed: {ACCOUNT_VALUES.name} was never written (the stream has not "
            "reported any account value yet: is reqAccountUpdatesMulti answered?). Nothing was written."
        )
    return lake.scan(ACCOUNT_VALUES).filter(pl.col(TRADE_DATE) <= last).collect()


@dataclass(frozen=True)
class AccountEodRun:
    frame: pl.DataFrame
    written: OverwriteResult
    # account_values rows of the sessions with a problem, per (key, currency, problem): counted errors
    bad_values: pl.DataFrame
    values_read: int


def bad_account_values(values: pl.DataFrame, days: Sequence[date]) -> pl.DataFrame:
    """The account values of ``days`` the streamer flagged (value null, raw text kept), counted per key/problem."""
    flagged = values.filter(pl.col(TRADE_DATE).is_in(list(days)) & pl.col("problem").is_not_null())
    return (
        flagged.group_by(TRADE_DATE, "account", *PROBLEM_COLUMNS)
        .agg(pl.len().alias("rows"), pl.col("value_text").last().alias("last_text"))
        .sort(TRADE_DATE, "account", "key", "currency")
    )


def refresh_account_eod(lake: Lake, days: Sequence[date]) -> AccountEodRun:
    """account_eod of ``days``, one partition overwrite. A session without any account value at or before its cut
    fails the run (never an empty, green partition)."""
    values = _values_up_to(lake, days[-1])
    frame = account_eod(values, days)
    empty = [d for d in days if d not in set(frame[TRADE_DATE].to_list())]
    if empty:
        shown = ", ".join(d.isoformat() for d in empty[:5]) + (", ..." if len(empty) > 5 else "")
        raise MissingUpstreamError(
            f"{ACCOUNT_EOD.name} cannot be computed for {shown}: no account value was received at or before the "
            f"cut ({ACCOUNT_VALUES.name} starts later or the accounts were never subscribed). Nothing was written."
        )
    written = lake.overwrite_sessions(ACCOUNT_EOD, frame, days)
    return AccountEodRun(frame, written, bad_account_values(values, days), values.height)


def previous_account_eod(lake: Lake, first: date) -> pl.DataFrame | None:
    """account_eod of the session before ``first``: stored, else derived from the stream; None when unknown."""
    previous = sessions.previous_session(first)
    stored = lake.read_sessions(ACCOUNT_EOD, [previous]) if lake.exists(ACCOUNT_EOD) else None
    if stored is not None and stored.height:
        return stored
    if not lake.exists(ACCOUNT_VALUES):
        return None
    derived = account_eod(_values_up_to(lake, previous), [previous])
    return derived if derived.height else None


def deposits_withdrawals(lake: Lake, days: Sequence[date]) -> pl.DataFrame | None:
    """Per (session, account) with an ingested Flex statement: its deposits minus withdrawals in the base currency
    (0 when the statement lists none). Accounts/sessions without a statement are absent (unknown); a deposit whose
    rate to base is missing makes the figure unknown (absent), never converted at 1."""
    if not lake.exists(STATEMENT_FILES):
        return None
    ledger = lake.read_sessions(STATEMENT_FILES, days).select(TRADE_DATE, "account", "base_currency").unique()
    if not ledger.height:
        return None
    cash = lake.read_sessions(STATEMENT_CASH, days) if lake.exists(STATEMENT_CASH) else None
    moves = (
        cash.filter(pl.col("type").is_in(list(DEPOSIT_TYPES)))
        if cash is not None
        else pl.DataFrame(schema=STATEMENT_CASH.polars_schema)
    )
    rate = pl.when(pl.col("currency") == pl.col("base_currency")).then(1.0).otherwise(pl.col("fx_rate_to_base"))
    per_account = (
        moves.join(ledger, on=[TRADE_DATE, "account"], how="inner")
        .group_by(TRADE_DATE, "account")
        .agg((pl.col("amount") * rate).sum().alias("_sum"), (rate.is_null()).any().alias("_unknown"))
    )
    return (
        ledger.join(per_account, on=[TRADE_DATE, "account"], how="left")
        .filter(~pl.col("_unknown").fill_null(False))
        .select(TRADE_DATE, "account", pl.col("_sum").fill_null(0.0).alias("deposits_withdrawals"))
    )


@dataclass(frozen=True)
class AccountPnlRun:
    frame: pl.DataFrame
    written: OverwriteResult
    flows_known: int


def refresh_account_pnl(lake: Lake, days: Sequence[date]) -> AccountPnlRun:
    """account_pnl of ``days`` from the stored account_eod and daily_pnl, one partition overwrite. account_eod or
    daily_pnl of a session that has EOD positions but was never computed fails the run."""
    eod = lake.read_sessions(ACCOUNT_EOD, days) if lake.exists(ACCOUNT_EOD) else pl.DataFrame()
    have = set(eod[TRADE_DATE].to_list()) if eod.height else set()
    missing = [d for d in days if d not in have]
    if missing:
        raise MissingUpstreamError(
            f"{ACCOUNT_PNL.name} cannot be computed: {ACCOUNT_EOD.name} for "
            f"{', '.join(d.isoformat() for d in missing[:5])} was never computed: materialize it first. "
            "Nothing was written."
        )
    daily = lake.read_sessions(DAILY_PNL, days)
    positions = lake.read_sessions(EOD_POSITIONS, days)[TRADE_DATE].unique().to_list()
    without = sorted(set(positions) - set(daily[TRADE_DATE].unique().to_list()))
    if without:
        raise MissingUpstreamError(
            f"{ACCOUNT_PNL.name} cannot be computed: {DAILY_PNL.name} for {', '.join(map(str, without[:5]))} was "
            "never computed: materialize it first. Nothing was written."
        )
    flows = deposits_withdrawals(lake, days)
    frame = account_pnl(daily, eod, previous_account_eod(lake, days[0]), flows)
    written = lake.overwrite_sessions(ACCOUNT_PNL, frame, days)
    return AccountPnlRun(frame, written, 0 if flows is None else flows.height)


@dataclass(frozen=True)
class NetLiquidationComparison:
    """The account rows' positions' PnL (base) against their net liquidation PnL: ``compared`` rows where both are
    known, ``off`` those differing by more than the tolerance, ``accounts`` account rows in the sessions."""

    compared: int
    off: pl.DataFrame
    not_compared: pl.DataFrame
    accounts: int

    @property
    def passed(self) -> bool:
        return self.off.height == 0 and self.compared > 0


COMPARISON_COLUMNS = (TRADE_DATE, "account", "currency", "pnl", "net_liquidation_pnl", "pnl_minus_net_liquidation",
                      "reason")  # fmt: skip


def positions_against_net_liquidation(lake: Lake, days: Sequence[date], tolerance: float) -> NetLiquidationComparison:
    rows = lake.read_sessions(ACCOUNT_PNL, days).filter(pl.col("level") == "account")
    both = rows.filter(pl.col("pnl").is_not_null() & pl.col("net_liquidation_pnl").is_not_null())
    off = both.filter(amounts_disagree_expr(pl.col("pnl"), pl.col("net_liquidation_pnl"), tolerance))
    not_compared = rows.filter(pl.col("pnl").is_null() | pl.col("net_liquidation_pnl").is_null())
    return NetLiquidationComparison(
        both.height, off.select(COMPARISON_COLUMNS), not_compared.select(COMPARISON_COLUMNS), rows.height
    )


def fx_rates_for(lake: Lake, days: Sequence[date]) -> pl.DataFrame | None:
    """The FX rates at the cuts of ``days`` (``fx_rates_at_cut``): stored account_eod where computed, else derived
    from the stream; None when no account value was ever streamed."""
    if not lake.exists(ACCOUNT_VALUES):
        return None
    stored = lake.read_sessions(ACCOUNT_EOD, days) if lake.exists(ACCOUNT_EOD) else pl.DataFrame()
    have = set(stored[TRADE_DATE].to_list()) if stored.height else set()
    rest = [d for d in days if d not in have]
    frames = [stored] if stored.height else []
    if rest:
        frames.append(account_eod(_values_up_to(lake, rest[-1]), rest))
    frames = [f for f in frames if f.height]
    return fx_rates_at_cut(pl.concat(frames)) if frames else None
