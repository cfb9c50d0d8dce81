"""Failpoints: named crash points for the fault-injection suite (``make chaos``). Pure, no dependencies.

Off unless the environment variable ``V6_FAILPOINTS`` names them, e.g.::

    V6_FAILPOINTS=after_delta_commit:exit,delta_write:raise@3

``name:action[@hit]``: ``exit`` ends the process at once with ``os._exit(137)`` (what kill -9 leaves behind: no
``finally``, no flush), ``raise`` raises :class:`FailpointError`. ``@hit`` fires on the hit-th pass only (default
1: the first); ``@*`` fires on every pass. The variable is read once at import (``reload_from_env`` re-reads it), so
an unset variable costs one dict truthiness test per call.

Crash points in the code:
- ``after_spool_append`` (``ib.spool.SpoolHandler.flush``): a batch is committed to the spool, not yet released
  from memory;
- ``delta_write`` (``lake.writer.MicroBatchWriter._commit``): a Delta append is about to be written;
- ``after_delta_commit`` (``pipeline.ingest.drain_spool_to_lake``): one table's batch is committed to Delta, the other
  table and the spool acknowledgement are not yet done.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass

ENV_VAR = "V6_FAILPOINTS"
EXIT_CODE = 137
ACTIONS = ("exit", "raise")


class FailpointError(RuntimeError):
    """Raised by a failpoint configured with the ``raise`` action."""


@dataclass(frozen=True, slots=True)
class FailpointSpec:
    name: str
    action: str
    hit: int | None  # None: every pass


def parse(raw: str) -> dict[str, FailpointSpec]:
    """Parse a ``V6_FAILPOINTS`` value; a malformed entry raises ValueError naming it."""
    specs: dict[str, FailpointSpec] = {}
    for entry in (part.strip() for part in raw.split(",")):
        if not entry:
            continue
        name, sep, rest = entry.partition(":")
        action, _, hit_raw = rest.partition("@")
        name, action, hit_raw = name.strip(), action.strip(), hit_raw.strip()
        if not sep or not name or action not in ACTIONS:
            raise ValueError(f"{ENV_VAR}: {entry!r} is not name:exit or name:raise[@hit]")
        hit: int | None = 1
        if hit_raw == "*":
            hit = None
        elif hit_raw:
            if not hit_raw.isdigit() or int(hit_raw) < 1:
                raise ValueError(f"{ENV_VAR}: hit in {entry!r} must be a positive integer or *")
            hit = int(hit_raw)
        specs[name] = FailpointSpec(name, action, hit)
    return specs


_active: dict[str, FailpointSpec] = {}
_hits: dict[str, int] = {}
_lock = threading.Lock()


def reload_from_env(environ: Mapping[str, str] | None = None) -> dict[str, FailpointSpec]:
    """(Re)read ``V6_FAILPOINTS`` and reset the hit counters; returns the active failpoints."""
    global _active
    env = os.environ if environ is None else environ
    specs = parse(env.get(ENV_VAR, ""))
    with _lock:
        _active = specs
        _hits.clear()
    return dict(specs)


def failpoint(name: str) -> None:
    """Crash here if ``V6_FAILPOINTS`` names ``name`` (and this is the configured hit); otherwise do nothing."""
    if not _active:
        return
    spec = _active.get(name)
    if spec is None:
        return
    with _lock:
        count = _hits.get(name, 0) + 1
        _hits[name] = count
    if spec.hit is not None and count != spec.hit:
        return
    if spec.action == "exit":
        os._exit(EXIT_CODE)
    raise FailpointError(f"failpoint {name} fired (hit {count}, {ENV_VAR})")


reload_from_env()
