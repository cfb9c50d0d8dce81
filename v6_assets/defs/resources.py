"""Dagster resources: thin, per-tick handles on the process-wide streamer, the spool and the Delta lake.

Dagster builds and tears down resources on EVERY sensor tick and in every run worker, so nothing here holds a
connection: the IB connection belongs to the process-wide streamer (``v6_assets.ib``), started only by the
streaming sensor. Config comes from environment variables through ``EnvVar`` (the UI shows the variable name, never
the value) with safe local defaults when a variable is unset.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dagster import ConfigurableResource, EnvVar
from pydantic import Field

from v6_assets.contracts.settings import csv_tuple
from v6_assets.ib.settings import IBEnvironment, StreamerSettings
from v6_assets.ib.spool import Spool
from v6_assets.lake import DEFAULT_LAKE_URI, Lake

_DEFAULTS = StreamerSettings()
SIMULATED_LABEL = "SIMULATED"


def is_simulated(environ: Mapping[str, str] | None = None) -> bool:
    """True when the data comes from the gateway simulator (``V6_DEMO=1``): metadata and descriptions say so."""
    env = os.environ if environ is None else environ
    return env.get("V6_DEMO", "").strip().lower() in ("1", "true", "yes")


def _env_or(name: str, default: Any, environ: Mapping[str, str], *, integer: bool = False) -> Any:
    """``EnvVar(name)`` when the variable is set (resolved by Dagster at use), else the literal default."""
    if environ.get(name, "").strip() == "":
        return default
    return EnvVar.int(name) if integer else EnvVar(name)


class IBStreamResource(ConfigurableResource):
    """Where the read-only IB connection goes (one per gateway with ``gateways``) and where its local state lives.

    A handle, not a connection: ``settings()`` gives the streamer settings (these fields over the tuning knobs of
    ``IBEnvironment``; no environment round-trip), ``open_spool()`` the durable spool the streamer writes and the
    sensor drains.
    """

    host: str = Field(default=_DEFAULTS.host, description="IB Gateway / TWS host (V6_IB_HOST).")
    port: int = Field(default=_DEFAULTS.port, description="IB API port (V6_IB_PORT): 4002 Gateway paper, 4001 live.")
    client_id: int = Field(default=_DEFAULTS.client_id, description="API client id of the streaming connection.")
    accounts: str = Field(default="", description="Comma-separated account allowlist (V6_IB_ACCOUNTS); empty = all.")
    home: str = Field(default=str(_DEFAULTS.home), description="Local state directory: spool, lease (V6_HOME).")
    gateways: str = Field(
        default="",
        description="Several IB logins (V6_IB_GATEWAYS: name=host:port/client_id/ACCOUNTS;...); empty = the one above.",
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> IBStreamResource:
        env = os.environ if environ is None else environ
        return cls(
            host=_env_or("V6_IB_HOST", _DEFAULTS.host, env),
            port=_env_or("V6_IB_PORT", _DEFAULTS.port, env, integer=True),
            client_id=_env_or("V6_IB_CLIENT_ID", _DEFAULTS.client_id, env, integer=True),
            accounts=_env_or("V6_IB_ACCOUNTS", "", env),
            home=_env_or("V6_HOME", str(_DEFAULTS.home), env),
            gateways=_env_or("V6_IB_GATEWAYS", "", env),
        )

    def settings(self, environ: Mapping[str, str] | None = None) -> StreamerSettings:
        """Streamer settings: this resource's fields over the ib layer's tuning variables (``IBEnvironment``).

        Raises ``SettingsError`` naming the variable for a bad value (a port out of range, a bad account id...).
        """
        return IBEnvironment.read(environ).streamer_settings(
            host=self.host,
            port=self.port,
            client_id=self.client_id,
            accounts=csv_tuple(self.accounts),
            home=Path(self.home),
        )

    def gateway_settings(self, environ: Mapping[str, str] | None = None) -> tuple[StreamerSettings, ...]:
        """Streamer settings of every gateway: ``(self.settings(),)`` while ``gateways`` is empty (one gateway, as
        before ``V6_IB_GATEWAYS`` existed), else one per listed gateway (``ib/gateway_config.py``), all under ``home``.

        Raises ``SettingsError`` naming V6_IB_GATEWAYS for a bad list (an account on two gateways...)."""
        if not self.gateways.strip():
            return (self.settings(environ),)
        env = os.environ if environ is None else environ
        return IBEnvironment.read({**env, "V6_IB_GATEWAYS": self.gateways}).gateway_settings(home=Path(self.home))

    def allowed_accounts(self) -> tuple[str, ...]:
        """Every gateway's account allowlist together; empty (= all accounts) when a gateway allows all."""
        lists = [settings.accounts for settings in self.gateway_settings()]
        return () if any(not accounts for accounts in lists) else tuple(a for accounts in lists for a in accounts)

    @property
    def stream_id(self) -> str:
        return self.settings().stream_id

    def open_spool(self, settings: StreamerSettings | None = None) -> Spool:
        """The spool of this stream, or of one gateway's (close it after use; any process may open it)."""
        settings = settings or self.settings()
        return Spool(settings.spool_path, max_bytes=settings.spool_max_bytes)


class LakeResource(ConfigurableResource):
    """The Delta tables' root (V6_LAKE_URI; ``s3://bucket/prefix`` takes credentials from the AWS_* variables)."""

    uri: str = Field(default=DEFAULT_LAKE_URI, description="Root URI of the Delta tables (V6_LAKE_URI).")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> LakeResource:
        env = os.environ if environ is None else environ
        return cls(uri=_env_or("V6_LAKE_URI", DEFAULT_LAKE_URI, env))

    def lake(self) -> Lake:
        return Lake.for_uri(self.uri)
