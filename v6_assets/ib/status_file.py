"""The streamer's status as a file: ``v6 status`` (and a container health check) read it without Dagster running.

The streamer's loop thread rewrites ``$V6_HOME/status/<stream id>.json`` every few seconds, atomically (a temporary
file then ``os.replace``), so a reader never sees half a file. ``written_at`` says how fresh it is: a file that stops
being rewritten means no process is streaming for that stream id.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from v6_assets.ib.status import StreamerStatus

log = logging.getLogger(__name__)

STATUS_WRITE_INTERVAL_S = 5.0


def status_document(status: StreamerStatus, written_at: datetime) -> dict[str, Any]:
    doc = dataclasses.asdict(status)
    doc["written_at"] = written_at.isoformat()
    doc["pid"] = os.getpid()
    return doc


def write_status(path: Path, status: StreamerStatus, written_at: datetime) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(status_document(status, written_at), default=str, indent=1))
    os.replace(tmp, path)


def read_status(path: Path) -> dict[str, Any] | None:
    """The last written status, or None when no streamer ever wrote one. A damaged file raises ValueError."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path.name}: not a status document ({exc})") from exc
    if not isinstance(doc, dict) or "written_at" not in doc:
        raise ValueError(f"{path.name}: not a status document (no written_at)")
    return doc


async def publish_status(
    build: Callable[[], StreamerStatus],
    path: Path,
    clock: Callable[[], datetime],
    interval_s: float = STATUS_WRITE_INTERVAL_S,
) -> None:
    """Rewrite the status file every ``interval_s`` until cancelled. A failed write (full disk) is logged once per
    kind of error and retried; it never stops the stream."""
    last_error: str | None = None
    while True:
        try:
            await asyncio.to_thread(write_status, path, build(), clock())
            last_error = None
        except OSError as exc:
            message = f"{type(exc).__name__}: {exc.strerror or exc}"
            if message != last_error:
                log.warning("could not write the stream status file %s: %s", path.name, message)
                last_error = message
        await asyncio.sleep(interval_s)


def remove_status(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
