"""The audit logic behind the asset checks, Dagster-free (``v6_assets.defs.checks`` declares the checks).

Each audit evaluates a list of sessions, one chunk of sessions at a time, so memory is bounded whatever the range:

- ``stream_audit`` (one read of the partitions for both, shared by the two checks of a run):
  ``duplicate_offsets``: exactly-once of the streamed tables ((stream_id, spool_offset) unique);
  ``sentinel_counts``: doubles without a value by the IB-unset rule (``v6_assets.contracts.unset``), -1/-2 greeks
  sentinels in columns that cannot be negative, empty account strings;
- ``eod_reconciliation``: each EOD position against the last position the stream reported at or before the cut,
  computed independently of the analytics;
- ``pnl_against_ib``: daily_pnl against IB's own daily PnL; ``greeks_coverage``: share of positions with greeks.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date

import polars as pl

from v6_assets import sessions
from v6_assets.contracts.money import amounts_disagree_expr
from v6_assets.contracts.tables import (
    DAILY_PNL,
    EOD_POSITIONS,
    EXPOSURE,
    POSITION_UPDATES,
    ROLLUP_COLUMN,
    ROLLUP_DETAIL,
    TRADE_DATE,
)
from v6_assets.contracts.unset import ib_unset_expr
from v6_assets.lake import Lake
from v6_assets.pipeline.daily import session_chunks

# Greeks columns that cannot be negative: a -1/-2 there is IB's "not computed" sentinel stored as a number.
NON_NEGATIVE_GREEKS = ("gamma", "vega", "implied_vol", "und_price", "opt_price")
PROBLEM_SCHEMA = pl.Schema(
    {"trade_date": pl.Date(), "account": pl.String(), "con_id": pl.Int64(), "problem": pl.String()}
)


def audited_sessions(lake: Lake, table: str, run_sessions: Sequence[date] | None) -> list[date]:
    """The sessions of the run, or (an audit run alone, outside a partitioned run) the newest session in ``table``."""
    if run_sessions is not None:
        return list(run_sessions)
    newest = lake.scan(table).select(pl.col(TRADE_DATE).max()).collect().item()
    return [newest] if newest is not None else []


@dataclass(frozen=True)
class StreamAudit:
    """Both audits of a streamed table over some sessions, from ONE read of each chunk of its partitions."""

    rows: int
    duplicates: pl.DataFrame  # (stream_id, spool_offset, len) appearing more than once
    sentinels: dict[str, int]  # column -> values that are IB sentinels stored as numbers


_DUPLICATE_SCHEMA = pl.Schema({"stream_id": pl.String(), "spool_offset": pl.Int64(), "len": pl.UInt32()})
_OFFSET_KEYS = ["stream_id", "spool_offset"]


def _sentinel_exprs(schema: pl.Schema) -> dict[str, pl.Expr]:
    exprs: dict[str, pl.Expr] = {}
    for c, t in schema.items():
        if t != pl.Float64:
            continue
        bad = ib_unset_expr(pl.col(c))
        if c in NON_NEGATIVE_GREEKS:
            bad = bad | (pl.col(c) < 0)
        exprs[c] = bad.fill_null(False).sum()
    if "account" in schema:
        exprs["account"] = (pl.col("account").str.strip_chars() == "").fill_null(True).sum()
    return exprs


def audit_stream(scan: pl.LazyFrame, days: Sequence[date]) -> StreamAudit:
    """Duplicated offsets and sentinel counts over the sessions ``days``, chunk by chunk: each chunk's partitions are
    read once for both (the two queries share their scan in one ``collect_all``).

    Duplicates are exact within a chunk of sessions (a group-by over its offsets). Across chunks, a duplicate needs
    two sessions of one stream whose offset ranges [min, max] overlap: offsets grow with arrival, so ranges are
    disjoint and nothing more is read; an overlap (a replayed spool) is re-checked exactly over those offsets only.
    """
    exprs = _sentinel_exprs(scan.collect_schema())
    rows = 0
    counts: dict[str, int] = {}
    found: list[pl.DataFrame] = []
    ranges: list[pl.DataFrame] = []
    for n, chunk in enumerate(session_chunks(days)):
        part = scan.filter(pl.col(TRADE_DATE).is_in(chunk))
        selected = [pl.len().alias("_rows"), *[e.alias(c) for c, e in exprs.items()]]
        frame, totals_frame = pl.collect_all([part.select(TRADE_DATE, *_OFFSET_KEYS), part.select(selected)])
        totals = totals_frame.row(0, named=True)
        rows += int(totals.pop("_rows"))
        for c, k in totals.items():
            if k:
                counts[c] = counts.get(c, 0) + int(k)
        found.append(frame.group_by(_OFFSET_KEYS).len().filter(pl.col("len") > 1))
        ranges.append(
            frame.group_by("stream_id", TRADE_DATE)
            .agg(pl.col("spool_offset").min().alias("lo"), pl.col("spool_offset").max().alias("hi"))
            .with_columns(pl.lit(n).alias("chunk"))
        )
    if ranges:
        found.extend(_duplicates_across_chunks(scan, pl.concat(ranges).sort("stream_id", "lo")))
    dups = pl.concat([f.cast(_DUPLICATE_SCHEMA) for f in found]) if found else pl.DataFrame(schema=_DUPLICATE_SCHEMA)
    return StreamAudit(rows, dups.group_by(_OFFSET_KEYS).agg(pl.col("len").max()).sort(_OFFSET_KEYS), counts)


def _duplicates_across_chunks(scan: pl.LazyFrame, spans: pl.DataFrame) -> list[pl.DataFrame]:
    found: list[pl.DataFrame] = []
    # an interval overlaps an earlier one (by lo) of another chunk when it starts before their running max hi
    reach = pl.col("hi").cum_max().shift(1).over("stream_id")
    overlapping = spans.with_columns(reach.alias("_reach")).filter(pl.col("lo") <= pl.col("_reach"))
    for row in overlapping.iter_rows(named=True):
        wide = spans.filter(
            (pl.col("stream_id") == row["stream_id"]) & (pl.col("hi") >= row["lo"]) & (pl.col("lo") <= row["hi"])
        )
        if wide["chunk"].n_unique() < 2:
            continue  # overlap within one chunk: already checked exactly
        frame = (
            scan.filter(pl.col(TRADE_DATE).is_in(wide[TRADE_DATE].to_list()))
            .filter((pl.col("stream_id") == row["stream_id"]) & pl.col("spool_offset").is_between(row["lo"], row["hi"]))
            .select(*_OFFSET_KEYS)
            .collect()
        )
        found.append(frame.group_by(_OFFSET_KEYS).len().filter(pl.col("len") > 1))
    return found


def duplicate_offsets(scan: pl.LazyFrame, days: Sequence[date]) -> tuple[int, pl.DataFrame]:
    """(rows, duplicated (stream_id, spool_offset) with their count) over the sessions ``days`` (``audit_stream``)."""
    found = audit_stream(scan, days)
    return found.rows, found.duplicates


def sentinel_counts(scan: pl.LazyFrame, days: Sequence[date]) -> tuple[int, dict[str, int]]:
    """(rows, {column: values that are IB sentinels stored as numbers}) over ``days`` (``audit_stream``)."""
    found = audit_stream(scan, days)
    return found.rows, found.sentinels


# The two checks of a streamed table run as two steps of one run, in one process (the in-process executor): the
# second takes the first's result. Keyed by the table's id and Delta version (what was read is pinned to it): a new
# commit, or a table re-created at the same place, is a new key, never a stale hit.
_AUDITED: dict[tuple[str, str, int, tuple[date, ...]], StreamAudit] = {}
_AUDITED_KEEP = 8  # results are small (counts and the duplicated offsets); a few run's worth


def stream_audit(lake: Lake, table: str, days: Sequence[date]) -> StreamAudit:
    """``audit_stream`` of ``table`` over ``days``, computed once per table version within this process."""
    dt = lake.open(table)
    if dt is None:
        return audit_stream(lake.scan(table), days)
    key = (lake.table_uri(table), str(dt.metadata().id), dt.version(), tuple(days))
    found = _AUDITED.get(key)
    if found is None:
        pinned = pl.scan_delta(dt, storage_options=dict(lake.storage_options) or None, credential_provider=None)
        found = audit_stream(pinned, days)
        while len(_AUDITED) >= _AUDITED_KEEP:
            _AUDITED.pop(next(iter(_AUDITED)))
        _AUDITED[key] = found
    return found


_STREAM_COLUMNS = ("account", "con_id", "position", "expiry", "received_at", "spool_offset", TRADE_DATE)
_KEYS = ["account", "con_id"]


def _fold_last(state: pl.DataFrame, rows: pl.DataFrame) -> pl.DataFrame:
    """The last row per (account, con_id) by (received_at, spool_offset) of ``state`` and ``rows`` together."""
    if not rows.height:
        return state
    both = pl.concat([state, rows.select(state.columns)]) if state.height else rows.select(state.columns)
    return both.sort("received_at", "spool_offset").group_by(_KEYS, maintain_order=True).last()


def stream_positions_by_session(lake: Lake, days: Sequence[date]) -> Iterator[tuple[date, pl.DataFrame]]:
    """Independent of the analytics: for each session of ``days`` (contiguous, oldest first), the last position the
    stream reported per (account, con_id) at or before its cut (``stream_position``, ``stream_expiry``).

    Incremental: the last-row state is folded session by session (the history before ``days`` too, in chunks), so
    the stream is read once, one chunk of sessions at a time, however long the range.
    """
    scan = lake.scan(POSITION_UPDATES.name)
    first = scan.filter(pl.col(TRADE_DATE) <= days[-1]).select(pl.col(TRADE_DATE).min()).collect().item()
    state = pl.DataFrame(schema={c: t for c, t in scan.collect_schema().items() if c in _STREAM_COLUMNS}).select(
        _STREAM_COLUMNS
    )
    # Rows stamped after their own partition's cut (inconsistent trade_date) wait here for the first cut after them.
    pending = state.clear()
    history = sessions.sessions_between(first, days[-1]) if isinstance(first, date) and first <= days[-1] else []
    wanted = set(days)
    for chunk in session_chunks([d for d in history if d < days[0]] + list(days)):
        rows = scan.filter(pl.col(TRADE_DATE).is_in(chunk)).select(_STREAM_COLUMNS).collect()
        by_day = rows.partition_by(TRADE_DATE, as_dict=True, maintain_order=False)
        for day in chunk:
            cut = sessions.eod_cut(day)
            today = pending.vstack(by_day.get((day,), state.clear()).select(state.columns))
            state = _fold_last(state, today.filter(pl.col("received_at") <= cut))
            pending = today.filter(pl.col("received_at") > cut)
            if day in wanted:
                yield (
                    day,
                    state.select(
                        *_KEYS, pl.col("position").alias("stream_position"), pl.col("expiry").alias("stream_expiry")
                    ),
                )


def reconcile_session(day: date, stream: pl.DataFrame, eod: pl.DataFrame) -> tuple[pl.DataFrame, int]:
    """(problems: trade_date, account, con_id, problem; keys compared) of one session's EOD against the stream."""
    dup = eod.group_by(_KEYS).len().filter(pl.col("len") > 1).select(*_KEYS, pl.lit("duplicate").alias("problem"))
    joined = stream.join(eod.select(*_KEYS, "position", "is_expired"), on=_KEYS, how="full", coalesce=True)
    stream_pos, eod_pos = pl.col("stream_position"), pl.col("position")
    # absent from the EOD: fine when flat, or an option that expired before this session
    open_in_stream = stream_pos.is_not_null() & (stream_pos != 0.0)
    expired_before = pl.col("stream_expiry").is_not_null() & (pl.col("stream_expiry") < day)
    expired = pl.col("is_expired").fill_null(False)
    problem = (
        pl.when(eod_pos.is_null() & open_in_stream & ~expired_before)
        .then(pl.format("open in stream ({}) but missing from EOD", stream_pos))
        .when(eod_pos.is_not_null() & stream_pos.is_null())
        .then(pl.format("in EOD ({}) but never reported by the stream", eod_pos))
        .when(eod_pos.is_not_null() & expired & (eod_pos != 0.0))
        .then(pl.format("expired but EOD position {}", eod_pos))
        .when(eod_pos.is_not_null() & ~expired & ((eod_pos - stream_pos).abs() > 1e-9))
        .then(pl.format("EOD {} != stream {}", eod_pos, stream_pos))
    )
    mismatches = joined.select(*_KEYS, problem.alias("problem")).filter(pl.col("problem").is_not_null())
    return (
        pl.concat([dup, mismatches])
        .with_columns(pl.lit(day).alias(TRADE_DATE))
        .select(TRADE_DATE, "account", "con_id", "problem"),
        joined.height,
    )


def eod_reconciliation(lake: Lake, days: Sequence[date]) -> tuple[pl.DataFrame, int]:
    """(problems per ``PROBLEM_SCHEMA``, keys compared) of the stored EOD of ``days`` against the stream."""
    found: list[pl.DataFrame] = []
    checked = 0
    if days:
        # the EOD just written, only the compared columns (positions x sessions: small)
        eod_all = (
            lake.scan(EOD_POSITIONS.name)
            .filter(pl.col(TRADE_DATE).is_in(days))
            .select(TRADE_DATE, *_KEYS, "position", "is_expired")
            .collect()
        )
        eod_by_day = eod_all.partition_by(TRADE_DATE, as_dict=True)
        empty_eod = eod_all.clear()
        for day, stream in stream_positions_by_session(lake, days):
            problems, keys = reconcile_session(day, stream, eod_by_day.get((day,), empty_eod))
            checked += keys
            if problems.height:
                found.append(problems.cast(PROBLEM_SCHEMA))
    frame = pl.concat(found) if found else pl.DataFrame(schema=PROBLEM_SCHEMA)
    return frame, checked


def open_positions_by_session(lake: Lake, days: Sequence[date]) -> dict[date, int]:
    """{session: open positions (position != 0) in its stored eod_positions} for every session of ``days`` (0 when
    the session holds no EOD rows)."""
    if not days:
        return {}
    frame = (
        lake.scan(EOD_POSITIONS.name)
        .filter(pl.col(TRADE_DATE).is_in(list(days)) & (pl.col("position") != 0.0))
        .group_by(TRADE_DATE)
        .len()
        .collect()
    )
    counts = dict(zip(frame[TRADE_DATE].to_list(), frame["len"].to_list(), strict=True))
    return {d: int(counts.get(d, 0)) for d in days}


@dataclass(frozen=True)
class PnlComparison:
    compared: pl.DataFrame  # rows where both pnl and ib_daily_pnl are known
    outside_tolerance: pl.DataFrame  # of those, |pnl - ib_daily_pnl| > tolerance, largest difference first
    max_abs_difference: float | None
    open_positions: int = 0  # open positions in the sessions' eod_positions (what there was to compare)

    @property
    def compared_nothing(self) -> bool:
        """True when positions exist but not one of them was compared: never a pass."""
        return self.open_positions > 0 and self.compared.height == 0

    @property
    def passed(self) -> bool:
        return self.outside_tolerance.height == 0 and not self.compared_nothing

    def verdict(self) -> str:
        """One sentence for the check's metadata."""
        if self.compared_nothing:
            return (
                f"compared 0 positions while {self.open_positions} are open: IB's daily PnL (or our pnl) is unknown "
                "for every one of them, nothing was verified"
            )
        if self.open_positions == 0 and self.compared.height == 0:
            return "no open position in these sessions: nothing to compare"
        if self.outside_tolerance.height:
            return f"{self.outside_tolerance.height} of {self.compared.height} compared positions outside tolerance"
        return f"{self.compared.height} positions agree with IB within tolerance"


def pnl_against_ib(lake: Lake, days: Sequence[date], tolerance: float) -> PnlComparison:
    """daily_pnl of ``days`` against IB's own daily PnL (reqPnLSingle) where both exist."""
    frame = lake.read_sessions(DAILY_PNL.name, days)
    both = frame.filter(pl.col("pnl").is_not_null() & pl.col("ib_daily_pnl").is_not_null())
    if "pnl_source" in both.columns:  # a baseline carrying IB's figure compared with itself proves nothing
        both = both.filter(pl.col("pnl_source").fill_null("") != "ib_daily")
    difference = (pl.col("pnl") - pl.col("ib_daily_pnl")).abs()
    off = both.filter(amounts_disagree_expr(pl.col("pnl"), pl.col("ib_daily_pnl"), tolerance)).sort(
        difference, descending=True
    )
    worst = both.select(difference.max()).item() if both.height else None
    open_positions = sum(open_positions_by_session(lake, days).values())
    return PnlComparison(both, off, float(worst) if worst is not None else None, open_positions)


@dataclass(frozen=True)
class CoverageAudit:
    """Greeks coverage per session: None where exposure holds no open position (nothing was measured)."""

    coverage: dict[date, float | None]
    open_positions: dict[date, int]  # from eod_positions: what exposure should cover

    def below(self, threshold: float) -> dict[date, float]:
        return {d: c for d, c in self.coverage.items() if c is not None and c < threshold}

    def not_measured(self) -> list[date]:
        """Sessions with open positions in eod_positions but none in exposure: coverage of nothing, never a pass."""
        return [d for d, c in self.coverage.items() if c is None and self.open_positions.get(d, 0) > 0]

    def passed(self, threshold: float) -> bool:
        return not self.below(threshold) and not self.not_measured()


def greeks_coverage_audit(lake: Lake, days: Sequence[date]) -> CoverageAudit:
    frame = lake.read_sessions(EXPOSURE.name, days).filter(pl.col(ROLLUP_COLUMN) == ROLLUP_DETAIL)
    per_session = frame.group_by(TRADE_DATE).agg(
        pl.col("positions").sum().alias("positions"), pl.col("missing_greeks_positions").sum().alias("missing")
    )
    found = {
        row[TRADE_DATE]: (1.0 - row["missing"] / row["positions"]) if row["positions"] else None
        for row in per_session.iter_rows(named=True)
    }
    return CoverageAudit({d: found.get(d) for d in days}, open_positions_by_session(lake, days))


def greeks_coverage(lake: Lake, days: Sequence[date]) -> dict[str, float | None]:
    """{session (ISO): share of open positions with greeks} from the exposure detail rows of ``days``; None for a
    session without open positions in exposure (no data is not 100 %)."""
    return {d.isoformat(): c for d, c in greeks_coverage_audit(lake, days).coverage.items()}
