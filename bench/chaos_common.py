"""Shared pieces of the chaos suite: the raw-frame simulator, worker processes, the truth-vs-Delta comparison.

The comparison (documented in docs/reliability.md):

- **durable path** - the spool assigns offsets 1..N without gaps (SQLite AUTOINCREMENT, rolled back on failure).
  After the final drain every offset 1..N must be in exactly one row of ``position_updates`` or ``greeks_updates``
  for the stream: a missing offset is *lost*, a second row with the same offset is *duplicated*.
- **wire vs Delta** - every position-kind message the simulator sent to our client id (``sent.jsonl``: position,
  portfolio, PnL-single, for option contracts of allowed accounts) must have its values carried by at least one
  stored row of the same (account, con_id) (sentinels compare as "unknown"). Messages sent inside a fault window
  (from ``FAULT_MARGIN_S`` before the fault until the client is connected again) are excluded: a reset socket or a
  killed process loses what the kernel or the process held, IB never replays, and the reconnect resync re-sends the
  current state, which IS checked because each scenario ends with clean streaming. A missing one counts as *lost*.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import psutil

from v6_assets.contracts.unset import ib_unset_expr
from v6_assets.gateway_sim import GatewaySimulator
from v6_assets.gateway_sim import protocol as sim_protocol
from v6_assets.ib.convert import clean_float
from v6_assets.ib.spool import Spool
from v6_assets.lake import Lake

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CLIENT_ID = 61
FAULT_MARGIN_S = 1.0
OPTION_TYPES = ("OPT", "FOP")
# Fake secrets set in every environment of the run: none may show up in any log, run config or event log.
FAKE_SECRETS = {
    "AWS_SECRET_ACCESS_KEY": "chaos-fake-aws-secret-7Qk2v9",
    "PGPASSWORD": "chaos-fake-pg-password-X4m1",
}
# Order-related request ids of the TWS API: placeOrder, cancelOrder, exerciseOptions, reqGlobalCancel.
ORDER_MSG_IDS = frozenset({3, 4, 21, 58})

_TRUTH_FIELDS = {
    "pnl_single": (
        ("position", "position"),
        ("daily_pnl", "ib_daily_pnl"),
        ("unrealized_pnl", "ib_unrealized_pnl"),
        ("realized_pnl", "ib_realized_pnl"),
        ("value", "ib_value"),
    ),
    "portfolio": (
        ("position", "position"),
        ("market_price", "market_price"),
        ("market_value", "market_value"),
        ("average_cost", "average_cost"),
        ("unrealized_pnl", "unrealized_pnl"),
        ("realized_pnl", "realized_pnl"),
    ),
    "position": (("position", "position"), ("average_cost", "average_cost")),
}


class ChaosSimulator(GatewaySimulator):
    """The gateway simulator plus arbitrary raw bytes to every connected client (fuzzing)."""

    def send_raw_bytes(self, data: bytes) -> None:
        """Write ``data`` as is (no framing added) to every client past the handshake."""

        def run() -> None:
            for client in self.registry.ready():
                client.write_raw(data)

        self._call(run)

    def send_raw_frame(self, payload: bytes) -> None:
        """Write ``payload`` with a correct 4-byte length prefix."""
        self.send_raw_bytes(sim_protocol.encode_raw(payload))


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, step: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(step)


# -- worker processes ---------------------------------------------------------------------------------------------
class Worker:
    """A ``bench.chaos_worker`` process (streamer + drain loop); its latest status line is in ``latest``."""

    def __init__(self, env: dict[str, str], lake_uri: str, log_path: Path) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.chaos_worker", lake_uri],
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
            cwd=PROJECT_ROOT,
            text=True,
        )
        self.latest: dict[str, Any] = {}
        self.connected_at: float | None = None  # monotonic time of the first status line saying connected
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with contextlib.suppress(ValueError):
                self.latest = json.loads(line)
                if self.latest.get("connected") and self.connected_at is None:
                    self.connected_at = time.monotonic()

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    @property
    def connected(self) -> bool:
        return self.alive and bool(self.latest.get("connected"))

    def kill9(self) -> None:
        if self.alive:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def close(self) -> None:
        if self.alive:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill9()
        self._log.close()


def worker_env(port: int, home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("V6_", "DAGSTER_"))}
    env.update(FAKE_SECRETS)
    env.update(
        V6_IB_HOST="127.0.0.1",
        V6_IB_PORT=str(port),
        V6_IB_CLIENT_ID=str(CLIENT_ID),
        V6_HOME=str(home),
        V6_IB_BACKOFF_INITIAL_S="0.1",
        V6_IB_BACKOFF_MAX_S="0.5",
        V6_IB_GREEKS_THROTTLE_S="0",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra or {})
    return env


# -- verification -------------------------------------------------------------------------------------------------
@dataclass
class Verdict:
    sent: int = 0
    stored: int = 0
    lost: int = 0
    duplicated: int = 0
    foreign_rows: int = 0
    sentinel_numbers: int = 0
    details: dict[str, Any] = field(default_factory=dict)


def _in_windows(t: float, windows: Iterable[tuple[float, float]]) -> bool:
    return any(start - FAULT_MARGIN_S <= t <= end for start, end in windows)


def read_stream(lake: Lake, stream_id: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    frames = []
    for table in ("position_updates", "greeks_updates"):
        if not lake.exists(table):
            frames.append(pl.DataFrame())
            continue
        frame = lake.scan(table).filter(pl.col("stream_id") == stream_id).collect()
        frames.append(frame)
    return frames[0], frames[1]


def count_sentinel_numbers(positions: pl.DataFrame, greeks: pl.DataFrame) -> int:
    """Stored numbers that are really IB sentinels (UNSET_DOUBLE, NaN, inf, greeks -1/-2 'not computed')."""
    bad = 0
    for frame in (positions, greeks):
        for name, dtype in frame.schema.items():
            if dtype == pl.Float64:
                bad += int(frame.select(ib_unset_expr(pl.col(name)).fill_null(False).sum()).item() or 0)
    if greeks.height:
        for name in ("implied_vol", "opt_price", "und_price", "gamma", "vega"):
            bad += int(greeks[name].is_in([-1.0, -2.0]).sum() or 0)
        bad += int((greeks["delta"] == -2.0).sum() or 0)
    return bad


def verify(
    *,
    truth_sent: list[dict[str, Any]],
    lake: Lake,
    stream_id: str,
    spool_path: Path,
    option_ids: set[int],
    windows: list[tuple[float, float]],
    allowlist: tuple[str, ...] = (),
    client_id: int = CLIENT_ID,
) -> Verdict:
    positions, greeks = read_stream(lake, stream_id)
    # executions, account values and stream_health rows take spool offsets too: exactly once over every streamed table
    others = [
        lake.scan(table).filter(pl.col("stream_id") == stream_id).select("spool_offset").collect()
        for table in ("executions", "account_values", "stream_health")
        if lake.exists(table)
    ]
    verdict = Verdict(stored=positions.height + greeks.height + sum(f.height for f in others))
    offsets = pl.concat(
        [f.select(pl.col("spool_offset").cast(pl.Int64)) for f in (positions, greeks, *others) if f.height]
        or [pl.DataFrame({"spool_offset": []}, schema={"spool_offset": pl.Int64})]
    )["spool_offset"]
    verdict.duplicated = offsets.len() - offsets.n_unique()
    with Spool(spool_path) as spool:
        last = spool.last_offset()
        acked = spool.acked_offset()
    present = set(offsets.to_list())
    durable_missing = sum(1 for o in range(1, last + 1) if o not in present)
    verdict.details.update(spool_last_offset=last, spool_acked=acked, durable_missing=durable_missing)

    # wire vs Delta
    rows: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for row in positions.iter_rows(named=True):
        rows.setdefault((row["account"], row["con_id"]), []).append(row)
    considered = missed = excused = 0
    missing_examples: list[dict[str, Any]] = []
    for entry in truth_sent:
        kind = entry.get("kind")
        if entry.get("client_id") != client_id or kind not in _TRUTH_FIELDS or entry.get("con_id") not in option_ids:
            continue
        if allowlist and entry["account"] not in allowlist:
            continue
        if _in_windows(float(entry["wall_time"]), windows):
            excused += 1
            continue
        considered += 1
        pairs = [(clean_float(entry[src]), dst) for src, dst in _TRUTH_FIELDS[kind]]
        candidates = rows.get((entry["account"], entry["con_id"]), [])
        if not any(all(v is None or r[dst] == v for v, dst in pairs) for r in candidates):
            missed += 1
            if len(missing_examples) < 3:
                missing_examples.append(entry)
    verdict.sent = considered
    verdict.lost = durable_missing + missed
    verdict.details.update(
        truth_checked=considered,
        truth_missing=missed,
        truth_in_fault_windows=excused,
        missing_examples=missing_examples,
    )
    if allowlist and positions.height:
        verdict.foreign_rows = int((~positions["account"].is_in(list(allowlist))).sum())
    verdict.sentinel_numbers = count_sentinel_numbers(positions, greeks)
    return verdict


def option_ids(sim: GatewaySimulator) -> set[int]:
    return {cid for cid, c in sim.scenario.contracts.items() if c.sec_type in OPTION_TYPES}


def order_requests(sim: GatewaySimulator) -> int:
    """Order-placing/cancelling requests the simulator saw (its read-only guard, plus the raw message ids)."""
    by_id = sum(1 for r in sim.requests() if r.get("msg_id") in ORDER_MSG_IDS)
    return max(sim.order_violations(), by_id)


# -- security -----------------------------------------------------------------------------------------------------
def _is_loopback(ip: str) -> bool:
    """127.0.0.0/8, ::1, and ::ffff:127.0.0.1 (an IPv6 socket bound to the IPv4 loopback, as gRPC binds
    ``-h 127.0.0.1``: it accepts connections to 127.0.0.1 only)."""
    addr = ipaddress.ip_address(ip.split("%")[0])
    mapped = addr.ipv4_mapped if isinstance(addr, ipaddress.IPv6Address) else None
    return addr.is_loopback or (mapped is not None and mapped.is_loopback)


def non_loopback_listeners(pids: Iterable[int]) -> list[str]:
    """Listening sockets of ``pids`` bound to anything but loopback."""
    found = []
    for pid in pids:
        try:
            conns = psutil.Process(pid).net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        for conn in conns:
            if conn.status == psutil.CONN_LISTEN and conn.laddr and not _is_loopback(conn.laddr.ip):
                found.append(f"pid {pid} listens on {conn.laddr.ip}:{conn.laddr.port}")
    return found


def secret_hits(paths: Iterable[Path]) -> list[str]:
    """Files (searched recursively, bytes) that contain a fake secret value."""
    needles = [v.encode() for v in FAKE_SECRETS.values()]
    hits = []
    for root in paths:
        files = [root] if root.is_file() else [p for p in root.rglob("*") if p.is_file()] if root.exists() else []
        for path in files:
            with contextlib.suppress(OSError):
                data = path.read_bytes()
                hits.extend(f"{path}" for n in needles if n in data)
    return hits


@contextlib.contextmanager
def python_env(values: dict[str, str]) -> Iterator[None]:
    """``values`` in ``os.environ`` for Python readers (our settings, Dagster, children given ``dict(os.environ)``),
    without rewriting the C environment: glibc's setenv is not thread-safe, and the simulator, the streamer and
    native thread pools (tokio, polars) run meanwhile in this process. Restored on exit."""
    data = os.environ._data  # type: ignore[attr-defined]
    keys = {os.environ.encodekey(k): os.environ.encodevalue(v) for k, v in values.items()}  # type: ignore[attr-defined]
    saved = {k: data.get(k) for k in keys}
    data.update(keys)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                data.pop(k, None)
            else:
                data[k] = v


@contextlib.contextmanager
def fake_secrets_in_env() -> Iterator[None]:
    with python_env(dict(FAKE_SECRETS)):
        yield


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[index]
