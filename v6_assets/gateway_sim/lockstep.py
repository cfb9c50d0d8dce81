"""Lock-step mode of the simulator: simulated time moves in fixed simulated steps, one step at a time.

A simulator built with ``GatewaySimulator(lockstep=True)`` starts with its clock standing at the scenario start and
no real-time driver. ``Lockstep.advance()`` moves the clock one step (never across a timeline event, a session close
or the second before an EOD cut: each step ends on the next of them, so what happens there is stamped at its exact
simulated time) and runs the timeline's step there: events, closes, cuts, the streams whose SIMULATED cadence
elapsed (the real-time floor ``min_real_interval_s`` is off), night skipping. The caller then waits until the client
took in everything (``wire``: bytes the simulator sent and received per connection, to compare with the client's
own counters) before the next ``advance``: what is sent, and at which simulated time it is received, depends on the
scenario and the step only, never on how fast the machine is. Once a step would pass the wall clock the simulator
goes live: its clock runs (catching up with reality, then at speed 1) under the usual real-time driver.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, TypeVar

from v6_assets.contracts.clock import utc_now
from v6_assets.gateway_sim.timeline import HOLD_BEFORE_CUT, PRE_OPEN

if TYPE_CHECKING:
    from v6_assets.gateway_sim.server import GatewaySimulator

T = TypeVar("T")

DEFAULT_STEP = timedelta(minutes=30)


@dataclass(frozen=True, slots=True)
class ServerWire:
    """What the simulator wrote to and read from one client connection, and frames a stall fault holds back."""

    client_id: int | None
    bytes_sent: int
    messages_sent: int
    bytes_received: int
    frames_held: int


class Lockstep:
    """Steps a lock-step ``GatewaySimulator``; every method is thread-safe (runs on the simulator's loop)."""

    def __init__(self, sim: GatewaySimulator, step: timedelta = DEFAULT_STEP) -> None:
        if not sim.lockstep:
            raise ValueError("the simulator was not built with lockstep=True")
        if step <= timedelta(0):
            raise ValueError(f"step must be positive, got {step}")
        self.sim = sim
        self.step = step
        self.steps = 0
        self.live = False
        cal = self._calendar = sim.state.market.calendar
        # Where a step must end: every timeline event, session close and the second before each EOD cut.
        marks = {e.at for e in sim.scenario.events}
        marks.update(s.close for s in cal.sessions)
        marks.update(s.cut - HOLD_BEFORE_CUT for s in cal.sessions)
        self._marks = sorted(marks)

    def next_time(self, now: datetime) -> datetime:
        """The end of the step starting at ``now``: ``now + step``, or from the second before an EOD cut the next
        pre-open (30 min before the open) when nights are skipped, or the next mark before it."""
        target = now + self.step
        sessions = self._calendar.sessions
        i = self._calendar.session_index_at(now)
        if self.sim.lockstep_skips_nights and 0 <= i < len(sessions) - 1 and now >= sessions[i].cut - HOLD_BEFORE_CUT:
            target = max(target, sessions[i + 1].open - PRE_OPEN)
        i = bisect.bisect_right(self._marks, now)
        if i < len(self._marks):
            target = min(target, self._marks[i])
        return target

    def advance(self, timeout: float = 30.0) -> datetime | None:
        """One step; the new simulated time, or None once the simulator went live (caught up with the wall clock)."""
        return self._on_loop(self._advance, timeout)

    def wire(self, timeout: float = 30.0) -> list[ServerWire]:
        """The wire counters of every open client connection."""
        return self._on_loop(self._wire, timeout)

    def _advance(self) -> datetime | None:
        if self.live:
            return None
        clock = self.sim.clock
        target = self.next_time(clock.now())
        if target >= utc_now():
            # to the wall clock at once (``jump_to`` never passes it), then the real-time driver takes over
            clock.jump_to(target)
            self.live = True
            self.sim.start_driver()
            return None
        # The jump and the step run in one callback of the simulator's loop: no request is served in between.
        clock.jump_to(target)
        self.sim.timeline.step()
        self.steps += 1
        return clock.now()

    def _wire(self) -> list[ServerWire]:
        return [
            ServerWire(c.client_id, c.bytes_sent, c.messages_sent, c.bytes_received, len(c.stalled))
            for c in self.sim.registry.all()
            if not c.closed
        ]

    def _on_loop(self, fn: Callable[[], T], timeout: float) -> T:
        async def call() -> T:
            return fn()

        return self.sim._run_sync(call(), timeout)
