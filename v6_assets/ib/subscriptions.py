"""The subscription policy of one IB connection: which accounts, PnL lines and market-data lines it holds.

- Positions: ``reqPositions`` (all accounts; requested at connect, ``StartupFetch.POSITIONS``).
- PnL: ``reqPnLSingle`` for every open allowed position (~1/s each): the per-position mark source for ALL accounts.
  Cancelled when the position closes (see ``sync``).
- Portfolio (``reqAccountUpdates``): IB serves one account at a time, so the first allowed account is subscribed
  and, with several, the next one every ``portfolio_rotation_s`` (default 180 s, IB's own push period). Its fields
  (market_price/value, unrealized/realized_pnl) are therefore fresh for one account at a time; the ib_* fields from
  PnL-single are fresh for all.
- Model greeks: ``reqMktData`` for open option contracts within ``line_budget`` lines; past it, the largest
  |position x multiplier| are pinned and a tenth of the budget rotates through the rest every ``greeks_rotation_s``
  (``plan_greeks_lines``).

It decides and sends requests; WHEN to re-sync (position changes, ticks) is the connection loop's business.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from ib_async import IB, Contract

from v6_assets.ib.convert import ContractFields, plan_greeks_lines
from v6_assets.ib.settings import StreamerSettings
from v6_assets.ib.status import SubscriptionStatus

log = logging.getLogger(__name__)

# A closed position keeps its PnL-single line at most this long while waiting for IB to report position 0.
PNL_CLOSE_GRACE_S = 10.0

PositionKey = tuple[str, int]  # (account, con_id)
OpenPositions = Mapping[PositionKey, tuple[ContractFields, float]]


class SubscriptionPolicy:
    """The subscriptions of ONE connection (a fresh policy per ``IB`` instance: IB forgets them on disconnect)."""

    def __init__(
        self,
        ib: IB,
        settings: StreamerSettings,
        open_positions: Callable[[], OpenPositions],
        ticks: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ib = ib
        # Seconds for the rotation periods and the close grace: real time, or simulated time in a lock-step seed.
        self.ticks = ticks
        self.settings = settings
        self._open_positions = open_positions
        self.accounts: tuple[str, ...] = ()  # the allowed managed accounts, known once connected
        self.pnl_subs: set[PositionKey] = set()
        # Closed positions keep their PnL-single line until it reports position 0 (it carries the closing trade's
        # realized PnL, the only source for accounts outside the portfolio subscription), or a grace period passed.
        self.closing_since: dict[PositionKey, float] = {}
        self.pnl_zero_seen: set[PositionKey] = set()
        self.mkt_subs: dict[int, Contract] = {}
        # The order the gateway sends market data in: each contract's latest reqMktData, counted (kept after a cancel:
        # ticks of a cancelled line may still be on their way).
        self.greeks_order: dict[int, int] = {}
        self._greeks_requests = 0
        # The last model-greeks object per line: ticker events fire for any tick, greeks change far less often.
        self.last_greeks: dict[int, Any] = {}
        self.portfolio_index = 0
        self.portfolio_account: str | None = None
        self.portfolio_rotated_at = 0.0
        self.greeks_rotation = 0
        self.greeks_rotated_at = 0.0

    # -- accounts and portfolio rotation -------------------------------------------------------------------------
    def choose_accounts(self, managed: tuple[str, ...]) -> None:
        """The gateway's managed accounts, filtered by ``V6_IB_ACCOUNTS`` when set."""
        allow = self.settings.accounts
        self.accounts = tuple(a for a in managed if not allow or a in allow)
        missing = [a for a in allow if a not in managed]
        if missing:
            log.warning("V6_IB_ACCOUNTS lists accounts the gateway does not manage: %s", ",".join(missing))

    async def subscribe_portfolio(self) -> None:
        """Subscribe the current account's portfolio and wait for IB's first answer (once, after connect)."""
        account = self._select_portfolio_account(rotate=False)
        if account is None:
            return
        try:
            await asyncio.wait_for(self.ib.reqAccountUpdatesAsync(account), self.settings.connect_timeout_s)
        except (TimeoutError, ConnectionError) as exc:
            log.warning("portfolio subscription for %s did not complete: %s", account, exc)

    def rotate_portfolio_if_due(self, now: float) -> None:
        if len(self.accounts) > 1 and now - self.portfolio_rotated_at >= self.settings.portfolio_rotation_s:
            account = self._select_portfolio_account(rotate=True)
            if account is not None:
                # Fire and forget: the maintenance loop (heartbeat!) must never wait on the gateway. Subscribing an
                # account replaces the previous one on IB's side.
                self.ib.client.reqAccountUpdates(True, account)

    def _select_portfolio_account(self, rotate: bool) -> str | None:
        if not self.accounts:
            return None
        if rotate:
            self.portfolio_index = (self.portfolio_index + 1) % len(self.accounts)
        account = self.accounts[self.portfolio_index % len(self.accounts)]
        self.portfolio_account = account
        self.portfolio_rotated_at = self.ticks()
        return account

    # -- PnL-single and model-greeks lines ----------------------------------------------------------------------
    @property
    def closing(self) -> bool:
        """Some closed position still holds its PnL-single line (re-sync until it is released)."""
        return bool(self.closing_since)

    def start_greeks_rotation(self, now: float) -> None:
        self.greeks_rotated_at = now

    def rotate_greeks_if_due(self, now: float) -> bool:
        """Advance the greeks rotation when its period has passed; True if it did (then re-sync)."""
        if now - self.greeks_rotated_at < self.settings.greeks_rotation_s:
            return False
        self.greeks_rotated_at = now
        self.greeks_rotation += 1
        return True

    def pnl_reported_flat(self, key: PositionKey) -> None:
        """PnL-single said position 0: the closing trade's PnL is in, the line may go at the next sync."""
        self.pnl_zero_seen.add(key)

    def greeks_changed(self, con_id: int, greeks: Any) -> bool:
        if self.last_greeks.get(con_id) is greeks:
            return False
        self.last_greeks[con_id] = greeks
        return True

    def sync(self) -> None:
        """PnL-single per open allowed position; model greeks within the line budget."""
        ib = self.ib
        if not ib.isConnected():
            return
        open_positions = self._open_positions()
        for key in sorted(set(open_positions) - self.pnl_subs):
            ib.reqPnLSingle(key[0], "", key[1])
            self.pnl_subs.add(key)
        now = self.ticks()
        for key in set(open_positions) & set(self.closing_since):
            del self.closing_since[key]  # reopened
            self.pnl_zero_seen.discard(key)
        for key in sorted(self.pnl_subs - set(open_positions)):
            since = self.closing_since.setdefault(key, now)
            if key in self.pnl_zero_seen or now - since >= PNL_CLOSE_GRACE_S:
                ib.cancelPnLSingle(key[0], "", key[1])
                self.pnl_subs.discard(key)
                self.pnl_zero_seen.discard(key)
                del self.closing_since[key]
        priorities: dict[int, float] = {}
        contracts = {}
        for (_account, con_id), (fields, qty) in open_positions.items():
            if fields.sec_type == "STK":
                continue  # a kept stock leg: no model greeks (its delta is 1 per share)
            priorities[con_id] = priorities.get(con_id, 0.0) + abs(qty * (fields.multiplier or 1.0))
            contracts[con_id] = fields
        wanted = plan_greeks_lines(priorities, self.settings.line_budget, self.greeks_rotation)
        for con_id in sorted(set(self.mkt_subs) - wanted):
            ib.cancelMktData(self.mkt_subs.pop(con_id))
            self.last_greeks.pop(con_id, None)
        for con_id in sorted(wanted - set(self.mkt_subs)):
            c = contracts[con_id]
            contract = Contract(conId=con_id, secType=c.sec_type, exchange=c.exchange or "SMART", currency=c.currency)
            ib.reqMktData(contract, "", False, False)
            self.mkt_subs[con_id] = contract
            self._greeks_requests += 1
            self.greeks_order[con_id] = self._greeks_requests

    # -- after IB dropped our subscriptions (error 1101) -------------------------------------------------------
    def drop_all(self) -> None:
        """Forget every PnL and market-data line and ask for the positions again (then ``sync``).

        IB forgot the lines itself (1101), so PnL-single lines are forgotten on our side only: a cancel per line
        would double the requests of the resubscription (2,000 positions: 4,000 messages at our paced 40/s).
        The few market-data lines (within the line budget) are cancelled through ib_async, which ends its tickers.
        """
        ib = self.ib
        for account, con_id in list(self.pnl_subs):
            # ib_async's own bookkeeping of the line (what ``cancelPnLSingle`` does, without the message)
            req_id = ib.wrapper.pnlSingleKey2ReqId.pop((account, "", con_id), None)
            if req_id is not None:
                ib.wrapper.reqId2PnlSingle.pop(req_id, None)
        for contract in self.mkt_subs.values():
            ib.cancelMktData(contract)
        self.pnl_subs.clear()
        self.mkt_subs.clear()
        self.last_greeks.clear()
        ib.client.reqPositions()

    def resubscribe_portfolio(self) -> None:
        if self.portfolio_account:
            self.ib.client.reqAccountUpdates(True, self.portfolio_account)

    def status(self) -> SubscriptionStatus:
        return SubscriptionStatus(
            accounts=self.accounts,
            portfolio_account=self.portfolio_account,
            pnl_subscriptions=len(self.pnl_subs),
            greeks_lines=len(self.mkt_subs),
            line_budget=self.settings.line_budget,
        )
