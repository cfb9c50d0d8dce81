"""Shared helpers for the gateway simulator tests: tiny scenarios, a raw TWS socket client, an async runner."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Coroutine
from datetime import datetime
from typing import Any, TypeVar

import yaml

from v6_assets.gateway_sim import Scenario, parse_scenario

T = TypeVar("T")

# Monday 2025-03-03 09:25 ET (a regular session), well inside the calendar.
HAND_START = "2025-03-03T09:25:00-05:00"

HAND_SCENARIO = f"""
name: hand
seed: 1
clock: {{start: "{HAND_START}", speed: 20000, min_real_interval_s: 0.02, tick_real_s: 0.02}}
accounts: [{{id: DU1, base_currency: USD}}]
underlyings: [{{symbol: XYZ, spot: 100.0, vol: 0.000001}}]
contracts:
  - {{con_id: 11, symbol: XYZ, sec_type: OPT, expiry: "20250321", strike: 100, right: C}}
  - {{con_id: 12, symbol: XYZ, sec_type: OPT, expiry: "20250304", strike: 95, right: C}}
  - {{con_id: 13, symbol: XYZ, sec_type: OPT, expiry: "20250304", strike: 90, right: P, multiplier: 50}}
positions:
  - {{account: DU1, con_id: 12, qty: 3, avg_cost: 480.0}}
  - {{account: DU1, con_id: 13, qty: -2, avg_cost: 40.0}}
events:
  - {{kind: mark, after: 0, con_id: 11, price: 2.0}}
  - {{kind: trade, session: 0, time: "10:00", account: DU1, con_id: 11, qty: 10, price: 1.5, commission: 1.0}}
  - {{kind: mark, session: 0, time: "15:00", con_id: 11, price: 2.5}}
  - {{kind: mark, session: 1, time: "10:00", con_id: 11, price: 3.0}}
  - {{kind: trade, session: 1, time: "11:00", account: DU1, con_id: 11, qty: -4, price: 2.8, commission: 0.6}}
"""


def hand_scenario(**overrides: Any) -> Scenario:
    data = yaml.safe_load(HAND_SCENARIO)
    data.update(overrides)
    return parse_scenario(data)


def tiny_scenario(accounts: int = 1, **overrides: Any) -> Scenario:
    """One option position per account on a fixed past Monday, fast clock."""
    data: dict[str, Any] = {
        "name": "tiny",
        "seed": 3,
        "clock": {"start": HAND_START, "speed": 600, "min_real_interval_s": 0.02, "tick_real_s": 0.02},
        "accounts": [{"id": f"DU{i + 1}"} for i in range(accounts)],
        "underlyings": [{"symbol": "SPY", "spot": 600.0, "vol": 0.2}],
        "contracts": [
            {
                "con_id": 100 + i,
                "symbol": "SPY",
                "sec_type": "OPT",
                "expiry": "20250321",
                "strike": 600 + 5 * i,
                "right": "C",
            }
            for i in range(4)
        ],
        "positions": [
            {"account": f"DU{i + 1}", "con_id": 100 + i, "qty": 2 + i, "avg_cost": 900.0} for i in range(accounts)
        ],
    }
    data.update(overrides)
    return parse_scenario(data)


def run(coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(bounded())


class RawClient:
    """A minimal blocking TWS socket client for what ib_async cannot do (odd versions, order requests)."""

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buffer = b""

    def handshake(self, versions: str) -> list[str] | None:
        payload = versions.encode()
        self.sock.sendall(b"API\0" + struct.pack(">I", len(payload)) + payload)
        return self.read()

    def send(self, *fields: object) -> None:
        payload = "".join(f"{f}\0" for f in fields).encode()
        self.sock.sendall(struct.pack(">I", len(payload)) + payload)

    def read(self) -> list[str] | None:
        """The next message's fields, or None when the server closed the connection."""
        while True:
            if len(self.buffer) >= 4:
                (length,) = struct.unpack(">I", self.buffer[:4])
                if len(self.buffer) >= 4 + length:
                    text = self.buffer[4 : 4 + length].decode()
                    self.buffer = self.buffer[4 + length :]
                    return text.split("\0")[:-1]
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buffer += chunk

    def read_until(self, msg_id: str, limit: int = 1000) -> list[str]:
        for _ in range(limit):
            fields = self.read()
            if fields is None:
                raise ConnectionError("server closed the connection")
            if fields[0] == msg_id:
                return fields
        raise AssertionError(f"no message {msg_id} in {limit} messages")

    def close(self) -> None:
        self.sock.close()


def parse_ts(text: str) -> datetime:
    return datetime.fromisoformat(text)
