"""Executions and commissions: IB's execDetails and commissionReport -> ``ExecutionUpdate`` events on the fan-out.

ib_async emits ``execDetailsEvent`` / ``commissionReportEvent`` only for trades of orders it knows (placed by this
client); a read-only observer of a gateway sees other clients' and manual fills only through its wrapper. So the
tracker wraps the wrapper's ``execDetails`` and ``commissionReport`` of each connection (``attach``): they are called
by the decoder for every live fill and every answer to ``reqExecutions``.

Rules (``ExecutionTracker``, one per streamer run, so it outlives reconnects):
- ``request`` asks for the day's executions at every connect: fills missed while disconnected come back this way.
- De-duplication by exec id: an execution seen before in the same state is not emitted again (counted).
- Corrections: the exec id without its last suffix is the base, the suffix the revision; a higher revision is emitted
  (``analytics.book_executions`` keeps the highest), a lower one than already seen is ignored (counted).
- Commissions join their execution when they arrive (the execution is emitted again, with the commission). A
  commission for an exec id not seen (yet) is held, counted in ``orphan_commissions`` and joined when the execution
  arrives; it is never emitted on its own (nothing invented).
- An execution without a usable contract id (0, unset) or exec id is a counted conversion error, the raw objects go
  to the log; nothing is emitted for it.
IB's unset realized PnL (opening fills) becomes ``None`` here, BEFORE ib_async's wrapper turns it into 0.0.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from ib_async import IB, ExecutionFilter

from v6_assets.contracts.streams import ExecutionUpdate
from v6_assets.ib.convert import UNSET_INTEGER, Clock, clean_float, parse_expiry, parse_multiplier

log = logging.getLogger(__name__)

# Request id of the day's executions (one request per connection; live fills carry -1).
EXECUTIONS_REQ_ID = 900_000_001


def split_exec_id(exec_id: str) -> tuple[str, int]:
    """``"0000e0d5.6745c1a2.01.02"`` -> (``"0000e0d5.6745c1a2.01"``, 2); no numeric suffix: revision 1."""
    base, dot, suffix = exec_id.rpartition(".")
    if dot and suffix.isdigit():
        return base, int(suffix)
    return exec_id, 1


@dataclass(frozen=True, slots=True)
class _Commission:
    commission: float | None
    currency: str | None
    realized_pnl: float | None


@dataclass(slots=True)
class ExecutionCounters:
    emitted: int = 0
    duplicates: int = 0  # seen again in the same state (re-request after a reconnect)
    superseded: int = 0  # an older revision than one already seen
    orphan_commissions: int = 0  # commissions whose execution was not seen when they arrived
    foreign_account_dropped: int = 0
    conversion_errors: int = 0


class ExecutionTracker:
    """Dedups, joins and emits executions across the connections of one streamer run (loop thread only)."""

    def __init__(self, accounts: tuple[str, ...], clock: Clock, emit: Callable[[ExecutionUpdate], None]) -> None:
        self.accounts = accounts
        self.clock = clock
        self.emit = emit
        self.counters = ExecutionCounters()
        self._state: dict[str, ExecutionUpdate] = {}  # exec id -> last emitted state
        self._revision: dict[str, int] = {}  # exec id base -> highest revision seen
        self._orphans: dict[str, _Commission] = {}
        self._seq = 0

    @property
    def held_commissions(self) -> int:
        """Commissions held for an execution not seen yet."""
        return len(self._orphans)

    # -- wiring ------------------------------------------------------------------------------------------------
    def attach(self, ib: IB) -> None:
        """Observe every execDetails and commissionReport the decoder hands to this connection's wrapper."""
        wrapper = ib.wrapper
        exec_details = wrapper.execDetails
        commission_report = wrapper.commissionReport

        def on_exec_details(req_id: int, contract: Any, execution: Any) -> None:
            self.on_exec_details(contract, execution)
            exec_details(req_id, contract, execution)

        def on_commission_report(report: Any) -> None:
            self.on_commission(report)  # before ib_async turns the unset realized PnL into 0.0
            commission_report(report)

        wrapper.execDetails = on_exec_details  # type: ignore[method-assign, assignment]
        wrapper.commissionReport = on_commission_report  # type: ignore[method-assign, assignment]

    def request(self, ib: IB) -> None:
        """Ask for the day's executions (answered with execDetails, the end marker, then commission reports)."""
        ib.client.reqExecutions(EXECUTIONS_REQ_ID, ExecutionFilter())

    # -- events ------------------------------------------------------------------------------------------------
    def on_exec_details(self, contract: Any, execution: Any) -> None:
        try:
            update = self._convert(contract, execution)
        except Exception:
            self.counters.conversion_errors += 1
            log.exception("could not convert execution (kept here for recovery): %r %r", contract, execution)
            return
        if update is None:
            return
        base, revision = split_exec_id(update.exec_id)
        if revision < self._revision.get(base, 0):
            self.counters.superseded += 1
            return
        self._revision[base] = revision
        orphan = self._orphans.pop(update.exec_id, None)
        if orphan is not None:
            update = self._with_commission(update, orphan)
        else:
            known = self._state.get(update.exec_id)
            if known is not None and known.commission is not None:
                update = self._with_commission(
                    update, _Commission(known.commission, known.commission_currency, known.realized_pnl)
                )
        self._publish(update)

    def on_commission(self, report: Any) -> None:
        try:
            exec_id = str(report.execId or "")
            if not exec_id:
                raise ValueError("commission report without an exec id")
            commission = _Commission(clean_float(report.commission), report.currency or None,
                                     clean_float(report.realizedPNL))  # fmt: skip
        except Exception:
            self.counters.conversion_errors += 1
            log.exception("could not convert commission report (kept here for recovery): %r", report)
            return
        known = self._state.get(exec_id)
        if known is None:
            if exec_id not in self._orphans:
                self.counters.orphan_commissions += 1
                log.warning("commission for unknown exec id %s held until its execution arrives: %r", exec_id, report)
            self._orphans[exec_id] = commission
            return
        self._publish(self._with_commission(known, commission))

    # -- helpers -----------------------------------------------------------------------------------------------
    def _publish(self, update: ExecutionUpdate) -> None:
        known = self._state.get(update.exec_id)
        if known is not None and _same_state(known, update):
            self.counters.duplicates += 1
            return
        self._seq += 1
        update = replace(update, seq=self._seq, received_at=self.clock())
        self._state[update.exec_id] = update
        self.counters.emitted += 1
        self.emit(update)

    @staticmethod
    def _with_commission(update: ExecutionUpdate, c: _Commission) -> ExecutionUpdate:
        return replace(update, commission=c.commission, commission_currency=c.currency, realized_pnl=c.realized_pnl)

    def _convert(self, contract: Any, execution: Any) -> ExecutionUpdate | None:
        con_id = int(contract.conId or 0)
        if con_id <= 0 or con_id == UNSET_INTEGER:
            raise ValueError(f"execution {execution.execId!r} has no usable contract id ({contract.conId!r})")
        exec_id = str(execution.execId or "")
        if not exec_id:
            raise ValueError("execution without an exec id")
        account = str(execution.acctNumber or "")
        if not account:
            raise ValueError(f"execution {exec_id} without an account")
        if self.accounts and account not in self.accounts:
            self.counters.foreign_account_dropped += 1
            return None
        side = str(execution.side)
        if side not in ("BOT", "SLD"):
            raise ValueError(f"execution {exec_id} has side {side!r}, not BOT/SLD")
        shares = clean_float(execution.shares)
        price = clean_float(execution.price)
        if shares is None or shares <= 0 or price is None:
            raise ValueError(f"execution {exec_id} has shares {execution.shares!r} / price {execution.price!r}")
        at = execution.time
        if not isinstance(at, datetime) or at.tzinfo is None:
            raise ValueError(f"execution {exec_id} has no zone-aware time: {at!r}")
        right = str(contract.right or "")[:1] or None
        strike = clean_float(contract.strike)
        return ExecutionUpdate(
            account=account,
            con_id=con_id,
            symbol=str(contract.symbol or ""),
            sec_type=str(contract.secType or ""),
            expiry=parse_expiry(str(contract.lastTradeDateOrContractMonth or "")),
            strike=strike if strike is not None and strike > 0 else None,
            right=right,
            multiplier=parse_multiplier(contract.multiplier),
            currency=str(contract.currency or ""),
            exec_id=exec_id,
            exec_time=at.astimezone(UTC),
            side=side,
            shares=shares,
            quantity=shares if side == "BOT" else -shares,
            price=price,
            perm_id=int(execution.permId or 0),
            order_id=0 if execution.orderId in (None, UNSET_INTEGER) else int(execution.orderId),
            exchange=str(execution.exchange or ""),
            commission=None,
            commission_currency=None,
            realized_pnl=None,
            seq=0,
            received_at=self.clock(),
        )


def _same_state(a: ExecutionUpdate, b: ExecutionUpdate) -> bool:
    ignore = ("seq", "received_at")
    return all(getattr(a, f) == getattr(b, f) for f in a.__dataclass_fields__ if f not in ignore)
