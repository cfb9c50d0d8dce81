"""``StreamerStatus``: one immutable snapshot of the streamer, grouped by the part that owns each field.

- ``connection``: the lease, the connect/reconnect loop, the circuit breaker, the heartbeat (``connection.py``);
- ``subscriptions``: what the current connection subscribes to (``subscriptions.py``);
- ``spool``: the durable spool every update is written to;
- ``counters``: updates published and input dropped or rejected (``publisher.py``, ib_async's decoder).

Pure data: built on the streamer's loop thread, read on any thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from v6_assets.ib.fanout import HandlerStats
from v6_assets.ib.lease import LeaseHolder
from v6_assets.ib.resilience import CircuitState


@dataclass(frozen=True, slots=True)
class ConnectionStatus:
    lease_held: bool = False
    lease_holder: LeaseHolder | None = None  # who holds the lease when this process does not
    connected: bool = False
    connected_since: datetime | None = None
    reconnects: int = 0
    connect_failures: int = 0
    last_message_age_s: float | None = None
    circuit_state: str = str(CircuitState.CLOSED)
    circuit_open_until: datetime | None = None
    ib_farm_connected: bool = True
    last_error: str | None = None
    # The connection's state as the stream_health table records it (``ib/health.py``), and in words.
    health_state: str = "disconnected"
    health_since: datetime | None = None
    health: str | None = None  # "competing live session since 14:02 ET: no marks, PnL or greeks"
    resubscriptions: int = 0  # full resubscriptions after IB forgot our lines (1101)
    throttled: int = 0  # times our pacing held requests back (IB's 50 messages/s)


@dataclass(frozen=True, slots=True)
class SubscriptionStatus:
    accounts: tuple[str, ...] = ()
    portfolio_account: str | None = None  # the one account IB serves portfolio updates for right now
    pnl_subscriptions: int = 0
    greeks_lines: int = 0
    line_budget: int = 0


@dataclass(frozen=True, slots=True)
class SpoolStatus:
    path: str | None = None
    depth: int | None = None
    pending: int = 0  # events the spool has not taken yet (write failed, retried)
    written: int = 0
    last_offset: int = 0
    error: str | None = None
    dropped_greeks: int = 0  # shed from memory while the spool refused writes (the resync restores the state)
    dropped_positions: int = 0
    max_held: int = 0


@dataclass(frozen=True, slots=True)
class StreamCounters:
    positions_emitted: int = 0
    greeks_emitted: int = 0
    non_option_dropped: int = 0
    foreign_account_dropped: int = 0
    malformed_messages: int = 0  # frames ib_async could not decode (process-wide)
    conversion_errors: int = 0
    executions_emitted: int = 0
    execution_errors: int = 0  # executions/commissions that could not be converted (logged raw)
    orphan_commissions: int = 0  # commissions whose execution had not been seen when they arrived
    account_values_emitted: int = 0
    account_value_errors: int = 0  # bad FX rates, unknown currencies, non-numbers (kept as text, counted)


@dataclass(frozen=True, slots=True)
class StreamerStatus:
    running: bool
    stream_id: str | None
    connection: ConnectionStatus
    subscriptions: SubscriptionStatus
    spool: SpoolStatus
    counters: StreamCounters
    handlers: tuple[HandlerStats, ...] = ()
    gateway: str = ""  # the gateway's name in V6_IB_GATEWAYS ("" for the one gateway of V6_IB_HOST...)

    @classmethod
    def not_started(cls, malformed_messages: int = 0) -> StreamerStatus:
        """The status of a streamer that was never started in this process."""
        return cls(
            running=False,
            stream_id=None,
            connection=ConnectionStatus(),
            subscriptions=SubscriptionStatus(),
            spool=SpoolStatus(),
            counters=StreamCounters(malformed_messages=malformed_messages),
        )

    def describe(self) -> str:
        if not self.running:
            return "streamer not running"
        conn = self.connection
        if not conn.lease_held:
            who = conn.lease_holder.describe() if conn.lease_holder else "another process"
            return f"not connecting: the IB connection lease for {self.stream_id} is held by {who}"
        if not conn.connected:
            state = f"{conn.health}; " if conn.health else ""
            return f"{state}disconnected (circuit {conn.circuit_state}, last error: {conn.last_error})"
        if conn.health_state != "connected" and conn.health:
            return f"{conn.health} (socket up since {conn.connected_since})"
        return f"connected since {conn.connected_since}, {self.counters.positions_emitted} position updates"
