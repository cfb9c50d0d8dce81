"""``position_events``: what happened to each position in a session, from the EOD states and the executions.

Per account x con_id x session: the position at the previous cut, then one event per execution in time order
(classified by the position before and after it: opened, increased, reduced, closed, reversed), then what the
executions do not account for (position at the cut minus the previous position minus the executed quantity). IB
sends no execution for an expiry, exercise or assignment (``contracts.lifecycle``), so that remainder is the
lifecycle:

- an option whose remainder is matched by a stock position of the same account and underlying changing by the
  delivered shares (``delivered_shares``; the stock's own remainder: the fewest options whose shares add up) was
  **exercised** (a long option) or **assigned** (a short one); the stock gets a row of the same event, linked;
- otherwise an option at or past its expiry **expired** -- or was exercised/assigned for cash when its cut mark
  (the intrinsic value) is above 0 (index and futures options settle in cash);
- anything else is **unexplained** (e.g. executions missed by the stream).

Pure polars, no I/O.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date
from itertools import combinations

import polars as pl

from v6_assets.analytics._common import require_columns
from v6_assets.contracts.lifecycle import DELIVERY_SEC_TYPE, UNEXPLAINED
from v6_assets.contracts.lifecycle_tables import POSITION_EVENTS
from v6_assets.contracts.tables import CONTRACT_COLUMNS, TRADE_DATE

KEY = [TRADE_DATE, "account", "con_id"]
OPTION_SEC_TYPES = ("OPT", "FOP")
EOD_INPUT = (*KEY, *CONTRACT_COLUMNS[2:], "position", "market_price", "position_changed_at")
PREV_INPUT = (*KEY, "prev_position")
EXEC_INPUT = (TRADE_DATE, "account", "con_id", "exec_id", "exec_time", "quantity", "price", "commission")
_EPS = 1e-9
MAX_DELIVERING = 8  # options tried together for one stock change (a day's lifecycle remainders: a handful)


def _trade_event(before: pl.Expr, after: pl.Expr) -> pl.Expr:
    return (
        pl.when(before == 0)
        .then(pl.lit("opened"))
        .when(after == 0)
        .then(pl.lit("closed"))
        .when((before > 0) != (after > 0))
        .then(pl.lit("reversed"))
        .when(after.abs() > before.abs())
        .then(pl.lit("increased"))
        .otherwise(pl.lit("reduced"))
    )


# the columns an execution row and a lifecycle row both carry, in the table's order
_EVENT_COLUMNS = (
    "event",
    "event_at",
    "quantity",
    "position_before",
    "position_after",
    "price",
    "commission",
    "exec_id",
)


def position_events(
    eod: pl.DataFrame, prev: pl.DataFrame, executions: pl.DataFrame, baseline_days: Collection[date] = ()
) -> pl.DataFrame:
    """``eod``: eod_positions rows of the sessions; ``prev``: (trade_date = D, account, con_id, prev_position) the
    position at D-1's cut; ``executions``: the sessions' executions (one row per execution, latest revision, with
    ``trade_date`` = the execution's session). ``baseline_days``: sessions whose D-1 state is unknown (the stream's
    first): a position is then taken to have started where its executions leave it (no lifecycle row is
    inferred). Returns POSITION_EVENTS rows."""
    require_columns(eod, EOD_INPUT, "eod_positions")
    require_columns(prev, PREV_INPUT, "previous positions")
    require_columns(executions, EXEC_INPUT, "executions")
    contract = [c for c in CONTRACT_COLUMNS if c not in ("account", "con_id")]
    executed_sum = executions.group_by(KEY).agg(pl.col("quantity").sum().alias("_executed"))
    unknown = pl.col(TRADE_DATE).is_in(list(baseline_days)) & pl.col("prev_position").is_null()
    base = (
        eod.select(*EOD_INPUT)
        .join(prev.select(PREV_INPUT), on=KEY, how="left")
        .join(executed_sum, on=KEY, how="left")
        .with_columns(pl.col("position").fill_null(0.0))
        .with_columns(
            prev_position=pl.when(unknown)
            .then(pl.col("position") - pl.col("_executed").fill_null(0.0))
            .otherwise(pl.col("prev_position").fill_null(0.0))
        )
        .drop("_executed")
    )
    fills = (
        executions.select(EXEC_INPUT)
        .join(base.select(*KEY, "prev_position", *contract), on=KEY, how="inner")
        .sort([*KEY, "exec_time", "exec_id"])
        .with_columns(position_after=pl.col("prev_position") + pl.col("quantity").cum_sum().over(KEY))
        .with_columns(position_before=pl.col("position_after") - pl.col("quantity"))
        .with_columns(
            event=_trade_event(pl.col("position_before"), pl.col("position_after")), event_at=pl.col("exec_time")
        )
    )
    executed = fills.group_by(KEY).agg(pl.col("quantity").sum().alias("executed"))
    rest = (
        base.join(executed, on=KEY, how="left")
        .with_columns(start=pl.col("prev_position") + pl.col("executed").fill_null(0.0))
        .with_columns(quantity=pl.col("position") - pl.col("start"))
        .filter(pl.col("quantity").abs() > _EPS)
    )
    lifecycle = _lifecycle(rest)
    rows = pl.concat(
        [
            fills.select(
                *KEY,
                *contract,
                *_EVENT_COLUMNS,
                pl.lit(None, pl.Int64).alias("linked_con_id"),
                pl.lit(None, pl.Float64).alias("linked_quantity"),
                pl.lit(0).alias("_order"),
            ),
            lifecycle.with_columns(
                pl.lit(None, pl.Float64).alias("commission"),
                pl.lit(None, pl.String).alias("exec_id"),
                pl.lit(1).alias("_order"),
            ).select(
                *KEY,
                *contract,
                *_EVENT_COLUMNS,
                "linked_con_id",
                "linked_quantity",
                "_order",
            ),
        ],
        how="vertical_relaxed",
    )
    rows = rows.sort([*KEY, "_order", "event_at"], nulls_last=True).with_columns(
        seq=pl.int_range(1, pl.len() + 1).over(KEY).cast(pl.Int64)
    )
    return rows.select(POSITION_EVENTS.column_names).cast(dict(POSITION_EVENTS.polars_schema))  # type: ignore[arg-type]


def _lifecycle(rest: pl.DataFrame) -> pl.DataFrame:
    """The remainders (``quantity``, from ``start`` to ``position``) as lifecycle rows, option and stock legs."""
    where = [TRADE_DATE, "account", "symbol"]
    option = pl.col("sec_type").is_in(OPTION_SEC_TYPES)
    sign = pl.when(pl.col("right") == "C").then(1.0).when(pl.col("right") == "P").then(-1.0).otherwise(None)
    options = rest.filter(option).with_columns(
        shares=-pl.col("quantity") * pl.col("multiplier").fill_null(100.0) * sign,
        side=pl.when(pl.col("start") > 0).then(pl.lit("exercised")).otherwise(pl.lit("assigned")),
    )
    stock = rest.filter(pl.col("sec_type") == DELIVERY_SEC_TYPE).select(
        *where,
        pl.col("con_id").alias("stock_con_id"),
        pl.col("quantity").alias("stock_change"),
        pl.col("start").alias("stock_start"),
    )
    legs = _delivering(options, stock, where)
    linked = (
        options.join(stock, on=where, how="left")
        .join(legs.with_columns(matched=pl.lit(True)), on=KEY, how="left")
        .with_columns(pl.col("matched").fill_null(False))
    )
    expired = (pl.col("expiry") <= pl.col(TRADE_DATE)).fill_null(False)
    cash = expired & (pl.col("market_price").fill_null(0.0) > 0)
    option_rows = linked.with_columns(
        event=pl.when(pl.col("matched") | cash)
        .then(pl.col("side"))
        .when(expired)
        .then(pl.lit("expired"))
        .otherwise(pl.lit(UNEXPLAINED)),
        price=pl.when(pl.col("matched") | (expired & ~cash)).then(0.0).when(cash).then(pl.col("market_price")),
        linked_con_id=pl.when(pl.col("matched")).then(pl.col("stock_con_id")),
        linked_quantity=pl.when(pl.col("matched")).then(pl.col("shares")),
        position_before=pl.col("start"),
        position_after=pl.col("position"),
        event_at=pl.col("position_changed_at"),
    )
    matched = option_rows.filter(pl.col("matched"))
    stock_legs = (
        matched.sort([*where, "con_id"])
        .with_columns(
            quantity=pl.col("shares"),
            position_after=pl.col("stock_start") + pl.col("shares").cum_sum().over(where),
        )
        .select(
            *where,
            "event",
            "event_at",
            "quantity",
            "position_after",
            pl.col("strike").alias("price"),
            pl.col("con_id").alias("linked_con_id"),
            pl.col("quantity").alias("linked_quantity"),
            pl.col("stock_con_id").alias("con_id"),
        )
        .with_columns(position_before=pl.col("position_after") - pl.col("quantity"))
    )
    legs_of = matched.select(*where, pl.col("stock_con_id").alias("con_id")).unique()
    stock_info = rest.filter(pl.col("sec_type") == DELIVERY_SEC_TYPE)
    contract = [c for c in CONTRACT_COLUMNS if c not in ("account", "con_id", "symbol")]
    stock_rows = stock_legs.join(
        stock_info.select(TRADE_DATE, "account", "con_id", *contract, pl.col("position_changed_at").alias("_at")),
        on=[TRADE_DATE, "account", "con_id"],
    ).with_columns(pl.coalesce("_at", "event_at").alias("event_at"))
    unmatched_stock = stock_info.join(legs_of, on=[*where, "con_id"], how="anti").with_columns(
        event=pl.lit(UNEXPLAINED),
        price=pl.lit(None, pl.Float64),
        linked_con_id=pl.lit(None, pl.Int64),
        linked_quantity=pl.lit(None, pl.Float64),
        position_before=pl.col("start"),
        position_after=pl.col("position"),
        event_at=pl.col("position_changed_at"),
    )
    cols = [
        *KEY,
        *[c for c in CONTRACT_COLUMNS if c not in ("account", "con_id")],
        "event",
        "event_at",
        "quantity",
        "position_before",
        "position_after",
        "price",
        "linked_con_id",
        "linked_quantity",
    ]
    return pl.concat(
        [option_rows.select(cols), stock_rows.select(cols), unmatched_stock.select(cols)], how="vertical_relaxed"
    )


def _delivering(options: pl.DataFrame, stock: pl.DataFrame, where: list[str]) -> pl.DataFrame:
    """The options (KEY rows) whose delivered shares add up to their stock's change: the fewest options that do, per
    account x underlying x session (groups are a handful of rows: the lifecycle remainders of one day)."""
    out: list[dict[str, object]] = []
    candidates = options.filter(pl.col("sec_type") == "OPT").join(stock, on=where, how="inner")
    for (day, account, _symbol), group in candidates.group_by(where, maintain_order=True):
        rows = [(r["con_id"], r["shares"]) for r in group.iter_rows(named=True) if r["shares"] is not None]
        target = group["stock_change"][0]
        for size in range(1, min(len(rows), MAX_DELIVERING) + 1):
            found = next((c for c in combinations(rows, size) if abs(sum(s for _, s in c) - target) < _EPS), None)
            if found is not None:
                out += [{TRADE_DATE: day, "account": account, "con_id": con_id} for con_id, _ in found]
                break
    return pl.DataFrame(out, schema={TRADE_DATE: pl.Date, "account": pl.String, "con_id": pl.Int64})
