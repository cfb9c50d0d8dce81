"""The same portfolio monitor as ``ibapi_client.py`` on ib_async, pinned to a server-version range, in its own process.

``python ib_async_client.py PORT CLIENT_ID MAX_SECONDS MIN_SECONDS MIN_VERSION MAX_VERSION`` prints one JSON
object in the shape ``ibapi_client.py`` prints. ib_async decodes in its event loop and only logs a message it
cannot decode: its decoder's log errors are the decode errors. Greeks are read from the tickers (ib_async keeps
the latest only), so they are a subsequence of what was sent rather than all of it.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import Counter
from typing import Any

from ib_async import IB, Client, Contract

GREEKS = ("impliedVol", "delta", "optPrice", "pvDividend", "gamma", "vega", "theta", "undPrice")
GREEK_NAMES = ("implied_vol", "delta", "opt_price", "pv_dividend", "gamma", "vega", "theta", "und_price")


class _LogErrors(logging.Handler):
    def __init__(self, sink: list[str]) -> None:
        super().__init__(logging.ERROR)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(record.getMessage()[:300])


def main() -> int:
    port, client_id = int(sys.argv[1]), int(sys.argv[2])
    max_seconds, min_seconds = float(sys.argv[3]), float(sys.argv[4])
    Client.MinClientVersion, Client.MaxClientVersion = int(sys.argv[5]), int(sys.argv[6])
    decode_errors: list[str] = []
    logging.getLogger("ib_async.Decoder").addHandler(_LogErrors(decode_errors))  # "Error handling fields: ..."
    ib = IB()
    counts: Counter[str] = Counter()
    interpret = ib.client.decoder.interpret

    def counted(fields: Any) -> Any:
        counts[str(fields[0])] += 1
        return interpret(fields)

    ib.client.decoder.interpret = counted  # type: ignore[method-assign]
    errors: list[dict[str, Any]] = []
    positions: list[dict[str, Any]] = []
    portfolio: list[dict[str, Any]] = []
    account_values: list[dict[str, Any]] = []
    pnl: list[dict[str, Any]] = []
    pnl_single: list[dict[str, Any]] = []
    greeks: list[dict[str, Any]] = []
    ib.errorEvent += lambda req_id, code, msg, contract: errors.append(
        {"req_id": req_id, "code": code, "message": msg[:200]}
    )
    ib.positionEvent += lambda p: positions.append(
        {"account": p.account, "con_id": p.contract.conId, "position": p.position, "average_cost": p.avgCost}
    )
    ib.updatePortfolioEvent += lambda i: portfolio.append(
        {
            "account": i.account,
            "con_id": i.contract.conId,
            "position": i.position,
            "market_price": i.marketPrice,
            "market_value": i.marketValue,
            "average_cost": i.averageCost,
            "unrealized_pnl": i.unrealizedPNL,
            "realized_pnl": i.realizedPNL,
        }
    )
    ib.accountValueEvent += lambda v: account_values.append(
        {"account": v.account, "key": v.tag, "value": v.value, "currency": v.currency}
    )
    ib.pnlEvent += lambda p: pnl.append(
        {"req_id": 0, "daily_pnl": p.dailyPnL, "unrealized_pnl": p.unrealizedPnL, "realized_pnl": p.realizedPnL}
    )
    ib.pnlSingleEvent += lambda p: pnl_single.append(
        {
            "account": p.account,
            "con_id": p.conId,
            "position": p.position,
            "daily_pnl": p.dailyPnL,
            "unrealized_pnl": p.unrealizedPnL,
            "realized_pnl": p.realizedPnL,
            "value": p.value,
        }
    )
    last_greeks: dict[int, tuple[Any, ...]] = {}

    def on_tickers(tickers: Any) -> None:
        for t in tickers:
            g = t.modelGreeks
            if g is None:
                continue
            values = tuple(getattr(g, name) for name in GREEKS)
            if last_greeks.get(t.contract.conId) != values:
                last_greeks[t.contract.conId] = values
                greeks.append(
                    {"con_id": t.contract.conId, "tick_type": 13, **dict(zip(GREEK_NAMES, values, strict=True))}
                )

    ib.pendingTickersEvent += on_tickers
    started = time.monotonic()
    ib.connect("127.0.0.1", port, clientId=client_id, readonly=True, timeout=10)
    version = ib.client.serverVersion()
    accounts = ib.managedAccounts()
    account = accounts[0]
    ib.reqAccountUpdates(account)
    ib.reqPnL(account)
    ib.reqMktData(Contract(conId=1, exchange="SMART"))  # an unknown contract: one error message on purpose
    wanted: dict[str, list[list[Any]]] = {"pnl_single": [], "greeks": []}
    for p in ib.positions():
        ib.reqPnLSingle(p.account, "", p.contract.conId)
        wanted["pnl_single"].append([p.account, p.contract.conId])
    seen: set[int] = set()
    for p in ib.positions():
        c = p.contract
        if c.secType in ("OPT", "FOP") and c.conId not in seen:
            seen.add(c.conId)
            c.exchange = c.exchange or "SMART"
            ib.reqMktData(c)
            wanted["greeks"].append(["", c.conId])

    def complete() -> bool:
        got = {(e["account"], e["con_id"]) for e in pnl_single}
        return (
            bool(pnl)
            and bool(errors)
            and {tuple(k) for k in wanted["pnl_single"]} <= got
            and {c for _, c in wanted["greeks"]} <= {g["con_id"] for g in greeks if g["delta"] is not None}
        )

    while time.monotonic() - started < max_seconds and ib.isConnected():
        if time.monotonic() - started >= min_seconds and complete():
            break
        ib.sleep(0.05)
    connected = ib.isConnected()
    finished_at = time.time()
    ib.disconnect()
    report = {
        "client": "ib_async",
        "server_version": version,
        "connected_at_end": connected,
        "seconds": round(time.monotonic() - started, 2),
        "finished_at": finished_at,
        "accounts": accounts,
        "message_counts": dict(sorted(counts.items(), key=lambda kv: int(kv[0]))),
        "decode_errors": decode_errors,
        "loop_died": None,
        "errors": errors,
        "positions": positions,
        "portfolio": portfolio,
        "account_values": account_values,
        "pnl": pnl,
        "pnl_single": pnl_single,
        "greeks": greeks,
        "wanted": wanted,
    }
    json.dump(report, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
