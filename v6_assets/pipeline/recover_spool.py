"""Recover a stream's spool after it was reset, replaced or damaged: ``python -m v6_assets.pipeline.recover_spool``.

The Delta log records, per stream, the highest spool offset committed (txn version). A spool whose offsets are
behind it (a reset or replaced file) can never be drained: the writer would drop every new event as "already
ingested", so the sensor fences such a spool and fails its tick, pointing here. This command, with the stream's
usual ``V6_*`` settings:

A spool that is only behind the lake is recovered in one SQLite transaction, safely beside a running streamer (its
held updates then go into the new epoch and it resyncs); a damaged file is only replaced while the stream is stopped.

1. checks the spool file (``PRAGMA quick_check``); a damaged file is moved aside (``<name>.corrupt-<UTC time>``,
   with its ``-wal``/``-shm``), kept for inspection, and a new spool is created;
2. starts a new epoch: new offsets continue strictly above the lake's committed version, so exactly-once holds for
   everything committed (no new offset can collide with a committed txn version) and the fence is lifted;
3. unacknowledged events of a spool behind the lake were never ingested if the spool was reset (keep them:
   ``--keep-unacked`` renumbers them above the lake, in order) but may be ingested already if an old copy was
   restored (``--discard-unacked``); with such events and neither flag it stops and says which is which.

With several gateways (``V6_IB_GATEWAYS``) ``--gateway NAME`` says whose spool.
``--check`` only reports (exit 1 when recovery is needed). Exit codes: 0 done or nothing to do, 1 recovery needed
(``--check``), 2 refused (a damaged spool while the stream runs, or a choice is needed). The streamer's next
connection resyncs the current positions; what happened between the fault and the recovery is not in the history.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from v6_assets.contracts.settings import SettingsError
from v6_assets.ib.lease import ConnectionLease
from v6_assets.ib.settings import IBEnvironment, StreamerSettings
from v6_assets.ib.spool import Spool, SpoolError

EXIT_OK, EXIT_NEEDED, EXIT_REFUSED = 0, 1, 2


@dataclass(frozen=True)
class SpoolCheck:
    path: Path
    exists: bool
    damaged: str | None  # why the file cannot be used, or None
    last_offset: int
    acked_offset: int
    depth: int
    fenced: str | None
    lake_committed: int

    @property
    def behind(self) -> bool:
        return self.last_offset < self.lake_committed

    @property
    def needs_recovery(self) -> bool:
        return self.damaged is not None or self.behind or self.fenced is not None

    def describe(self) -> str:
        if self.damaged:
            return f"spool {self.path} is damaged: {self.damaged}"
        state = (
            f"spool {self.path}: offsets assigned up to {self.last_offset}, acked {self.acked_offset}, "
            f"{self.depth} unacknowledged; the lake has committed up to {self.lake_committed}"
        )
        if self.behind:
            state += " -> the spool is BEHIND the lake (reset or replaced) and cannot be drained"
        if self.fenced:
            state += f" -> fenced: {self.fenced}"
        return state


def _quick_check(path: Path) -> str | None:
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
        try:
            rows = db.execute("PRAGMA quick_check").fetchall()
            db.execute("SELECT count(*) FROM spool").fetchone()
        finally:
            db.close()
    except sqlite3.Error as exc:
        return f"{type(exc).__name__}: {exc}"
    result = "; ".join(str(r[0]) for r in rows)
    return None if result == "ok" else result


def lake_committed(environ: Mapping[str, str], stream_id: str) -> int:
    """The highest spool offset of ``stream_id`` committed in either streamed table (0 when none)."""
    from v6_assets.lake import Lake
    from v6_assets.pipeline.ingest import committed_offsets

    versions = committed_offsets(Lake.from_env(environ), stream_id)
    return max((v for v in versions.values() if v is not None), default=0)


def check(settings: StreamerSettings, committed: int) -> SpoolCheck:
    path = settings.spool_path
    if not path.exists():
        return SpoolCheck(path, False, None, 0, 0, 0, None, committed)
    damaged = _quick_check(path)
    if damaged is not None:
        return SpoolCheck(path, True, damaged, 0, 0, 0, None, committed)
    with Spool(path) as spool:
        return SpoolCheck(
            path, True, None, spool.last_offset(), spool.acked_offset(), spool.depth(), spool.fenced(), committed
        )


def _move_aside(path: Path) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    for suffix in ("", "-wal", "-shm"):
        source = path.with_name(path.name + suffix)
        if source.exists():
            source.rename(target.with_name(target.name + suffix))
    return target


def recover(
    settings: StreamerSettings,
    committed: int,
    *,
    keep_unacked: bool = False,
    discard_unacked: bool = False,
    out: list[str] | None = None,
) -> int:
    """Recover the spool of ``settings`` against the lake's ``committed`` version; returns an exit code."""
    say = out.append if out is not None else print
    if keep_unacked and discard_unacked:
        say("choose one of --keep-unacked and --discard-unacked")
        return EXIT_REFUSED
    lease = ConnectionLease(settings.locks_dir, settings.host, settings.port, settings.client_id)
    running = not lease.try_acquire()
    try:
        state = check(settings, committed)
        if running and state.damaged is not None:
            holder = lease.holder()
            who = holder.describe() if holder else "another process"
            say(
                f"refused: the spool is damaged and the stream {settings.stream_id} is running ({who} holds its "
                "lease, with the file open); stop it first"
            )
            return EXIT_REFUSED
        say(state.describe())
        if not state.needs_recovery:
            say("nothing to do: the spool continues above the lake's committed version")
            return EXIT_OK
        moved = None
        if state.damaged is not None:
            moved = _move_aside(state.path)
            say(f"moved the damaged spool aside to {moved} (kept for inspection; its unacked events are not replayed)")
        elif state.behind and state.depth and not (keep_unacked or discard_unacked):
            say(
                f"refused: {state.depth} unacknowledged events sit at offsets the lake has already committed. If the "
                "spool was reset (they are new), rerun with --keep-unacked (renumbered above the lake); if an old "
                "copy was restored (they may be ingested already), rerun with --discard-unacked."
            )
            return EXIT_REFUSED
        with Spool(state.path, max_bytes=settings.spool_max_bytes) as spool:
            counts = spool.start_epoch(committed, discard_unacked=discard_unacked)
        say(
            f"new epoch for {settings.stream_id}: offsets continue at {counts['first_new_offset']} (lake committed "
            f"{committed}); {counts['renumbered']} unacked events renumbered, {counts['discarded']} discarded; "
            "start the stream again (the sensor resumes, the first connection resyncs the current positions)"
        )
        return EXIT_OK
    except SpoolError as exc:
        say(f"recovery failed: {exc}")
        return EXIT_REFUSED
    finally:
        lease.release()


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    import os

    parser = argparse.ArgumentParser(
        prog="python -m v6_assets.pipeline.recover_spool", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--check", action="store_true", help="only report; exit 1 when recovery is needed")
    parser.add_argument("--keep-unacked", action="store_true", help="renumber unacked events above the lake")
    parser.add_argument("--discard-unacked", action="store_true", help="drop unacked events at committed offsets")
    parser.add_argument("--gateway", metavar="NAME", help="with V6_IB_GATEWAYS: the gateway whose spool to recover")
    args = parser.parse_args(argv)
    env = os.environ if environ is None else environ
    try:
        gateways = IBEnvironment.read(env).gateway_settings()
    except SettingsError as exc:
        parser.error(str(exc))
    chosen = [g for g in gateways if g.gateway == (args.gateway or "")]
    if len(chosen) != 1:
        names = ", ".join(g.gateway for g in gateways) or "none: V6_IB_GATEWAYS is unset"
        parser.error(f"--gateway {args.gateway or '(missing)'}: not a gateway of V6_IB_GATEWAYS ({names})")
    settings = chosen[0]
    committed = lake_committed(env, settings.stream_id)
    if args.check:
        state = check(settings, committed)
        print(state.describe())
        return EXIT_NEEDED if state.needs_recovery else EXIT_OK
    return recover(settings, committed, keep_unacked=args.keep_unacked, discard_unacked=args.discard_unacked)


if __name__ == "__main__":
    sys.exit(main())
