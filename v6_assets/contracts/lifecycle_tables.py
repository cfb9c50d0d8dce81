"""The ``position_events`` table: what happened to each position in a session (``contracts.lifecycle``)."""

from __future__ import annotations

import pyarrow as pa

from v6_assets.contracts.lifecycle import EVENTS
from v6_assets.contracts.tables import CONTRACT_COLUMNS, EOD_POSITIONS, TRADE_DATE, UTC_TIMESTAMP, ColumnDef, TableDef

_F, _S, _I = pa.float64(), pa.string(), pa.int64()


def _c(name: str, arrow_type: pa.DataType, description: str, nullable: bool = True) -> ColumnDef:
    return ColumnDef(name, arrow_type, description, nullable=nullable)


POSITION_EVENTS: TableDef = TableDef(
    name="position_events",
    description=(
        "What happened to each position (account x con_id) in each NYSE session: one row per execution (opened, "
        "increased, reduced, closed, reversed: by the position before and after the fill, with its exec id from "
        "the executions table) and one per lifecycle change, which IB reports without an execution (expired, "
        "exercised, assigned: the part of the position change the executions do not account for). An exercise or "
        "assignment of an equity option also has its stock leg: a row for the stock position (same event, at the "
        "strike) linked to the option by linked_con_id. A change nothing accounts for is 'unexplained'."
    ),
    columns=(
        _c(TRADE_DATE, pa.date32(), "NYSE session of the event (the one whose EOD cut follows it). Partition.", False),
        *(EOD_POSITIONS.column(name) for name in CONTRACT_COLUMNS),
        _c("seq", _I, "Order of the event within the position's session (1, 2, ...).", False),
        _c("event", _S, f"One of {', '.join(EVENTS)}.", False),
        _c("event_at", UTC_TIMESTAMP, "When (UTC): the execution time, else the position change's time."),
        _c("quantity", _F, "Signed change of the position by this event (contracts; shares for stock).", False),
        _c("position_before", _F, "Position before the event.", False),
        _c("position_after", _F, "Position after the event.", False),
        _c(
            "price",
            _F,
            "Execution price; for a lifecycle row IB's booking price: 0 for an expired or physically settled "
            "option, the strike for the stock leg, the intrinsic value (the cut mark) for a cash-settled one.",
        ),
        _c("commission", _F, "The execution's commission (null until known, never 0 for unknown; null for lifecycle)."),
        _c("exec_id", _S, "The execution's exec id (latest revision); null for a lifecycle row (IB sends none)."),
        _c(
            "linked_con_id",
            _I,
            "Exercise/assignment: the stock leg's con_id on the option row, the option's on the stock row.",
        ),
        _c("linked_quantity", _F, "The linked row's quantity (shares on the option row, contracts on the stock row)."),
    ),
    key=("account", "con_id", "seq"),
)
