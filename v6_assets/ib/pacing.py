"""Our own request pacing: IB allows 50 messages a second from a client (error 100, then a disconnect).

ib_async already queues requests past ``Client.MaxRequests`` per ``Client.RequestsInterval`` (45 per 1 s by
default), but it sends each allowance as one burst: a burst delayed on its way (a busy gateway, a loaded machine)
lands in the same second as the next one, and IB counts them together. Smaller, more frequent allowances keep the
rate smooth: 8 requests per 0.2 s is 40 a second, and a delay of up to 0.25 s still stays under 50 in every second
the gateway measures. 2,000 positions resubscribed after a reconnect take about 50 s (measured in ``make bench``,
``bench/resubscribe.py``).
"""

from __future__ import annotations

from ib_async import IB

REQUESTS_PER_WINDOW = 8
WINDOW_S = 0.2
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
