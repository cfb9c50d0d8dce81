"""Our own request pacing: IB allows 50 messages a second from a client (error 100, then a disconnect).

ib_async already queues requests past ``Client.MaxRequests`` per ``Client.RequestsInterval`` (45 per 1 s by
default), but it sends each allowance as one burst: a burst delayed on its way (a busy gateway, a loaded machine)
lands in the same second as the next one, and IB counts them together. Smaller, more frequent allowances keep the
rate smooth: 4 requests per 0.125 s is 32 a second; any one second holds at most 9 allowances (36 requests), and
a delayed burst adds 4, not 45, to the second the gateway measures -- three of them still stay under 50.
(Measured at the simulator, ``bench.resubscribe``: 8 per 0.2 s gave up to 48 in one second, 4 per 0.1 s 44-48.)
2,000 positions resubscribed after a reconnect take about 70 s (measured in ``make bench``, ``bench/resubscribe.py``).
"""

from __future__ import annotations

from ib_async import IB

REQUESTS_PER_WINDOW = 4
WINDOW_S = 0.125
IB_LIMIT_PER_S = 50


def requests_per_second() -> float:
    return REQUESTS_PER_WINDOW / WINDOW_S


def pace(ib: IB) -> None:
    """Apply our pacing to one ``IB`` (each connection has its own client)."""
    ib.client.MaxRequests = REQUESTS_PER_WINDOW
    ib.client.RequestsInterval = WINDOW_S  # type: ignore[assignment]  # ib_async annotates an int; floats work


class ThrottleCounter:
    """How often and how long ib_async held requests back (status: the resubscription is being paced)."""

    def __init__(self) -> None:
        self.episodes = 0
        self.throttling = False

    def attach(self, ib: IB) -> None:
        ib.client.throttleStart += self._start
        ib.client.throttleEnd += self._end

    def _start(self) -> None:
        self.episodes += 1
        self.throttling = True

    def _end(self) -> None:
        self.throttling = False
