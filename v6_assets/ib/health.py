"""The IB connection's state as intervals (the ``stream_health`` stream): what the gateway says and what the socket
does, turned into one current state, each change published as ``HealthInterval`` rows (when a state begins, with no
end, and when it ends) through the same spool as every other update.

States and what moves between them (one connection, the streamer's clock):
- ``connected``: a connection is up and data flows;
- ``reset``: 1100 (or 2110) until 1101 (data lost: the streamer resubscribes) or 1102 -- IB's nightly reset;
- ``farm_down``: 2103 while connected (a market data farm drop without 1100) until 2104;
- ``competing_session``: 10197 (the same user logged in elsewhere) until market data (PnL single, greeks) flows
  again -- IB sends no message when it ends;
- ``restarting``: the socket dropped after a working connection (the daily gateway restart looks like this) and
  connects are refused, for up to ``restart_grace_s`` of real time; then ``disconnected``;
- ``disconnected``: never connected yet, connects failing past the grace, or the streamer stopped.

Only the lease holder tracks health (a standby process writes no rows). Loop thread only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime

from v6_assets.contracts.health import describe_state
from v6_assets.contracts.streams import HealthInterval, HealthState
from v6_assets.ib.convert import Clock

log = logging.getLogger(__name__)

CONNECTIVITY_LOST = 1100
RESTORED_DATA_LOST = 1101
RESTORED_DATA_KEPT = 1102
SERVER_CONNECTIVITY_BROKEN = 2110
MARKET_DATA_FARM_BROKEN = 2103
MARKET_DATA_FARM_OK = 2104
COMPETING_LIVE_SESSION = 10197
DEFAULT_RESTART_GRACE_S = 600.0  # IB's daily restart takes a minute or two; past this it is an outage


class HealthTracker:
    """The current state and its start; ``publish`` gets every begun and ended interval."""

    def __init__(
        self,
        clock: Clock,
        publish: Callable[[HealthInterval], None],
        restart_grace_s: float = DEFAULT_RESTART_GRACE_S,
    ) -> None:
        self._clock = clock
        self._publish = publish
        self.restart_grace_s = restart_grace_s
        self.state: HealthState = "disconnected"
        self.since: datetime = clock()
        self.detail = "not connected yet"
        self.tracking = False
        self.changes = 0
        self._seq = 0
        self._entered_monotonic = time.monotonic()  # the grace is real time (the clock may be a fast simulated one)
        self._silent = True  # until the first connection

    def begin(self) -> None:
        """Start recording (this process holds the connection lease). Nothing is written until the first connection:
        a stream that never connected has no gaps to flag, only an error in its status."""
        if not self.tracking:
            self.tracking = True
            self.since = self._clock()
            self._silent = True

    def _emit(self, ended_at: datetime | None) -> None:
        if self._silent:
            return
        self._seq += 1
        self._publish(HealthInterval(self.state, self.since, ended_at, self.detail, self._seq, self._clock()))

    def _enter(self, state: HealthState, detail: str) -> None:
        if state == self.state or not self.tracking:
            return
        now = self._clock()
        self._emit(now)
        log.info("IB connection: %s -> %s (%s)", self.state, state, detail)
        self.state, self.since, self.detail = state, now, detail
        self._entered_monotonic = time.monotonic()
        self.changes += 1
        self._emit(None)

    # -- what the socket does ----------------------------------------------------------------------------------
    def connected(self) -> None:
        if self._silent and self.tracking:
            self._silent = False
            self.state, self.since, self.detail = "connected", self._clock(), "connected"
            self._entered_monotonic = time.monotonic()
            self._emit(None)
            return
        self._enter("connected", "connected")

    def socket_dropped(self, reason: str) -> None:
        """A working connection ended (not by our stop)."""
        if self.state != "disconnected":
            self._enter("restarting", f"the socket dropped ({reason}); reconnecting")

    def connect_failed(self, reason: str) -> None:
        if self.state == "restarting":
            if time.monotonic() - self._entered_monotonic >= self.restart_grace_s:
                self._enter("disconnected", f"still refused after {self.restart_grace_s:.0f} s: {reason}")
        elif self.state != "disconnected":
            self._enter("disconnected", reason)

    def stopped(self) -> None:
        self._enter("disconnected", "streamer stopped")

    # -- what the gateway says ---------------------------------------------------------------------------------
    def ib_message(self, code: int, message: str) -> None:
        if code in (CONNECTIVITY_LOST, SERVER_CONNECTIVITY_BROKEN):
            self._enter("reset", f"IB {code}: {message}")
        elif code == RESTORED_DATA_LOST:
            self._enter("connected", f"IB {code}: {message} (resubscribed)")
        elif code == RESTORED_DATA_KEPT:
            self._enter("connected", f"IB {code}: {message}")
        elif code == MARKET_DATA_FARM_BROKEN and self.state == "connected":
            self._enter("farm_down", f"IB {code}: {message}")
        elif code == MARKET_DATA_FARM_OK and self.state == "farm_down":
            self._enter("connected", f"IB {code}: {message}")
        elif code == COMPETING_LIVE_SESSION and self.state in ("connected", "farm_down"):
            self._enter("competing_session", f"IB {code}: {message}")

    def market_data_seen(self) -> None:
        """A PnL single or greeks tick arrived: a competing session (which IB never says has ended) is over."""
        if self.state == "competing_session":
            self._enter("connected", "market data flows again (the competing session ended)")

    def describe(self) -> str:
        return describe_state(self.state, self.since)
