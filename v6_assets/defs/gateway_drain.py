"""One sensor tick over every gateway (``V6_IB_GATEWAYS``): keep each gateway's streamer running and drain each
gateway's spool, exactly once, into the same Delta tables.

A gateway that is down only says so (its streamer reconnects on its own; its reason is in the tick's text); the
others keep draining. A gateway whose streamer cannot start or whose spool fails is drained no further this tick and
its error is raised once every other gateway has been drained (a failed tick, as with one gateway). With one gateway
the tick is exactly what it was before several existed: the same texts, the same limits.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from v6_assets.ib.gateways import describe_gateway, gateway_streamer
from v6_assets.ib.settings import StreamerSettings
from v6_assets.ib.spool import Spool, SpoolError, SpoolFullError
from v6_assets.ib.status import StreamerStatus
from v6_assets.lake import Lake
from v6_assets.pipeline.ingest import RECOVER_COMMAND, DrainLimits, DrainResult, drain_lock, drain_spool_to_lake


@dataclass(frozen=True)
class GatewayDrain:
    """What one tick did for one gateway: a drain result, or why there is none (``skip`` / ``error``)."""

    settings: StreamerSettings
    status: StreamerStatus
    result: DrainResult | None = None
    skip: str | None = None  # the spool is full: draining resumes when there is room (not a failed tick)
    error: Exception | None = None

    def named(self, text: str) -> str:
        """``text`` naming its gateway (unchanged for the one unnamed gateway)."""
        return f"{describe_gateway(self.settings)}: {text}" if self.settings.gateway else text


def take_drain_locks(gateways: tuple[StreamerSettings, ...]) -> list[threading.Lock] | None:
    """Every gateway's drain lock, or None (nothing held) when another evaluation in this process holds one: the
    lake's writers are shared by the streams and are not thread-safe, so one evaluation drains at a time."""
    taken: list[threading.Lock] = []
    for settings in gateways:
        lock = drain_lock(settings.stream_id)
        if not lock.acquire(blocking=False):
            for held in taken:
                held.release()
            return None
        taken.append(lock)
    return taken


def drain_gateways(
    gateways: tuple[StreamerSettings, ...], lake: Lake, limits: DrainLimits, started: float
) -> list[GatewayDrain]:
    """Each gateway in turn, with an equal share of what is left of the tick's time budget and of its rows."""
    drains = []
    deadline = started + limits.budget_s
    max_rows = max(limits.batch_rows, limits.max_rows // len(gateways))
    for i, settings in enumerate(gateways):
        share = (deadline - time.monotonic()) / (len(gateways) - i)
        drains.append(_drain_one(settings, lake, limits, max_rows, time.monotonic() + share))
    return drains


def _drain_one(
    settings: StreamerSettings, lake: Lake, limits: DrainLimits, max_rows: int, deadline: float
) -> GatewayDrain:
    try:
        status = gateway_streamer(settings).ensure_started(settings)
    except (RuntimeError, ValueError) as exc:  # the streamer could not start (a spool it cannot open...)
        status = StreamerStatus.not_started()
        named = exc if not settings.gateway else type(exc)(GatewayDrain(settings, status).named(str(exc)))
        return GatewayDrain(settings, status, error=named)
    try:
        spool = Spool(settings.spool_path, max_bytes=settings.spool_max_bytes)
        try:
            result = drain_spool_to_lake(
                spool,
                lake,
                settings.stream_id,
                max_rows=max_rows,
                batch_rows=limits.batch_rows,
                deadline=deadline,
            )
        finally:
            spool.close()
    except SpoolFullError as exc:
        # The disk is full: what is in Delta stays, the ack catches up on a later tick; not a failed tick.
        return GatewayDrain(settings, status, skip=f"spool full, draining resumes when there is room: {exc}")
    except SpoolError as exc:
        which = f" --gateway {settings.gateway}" if settings.gateway else ""
        hint = f"{exc}. If the spool file is damaged, run `{RECOVER_COMMAND}{which}`."
        return GatewayDrain(settings, status, error=SpoolError(GatewayDrain(settings, status).named(hint)))
    return GatewayDrain(settings, status, result=result)


def raise_first_error(drains: list[GatewayDrain]) -> None:
    """Fail the tick with the first gateway's error, naming every failed gateway (after all were drained)."""
    failed = [d for d in drains if d.error is not None]
    if not failed:
        return
    first = failed[0].error
    assert first is not None
    if len(failed) > 1:
        others = "; ".join(d.named(str(d.error)) for d in failed[1:])
        raise type(first)(f"{first}; also {others}") from first
    raise first
