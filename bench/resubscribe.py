"""Resubscribing a large book under IB's pacing limit: how long the streamer takes to (re)subscribe every PnL-single
line of ``--positions`` (2,000) positions, with the simulator enforcing IB's 50 messages/s (error 100, then a
disconnect), at the first connect, after a nightly reset that lost the data (1101) and after a gateway restart
(socket dropped, connects refused for 2 s).

    .venv/bin/python -m bench.resubscribe [--positions 2000] [--ib-async-throttle] [--json OUT]

``--ib-async-throttle`` leaves ib_async's own throttle (45 requests per 1 s) in place of ours, for comparison.

Time = from the trigger (connect started; the 1101; the end of the refused window) until the simulator has
received a reqPnLSingle for every position (its own request log, wall time). Our pacing sends at most 40 requests
a second (``v6_assets.ib.pacing``), so the floor is about positions / 40 s plus the market data lines. Also reported:
pacing violations the simulator saw (must be 0) and the most requests it received from us in any one second.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import BenchResult, Record, bench_argparser, finish

QUIET_SPEED = 0.001  # no periodic traffic competes with the subscriptions
CLIENT_ID = 73
REFUSE_S = 2.0
PNL_SINGLE_REQUEST = 94


def _requested_since(sim: Any, since: float) -> tuple[int, float | None]:
    """Distinct positions with a reqPnLSingle received after ``since``, and when the last one arrived."""
    seen: set[str] = set()
    last = None
    for r in sim.requests():
        if r["client_id"] == CLIENT_ID and r["msg_id"] == PNL_SINGLE_REQUEST and r["wall_time"] > since:
            seen.add(r["fields"][-1])
            last = r["wall_time"]
    return len(seen), last


def _wait_all(sim: Any, since: float, positions: int, timeout: float) -> float | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        count, last = _requested_since(sim, since)
        if count >= positions and last is not None:
            return last - since
        time.sleep(0.2)
    return None


def _most_in_one_second(sim: Any) -> int:
    times = sorted(r["wall_time"] for r in sim.requests() if r["client_id"] == CLIENT_ID)
    most, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= 1.0:
            lo += 1
        most = max(most, hi - lo + 1)
    return most


def run(quick: bool = False, positions: int | None = None, ib_async_throttle: bool = False) -> BenchResult:
    from v6_assets.gateway_sim import GatewaySimulator, synthetic_scenario
    from v6_assets.gateway_sim.scenario_model import Pacing
    from v6_assets.ib import IBPositionStreamer, StreamerSettings
    from v6_assets.ib.pacing import requests_per_second

    if ib_async_throttle:
        from v6_assets.ib import connection

        connection.pace = lambda ib: None  # the comparison: ib_async's defaults instead of our pacing

    n = positions or (300 if quick else 2000)
    result = BenchResult("resubscribe")
    scenario = dataclasses.replace(synthetic_scenario(n, speed=QUIET_SPEED), pacing=Pacing(max_per_s=50))
    timeout = 60 + 3 * n / requests_per_second()
    figures: dict[str, float | None] = {}
    with tempfile.TemporaryDirectory() as home, GatewaySimulator(scenario, port=0, keep_sent=False).running() as sim:
        settings = StreamerSettings(port=sim.port, client_id=CLIENT_ID, home=Path(home), backoff_initial_s=0.1,
                                    backoff_max_s=0.5, circuit_cooldown_s=1.0, connect_timeout_s=10.0)  # fmt: skip
        streamer = IBPositionStreamer()
        started = time.time()
        streamer.ensure_started(settings, clock=sim.clock.now)
        figures["first connect"] = _wait_all(sim, started, n, timeout)
        reset_at = time.time()
        sim.nightly_reset(data_lost=True)
        figures["after 1101 (data lost)"] = _wait_all(sim, reset_at, n, timeout)
        sim.disconnect_all()
        sim.refuse_connections(REFUSE_S)
        refused_until = time.time() + REFUSE_S
        figures["after a gateway restart"] = _wait_all(sim, refused_until, n, timeout)
        status = streamer.status()
        streamer.stop()
        violations = [e for e in sim.truth["health"] if e["event"].startswith("pacing")]
        busiest = _most_in_one_second(sim)
        orders = sim.order_violations()
    for what, seconds in figures.items():
        result.add(Record(f"resubscribe {n:,} positions, {what}", seconds, "s",
                          target=f"< {n / requests_per_second() * 1.5 + 10:.0f} s",
                          met=None if seconds is None else seconds < n / requests_per_second() * 1.5 + 10))  # fmt: skip
    result.add(Record("pacing violations (error 100) seen by the simulator", float(len(violations)), "count",
                      target="0", met=not violations))  # fmt: skip
    result.add(Record("most requests from us in one second", float(busiest), "msg/s", target="<= 50",
                      met=busiest <= 50))  # fmt: skip
    result.details = {"positions": n, "paced_at_per_s": None if ib_async_throttle else requests_per_second(),
                      "orders": orders,
                      "resubscriptions": status.connection.resubscriptions,
                      "reconnects": status.connection.reconnects, "throttled": status.connection.throttled}  # fmt: skip
    return result


def main(argv: list[str] | None = None) -> int:
    parser = bench_argparser(__doc__.splitlines()[0])
    parser.add_argument("--positions", type=int, default=None)
    parser.add_argument("--ib-async-throttle", action="store_true", help="ib_async's throttle instead of ours")
    args = parser.parse_args(argv)
    finish(run(args.quick, args.positions, args.ib_async_throttle), args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
