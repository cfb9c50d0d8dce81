"""Analytics at scale: ``eod_positions`` + ``daily_pnl`` + ``exposure`` for one session, from Delta on disk, next to
the same definitions written in DuckDB SQL and in plain pandas, over the same files, in the same run.

    .venv/bin/python -m bench.analytics [--sizes 1000000 10000000] [--repeats 3] [--quick] [--json OUT]

Setup (not timed): ``synthetic_updates(N, 2,000 positions)`` for session D written to ``position_updates`` /
``greeks_updates`` (one commit each) under a temporary lake, and the EOD of D-1 (same book) written to a parquet
file, as the ``eod_positions`` asset would find it stored. Timed, per implementation: read D's updates and greeks
and the previous EOD from disk, compute the EOD of D (carry-forward, expiry, stale marks, greeks as of the cut),
the daily PnL (pnl = (U_D - U_D-1) + R_D with the realized-PnL source rules) and the exposure by account x
underlying x expiry; results materialised in memory.

Same start line for all: every implementation starts from the Delta table's location and reads its log inside the
timer (ours through ``Lake.scan``, the peers through ``DeltaTable(...).file_uris()``, then the parquet files the
current version lists), so they read exactly the same data and pay the same log read.

Each implementation runs in its own child process (spawned: a fresh interpreter), so its peak RSS (``ru_maxrss``)
is its own. In that child the first run is checked BEFORE any time counts: ours writes its outputs, every peer's
outputs are compared with them on every output column (rows, keys, values; floats to 1e-9 relative): a peer that
computes something else is an error, not a figure. Then ``repeats`` (>= 3) timed runs: median, min, max, spread.
"""

from __future__ import annotations

import multiprocessing
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import polars as pl
from deltalake import DeltaTable
from polars.testing import assert_frame_equal

from bench.common import BenchResult, Record, bench_argparser, finish, median_time, ratio_of
from v6_assets import analytics
from v6_assets import sessions as nyse
from v6_assets.analytics import GREEK_COLUMNS, STATE_COLUMNS
from v6_assets.lake import Lake

SESSION = date(2025, 6, 3)
POSITIONS = 2_000
STALE_MARK_S = analytics.DEFAULT_STALE_MARK_AFTER.total_seconds()
TARGET_1M_S = 2.0
TARGET_PEAK_GIB = 4.0  # peak RSS of ours at 10M updates
# D's data exercises the realized-PnL rules: some positions trade (a third of those close), some linger flat
TRADE_FRACTION = 0.2
FLAT_FRACTION = 0.02
KEYS = ["account", "con_id"]
STATE = list(STATE_COLUMNS)  # the same state the analytics carry: one definition
GREEKS = list(GREEK_COLUMNS)
UPDATE_COLUMNS = [*KEYS, *STATE, "source", "received_at", "spool_offset"]
GREEK_READ_COLUMNS = ["con_id", *GREEKS, "received_at", "spool_offset"]
ZERO_WHEN_EXPIRED = ["position", "market_value", "unrealized_pnl", "ib_unrealized_pnl", "ib_value"]
NULL_WHEN_EXPIRED = ["realized_pnl", "ib_daily_pnl", "ib_realized_pnl"]
EXPOSURE_KEYS = ["trade_date", "account", "underlying", "expiry", "currency"]

# The keys of each output; the peers must reproduce EVERY other column of ours (compared after sorting by the keys).
OUTPUT_KEYS: dict[str, list[str]] = {"eod": KEYS, "daily": KEYS, "exposure": EXPOSURE_KEYS}


@dataclass(frozen=True)
class Dataset:
    """Where the data is (plain values: passed to the child processes)."""

    lake_root: str
    prev_eod_path: Path
    session: date
    prev_session: date
    cut: datetime
    prev_cut: datetime
    rows: int

    @property
    def lake(self) -> Lake:
        return Lake.at(self.lake_root)

    def files(self, table: str) -> list[str]:
        """The parquet files of the table's current version: reads the Delta log (inside the timer, like ours)."""
        return list(DeltaTable(self.lake.table_uri(table)).file_uris())


def build_dataset(n_rows: int, workdir: Path) -> Dataset:
    session = SESSION
    prev_session = nyse.previous_session(session)
    # same seed: the same book of positions on both days
    prev = analytics.synthetic_updates(
        max(POSITIONS * 10, n_rows // 20), POSITIONS, prev_session, seed=7, flat_fraction=FLAT_FRACTION
    )
    prev_eod = analytics.eod_positions(prev.updates, prev.greeks, [prev_session])
    prev_eod_path = workdir / "eod_prev.parquet"
    prev_eod.write_parquet(prev_eod_path)
    del prev
    frames = analytics.synthetic_updates(
        n_rows, POSITIONS, session, seed=7, trade_fraction=TRADE_FRACTION, flat_fraction=FLAT_FRACTION
    )
    lake = Lake.at(str(workdir / "lake"))
    lake.overwrite_sessions("position_updates", frames.updates, [session])
    lake.overwrite_sessions("greeks_updates", frames.greeks, [session])
    del frames
    return Dataset(
        lake_root=str(workdir / "lake"),
        prev_eod_path=prev_eod_path,
        session=session,
        prev_session=prev_session,
        cut=nyse.eod_cut(session).astimezone(UTC),
        prev_cut=nyse.eod_cut(prev_session).astimezone(UTC),
        rows=n_rows,
    )


Outputs = dict[str, pl.DataFrame]


# -- ours: the project's analytics (what the Dagster assets run) ----------------------------------------------------


def run_ours(ds: Dataset) -> Outputs:
    previous = pl.read_parquet(ds.prev_eod_path)
    day = pl.col("trade_date") == ds.session
    lake = ds.lake
    updates = lake.scan("position_updates").filter(day)
    greeks = lake.scan("greeks_updates").filter(day)
    eod = analytics.eod_positions(updates, greeks, [ds.session], previous)
    daily = analytics.daily_pnl(eod, previous, [ds.session])
    exp = analytics.exposure(eod)
    return {"eod": eod, "daily": daily, "exposure": exp}


# -- peer 1: DuckDB SQL over the same parquet files ---------------------------------------------------------------


def _pick(column: str) -> str:
    # the current session's row when the position had updates in D, else the previous EOD's (a null is a value)
    return f'CASE WHEN c.con_id IS NOT NULL THEN c."{column}" ELSE p."{column}" END AS "{column}"'


def _unrealized_sql(p: str) -> tuple[str, str]:
    """U at the cut (0 when flat) and its source, from columns ``{p}position`` etc. (pnl.py ``_unrealized``)."""
    flat = f"coalesce({p}position = 0, false)"
    single_fresher = (
        f"({p}pnl_single_at IS NOT NULL AND ({p}portfolio_at IS NULL OR {p}pnl_single_at >= {p}portfolio_at))"
    )
    use_single = f"({p}ib_unrealized_pnl IS NOT NULL AND ({p}unrealized_pnl IS NULL OR {single_fresher}))"
    value = f"CASE WHEN {flat} THEN 0.0 WHEN {use_single} THEN {p}ib_unrealized_pnl ELSE {p}unrealized_pnl END"
    source = (
        f"CASE WHEN {flat} THEN 'flat' WHEN {use_single} THEN 'pnl_single' "
        f"WHEN {p}unrealized_pnl IS NOT NULL THEN 'portfolio' END"
    )
    return value, source


def duckdb_sql() -> dict[str, str]:
    state_cols = ", ".join(f'"{c}"' for c in STATE)  # "right" is an SQL keyword
    m_state = ", ".join(f'm."{c}"' for c in STATE)
    last_greeks = ", ".join(f"arg_max_null({c}, (received_at, spool_offset)) AS {c}" for c in GREEKS)
    picked = ",\n  ".join(_pick(c) for c in [*STATE, "received_at"])
    greek_pick = ", ".join(
        f"CASE WHEN gc.con_id IS NOT NULL THEN gc.{c} ELSE gp.{c} END AS {c}" for c in [*GREEKS, "greeks_at"]
    )
    expired_cols = ",\n  ".join(
        [f"CASE WHEN is_expired THEN 0.0 ELSE {c} END AS {c}" for c in ZERO_WHEN_EXPIRED]
        + [f"CASE WHEN is_expired THEN NULL ELSE {c} END AS {c}" for c in NULL_WHEN_EXPIRED]
    )
    other_state = ", ".join(f'"{c}"' for c in STATE if c not in ZERO_WHEN_EXPIRED + NULL_WHEN_EXPIRED)
    eod = f"""
CREATE OR REPLACE TEMP TABLE eod AS
WITH u AS (
  SELECT * FROM updates WHERE received_at > $prev_cut AND received_at <= $cut
), prev_open AS (
  SELECT account, con_id, {state_cols}, last_update_at AS received_at, portfolio_at, pnl_single_at,
    position_changed_at
  FROM prev WHERE NOT coalesce(position = 0, false)
), marked AS MATERIALIZED (
  -- one sort per position by (received_at, spool_offset): first and last update, and the quantity changes (the
  -- quantity differs from the key's update before)
  SELECT *, row_number() OVER w = 1 AS is_first, lead(spool_offset) OVER w IS NULL AS is_last,
    row_number() OVER w > 1 AND position IS DISTINCT FROM lag(position) OVER w AS changed
  FROM u WINDOW w AS (PARTITION BY account, con_id ORDER BY received_at, spool_offset)
), per_key AS (
  SELECT account, con_id,
    max(received_at) FILTER (WHERE source = 'portfolio') AS portfolio_at,
    max(received_at) FILTER (WHERE source = 'pnl_single') AS pnl_single_at,
    max(received_at) FILTER (WHERE changed) AS changed_within,
    any_value(position) FILTER (WHERE is_first) AS first_position,
    min(received_at) AS first_at
  FROM marked GROUP BY account, con_id
), cur_changed AS (
  -- D's first update changes the position if it differs from the previous EOD's open one (flat when absent)
  SELECT m.account, m.con_id, {m_state}, m.received_at, k.portfolio_at, k.pnl_single_at, coalesce(k.changed_within,
    CASE WHEN k.first_position IS DISTINCT FROM coalesce(s.position, 0.0) THEN k.first_at END) AS position_changed_at
  FROM marked m JOIN per_key k ON m.account = k.account AND m.con_id = k.con_id
  LEFT JOIN prev_open s ON m.account = s.account AND m.con_id = s.con_id
  WHERE m.is_last
), cur_state AS (
  -- re-reported flat without a quantity change in D: no new state
  SELECT * FROM cur_changed WHERE NOT (coalesce(position = 0, false) AND position_changed_at IS NULL)
), state AS (
  SELECT coalesce(c.account, p.account) AS account, coalesce(c.con_id, p.con_id) AS con_id,
  {picked},
  coalesce(c.portfolio_at, p.portfolio_at) AS portfolio_at,
  coalesce(c.pnl_single_at, p.pnl_single_at) AS pnl_single_at,
  coalesce(c.position_changed_at, p.position_changed_at) AS position_changed_at,
  c.con_id IS NULL AS carried_forward
  FROM cur_state c FULL OUTER JOIN prev_open p ON c.account = p.account AND c.con_id = p.con_id
), kept AS (
  SELECT *, (expiry IS NOT NULL AND expiry < $session AND NOT coalesce(position = 0, false)) AS is_expired
  FROM state
  WHERE NOT ((coalesce(position = 0, false) AND carried_forward) OR coalesce(expiry < $prev_session, false))
), rows AS (
  SELECT account, con_id, {other_state}, received_at, portfolio_at, pnl_single_at, position_changed_at,
  carried_forward, is_expired,
  {expired_cols}
  FROM kept
), gc AS (
  SELECT con_id, {last_greeks}, max(received_at) AS greeks_at FROM greeks
  WHERE received_at > $prev_cut AND received_at <= $cut AND delta IS NOT NULL
  GROUP BY con_id
), gp AS (
  SELECT con_id, {", ".join(GREEKS)}, greeks_at FROM prev
  WHERE greeks_at IS NOT NULL AND delta IS NOT NULL
  QUALIFY row_number() OVER (PARTITION BY con_id ORDER BY greeks_at DESC) = 1
), g AS (
  SELECT coalesce(gc.con_id, gp.con_id) AS con_id, {greek_pick}
  FROM gc FULL OUTER JOIN gp ON gc.con_id = gp.con_id
), joined AS (
  SELECT r.*, g.delta AS g_delta, g.gamma AS g_gamma, g.vega AS g_vega, g.theta AS g_theta,
    g.implied_vol AS g_iv, g.und_price AS g_und, g.greeks_at AS g_at,
    sec_type IN ('STK', 'FUT') AS linear
  FROM rows r LEFT JOIN g ON r.con_id = g.con_id
), adjusted AS (
  SELECT *,
    CASE WHEN linear THEN 1.0 ELSE g_delta END AS delta,
    CASE WHEN linear THEN 0.0 ELSE g_gamma END AS gamma,
    CASE WHEN linear THEN 0.0 ELSE g_vega END AS vega,
    CASE WHEN linear THEN 0.0 ELSE g_theta END AS theta,
    CASE WHEN linear THEN NULL ELSE g_iv END AS implied_vol,
    CASE WHEN linear THEN market_price ELSE g_und END AS und_price,
    CASE WHEN linear THEN NULL ELSE g_at END AS greeks_at,
    date_diff('microsecond', greatest(portfolio_at, pnl_single_at), $cut) / 1e6 AS mark_age_s
  FROM joined
)
SELECT $session::DATE AS trade_date, account, con_id, {state_cols},
  received_at AS last_update_at, mark_age_s,
  (mark_age_s IS NULL OR mark_age_s > {STALE_MARK_S}) AS is_stale_mark,
  carried_forward, coalesce(position = 0, false) AS is_closed,
  delta, gamma, vega, theta, implied_vol, und_price, greeks_at,
  date_diff('microsecond', greeks_at, $cut) / 1e6 AS greeks_age_s,
  ((delta IS NULL OR gamma IS NULL OR vega IS NULL OR theta IS NULL OR und_price IS NULL)
    AND NOT coalesce(position = 0, false)) AS missing_greeks,
  portfolio_at, pnl_single_at, is_expired, position_changed_at
FROM adjusted
"""
    u_now, u_src = _unrealized_sql("e.")
    u_prev, _ = _unrealized_sql("p.")
    daily = f"""
WITH d AS (
  SELECT e.*, p.account IS NOT NULL AS prev_exists,
    {u_now} AS u_now, {u_src} AS unrealized_source,
    CASE WHEN p.account IS NOT NULL THEN {u_prev} ELSE 0.0 END AS u_prev,
    CASE WHEN p.account IS NOT NULL THEN p.position ELSE 0.0 END AS prev_position,
    e.ib_realized_pnl - CASE WHEN p.account IS NOT NULL THEN p.ib_realized_pnl ELSE 0.0 END AS single_realized,
    coalesce(e.portfolio_at > $prev_cut, false) AS portfolio_fresh,
    coalesce(e.pnl_single_at > $prev_cut, false) AS single_fresh,
    e.position_changed_at > $prev_cut AS traded,
    (p.account IS NULL OR p.position_changed_at IS NULL
      OR coalesce(p.pnl_single_at >= p.position_changed_at, false)) AS single_complete_prev
  FROM eod e LEFT JOIN prev p ON e.account = p.account AND e.con_id = p.con_id
), ok AS (
  -- a realized figure counts only if its stream reported at or after D's last position change
  SELECT *,
    portfolio_fresh AND CASE WHEN traded IS NULL THEN true
      WHEN traded THEN coalesce(portfolio_at >= position_changed_at, false)
      ELSE coalesce(realized_pnl, 0.0) = 0.0 END AS portfolio_ok,
    single_realized IS NOT NULL AND single_complete_prev
      AND (NOT coalesce(traded, false) OR coalesce(pnl_single_at >= position_changed_at, false)) AS single_ok,
    coalesce(position_changed_at <= $prev_cut, false) AS no_trade
  FROM d
), r AS (
  SELECT *,
    CASE WHEN is_expired THEN u_prev WHEN portfolio_ok THEN coalesce(realized_pnl, 0.0)
      WHEN single_ok THEN single_realized WHEN carried_forward OR no_trade THEN 0.0 END AS realized,
    CASE WHEN is_expired THEN 'expiry' WHEN portfolio_ok THEN 'portfolio' WHEN single_ok THEN 'pnl_single'
      WHEN carried_forward THEN 'no_update' WHEN no_trade THEN 'no_trade' END AS realized_source,
    CASE WHEN single_fresh THEN ib_daily_pnl END AS ib_daily
  FROM ok
)
SELECT trade_date, account, con_id, symbol, sec_type, expiry, strike, "right", multiplier, currency, position,
  prev_position, u_now AS unrealized_pnl, u_prev AS prev_unrealized_pnl, u_now - u_prev AS unrealized_change,
  realized AS realized_pnl, realized_source, u_now - u_prev + realized AS pnl, false AS is_baseline,
  ib_daily AS ib_daily_pnl, u_now - u_prev + realized - ib_daily AS pnl_minus_ib, unrealized_source
FROM r
"""
    covered = "(NOT coalesce(missing_greeks, true) AND multiplier IS NOT NULL AND und_price IS NOT NULL)"
    single_fresher = "(pnl_single_at IS NOT NULL AND (portfolio_at IS NULL OR pnl_single_at >= portfolio_at))"
    fresher_mv = (
        f"CASE WHEN market_value IS NOT NULL AND ib_value IS NOT NULL THEN "
        f"(CASE WHEN {single_fresher} THEN ib_value ELSE market_value END) ELSE coalesce(ib_value, market_value) END"
    )
    exposure = f"""
WITH x AS (
  SELECT *, {covered} AS covered, {fresher_mv} AS mv FROM eod WHERE NOT coalesce(position = 0, false)
)
SELECT trade_date, account, symbol AS underlying, expiry, currency,
  count(*) AS positions, coalesce(sum(abs(position)), 0.0) AS contracts,
  sum(CASE WHEN covered THEN delta * position * multiplier END) AS delta_shares,
  sum(CASE WHEN covered THEN delta * position * multiplier * und_price END) AS dollar_delta,
  sum(CASE WHEN covered THEN gamma * position * multiplier END) AS gamma_shares,
  sum(CASE WHEN covered THEN 0.5 * gamma * position * multiplier * pow(0.01 * und_price, 2) END)
    AS dollar_gamma_1pct,
  sum(CASE WHEN covered THEN vega * position * multiplier END) AS vega,
  sum(CASE WHEN covered THEN theta * position * multiplier END) AS theta,
  sum(CASE WHEN covered THEN abs(position) * multiplier * und_price END) AS notional,
  CASE WHEN count(mv) = count(*) THEN sum(mv) END AS market_value,
  1.0 - sum(CASE WHEN covered THEN 0 ELSE 1 END) / count(*) AS greeks_coverage,
  sum(CASE WHEN covered THEN 0 ELSE 1 END) AS missing_greeks_positions
FROM x GROUP BY ALL
"""
    return {"eod": eod, "daily": daily, "exposure": exposure}


_SQL = duckdb_sql()


def _sql_list(paths: list[str]) -> str:
    # views cannot take prepared parameters: quote the (local, generated) paths as SQL string literals
    return "[" + ", ".join("'" + p.removeprefix("file://").replace("'", "''") + "'" for p in paths) + "]"


def run_duckdb(ds: Dataset) -> Outputs:
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET enable_progress_bar = false")
        con.execute(f"CREATE VIEW updates AS SELECT * FROM read_parquet({_sql_list(ds.files('position_updates'))})")
        con.execute(f"CREATE VIEW greeks AS SELECT * FROM read_parquet({_sql_list(ds.files('greeks_updates'))})")
        con.execute(f"CREATE VIEW prev AS SELECT * FROM read_parquet({_sql_list([str(ds.prev_eod_path)])})")
        params = {"cut": ds.cut, "prev_cut": ds.prev_cut, "session": ds.session, "prev_session": ds.prev_session}
        con.execute(_SQL["eod"], params)
        eod = pl.from_arrow(con.sql("SELECT * FROM eod").to_arrow_table())
        daily = pl.from_arrow(con.sql(_SQL["daily"], params={"prev_cut": ds.prev_cut}).to_arrow_table())
        exp = pl.from_arrow(con.sql(_SQL["exposure"]).to_arrow_table())
    finally:
        con.close()
    assert isinstance(eod, pl.DataFrame) and isinstance(daily, pl.DataFrame) and isinstance(exp, pl.DataFrame)
    return {"eod": eod, "daily": daily, "exposure": exp}


# -- peer 2: plain pandas, what a user writes by hand ---------------------------------------------------------------


def _read_pandas(files: list[str], columns: list[str]) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(f, columns=columns) for f in files], ignore_index=True)


def _is_zero(s: pd.Series) -> pd.Series:
    return s.eq(0) & s.notna()


def _unrealized_pd(df: pd.DataFrame, p: str = "") -> tuple[pd.Series, pd.Series]:
    p_val, s_val = df[f"{p}unrealized_pnl"], df[f"{p}ib_unrealized_pnl"]
    p_at, s_at = df[f"{p}portfolio_at"], df[f"{p}pnl_single_at"]
    single_fresher = s_at.notna() & (p_at.isna() | (s_at >= p_at))
    use_single = s_val.notna() & (p_val.isna() | single_fresher)
    flat = _is_zero(df[f"{p}position"])
    value = pd.Series(np.where(flat, 0.0, np.where(use_single, s_val, p_val)), index=df.index)
    source = pd.Series(
        np.select([flat, use_single, p_val.notna()], ["flat", "pnl_single", "portfolio"], default=None),
        index=df.index,
    )
    return value, source


def run_pandas(ds: Dataset) -> Outputs:
    cut, prev_cut = pd.Timestamp(ds.cut), pd.Timestamp(ds.prev_cut)
    updates = _read_pandas(ds.files("position_updates"), UPDATE_COLUMNS)
    greeks = _read_pandas(ds.files("greeks_updates"), GREEK_READ_COLUMNS)
    prev = pd.read_parquet(ds.prev_eod_path)

    # EOD state: the last update per position by (received_at, spool_offset), plus the last report per source
    u = updates[(updates["received_at"] > prev_cut) & (updates["received_at"] <= cut)]
    u = u.sort_values(["received_at", "spool_offset"])
    prev_open = prev[~_is_zero(prev["position"])].rename(columns={"last_update_at": "received_at"})
    prev_open = prev_open[[*KEYS, *STATE, "received_at", "portfolio_at", "pnl_single_at", "position_changed_at"]]
    by_key = u.groupby(KEYS, sort=False)  # one factorization of the position key, reused below
    codes = by_key.ngroup()
    # position changes: the quantity differs from the key's update before (D's first update: from the previous
    # EOD's open position, flat when absent)
    before = by_key["position"].shift(1)
    first = by_key.cumcount().eq(0)
    start = u.loc[first, KEYS].merge(prev_open[[*KEYS, "position"]], on=KEYS, how="left")["position"].fillna(0.0)
    before = before.where(~first, pd.Series(start.to_numpy(), index=u.index[first]))
    changed = ~(u["position"].eq(before) | (u["position"].isna() & before.isna()))
    at = u["received_at"]
    marks = pd.DataFrame(
        {
            "portfolio_at": at.where(u["source"].eq("portfolio")),
            "pnl_single_at": at.where(u["source"].eq("pnl_single")),
            "position_changed_at": at.where(changed),
        }
    )
    per_key = marks.groupby(codes).max()
    last = by_key.cumcount(ascending=False).eq(0)
    cur = u.loc[last, [*KEYS, *STATE, "received_at"]].set_index(codes[last]).join(per_key).reset_index(drop=True)
    # re-reported flat without a quantity change in D: no new state
    cur = cur[~(_is_zero(cur["position"]) & cur["position_changed_at"].isna())]
    state = cur.merge(prev_open, on=KEYS, how="outer", suffixes=("", "_p"), indicator=True)
    carried = state["_merge"] == "right_only"
    for c in [*STATE, "received_at"]:
        state[c] = state[c].where(~carried, state[f"{c}_p"])
    freshness = ["portfolio_at", "pnl_single_at", "position_changed_at"]
    for c in freshness:
        state[c] = state[c].combine_first(state[f"{c}_p"])
    state["carried_forward"] = carried
    state = state[[*KEYS, *STATE, "received_at", *freshness, "carried_forward"]]
    expiry = pd.to_datetime(state["expiry"])
    zero = _is_zero(state["position"])
    expired_before = expiry < pd.Timestamp(ds.prev_session)
    state = state[~((zero & state["carried_forward"]) | expired_before)].copy()
    expiry = pd.to_datetime(state["expiry"])
    state["is_expired"] = (expiry < pd.Timestamp(ds.session)) & ~_is_zero(state["position"])
    for c in ZERO_WHEN_EXPIRED:
        state[c] = state[c].where(~state["is_expired"], 0.0)
    for c in NULL_WHEN_EXPIRED:
        state[c] = state[c].where(~state["is_expired"], np.nan)

    # greeks: the last known delta per con_id in D, else the previous EOD's
    g = greeks[(greeks["received_at"] > prev_cut) & (greeks["received_at"] <= cut) & greeks["delta"].notna()]
    g = g.sort_values(["received_at", "spool_offset"]).drop_duplicates("con_id", keep="last")
    g = g.rename(columns={"received_at": "greeks_at"})[["con_id", *GREEKS, "greeks_at"]]
    gp = prev[prev["greeks_at"].notna() & prev["delta"].notna()].sort_values("greeks_at", kind="stable")
    gp = gp.drop_duplicates("con_id", keep="last")[["con_id", *GREEKS, "greeks_at"]]
    gp = gp[~gp["con_id"].isin(g["con_id"])]
    eod = state.merge(pd.concat([g, gp], ignore_index=True), on="con_id", how="left")
    linear = eod["sec_type"].isin(["STK", "FUT"])
    eod["delta"] = eod["delta"].where(~linear, 1.0)
    for c in ("gamma", "vega", "theta"):
        eod[c] = eod[c].where(~linear, 0.0)
    eod["implied_vol"] = eod["implied_vol"].where(~linear, np.nan)
    eod["und_price"] = eod["und_price"].where(~linear, eod["market_price"])
    eod["greeks_at"] = eod["greeks_at"].where(~linear, pd.NaT)
    mark_at = eod[["portfolio_at", "pnl_single_at"]].max(axis=1)
    eod["mark_age_s"] = (cut - mark_at).dt.total_seconds()
    eod["is_stale_mark"] = eod["mark_age_s"].isna() | (eod["mark_age_s"] > STALE_MARK_S)
    eod["is_closed"] = _is_zero(eod["position"])
    eod["greeks_age_s"] = (cut - eod["greeks_at"]).dt.total_seconds()
    eod["missing_greeks"] = eod[["delta", "gamma", "vega", "theta", "und_price"]].isna().any(axis=1) & ~eod["is_closed"]
    eod["trade_date"] = ds.session
    eod = eod.rename(columns={"received_at": "last_update_at"})

    # daily PnL
    p = prev[
        [*KEYS, "position", "unrealized_pnl", "ib_unrealized_pnl", "ib_realized_pnl", "portfolio_at", "pnl_single_at",
         "position_changed_at"]
    ]  # fmt: skip
    d = eod.merge(p.add_prefix("prev_").rename(columns={"prev_account": "account", "prev_con_id": "con_id"}), on=KEYS,
                  how="left", indicator=True)  # fmt: skip
    prev_exists = d["_merge"] == "both"
    u_now, u_src = _unrealized_pd(d)
    u_prev_raw, _ = _unrealized_pd(d, "prev_")
    u_prev = u_prev_raw.where(prev_exists, 0.0)
    single_realized = d["ib_realized_pnl"] - d["prev_ib_realized_pnl"].where(prev_exists, 0.0)
    portfolio_fresh = (d["portfolio_at"] > prev_cut).fillna(False)
    single_fresh = (d["pnl_single_at"] > prev_cut).fillna(False)
    # a realized figure counts only if its stream reported at or after D's last position change (NaT compares False)
    changed_at = d["position_changed_at"]
    change_known, traded = changed_at.notna(), changed_at > prev_cut
    portfolio_realized = d["realized_pnl"].fillna(0.0)
    portfolio_ok = portfolio_fresh & (
        ~change_known | (traded & (d["portfolio_at"] >= changed_at)) | (~traded & portfolio_realized.eq(0.0))
    )
    single_complete_prev = (
        ~prev_exists | d["prev_position_changed_at"].isna() | (d["prev_pnl_single_at"] >= d["prev_position_changed_at"])
    )
    single_ok = single_realized.notna() & single_complete_prev & (~traded | (d["pnl_single_at"] >= changed_at))
    no_trade = change_known & ~traded
    conditions = [d["is_expired"], portfolio_ok, single_ok, d["carried_forward"], no_trade]
    realized = np.select(conditions, [u_prev, portfolio_realized, single_realized, 0.0, 0.0], default=np.nan)
    source = np.select(conditions, ["expiry", "portfolio", "pnl_single", "no_update", "no_trade"], default=None)
    ib_daily = d["ib_daily_pnl"].where(single_fresh, np.nan)
    daily = d[[*KEYS, "trade_date", "symbol", "sec_type", "expiry", "strike", "right", "multiplier", "currency",
               "position"]].copy()  # fmt: skip
    daily["prev_position"] = d["prev_position"].where(prev_exists, 0.0)
    daily["unrealized_pnl"] = u_now
    daily["prev_unrealized_pnl"] = u_prev
    daily["unrealized_change"] = u_now - u_prev
    daily["realized_pnl"] = realized
    daily["realized_source"] = source
    daily["pnl"] = daily["unrealized_change"] + daily["realized_pnl"]
    daily["is_baseline"] = False
    daily["ib_daily_pnl"] = ib_daily
    daily["pnl_minus_ib"] = daily["pnl"] - ib_daily
    daily["unrealized_source"] = u_src

    # exposure
    x = eod[~_is_zero(eod["position"])].copy()
    covered = ~x["missing_greeks"].fillna(True).astype(bool) & x["multiplier"].notna() & x["und_price"].notna()
    q, m, s = x["position"], x["multiplier"], x["und_price"]
    x["delta_shares"] = (x["delta"] * q * m).where(covered)
    x["dollar_delta"] = (x["delta"] * q * m * s).where(covered)
    x["gamma_shares"] = (x["gamma"] * q * m).where(covered)
    x["dollar_gamma_1pct"] = (0.5 * x["gamma"] * q * m * (0.01 * s) ** 2).where(covered)
    x["vega"] = (x["vega"] * q * m).where(covered)
    x["theta"] = (x["theta"] * q * m).where(covered)
    x["notional"] = (q.abs() * m * s).where(covered)
    single_fresher = x["pnl_single_at"].notna() & (x["portfolio_at"].isna() | (x["pnl_single_at"] >= x["portfolio_at"]))
    both = x["market_value"].notna() & x["ib_value"].notna()
    x["mv"] = np.where(both, np.where(single_fresher, x["ib_value"], x["market_value"]),
                       x["ib_value"].combine_first(x["market_value"]))  # fmt: skip
    x["contracts"] = q.abs()
    x["missing_greeks_positions"] = (~covered).astype(int)
    x = x.rename(columns={"symbol": "underlying"})
    grouped = x.groupby(EXPOSURE_KEYS, dropna=False)
    sums = ["delta_shares", "dollar_delta", "gamma_shares", "dollar_gamma_1pct", "vega", "theta", "notional"]
    exp = grouped[sums].sum(min_count=1)
    exp["positions"] = grouped.size()
    exp["contracts"] = grouped["contracts"].sum()
    mv_known = grouped["mv"].count()
    exp["market_value"] = grouped["mv"].sum().where(mv_known == exp["positions"])
    exp["missing_greeks_positions"] = grouped["missing_greeks_positions"].sum()
    exp["greeks_coverage"] = 1.0 - exp["missing_greeks_positions"] / exp["positions"]
    exp = exp.reset_index()
    return {
        "eod": pl.from_pandas(eod),
        "daily": pl.from_pandas(daily),
        "exposure": pl.from_pandas(exp),
    }


# -- comparison and timing ------------------------------------------------------------------------------------------


def _normalised(df: pl.DataFrame, keys: list[str], columns: list[str]) -> pl.DataFrame:
    casts = [
        pl.col(c).cast(pl.Datetime("us", "UTC") if isinstance(df.schema[c], pl.Datetime) else pl.Float64)
        for c in columns
        if df.schema[c] not in (pl.Boolean, pl.String)
    ]
    casts += [pl.col(c).cast(pl.Date) for c in ("expiry", "trade_date") if c in keys]
    return df.select([*keys, *columns]).with_columns(casts).sort(keys, nulls_last=True)


def check_same(ours: Outputs, theirs: Outputs, peer: str) -> None:
    """Raise AssertionError when the peer's results differ from ours: rows, keys and every column of ours."""
    for name, keys in OUTPUT_KEYS.items():
        a, b = ours[name], theirs[name]
        if a.height != b.height:
            raise AssertionError(f"{peer} {name}: {b.height} rows, ours {a.height}")
        if a.height == 0:
            raise AssertionError(f"{name}: no rows at all; the benchmark data is wrong")
        columns = [c for c in a.columns if c not in keys]
        missing = [c for c in columns if c not in b.columns]
        if missing:
            raise AssertionError(f"{peer} {name}: does not produce {missing}")
        try:
            assert_frame_equal(
                _normalised(a, keys, columns),
                _normalised(b, keys, columns),
                check_dtypes=False,
                rel_tol=1e-9,
                abs_tol=1e-6,
            )
        except AssertionError as exc:
            raise AssertionError(f"{peer} {name} differs from ours: {exc}") from None


IMPLEMENTATIONS: dict[str, Callable[[Dataset], Outputs]] = {
    "ours (polars)": run_ours,
    "DuckDB SQL": run_duckdb,
    "pandas": run_pandas,
}


REFERENCE = "ours (polars)"


def _peak_rss_of_this_image() -> int:
    """VmHWM: the high-water RSS of this process image. Not ru_maxrss, which a forked/exec'd child inherits from
    its parent's RSS at fork time (the parent holds the generated data)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def _time_in_child(name: str, ds: Dataset, repeats: int, reference_dir: Path) -> dict[str, Any]:
    """In a fresh process: one run checked against ours (ours: written as the reference) BEFORE any time counts,
    then ``repeats`` timed runs. Returns the times and this process's peak RSS."""
    fn = IMPLEMENTATIONS[name]
    outputs = fn(ds)  # also the warm-up (file cache, imports, query planning)
    if name == REFERENCE:
        for key, frame in outputs.items():
            frame.write_parquet(reference_dir / f"{key}.parquet")
    else:
        ours = {key: pl.read_parquet(reference_dir / f"{key}.parquet") for key in OUTPUT_KEYS}
        check_same(ours, outputs, name)
    del outputs
    med, times, _ = median_time(lambda: fn(ds), repeats)
    return {
        "median_s": med,
        "times_s": times,
        "min_s": min(times),
        "max_s": max(times),
        "spread": (max(times) - min(times)) / med if med else None,
        "stdev_s": statistics.stdev(times) if len(times) > 1 else None,
        "peak_rss_bytes": _peak_rss_of_this_image(),
        "result_rows": {k: v.height for k, v in _.items()},
    }


def _child_main(name: str, ds: Dataset, repeats: int, reference_dir: Path, conn: Any) -> None:
    try:
        conn.send(_time_in_child(name, ds, repeats, reference_dir))
    except BaseException as exc:  # reported to the parent: a peer that differs is an error, not a figure
        conn.send({"error": f"{type(exc).__name__}: {exc}"})
        raise


def measure_one(name: str, ds: Dataset, repeats: int, reference_dir: Path) -> dict[str, Any]:
    """``_time_in_child`` in a spawned child process (its peak RSS is its own)."""
    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child_main, args=(name, ds, repeats, reference_dir, send), name=f"bench {name}")
    child.start()
    send.close()
    try:
        found: dict[str, Any] = receive.recv()
    except EOFError:
        found = {"error": "the child died without a result"}
    child.join()
    if "error" in found:
        raise RuntimeError(f"{name}: {found['error']} (exit status {child.exitcode})")
    return found


def measure(n_rows: int, repeats: int, workdir: Path) -> dict[str, Any]:
    if repeats < 3:
        print(f"note: {repeats} repeat(s): the spread means little below 3", flush=True)
    ds = build_dataset(n_rows, workdir)
    out: dict[str, Any] = {"rows": n_rows, "update_files": len(ds.files("position_updates")), "repeats": repeats}
    reference_dir = workdir / "reference"
    reference_dir.mkdir()
    for name in IMPLEMENTATIONS:  # ours first: the reference the peers are checked against
        found = measure_one(name, ds, repeats, reference_dir)
        out["result_rows"] = found.pop("result_rows")
        out[name] = found
        print(
            f"{n_rows:,} rows, {name}: median {found['median_s']:.3f} s (min {found['min_s']:.3f}, max "
            f"{found['max_s']:.3f}), peak RSS {found['peak_rss_bytes'] / 2**30:.2f} GiB",
            flush=True,
        )
    return out


def run(quick: bool = False, sizes: tuple[int, ...] = (1_000_000, 10_000_000), repeats: int = 3) -> BenchResult:
    if quick:
        sizes, repeats = (1_000_000,), 3
    result = BenchResult("analytics")
    for n_rows in sizes:
        with tempfile.TemporaryDirectory(prefix="v6-bench-analytics-") as tmp:
            m = measure(n_rows, repeats, Path(tmp))
        result.details[str(n_rows)] = m
        ours = m[REFERENCE]["median_s"]
        for peer in ("DuckDB SQL", "pandas"):
            peer_s = m[peer]["median_s"]
            ratio = ratio_of(ours, peer_s)
            is_1m = n_rows == 1_000_000
            target = "ratio < 1.0" + (f", <= {TARGET_1M_S:g} s" if is_1m else "")
            met = ratio is not None and ratio < 1.0 and (ours <= TARGET_1M_S if is_1m else True)
            result.add(
                Record(
                    name=f"analytics eod+pnl+exposure, {n_rows:,} updates",
                    value=ours,
                    unit="s",
                    peer=peer,
                    peer_value=peer_s,
                    ratio=ratio,
                    target=target,
                    met=met,
                )
            )
        ours_rss = m[REFERENCE]["peak_rss_bytes"] / 2**30
        for peer in ("DuckDB SQL", "pandas"):
            peer_rss = m[peer]["peak_rss_bytes"] / 2**30
            result.add(
                Record(
                    name=f"analytics peak RSS, {n_rows:,} updates",
                    value=ours_rss,
                    unit="GiB",
                    peer=peer,
                    peer_value=peer_rss,
                    ratio=ratio_of(ours_rss, peer_rss),
                    target=f"<= {TARGET_PEAK_GIB:g} GiB" if n_rows >= 10_000_000 else None,
                    met=ours_rss <= TARGET_PEAK_GIB if n_rows >= 10_000_000 else None,
                )
            )
    return result


def main(argv: list[str] | None = None) -> BenchResult:
    parser = bench_argparser(__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    return finish(run(args.quick, tuple(args.sizes), args.repeats), args.json)


if __name__ == "__main__":
    main()
