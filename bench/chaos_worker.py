"""A real streaming process for the chaos suite: the streamer plus a drain loop, like a code server's sensor.

    python -m bench.chaos_worker LAKE_URI [DRAIN_INTERVAL_S]

Settings come from the environment (``V6_IB_PORT``, ``V6_HOME``, ``V6_IB_ACCOUNTS``, ``V6_IB_HEARTBEAT_S``...,
``V6_FAILPOINTS``). Prints one JSON status line every 0.1 s on stdout; logs go to stderr. Several workers may run
against the same ``V6_HOME``: the lease lets exactly one connect, and all of them drain the shared spool (exactly
once thanks to the Delta txn fence), like an old and a new code server during a reload.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import time

from v6_assets.ib import IBPositionStreamer, Spool, StreamerSettings
from v6_assets.lake import Lake
from v6_assets.pipeline.ingest import drain_spool_to_lake


def main() -> None:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(process)d %(name)s %(message)s")
    lake_uri = sys.argv[1]
    drain_every = float(sys.argv[2]) if len(sys.argv) > 2 else 0.25
    settings = StreamerSettings.from_env()
    env = dict(os.environ)
    env["V6_LAKE_URI"] = lake_uri
    lake = Lake.from_env(env)
    streamer = IBPositionStreamer()
    streamer.ensure_started(settings)
    # SIGTERM: stop cleanly (flush the spool, release the lease); kill -9 is the test of everything else.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(SystemExit(0)))
    try:
        _loop(streamer, settings, lake, drain_every)
    finally:
        streamer.stop()


def _loop(streamer: IBPositionStreamer, settings: StreamerSettings, lake: Lake, drain_every: float) -> None:
    last_drain = 0.0
    drain_error: str | None = None
    while True:
        now = time.monotonic()
        if now - last_drain >= drain_every:
            last_drain = now
            try:
                with Spool(settings.spool_path) as spool:
                    drain_spool_to_lake(spool, lake, settings.stream_id, batch_rows=20_000, max_rows=200_000)
                drain_error = None
            except Exception as exc:  # a failing drain is retried on the next pass, like a failed sensor tick
                drain_error = f"{type(exc).__name__}: {exc}"
                logging.getLogger("chaos_worker").error("drain failed: %s", drain_error)
        status = streamer.status()
        line = {
            "pid": os.getpid(),
            "t": time.time(),
            "connected": status.connection.connected,
            "lease_held": status.connection.lease_held,
            "reconnects": status.connection.reconnects,
            "last_offset": status.spool.last_offset,
            "malformed": status.counters.malformed_messages,
            "drain_error": drain_error,
        }
        print(json.dumps(line), flush=True)
        time.sleep(0.1)


if __name__ == "__main__":
    main()
