"""Reconnect policy: exponential backoff with full jitter (the ``backoff`` library's generators) and a circuit
breaker (open after K consecutive failures for a cool-down, then exactly one half-open probe)."""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Generator
from typing import Any

import backoff


class Backoff:
    """Delays ``initial * 2**n`` capped at ``maximum``, each drawn uniformly from [0, delay] (full jitter)."""

    def __init__(self, initial_s: float, maximum_s: float, jitter: Callable[[float], float] = backoff.full_jitter):
        self.initial_s = initial_s
        self.maximum_s = maximum_s
        self.jitter = jitter
        self.attempts = 0
        self._gen: Generator[float, Any, None] = self._new()

    def _new(self) -> Generator[float, Any, None]:
        gen = backoff.expo(base=2, factor=self.initial_s, max_value=self.maximum_s)
        next(gen)  # backoff's generators need priming
        return gen

    def next_delay(self) -> float:
        self.attempts += 1
        return float(self.jitter(next(self._gen)))

    def reset(self) -> None:
        self.attempts = 0
        self._gen = self._new()


class CircuitState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """CLOSED -> (K consecutive failures) -> OPEN for ``cooldown_s`` -> HALF_OPEN: one probe allowed ->
    success: CLOSED, failure: OPEN again. ``clock`` is monotonic seconds (injectable for tests)."""

    def __init__(self, failure_threshold: int, cooldown_s: float, clock: Callable[[], float] = time.monotonic):
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self.clock = clock
        self.consecutive_failures = 0
        self.opened_count = 0
        self._state = CircuitState.CLOSED
        self._open_until = 0.0
        self._probe_in_flight = False

    @property
    def state(self) -> CircuitState:
        if self._state is CircuitState.OPEN and self.clock() >= self._open_until:
            self._state = CircuitState.HALF_OPEN
            self._probe_in_flight = False
        return self._state

    @property
    def open_for_s(self) -> float:
        """Seconds until the breaker allows a probe (0 when it allows one now)."""
        return max(0.0, self._open_until - self.clock()) if self.state is CircuitState.OPEN else 0.0

    def allow(self) -> bool:
        """May a connection attempt start now? In HALF_OPEN only the first caller gets True."""
        state = self.state
        if state is CircuitState.CLOSED:
            return True
        if state is CircuitState.HALF_OPEN and not self._probe_in_flight:
            self._probe_in_flight = True
            return True
        return False

    def record_success(self) -> None:
        self.consecutive_failures = 0
        self._probe_in_flight = False
        self._state = CircuitState.CLOSED

    def record_failure(self) -> None:
        self.consecutive_failures += 1
        self._probe_in_flight = False
        if self._state is CircuitState.HALF_OPEN or self.consecutive_failures >= self.failure_threshold:
            self._state = CircuitState.OPEN
            self._open_until = self.clock() + self.cooldown_s
            self.opened_count += 1
