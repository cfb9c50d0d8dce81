"""Streamer settings: ``StreamerSettings`` (the value the streamer runs with; building one reads no environment) and
``IBEnvironment``, the ib layer's settings model (the ``V6_IB_*`` variables and ``V6_HOME``, with safe local
defaults; a bad value names its variable)."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field
from pydantic_settings import NoDecode

from v6_assets.contracts.settings import EnvSettings, SettingsError, csv_tuple
from v6_assets.ib.gateway_config import (
    ACCOUNT_PATTERN,
    GATEWAY_NAME_PATTERN,
    GatewaySpec,
    check_gateways,
    parse_gateways,
)

_ACCOUNT_RE = re.compile(ACCOUNT_PATTERN)
_SEC_TYPE_RE = re.compile(r"^[A-Z]{2,8}$")


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
    # The gateway's name in V6_IB_GATEWAYS ("" for the one gateway of V6_IB_HOST...): its stream id is ib-<name>.
    gateway: str = ""

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
        _check(
            not self.gateway or bool(re.match(GATEWAY_NAME_PATTERN, self.gateway)),
            "V6_IB_GATEWAYS",
            f"gateway name {self.gateway!r} is not a name (a letter, then letters, digits, - or _)",
        )
        _check(self.handler_queue_size >= 1, "V6_IB_HANDLER_QUEUE_SIZE", "queue size must be >= 1")

    @property
    def stream_id(self) -> str:
        """Stable id of host:port:client_id, or of the gateway's name (the Delta txn app id, the spool file name)."""
        if self.gateway:
            return f"ib-{self.gateway}"
        host = re.sub(r"[^A-Za-z0-9.-]", "_", self.host)
        return f"ib-{host}-{self.port}-{self.client_id}"

    @property
    def spool_path(self) -> Path:
        return self.home / "spool" / f"{self.stream_id}.sqlite"

    @property
    def locks_dir(self) -> Path:
        return self.home / "locks"

    @property
    def status_path(self) -> Path:
        """The streamer's status snapshot (``ib/status_file.py``), read by ``v6 status`` without Dagster."""
        return self.home / "status" / f"{self.stream_id}.json"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> StreamerSettings:
        """Read V6_IB_HOST, V6_IB_PORT, V6_IB_CLIENT_ID, V6_IB_ACCOUNTS, V6_HOME and the V6_IB_* tuning knobs."""
        return IBEnvironment.read(environ).streamer_settings()


def _check(ok: bool, var: str, why: str) -> None:
    if not ok:
        raise SettingsError(f"{var}: {why}")


_D = StreamerSettings()
_PositiveFinite = Annotated[float, Field(gt=0, allow_inf_nan=False)]
_Csv = Annotated[tuple[str, ...], NoDecode, BeforeValidator(csv_tuple)]


def _upper_csv(raw: Any) -> Any:
    values = csv_tuple(raw)
    return tuple(v.upper() for v in values) if isinstance(values, tuple) else values


class IBEnvironment(EnvSettings):
    """The ib layer's variables. ``streamer_settings(**overrides)`` builds the streamer's ``StreamerSettings``."""

    host: str = Field(_D.host, validation_alias="V6_IB_HOST", description="IB Gateway / TWS host")
    port: int = Field(_D.port, validation_alias="V6_IB_PORT", description="API port (Gateway: 4002 paper, 4001 live)")
    client_id: int = Field(
        _D.client_id, validation_alias="V6_IB_CLIENT_ID", description="client id of the one streaming connection"
    )
    accounts: _Csv = Field(
        _D.accounts, validation_alias="V6_IB_ACCOUNTS", description="comma-separated account allowlist; empty = all"
    )
    gateways: Annotated[
        tuple[GatewaySpec, ...], NoDecode, BeforeValidator(parse_gateways), AfterValidator(check_gateways)
    ] = Field(
        (),
        validation_alias="V6_IB_GATEWAYS",
        description="several IB logins, each with its own connection, lease, spool and stream id ib-<name>",
    )
    home: Path = Field(_D.home, validation_alias="V6_HOME", description="local state: spool, connection lease, demo")
    connect_timeout_s: _PositiveFinite = Field(
        _D.connect_timeout_s, validation_alias="V6_IB_CONNECT_TIMEOUT_S", description="timeout of one connect"
    )
    heartbeat_s: _PositiveFinite = Field(
        _D.heartbeat_s, validation_alias="V6_IB_HEARTBEAT_S", description="no data this long: probe the connection"
    )
    probe_timeout_s: _PositiveFinite = Field(
        _D.probe_timeout_s, validation_alias="V6_IB_PROBE_TIMEOUT_S", description="no probe answer: reconnect"
    )
    backoff_initial_s: _PositiveFinite = Field(
        _D.backoff_initial_s, validation_alias="V6_IB_BACKOFF_INITIAL_S", description="first reconnect backoff"
    )
    backoff_max_s: _PositiveFinite = Field(
        _D.backoff_max_s, validation_alias="V6_IB_BACKOFF_MAX_S", description="longest reconnect backoff"
    )
    circuit_failures: int = Field(
        _D.circuit_failures,
        validation_alias="V6_IB_CIRCUIT_FAILURES",
        description="failed connects opening the breaker",
    )
    circuit_cooldown_s: _PositiveFinite = Field(
        _D.circuit_cooldown_s,
        validation_alias="V6_IB_CIRCUIT_COOLDOWN_S",
        description="how long the breaker stays open",
    )
    line_budget: int = Field(
        _D.line_budget, validation_alias="V6_IB_LINE_BUDGET", description="market data lines the streamer may use"
    )
    greeks_throttle_s: float = Field(
        _D.greeks_throttle_s, validation_alias="V6_IB_GREEKS_THROTTLE_S", description="greeks per contract at most"
    )
    portfolio_rotation_s: _PositiveFinite = Field(
        _D.portfolio_rotation_s, validation_alias="V6_IB_PORTFOLIO_ROTATION_S", description="portfolio rotation period"
    )
    greeks_rotation_s: _PositiveFinite = Field(
        _D.greeks_rotation_s, validation_alias="V6_IB_GREEKS_ROTATION_S", description="greeks lines rotation period"
    )
    sec_types: Annotated[tuple[str, ...], NoDecode, BeforeValidator(_upper_csv)] = Field(
        _D.sec_types, validation_alias="V6_IB_SEC_TYPES", description="security types streamed"
    )
    spool_max_bytes: int = Field(
        _D.spool_max_bytes, validation_alias="V6_IB_SPOOL_MAX_BYTES", description="spool size cap; 0 = unlimited"
    )
    spool_max_held: int = Field(
        _D.spool_max_held,
        validation_alias="V6_IB_SPOOL_MAX_HELD",
        description="updates held in memory while the spool refuses writes",
    )
    handler_queue_size: int = Field(
        _D.handler_queue_size,
        validation_alias="V6_IB_HANDLER_QUEUE_SIZE",
        description="events queued per in-process handler",
    )

    def streamer_settings(self, **overrides: Any) -> StreamerSettings:
        """These values, with ``overrides`` (field name -> value) on top; ``SettingsError`` names a bad one."""
        values = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(StreamerSettings)
            if f.name in type(self).model_fields
        }
        values.update(overrides)
        return StreamerSettings(**values)

    def gateway_settings(self, **overrides: Any) -> tuple[StreamerSettings, ...]:
        """One ``StreamerSettings`` per gateway: the one of ``V6_IB_HOST``... while ``V6_IB_GATEWAYS`` is unset (as
        before it existed), else one per listed gateway (``overrides`` such as ``home`` apply to each)."""
        if not self.gateways:
            return (self.streamer_settings(**overrides),)
        single = sorted(v for v, name in self.variables().items() if name in _SINGLE_GATEWAY_FIELDS)
        if _SINGLE_GATEWAY_FIELDS & self.model_fields_set:
            raise SettingsError(f"V6_IB_GATEWAYS: set it or {', '.join(single)}, not both (it lists every gateway)")
        return tuple(
            self.streamer_settings(
                **overrides,
                gateway=g.name,
                host=g.host,
                port=g.port,
                client_id=g.client_id,
                accounts=g.accounts,
            )
            for g in self.gateways
        )


_SINGLE_GATEWAY_FIELDS = frozenset({"host", "port", "client_id", "accounts"})
