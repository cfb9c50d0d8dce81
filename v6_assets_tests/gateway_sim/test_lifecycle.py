"""The simulator's position lifecycle (``lifecycle.yaml``, driven offline): an early exercise, an ITM expiry
auto-exercised, a worthless expiry and an overnight assignment, each as IB books it -- the option leg at 0, the stock
leg at the strike, no execution reported -- in the truth, on the wire and in the Flex statements; bad events are
refused naming the entry."""

from __future__ import annotations

import json
import warnings
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml
from ibflex import parser

from v6_assets.contracts.money import Money
from v6_assets.gateway_sim import load_scenario
from v6_assets.gateway_sim.scenario import parse_scenario
from v6_assets.gateway_sim.scenario_model import ScenarioError
from v6_assets.gateway_sim.statements import StatementFaults, flex_statement_xml, offline_run

SCENARIO = Path(__file__).with_name("lifecycle.yaml")
ACCOUNT = "DU3000001"
STOCK = 500


@pytest.fixture(scope="module")
def run() -> Any:
    return offline_run(load_scenario(SCENARIO), 5)


def _eod(sim: Any, session: str, con_id: int) -> dict[str, Any]:
    return next(e for e in sim.truth["eod"] if e["session"] == session and e["con_id"] == con_id)


def test_each_lifecycle_event_is_booked_as_ib_books_it(run: Any) -> None:
    booked = [(e["sim_time"][:10], e["con_id"], e["code"], e["quantity"], e["stock_quantity"], e["stock_price"])
              for e in run.truth["lifecycle"]]  # fmt: skip
    assert booked == [
        ("2025-03-04", 504, "Ex", -1.0, 100.0, 95.0),  # early exercise of one long 95 call: +100 shares at 95
        ("2025-03-05", 501, "Ex", -2.0, 200.0, 90.0),  # ITM at expiry (XYZ pinned ~105): auto-exercised
        ("2025-03-05", 502, "Ep", -4.0, None, None),  # OTM 120 call: expired worthless, no stock
        ("2025-03-06", 503, "A", 2.0, 200.0, 110.0),  # short 110 put assigned overnight: +200 shares at 110
        ("2025-03-07", 504, "Ex", -2.0, 200.0, 95.0),  # the rest of the 95 calls auto-exercised at expiry
    ]
    assert run.truth["lifecycle"][3]["sim_time"] == "2025-03-06T07:30:00+00:00"  # 02:30 New York
    # the stock position's EOD truth follows the deliveries
    stock = [(e["session"], e["position"]) for e in run.truth["eod"] if e["con_id"] == STOCK]
    assert stock == [("2025-03-04", 100.0), ("2025-03-05", 300.0), ("2025-03-06", 500.0), ("2025-03-07", 700.0)]
    # no execution is reported for a booking: the execution log holds the two trades only
    assert [(x["con_id"], x["quantity"]) for x in run.state.executions.history] == [(502, 1.0), (504, -1.0)]


def test_daily_pnl_of_both_legs_is_the_statement_formula(run: Any) -> None:
    # the stock leg opened at the strike: shares x (close - strike)
    leg = _eod(run, "2025-03-04", STOCK)
    assert Money(leg["daily_pnl"]) == Money(100 * (leg["mark"] - 95.0))
    # the exercised option: booked at 0, so its part of the day loses its previous mark
    opt = _eod(run, "2025-03-04", 504)
    m = 100.0
    expected = (4 * (opt["mark"] - opt["prev_mark"]) * m - 1 * (opt["mark"] - 7.1) * m - 1 * (opt["mark"] - 0.0) * m
                - 0.65)  # fmt: skip
    assert Money(opt["daily_pnl"]) == Money(expected)
    # the assignment day: the short put's previous value is gained back, the 200 shares bought at 110 are marked
    put, stock = _eod(run, "2025-03-06", 503), _eod(run, "2025-03-06", STOCK)
    assert Money(put["daily_pnl"]) == Money(2 * put["prev_mark"] * m)  # -(prev qty -2) x prev mark
    assert Money(stock["daily_pnl"]) == Money(300 * (stock["mark"] - stock["prev_mark"]) + 200 * (stock["mark"] - 110))


def test_statements_code_the_bookings_ep_ex_a(run: Any) -> None:
    scenario = load_scenario(SCENARIO)
    seen = {}
    for day in ("2025-03-04", "2025-03-05", "2025-03-06"):
        xml = flex_statement_xml(scenario, run.truth["eod"], date.fromisoformat(day))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            stmt = parser.parse(xml).FlexStatements[0]
        assert not [str(w.message) for w in caught]
        for t in stmt.Trades:
            codes = [c.value for c in t.notes]
            seen[(day, int(t.conid or 0))] = (codes, float(t.quantity or 0), float(t.tradePrice or 0),
                                              t.openCloseIndicator.value if t.openCloseIndicator else None)  # fmt: skip
    assert seen[("2025-03-04", 504)] == (["Ex"], -1.0, 0.0, "C")  # the trade of the same day is listed first
    assert seen[("2025-03-04", STOCK)] == (["Ex"], 100.0, 95.0, "O")
    assert seen[("2025-03-05", 502)] == (["Ep"], -4.0, 0.0, "C")
    assert seen[("2025-03-05", 501)] == (["Ex"], -2.0, 0.0, "C")
    assert seen[("2025-03-05", STOCK)][0] == ["Ex"] and seen[("2025-03-05", STOCK)][1:3] == (200.0, 90.0)
    assert seen[("2025-03-06", 503)] == (["A"], 2.0, 0.0, "C")
    assert seen[("2025-03-06", STOCK)][:3] == (["A"], 200.0, 110.0)
    # a planted wrong code changes exactly that booking
    wrong = flex_statement_xml(scenario, run.truth["eod"], date(2025, 3, 6),
                               faults=StatementFaults(wrong_code=(ACCOUNT, 503, "Ex")))  # fmt: skip
    trades = parser.parse(wrong).FlexStatements[0].Trades
    assert [c.value for t in trades if int(t.conid or 0) == 503 for c in t.notes] == ["Ex"]


def _with_event(event: dict[str, Any]) -> dict[str, Any]:
    data = yaml.safe_load(SCENARIO.read_text())
    data["events"].append(event)
    return data


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (
            {"kind": "exercise", "session": 0, "time": "11:00", "account": ACCOUNT, "con_id": 503},
            r"events\[5\]: exercise of DU3000001 503: the position is short",
        ),
        (
            {"kind": "assign", "session": 0, "time": "11:00", "account": ACCOUNT, "con_id": 501},
            r"events\[5\]: assign of DU3000001 501: the position is long",
        ),
        (
            {"kind": "exercise", "session": 3, "time": "11:00", "account": ACCOUNT, "con_id": 503, "contracts": 1},
            r"events\[5\]: exercise of DU3000001 503: the position is flat",
        ),  # assigned overnight before
        (
            {"kind": "exercise", "session": 0, "time": "11:00", "account": ACCOUNT, "con_id": 501, "contracts": 3},
            r"events\[5\]: exercise of 3.0 contracts; DU3000001 holds 2",
        ),
        (
            {"kind": "assign", "session": 0, "time": "11:00", "account": ACCOUNT, "con_id": 999},
            r"events\[5\]: con_id 999 is not an option of the scenario",
        ),
        (
            {"kind": "exercise", "session": 0, "time": "11:00", "account": ACCOUNT, "con_id": STOCK},
            r"events\[5\]: con_id 500 is not an option of the scenario",
        ),
        (
            {"kind": "assign", "session": 0, "time": "11:00", "account": "DU9", "con_id": 503},
            r"events\[5\]: unknown account 'DU9'",
        ),
        (
            {"kind": "exercise", "session": 3, "time": "11:00", "account": ACCOUNT, "con_id": 501},
            r"events\[5\]: exercise of 501 after its expiry",
        ),
        (
            {"kind": "assign", "session": 1, "time": "16:05", "account": ACCOUNT, "con_id": 503},
            r"events\[5\]: assign at 2025-03-04T21:05:00\+00:00 falls between the close and the EOD cut",
        ),
    ],
)
def test_a_bad_settlement_event_is_refused_naming_the_entry(event: dict[str, Any], message: str) -> None:
    with pytest.raises(ScenarioError, match=message):
        parse_scenario(_with_event(event))


def test_the_truth_files_carry_the_lifecycle(run: Any, tmp_path: Path) -> None:
    run.write_truth(tmp_path)
    lines = [json.loads(x) for x in (tmp_path / "lifecycle.jsonl").read_text().splitlines()]
    assert lines == run.truth["lifecycle"] and len(lines) == 5
