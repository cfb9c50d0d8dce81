"""The project's one reading of "now" (UTC), so a simulated run can be pinned to a moment across processes.

Every layer asks ``utc_now()`` instead of ``datetime.now``. Real accounts always read the wall clock. A SIMULATED run
(``V6_DEMO=1``, the gateway simulator) may set ``V6_SIM_CLOCK_OFFSET_S``: seconds added to the wall clock in every
process that inherits the variable (dagster dev, its code servers, run workers), so the end-to-end tests run at one
pinned moment whatever the day or hour. In-process tests pin the clock with time-machine instead.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

OFFSET_VAR = "V6_SIM_CLOCK_OFFSET_S"


class ClockConfigError(ValueError):
    """``V6_SIM_CLOCK_OFFSET_S`` is malformed or set outside a simulated run."""


def clock_offset_s(env: Mapping[str, str] | None = None) -> float:
    """The configured offset in seconds (0 when unset); a clear error when bad or set for real data."""
    env = os.environ if env is None else env
    raw = env.get(OFFSET_VAR, "").strip()
    if not raw:
        return 0.0
    try:
        offset = float(raw)
    except ValueError:
        raise ClockConfigError(f"{OFFSET_VAR}={raw!r} is not a number of seconds") from None
    if not math.isfinite(offset):
        raise ClockConfigError(f"{OFFSET_VAR}={raw!r} is not a finite number of seconds")
    if env.get("V6_DEMO", "").strip().lower() not in ("1", "true", "yes"):
        raise ClockConfigError(f"{OFFSET_VAR} shifts the clock and is only allowed with simulated data (V6_DEMO=1)")
    return offset


def utc_now() -> datetime:
    """Now, timezone-aware UTC (shifted by ``V6_SIM_CLOCK_OFFSET_S`` in a simulated run)."""
    now = datetime.now(UTC)
    offset = clock_offset_s()
    return now + timedelta(seconds=offset) if offset else now


def _wall_utc() -> datetime:
    return datetime.now(UTC)


def fixed_offset_clock() -> Callable[[], datetime]:
    """``utc_now`` with ``V6_SIM_CLOCK_OFFSET_S`` read ONCE, now (the variable is per process, set before it starts):
    for hot paths that stamp every event (the streamer stamps thousands/s; reading the environment per event was
    a measurable share of its time)."""
    offset = clock_offset_s()
    if not offset:
        return _wall_utc
    shift = timedelta(seconds=offset)
    return lambda: datetime.now(UTC) + shift


def utc_timestamp() -> float:
    """``utc_now()`` as POSIX seconds (for comparisons with ``time.time()``-style stamps)."""
    return utc_now().timestamp()
