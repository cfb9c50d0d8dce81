"""A real streaming process for the multi-process tests: starts the streamer and prints its status as JSON lines.

Usage: python -m v6_assets_tests.ib.streamer_proc PORT V6_HOME
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from v6_assets.ib import IBPositionStreamer, StreamerSettings


def main() -> None:
    port, home = int(sys.argv[1]), Path(sys.argv[2])
    settings = StreamerSettings(port=port, home=home, lease_retry_s=0.2, backoff_initial_s=0.1, backoff_max_s=0.5)
    streamer = IBPositionStreamer()
    streamer.ensure_started(settings)
    while True:
        status = streamer.status()
        print(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "connected": status.connection.connected,
                    "lease_held": status.connection.lease_held,
                    "holder_pid": status.connection.lease_holder.pid if status.connection.lease_holder else None,
                    "spool_written": status.spool.written,
                    "last_offset": status.spool.last_offset,
                }
            ),
            flush=True,
        )
        time.sleep(0.1)


if __name__ == "__main__":
    main()
