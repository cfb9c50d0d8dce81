"""One API client session: greeting, framing, version handshake, subscriptions and flow-controlled writes."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from datetime import datetime
from typing import Protocol

from v6_assets.gateway_sim import pacing, protocol, wire
from v6_assets.gateway_sim.protocol import Out
from v6_assets.gateway_sim.scenario_model import ContractSpec

log = logging.getLogger(__name__)

GREETING = b"API\0"


class ConnectionHost(Protocol):
    """What a client session needs from the simulator that accepted it."""

    def server_time(self) -> datetime: ...

    def output_held(self) -> bool:
        """True while the stall fault holds every outgoing frame."""
        ...

    def dispatch(self, client: ClientConnection, fields: list[str]) -> None: ...

    def record_request(self, client: ClientConnection, msg_id: int | None, fields: list[str]) -> None: ...

    def client_closed(self, client: ClientConnection) -> None: ...


@dataclasses.dataclass(slots=True)
class StreamCadence:
    """Cadence state of one periodic stream of one client."""

    last_sim: datetime | None = None
    last_real: float = 0.0


class ClientConnection(asyncio.Protocol):
    """One API client: handshake, request dispatch (via the host), subscriptions and flow-controlled writes."""

    def __init__(self, host: ConnectionHost) -> None:
        self.host = host
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.greeted = False
        self.version: int | None = None
        self.encoder: wire.WireEncoder | None = None  # set by the handshake, for the negotiated version
        self.client_id: int | None = None
        self.ready = False
        self.closed = False
        # subscriptions
        self.account_sub: str | None = None
        self.account_multi_subs: dict[int, tuple[str, str]] = {}  # req id -> (account, model code)
        self.positions_sub = False
        self.pnl_subs: dict[int, str] = {}
        self.pnl_single_subs: dict[int, tuple[str, int]] = {}
        self.mkt_subs: dict[int, ContractSpec | str] = {}
        self.greeks_counter: dict[int, int] = {}
        self.streams: dict[str, StreamCadence] = {}
        self.pacing = pacing.PacingState()
        # output
        self.stalled: list[bytes] = []
        self.can_write = asyncio.Event()
        self.can_write.set()
        self.messages_sent = 0
        # Wire counters (the lock-step seed compares them with the client's own to know it took everything in).
        self.bytes_sent = 0
        self.bytes_received = 0

    # --- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.can_write.set()
        self.host.client_closed(self)

    def pause_writing(self) -> None:
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.can_write.set()

    def data_received(self, data: bytes) -> None:
        self.bytes_received += len(data)
        self.buffer += data
        try:
            if not self.greeted:
                if len(self.buffer) < len(GREETING):
                    return
                greeting = bytes(self.buffer[: len(GREETING)])
                if greeting != GREETING:
                    raise protocol.ProtocolError(f"expected 'API\\0' greeting, got {greeting!r}")
                del self.buffer[: len(GREETING)]
                self.greeted = True
            for fields in protocol.split_frames(self.buffer):
                if self.closed:
                    return
                if self.version is None:
                    self._handshake(fields)
                else:
                    self.host.dispatch(self, fields)
        except protocol.ProtocolError as exc:
            log.warning("closing client %s: %s", self.client_id, exc)
            self.host.record_request(self, None, [f"protocol error: {exc}"])
            self.close()

    def _handshake(self, fields: list[str]) -> None:
        text = fields[0] if fields else ""
        self.host.record_request(self, None, [text])
        low, high, _options = protocol.parse_handshake(text)
        version = protocol.negotiate(low, high)
        if version is None:
            log.info("closing: client offers v%d..%d, server speaks up to v%d", low, high, protocol.SERVER_MAX_VERSION)
            self.close()
            return
        self.version = version
        self.encoder = wire.encoder_for(version)
        self.write_raw(wire.server_hello(version, self.host.server_time()))

    # --- writing
    def write_raw(self, frame: bytes, count: int = 1) -> None:
        """Write ready-encoded frames (``count`` messages); held back while the stall fault lasts."""
        if self.closed or self.transport is None or self.transport.is_closing():
            return
        if self.host.output_held():
            self.stalled.append(frame)
            return
        self.transport.write(frame)
        self.messages_sent += count
        self.bytes_sent += len(frame)

    def send(self, msg_id: int, **values: object) -> None:
        """Encode one message for this client's negotiated version and write it."""
        if self.encoder is None:
            raise RuntimeError("send before the version handshake")
        self.write_raw(self.encoder.encode(msg_id, **values))

    def send_error(self, req_id: int, code: int, message: str) -> None:
        self.send(Out.ERR_MSG, req_id=req_id, code=code, message=message)

    def flush_stalled(self) -> None:
        frames, self.stalled = self.stalled, []
        if self.transport is not None and not self.closed and frames:
            self.transport.write(b"".join(frames))
            self.messages_sent += len(frames)
            self.bytes_sent += sum(len(f) for f in frames)

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()
        self.closed = True

    def stream_due(self, name: str, sim_now: datetime, cadence_s: float, min_real_s: float) -> bool:
        """Whether periodic stream ``name`` is due (simulated cadence and real-time floor); marks it sent if so."""
        state = self.streams.setdefault(name, StreamCadence())
        real = time.monotonic()
        if state.last_sim is not None and (
            (sim_now - state.last_sim).total_seconds() < cadence_s or real - state.last_real < min_real_s
        ):
            return False
        state.last_sim, state.last_real = sim_now, real
        return True
