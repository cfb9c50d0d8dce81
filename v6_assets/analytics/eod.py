"""End-of-day positions: the last known state of every (account, con_id) at each session's EOD cut.

Definitions (the shared notes on PnL and exposure, README "Definitions"):

- Trading day D = an NYSE session (America/New_York). Its EOD cut = close + 15 min: 16:15 ET, 13:15 ET on an
  early-close day (``v6_assets.sessions.eod_cut``). EOD state of D = the last update at or before the cut, ordered
  by (received_at, spool_offset). A position_updates row is the FULL merged state of (account, con_id).
- Positions without an update during D are carried forward (``carried_forward``) from the previous state.
- A closed position (position 0) stays in the EOD of the session it closed in (``is_closed``) and is not carried
  further. A position re-reported flat in a later session (no quantity change in that session: IB's lingering
  expired rows, or a row stamped just after the previous cut) creates no row there.
- ``position_changed_at``: receive time of the last update at or before the cut whose position differs from the
  one before it (trades and expiries change the quantity; carried forward like ``portfolio_at``). ``daily_pnl``
  uses it to tell which realized-PnL figures were reported after the session's last trade.
- Expiry: an option still open (position != 0) in a session after its expiry date is closed by the expiry at its last
  mark: the row shows position 0, market value and unrealized PnL 0, ``is_closed`` and ``is_expired`` true (its
  realized PnL is booked by ``daily_pnl``). From the second session after the expiry, the contract is dropped (also
  lingering zero-quantity rows IB may keep sending).
- Marks: ``mark_age_s`` = cut - the last report of either valuation stream (updatePortfolio or reqPnLSingle);
  ``is_stale_mark`` (open positions only: a flat one needs no mark) when older than ``stale_mark_after`` or never
  marked.
- Greeks (by con_id): the last greeks_updates row with a known delta at or before the cut, whatever its tick type;
  ``greeks_age_s`` = cut - its received_at. ``missing_greeks`` (open positions only): delta, gamma, vega, theta or the
  underlying price unknown. Stocks and futures get delta 1, gamma/vega/theta 0 and their own mark as underlying price.
"""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl

from v6_assets.analytics._common import (
    EOD_POSITIONS_SCHEMA,
    GREEK_COLUMNS,
    GREEKS_UPDATES_REQUIRED,
    GREEKS_UPDATES_SCHEMA,
    POSITION_KEY,
    POSITION_SOURCES,
    POSITION_UPDATES_REQUIRED,
    POSITION_UPDATES_SCHEMA,
    STATE_COLUMNS,
    UTC_US,
    AnalyticsInputError,
    Frame,
    cast_present_columns,
    check_frame,
    check_no_nulls,
    check_no_sentinels,
    require_columns,
    seconds_between,
    session_window,
    validate_sessions,
)

DEFAULT_STALE_MARK_AFTER = timedelta(minutes=30)

POSITION_NUMBERS: tuple[str, ...] = (
    "strike",
    "multiplier",
    "position",
    "average_cost",
    "market_price",
    "market_value",
    "unrealized_pnl",
    "realized_pnl",
    "ib_daily_pnl",
    "ib_unrealized_pnl",
    "ib_realized_pnl",
    "ib_value",
)
LINEAR_SEC_TYPES: tuple[str, ...] = ("STK", "FUT")  # delta 1 per unit by definition, no model greeks


def _bucket(cuts: pl.Series) -> pl.Expr:
    """Index of the first cut at or after received_at: 0 = at/before the previous session's cut, n+1 = after."""
    return pl.lit(cuts.dt.epoch("us")).search_sorted(pl.col("received_at").dt.epoch("us"), side="left").cast(pl.Int32)


# The one order of updates: "last" everywhere below means the last row by (received_at, spool_offset).
UPDATE_ORDER: tuple[str, ...] = ("received_at", "spool_offset")


# Descriptive text columns of the position stream: the same few values on millions of rows, needed only on each
# bucket's last row. Read as Categorical (4 bytes a row instead of a 16-byte string view plus its bytes), the cast
# done per morsel by the streaming engine, and turned back into text after the last rows are gathered: at 10M
# updates this was over a GiB of the peak memory.
COMPACT_TEXT: tuple[str, ...] = (
    "symbol", "sec_type", "right", "currency", "exchange", "trading_class", "local_symbol", "source",
)  # fmt: skip


def _read_window(
    frame: Frame,
    required: tuple[str, ...],
    schema: dict[str, pl.DataType],
    cuts: pl.Series,
    keep_before: bool,
    what: str,
    compact: tuple[str, ...] = (),
) -> pl.DataFrame:
    """The ``required`` columns of the rows up to the last cut (after the first one unless ``keep_before``), with
    their bucket ``_idx`` (in the scan's row order: see :func:`_update_order`).

    One query: the projection and the time-window filter reach the scan (a Delta/parquet scan reads only those
    columns and skips row groups outside the window); earlier history only when no previous EOD is given.
    """
    require_columns(frame, required, what)
    lazy = (frame.lazy() if isinstance(frame, pl.DataFrame) else frame).select(required)
    ts = lazy.collect_schema()["received_at"]
    if not isinstance(ts, pl.Datetime) or ts.time_zone is None:
        raise AnalyticsInputError(f"{what}: received_at must be a time-zone aware Datetime, got {ts}")
    if ts != UTC_US:
        lazy = lazy.with_columns(pl.col("received_at").dt.convert_time_zone("UTC").cast(UTC_US))
    window = pl.col("received_at") <= cuts[-1]
    if not keep_before:
        window = window & (pl.col("received_at") > cuts[0])
    texts = [c for c in compact if c in required]
    try:
        texts_in = [pl.col(c).cast(pl.String).cast(pl.Categorical) for c in texts]
        df = lazy.filter(window).with_columns(texts_in).collect(engine="streaming")
    except (pl.exceptions.InvalidOperationError, pl.exceptions.ComputeError) as exc:
        raise AnalyticsInputError(f"{what}: a column has values of the wrong type: {exc}") from exc
    other = {c: t for c, t in schema.items() if c not in texts}
    return cast_present_columns(df, other, what).with_columns(_bucket(cuts).alias("_idx"))


def _update_order(df: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """``columns`` of ``df`` and ``_row`` (the row's index in ``df``), sorted by (received_at, spool_offset).

    Only an index is sorted (two integer columns; nothing moves when the rows are already in order) and only these
    narrow columns are gathered: the wide state columns are gathered afterwards for each group's last row only. In
    update order "last per group" is a plain ``.last()`` and the position-change scan runs inside the group_by,
    with no sort by the string keys (measured: the full-width sort was most of the time at 10M rows).
    """
    narrow = df.select(*columns, pl.int_range(pl.len(), dtype=pl.UInt32).alias("_row"))  # (with_row_index rechunks)
    order = df.select(pl.arg_sort_by(list(UPDATE_ORDER), maintain_order=True))[:, 0]
    if order.is_sorted():  # a sorted permutation is the identity
        return narrow
    return narrow.select(pl.all().gather(order))


def _gather_last(df: pl.DataFrame, per_group: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """``per_group`` (one row per group, ``_row`` = its last row in ``df``) with ``columns`` of those rows."""
    values = df.select(pl.col(columns).gather(per_group["_row"]))
    return per_group.drop("_row").hstack(values)


def _validate_updates(updates: Frame, cuts: pl.Series, keep_before: bool) -> pl.DataFrame:
    what = "position_updates"
    df = _read_window(
        updates, POSITION_UPDATES_REQUIRED, POSITION_UPDATES_SCHEMA, cuts, keep_before, what, COMPACT_TEXT
    )
    check_frame(
        df,
        what,
        not_null=["account", "con_id", "received_at", "spool_offset", "source"],
        no_sentinels=POSITION_NUMBERS,
        rules=[
            (pl.col("account") == "", "have an empty account"),
            (~pl.col("source").is_in(POSITION_SOURCES), f"have a source outside {POSITION_SOURCES}"),
            (pl.col("multiplier") <= 0, "have a multiplier <= 0 (unknown must be null)"),
            (pl.col("market_price") < 0, "have a negative market price (IB sentinel -1?)"),
        ],
    )
    return df


def _validate_greeks(greeks: Frame, cuts: pl.Series, keep_before: bool) -> pl.DataFrame:
    what = "greeks_updates"
    df = _read_window(greeks, GREEKS_UPDATES_REQUIRED, GREEKS_UPDATES_SCHEMA, cuts, keep_before, what)
    # IB's "not computed" sentinels are -1 (implied vol, underlying price) and -2 (delta, gamma, vega, theta).
    check_frame(
        df,
        what,
        not_null=["con_id", "received_at", "spool_offset"],
        no_sentinels=GREEK_COLUMNS,
        rules=[
            (pl.col("delta").abs() > 1.0 + 1e-9, "have |delta| > 1 (IB sentinel -2?)"),
            (pl.col("gamma") < 0, "have a negative gamma (IB sentinel -2?)"),
            (pl.col("vega") < 0, "have a negative vega (IB sentinel -2?)"),
            (pl.col("implied_vol") < 0, "have a negative implied vol (IB sentinel -1?)"),
            (pl.col("und_price") <= 0, "have an underlying price <= 0 (IB sentinel -1?)"),
        ],
    )
    return df


def _position_state(upd: pl.DataFrame, starting: pl.DataFrame | None) -> pl.LazyFrame:
    """Per (account, con_id, _idx): the last update's state, the last report of each valuation stream, and
    ``position_changed_at`` -- the receive time of the bucket's last update whose position differs from the key's
    update before it.

    ``upd`` is in update order (:func:`_read_window`). The key's first update compares with ``starting`` (the
    previous EOD's open positions; a key absent from it was flat) -- or with flat when the whole history is given.
    A quantity changes only through a trade or an expiry, so the last change before the cut tells which
    realized-PnL figures were reported after D's last trade. Changes inside a bucket are found in the group_by
    itself (shift within the group); the first update of a bucket is compared afterwards, on the small per-bucket
    frame, with the last position of the key's previous bucket.
    """
    keys = list(POSITION_KEY)
    ordered = _update_order(upd, [*keys, "_idx", "position", "source", "received_at"])
    changed_in_bucket = pl.col("position").ne_missing(pl.col("position").shift(1)) & (pl.int_range(pl.len()) > 0)
    last_rows = (
        ordered.lazy()
        .group_by([*keys, "_idx"])
        .agg(
            pl.col("_row").last(),
            pl.col("received_at").filter(pl.col("source") == "portfolio").max().alias("portfolio_at"),
            pl.col("received_at").filter(pl.col("source") == "pnl_single").max().alias("pnl_single_at"),
            pl.col("received_at").filter(changed_in_bucket).max().alias("_changed_within"),
            pl.col("position").first().alias("_first_position"),
            pl.col("received_at").first().alias("_first_at"),
        )
        .collect()
    )
    per_bucket = (
        _gather_last(upd, last_rows, [*STATE_COLUMNS, "received_at"])
        .with_columns(pl.col(c).cast(pl.String) for c in COMPACT_TEXT if c in STATE_COLUMNS)
        .lazy()
    )
    if starting is not None:
        per_bucket = per_bucket.join(
            starting.lazy().select(*keys, pl.col("position").alias("_start_position")), on=keys, how="left"
        )
        start_position = pl.col("_start_position").fill_null(0.0)
    else:
        start_position = pl.lit(0.0)
    is_first_bucket = pl.col("_idx") == pl.col("_idx").min().over(keys)
    before = (
        pl.when(is_first_bucket).then(start_position).otherwise(pl.col("position").shift(1).over(keys, order_by="_idx"))
    )
    first_changed_at = pl.when(pl.col("_first_position").ne_missing(before)).then(pl.col("_first_at"))
    return per_bucket.with_columns(pl.coalesce("_changed_within", first_changed_at).alias("position_changed_at")).drop(
        "_changed_within", "_first_position", "_first_at", "_start_position", strict=False
    )


def _previous_state(previous_eod: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Open positions and greeks of the previous EOD, shaped like the bucket-0 state."""
    what = "previous_eod"
    required = ["trade_date", *POSITION_KEY, *STATE_COLUMNS[:-1], "last_update_at", *GREEK_COLUMNS, "greeks_at"]
    require_columns(previous_eod, required, what)
    prev = previous_eod
    for extra in ("ib_value", "portfolio_at", "pnl_single_at", "position_changed_at"):
        if extra not in prev.columns:  # an EOD written before these columns existed: freshness unknown
            prev = prev.with_columns(pl.lit(None, dtype=EOD_POSITIONS_SCHEMA[extra]).alias(extra))
    prev = cast_present_columns(prev, EOD_POSITIONS_SCHEMA, what)
    check_no_nulls(prev, [*POSITION_KEY], what)
    if prev.select(POSITION_KEY).is_duplicated().any():
        raise AnalyticsInputError(f"{what}: duplicate (account, con_id) rows")
    check_no_sentinels(prev, [*POSITION_NUMBERS, *GREEK_COLUMNS], what)
    still_open = ~(pl.col("position") == 0).fill_null(False)
    state = prev.filter(still_open).select(
        *POSITION_KEY,
        pl.lit(0, dtype=pl.Int32).alias("_idx"),
        *STATE_COLUMNS,
        pl.col("last_update_at").alias("received_at"),
        "portfolio_at",
        "pnl_single_at",
        "position_changed_at",
    )
    greeks = (
        prev.filter(pl.col("greeks_at").is_not_null() & pl.col("delta").is_not_null())
        .sort("greeks_at")
        .group_by("con_id", maintain_order=True)
        .agg(pl.col([*GREEK_COLUMNS, "greeks_at"]).last())
        .select("con_id", pl.lit(0, dtype=pl.Int32).alias("_idx"), *GREEK_COLUMNS, pl.col("greeks_at"))
    )
    return state, greeks


def _forward_state(state: pl.LazyFrame, keys: list[str], window: pl.DataFrame, carry: list[str]) -> pl.LazyFrame:
    """Grid keys x sessions (idx 1..n): the idx of the bucket holding the latest state, ``carry`` forward-filled."""
    grid = state.select(keys).unique().join(window.lazy().select("idx"), how="cross")
    marks = state.select(*keys, pl.col("_idx").alias("idx"), *carry, pl.lit(True).alias("_has"))
    return (
        grid.join(marks, on=[*keys, "idx"], how="left")
        .with_columns(
            pl.when(pl.col("_has"))
            .then(pl.col("idx"))
            .otherwise(None)
            .forward_fill()
            .over(keys, order_by="idx")
            .alias("_state"),
            *[pl.col(c).forward_fill().over(keys, order_by="idx") for c in carry],
        )
        .filter((pl.col("idx") >= 1) & pl.col("_state").is_not_null())
        .drop("_has")
    )


def eod_positions(
    updates: Frame,
    greeks: Frame,
    sessions: list[date],
    previous_eod: pl.DataFrame | None = None,
    *,
    stale_mark_after: timedelta = DEFAULT_STALE_MARK_AFTER,
) -> pl.DataFrame:
    """EOD state of every (account, con_id) for each session in ``sessions`` (a contiguous range).

    ``previous_eod``: the EOD of the session before the first one (as returned by this function). When given, updates
    at or before that session's cut are ignored (the previous EOD is authoritative); when ``None``, all updates before
    the first session's cut form the starting state (the first session ever: pass no history at all).
    Rows sorted by trade_date, account, con_id; columns exactly :data:`EOD_POSITIONS_SCHEMA`. See the module
    docstring for the definitions.
    """
    days = validate_sessions(sessions)
    if stale_mark_after <= timedelta(0):
        raise AnalyticsInputError(f"stale_mark_after must be positive, got {stale_mark_after}")
    window = session_window(days)
    cuts = window["cut"]
    keep_before = previous_eod is None
    upd = _validate_updates(updates, cuts, keep_before)
    prev_state: pl.DataFrame | None = None
    prev_greeks: pl.DataFrame | None = None
    if previous_eod is not None:
        prev_state, prev_greeks = _previous_state(previous_eod)
        wrong = previous_eod.filter(pl.col("trade_date") != window["trade_date"][0])
        if wrong.height:
            raise AnalyticsInputError(
                f"previous_eod: holds trade_date(s) {sorted(set(wrong['trade_date'].to_list()))}, "
                f"expected only {window['trade_date'][0]} (the session before {days[0]})"
            )
    grk = _validate_greeks(greeks, cuts, keep_before)
    keys = list(POSITION_KEY)

    state = _position_state(upd, prev_state)
    # A flat position re-reported flat (no quantity change in the session: IB lingering expired rows, a row of the
    # previous session stamped after its cut) is no new state: it must not bring a closed row back.
    state = state.filter(
        (pl.col("_idx") == 0)
        | pl.col("position_changed_at").is_not_null()
        | ~(pl.col("position") == 0).fill_null(False)
    )
    grk = grk.filter(pl.col("delta").is_not_null())
    last_greeks = _update_order(grk, ["con_id", "_idx"]).group_by(["con_id", "_idx"]).agg(pl.col("_row").last())
    greek_state = (
        _gather_last(grk, last_greeks, [*GREEK_COLUMNS, "received_at"]).lazy().rename({"received_at": "greeks_at"})
    )
    if prev_state is not None and prev_greeks is not None:
        state = pl.concat([state, prev_state.lazy()], how="diagonal_relaxed")
        greek_state = pl.concat([greek_state, prev_greeks.lazy()], how="diagonal_relaxed")
    state = state.collect().lazy()  # computed once, read twice below

    freshness = ["portfolio_at", "pnl_single_at", "position_changed_at"]
    grid = _forward_state(state, keys, window, freshness)
    rows = grid.join(
        state.drop(*freshness),
        left_on=[*keys, "_state"],
        right_on=[*keys, "_idx"],
        how="inner",
    ).join(window.lazy().select("idx", "trade_date", "cut", "prev_date"), on="idx", how="inner")

    is_zero = (pl.col("position") == 0).fill_null(False)
    expired_before = pl.col("expiry").is_not_null() & (pl.col("expiry") < pl.col("prev_date"))
    expires_now = pl.col("expiry").is_not_null() & (pl.col("expiry") < pl.col("trade_date")) & ~is_zero
    rows = (
        rows.with_columns((pl.col("_state") != pl.col("idx")).alias("carried_forward"))
        # closed in an earlier session, or a contract that expired before the previous session: not carried
        .filter(~((is_zero & pl.col("carried_forward")) | expired_before))
        .with_columns(expires_now.alias("is_expired"))
    )
    zero_when_expired = ["position", "market_value", "unrealized_pnl", "ib_unrealized_pnl", "ib_value"]
    unknown_when_expired = ["realized_pnl", "ib_daily_pnl", "ib_realized_pnl"]
    rows = rows.with_columns(
        *[pl.when(pl.col("is_expired")).then(0.0).otherwise(pl.col(c)).alias(c) for c in zero_when_expired],
        *[pl.when(pl.col("is_expired")).then(None).otherwise(pl.col(c)).alias(c) for c in unknown_when_expired],
    )

    # Greeks: the same forward-fill over con_id x sessions.
    greek_state = greek_state.collect().lazy()
    greek_grid = _forward_state(greek_state, ["con_id"], window, [])
    greek_rows = greek_grid.join(
        greek_state, left_on=["con_id", "_state"], right_on=["con_id", "_idx"], how="inner"
    ).select("con_id", "idx", *GREEK_COLUMNS, "greeks_at")
    rows = rows.join(greek_rows, on=["con_id", "idx"], how="left")

    linear = pl.col("sec_type").is_in(LINEAR_SEC_TYPES)
    rows = rows.with_columns(
        pl.when(linear).then(pl.lit(1.0)).otherwise(pl.col("delta")).alias("delta"),
        *[pl.when(linear).then(pl.lit(0.0)).otherwise(pl.col(c)).alias(c) for c in ("gamma", "vega", "theta")],
        pl.when(linear).then(None).otherwise(pl.col("implied_vol")).alias("implied_vol"),
        pl.when(linear).then(pl.col("market_price")).otherwise(pl.col("und_price")).alias("und_price"),
        pl.when(linear).then(None).otherwise(pl.col("greeks_at")).alias("greeks_at"),
    )
    mark_at = pl.max_horizontal("portfolio_at", "pnl_single_at")
    mark_age = seconds_between(pl.col("cut"), mark_at)
    stale_s = stale_mark_after.total_seconds()
    incomplete = pl.any_horizontal([pl.col(c).is_null() for c in ("delta", "gamma", "vega", "theta", "und_price")])
    out = rows.with_columns(
        pl.col("received_at").alias("last_update_at"),
        mark_age.alias("mark_age_s"),
        # only a position open at the cut needs a mark: a flat one is never flagged stale
        ((mark_age.is_null() | (mark_age > stale_s)) & ~(pl.col("position") == 0).fill_null(False)).alias(
            "is_stale_mark"
        ),
        (pl.col("position") == 0).fill_null(False).alias("is_closed"),
        seconds_between(pl.col("cut"), pl.col("greeks_at")).alias("greeks_age_s"),
        (incomplete & ~(pl.col("position") == 0).fill_null(False)).alias("missing_greeks"),
        pl.lit(None, dtype=pl.String).alias("health_gap"),  # the connection's gaps: ``analytics.health.flag_gaps``
    )
    return (
        out.select([pl.col(c).cast(t) for c, t in EOD_POSITIONS_SCHEMA.items()])
        .collect()
        .sort(["trade_date", "account", "con_id"])
    )
