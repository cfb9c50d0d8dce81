"""The simulated clock: ``speed`` simulated seconds per real second from the scenario start, thread-safe."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

from v6_assets.contracts.clock import utc_now


class SimClock:
    """``now()`` is UTC simulated time. The simulator may jump it forward (skipping nights) or change its speed.

    With ``live_cap`` the clock never runs ahead of the real wall clock: once simulated time catches up with
    reality it continues at speed 1 (the demo seeds history quickly, then goes live).
    """

    def __init__(self, start: datetime, speed: float, *, live_cap: bool = True) -> None:
        if start.tzinfo is None:
            raise ValueError("clock start must carry a time zone")
        if not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed!r}")
        self._lock = threading.Lock()
        self._base_sim = start.astimezone(UTC)
        self._base_wall = time.monotonic()
        self._speed = float(speed)
        self._live_cap = live_cap
        self._frozen_at: datetime | None = start.astimezone(UTC)  # frozen until start()
        # A fast clock does not pass ``_stop_at`` until released (then it resumes from there at ``_resume_wall``):
        # the driver stops it after a session's close and before its EOD cut so what was sent is received, on the
        # simulated clock, before the cut however loaded the machine is.
        self._stop_at: datetime | None = None
        self._resume_wall: float | None = None

    def start(self) -> None:
        with self._lock:
            if self._frozen_at is not None:
                self._base_sim = self._frozen_at
                self._base_wall = time.monotonic()
                self._frozen_at = None

    def _now_locked(self) -> datetime:
        if self._frozen_at is not None:
            return self._frozen_at
        sim = self._base_sim + timedelta(seconds=(time.monotonic() - self._base_wall) * self._speed)
        stop = self._stop_at
        if stop is not None and stop < self._base_sim:
            # the clock was moved past it (speed change at speed 1, jump): a stop never moves the clock backwards
            stop = self._stop_at = self._resume_wall = None
        if stop is not None and self._speed != 1.0 and sim >= stop:
            resume = self._resume_wall
            if resume is None or time.monotonic() < resume:
                return stop
            self._base_sim, self._base_wall = stop, resume
            self._stop_at = self._resume_wall = None
            sim = self._base_sim + timedelta(seconds=(time.monotonic() - self._base_wall) * self._speed)
        if self._live_cap and self._speed != 1.0:
            wall = utc_now()
            if sim >= wall:
                # caught up with reality: continue in real time from here on
                self._base_sim, self._base_wall, self._speed = wall, time.monotonic(), 1.0
                return wall
        return sim

    def now(self) -> datetime:
        with self._lock:
            return self._now_locked()

    @property
    def speed(self) -> float:
        with self._lock:
            return self._speed

    def set_speed(self, speed: float) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be > 0, got {speed!r}")
        with self._lock:
            now = self._now_locked()
            self._base_sim, self._base_wall, self._speed = now, time.monotonic(), float(speed)

    def jump_to(self, target: datetime) -> None:
        """Move simulated time forward to ``target`` (never backwards)."""
        with self._lock:
            now = self._now_locked()
            if self._live_cap:
                target = min(target, utc_now())  # never jump past reality
            if target > now:
                self._base_sim, self._base_wall = target, time.monotonic()
                if self._frozen_at is not None:
                    self._frozen_at = target

    def stop_at(self, at: datetime) -> None:
        """Do not pass ``at`` (while running faster than real time) until ``release`` (replaces an earlier stop)."""
        with self._lock:
            self._stop_at, self._resume_wall = at.astimezone(UTC), None

    @property
    def has_stop(self) -> bool:
        with self._lock:
            self._now_locked()  # passes a released stop whose time has come
            return self._stop_at is not None

    @property
    def held_at_stop(self) -> bool:
        """True while the clock stands at its stop with no release scheduled."""
        with self._lock:
            now = self._now_locked()
            return self._stop_at is not None and self._resume_wall is None and now >= self._stop_at

    def release(self, after_real_s: float) -> None:
        """Let the clock pass its stop ``after_real_s`` real seconds from now (no stop: nothing to do)."""
        with self._lock:
            if self._stop_at is not None:
                self._resume_wall = time.monotonic() + max(0.0, after_real_s)
