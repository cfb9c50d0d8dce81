"""Fault injection: dropped connections, refused connects, stalled output, errors and broken frames.

Methods here run on the simulator's loop; ``GatewaySimulator`` wraps them for callers on other threads.
"""

from __future__ import annotations

import asyncio
import time

from v6_assets.gateway_sim import wire
from v6_assets.gateway_sim.protocol import Out
from v6_assets.gateway_sim.transport import ClientRegistry, Listener

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

    def send_malformed_frame(self) -> None:
        """A frame whose message id is not a number (clients must log it and carry on)."""
        for client in self.clients.ready():
            client.write_raw(wire.raw_frame(MALFORMED_PAYLOAD))

    def send_truncated_message(self) -> None:
        """A PORTFOLIO_VALUE with its field list cut short after the contract (clients must drop it)."""
        for client in self.clients.ready():
            if client.encoder is not None:
                client.write_raw(client.encoder.truncated(Out.PORTFOLIO_VALUE, **TRUNCATED_PORTFOLIO))
