"""Executions and commission reports: every fill of the timeline as IB reports it (execDetails + commissionReport).

Each trade of the timeline becomes one execution: exec id ``<perm id hex>.<session yyyymmdd>.<n>.<revision>`` (IB's
shape: a correction keeps everything but the last suffix and raises it), time, account, side, shares, price, perm
id, order id (0: placed outside the API, as for a read-only observer), exchange. Live fills go to every connected
client at once; the commission report follows, at once or ``commission_delay_s`` simulated seconds later (then to
whoever is connected at that moment). ``reqExecutions`` is answered with the day's fills (since the last EOD cut),
then the end marker, then the commission reports already due. Truth: ``truth["executions"]``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from v6_assets.gateway_sim import wire
from v6_assets.gateway_sim.connection import ClientConnection
from v6_assets.gateway_sim.protocol import UNSET_DOUBLE, Out
from v6_assets.gateway_sim.scenario_model import ContractSpec
from v6_assets.sessions import NEW_YORK

LIVE_REQ_ID = -1  # IB's request id of a live (unrequested) execDetails
FIRST_PERM_ID = 0x25B46000


@dataclass(slots=True)
class SimExecution:
    """One execution revision as the gateway reports it."""

    exec_base: str  # the exec id without its revision suffix
    revision: int
    account: str
    contract: ContractSpec
    time: datetime  # UTC
    shares: float  # unsigned
    side: str  # BOT / SLD
    price: float
    perm_id: int
    order_id: int
    exchange: str
    commission: float
    realized_pnl: float | None  # None on an opening fill (sent as IB's unset double)
    commission_due: datetime  # when the commission report is sent

    @property
    def exec_id(self) -> str:
        return f"{self.exec_base}.{self.revision:02d}"

    @property
    def quantity(self) -> float:
        return self.shares if self.side == "BOT" else -self.shares

    def truth(self) -> dict[str, object]:
        return {"exec_id": self.exec_id, "account": self.account, "con_id": self.contract.con_id,
                "time": self.time.isoformat(), "side": self.side, "shares": self.shares, "quantity": self.quantity,
                "price": self.price, "perm_id": self.perm_id, "order_id": self.order_id, "exchange": self.exchange,
                "commission": self.commission, "realized_pnl": self.realized_pnl,
                "commission_due": self.commission_due.isoformat()}  # fmt: skip


class ExecutionLog:
    """The day's executions (latest revision each) and the commission reports not yet sent."""

    def __init__(self) -> None:
        self.day: list[SimExecution] = []
        self.history: list[dict[str, object]] = []  # every revision ever issued (the ground truth)
        self.pending_commissions: list[SimExecution] = []
        self._next_perm = FIRST_PERM_ID
        self._count = 0

    def record(
        self, account: str, contract: ContractSpec, qty: float, price: float, commission: float,
        realized: float | None, now: datetime, commission_delay_s: float,
    ) -> SimExecution:  # fmt: skip
        self._count += 1
        perm = self._next_perm
        self._next_perm += 1
        day = now.astimezone(NEW_YORK).strftime("%Y%m%d")
        execution = SimExecution(
            exec_base=f"{perm:08x}.{day}.{self._count:02d}", revision=1, account=account, contract=contract,
            time=now, shares=abs(qty), side="BOT" if qty > 0 else "SLD", price=price, perm_id=perm, order_id=0,
            exchange=contract.exchange if contract.exchange != "SMART" else "CBOE", commission=commission,
            realized_pnl=realized, commission_due=now + timedelta(seconds=commission_delay_s),
        )  # fmt: skip
        self.day.append(execution)
        self.pending_commissions.append(execution)
        self.history.append(execution.truth())
        return execution

    def correct(self, account: str, con_id: int, price: float, now: datetime) -> tuple[SimExecution, float]:
        """A new revision of the latest execution of (account, con_id) at ``price``; returns it and the old price."""
        for execution in reversed(self.day):
            if execution.account == account and execution.contract.con_id == con_id:
                old = execution.price
                execution.revision += 1
                execution.price = price
                execution.commission_due = now
                if execution not in self.pending_commissions:
                    self.pending_commissions.append(execution)
                self.history.append(execution.truth())
                return execution, old
        raise ValueError(f"no execution of {account} {con_id} today to correct")

    def due_commissions(self, now: datetime) -> list[SimExecution]:
        due = [e for e in self.pending_commissions if e.commission_due <= now]
        self.pending_commissions = [e for e in self.pending_commissions if e.commission_due > now]
        return due

    def reported(self, now: datetime) -> list[SimExecution]:
        """The day's executions whose commission report is due (sent after a reqExecutions answer)."""
        return [e for e in self.day if e.commission_due <= now]

    def session_cut(self) -> None:
        """The gateway keeps the executions of the current day only."""
        self.day = [e for e in self.day if e in self.pending_commissions]


def send_execution(client: ClientConnection, req_id: int, execution: SimExecution) -> None:
    c = execution.contract
    client.send(
        Out.EXECUTION_DATA, req_id=req_id, order_id=execution.order_id, **wire.contract_fields(c, c.exchange),
        exec_id=execution.exec_id, time=wire.execution_time(execution.time), account=execution.account,
        exec_exchange=execution.exchange, side=execution.side, shares=execution.shares, price=execution.price,
        perm_id=execution.perm_id, client_id=0, liquidation=0, cum_qty=execution.shares, avg_price=execution.price,
        order_ref="", ev_rule="", ev_multiplier=0.0, model_code="", last_liquidity=2,
        pending_price_revision=0,
    )  # fmt: skip


def send_commission(client: ClientConnection, execution: SimExecution) -> None:
    realized = UNSET_DOUBLE if execution.realized_pnl is None else execution.realized_pnl
    client.send(
        Out.COMMISSION_REPORT, exec_id=execution.exec_id, commission=execution.commission,
        currency=execution.contract.currency, realized_pnl=realized, yield_=UNSET_DOUBLE, yield_redemption_date=0,
    )  # fmt: skip


def publish_fill(clients: Iterable[ClientConnection], execution: SimExecution) -> None:
    """A live fill (or a correction) to every connected client; its commission follows when due."""
    for client in clients:
        send_execution(client, LIVE_REQ_ID, execution)


def publish_due_commissions(clients: Iterable[ClientConnection], log: ExecutionLog, now: datetime) -> None:
    due = log.due_commissions(now)
    if not due:
        return
    for client in clients:
        for execution in due:
            send_commission(client, execution)


def answer_request(client: ClientConnection, req_id: int, log: ExecutionLog, now: datetime) -> None:
    """reqExecutions: the day's fills (latest revision each), the end marker, the commission reports due by now."""
    for execution in log.day:
        send_execution(client, req_id, execution)
    client.send(Out.EXECUTION_DATA_END, req_id=req_id)
    for execution in log.reported(now):
        send_commission(client, execution)
