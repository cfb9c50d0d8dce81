"""Several IB logins: ``V6_IB_GATEWAYS``, a list of gateways each streamed by its own single-gateway streamer.

A small fund often has more than one IB login, and so more than one Gateway. Unset, the one gateway of
``V6_IB_HOST`` / ``V6_IB_PORT`` / ``V6_IB_CLIENT_ID`` / ``V6_IB_ACCOUNTS`` is streamed exactly as before. Set, it
lists the gateways, as JSON or in a compact form (no secrets in either: IB logins live in the Gateway itself)::

    V6_IB_GATEWAYS='fund-a=127.0.0.1:4002/61/DU111,DU112; fund-b=127.0.0.1:4012/62/DU211'
    V6_IB_GATEWAYS='[{"name": "fund-a", "port": 4002, "client_id": 61, "accounts": ["DU111", "DU112"]}, ...]'

Each gateway gets its own ``StreamerSettings`` (``gateway`` = its name, so its stream id is ``ib-<name>``): its own
connection (read-only), lease, spool, status file and stream id, all drained into the same Delta tables. The
tuning knobs (``V6_IB_HEARTBEAT_S``...) and ``V6_HOME`` are shared. Configuration errors, each naming
``V6_IB_GATEWAYS``: a duplicate name or host:port:client id, a gateway of a list of several without an account
allowlist (accounts could then overlap unseen), and an account on two gateways (its rows would be stored twice).
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from v6_assets.contracts.settings import csv_tuple

GATEWAY_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,31}$"  # starts with a letter: never mistaken for a host
ACCOUNT_PATTERN = r"^[A-Za-z0-9_.-]{1,32}$"  # an IB account id (V6_IB_ACCOUNTS too)
# name=host:port/client_id/ACCOUNT,ACCOUNT  (host may be a bracketed IPv6 literal; accounts may be empty)
_COMPACT = re.compile(
    r"^(?P<name>[^=]+)=(?P<host>\[[^\]]+\]|[^:/]+):(?P<port>[^/]+)/(?P<client_id>[^/]+)(?:/(?P<acc>.*))?$"
)


class GatewaySpec(BaseModel):
    """One gateway of ``V6_IB_GATEWAYS``: a name (its stream id is ``ib-<name>``), where it listens, which accounts."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=GATEWAY_NAME_PATTERN, description="label of the gateway; its stream id is ib-<name>")
    host: str = Field("127.0.0.1", min_length=1)
    port: int = Field(ge=1, le=65535)
    client_id: int = Field(ge=0, le=2**31 - 1)
    accounts: Annotated[tuple[Annotated[str, Field(pattern=ACCOUNT_PATTERN)], ...], BeforeValidator(csv_tuple)] = ()


def parse_gateways(raw: Any) -> Any:
    """``V6_IB_GATEWAYS`` text -> a list of dicts for pydantic (JSON list, or the compact ``;``-separated form)."""
    if not isinstance(raw, str):
        return raw
    text = raw.strip()
    if not text:
        return ()
    if text.startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON ({exc})") from None
    entries = []
    for part in (p.strip() for p in text.split(";")):
        if not part:
            continue
        found = _COMPACT.match(part)
        if found is None:
            raise ValueError(f"{part!r} is not name=host:port/client_id/ACCOUNT,ACCOUNT")
        entries.append(
            {
                "name": found["name"].strip(),
                "host": found["host"].strip().strip("[]"),
                "port": found["port"].strip(),
                "client_id": found["client_id"].strip(),
                "accounts": csv_tuple(found["acc"] or ""),
            }
        )
    return entries


def check_gateways(gateways: tuple[GatewaySpec, ...]) -> tuple[GatewaySpec, ...]:
    """The list's own rules (each entry is checked by ``GatewaySpec``); ``ValueError`` says which is broken."""
    names: set[str] = set()
    endpoints: dict[tuple[str, int, int], str] = {}
    owner: dict[str, str] = {}
    for gateway in gateways:
        if gateway.name in names:
            raise ValueError(f"gateway name {gateway.name!r} is used twice")
        names.add(gateway.name)
        endpoint = (gateway.host, gateway.port, gateway.client_id)
        if endpoint in endpoints:
            raise ValueError(
                f"gateways {endpoints[endpoint]!r} and {gateway.name!r} are the same connection "
                f"({gateway.host}:{gateway.port} client {gateway.client_id})"
            )
        endpoints[endpoint] = gateway.name
        if len(gateways) > 1 and not gateway.accounts:
            raise ValueError(
                f"gateway {gateway.name!r} has no accounts: with several gateways each lists its accounts "
                "(otherwise one account could be streamed by two gateways)"
            )
        for account in gateway.accounts:
            if account in owner:
                raise ValueError(
                    f"account {account} is on two gateways, {owner[account]!r} and {gateway.name!r}: "
                    "each account belongs to one gateway (its rows would be stored twice)"
                )
            owner[account] = gateway.name
    return gateways
