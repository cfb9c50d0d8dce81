"""The second, independent daily PnL: IB's statement mark-to-market rebuilt from the book (marks and executions).

    statement_pnl = prev_q x (mark_D - mark_{D-1}) x m                     (position MTM)
                  + sum over the session's executions q_i x (mark_D - p_i) x m   (transaction MTM)
                  - commissions

It shares no input with ``daily_pnl``'s average-cost figure (IB's unrealized/realized PnL) except the marks' source
rows: where both exist they must agree to the cent, and where they cannot the ``reason`` says why. A quantity change
without an execution (an expiry, exercise or assignment, which IB books overnight without execDetails, or a fill
outside the stream's window) is booked as if traded at mark_D (so it adds nothing to the transaction MTM: the
statement's convention for an expiry at intrinsic) and named in ``reason``. When the position is flat at the cut its
mark_D cancels out (prev_q + sum q_i = 0), so a flat position needs no mark. Pure polars, no I/O.
"""

from __future__ import annotations

import polars as pl

from v6_assets.analytics._common import require_columns
from v6_assets.contracts.tables import BOOK_PNL, CONTRACT_COLUMNS, TRADE_DATE

_KEYS = [TRADE_DATE, "account", "con_id"]
DAILY_INPUT = (TRADE_DATE, *CONTRACT_COLUMNS, "position", "prev_position", "pnl", "is_baseline", "ib_daily_pnl")
MARK_INPUT = (*_KEYS, "mark", "is_stale_mark", "is_expired")
PREV_MARK_INPUT = (*_KEYS, "prev_mark")
EXECUTION_INPUT = (*_KEYS, "quantity", "price", "commission", "multiplier")


def eod_marks(eod: pl.DataFrame) -> pl.DataFrame:
    """Per (session, account, con_id) the EOD mark: the fresher of updatePortfolio's market price and reqPnLSingle's
    value / (position x multiplier) (the portfolio window serves one account at a time; PnL-single serves all)."""
    require_columns(eod, (*_KEYS, "market_price", "position", "multiplier", "ib_value"), "eod_positions")
    names = eod.columns
    portfolio_at = pl.col("portfolio_at") if "portfolio_at" in names else pl.lit(None, pl.Datetime("us", "UTC"))
    pnl_at = pl.col("pnl_single_at") if "pnl_single_at" in names else pl.lit(None, pl.Datetime("us", "UTC"))
    units = pl.col("position") * pl.col("multiplier")
    from_pnl = pl.when(units != 0).then(pl.col("ib_value") / units)
    pnl_fresher = pnl_at.is_not_null() & (portfolio_at.is_null() | (pnl_at > portfolio_at))
    mark = (
        pl.when(pnl_fresher & from_pnl.is_not_null())
        .then(from_pnl)
        .otherwise(pl.coalesce(pl.col("market_price"), from_pnl))
    )
    flags = [
        (pl.col(c) if c in names else pl.lit(False)).fill_null(False).alias(c) for c in ("is_stale_mark", "is_expired")
    ]
    return eod.select(*_KEYS, mark.alias("mark"), *flags)


def book_pnl(
    daily: pl.DataFrame,
    marks: pl.DataFrame,
    prev_marks: pl.DataFrame,
    executions: pl.DataFrame,
    bookings: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """``book_pnl`` rows (the contract's columns) from daily_pnl's rows, the EOD marks of D (``eod_marks``), the
    marks of D-1 keyed by D (``prev_mark``) and the session's executions (``book_executions`` with ``trade_date``).

    ``bookings``: IB's lifecycle bookings (position_events' expired / exercised / assigned rows: ``trade_date``,
    account, con_id, quantity, price = IB's booking price; no execution, no commission). They enter the formula like
    a fill at that price (so a physically settled option closes at 0 and its stock leg opens at the strike, as IB's
    statement books them) but are not counted as executions."""
    require_columns(daily, DAILY_INPUT, "daily_pnl")
    require_columns(marks, MARK_INPUT, "marks")
    require_columns(prev_marks, PREV_MARK_INPUT, "previous marks")
    require_columns(executions, EXECUTION_INPUT, "executions")
    if bookings is None:
        bookings = pl.DataFrame(schema={**{k: daily.schema[k] for k in _KEYS}, "quantity": pl.Float64,
                                        "price": pl.Float64})  # fmt: skip
    booked = bookings.group_by(_KEYS).agg(
        pl.col("quantity").sum().alias("_bq"), (pl.col("quantity") * pl.col("price")).sum().alias("_bqp")
    )
    fills = executions.group_by(_KEYS).agg(
        pl.len().cast(pl.Int64).alias("executions"),
        pl.col("quantity").sum().alias("executed_quantity"),
        (pl.col("quantity") * pl.col("price")).sum().alias("_qp"),
        pl.col("commission").sum().alias("_commission_sum"),
        pl.col("commission").null_count().alias("_missing_commissions"),
        pl.col("multiplier").first().alias("_exec_multiplier"),
    )
    daily_source = pl.col("pnl_source") if "pnl_source" in daily.columns else pl.lit(None, pl.String)
    rows = (
        daily.select(*DAILY_INPUT, daily_source.alias("_daily_source"))
        .with_columns(pl.lit(True).alias("_held"))
        .join(fills, on=_KEYS, how="full", coalesce=True)
        .join(booked, on=_KEYS, how="left")
        .join(marks.select(MARK_INPUT), on=_KEYS, how="left")
        .join(prev_marks.select(PREV_MARK_INPUT), on=_KEYS, how="left")
    )
    m = pl.coalesce("multiplier", "_exec_multiplier")
    n = pl.col("executions").fill_null(0)
    xq, qp = pl.col("executed_quantity").fill_null(0.0), pl.col("_qp").fill_null(0.0)
    bq, bqp = pl.col("_bq").fill_null(0.0), pl.col("_bqp").fill_null(0.0)
    q = pl.col("position").fill_null(0.0)
    opened = pl.col("is_baseline").fill_null(False) & (n > 0) & ((q - xq) == 0)
    pq = pl.when(opened).then(0.0).otherwise(pl.col("prev_position").fill_null(0.0))
    mark, prev_mark = pl.col("mark"), pl.col("prev_mark")
    unexplained = q - pq - xq - bq
    missing = pl.col("_missing_commissions").fill_null(0)
    commissions = pl.when(n == 0).then(0.0).when(missing == 0).then(pl.col("_commission_sum"))
    term_now = pl.when(q == 0).then(0.0).otherwise(q * mark)
    term_prev = pl.when(pq == 0).then(0.0).otherwise(pq * prev_mark)
    term_gap = pl.when(unexplained == 0).then(0.0).otherwise(unexplained * mark)
    statement = m * (term_now - term_prev - qp - bqp - term_gap) - commissions
    held = pl.col("_held").fill_null(False)
    # a position held before the stream's first session: its previous quantity and mark are unknown
    # (unless the session's executions explain the whole position: then it was opened during D, from 0)
    baseline = pl.col("is_baseline").fill_null(False) & ~opened
    statement = pl.when(held & ~baseline).then(statement)
    # gone at its expiry session without an execution: expired (worthless or at intrinsic)
    expired = pl.col("is_expired").fill_null(False) | (
        ((unexplained != 0) | (bq != 0)) & (q == 0) & (pl.col("expiry") <= pl.col(TRADE_DATE)).fill_null(False)
    )
    reasons = pl.concat_list(
        pl.when(~held).then(pl.lit("execution for a position the book does not hold")),
        pl.when(baseline).then(pl.lit("baseline: held before the stream's first session (no previous cut)")),
        pl.when(~baseline & (pq != 0) & prev_mark.is_null()).then(pl.lit("no mark at the previous cut")),
        pl.when((q != 0) & mark.is_null()).then(pl.lit("no mark at the cut")),
        pl.when(missing > 0).then(pl.format("commission not known for {} execution(s)", missing)),
        pl.when(expired).then(pl.lit("expiry (booked at the expiry mark)")),
        pl.when((bq != 0) & ~expired).then(pl.format("exercise/assignment: {} booked by IB (no execution)", bq)),
        pl.when((unexplained != 0) & ~baseline & ~expired).then(
            pl.format(
                "quantity change of {} without an execution (exercise, assignment or a fill outside the stream's "
                "window)",
                unexplained,
            )
        ),
        pl.when((q != 0) & pl.col("is_stale_mark").fill_null(False)).then(pl.lit("stale mark at the cut")),
    ).list.drop_nulls()
    out = rows.with_columns(
        m.alias("multiplier"),
        q.alias("position"),
        pq.alias("prev_position"),
        n.alias("executions"),
        xq.alias("executed_quantity"),
        unexplained.alias("unexplained_quantity"),
        (pl.when(pq == 0).then(0.0).otherwise(pq * (mark - prev_mark)) * m).alias("position_mtm"),
        (pl.when((n == 0) & (bq == 0)).then(0.0).otherwise(mark * (xq + bq) - qp - bqp) * m).alias("transaction_mtm"),
        commissions.alias("commissions"),
        statement.alias("statement_pnl"),
        pl.when(pl.col("pnl").is_not_null())
        .then(pl.format("daily_pnl:{}", pl.col("_daily_source").fill_null("average_cost")))
        .alias("pnl_source"),
        (statement - pl.col("pnl")).alias("statement_minus_pnl"),
        pl.when(reasons.list.len() > 0).then(reasons.list.join("; ")).alias("reason"),
    )
    schema = BOOK_PNL.polars_schema
    return out.select([pl.col(c).cast(schema[c]) for c in BOOK_PNL.column_names]).sort(_KEYS)
