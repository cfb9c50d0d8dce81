"""Accounts at the EOD cut and their daily PnL in the base currency. Pure polars, no I/O.

``account_eod``: per account and session, the latest account value at or before the session's EOD cut per (key,
currency), ordered by (received_at, spool_offset) like every other "last" of the project (IB sends a value only when
it changed, so a value from an earlier session is carried). The base currency is NetLiquidation's currency (else
the value of IB's ``Currency`` key). Account-level figures (NetLiquidation, TotalCashValue, margin, AvailableFunds,
ExcessLiquidity) are read in the base currency (currency = base, else IB's 'BASE'); cash and ExchangeRate per
currency. A value that is missing or unusable (``problem`` set by the streamer: an ExchangeRate of 0, negative or a
sentinel, a text that is not a number, a currency that is not a code) leaves the figure null with the reason: no
earlier "good" value is substituted, nothing is invented.

``account_pnl``, the rules:
- Positions' PnL = daily_pnl.pnl (average cost; IB's own daily PnL on a baseline session, pnl_source ib_daily),
  summed per account x position currency; null when one position's PnL is unknown (never a partial total).
- FX: the whole day's PnL of a currency is converted at the ExchangeRate of that currency at the session's cut
  (account_eod of D, IB's account window: base units per unit). A currency without a usable rate at the cut has
  ``pnl_base`` null with the reason, and so does the account total (never converted at 1, never left out).
- Net liquidation PnL = NetLiquidation at the cut of D - at the cut of D-1, minus deposits/withdrawals of D when the
  Flex statement gives them (else unknown and said so). It covers everything the account holds (stock, cash
  interest, fees, FX moves of cash balances), the positions' sum only the option book.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date

import polars as pl

from v6_assets import sessions as nyse
from v6_assets.analytics._common import require_columns, strict_sum
from v6_assets.contracts.tables import ACCOUNT_BASE_ROW, ACCOUNT_EOD, ACCOUNT_PNL, TRADE_DATE

ACCOUNT_VALUE_INPUT = ("account", "key", "currency", "value", "value_text", "problem", "received_at", "spool_offset")
# account_eod's account-level figures: column -> IB key (in the base currency)
ACCOUNT_FIGURES: dict[str, str] = {
    "net_liquidation": "NetLiquidation",
    "total_cash_value": "TotalCashValue",
    "init_margin_req": "InitMarginReq",
    "maint_margin_req": "MaintMarginReq",
    "available_funds": "AvailableFunds",
    "excess_liquidity": "ExcessLiquidity",
}
DAILY_INPUT = (TRADE_DATE, "account", "currency", "pnl")
FLOWS_INPUT = (TRADE_DATE, "account", "deposits_withdrawals")
_NO_CURRENCY = frozenset({"", ACCOUNT_BASE_ROW})
_UTC_US = pl.Datetime("us", "UTC")


def latest_at_cuts(values: pl.DataFrame, days: Sequence[date]) -> pl.DataFrame:
    """Per session of ``days`` the latest row at or before its cut per (account, key, currency), with trade_date."""
    require_columns(values, ACCOUNT_VALUE_INPUT, "account_values")
    ordered = values.select(ACCOUNT_VALUE_INPUT).sort("received_at", "spool_offset", maintain_order=True)
    frames = []
    for day in days:
        cut = nyse.eod_cut(day).astimezone(UTC)
        last = (
            ordered.filter(pl.col("received_at") <= cut)
            .group_by("account", "key", "currency", maintain_order=True)
            .last()
        )
        frames.append(last.with_columns(pl.lit(day, pl.Date).alias(TRADE_DATE)))
    if not frames:
        return ordered.clear().with_columns(pl.lit(None, pl.Date).alias(TRADE_DATE))
    return pl.concat(frames)


def _figure(latest: pl.DataFrame, key: str, alias: str) -> pl.DataFrame:
    """One account-level figure per (trade_date, account): the row in the base currency, else IB's 'BASE' one."""
    in_base = (pl.col("currency") == pl.col("_base")).fill_null(False) | (pl.col("currency") == ACCOUNT_BASE_ROW)
    rows = latest.filter((pl.col("key") == key) & in_base)
    preferred = rows.sort(pl.col("currency") == ACCOUNT_BASE_ROW).group_by(TRADE_DATE, "account").first()
    problem = (
        pl.when(pl.col("value").is_null())
        .then(pl.format("{}: {}", pl.lit(key), pl.coalesce("problem", pl.format("not a number: '{}'", "value_text"))))
        .alias(f"_problem_{alias}")
    )
    return preferred.select(TRADE_DATE, "account", pl.col("value").alias(alias), problem, pl.col("received_at"))


def account_eod(values: pl.DataFrame, days: Sequence[date]) -> pl.DataFrame:
    """``account_eod`` rows (the contract's columns) for ``days`` from the account_values rows (all of them up to the
    last cut: earlier sessions' values are carried)."""
    latest = latest_at_cuts(values, days)
    keys = latest.select(TRADE_DATE, "account").unique()
    is_code = ~pl.col("currency").is_in(list(_NO_CURRENCY))
    net_liq_currency = (
        latest.filter((pl.col("key") == "NetLiquidation") & is_code)
        .group_by(TRADE_DATE, "account")
        .agg(pl.col("currency").first().alias("_net_liq_base"))
    )
    currency_key = (
        latest.filter((pl.col("key") == "Currency") & pl.col("problem").is_null())
        .group_by(TRADE_DATE, "account")
        .agg(pl.col("value_text").first().alias("_currency_key"))
    )
    bases = (
        keys.join(net_liq_currency, on=[TRADE_DATE, "account"], how="left")
        .join(currency_key, on=[TRADE_DATE, "account"], how="left")
        .select(TRADE_DATE, "account", pl.coalesce("_net_liq_base", "_currency_key").alias("_base"))
    )
    latest = latest.join(bases, on=[TRADE_DATE, "account"], how="left")

    # the 'BASE' row: account figures and CashBalance BASE
    base_rows = bases
    used_at = []
    problems: list[pl.Expr] = [pl.when(pl.col("_base").is_null()).then(pl.lit("base currency unknown"))]
    for column, key in {**ACCOUNT_FIGURES, "cash_balance": "CashBalance"}.items():
        figure = _figure(latest, key, column).rename({"received_at": f"_at_{column}"})
        base_rows = base_rows.join(figure, on=[TRADE_DATE, "account"], how="left")
        used_at.append(pl.col(f"_at_{column}"))
        problems.append(
            pl.coalesce(
                pl.col(f"_problem_{column}"),
                pl.when(pl.col(column).is_null()).then(pl.lit(f"no {key} at or before the cut")),
            )
        )
    base_rows = base_rows.with_columns(
        pl.lit(ACCOUNT_BASE_ROW).alias("currency"),
        pl.col("_base").alias("base_currency"),
        pl.lit(1.0).alias("fx_rate"),
        pl.col("cash_balance").alias("cash_balance_base"),
        pl.max_horizontal(used_at).alias("values_at"),
        pl.concat_list(problems).list.drop_nulls().list.join("; ").alias("problem"),
    )

    # one row per other currency: CashBalance and ExchangeRate in that currency
    per_currency = latest.filter(pl.col("key").is_in(["CashBalance", "ExchangeRate"]) & is_code)
    currencies = per_currency.select(TRADE_DATE, "account", "currency", "_base").unique()
    for key, column in (("CashBalance", "cash_balance"), ("ExchangeRate", "fx_rate")):
        of_key = per_currency.filter(pl.col("key") == key).select(
            TRADE_DATE,
            "account",
            "currency",
            pl.col("value").alias(column),
            pl.when(pl.col("value").is_null())
            .then(
                pl.format("{}: {}", pl.lit(key), pl.coalesce("problem", pl.format("not a number: '{}'", "value_text")))
            )
            .alias(f"_problem_{column}"),
            pl.col("received_at").alias(f"_at_{column}"),
        )
        currencies = currencies.join(of_key, on=[TRADE_DATE, "account", "currency"], how="left")
    is_base = pl.col("currency") == pl.col("_base")
    fx = pl.when(is_base & pl.col("fx_rate").is_null() & pl.col("_problem_fx_rate").is_null()).then(1.0)
    currency_rows = currencies.with_columns(fx.otherwise(pl.col("fx_rate")).alias("fx_rate")).with_columns(
        pl.col("_base").alias("base_currency"),
        (pl.col("cash_balance") * pl.col("fx_rate")).alias("cash_balance_base"),
        pl.max_horizontal("_at_cash_balance", "_at_fx_rate").alias("values_at"),
        pl.concat_list(
            pl.col("_problem_cash_balance"),
            pl.col("_problem_fx_rate"),
            pl.when(pl.col("fx_rate").is_null() & pl.col("_problem_fx_rate").is_null()).then(
                pl.format("no ExchangeRate for {} at or before the cut", "currency")
            ),
        )
        .list.drop_nulls()
        .list.join("; ")
        .alias("problem"),
    )
    schema = ACCOUNT_EOD.polars_schema
    out = pl.concat(
        [
            f.select(
                [
                    pl.col(c).cast(schema[c]) if c in f.columns else pl.lit(None, schema[c]).alias(c)
                    for c in ACCOUNT_EOD.column_names
                ]
            )
            for f in (base_rows, currency_rows)
        ]
    )
    return out.with_columns(pl.when(pl.col("problem") != "").then(pl.col("problem")).alias("problem")).sort(
        TRADE_DATE, "account", pl.col("currency") != ACCOUNT_BASE_ROW, "currency"
    )


def account_pnl(
    daily: pl.DataFrame, eod: pl.DataFrame, previous_eod: pl.DataFrame | None, flows: pl.DataFrame | None
) -> pl.DataFrame:
    """``account_pnl`` rows of the sessions of ``eod`` (account_eod of the sessions), ``previous_eod`` (account_eod of
    the session before the first, or None when unknown), ``daily`` (daily_pnl of the sessions) and ``flows``
    (trade_date, account, deposits_withdrawals in the base currency; None or absent rows = unknown)."""
    require_columns(daily, DAILY_INPUT, "daily_pnl")
    require_columns(eod, ACCOUNT_EOD.column_names, "account_eod")
    days = sorted(set(eod[TRADE_DATE].to_list()) | set(daily[TRADE_DATE].to_list()))
    base = eod.filter(pl.col("currency") == ACCOUNT_BASE_ROW)
    rates = eod.filter(pl.col("currency") != ACCOUNT_BASE_ROW).select(
        TRADE_DATE, "account", "currency", "fx_rate", pl.col("problem").alias("_fx_problem")
    )
    by_currency = (
        daily.group_by(TRADE_DATE, "account", "currency")
        .agg(
            pl.len().cast(pl.Int64).alias("positions"),
            pl.col("pnl").null_count().cast(pl.Int64).alias("unknown_pnl_positions"),
            strict_sum("pnl").alias("pnl"),
        )
        .join(base.select(TRADE_DATE, "account", "base_currency"), on=[TRADE_DATE, "account"], how="left")
        .join(rates, on=[TRADE_DATE, "account", "currency"], how="left")
    )
    is_base = (pl.col("currency") == pl.col("base_currency")).fill_null(False)
    fx = pl.when(is_base).then(pl.lit(1.0)).otherwise(pl.col("fx_rate"))
    currency_rows = by_currency.with_columns(fx.alias("fx_rate")).with_columns(
        pl.lit("currency").alias("level"),
        (pl.col("pnl") * pl.col("fx_rate")).alias("pnl_base"),
        pl.concat_list(
            pl.when(pl.col("unknown_pnl_positions") > 0).then(
                pl.format("daily PnL unknown for {} position(s)", "unknown_pnl_positions")
            ),
            pl.when(pl.col("base_currency").is_null()).then(pl.lit("no account values at the cut (base unknown)")),
            pl.when(pl.col("base_currency").is_not_null() & pl.col("fx_rate").is_null()).then(
                pl.format(
                    "no usable ExchangeRate for {} at the cut: {}",
                    "currency",
                    pl.col("_fx_problem").fill_null("not reported"),
                )
            ),
        )
        .list.drop_nulls()
        .alias("_reasons"),
    )
    totals = currency_rows.group_by(TRADE_DATE, "account").agg(
        pl.col("positions").sum(),
        pl.col("unknown_pnl_positions").sum(),
        strict_sum("pnl_base").alias("pnl_base"),
        pl.col("_reasons").list.explode(keep_nulls=False, empty_as_null=False).alias("_reasons"),
    )
    previous = (
        base if previous_eod is None else pl.concat([previous_eod.filter(pl.col("currency") == ACCOUNT_BASE_ROW), base])
    )
    following = {nyse.previous_session(d): d for d in days}
    prev_net = previous.filter(pl.col(TRADE_DATE).is_in(list(following))).select(
        pl.col(TRADE_DATE).replace_strict(following, return_dtype=pl.Date),
        "account",
        pl.col("net_liquidation").alias("prev_net_liquidation"),
        pl.col("base_currency").alias("_prev_base"),
    )
    keys = pl.concat([base.select(TRADE_DATE, "account"), totals.select(TRADE_DATE, "account")]).unique()
    flows_frame = (
        flows.select(FLOWS_INPUT).with_columns(pl.lit(True).alias("_flows_known"))
        if flows is not None
        else pl.DataFrame(
            schema={
                TRADE_DATE: pl.Date,
                "account": pl.String,
                "deposits_withdrawals": pl.Float64,
                "_flows_known": pl.Boolean,
            }
        )
    )
    accounts = (
        keys.join(
            base.select(TRADE_DATE, "account", "base_currency", "net_liquidation"),
            on=[TRADE_DATE, "account"],
            how="left",
        )
        .join(totals, on=[TRADE_DATE, "account"], how="left")
        .join(prev_net, on=[TRADE_DATE, "account"], how="left")
        .join(flows_frame, on=[TRADE_DATE, "account"], how="left")
    )
    change = pl.col("net_liquidation") - pl.col("prev_net_liquidation")
    flows_known = pl.col("_flows_known").fill_null(False)
    base_changed = (pl.col("_prev_base") != pl.col("base_currency")).fill_null(False)
    net_pnl = (
        pl.when(base_changed)
        .then(None)
        .when(flows_known)
        .then(change - pl.col("deposits_withdrawals"))
        .otherwise(change)
    )
    held = pl.col("positions").fill_null(0) > 0
    account_rows = accounts.with_columns(
        pl.lit("account").alias("level"),
        pl.col("base_currency").alias("currency"),
        pl.col("positions").fill_null(0),
        pl.col("unknown_pnl_positions").fill_null(0),
        pl.col("pnl_base").alias("pnl"),
        pl.when(pl.col("base_currency").is_not_null()).then(pl.lit(1.0)).alias("fx_rate"),
        change.alias("net_liquidation_change"),
        net_pnl.alias("net_liquidation_pnl"),
        (pl.col("pnl_base") - net_pnl).alias("pnl_minus_net_liquidation"),
        pl.concat_list(
            pl.col("_reasons").fill_null([]),
            pl.when(~held).then(pl.lit("no option position in daily_pnl: no positions' PnL to compare")),
            pl.when(pl.col("net_liquidation").is_null()).then(pl.lit("no NetLiquidation at the cut")),
            pl.when(pl.col("net_liquidation").is_not_null() & pl.col("prev_net_liquidation").is_null()).then(
                pl.lit("no NetLiquidation at the previous cut")
            ),
            pl.when(base_changed).then(pl.lit("base currency changed since the previous cut")),
            pl.when(~flows_known).then(
                pl.lit(
                    "deposits/withdrawals unknown (no Flex statement_cash for the session): the net liquidation "
                    "change may include transfers"
                )
            ),
        )
        .list.drop_nulls()
        .list.unique(maintain_order=True)
        .alias("_reasons"),
    )
    schema = ACCOUNT_PNL.polars_schema

    def shaped(frame: pl.DataFrame) -> pl.DataFrame:
        frame = frame.with_columns(
            pl.when(pl.col("_reasons").list.len() > 0).then(pl.col("_reasons").list.join("; ")).alias("reason")
        )
        return frame.select([pl.col(c).cast(schema[c]) if c in frame.columns else pl.lit(None, schema[c]).alias(c)
                             for c in ACCOUNT_PNL.column_names])  # fmt: skip

    out = pl.concat([shaped(account_rows), shaped(currency_rows)])
    return out.sort(TRADE_DATE, "account", pl.col("level") != "account", "currency")


def fx_rates_at_cut(eod: pl.DataFrame) -> pl.DataFrame:
    """account_eod's usable rates as ``to_reporting_currency``'s fx_rates (trade_date, account, currency,
    base_currency, fx_rate): the base currency at 1, other currencies where the rate at the cut is usable."""
    require_columns(eod, ACCOUNT_EOD.column_names, "account_eod")
    known = eod.filter(
        (pl.col("currency") != ACCOUNT_BASE_ROW)
        & pl.col("fx_rate").is_not_null()
        & pl.col("base_currency").is_not_null()
    )
    return known.select(TRADE_DATE, "account", "currency", "base_currency", "fx_rate")
