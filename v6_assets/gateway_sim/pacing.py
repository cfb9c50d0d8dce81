"""IB's request pacing: at most ``max_per_s`` messages per second from one client (50 at IB, all requests together).

A message over the limit is not served: the client gets error 100 (at most once per second) and, when it goes on
for ``disconnect_after`` seconds in a row, the connection is closed -- what a real gateway may do. Real time, not
simulated time: pacing is about the socket.
"""

from __future__ import annotations

import collections
import dataclasses
import time

PACING_ERROR = 100
WINDOW_S = 1.0


def pacing_message(limit: int, received: int) -> str:
    return f"Max rate of messages per second has been exceeded:max={limit} rec={received} (1)"


@dataclasses.dataclass(slots=True)
class PacingState:
    """One client's recent message times and its run of seconds over the limit."""

    times: collections.deque[float] = dataclasses.field(default_factory=collections.deque)
    last_warning: float = -1e9
    strikes: int = 0  # consecutive warned seconds
    rejected: int = 0


class Verdict:
    SERVE = "serve"
    REJECT = "reject"  # not served; error 100 sent if ``warn``
    DISCONNECT = "disconnect"


def check(state: PacingState, limit: int, disconnect_after: int, now: float | None = None) -> tuple[str, bool]:
    """(verdict, whether to send error 100 now) for one incoming message."""
    now = time.monotonic() if now is None else now
    times = state.times
    while times and now - times[0] >= WINDOW_S:
        times.popleft()
    if len(times) < limit:
        times.append(now)
        if now - state.last_warning >= 2 * WINDOW_S:
            state.strikes = 0  # a calm second after the last warning ends the run
        return Verdict.SERVE, False
    state.rejected += 1
    if now - state.last_warning < WINDOW_S:
        return Verdict.REJECT, False
    state.strikes = state.strikes + 1 if now - state.last_warning < 2 * WINDOW_S else 1
    state.last_warning = now
    if state.strikes > disconnect_after:
        return Verdict.DISCONNECT, True
    return Verdict.REJECT, True
