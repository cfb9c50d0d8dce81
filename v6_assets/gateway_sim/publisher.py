"""Outgoing value messages: which subscribed client is sent what, each value recorded as ground truth."""

from __future__ import annotations

from v6_assets.gateway_sim import wire
from v6_assets.gateway_sim.book import BookPosition
from v6_assets.gateway_sim.connection import ClientConnection
from v6_assets.gateway_sim.protocol import Out
from v6_assets.gateway_sim.scenario_model import MARKET_DATA_PAUSES, ContractSpec
from v6_assets.gateway_sim.state import MarketState
from v6_assets.gateway_sim.transport import ClientRegistry
from v6_assets.gateway_sim.truth import TruthRecorder

GREEKS_TICK = 13  # model option computation
# What IB sends for greeks it could not compute: -1 for prices and vol, -2 for the greeks.
GREEKS_SENTINELS = {"implied_vol": -1.0, "delta": -2.0, "opt_price": -1.0, "pv_dividend": -1.0, "gamma": -2.0,
                    "vega": -2.0, "theta": -2.0, "und_price": -1.0}  # fmt: skip


class Publisher:
    """Sends portfolio, position, PnL, account and market data messages to the clients subscribed to them."""

    def __init__(self, state: MarketState, clients: ClientRegistry, recorder: TruthRecorder) -> None:
        self.state = state
        self.clients = clients
        self.recorder = recorder

    # --- single messages
    def send_portfolio(self, client: ClientConnection, pos: BookPosition) -> None:
        c = pos.contract
        mark = self.state.quote(c).price
        if pos.qty:
            values = (pos.qty, mark, pos.market_value(mark), pos.average_cost, pos.unrealized(mark))
        else:
            values = (0.0, mark, 0.0, 0.0, 0.0)
        position, market_price, market_value, average_cost, unrealized = values
        realized = self.state.realized_wire(pos)
        client.send(
            Out.PORTFOLIO_VALUE, **wire.contract_fields(c, c.primary_exchange), position=position,
            market_price=market_price, market_value=market_value, average_cost=average_cost,
            unrealized_pnl=unrealized, realized_pnl=realized, account=pos.account,
        )  # fmt: skip
        self.recorder.sent(
            client.client_id, "portfolio", pos.account, c.con_id, position=position, market_price=market_price,
            market_value=market_value, average_cost=average_cost, unrealized_pnl=unrealized, realized_pnl=realized,
        )  # fmt: skip

    def send_position(self, client: ClientConnection, pos: BookPosition) -> None:
        c = pos.contract
        avg = pos.average_cost if pos.qty else 0.0
        client.send(
            Out.POSITION_DATA, account=pos.account, **wire.contract_fields(c, c.exchange), position=pos.qty,
            average_cost=avg,
        )  # fmt: skip
        self.recorder.sent(client.client_id, "position", pos.account, c.con_id, position=pos.qty, average_cost=avg)

    def send_pnl_single(self, client: ClientConnection, req_id: int, pos: BookPosition) -> None:
        qty, daily, unrealized, realized, value = self.state.pnl_single_values(pos)
        client.send(
            Out.PNL_SINGLE, req_id=req_id, position=qty, daily_pnl=daily, unrealized_pnl=unrealized,
            realized_pnl=realized, value=value,
        )  # fmt: skip
        self.recorder.sent(
            client.client_id, "pnl_single", pos.account, pos.contract.con_id, req_id=req_id, position=qty,
            daily_pnl=daily, unrealized_pnl=unrealized, realized_pnl=realized, value=value,
        )  # fmt: skip

    def send_pnl(self, client: ClientConnection, req_id: int, account: str) -> None:
        daily, unrealized, realized = self.state.pnl_values(account)
        client.send(Out.PNL, req_id=req_id, daily_pnl=daily, unrealized_pnl=unrealized, realized_pnl=realized)
        self.recorder.sent(client.client_id, "pnl", account, None, req_id=req_id, daily_pnl=daily,
                           unrealized_pnl=unrealized, realized_pnl=realized)  # fmt: skip

    def send_account_values(self, client: ClientConnection, account: str) -> None:
        for key, value, currency in self.state.account_values(account):
            client.send(Out.ACCT_VALUE, key=key, value=value, currency=currency, account=account)
            self.recorder.sent(client.client_id, "account_value", account, None, key=key, value=value,
                               currency=currency)  # fmt: skip

    def send_account_multi(self, client: ClientConnection, req_id: int) -> None:
        """One reqAccountUpdatesMulti subscription's values, at subscription and at each close (intraday values come
        with the rotating reqAccountUpdates subscription: a periodic push for every account would add a third to the
        stream's volume at replay speeds)."""
        account, model_code = client.account_multi_subs[req_id]
        for key, value, currency in self.state.account_values(account):
            client.send(Out.ACCOUNT_UPDATE_MULTI, req_id=req_id, account=account, model_code=model_code, key=key,
                        value=value, currency=currency)  # fmt: skip
            self.recorder.sent(client.client_id, "account_value", account, None, key=key, value=value,
                               currency=currency)  # fmt: skip

    def send_account_download(self, client: ClientConnection, account: str) -> None:
        """The answer to reqAccountUpdates: values, every position (closed-today ones too), time, end marker."""
        now = self.state.now
        self.send_account_values(client, account)
        for pos in self.state.book.values():
            if pos.account == account:
                self.send_portfolio(client, pos)
        client.send(Out.ACCT_UPDATE_TIME, time=wire.account_time(now))
        client.send(Out.ACCT_DOWNLOAD_END, account=account)
        client.stream_due("portfolio", now, 0, 0)

    def send_market_data(self, client: ClientConnection, req_id: int, target: ContractSpec | str) -> None:
        """Quote ticks, plus model greeks for options (every n-th one the sentinels, per scenario nastiness)."""
        state = self.state
        in_rth = state.market.calendar.in_rth(state.now)
        if isinstance(target, str):
            price = state.market.underlying_price(target, state.now)
            self._send_quote_ticks(client, req_id, price, 0.01, in_rth)
            return
        quote = state.quote(target)
        spread = max(0.01, round(quote.price * 0.01, 2))
        self._send_quote_ticks(client, req_id, quote.price, spread, in_rth)
        if not target.is_option:
            return
        counter = client.greeks_counter.get(req_id, 0) + 1
        client.greeks_counter[req_id] = counter
        every = state.scenario.nastiness.greeks_sentinel_every
        if every and counter % every == 0:
            greeks = dict(GREEKS_SENTINELS)
        else:
            greeks = {"implied_vol": quote.implied_vol, "delta": quote.delta, "opt_price": quote.price,
                      "pv_dividend": 0.0, "gamma": quote.gamma, "vega": quote.vega, "theta": quote.theta,
                      "und_price": quote.und_price}  # fmt: skip
        client.send(Out.TICK_OPTION_COMPUTATION, req_id=req_id, tick_type=GREEKS_TICK, **greeks)
        self.recorder.sent(client.client_id, "greeks", "", target.con_id, req_id=req_id, tick_type=GREEKS_TICK,
                           **greeks)  # fmt: skip

    def _send_quote_ticks(self, client: ClientConnection, req_id: int, price: float, spread: float, rth: bool) -> None:
        if rth or not self.state.scenario.nastiness.after_hours_quotes:
            bid, ask = round(price - spread / 2, 4), round(price + spread / 2, 4)
            client.send(Out.TICK_PRICE, req_id=req_id, tick_type=1, price=bid, size=10, attrib_mask=0)
            client.send(Out.TICK_PRICE, req_id=req_id, tick_type=2, price=ask, size=10, attrib_mask=0)
        else:
            # after hours IB sends -1 bid/ask; the last/close stay at the stale close
            client.send(Out.TICK_PRICE, req_id=req_id, tick_type=1, price=-1.0, size=0, attrib_mask=0)
            client.send(Out.TICK_PRICE, req_id=req_id, tick_type=2, price=-1.0, size=0, attrib_mask=0)
        client.send(Out.TICK_PRICE, req_id=req_id, tick_type=4, price=price, size=1, attrib_mask=0)

    # --- fan-out
    def position_changed(self, pos: BookPosition) -> None:
        """Tell every subscriber of ``pos`` about its change (position, portfolio row, PnL single)."""
        for client in self.clients.ready():
            if client.positions_sub:
                self.send_position(client, pos)
            if client.account_sub == pos.account:
                self.send_portfolio(client, pos)
            for req_id, key in client.pnl_single_subs.items():
                if key == pos.key:
                    self.send_pnl_single(client, req_id, pos)

    def send_close_refresh(self) -> None:
        """At a session close: every open position's portfolio row and PnL at the close mark (the EOD truth)."""
        book = self.state.book
        if "reset" in self.state.paused:
            return
        market_data = not MARKET_DATA_PAUSES & self.state.paused
        for client in self.clients.ready():
            if client.account_sub is not None:
                for pos in book.values():
                    if pos.account == client.account_sub and pos.qty:
                        self.send_portfolio(client, pos)
                client.stream_due("portfolio", self.state.now, 0, 0)
            for req_id in list(client.account_multi_subs):
                self.send_account_multi(client, req_id)  # the close's values (the expiries booked): the EOD truth
            if not market_data:
                continue
            for req_id, key in client.pnl_single_subs.items():
                if key in book:
                    self.send_pnl_single(client, req_id, book[key])
            for req_id, account in client.pnl_subs.items():
                self.send_pnl(client, req_id, account)

    def send_due_streams(self) -> None:
        """The periodic streams (account + portfolio, PnL, market data) whose cadence elapsed, per client.

        Nothing during a reset; no market data, PnL or PnL single during a competing live session (10197) or a
        market data farm drop (2103).
        """
        spec = self.state.scenario.clock
        now = self.state.now
        min_real = spec.min_real_interval_s
        paused = self.state.paused
        if "reset" in paused:
            return
        market_data = not MARKET_DATA_PAUSES & paused
        for client in self.clients.ready():
            if client.account_sub is not None and client.stream_due(
                "portfolio", now, spec.portfolio_cadence_s, min_real
            ):
                self.send_account_values(client, client.account_sub)
                for pos in self.state.book.values():
                    if pos.account == client.account_sub and pos.qty:
                        self.send_portfolio(client, pos)
                client.send(Out.ACCT_UPDATE_TIME, time=wire.account_time(now))
            if not market_data:
                continue
            if (client.pnl_single_subs or client.pnl_subs) and client.stream_due(
                "pnl", now, spec.pnl_cadence_s, min_real
            ):
                for req_id, key in client.pnl_single_subs.items():
                    held = self.state.book.get(key)
                    if held is not None and held.qty:
                        self.send_pnl_single(client, req_id, held)
                for req_id, account in client.pnl_subs.items():
                    self.send_pnl(client, req_id, account)
            if client.mkt_subs and client.stream_due("greeks", now, spec.greeks_cadence_s, min_real):
                for req_id, target in list(client.mkt_subs.items()):
                    self.send_market_data(client, req_id, target)
