"""Streamer settings from environment variables, with safe local defaults. A bad value names its variable."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

_ACCOUNT_RE = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")
_SEC_TYPE_RE = re.compile(r"^[A-Z]{2,8}$")


class SettingsError(ValueError):
    """A configuration value that cannot be used; the message names the environment variable."""


@dataclass(frozen=True, slots=True)
class StreamerSettings:
    host: str = "127.0.0.1"
    port: int = 4002
    client_id: int = 61
    # Empty tuple = every account the gateway manages.
    accounts: tuple[str, ...] = ()
    home: Path = Path("./.v6")
    connect_timeout_s: float = 4.0
    # No data for heartbeat_s -> reqCurrentTime probe; no answer within probe_timeout_s -> reconnect.
    heartbeat_s: float = 10.0
    probe_timeout_s: float = 3.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    circuit_failures: int = 5
    circuit_cooldown_s: float = 30.0
    # Error 326 (client id in use): wait this long, then retry the SAME client id.
    client_id_in_use_wait_s: float = 2.0
    lease_retry_s: float = 1.0
    line_budget: int = 90
    greeks_rotation_s: float = 30.0
    greeks_throttle_s: float = 1.0
    portfolio_rotation_s: float = 180.0
    sec_types: tuple[str, ...] = ("OPT", "FOP")
    handler_queue_size: int = 10_000
    # Spool size cap in bytes (0 = unlimited); past it the spool reports "full" like a full disk.
    spool_max_bytes: int = 0
    # Updates held in memory while the spool refuses writes; past it they are shed (greeks first) and counted.
    spool_max_held: int = 50_000

    def __post_init__(self) -> None:
        _check(1 <= self.port <= 65535, "V6_IB_PORT", f"port {self.port} is not in 1..65535")
        _check(0 <= self.client_id <= 2**31 - 1, "V6_IB_CLIENT_ID", f"client id {self.client_id} out of range")
        _check(bool(self.host.strip()), "V6_IB_HOST", "host is empty")
        for account in self.accounts:
            _check(bool(_ACCOUNT_RE.match(account)), "V6_IB_ACCOUNTS", f"account {account!r} is not an IB account id")
        for sec_type in self.sec_types:
            _check(bool(_SEC_TYPE_RE.match(sec_type)), "V6_IB_SEC_TYPES", f"sec type {sec_type!r} is not valid")
        _check(bool(self.sec_types), "V6_IB_SEC_TYPES", "at least one sec type is needed")
        _check(self.line_budget >= 0, "V6_IB_LINE_BUDGET", "line budget must be >= 0")
        _check(self.heartbeat_s > 0, "V6_IB_HEARTBEAT_S", "heartbeat must be > 0")
        _check(self.greeks_throttle_s >= 0, "V6_IB_GREEKS_THROTTLE_S", "greeks throttle must be >= 0")
        _check(self.circuit_failures >= 1, "V6_IB_CIRCUIT_FAILURES", "circuit failures must be >= 1")
        _check(
            0 < self.backoff_initial_s <= self.backoff_max_s,
            "V6_IB_BACKOFF_MAX_S",
            "backoff must satisfy 0 < initial <= max",
        )
        _check(self.spool_max_bytes >= 0, "V6_IB_SPOOL_MAX_BYTES", "must be >= 0 (0 = unlimited)")
        _check(self.spool_max_held >= 4, "V6_IB_SPOOL_MAX_HELD", "must be >= 4")
        _check(self.handler_queue_size >= 1, "V6_IB_HANDLER_QUEUE_SIZE", "queue size must be >= 1")

    @property
    def stream_id(self) -> str:
        """Stable id of host:port:client_id (the Delta txn app id, the spool and lease file names)."""
        host = re.sub(r"[^A-Za-z0-9.-]", "_", self.host)
        return f"ib-{host}-{self.port}-{self.client_id}"

    @property
    def spool_path(self) -> Path:
        return self.home / "spool" / f"{self.stream_id}.sqlite"

    @property
    def locks_dir(self) -> Path:
        return self.home / "locks"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> StreamerSettings:
        """Read V6_IB_HOST, V6_IB_PORT, V6_IB_CLIENT_ID, V6_IB_ACCOUNTS, V6_HOME and the V6_IB_* tuning knobs."""
        env = os.environ if environ is None else environ
        d = cls()
        return cls(
            host=_get(env, "V6_IB_HOST", str, d.host),
            port=_get(env, "V6_IB_PORT", int, d.port),
            client_id=_get(env, "V6_IB_CLIENT_ID", int, d.client_id),
            accounts=_get(env, "V6_IB_ACCOUNTS", _csv, d.accounts),
            home=_get(env, "V6_HOME", Path, d.home),
            connect_timeout_s=_get(env, "V6_IB_CONNECT_TIMEOUT_S", _positive_float, d.connect_timeout_s),
            heartbeat_s=_get(env, "V6_IB_HEARTBEAT_S", _positive_float, d.heartbeat_s),
            probe_timeout_s=_get(env, "V6_IB_PROBE_TIMEOUT_S", _positive_float, d.probe_timeout_s),
            backoff_initial_s=_get(env, "V6_IB_BACKOFF_INITIAL_S", _positive_float, d.backoff_initial_s),
            backoff_max_s=_get(env, "V6_IB_BACKOFF_MAX_S", _positive_float, d.backoff_max_s),
            circuit_failures=_get(env, "V6_IB_CIRCUIT_FAILURES", int, d.circuit_failures),
            circuit_cooldown_s=_get(env, "V6_IB_CIRCUIT_COOLDOWN_S", _positive_float, d.circuit_cooldown_s),
            line_budget=_get(env, "V6_IB_LINE_BUDGET", int, d.line_budget),
            greeks_throttle_s=_get(env, "V6_IB_GREEKS_THROTTLE_S", float, d.greeks_throttle_s),
            portfolio_rotation_s=_get(env, "V6_IB_PORTFOLIO_ROTATION_S", _positive_float, d.portfolio_rotation_s),
            greeks_rotation_s=_get(env, "V6_IB_GREEKS_ROTATION_S", _positive_float, d.greeks_rotation_s),
            spool_max_bytes=_get(env, "V6_IB_SPOOL_MAX_BYTES", int, d.spool_max_bytes),
            spool_max_held=_get(env, "V6_IB_SPOOL_MAX_HELD", int, d.spool_max_held),
            sec_types=_get(env, "V6_IB_SEC_TYPES", lambda s: tuple(x.upper() for x in _csv(s)), d.sec_types),
        )


def _check(ok: bool, var: str, why: str) -> None:
    if not ok:
        raise SettingsError(f"{var}: {why}")


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{raw!r} is not a positive finite number")
    return value


def _get(env: Mapping[str, str], var: str, parse: Callable[[str], T], default: T) -> T:
    raw = env.get(var)
    if raw is None or raw.strip() == "":
        return default
    try:
        return parse(raw.strip())
    except ValueError as exc:
        raise SettingsError(f"{var}={raw!r} is invalid: {exc}") from None
