"""Flex statements into the lake exactly once, and the reconciliation of a session (Dagster-free).

``ingest_statement(lake, data, ...)``: the bytes are read once by the caller, parsed and validated whole
(``v6_assets.ib.flex``: a bad file raises ``StatementError`` and nothing is written); then per session x account:

- the same statement (same SHA-256) already in the ledger -> nothing is written ("unchanged");
- an older statement than the one in the ledger (whenGenerated) -> nothing is written ("stale");
- otherwise its rows replace that session x account's rows in every statement table (one partition overwrite per
  table; other accounts' rows of the session are kept) and the ledger row is written LAST, naming the statement it
  replaced ("replaced") or none ("new"). A crash in between leaves no ledger row: the next drop redoes it whole.

``refresh_reconciliation(lake, session)`` reads the session's EOD (and the previous one), daily_pnl, the statement
tables and the session's position events (computed as the ``position_events`` asset does), compares them
(``v6_assets.analytics.reconcile``) and overwrites the session's ``reconciliation`` rows. It fails
(``MissingUpstreamError``) when there is no statement or no eod_positions/daily_pnl for the session.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime

import polars as pl

from v6_assets import sessions
from v6_assets.analytics.reconcile import Reconciliation, reconcile
from v6_assets.contracts.clock import utc_now
from v6_assets.contracts.statement_tables import (
    RECONCILIATION,
    STATEMENT_CASH,
    STATEMENT_FILES,
    STATEMENT_MTM,
    STATEMENT_POSITIONS,
    STATEMENT_TRADES,
)
from v6_assets.contracts.tables import DAILY_PNL, EOD_POSITIONS, EXECUTIONS, TRADE_DATE
from v6_assets.ib.flex import AccountStatement, StatementError, parse_flex
from v6_assets.lake import Lake
from v6_assets.pipeline.book import session_executions
from v6_assets.pipeline.daily import MissingUpstreamError
from v6_assets.pipeline.position_events import compute_position_events

ROW_TABLES = (STATEMENT_POSITIONS, STATEMENT_TRADES, STATEMENT_MTM, STATEMENT_CASH)

__all__ = ["IngestOutcome", "StatementError", "ingest_statement", "refresh_reconciliation", "today_in_new_york"]


@dataclass(frozen=True)
class IngestOutcome:
    """What happened to one account's statement of one session."""

    account: str
    session: date
    statement_id: str
    status: str  # new | replaced | unchanged | stale
    replaced_statement_id: str | None
    rows: dict[str, int]

    def describe(self) -> str:
        sid = self.statement_id[:12]
        if self.status == "replaced":
            return (f"{self.session} {self.account}: corrected statement {sid} replaced "
                    f"{(self.replaced_statement_id or '')[:12]} ({self.rows})")  # fmt: skip
        if self.status == "new":
            return f"{self.session} {self.account}: statement {sid} ingested ({self.rows})"
        if self.status == "stale":
            return f"{self.session} {self.account}: statement {sid} is older than the one ingested: ignored"
        return f"{self.session} {self.account}: statement {sid} already ingested: nothing changed"


def today_in_new_york(now: datetime | None = None) -> date:
    return (now or utc_now()).astimezone(sessions.NEW_YORK).date()


def _ledger(lake: Lake, session: date) -> pl.DataFrame:
    return lake.read_sessions(STATEMENT_FILES, [session])


def ingest_statement(
    lake: Lake,
    data: bytes,
    *,
    file_name: str,
    allowed_accounts: Iterable[str] = (),
    today: date | None = None,
    now: datetime | None = None,
) -> list[IngestOutcome]:
    """Ingest one statement file's bytes (see the module docstring); ``StatementError`` when the file is unusable."""
    stamp = now or utc_now()
    statements = parse_flex(data, allowed_accounts=allowed_accounts, today=today or today_in_new_york(stamp))
    outcomes: list[IngestOutcome] = []
    by_session: dict[date, list[AccountStatement]] = {}
    for st in statements:
        by_session.setdefault(st.session, []).append(st)
    for session, group in sorted(by_session.items()):
        ledger = _ledger(lake, session)
        todo: list[tuple[AccountStatement, str | None]] = []
        for st in group:
            prior = ledger.filter(pl.col("account") == st.account)
            if prior.height:
                row = prior.sort("generated_at").row(-1, named=True)
                if row["statement_id"] == st.statement_id:
                    outcomes.append(IngestOutcome(st.account, session, st.statement_id, "unchanged", None, {}))
                    continue
                if row["generated_at"] > st.generated_at:
                    outcomes.append(IngestOutcome(st.account, session, st.statement_id, "stale", None, {}))
                    continue
                todo.append((st, row["statement_id"]))
            else:
                todo.append((st, None))
        if not todo:
            continue
        accounts = [st.account for st, _ in todo]
        for table in ROW_TABLES:
            kept = lake.read_sessions(table, [session]).filter(~pl.col("account").is_in(accounts))
            new = [st.frames[table.name] for st, _ in todo]
            lake.overwrite_sessions(table, pl.concat([kept, *new], how="vertical_relaxed"), [session])
        ledger_rows = []
        for st, replaced in todo:
            rows = {t.name: st.frames[t.name].height for t in ROW_TABLES}
            status = "replaced" if replaced else "new"
            outcomes.append(IngestOutcome(st.account, session, st.statement_id, status, replaced, rows))
            ledger_rows.append({
                TRADE_DATE: session, "account": st.account, "statement_id": st.statement_id,
                "generated_at": st.generated_at, "file_name": file_name, "replaced_statement_id": replaced,
                "rows_positions": rows[STATEMENT_POSITIONS.name], "rows_trades": rows[STATEMENT_TRADES.name],
                "rows_mtm": rows[STATEMENT_MTM.name], "rows_cash": rows[STATEMENT_CASH.name],
                "base_currency": st.base_currency, "ingested_at": stamp,
            })  # fmt: skip
        kept_ledger = ledger.filter(~pl.col("account").is_in(accounts))
        new_ledger = pl.DataFrame(ledger_rows, schema=STATEMENT_FILES.polars_schema)
        lake.overwrite_sessions(
            STATEMENT_FILES, pl.concat([kept_ledger, new_ledger], how="vertical_relaxed"), [session]
        )
    return outcomes


@dataclass(frozen=True)
class ReconciliationRun:
    reconciliation: Reconciliation
    statements: pl.DataFrame  # the ledger rows used
    by_exec_id: bool  # the trades were matched to our executions by exec id (an executions table exists)


def compute_reconciliation(
    lake: Lake, session: date, *, executions: pl.DataFrame | None = None, mark_rel_tolerance: float = 0.01
) -> ReconciliationRun:
    """The session's reconciliation from the lake (nothing written). ``executions``: rows with
    ``analytics.reconcile.EXECUTION_COLUMNS``; by default the session's booked executions from the ``executions``
    table (latest revision, commission once known), or none when the lake has no such table (a stream that predates
    it): then the trades are compared by position change only."""
    ledger = _ledger(lake, session)
    if not ledger.height:
        raise MissingUpstreamError(
            f"no IB statement for {session}: drop its Flex file into the statements folder (or configure the Flex "
            "Web Service) first"
        )
    eod = lake.read_sessions(EOD_POSITIONS, [session])
    pnl = lake.read_sessions(DAILY_PNL, [session])
    if not eod.height or not pnl.height:
        missing = "eod_positions" if not eod.height else "daily_pnl"
        raise MissingUpstreamError(f"{missing} for {session} holds no rows: materialize it first")
    eod_prev = lake.read_sessions(EOD_POSITIONS, [sessions.previous_session(session)])
    if executions is None and lake.exists(EXECUTIONS):
        executions = session_executions(lake, [session])
    events, _ = compute_position_events(lake, [session])  # what the position_events asset computes from the same
    result = reconcile(
        session,
        eod=eod,
        eod_prev=eod_prev,
        daily_pnl=pnl,
        positions=lake.read_sessions(STATEMENT_POSITIONS, [session]),
        trades=lake.read_sessions(STATEMENT_TRADES, [session]),
        mtm=lake.read_sessions(STATEMENT_MTM, [session]),
        accounts=sorted(set(ledger["account"].to_list())),
        executions=executions,
        events=events,
        mark_rel_tolerance=mark_rel_tolerance,
    )
    return ReconciliationRun(result, ledger, by_exec_id=executions is not None)


def refresh_reconciliation(
    lake: Lake, session: date, *, executions: pl.DataFrame | None = None, mark_rel_tolerance: float = 0.01
) -> ReconciliationRun:
    """Compute and overwrite the session's ``reconciliation`` rows."""
    run = compute_reconciliation(lake, session, executions=executions, mark_rel_tolerance=mark_rel_tolerance)
    lake.overwrite_sessions(RECONCILIATION, run.reconciliation.differences, [session])
    return run
