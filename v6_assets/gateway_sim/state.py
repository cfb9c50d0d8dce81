"""The simulated world at the simulator's current time: the market, the account book and the accounts.

Pure state and its rules (trades, expiries, the daily reset); who is told about a change is the publisher's job.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

from v6_assets.contracts.lifecycle import delivered_shares
from v6_assets.gateway_sim.book import BookPosition
from v6_assets.gateway_sim.executions import ExecutionLog
from v6_assets.gateway_sim.market import Greeks, Market
from v6_assets.gateway_sim.protocol import UNSET_DOUBLE
from v6_assets.gateway_sim.scenario_model import ContractSpec, Scenario

PositionKey = tuple[str, int]  # (account, con_id)
NET_LIQUIDATION_CASH = 1_000_000.0  # the cash part of every account's net liquidation value
MARGIN_RATE = 0.2  # initial margin: this share of the gross option market value (a simple, stated model)
MAINT_OF_INIT = 0.8  # maintenance margin as a share of the initial margin


class MarketState:
    """The market, the book and simulated time ``now`` (advanced by the timeline driver only)."""

    def __init__(self, scenario: Scenario, seed: int) -> None:
        self.scenario = scenario
        self.market = Market(scenario, seed)
        self.book: dict[PositionKey, BookPosition] = {}
        self.accounts = {a.account_id: a for a in scenario.accounts}
        self.now: datetime = scenario.clock.start
        self.next_order_id = scenario.next_valid_id
        self.executions = ExecutionLog()  # the day's fills as execDetails / commissionReport report them
        # cash of fills of past sessions per (account, currency); the session's fills are added on the fly
        self.settled_cash: dict[tuple[str, str], float] = {}
        # gateway conditions under way that hold data back: "reset" (everything), "competing_session" and "farm_down"
        # (market data, PnL and PnL single: ``MARKET_DATA_PAUSES``)
        self.paused: set[str] = set()
        # every expiry / exercise / assignment booked (the ground truth of the position lifecycle)
        self.lifecycle: list[dict[str, Any]] = []
        self._init_book()

    def _init_book(self) -> None:
        start = self.scenario.clock.start
        for p in self.scenario.positions:
            contract = self.scenario.contracts[p.con_id]
            mark = self.market.quote(contract, start).price
            avg = p.avg_cost if p.avg_cost is not None else round(mark * contract.multiplier, 4)
            pos = BookPosition(p.account, contract, p.qty, avg)
            # IB's daily PnL resets to the last mark before the start; the statement truth treats it as unknown.
            pos.reset_mark = mark
            pos.prev_close_mark = None
            pos.prev_close_qty = p.qty
            self.book[pos.key] = pos

    # --- values as the gateway reports them
    def quote(self, contract: ContractSpec) -> Greeks:
        return self.market.quote(contract, self.now)

    def realized_wire(self, pos: BookPosition) -> float:
        """updatePortfolio's realizedPNL: this session's, unset (or 0, per scenario) when nothing was realized."""
        if pos.realized_session is None:
            return UNSET_DOUBLE if self.scenario.nastiness.unset_realized else 0.0
        return pos.realized_session

    def cash_balances(self, account: str) -> dict[str, float]:
        """Cash per currency: NET_LIQUIDATION_CASH in the base currency at the start, then every fill's
        -(qty x price x multiplier + commission) in the contract's currency (an expiry at intrinsic is a fill)."""
        base = self.accounts[account].base_currency
        cash = {base: NET_LIQUIDATION_CASH}
        for (acct, currency), amount in self.settled_cash.items():
            if acct == account:
                cash[currency] = cash.get(currency, 0.0) + amount
        for pos in self.book.values():
            if pos.account == account:
                currency = pos.contract.currency
                cash[currency] = cash.get(currency, 0.0) + _fills_cash(pos)
        return cash

    def _to_base(self, account: str, currency: str) -> float:
        rate = self.accounts[account].fx_rate(currency)
        if rate is None:
            raise ValueError(f"account {account} holds {currency} but the scenario gives no fx_rates for it")
        return rate

    def account_values(self, account: str) -> list[tuple[str, str, str]]:
        """(key, value, currency) rows of an account download: money in the base currency, converted at the
        scenario's fx_rates (IB's ExchangeRate); net liquidation = cash + market value of every position."""
        acct = self.accounts[account]
        base = acct.base_currency
        positions = [p for p in self.book.values() if p.account == account and p.qty]
        marks = {p.key: self.quote(p.contract).price for p in positions}
        fx = {p.key: self._to_base(account, p.contract.currency) for p in positions}
        unrealized = sum(p.unrealized(marks[p.key]) * fx[p.key] for p in positions)
        market_value = sum(p.market_value(marks[p.key]) * fx[p.key] for p in positions)
        cash = self.cash_balances(account)
        total_cash = sum(amount * self._to_base(account, currency) for currency, amount in cash.items())
        net_liquidation = total_cash + market_value
        margin = MARGIN_RATE * sum(abs(p.market_value(marks[p.key]) * fx[p.key]) for p in positions)
        return [
            ("AccountCode", account, ""),
            ("Currency", base, base),
            ("NetLiquidation", f"{net_liquidation:.2f}", base),
            ("TotalCashValue", f"{total_cash:.2f}", base),
            *[("CashBalance", f"{amount:.2f}", currency) for currency, amount in sorted(cash.items())],
            ("CashBalance", f"{total_cash:.2f}", "BASE"),
            ("InitMarginReq", f"{margin:.2f}", base),
            ("MaintMarginReq", f"{margin * MAINT_OF_INIT:.2f}", base),
            ("AvailableFunds", f"{net_liquidation - margin:.2f}", base),
            ("ExcessLiquidity", f"{net_liquidation - margin * MAINT_OF_INIT:.2f}", base),
            ("UnrealizedPnL", f"{unrealized:.2f}", base),
            ("ExchangeRate", "1.00", "BASE"),
            *[("ExchangeRate", repr(rate), currency) for currency, rate in sorted(acct.fx_rates.items())],
        ]

    def pnl_single_values(self, pos: BookPosition) -> tuple[float, float, float, float, float]:
        """reqPnLSingle's (position, daily, unrealized, realized since inception, value)."""
        mark = self.quote(pos.contract).price
        m = pos.contract.multiplier
        traded = sum(f.qty * f.price * m + f.commission for f in pos.fills_session)
        # IB's formula: PositionNow*PriceNow - PositionAtReset*PriceAtReset - NetAmountTraded (commissions included).
        daily = pos.qty * mark * m - pos.prev_close_qty * pos.reset_mark * m - traded
        return pos.qty, daily, pos.unrealized(mark), pos.realized_total, pos.market_value(mark)

    def pnl_values(self, account: str) -> tuple[float, float, float]:
        """reqPnL's (daily, unrealized, realized): the account's PnL-single values summed."""
        daily = unrealized = realized = 0.0
        for pos in self.book.values():
            if pos.account == account:
                _, d, u, r, _ = self.pnl_single_values(pos)
                daily, unrealized, realized = daily + d, unrealized + u, realized + r
        return daily, unrealized, realized

    # --- changes
    def trade(self, account: str, con_id: int, qty: float, price: float, commission: float) -> BookPosition:
        """Book a fill (opening the position if new); returns the changed position."""
        key = (account, con_id)
        pos = self.book.get(key)
        if pos is None:
            contract = self.scenario.contracts[con_id]
            pos = BookPosition(account, contract, 0.0, 0.0)
            pos.reset_mark = self.quote(contract).price
            pos.opened_this_session = True
            self.book[key] = pos
        elif pos.qty == 0 and pos.closed_at_session:
            pos.closed_at_session = False
        pos.apply_trade(qty, price, commission)
        pos.fills_session[-1].at = self.now.isoformat()
        return pos

    def correct_fill(self, account: str, con_id: int, old_price: float, new_price: float) -> BookPosition:
        """An execution correction: the session's latest fill of (account, con_id) at ``new_price`` instead."""
        pos = self.book[(account, con_id)]
        fill = next(f for f in reversed(pos.fills_session) if f.price == old_price)
        delta = fill.qty * (new_price - old_price) * pos.contract.multiplier
        fill.price = new_price
        if pos.qty and (pos.qty > 0) == (fill.qty > 0):
            pos.average_cost += delta / pos.qty  # an opening fill: its basis moves
        else:
            pos.realized_session = (pos.realized_session or 0.0) - delta  # a closing fill: what it realized moves
            pos.realized_total -= delta
        return pos

    def delivery_contract(self, option: ContractSpec) -> ContractSpec | None:
        """The stock an equity option delivers (the scenario's STK contract of its symbol) when the scenario settles
        physically (``nastiness.physical_delivery``); None: cash-settled."""
        if option.sec_type != "OPT" or not self.scenario.nastiness.physical_delivery:
            return None
        return next((c for c in self.scenario.contracts.values() if c.sec_type == "STK" and c.symbol == option.symbol),
                    None)  # fmt: skip

    def settle(self, pos: BookPosition, contracts: float, code: str) -> list[BookPosition]:
        """Close ``contracts`` (> 0) of an option position by expiry, exercise or assignment, as IB books it.

        Physical delivery (an equity option whose stock the scenario defines): the option leg is booked at price 0
        and the stock leg at the strike (``code`` on both fills; no commission). Cash settlement (no stock, index and
        futures options): the option is booked at its intrinsic value. Worthless (``Ep``): booked at 0. Returns the
        changed positions, the option first (what the gateway then reports, in that order).
        """
        c = pos.contract
        spot = self.market.underlying_price(c.symbol, self.now)
        intrinsic = round(max(spot - c.strike, 0.0) if c.right == "C" else max(c.strike - spot, 0.0), 4)
        self.market.mark_overrides[c.con_id] = intrinsic
        stock = self.delivery_contract(c) if code != "Ep" else None
        closing = -contracts if pos.qty > 0 else contracts
        pos.apply_trade(closing, 0.0 if stock is not None or code == "Ep" else intrinsic, 0.0)
        pos.fills_session[-1].at = self.now.isoformat()
        pos.fills_session[-1].code = code
        changed = [pos]
        if stock is not None:
            shares = delivered_shares(c.right, closing, c.multiplier) or 0.0
            leg = self.trade(pos.account, stock.con_id, shares, c.strike, 0.0)
            leg.fills_session[-1].code = code
            leg.delivered = True
            changed.append(leg)
        self.lifecycle.append({
            "sim_time": self.now.isoformat(), "account": pos.account, "con_id": c.con_id, "code": code,
            "event": {"Ep": "expired", "Ex": "exercised", "A": "assigned"}[code], "quantity": closing,
            "intrinsic": intrinsic, "stock_con_id": stock.con_id if stock is not None else None,
            "stock_quantity": changed[-1].fills_session[-1].qty if stock is not None else None,
            "stock_price": c.strike if stock is not None else None,
        })  # fmt: skip
        return changed

    def exercise(self, account: str, con_id: int, contracts: float | None, code: str) -> list[BookPosition]:
        """An early exercise (``Ex``, a long option) or an assignment (``A``, a short option) of ``contracts``
        (None: the whole position). The scenario is validated up front; this raises ValueError for a flat or
        wrong-side position all the same (a programmatic caller)."""
        pos = self.book.get((account, con_id))
        want_long = code == "Ex"
        if pos is None or pos.qty == 0 or (pos.qty > 0) != want_long:
            side = "long" if want_long else "short"
            raise ValueError(f"{'exercise' if want_long else 'assign'}: {account} holds no {side} position in {con_id}")
        n = abs(pos.qty) if contracts is None else contracts
        if n > abs(pos.qty):
            raise ValueError(f"{account} {con_id}: {n} contracts to settle, only {abs(pos.qty)} held")
        return self.settle(pos, n, code)

    def expire(self, con_ids: list[int] | None, session_day: date | None = None) -> Iterator[BookPosition]:
        """Settle expired option positions, yielding each changed position (an option, then its stock leg).

        ``con_ids`` given: exactly those; otherwise every option due by ``session_day`` or by now. Out of the money:
        expired worthless (``Ep``); in the money: auto-exercised (``Ex``, long) or assigned (``A``, short), with
        the stock delivered for an equity option (``settle``).
        """
        for pos in list(self.book.values()):
            c = pos.contract
            if not c.is_option or pos.qty == 0 or c.expiry_at is None:
                continue
            if con_ids is not None and c.con_id not in con_ids:
                continue
            if con_ids is None:
                due = c.expiry_date is not None and session_day is not None and c.expiry_date <= session_day
                due = due or c.expiry_at <= self.now
                if not due:
                    continue
            spot = self.market.underlying_price(c.symbol, self.now)
            intrinsic = round(max(spot - c.strike, 0.0) if c.right == "C" else max(c.strike - spot, 0.0), 4)
            code = "Ep" if intrinsic == 0 else ("Ex" if pos.qty > 0 else "A")
            yield from self.settle(pos, abs(pos.qty), code)

    def session_cut(self) -> None:
        """Daily reset at the EOD cut: the account window's realized PnL and the PnL reset reference roll over."""
        self.executions.session_cut()
        for key, pos in list(self.book.items()):
            ledger = (pos.account, pos.contract.currency)
            self.settled_cash[ledger] = self.settled_cash.get(ledger, 0.0) + _fills_cash(pos)
            if pos.qty == 0:
                del self.book[key]
                continue
            mark = self.quote(pos.contract).price
            pos.prev_close_mark = mark
            pos.reset_mark = mark
            pos.prev_close_qty = pos.qty
            pos.realized_session = None
            pos.commissions_session = 0.0
            pos.fills_session = []
            pos.traded_this_session = False
            pos.opened_this_session = False


def _fills_cash(pos: BookPosition) -> float:
    """The cash the session's fills of ``pos`` moved (buying costs, selling brings; commissions cost)."""
    m = pos.contract.multiplier
    return -sum(f.qty * f.price * m + f.commission for f in pos.fills_session)
