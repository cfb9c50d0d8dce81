"""Reconciliation of the stream-built book with IB's Flex statement for one session (pure polars, no I/O).

What each comparison does (rows of ``reconciliation``; ``blocking`` rows fail the session's check of that name):

- ``positions``: option quantities per account x con_id, exact: eod_positions (non-zero) vs statement_positions.
- ``marks``: where the quantities agree, our mark (the last at or before the 16:15 ET cut) vs IB's closing mark:
  |ours - IB's| <= max(MARK_TICK, rel_tolerance x |IB's|). Our mark is taken 15 minutes after the close, IB's at its
  close; for options that stop trading at the close they are the same price unless a late print moved it.
- ``pnl``: our daily pnl (contract currency) x IB's fxRateToBase vs the statement's MTM total (base currency) per
  position, to half a cent (``contracts.money``). A difference is *explained* (listed, not blocking) when it equals
  the effect of the mark differences: close_qty x (IB close - our close) - prev_qty x (IB prev - our prev), times
  multiplier and FX; or when ours is unknown on a baseline session (the stream never saw the previous close).
- ``pnl_account``: the same per account: sum of the unexplained per-position differences, blocking when not 0.
- ``trades``: per account x con_id, the statement's trade quantities sum to our position change (works from the
  EOD alone); with executions given (issue 15's table, or the simulator's truth), by exec id without its revision
  suffix (a correction raises it; the highest revision wins): nothing missing either way, quantity, price and
  commission equal.
- ``lifecycle``: our option lifecycle rows (position_events: expired / exercised / assigned and the contracts
  settled) vs the statement's option trades coded Ep / Ex / A, per position: missing on either side, a different
  event, a different quantity. Without position_events: the EOD's expiries (is_expired, or flat at/after the close
  of the expiry session), compared for presence only.
- Statement trades coded Ep / Ex / A are bookings, not executions (IB sends no execDetails for them): the exec-id
  comparison of ``trades`` leaves them out (their quantities still count in the position change).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

import polars as pl

from v6_assets import sessions
from v6_assets.contracts.lifecycle import DELIVERY_SEC_TYPE, LIFECYCLE_EVENTS
from v6_assets.contracts.money import HALF_CENT, amounts_disagree_expr
from v6_assets.contracts.statement_tables import RECONCILIATION
from v6_assets.contracts.tables import TRADE_DATE

CHECKS: tuple[str, ...] = ("positions", "marks", "pnl", "pnl_account", "trades", "lifecycle")
OPTION_CATEGORIES = ("OPT", "FOP")
MARK_TICK = 0.01  # one cent per share: the smallest mark difference ever reported
KEY = ["account", "con_id"]
# The execution columns the trades comparison needs (issue 15's executions table carries them).
EXECUTION_COLUMNS = ("account", "con_id", "exec_id", "quantity", "price", "commission")


@dataclass(frozen=True)
class Reconciliation:
    """The differences of one session and how many items each comparison looked at (0 = nothing compared)."""

    session: date
    differences: pl.DataFrame  # RECONCILIATION rows
    compared: dict[str, int] = field(default_factory=dict)
    accounts: tuple[str, ...] = ()

    def blocking(self, check: str | None = None) -> pl.DataFrame:
        rows = self.differences.filter(pl.col("blocking"))
        return rows if check is None else rows.filter(pl.col("check_name") == check)

    def verdicts(self) -> dict[str, str]:
        """One line per account: agreed, or the count of blocking differences by check."""
        out = {}
        for account in self.accounts:
            rows = self.differences.filter(pl.col("account") == account)
            bad = rows.filter(pl.col("blocking"))
            explained = rows.height - bad.height
            if bad.height:
                by_check = bad.group_by("check_name").len().sort("check_name")
                parts = ", ".join(f"{c}: {n}" for c, n in by_check.iter_rows())
                out[account] = f"DIFFERS from IB's statement ({parts})"
            else:
                note = f"; {explained} explained difference(s)" if explained else ""
                out[account] = f"agrees with IB's statement{note}"
        return out


def _rows(
    frame: pl.DataFrame, check: str, field_name: str, cause: pl.Expr | str, blocking: pl.Expr | bool
) -> pl.DataFrame:
    cols = {
        "account": pl.col("account"),
        "check_name": pl.lit(check),
        "con_id": pl.col("con_id") if "con_id" in frame.columns else pl.lit(None, pl.Int64),
        "exec_id": pl.col("exec_id") if "exec_id" in frame.columns else pl.lit(None, pl.String),
        "field": pl.lit(field_name),
        "ours": pl.col("ours") if "ours" in frame.columns else pl.lit(None, pl.Float64),
        "theirs": pl.col("theirs") if "theirs" in frame.columns else pl.lit(None, pl.Float64),
        "cause": cause if isinstance(cause, pl.Expr) else pl.lit(cause),
        "blocking": blocking if isinstance(blocking, pl.Expr) else pl.lit(blocking),
    }
    out = frame.select(**cols).with_columns((pl.col("ours") - pl.col("theirs")).alias("difference"))
    return out.select([c for c in RECONCILIATION.column_names if c != TRADE_DATE])


def _positions(ours: pl.DataFrame, theirs: pl.DataFrame, rel_tol: float) -> tuple[list[pl.DataFrame], int, int]:
    o = ours.filter(pl.col("position").fill_null(0) != 0).select(
        *KEY, pl.col("position").alias("q_ours"), pl.col("market_price").alias("mark_ours")
    )
    t = theirs.select(*KEY, pl.col("position").alias("q_theirs"), pl.col("mark_price").alias("mark_theirs"))
    j = o.join(t, on=KEY, how="full", coalesce=True)
    out = [
        _rows(j.filter(pl.col("q_theirs").is_null()).with_columns(ours=pl.col("q_ours")), "positions",
              "missing_statement", "we hold it; IB's statement does not list it", True),
        _rows(j.filter(pl.col("q_ours").is_null()).with_columns(theirs=pl.col("q_theirs")), "positions",
              "missing_ours", "IB's statement lists it; our EOD does not hold it", True),
        _rows(j.filter(pl.col("q_ours") != pl.col("q_theirs")).with_columns(ours=pl.col("q_ours"),
              theirs=pl.col("q_theirs")), "positions", "quantity", "quantities differ", True),
    ]  # fmt: skip
    both = j.filter(pl.col("q_ours") == pl.col("q_theirs"))
    allowed = pl.max_horizontal(pl.lit(MARK_TICK), pl.col("mark_theirs").abs() * rel_tol)
    bad_mark = (
        (pl.col("mark_ours") - pl.col("mark_theirs")).abs() > allowed + 1e-9
    ) | pl.col("mark_ours").is_null()  # fmt: skip
    marks = both.filter(bad_mark).with_columns(ours=pl.col("mark_ours"), theirs=pl.col("mark_theirs"))
    out.append(_rows(marks, "marks", "mark", pl.format("our cut mark vs IB's close beyond {}", allowed), True))
    return out, j.height, both.height


def _pnl(
    pnl: pl.DataFrame, eod: pl.DataFrame, eod_prev: pl.DataFrame, mtm: pl.DataFrame
) -> tuple[list[pl.DataFrame], int]:
    o = pnl.select(*KEY, "pnl", "is_baseline", "multiplier").join(
        eod.select(*KEY, pl.col("market_price").alias("close_ours")), on=KEY, how="left"
    ).join(eod_prev.select(*KEY, pl.col("market_price").alias("prev_ours")), on=KEY, how="left")  # fmt: skip
    t = mtm.select(*KEY, "total", "fx_rate_to_base", "close_quantity", "prev_close_quantity", "close_price",
                   "prev_close_price", pl.col("multiplier").alias("m_theirs"))  # fmt: skip
    j = o.join(t, on=KEY, how="full", coalesce=True)
    m = pl.coalesce("multiplier", "m_theirs")
    explained = (
        (
            (pl.col("close_quantity") * (pl.col("close_price") - pl.col("close_ours"))).fill_null(0)
            - (pl.col("prev_close_quantity") * (pl.col("prev_close_price") - pl.col("prev_ours"))).fill_null(0)
        )
        * m
        * pl.col("fx_rate_to_base")
    )
    j = j.with_columns(
        ours=pl.col("pnl") * pl.col("fx_rate_to_base"), theirs=pl.col("total"), explained=-explained
    ).with_columns(unexplained=pl.col("ours") - pl.col("theirs") - pl.col("explained"))
    both = j.filter(pl.col("total").is_not_null() & pl.col("is_baseline").is_not_null())
    baseline = both.filter(pl.col("is_baseline") & pl.col("pnl").is_null())
    known = both.filter(pl.col("pnl").is_not_null())
    no_fx = known.filter(pl.col("fx_rate_to_base").is_null())
    differ = known.filter(
        pl.col("fx_rate_to_base").is_not_null() & amounts_disagree_expr(pl.col("ours"), pl.col("theirs"))
    )
    by_marks = differ.filter(~amounts_disagree_expr(pl.col("unexplained"), pl.lit(0.0)) & (pl.col("explained") != 0))
    unexplained = differ.join(by_marks.select(KEY), on=KEY, how="anti")
    out = [
        _rows(j.filter(pl.col("total").is_null()), "pnl", "missing_statement",
              "we computed a daily pnl; IB's MTM summary has no row", True),
        _rows(j.filter(pl.col("is_baseline").is_null()), "pnl", "missing_ours",
              "IB's MTM summary has a row; our daily_pnl does not", True),
        _rows(baseline, "pnl", "pnl", "baseline session: the stream never saw the previous close (ours unknown)",
              False),
        _rows(no_fx, "pnl", "fx", "the statement gives no fxRateToBase for the contract's currency", True),
        _rows(by_marks, "pnl", "pnl", pl.format("explained by the mark differences ({})", pl.col("explained").round(2)),
              False),
        _rows(unexplained, "pnl", "pnl", pl.format("unexplained: {} after the marks", pl.col("unexplained").round(4)),
              True),
    ]  # fmt: skip
    # the account's figure: what is left once agreeing and mark-explained positions are taken out
    left = (
        known.filter(pl.col("fx_rate_to_base").is_not_null())
        .join(differ.select(*KEY, pl.lit(True).alias("_differs")), on=KEY, how="left")
        .join(by_marks.select(*KEY, pl.lit(True).alias("_by_marks")), on=KEY, how="left")
        .with_columns(
            unexplained=pl.when(pl.col("_by_marks").is_not_null())
            .then(pl.col("unexplained"))
            .when(pl.col("_differs").is_not_null())
            .then(pl.col("ours") - pl.col("theirs"))
            .otherwise(0.0)
        )
    )
    acct = left.group_by("account").agg(
        pl.col("ours").sum(), pl.col("theirs").sum(), pl.col("unexplained").sum(), pl.len().alias("n")
    )
    # each position's figure may round by half a cent: the account's sum is allowed n of them
    bad_acct = acct.filter(pl.col("unexplained").abs() > HALF_CENT * pl.col("n"))
    out.append(_rows(bad_acct, "pnl_account", "pnl", "account total differs beyond the explained marks", True))
    return out, both.height


def _exec_base(col: str) -> pl.Expr:
    """The exec id without its last (revision) suffix: ``0001f4e8.65a1b2c3.01.02`` -> ``0001f4e8.65a1b2c3.01``."""
    return pl.col(col).str.replace(r"\.[0-9]+$", "")


def _latest_revision(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(exec_base=_exec_base("exec_id")).sort("exec_id").unique("exec_base", keep="last")


def _trades(pnl: pl.DataFrame, trades: pl.DataFrame, executions: pl.DataFrame | None) -> tuple[list[pl.DataFrame], int]:
    moved = pnl.filter(pl.col("prev_position").is_not_null()).select(
        *KEY, (pl.col("position").fill_null(0) - pl.col("prev_position")).alias("ours")
    )
    # a baseline row (the stream's first session of the position: no previous EOD) has no known change to compare;
    # its trades are still matched by exec id below
    baseline = pnl.filter(pl.col("prev_position").is_null()).select(KEY)
    traded = trades.group_by(KEY).agg(pl.col("quantity").sum().alias("theirs")).join(baseline, on=KEY, how="anti")
    j = moved.join(traded, on=KEY, how="full", coalesce=True).with_columns(
        pl.col("ours").fill_null(0), pl.col("theirs").fill_null(0)
    )
    out = [_rows(j.filter(pl.col("ours") != pl.col("theirs")), "trades", "quantity_change",
                 "the statement's trades do not add up to our position change", True)]  # fmt: skip
    compared = j.height
    if executions is not None:
        ours = _latest_revision(executions.select(EXECUTION_COLUMNS))
        theirs = _latest_revision(trades.select(*KEY, "exec_id", "quantity", "trade_price", "commission", "lifecycle"))
        # IB books expiries/exercises/assignments without an execDetails: those are the lifecycle check's, unless
        # the stream did report one under the same exec id
        theirs = theirs.filter(pl.col("lifecycle").is_null() | pl.col("exec_base").is_in(ours["exec_base"].implode()))
        theirs = theirs.drop("lifecycle")
        e = ours.join(theirs, on="exec_base", how="full", suffix="_s")
        e = e.with_columns(
            account=pl.coalesce("account", "account_s"), con_id=pl.coalesce("con_id", "con_id_s"),
            exec_id=pl.coalesce("exec_id_s", "exec_id"),
        )  # fmt: skip
        both = e.filter(pl.col("exec_id_s").is_not_null() & pl.col("quantity").is_not_null())
        out += [
            _rows(e.filter(pl.col("exec_id_s").is_null()).with_columns(ours=pl.col("quantity")), "trades",
                  "missing_statement", "our execution is not in IB's statement", True),
            _rows(e.filter(pl.col("quantity").is_null()).with_columns(theirs=pl.col("quantity_s")), "trades",
                  "missing_ours", "IB's statement has a trade we have no execution for", True),
            _rows(both.filter(pl.col("quantity") != pl.col("quantity_s")).with_columns(
                ours=pl.col("quantity"), theirs=pl.col("quantity_s")), "trades", "quantity", "quantities differ", True),
            _rows(both.filter(amounts_disagree_expr(pl.col("price"), pl.col("trade_price"), 1e-9)).with_columns(
                ours=pl.col("price"), theirs=pl.col("trade_price")), "trades", "price", "prices differ", True),
            _rows(both.filter(amounts_disagree_expr(pl.col("commission"), -pl.col("commission_s"))).with_columns(
                ours=pl.col("commission"), theirs=-pl.col("commission_s")), "trades", "commission",
                "commissions differ", True),
        ]  # fmt: skip
        compared += e.height
    return out, compared


def _lifecycle_from_eod(eod: pl.DataFrame, session: date) -> pl.DataFrame:
    """Without position_events: closed by its expiry -- flagged by the EOD, or flat at or after the close of its
    expiry session (the gateway reports the expiry as the position going to 0 then; trades happen before the
    close). The event is unknown then (compared: that there was one)."""
    close = sessions.eod_cut(session) - sessions.EOD_CUT_AFTER_CLOSE
    at_expiry = (
        pl.col("is_closed").fill_null(False)
        & (pl.col("expiry") <= session).fill_null(False)
        & (pl.col("position_changed_at") >= close).fill_null(False)
    )
    return eod.filter(pl.col("is_expired").fill_null(False) | at_expiry).select(
        *KEY, pl.lit(None, pl.String).alias("event"), pl.lit(None, pl.Float64).alias("quantity")
    )


def _lifecycle(
    eod: pl.DataFrame, trades: pl.DataFrame, session: date, events: pl.DataFrame | None
) -> tuple[list[pl.DataFrame], int]:
    """Our option lifecycle rows (position_events: expired / exercised / assigned, with the quantity) vs the
    statement's option trades coded Ep / Ex / A: one on each side per position, the same event, the same quantity."""
    if events is None:
        ours = _lifecycle_from_eod(eod, session)
    else:
        ours = (
            events.filter(pl.col("sec_type").is_in(OPTION_CATEGORIES) & pl.col("event").is_in(LIFECYCLE_EVENTS))
            .group_by(KEY)
            .agg(pl.col("event").first(), pl.col("quantity").sum())
        )
    theirs = (
        trades.filter(pl.col("lifecycle").is_not_null() & pl.col("asset_category").is_in(OPTION_CATEGORIES))
        .group_by(KEY)
        .agg(pl.col("lifecycle").first(), pl.col("quantity").sum().alias("quantity_s"))
    )
    j = ours.with_columns(_ours=pl.lit(True)).join(
        theirs.with_columns(_theirs=pl.lit(True)), on=KEY, how="full", coalesce=True
    )
    both = j.filter(pl.col("_ours").is_not_null() & pl.col("_theirs").is_not_null())
    out = [
        _rows(j.filter(pl.col("_theirs").is_null()).with_columns(ours=pl.col("quantity")), "lifecycle",
              "missing_statement", pl.format("we saw it {}; the statement has no Ep/Ex/A trade",
                                             pl.col("event").fill_null("closed by its expiry")), True),
        _rows(j.filter(pl.col("_ours").is_null()).with_columns(theirs=pl.col("quantity_s")), "lifecycle",
              "missing_ours", pl.format("the statement says {}; our position_events show no expiry, exercise or "
                                        "assignment", pl.col("lifecycle")), True),
        _rows(both.filter(pl.col("event").is_not_null() & (pl.col("event") != pl.col("lifecycle"))), "lifecycle",
              "event", pl.format("ours {}, the statement's {}", pl.col("event"), pl.col("lifecycle")), True),
        _rows(both.filter(pl.col("quantity").is_not_null() & (pl.col("quantity") != pl.col("quantity_s")))
              .with_columns(ours=pl.col("quantity"), theirs=pl.col("quantity_s")), "lifecycle", "quantity",
              "contracts settled differ", True),
    ]  # fmt: skip
    return out, j.height


def reconcile(
    session: date,
    *,
    eod: pl.DataFrame,
    eod_prev: pl.DataFrame,
    daily_pnl: pl.DataFrame,
    positions: pl.DataFrame,
    trades: pl.DataFrame,
    mtm: pl.DataFrame,
    accounts: Sequence[str],
    executions: pl.DataFrame | None = None,
    events: pl.DataFrame | None = None,
    mark_rel_tolerance: float = 0.01,
) -> Reconciliation:
    """Compare one session; only the ``accounts`` that have a statement for it are reconciled. ``events``: the
    session's position_events (the lifecycle comparison; without them it falls back to the EOD's expiries).

    Stock is compared only where our book holds it (a stock leg an exercise/assignment created: the stream keeps
    no other stock); the statement's other stock positions are not ours to compare."""
    wanted = pl.col("account").is_in(list(accounts))
    stock_keys = eod.filter(pl.col("sec_type") == DELIVERY_SEC_TYPE).select(KEY).unique()
    options = pl.col("asset_category").is_in(OPTION_CATEGORIES) | pl.struct(KEY).is_in(stock_keys.to_struct().implode())
    eod, eod_prev, daily_pnl = eod.filter(wanted), eod_prev.filter(wanted), daily_pnl.filter(wanted)
    positions, trades, mtm = (
        positions.filter(wanted & options),
        trades.filter(wanted & options),
        mtm.filter(wanted & options),
    )
    if executions is not None:
        executions = executions.filter(wanted)
    parts: list[pl.DataFrame] = []
    compared: dict[str, int] = {}
    rows, compared["positions"], compared["marks"] = _positions(eod, positions, mark_rel_tolerance)
    parts += rows
    rows, compared["pnl"] = _pnl(daily_pnl, eod, eod_prev, mtm)
    compared["pnl_account"] = len(accounts) if compared["pnl"] else 0
    parts += rows
    rows, compared["trades"] = _trades(daily_pnl, trades, executions)
    parts += rows
    if events is not None:
        events = events.filter(wanted)
    rows, compared["lifecycle"] = _lifecycle(eod, trades, session, events)
    parts += rows
    diffs = pl.concat(parts, how="vertical_relaxed").with_columns(pl.lit(session).alias(TRADE_DATE))
    diffs = diffs.select(RECONCILIATION.column_names).sort(
        "account", "check_name", "con_id", "exec_id", nulls_last=True
    )
    return Reconciliation(session, diffs, compared, tuple(sorted(accounts)))
