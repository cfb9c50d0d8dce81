"""The listening socket and the registry of connected clients (client ids, client limit, market data lines)."""

from __future__ import annotations

import asyncio
import enum
import threading
import time
from collections.abc import Callable

from v6_assets.gateway_sim.connection import ClientConnection


class Claim(enum.Enum):
    """Outcome of a startApi's claim of a client id."""

    ACCEPTED = "accepted"
    ID_IN_USE = "id_in_use"  # IB error 326
    TOO_MANY_CLIENTS = "too_many_clients"  # IB error 502


class ClientRegistry:
    """Clients past startApi and the server-wide limits. Mutated on the simulator's loop, read from any thread."""

    def __init__(self, max_clients: int, market_data_lines: int) -> None:
        self.max_clients = max_clients
        self.market_data_lines = market_data_lines
        self._lock = threading.Lock()
        self._clients: list[ClientConnection] = []
        self._id_counts: dict[int, int] = {}  # open connections per claimed client id
        self._id_max: dict[int, int] = {}
        self._lines_used = 0

    def all(self) -> list[ClientConnection]:
        return list(self._clients)

    def ready(self) -> list[ClientConnection]:
        return [c for c in self._clients if c.ready and not c.closed]

    def claim(self, client_id: int) -> Claim:
        """Count a connection claiming ``client_id``; a rejected duplicate counts until it closes."""
        with self._lock:
            count = self._id_counts.get(client_id, 0) + 1
            self._id_counts[client_id] = count
            self._id_max[client_id] = max(self._id_max.get(client_id, 0), count)
            if count > 1:
                return Claim.ID_IN_USE
            if len([c for c in self._clients if c.ready]) >= self.max_clients:
                return Claim.TOO_MANY_CLIENTS
            return Claim.ACCEPTED

    def add(self, client: ClientConnection) -> None:
        with self._lock:
            self._clients.append(client)

    def remove(self, client: ClientConnection) -> None:
        """Forget a closed client: its id claim and its market data lines are released."""
        with self._lock:
            if client in self._clients:
                self._clients.remove(client)
            if client.client_id is not None and client.client_id in self._id_counts:
                self._id_counts[client.client_id] -= 1
            self._lines_used -= len(client.mkt_subs)
        client.mkt_subs.clear()

    def take_line(self) -> bool:
        """Reserve one market data line; False when all ``market_data_lines`` are in use."""
        with self._lock:
            if self._lines_used >= self.market_data_lines:
                return False
            self._lines_used += 1
            return True

    def release_line(self, client: ClientConnection, req_id: int) -> None:
        if client.mkt_subs.pop(req_id, None) is not None:
            with self._lock:
                self._lines_used -= 1

    # --- observation
    def active_client_ids(self) -> list[int]:
        with self._lock:
            return sorted(c.client_id for c in self._clients if c.ready and c.client_id is not None)

    def max_concurrent_connections(self, client_id: int) -> int:
        with self._lock:
            return self._id_max.get(client_id, 0)

    def lines_in_use(self) -> int:
        with self._lock:
            return self._lines_used


class Listener:
    """The asyncio server socket: open while the simulator runs, closed for a while by the refuse fault."""

    def __init__(self, host: str, new_connection: Callable[[], ClientConnection]) -> None:
        self.host = host
        self._new_connection = new_connection
        self._server: asyncio.Server | None = None
        self._port: int | None = None
        self._serving = False  # between open() and close(): a refuse fault may listen again
        self._refusing_until = 0.0

    @property
    def port(self) -> int | None:
        return self._port

    async def open(self, port: int) -> None:
        self._serving = True
        await self._listen(port)

    async def _listen(self, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._new_connection, self.host, port, reuse_address=True)
        self._port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self._serving = False
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def refuse(self, seconds: float) -> None:
        """Stop listening for ``seconds`` (connects get ECONNREFUSED), then listen again on the same port."""
        self._refusing_until = time.monotonic() + seconds
        if self._server is not None:
            self._server.close()
            self._server = None
        asyncio.get_running_loop().call_later(seconds, lambda: asyncio.ensure_future(self._relisten()))

    async def _relisten(self) -> None:
        # a later refuse extends the window; its own timer listens again
        if (
            self._serving
            and self._server is None
            and self._port is not None
            and time.monotonic() >= self._refusing_until - 0.001
        ):
            await self._listen(self._port)
