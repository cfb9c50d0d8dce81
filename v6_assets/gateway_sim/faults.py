"""Fault injection: dropped connections, refused connects, stalled output, errors and broken frames.

Methods here run on the simulator's loop; ``GatewaySimulator`` wraps them for callers on other threads.
"""

from __future__ import annotations

import asyncio
import time

from v6_assets.gateway_sim import wire
from v6_assets.gateway_sim.protocol import Out
from v6_assets.gateway_sim.transport import ClientRegistry, Listener

# The nightly reset as IB sends it: connectivity lost, the farms broken; then restored and the farms OK.
RESET_START = ((1100, "Connectivity between IB and Trader Workstation has been lost."),
               (2103, "Market data farm connection is broken:usfarm"),
               (2105, "HMDS data farm connection is broken:ushmds"),
               (2157, "Sec-def data farm connection is broken:secdefnj"))  # fmt: skip
RESTORED_DATA_LOST = (1101, "Connectivity between IB and Trader Workstation has been restored - data lost.")
RESTORED_DATA_KEPT = (1102, "Connectivity between IB and Trader Workstation has been restored - data maintained.")
FARMS_OK = ((2104, "Market data farm connection is OK:usfarm"), (2106, "HMDS data farm connection is OK:ushmds"),
            (2158, "Sec-def data farm connection is OK:secdefnj"))  # fmt: skip
# A market data farm drop without 1100 (common, 1-3 minutes): only the farm's own messages.
FARM_DOWN = (2103, "Market data farm connection is broken:usfarm")
FARM_UP = (2104, "Market data farm connection is OK:usfarm")
COMPETING_SESSION = (10197, "No market data during competing live session")
MALFORMED_PAYLOAD = b"\xffNOT-A-MSG-ID\x00garbage\x00"
# The contract part of a portfolio row, sent without the rest (clients must drop it).
TRUNCATED_PORTFOLIO = {"con_id": 1, "symbol": "TRUNC", "sec_type": "OPT", "expiry": "20300101", "strike": 1.0,
                       "right": "C", "multiplier": "100"}  # fmt: skip


class FaultInjector:
    """The faults a timeline or a test can trigger; also the stall gate every client write consults."""

    def __init__(self, clients: ClientRegistry, listener: Listener) -> None:
        self.clients = clients
        self.listener = listener
        self._stall_until = 0.0

    def output_held(self) -> bool:
        return self._stall_until > time.monotonic()

    def disconnect_all(self) -> None:
        for client in self.clients.all():
            if client.transport is not None:
                client.transport.abort()

    def refuse_connections(self, seconds: float) -> None:
        self.listener.refuse(seconds)

    def stall_output(self, seconds: float) -> None:
        """Hold every outgoing message for ``seconds`` of real time, then deliver them all at once."""
        self._stall_until = time.monotonic() + seconds
        asyncio.get_running_loop().call_later(seconds, self._end_stall)

    def _end_stall(self) -> None:
        # a later stall extends the window; its own timer delivers
        if time.monotonic() >= self._stall_until - 0.001:
            for client in self.clients.all():
                client.flush_stalled()

    def send_error(self, code: int, message: str, req_id: int = -1) -> None:
        for client in self.clients.ready():
            client.send_error(req_id, code, message)

    def reset_start(self) -> None:
        for code, message in RESET_START:
            self.send_error(code, message)

    def reset_end(self, data_lost: bool) -> None:
        """1101 (and every subscription forgotten: the client must resubscribe) or 1102; then the farms are OK."""
        code, message = RESTORED_DATA_LOST if data_lost else RESTORED_DATA_KEPT
        for client in self.clients.ready():
            if data_lost:
                client.positions_sub = False
                client.account_sub = None
                client.pnl_subs.clear()
                client.pnl_single_subs.clear()
                for req_id in list(client.mkt_subs):
                    self.clients.release_line(client, req_id)
            client.send_error(-1, code, message)
        for code, message in FARMS_OK:
            self.send_error(code, message)

    def farm_down(self) -> None:
        self.send_error(*FARM_DOWN)

    def farm_up(self) -> None:
        self.send_error(*FARM_UP)

    def competing_session(self) -> None:
        """10197 for every market data subscription (once per client without one)."""
        code, message = COMPETING_SESSION
        for client in self.clients.ready():
            for req_id in list(client.mkt_subs) or [-1]:
                client.send_error(req_id, code, message)

    def restart(self, seconds: float) -> None:
        """The daily gateway restart: every socket drops, connections are refused for ``seconds`` (real time)."""
        self.disconnect_all()
        self.refuse_connections(seconds)

    def send_malformed_frame(self) -> None:
        """A frame whose message id is not a number (clients must log it and carry on)."""
        for client in self.clients.ready():
            client.write_raw(wire.raw_frame(MALFORMED_PAYLOAD))

    def send_truncated_message(self) -> None:
        """A PORTFOLIO_VALUE with its field list cut short after the contract (clients must drop it)."""
        for client in self.clients.ready():
            if client.encoder is not None:
                client.write_raw(client.encoder.truncated(Out.PORTFOLIO_VALUE, **TRUNCATED_PORTFOLIO))
