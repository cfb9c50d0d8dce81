"""A user's program on IB's official ``ibapi`` client (any version 9.81..10.x), run in that client's own virtualenv.

``python ibapi_client.py PORT CLIENT_ID MAX_SECONDS MIN_SECONDS [MAX_VERSION]`` connects to a gateway on
loopback, asks for what a read-only portfolio monitor asks for -- positions, the first account's updates (values
and portfolio rows), PnL, PnL single and market data (model greeks) per option position -- for MIN_SECONDS and until
everything has arrived (at most MAX_SECONDS), then prints one JSON object on stdout: the negotiated version,
message counts, decode errors, error codes and every value received, in arrival order. It imports nothing from
this project: only ``ibapi`` and the standard library. MAX_VERSION lowers the highest version the client offers
(to try the gateway at older versions); PnL is asked for only where the version has it (ibapi refuses otherwise).
A request for an unknown contract (req id 8999) draws one error message on purpose.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
import traceback
from collections import Counter
from typing import Any

from ibapi.client import EClient
from ibapi.contract import Contract
from ibapi.wrapper import EWrapper

OPTION_TYPES = ("OPT", "FOP")
MIN_SERVER_VER_PNL = 127
GREEKS = ("implied_vol", "delta", "opt_price", "pv_dividend", "gamma", "vega", "theta", "und_price")


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


class _LogErrors(logging.Handler):
    """ibapi reports some decode problems only as log errors (e.g. a message with a field too many)."""

    def __init__(self, sink: list[str]) -> None:
        super().__init__(logging.ERROR)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(record.getMessage()[:300])


class Monitor(EWrapper, EClient):
    def __init__(self) -> None:
        EWrapper.__init__(self)
        EClient.__init__(self, self)
        self.counts: Counter[str] = Counter()
        self.decode_errors: list[str] = []
        self.errors: list[dict[str, Any]] = []
        self.accounts: list[str] = []
        self.next_id: int | None = None
        self.positions: list[dict[str, Any]] = []
        self.position_contracts: dict[tuple[str, int], Contract] = {}
        self.positions_done = threading.Event()
        self.portfolio: list[dict[str, Any]] = []
        self.account_values: list[dict[str, Any]] = []
        self.account_done = threading.Event()
        self.pnl_rows: list[dict[str, Any]] = []
        self.pnl_single: list[dict[str, Any]] = []
        self.greeks: list[dict[str, Any]] = []
        self.req_keys: dict[int, tuple[str, int]] = {}
        self.loop_died: str | None = None
        self.negotiated: int | None = None
        logging.getLogger().addHandler(_LogErrors(self.decode_errors))

    # --- the message loop, instrumented: count every message, record (and re-raise) every decode error
    def connect_and_instrument(self, port: int, client_id: int) -> None:
        self.connect("127.0.0.1", port, client_id)
        self.negotiated = self.serverVersion()  # read now: a disconnect forgets it
        decoder = self.decoder
        interpret = decoder.interpret

        def counted(fields: Any, *rest: Any) -> Any:
            msg_id = rest[0] if rest else int(fields[0])
            self.counts[str(msg_id)] += 1
            try:
                return interpret(fields, *rest)
            except Exception as exc:
                self.decode_errors.append(f"message {msg_id}: {type(exc).__name__}: {exc}")
                raise

        decoder.interpret = counted

    def run_loop(self) -> None:
        try:
            self.run()
        except Exception:
            self.loop_died = traceback.format_exc(limit=3)[-600:]

    # --- wrapper callbacks (9.81 and 10.x signatures)
    def nextValidId(self, orderId: int) -> None:
        self.next_id = orderId

    def managedAccounts(self, accountsList: str) -> None:
        self.accounts = [a for a in accountsList.split(",") if a]

    def error(self, reqId: int, *rest: Any) -> None:
        # 9.81: (code, message); 10.x: (errorTime, code, message, advancedOrderRejectJson)
        code, message = (rest[0], rest[1]) if len(rest) == 2 else (rest[1], rest[2])
        self.errors.append({"req_id": reqId, "code": int(code), "message": str(message)[:200]})

    def position(self, account: str, contract: Contract, position: Any, avgCost: float) -> None:
        self.positions.append(
            {"account": account, "con_id": contract.conId, "position": _num(position), "average_cost": avgCost}
        )
        self.position_contracts[(account, contract.conId)] = contract

    def positionEnd(self) -> None:
        self.positions_done.set()

    def updatePortfolio(
        self,
        contract: Contract,
        position: Any,
        marketPrice: float,
        marketValue: float,
        averageCost: float,
        unrealizedPNL: float,
        realizedPNL: float,
        accountName: str,
    ) -> None:
        self.portfolio.append(
            {
                "account": accountName,
                "con_id": contract.conId,
                "position": _num(position),
                "market_price": marketPrice,
                "market_value": marketValue,
                "average_cost": averageCost,
                "unrealized_pnl": unrealizedPNL,
                "realized_pnl": realizedPNL,
            }
        )

    def updateAccountValue(self, key: str, val: str, currency: str, accountName: str) -> None:
        self.account_values.append({"account": accountName, "key": key, "value": val, "currency": currency})

    def accountDownloadEnd(self, accountName: str) -> None:
        self.account_done.set()

    def pnl(self, reqId: int, dailyPnL: float, unrealizedPnL: float, realizedPnL: float) -> None:
        self.pnl_rows.append(
            {"req_id": reqId, "daily_pnl": dailyPnL, "unrealized_pnl": unrealizedPnL, "realized_pnl": realizedPnL}
        )

    def pnlSingle(
        self, reqId: int, pos: Any, dailyPnL: float, unrealizedPnL: float, realizedPnL: float, value: float
    ) -> None:
        account, con_id = self.req_keys.get(reqId, ("", 0))
        self.pnl_single.append(
            {
                "account": account,
                "con_id": con_id,
                "position": _num(pos),
                "daily_pnl": dailyPnL,
                "unrealized_pnl": unrealizedPnL,
                "realized_pnl": realizedPnL,
                "value": value,
            }
        )

    def tickOptionComputation(self, reqId: int, tickType: int, *rest: Any) -> None:
        values = rest[-8:]  # (tickAttrib,) impliedVol, delta, optPrice, pvDividend, gamma, vega, theta, undPrice
        _, con_id = self.req_keys.get(reqId, ("", 0))
        self.greeks.append({"con_id": con_id, "tick_type": int(tickType), **dict(zip(GREEKS, values, strict=True))})


def main() -> int:
    port, client_id = int(sys.argv[1]), int(sys.argv[2])
    seconds, min_seconds = float(sys.argv[3]), float(sys.argv[4])
    if len(sys.argv) > 5:
        import ibapi.client

        ibapi.client.MAX_CLIENT_VER = int(sys.argv[5])  # type: ignore[attr-defined]
    app = Monitor()
    started = time.monotonic()
    app.connect_and_instrument(port, client_id)
    loop = threading.Thread(target=app.run_loop, daemon=True)
    loop.start()
    deadline = started + seconds

    def wait(predicate: Any) -> bool:
        while time.monotonic() < deadline:
            if predicate():
                return True
            if not app.isConnected() and not loop.is_alive():
                return False
            time.sleep(0.02)
        return False

    wanted: dict[str, set[tuple[str, int]]] = {"pnl_single": set(), "greeks": set()}
    if wait(lambda: app.next_id is not None and app.accounts):
        account = app.accounts[0]
        app.reqPositions()
        app.reqAccountUpdates(True, account)
        has_pnl = (app.negotiated or 0) >= MIN_SERVER_VER_PNL
        if has_pnl:
            app.reqPnL(9000, account, "")
        unknown = Contract()
        unknown.conId, unknown.exchange = 1, "SMART"
        app.reqMktData(8999, unknown, "", False, False, [])
        if wait(app.positions_done.is_set):
            req_id = 9001
            for acct, con_id in sorted(app.position_contracts) if has_pnl else ():
                app.req_keys[req_id] = (acct, con_id)
                app.reqPnLSingle(req_id, acct, "", con_id)
                wanted["pnl_single"].add((acct, con_id))
                req_id += 1
            seen_options: set[int] = set()
            for (_, con_id), contract in sorted(app.position_contracts.items()):
                if contract.secType in OPTION_TYPES and con_id not in seen_options:
                    seen_options.add(con_id)
                    query = Contract()
                    query.conId, query.exchange = con_id, contract.exchange or "SMART"
                    app.req_keys[req_id] = ("", con_id)
                    app.reqMktData(req_id, query, "", False, False, [])
                    wanted["greeks"].add(("", con_id))
                    req_id += 1

        def complete() -> bool:
            got_pnl = {(e["account"], e["con_id"]) for e in app.pnl_single}
            got_greeks = {("", e["con_id"]) for e in app.greeks if e["delta"] is not None}
            return (
                time.monotonic() - started >= min_seconds
                and app.account_done.is_set()
                and (bool(app.pnl_rows) or not has_pnl)
                and bool(app.errors)
                and wanted["pnl_single"] <= got_pnl
                and wanted["greeks"] <= got_greeks
            )

        wait(complete)
    elapsed = time.monotonic() - started
    finished_at = time.time()
    version = app.negotiated
    connected = app.isConnected()
    app.disconnect()
    report = {
        "client": "ibapi",
        "server_version": version,
        "connected_at_end": connected,
        "seconds": round(elapsed, 2),
        "finished_at": finished_at,
        "accounts": app.accounts,
        "message_counts": dict(sorted(app.counts.items(), key=lambda kv: int(kv[0]))),
        "decode_errors": app.decode_errors,
        "loop_died": app.loop_died,
        "errors": app.errors,
        "positions": app.positions,
        "portfolio": app.portfolio,
        "account_values": app.account_values,
        "pnl": app.pnl_rows,
        "pnl_single": app.pnl_single,
        "greeks": app.greeks,
        "wanted": {k: sorted(map(list, v)) for k, v in wanted.items()},
    }
    json.dump(report, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
