"""The position lifecycle: event names and what an exercise or assignment delivers.

IB reports an expiry, exercise or assignment without a dedicated API event and without an execution: the option
position shrinks (to 0 at expiry) and, for an equity option, a stock position changes by contracts x multiplier
(overnight for an assignment). Flex statements code the booked trades Ep (expired), Ex (exercise), A (assignment).
"""

from __future__ import annotations

# Events of ``position_events`` driven by executions (by the position before and after the fill) ...
TRADE_EVENTS = ("opened", "increased", "reduced", "closed", "reversed")
# ... and by the lifecycle (no execution behind them); "unexplained": a quantity change nothing accounts for.
LIFECYCLE_EVENTS = ("expired", "exercised", "assigned")
UNEXPLAINED = "unexplained"
EVENTS = (*TRADE_EVENTS, *LIFECYCLE_EVENTS, UNEXPLAINED)
# Flex notes codes (ibflex.enums.Code) -> event
FLEX_CODES = {"Ep": "expired", "Ex": "exercised", "A": "assigned"}
DELIVERY_SEC_TYPE = "STK"


def delivered_shares(right: str | None, option_change: float, multiplier: float | None) -> float | None:
    """The stock change an exercise/assignment of ``option_change`` contracts delivers (``option_change`` signed as
    the option position's change: -2 for two long calls exercised, +2 for two short calls assigned). Long call and
    short put receive shares, long put and short call deliver them. None for a contract without a right."""
    if right not in ("C", "P"):
        return None
    return -option_change * (multiplier or 100.0) * (1.0 if right == "C" else -1.0)
