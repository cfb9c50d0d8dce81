"""From ib_async events to typed updates on the fan-out: position, portfolio, PnL-single and model-greeks ticks.

Conversion (``PositionMerger``, ``GreeksThrottle``) happens here; bad input is counted and logged, never raised into
ib_async's reader. The subscription policy only cares when a position's QUANTITY changes (open/closed, greeks
priority), so that is the one thing reported back through ``on_quantity_change``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from v6_assets.ib.convert import MODEL_GREEKS_TICK, Clock, GreeksThrottle, PositionMerger
from v6_assets.ib.fanout import FanOut
from v6_assets.ib.models import PositionUpdate
from v6_assets.ib.settings import StreamerSettings
from v6_assets.ib.subscriptions import OpenPositions, SubscriptionPolicy

log = logging.getLogger(__name__)

_NO_QTY = float("nan")  # "never seen" marker: NaN differs from every quantity, None included


class UpdatePublisher:
    """Converts and publishes the updates of one streamer run (it outlives connections: ``seq`` keeps counting)."""

    def __init__(
        self,
        settings: StreamerSettings,
        clock: Clock,
        fanout: FanOut,
        on_quantity_change: Callable[[], None],
        current_subscriptions: Callable[[], SubscriptionPolicy | None],
    ) -> None:
        self.merger = PositionMerger(settings.sec_types, settings.accounts, clock)
        self.throttle = GreeksThrottle(settings.greeks_throttle_s, clock)
        self.fanout = fanout
        self._on_quantity_change = on_quantity_change
        self._current_subscriptions = current_subscriptions
        self.positions_emitted = 0
        self.greeks_emitted = 0
        self.conversion_errors = 0
        self._known_qty: dict[tuple[str, int], float | None] = {}

    def open_positions(self) -> OpenPositions:
        return self.merger.open_positions()

    def publish_position(self, update: PositionUpdate) -> None:
        self.positions_emitted += 1
        self.fanout.publish_position(update)

    def close_missing(self, seen: set[tuple[str, int]]) -> None:
        """After connect the position snapshot is in: close what we hold open that it no longer has."""
        for update in self.merger.close_missing(seen):
            self.publish_position(update)

    def _conversion_failed(self, what: str, raw: Any) -> None:
        # Bad input must not kill the reader, and must not vanish: the raw object goes to the log.
        self.conversion_errors += 1
        log.exception("could not convert %s (kept here for recovery): %r", what, raw)

    # -- ib_async event handlers (loop thread) -----------------------------------------------------------------
    def on_position(self, position: Any) -> None:
        try:
            update = self.merger.on_position(position)
        except Exception:
            self._conversion_failed("position", position)
            return
        if update is not None:
            self.publish_position(update)
            self._quantity_seen(update)

    def on_portfolio(self, item: Any) -> None:
        try:
            update = self.merger.on_portfolio(item)
        except Exception:
            self._conversion_failed("portfolio item", item)
            return
        if update is not None:
            self.publish_position(update)
            self._quantity_seen(update)

    def on_portfolio_values(
        self, contract: Any, position: float, market_price: float, market_value: float, average_cost: float,
        unrealized: float, realized: float, account: str,
    ) -> None:  # fmt: skip
        """ib_async's wrapper ``updatePortfolio`` call (see ``hook_portfolio``)."""
        try:
            update = self.merger.on_portfolio_values(
                contract, position, market_price, market_value, average_cost, unrealized, realized, account
            )
        except Exception:
            raw = (contract, position, market_price, market_value, average_cost, unrealized, realized, account)
            self._conversion_failed("portfolio row", raw)
            return
        if update is not None:
            self.publish_position(update)
            self._quantity_seen(update)

    def hook_portfolio(self, ib: Any) -> None:
        """Take portfolio rows from this connection's wrapper, in place of ib_async's ``updatePortfolio``.

        Why: per row ib_async copies the contract, builds a ``PortfolioItem`` and formats an info log string of it
        whether logging is on or not, about three times our own conversion's cost (``bench.ingest_profile``), for
        state the streamer never reads (``ib.portfolio()``, ``updatePortfolioEvent``). Nothing of ib_async is
        patched: only this connection's wrapper object gets the attribute, as ``ExecutionTracker.attach`` does."""
        ib.wrapper.updatePortfolio = self.on_portfolio_values

    def hook_pnl_single(self, ib: Any, on_market_data: Callable[[], None]) -> None:
        """Take PnL-single updates from this connection's wrapper call, after ib_async's own ``pnlSingle`` (its state
        stays as it is: the ``PnLSingle`` object is updated, then handed to us), instead of through its event (the
        event dispatch was a measurable share of the cost of the most frequent message). ``on_market_data``: called
        for every PnL-single of a subscribed position (market data flows)."""
        wrapper = ib.wrapper
        ib_async_pnl_single = wrapper.pnlSingle

        def pnl_single(req_id: int, *values: Any) -> None:
            ib_async_pnl_single(req_id, *values)
            pnl = wrapper.reqId2PnlSingle.get(req_id)  # looked up each time: ib_async replaces the dict on reset
            if pnl is not None:
                self.on_pnl_single(pnl)
                on_market_data()

        wrapper.pnlSingle = pnl_single

    def on_pnl_single(self, pnl: Any) -> None:
        try:
            update = self.merger.on_pnl_single(pnl)
        except Exception:
            self._conversion_failed("PnL single", pnl)
            return
        if update is not None:
            self.publish_position(update)
            self._quantity_seen(update)
        if pnl.position == 0:
            subscriptions = self._current_subscriptions()
            if subscriptions is not None:
                subscriptions.pnl_reported_flat((pnl.account, pnl.conId))
                self._on_quantity_change()

    def _quantity_seen(self, update: PositionUpdate) -> None:
        # Subscriptions depend on quantities only (open/closed, greeks priority): a mark change must not trigger
        # a subscription pass over every position (thousands of them in a burst).
        key = (update.account, update.con_id)
        if self._known_qty.get(key, _NO_QTY) != update.position:
            self._known_qty[key] = update.position
            self._on_quantity_change()
            for kept in self.merger.take_kept_stock():  # a stock leg reported before its option's change
                self.publish_position(kept)
                self._quantity_seen(kept)

    def on_tickers(self, tickers: Any) -> None:
        subscriptions = self._current_subscriptions()
        if subscriptions is None:
            return
        now = time.monotonic()
        # ib_async hands over a set (its order varies from run to run): take the tickers in the order the gateway
        # sends them in (their requests'), so the greeks of a TCP read are published in the same order every run.
        order = subscriptions.greeks_order
        for ticker in sorted(tickers, key=lambda t: order.get(t.contract.conId, 0)):
            comp = ticker.modelGreeks
            if comp is None:
                continue
            con_id = ticker.contract.conId
            if not subscriptions.greeks_changed(con_id, comp):
                continue
            try:
                update = self.throttle.offer(con_id, MODEL_GREEKS_TICK, comp, now)
            except Exception:
                self._conversion_failed("option computation", comp)
                continue
            if update is not None:
                self.greeks_emitted += 1
                self.fanout.publish_greeks(update)

    def flush_greeks(self, force: bool = False) -> None:
        """Publish the throttled greeks that are due (all of them with ``force``, at the end of a session)."""
        now = float("inf") if force else time.monotonic()
        for update in self.throttle.flush_due(now):
            self.greeks_emitted += 1
            self.fanout.publish_greeks(update)
