"""The account book: positions on an average-cost basis, realized PnL and commissions, as IB's account window.

``average_cost`` is per contract with the multiplier and commissions included (IB's averageCost), signed basis:
opening trades add ``qty * price * multiplier + commission`` to the basis, closing trades realize
``-closed_qty * (price * multiplier - average_cost)`` minus their commission share.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from v6_assets.gateway_sim.scenario_model import ContractSpec


@dataclass(slots=True)
class Fill:
    qty: float
    price: float  # per share
    commission: float
    at: str = ""  # ISO time of the fill (statements); set by MarketState
    exec_id: str = ""  # the execution's id as the gateway reported it (latest revision); set by the timeline
    code: str = ""  # Flex lifecycle code of a booked close: Ep (expired), Ex (exercised), A (assigned)


@dataclass(slots=True)
class BookPosition:
    account: str
    contract: ContractSpec
    qty: float
    average_cost: float
    realized_session: float | None = None  # None until a closing trade (or any trade) this session
    realized_total: float = 0.0  # since inception: reqPnLSingle's realizedPnL
    commissions_session: float = 0.0
    traded_this_session: bool = False
    fills_session: list[Fill] = field(default_factory=list)
    closed_at_session: bool = False  # went flat this session: reported once with position 0, dropped at the cut
    prev_close_mark: float | None = None  # mark at the previous EOD (None: unknown baseline)
    prev_close_qty: float = 0.0
    reset_mark: float = 0.0  # reqPnLSingle's daily reset reference (the mark at the last reset)
    opened_this_session: bool = False
    delivered: bool = False  # a stock position an exercise or assignment created or changed (recorded in the truth)

    @property
    def key(self) -> tuple[str, int]:
        return self.account, self.contract.con_id

    def apply_trade(self, qty: float, price: float, commission: float) -> float:
        """Book a fill; returns the PnL it realized (commission of the closing part included)."""
        m = self.contract.multiplier
        old = self.qty
        realized = 0.0
        closing = 0.0
        if old != 0 and (old > 0) != (qty > 0):
            closing = -old if abs(qty) >= abs(old) else qty  # signed, opposite to old
        opening = qty - closing
        closing_commission = commission * abs(closing) / abs(qty)
        if closing:
            realized = -closing * (price * m - self.average_cost) - closing_commission
        remaining = old + closing
        basis = self.average_cost * remaining
        if opening:
            basis += opening * price * m + (commission - closing_commission)
        self.qty = remaining + opening
        self.average_cost = basis / self.qty if self.qty else 0.0
        self.realized_session = (self.realized_session or 0.0) + realized
        self.realized_total += realized
        self.commissions_session += commission
        self.traded_this_session = True
        self.fills_session.append(Fill(qty, price, commission))
        if self.qty == 0:
            self.closed_at_session = True
        return realized

    def market_value(self, mark: float) -> float:
        return self.qty * mark * self.contract.multiplier

    def unrealized(self, mark: float) -> float:
        return self.market_value(mark) - self.average_cost * self.qty if self.qty else 0.0
