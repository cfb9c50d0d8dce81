"""``v6-gateway-sim``: run the IB Gateway simulator in the foreground until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from datetime import datetime
from pathlib import Path

from v6_assets.contracts.clock import utc_now
from v6_assets.gateway_sim.scenario import load_scenario
from v6_assets.gateway_sim.scenario_model import ScenarioError
from v6_assets.gateway_sim.server import GatewaySimulator


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="v6-gateway-sim", description=__doc__)
    parser.add_argument("--scenario", default="demo", help="built-in scenario name or YAML path (default: demo)")
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=4002, help="listen port (default 4002; 0 = ephemeral)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: the scenario's)")
    parser.add_argument("--speed", type=float, default=None, help="simulated seconds per real second")
    parser.add_argument(
        "--start",
        default=None,
        help="clock start: 'now', 'auto' or an ISO datetime with zone (default: the scenario's; 'now' with --speed 1)",
    )
    parser.add_argument("--record", type=Path, default=None, help="JSON-lines record of every request received")
    parser.add_argument("--truth-out", type=Path, default=None, help="directory for the ground-truth files")
    parser.add_argument("--log-level", default="WARNING")
    return parser.parse_args(argv)


async def _serve(args: argparse.Namespace) -> int:
    start: datetime | None = None
    if args.start == "now" or (args.start is None and args.speed == 1):
        start = utc_now()  # --speed 1: the gateway runs at real time from now
    elif args.start not in (None, "auto"):
        start = datetime.fromisoformat(args.start)
        if start.tzinfo is None:
            raise ScenarioError(f"--start {args.start!r} needs a time zone")
    scenario = load_scenario(args.scenario, start_time=start)
    sim = GatewaySimulator(
        scenario,
        host=args.host,
        port=args.port,
        seed=args.seed,
        speed=args.speed,
        record_path=args.record,
        truth_dir=args.truth_out,
        keep_sent=False,  # a long-running gateway streams its truth to disk instead of keeping it in memory
    )
    await sim.start()
    print(f"listening on {args.host}:{sim.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await sim.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return asyncio.run(_serve(args))
    except (ScenarioError, ValueError, OSError) as exc:
        print(f"v6-gateway-sim: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
