"""Flex statements written by the simulator from its own ground truth, with switchable discrepancies.

``flex_statement_xml(eod, session, ...)`` renders one session's FlexQueryResponse (one FlexStatement per account)
from the ``eod.jsonl`` lines of that session (``truth["eod"]``), with the element and attribute names of IB's Flex
output as ``ibflex.Types`` defines them: AccountInformation, ConversionRates, OpenPositions/OpenPosition,
Trades/Trade, MTMPerformanceSummaryInBase/MTMPerformanceSummaryUnderlying. Amounts of the MTM summary are in the
account's base currency (fxRateToBase from the scenario), as IB's "in base" summary is.

``StatementFaults`` plants one discrepancy: a trade left out, a different closing mark (IB's book stays consistent:
position value and MTM follow the mark), a wrong trade price corrected by a later statement (``late_correction``:
``write_session_statements`` then writes the wrong file first and the corrected one, generated later, second), or an
extra statement for an account outside the book.

``offline_run(scenario, sessions)`` drives the simulator's timeline without sockets (no client needed) so tests and
the demo get the truth of N sessions in a second; ``write_session_statements`` drops the files into a folder.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from v6_assets.gateway_sim.scenario_model import Scenario
from v6_assets.gateway_sim.server import GatewaySimulator
from v6_assets.sessions import NEW_YORK, eod_cut

UNKNOWN_ACCOUNT = "U9999999"
# IB generates the daily statement after its end-of-day processing: the next morning.
GENERATED_AFTER_CUT = timedelta(hours=15)


@dataclass(frozen=True)
class StatementFaults:
    """Discrepancies to plant (all off by default). Keys are (account, con_id)."""

    missing_trade: tuple[str, int] | None = None  # the first trade of that position is left out
    mark_offset: tuple[str, int, float] | None = None  # IB's close mark differs by this much per share
    late_correction: tuple[str, int, float] | None = None  # first file: trade price off by this; then corrected
    unknown_account: bool = False  # an extra statement for an account outside the book
    wrong_code: tuple[str, int, str] | None = None  # that position's lifecycle trade coded this instead (Ep/Ex/A)


def exec_id(account: str, con_id: int, at: str, index: int, revision: int = 1) -> str:
    """A deterministic IB-style execution id (``xxxxxxxx.yyyyyyyy.01.NN``; NN = correction revision)."""
    return f"{zlib.crc32(f'{account}|{con_id}|{at}|{index}'.encode()):08x}.{con_id:08x}.01.{revision:02d}"


def _num(value: float) -> str:
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _flex_date(day: date) -> str:
    return day.strftime("%Y%m%d")


def _flex_time(iso: str) -> str:
    return datetime.fromisoformat(iso).astimezone(NEW_YORK).strftime("%Y%m%d;%H%M%S")


def _element(tag: str, attrs: Mapping[str, Any]) -> str:
    shown = " ".join(f"{k}={quoteattr(str(v))}" for k, v in attrs.items() if v is not None and v != "")
    return f"<{tag} {shown} />"


def _container(tag: str, children: list[str]) -> str:
    return f"<{tag}>" + "".join(children) + f"</{tag}>" if children else f"<{tag} />"


def _instrument(e: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "accountId": e["account"],
        "currency": e["currency"],
        "fxRateToBase": _num(e["fx_rate"]),
        "assetCategory": e["sec_type"],
        "symbol": e["symbol"],
        "conid": e["con_id"],
        "multiplier": _num(e["multiplier"]),
        "strike": _num(e["strike"]) if e["strike"] is not None else None,
        "expiry": _flex_date(date.fromisoformat(e["expiry"])) if e["expiry"] else None,
        "putCall": e["right"],
    }


def session_executions(eod: Iterable[Mapping[str, Any]], session: date) -> list[dict[str, Any]]:
    """The simulator's fills of ``session`` as executions (what the stream's executions table will hold)."""
    out = []
    for e in eod:
        if e["session"] != session.isoformat():
            continue
        for i, f in enumerate(e.get("fills", [])):
            # the gateway's own exec id; a booked close (expiry) has none: a stable one is made up, as IB does
            xid = f.get("exec_id") or exec_id(e["account"], e["con_id"], f["at"], i)
            out.append({"account": e["account"], "con_id": e["con_id"], "exec_id": xid, "quantity": f["qty"],
                        "price": f["price"], "commission": f["commission"], "code": f["code"], "at": f["at"],
                        "entry": e})  # fmt: skip
    return out


def _trade(x: Mapping[str, Any], mark: float, price_offset: float = 0.0, revision: int = 1) -> str:
    e = x["entry"]
    m = e["multiplier"]
    qty, price = x["quantity"], x["price"] + price_offset
    booked = bool(x["code"])
    closing = e["prev_position"] != 0 and (e["prev_position"] > 0) != (qty > 0)
    return _element("Trade", {
        **_instrument(e),
        "transactionType": "BookTrade" if booked else "ExchTrade",
        "tradeID": str(zlib.crc32(x["exec_id"].encode())),
        # a stream correction already raised the id's revision; a late statement correction raises it further
        "ibExecID": x["exec_id"][:-2] + f"{max(revision, int(x['exec_id'][-2:])):02d}",
        "reportDate": _flex_date(date.fromisoformat(e["session"])),
        "tradeDate": _flex_date(date.fromisoformat(e["session"])),
        "dateTime": _flex_time(x["at"]),
        "quantity": _num(qty),
        "tradePrice": _num(price),
        "proceeds": _num(-qty * price * m),
        "ibCommission": _num(-x["commission"]),
        "ibCommissionCurrency": e["currency"],
        "netCash": _num(-qty * price * m - x["commission"]),
        "closePrice": _num(mark),
        "mtmPnl": _num(qty * (mark - price) * m),
        # the option leg of an expiry/exercise/assignment closes; its stock leg opens unless it reduces stock held
        "openCloseIndicator": "C" if closing or (booked and e["sec_type"] != "STK") else "O",
        "notes": x["code"] or None,
        "buySell": "BUY" if qty > 0 else "SELL",
    })  # fmt: skip


def _account_statement(
    account: str,
    base: str,
    fx_rates: Mapping[str, float],
    entries: list[dict[str, Any]],
    executions: list[dict[str, Any]],
    session: date,
    generated: datetime,
    faults: StatementFaults,
    corrected: bool,
) -> str:
    marks = {e["con_id"]: e["mark"] for e in entries}
    if faults.mark_offset and faults.mark_offset[0] == account and faults.mark_offset[1] in marks:
        marks[faults.mark_offset[1]] += faults.mark_offset[2]
    positions = []
    mtm = []
    for e in entries:
        mark, m, fx = marks[e["con_id"]], e["multiplier"], e["fx_rate"]
        if e["position"]:
            cost = e["average_cost"] / m
            positions.append(_element("OpenPosition", {
                **_instrument(e), "reportDate": _flex_date(session), "position": _num(e["position"]),
                "markPrice": _num(mark), "positionValue": _num(e["position"] * mark * m),
                "costBasisPrice": _num(cost), "costBasisMoney": _num(e["average_cost"] * e["position"]),
                "fifoPnlUnrealized": _num(e["position"] * mark * m - e["average_cost"] * e["position"]),
                "side": "Long" if e["position"] > 0 else "Short", "levelOfDetail": "SUMMARY",
            }))  # fmt: skip
        prev = e["statement_prev_mark"]
        prior = e["prev_position"] * (mark - prev) * m * fx if prev is not None else 0.0
        fills = [x for x in executions if x["con_id"] == e["con_id"]]
        transaction = sum(x["quantity"] * (mark - x["price"]) * m for x in fills) * fx
        commissions = -e["commissions"] * fx
        mtm.append(_element("MTMPerformanceSummaryUnderlying", {
            **{k: v for k, v in _instrument(e).items() if k not in ("currency", "fxRateToBase")},
            "reportDate": _flex_date(session), "prevCloseQuantity": _num(e["prev_position"]),
            "prevClosePrice": _num(prev) if prev is not None else None, "closeQuantity": _num(e["position"]),
            "closePrice": _num(mark), "priorOpenMtm": _num(prior), "transactionMtm": _num(transaction),
            "commissions": _num(commissions), "other": "0", "total": _num(prior + transaction + commissions),
        }))  # fmt: skip
    trades = []
    for x in executions:
        if faults.missing_trade == (account, x["con_id"]) and x is next(
            y for y in executions if y["con_id"] == x["con_id"]
        ):
            continue
        if faults.wrong_code and faults.wrong_code[:2] == (account, x["con_id"]) and x["code"]:
            x = {**x, "code": faults.wrong_code[2]}
        offset = 0.0
        lc = faults.late_correction
        if lc and lc[:2] == (account, x["con_id"]) and x is next(y for y in executions if y["con_id"] == x["con_id"]):
            offset = 0.0 if corrected else lc[2]
        trades.append(_trade(x, marks[x["con_id"]], offset, revision=2 if corrected and lc and offset == 0.0
                             and lc[:2] == (account, x["con_id"]) else 1))  # fmt: skip
    rates = [
        _element(
            "ConversionRate",
            {"reportDate": _flex_date(session), "fromCurrency": cur, "toCurrency": base, "rate": _num(rate)},
        )
        for cur, rate in sorted(fx_rates.items())
    ]
    when = generated.astimezone(NEW_YORK).strftime("%Y%m%d;%H%M%S")
    head = {"accountId": account, "fromDate": _flex_date(session), "toDate": _flex_date(session),
            "period": "LastBusinessDay", "whenGenerated": when}  # fmt: skip
    body = (
        _element("AccountInformation", {"accountId": account, "currency": base, "accountType": "Individual"})
        + _container("ConversionRates", rates)
        + _container("OpenPositions", positions)
        + _container("Trades", trades)
        + _container("MTMPerformanceSummaryInBase", mtm)
        + _container("CashTransactions", [])
    )
    return _element("FlexStatement", head)[:-3] + ">" + body + "</FlexStatement>"


def flex_statement_xml(
    scenario: Scenario,
    eod: Iterable[Mapping[str, Any]],
    session: date,
    *,
    faults: StatementFaults = StatementFaults(),
    corrected: bool = True,
    generated: datetime | None = None,
) -> bytes:
    """One session's FlexQueryResponse for every account of the scenario (``corrected=False``: the first, wrong
    file of a ``late_correction``)."""
    lines = [dict(e) for e in eod if e["session"] == session.isoformat()]
    executions = session_executions(lines, session)
    when = generated or (eod_cut(session) + GENERATED_AFTER_CUT)
    statements = []
    for acct in scenario.accounts:
        entries = [e for e in lines if e["account"] == acct.account_id]
        fx_rates = {
            cur: acct.fx_rates[cur] for cur in sorted({e["currency"] for e in entries}) if cur != acct.base_currency
        }
        own = [x for x in executions if x["account"] == acct.account_id]
        statements.append(_account_statement(acct.account_id, acct.base_currency, fx_rates, entries, own, session, when,
                                             faults, corrected))  # fmt: skip
    if faults.unknown_account:
        statements.append(_account_statement(UNKNOWN_ACCOUNT, "USD", {}, [], [], session, when, faults, corrected))
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<FlexQueryResponse queryName="v6 daily" type="AF"><FlexStatements count="{len(statements)}">'
        + "".join(statements)
        + "</FlexStatements></FlexQueryResponse>\n"
    ).encode()


def offline_run(scenario: Scenario, sessions: int) -> GatewaySimulator:
    """The simulator's timeline driven through ``sessions`` session closes and cuts without sockets or clients
    (scenarios whose timeline injects socket faults -- disconnect, refuse, ... -- need the running simulator)."""
    sim = GatewaySimulator(scenario)
    cal = sim.state.market.calendar
    pending = [s for s in cal.sessions if s.close > scenario.clock.start]
    last = pending[sessions - 1]
    sim.timeline.advance(last.cut + timedelta(minutes=1))
    return sim


def statement_file_name(session: date, suffix: str = "") -> str:
    return f"flex-{session.isoformat()}{suffix}.xml"


def write_session_statements(
    scenario: Scenario,
    eod: Iterable[Mapping[str, Any]],
    directory: Path,
    sessions: Iterable[date],
    *,
    faults: Mapping[date, StatementFaults] | None = None,
) -> list[Path]:
    """Drop one statement file per session into ``directory`` (atomically: written aside, then renamed); a session
    with a ``late_correction`` gets the wrong file and then the corrected one (generated an hour later).

    This is what ``make demo`` calls for its seeded sessions (with one planted discrepancy to show red)."""
    directory.mkdir(parents=True, exist_ok=True)
    lines = list(eod)
    written = []
    for session in sessions:
        fault = (faults or {}).get(session, StatementFaults())
        files: list[tuple[str, bytes]] = []
        if fault.late_correction:
            first = eod_cut(session) + GENERATED_AFTER_CUT
            files.append((statement_file_name(session, "-1"), flex_statement_xml(
                scenario, lines, session, faults=fault, corrected=False, generated=first)))  # fmt: skip
            files.append((statement_file_name(session, "-2"), flex_statement_xml(
                scenario, lines, session, faults=fault, generated=first + timedelta(hours=1))))  # fmt: skip
        else:
            files.append((statement_file_name(session), flex_statement_xml(scenario, lines, session, faults=fault)))
        for name, data in files:
            tmp = directory / f".{name}.part"
            tmp.write_bytes(data)
            tmp.replace(directory / name)
            written.append(directory / name)
    return written


def drop_demo_statements(
    scenario: Scenario, eod: Iterable[Mapping[str, Any]], folder: Path, sessions: Iterable[date]
) -> list[Path]:
    """``make demo``'s statements: one per seeded session, all agreeing with the simulator's book except ONE planted
    discrepancy (IB's closing mark of the first open option position of the newest session off by 0.50), which the
    ``marks_match_statement`` check shows red with its difference table."""
    lines = list(eod)
    days = sorted(sessions)
    if not days:
        return []
    newest = days[-1]
    open_rows = [e for e in lines if e["session"] == newest.isoformat() and e["position"] and e["right"]]
    faults = {}
    if open_rows:
        first = min(open_rows, key=lambda e: (e["account"], e["con_id"]))
        faults[newest] = StatementFaults(mark_offset=(first["account"], first["con_id"], 0.5))
    return write_session_statements(scenario, lines, folder, days, faults=faults)
