"""Ground truth and the request record: what clients asked for, every value sent, and the EOD statement values.

Formats are documented in the package docstring (``sent.jsonl``, ``eod.jsonl``, ``summary.json``).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import IO, Any

from v6_assets.gateway_sim.book import BookPosition
from v6_assets.gateway_sim.market import SessionTimes
from v6_assets.gateway_sim.state import MarketState


class TruthRecorder:
    """Keeps the request record and the ground truth in memory and, when given paths, streams them to files.

    Requests are appended from the simulator's loop and read from other threads, hence the lock.
    """

    def __init__(
        self, state: MarketState, *, keep_sent: bool, record_path: Path | None, truth_dir: Path | None
    ) -> None:
        self.state = state
        self.keep_sent = keep_sent
        self.record_path = record_path
        self.truth_dir = truth_dir
        # "health": what the gateway did to the connections (resets, restarts, competing sessions, pacing)
        # "lifecycle": every expiry / exercise / assignment booked (``MarketState.lifecycle``, the same list)
        # "accounts": each account's values at every session close
        self.truth: dict[str, list[dict[str, Any]]] = {"sent": [], "eod": [], "health": [],
                                                       "lifecycle": state.lifecycle, "accounts": []}  # fmt: skip
        self._lock = threading.Lock()
        self._requests: list[dict[str, Any]] = []
        self._violations = 0
        self._record_file: IO[str] | None = None
        self._sent_file: IO[str] | None = None
        self._eod_file: IO[str] | None = None
        self._health_file: IO[str] | None = None

    # --- files
    def open_files(self) -> None:
        if self.record_path is not None:
            self.record_path.parent.mkdir(parents=True, exist_ok=True)
            self._record_file = self.record_path.open("a", buffering=1)
        if self.truth_dir is not None:
            self.truth_dir.mkdir(parents=True, exist_ok=True)
            self._sent_file = (self.truth_dir / "sent.jsonl").open("w")
            self._eod_file = (self.truth_dir / "eod.jsonl").open("w")
            self._health_file = (self.truth_dir / "health.jsonl").open("w")

    def close_files(self) -> None:
        for handle in (self._record_file, self._sent_file, self._eod_file, self._health_file):
            if handle is not None:
                handle.close()
        self._record_file = self._sent_file = self._eod_file = self._health_file = None

    def flush_sent(self) -> None:
        if self._sent_file is not None:
            self._sent_file.flush()

    def flush_eod(self) -> None:
        if self._eod_file is not None:
            self._eod_file.flush()

    # --- requests
    def record_request(
        self, client_id: int | None, msg_id: int | None, fields: list[str], violation: bool = False
    ) -> None:
        entry = {
            "sim_time": self.state.now.isoformat(),
            "wall_time": time.time(),
            "client_id": client_id,
            "msg_id": msg_id,
            "fields": fields,
            "violation": violation,
        }
        with self._lock:
            self._requests.append(entry)
            if violation:
                self._violations += 1
        if self._record_file is not None:
            self._record_file.write(json.dumps(entry) + "\n")

    def requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._requests)

    def request_count(self) -> int:
        with self._lock:
            return len(self._requests)

    def order_violations(self) -> int:
        with self._lock:
            return self._violations

    # --- ground truth
    def sent(self, client_id: int | None, kind: str, account: str, con_id: int | None, **values: Any) -> None:
        """One value message as sent (benchmark blast traffic is not recorded)."""
        if not self.keep_sent and self._sent_file is None:
            return
        entry = {
            "sim_time": self.state.now.isoformat(),
            "wall_time": time.time(),
            "client_id": client_id,
            "kind": kind,
            "account": account,
            "con_id": con_id,
            **values,
        }
        if self.keep_sent:
            self.truth["sent"].append(entry)
        if self._sent_file is not None:
            self._sent_file.write(json.dumps(entry) + "\n")

    def health(self, client_id: int | None, event: str, **values: Any) -> None:
        """One connection-health event (client_id None: every client), in simulated and wall time."""
        entry = {"sim_time": self.state.now.isoformat(), "wall_time": time.time(), "client_id": client_id,
                 "event": event, **values}  # fmt: skip
        self.truth["health"].append(entry)
        if self._health_file is not None:
            self._health_file.write(json.dumps(entry) + "\n")
            self._health_file.flush()

    def eod(self, session: SessionTimes, pos: BookPosition) -> None:
        """The statement values of one option position at a session close (marks at the close)."""
        entry = eod_entry(self.state, session, pos)
        self.truth["eod"].append(entry)
        if self._eod_file is not None:
            self._eod_file.write(json.dumps(entry) + "\n")

    def account_eod(self, session: SessionTimes, account: str) -> None:
        """An account's values at a session close (after the expiries): what account_eod must show at the cut."""
        values = self.state.account_values(account)
        self.truth["accounts"].append(
            {"session": session.day.isoformat(), "account": account,
             "base_currency": self.state.accounts[account].base_currency,
             "values": [{"key": k, "value": v, "currency": c} for k, v, c in values]}
        )  # fmt: skip

    def write(self, directory: Path, summary: dict[str, Any]) -> None:
        """Write ``sent.jsonl``, ``eod.jsonl``, ``lifecycle.jsonl`` (from memory) and ``summary.json`` to
        ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        with (directory / "sent.jsonl").open("w") as f:
            for entry in self.truth["sent"]:
                f.write(json.dumps(entry) + "\n")
        with (directory / "eod.jsonl").open("w") as f:
            for entry in self.truth["eod"]:
                f.write(json.dumps(entry) + "\n")
        with (directory / "lifecycle.jsonl").open("w") as f:
            for entry in self.truth["lifecycle"]:
                f.write(json.dumps(entry) + "\n")
        write_summary(directory, summary)


def write_summary(directory: Path, summary: dict[str, Any]) -> None:
    (directory / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


def eod_entry(state: MarketState, session: SessionTimes, pos: BookPosition) -> dict[str, Any]:
    """One ``eod.jsonl`` line; ``daily_pnl`` is the statement formula (None for a baseline session)."""
    c = pos.contract
    quote = state.quote(c)
    mark = quote.price
    m = c.multiplier
    account = state.accounts[pos.account]
    baseline = pos.prev_close_mark is None and pos.prev_close_qty != 0
    daily: float | None = None
    if not baseline:
        prev_mark = pos.prev_close_mark or 0.0
        position_mtm = pos.prev_close_qty * (mark - prev_mark) * m
        transaction_mtm = sum(f.qty * (mark - f.price) * m for f in pos.fills_session)
        daily = position_mtm + transaction_mtm - pos.commissions_session
    return {
        "session": session.day.isoformat(),
        "account": pos.account,
        "con_id": c.con_id,
        "symbol": c.symbol,
        "sec_type": c.sec_type,
        "expiry": c.expiry_date.isoformat() if c.expiry_date else None,
        "expiry_wire": c.expiry_wire,
        "strike": c.strike,
        "right": c.right,
        "multiplier": m,
        "currency": c.currency,
        "base_currency": account.base_currency,
        "fx_rate": account.fx_rate(c.currency),
        "position": pos.qty,
        "prev_position": pos.prev_close_qty,
        "prev_mark": pos.prev_close_mark,
        # IB's previous close even on a baseline session (the start is before the open: the start mark is it)
        "statement_prev_mark": pos.reset_mark if baseline else pos.prev_close_mark,
        "mark": mark,
        "market_value": pos.market_value(mark) if pos.qty else 0.0,
        "average_cost": pos.average_cost if pos.qty else 0.0,
        "unrealized_pnl": pos.unrealized(mark),
        "realized_pnl": pos.realized_session or 0.0,
        "realized_pnl_sent": state.realized_wire(pos),
        "commissions": pos.commissions_session,
        "fills": [
            {
                "qty": f.qty,
                "price": f.price,
                "commission": f.commission,
                "at": f.at,
                "code": f.code,
                "exec_id": f.exec_id,
            }
            for f in pos.fills_session
        ],
        "daily_pnl": daily,
        "baseline": baseline,
        "closed": pos.qty == 0,
        "und_price": quote.und_price,
        "delta": quote.delta,
        "gamma": quote.gamma,
        "vega": quote.vega,
        "theta": quote.theta,
        "implied_vol": quote.implied_vol,
    }
