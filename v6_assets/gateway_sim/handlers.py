"""Incoming requests: the read-only guard, startApi, and a dispatch table from request id to handler."""

from __future__ import annotations

import logging
from collections.abc import Callable

from v6_assets.gateway_sim import executions, pacing, protocol
from v6_assets.gateway_sim.clock import SimClock
from v6_assets.gateway_sim.connection import ClientConnection
from v6_assets.gateway_sim.protocol import In, Out
from v6_assets.gateway_sim.publisher import Publisher
from v6_assets.gateway_sim.scenario_model import ContractSpec
from v6_assets.gateway_sim.state import MarketState
from v6_assets.gateway_sim.transport import Claim, ClientRegistry
from v6_assets.gateway_sim.truth import TruthRecorder

log = logging.getLogger(__name__)

READ_ONLY_ERROR = 321
READ_ONLY_MESSAGE = "Error validating request:-'bX' : cause - The API interface is currently in Read-Only mode."
NO_SECURITY_DEFINITION = "No security definition has been found for the request"
# reqMktData's field count from which the snapshot flag is present (ib_async's layout).
MKT_DATA_FIELDS_WITH_SNAPSHOT = 19


def _invalid_account(account: str) -> str:
    return f"Error validating request:-'bc' : cause - Invalid account code {account!r}"


class RequestHandlers:
    """Answers each client request; ``dispatch`` is the connection's entry point for every frame after the handshake."""

    def __init__(
        self,
        state: MarketState,
        clients: ClientRegistry,
        recorder: TruthRecorder,
        publisher: Publisher,
        clock: SimClock,
    ) -> None:
        self.state = state
        self.scenario = state.scenario
        self.clients = clients
        self.recorder = recorder
        self.publisher = publisher
        self.clock = clock

    def dispatch(self, client: ClientConnection, fields: list[str]) -> None:
        if not fields:
            raise protocol.ProtocolError("empty message")
        msg_id = protocol.to_int(fields[0], "msgId")
        limit = self.scenario.pacing.max_per_s
        if limit and client.ready and not self._paced(client, limit, msg_id, fields):
            return
        if msg_id in protocol.ORDER_REQUESTS:
            self.recorder.record_request(client.client_id, msg_id, fields, violation=True)
            req_id = protocol.to_int(fields[2], "orderId") if len(fields) > 2 and msg_id != In.REQ_GLOBAL_CANCEL else -1
            log.warning("read-only violation: %s from client %s", protocol.ORDER_REQUESTS[msg_id], client.client_id)
            client.send_error(req_id, READ_ONLY_ERROR, READ_ONLY_MESSAGE)
            return
        if msg_id == In.START_API and not client.ready and len(fields) > 2:
            client.client_id = protocol.to_int(fields[2], "clientId")  # so the record names the client
        self.recorder.record_request(client.client_id, msg_id, fields)
        if msg_id == In.START_API:
            self._start_api(client, fields)
            return
        if not client.ready:
            raise protocol.ProtocolError(f"message {msg_id} before startApi")
        handler = self.HANDLERS.get(msg_id)
        if handler is None:
            log.info("ignoring unsupported request %s from client %s", msg_id, client.client_id)
            return
        try:
            handler(self, client, fields)
        except (IndexError, protocol.ProtocolError) as exc:
            client.send_error(-1, 320, f"Error reading request: {exc or 'missing fields'}")

    def _paced(self, client: ClientConnection, limit: int, msg_id: int, fields: list[str]) -> bool:
        """Whether the message may be served under IB's pacing limit; error 100 / disconnect when not."""
        verdict, warn = pacing.check(client.pacing, limit, self.scenario.pacing.disconnect_after)
        if verdict == pacing.Verdict.SERVE:
            return True
        self.recorder.record_request(client.client_id, msg_id, fields)
        if warn:
            received = len(client.pacing.times) + 1
            client.send_error(-1, pacing.PACING_ERROR, pacing.pacing_message(limit, received))
            self.recorder.health(client.client_id, "pacing_violation", rejected=client.pacing.rejected,
                                 strikes=client.pacing.strikes)  # fmt: skip
        if verdict == pacing.Verdict.DISCONNECT:
            log.warning("pacing: closing client %s after %d seconds over %d msg/s", client.client_id,
                        client.pacing.strikes, limit)  # fmt: skip
            self.recorder.health(client.client_id, "pacing_disconnect", rejected=client.pacing.rejected)
            client.close()
        return False

    def _start_api(self, client: ClientConnection, fields: list[str]) -> None:
        if client.ready:
            return
        client_id = protocol.to_int(fields[2] if len(fields) > 2 else "", "clientId")
        client.client_id = client_id
        claim = self.clients.claim(client_id)
        if claim is Claim.ID_IN_USE:
            client.send_error(
                -1, 326, "Unable to connect as the client id is already in use. Retry with a unique client id."
            )
            client.close()
            return
        if claim is Claim.TOO_MANY_CLIENTS:
            client.send_error(-1, 502, f"Couldn't connect to TWS: maximum of {self.scenario.max_clients} API clients")
            client.close()
            return
        client.ready = True
        self.clients.add(client)
        client.send(Out.NEXT_VALID_ID, order_id=self.state.next_order_id)
        client.send(Out.MANAGED_ACCTS, accounts=",".join(self.scenario.account_ids))

    # --- positions and accounts
    def _req_positions(self, client: ClientConnection, fields: list[str]) -> None:
        client.positions_sub = True
        for pos in self.state.book.values():
            self.publisher.send_position(client, pos)
        client.send(Out.POSITION_END)

    def _cancel_positions(self, client: ClientConnection, fields: list[str]) -> None:
        client.positions_sub = False

    def _req_account_updates(self, client: ClientConnection, fields: list[str]) -> None:
        subscribe = fields[2] not in ("0", "", "false", "False")
        account = fields[3] if len(fields) > 3 else ""
        if not subscribe:
            client.account_sub = None
            return
        if account not in self.scenario.account_ids:
            client.send_error(-1, 321, _invalid_account(account))
            return
        # IB keeps one account subscription per client: a second subscribe replaces the first.
        client.account_sub = account
        self.publisher.send_account_download(client, account)

    def _req_account_updates_multi(self, client: ClientConnection, fields: list[str]) -> None:
        req_id = protocol.to_int(fields[2], "reqId")
        account = fields[3]
        model_code = fields[4] if len(fields) > 4 else ""
        if client.encoder is None or not client.encoder.has(Out.ACCOUNT_UPDATE_MULTI):
            client.send_error(req_id, 503, "The TWS is out of date and must be upgraded.")
            return
        if account not in self.scenario.account_ids:
            client.send_error(req_id, 321, _invalid_account(account))
            return
        client.account_multi_subs[req_id] = account
        for key, value, currency in self.state.account_values(account):
            client.send(Out.ACCOUNT_UPDATE_MULTI, req_id=req_id, account=account, model_code=model_code, key=key,
                        value=value, currency=currency)  # fmt: skip
            self.recorder.sent(client.client_id, "account_value", account, None, key=key, value=value,
                               currency=currency)  # fmt: skip
        client.send(Out.ACCOUNT_UPDATE_MULTI_END, req_id=req_id)

    # --- orders (not modelled: end markers only), executions, ids, time
    def _req_executions(self, client: ClientConnection, fields: list[str]) -> None:
        """The day's executions, the end marker, then the commission reports already due (as the gateway does)."""
        req_id = protocol.to_int(fields[2], "reqId")
        executions.answer_request(client, req_id, self.state.executions, self.state.now)

    def _req_open_orders(self, client: ClientConnection, fields: list[str]) -> None:
        client.send(Out.OPEN_ORDER_END)

    def _req_completed_orders(self, client: ClientConnection, fields: list[str]) -> None:
        if client.encoder is not None and client.encoder.has(Out.COMPLETED_ORDERS_END):
            client.send(Out.COMPLETED_ORDERS_END)

    def _req_current_time(self, client: ClientConnection, fields: list[str]) -> None:
        client.send(Out.CURRENT_TIME, time=int(self.clock.now().timestamp()))

    def _req_ids(self, client: ClientConnection, fields: list[str]) -> None:
        client.send(Out.NEXT_VALID_ID, order_id=self.state.next_order_id)

    # --- PnL
    def _req_pnl(self, client: ClientConnection, fields: list[str]) -> None:
        req_id = protocol.to_int(fields[1], "reqId")
        account = fields[2]
        if (client.version or 0) < protocol.MIN_VERSION_PNL:
            client.send_error(req_id, 503, "The TWS is out of date and must be upgraded.")
            return
        if account not in self.scenario.account_ids:
            client.send_error(req_id, 321, _invalid_account(account))
            return
        client.pnl_subs[req_id] = account
        self.publisher.send_pnl(client, req_id, account)

    def _req_pnl_single(self, client: ClientConnection, fields: list[str]) -> None:
        req_id = protocol.to_int(fields[1], "reqId")
        account = fields[2]
        con_id = protocol.to_int(fields[4], "conId")
        if (client.version or 0) < protocol.MIN_VERSION_PNL:
            client.send_error(req_id, 503, "The TWS is out of date and must be upgraded.")
            return
        if (account, con_id) not in self.state.book:
            client.send_error(req_id, 200, f"No position for account {account!r} conId {con_id}")
            return
        client.pnl_single_subs[req_id] = (account, con_id)
        self.publisher.send_pnl_single(client, req_id, self.state.book[(account, con_id)])

    def _cancel_pnl(self, client: ClientConnection, fields: list[str]) -> None:
        client.pnl_subs.pop(protocol.to_int(fields[1], "reqId"), None)

    def _cancel_pnl_single(self, client: ClientConnection, fields: list[str]) -> None:
        client.pnl_single_subs.pop(protocol.to_int(fields[1], "reqId"), None)

    # --- market data
    def _resolve_contract(self, fields: list[str]) -> ContractSpec | str | None:
        """A scenario contract by conId, else by its description; an underlying's symbol for STK/FUT/IND."""
        con_id = protocol.to_int(fields[3], "conId")
        symbol, sec_type = fields[4], fields[5]
        if con_id in self.scenario.contracts:
            return self.scenario.contracts[con_id]
        if con_id == 0:
            expiry, strike, right = fields[6][:8], protocol.to_float(fields[7], "strike"), fields[8]
            for c in self.scenario.contracts.values():
                if (c.symbol, c.sec_type) == (symbol, sec_type) and (
                    not c.is_option or (c.expiry_wire[:8] == expiry and c.strike == strike and c.right == right[:1])
                ):
                    return c
            if symbol in self.scenario.underlyings and sec_type in ("STK", "FUT", "IND"):
                return symbol
        return None

    def _req_mkt_data(self, client: ClientConnection, fields: list[str]) -> None:
        req_id = protocol.to_int(fields[2], "reqId")
        contract = self._resolve_contract(fields)
        if contract is None:
            client.send_error(req_id, 200, NO_SECURITY_DEFINITION)
            return
        snapshot = False
        if len(fields) >= MKT_DATA_FIELDS_WITH_SNAPSHOT:
            dnc = fields[15] == "1"  # a delta-neutral contract adds three fields before the snapshot flag
            snapshot = fields[17 + (3 if dnc else 0)] == "1"
        if req_id not in client.mkt_subs:
            if not self.clients.take_line():
                client.send_error(
                    req_id, 101, f"Max number of tickers has been reached ({self.scenario.market_data_lines} lines)"
                )
                return
            client.mkt_subs[req_id] = contract
        self.publisher.send_market_data(client, req_id, contract)
        if snapshot:
            client.send(Out.TICK_SNAPSHOT_END, req_id=req_id)
            self.clients.release_line(client, req_id)

    def _cancel_mkt_data(self, client: ClientConnection, fields: list[str]) -> None:
        self.clients.release_line(client, protocol.to_int(fields[2], "reqId"))

    def _req_contract_details(self, client: ClientConnection, fields: list[str]) -> None:
        """Not modelled: answered with error 200 at once so clients fail fast instead of waiting for a timeout."""
        client.send_error(protocol.to_int(fields[2], "reqId"), 200, NO_SECURITY_DEFINITION)

    def _req_account_summary(self, client: ClientConnection, fields: list[str]) -> None:
        """Answered with its end marker only (ib_async sends it after error 1102; nothing here needs the summary)."""
        client.send(Out.ACCOUNT_SUMMARY_END, req_id=protocol.to_int(fields[2], "reqId"))

    def _ignore(self, client: ClientConnection, fields: list[str]) -> None:
        """Accepted and ignored (e.g. reqMarketDataType: the simulator's data is always 'live')."""

    HANDLERS: dict[int, Callable[[RequestHandlers, ClientConnection, list[str]], None]] = {
        In.REQ_POSITIONS: _req_positions,
        In.CANCEL_POSITIONS: _cancel_positions,
        In.REQ_ACCT_DATA: _req_account_updates,
        In.REQ_ACCOUNT_UPDATES_MULTI: _req_account_updates_multi,
        In.CANCEL_ACCOUNT_UPDATES_MULTI: _ignore,
        In.REQ_EXECUTIONS: _req_executions,
        In.REQ_OPEN_ORDERS: _req_open_orders,
        In.REQ_ALL_OPEN_ORDERS: _req_open_orders,
        In.REQ_AUTO_OPEN_ORDERS: _ignore,
        In.REQ_COMPLETED_ORDERS: _req_completed_orders,
        In.REQ_CURRENT_TIME: _req_current_time,
        In.REQ_IDS: _req_ids,
        In.REQ_PNL: _req_pnl,
        In.CANCEL_PNL: _cancel_pnl,
        In.REQ_PNL_SINGLE: _req_pnl_single,
        In.CANCEL_PNL_SINGLE: _cancel_pnl_single,
        In.REQ_MKT_DATA: _req_mkt_data,
        In.CANCEL_MKT_DATA: _cancel_mkt_data,
        In.REQ_MARKET_DATA_TYPE: _ignore,
        In.REQ_ACCOUNT_SUMMARY: _req_account_summary,
        In.REQ_CONTRACT_DATA: _req_contract_details,
        In.CANCEL_ACCOUNT_SUMMARY: _ignore,
    }
