"""The stored book as of any moment (``v6 book --as-of``): the session's streamed rows and the previous EOD from the
lake, the computation in ``analytics.book_as_of``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import polars as pl

from v6_assets import sessions as nyse
from v6_assets.analytics.book_as_of import book_as_of
from v6_assets.lake import Lake
from v6_assets.pipeline.daily import previous_eod_with_origin


@dataclass(frozen=True)
class StoredBook:
    as_of: datetime
    session: date
    previous_eod_origin: str  # where the D-1 state came from, in words
    rows: pl.DataFrame


def stored_book(lake: Lake, as_of: datetime, account: str | None = None) -> StoredBook:
    """The book at ``as_of`` (time zone required) from the stored updates; ``account`` filters the rows."""
    session = nyse.session_for(as_of)
    previous, origin = previous_eod_with_origin(lake, session)
    updates = lake.read_sessions("position_updates", [session]) if lake.exists("position_updates") else None
    greeks = lake.read_sessions("greeks_updates", [session]) if lake.exists("greeks_updates") else None
    if updates is None or greeks is None:
        raise FileNotFoundError(f"no streamed tables in the lake at {lake.uri}: nothing has been ingested yet")
    rows = book_as_of(updates, greeks, as_of, previous)
    if account is not None:
        rows = rows.filter(pl.col("account") == account)
    return StoredBook(as_of=as_of, session=session, previous_eod_origin=origin, rows=rows)
