"""The simulator's Flex statements use IB's element and attribute names exactly as ibflex's types define them (no
attribute or element ibflex does not know), carry the truth's figures, and the demo drop plants one difference."""

import warnings
from datetime import date, datetime
from pathlib import Path

from ibflex import parser

from v6_assets import sessions
from v6_assets.contracts.money import Money
from v6_assets.gateway_sim import load_scenario
from v6_assets.gateway_sim.statements import StatementFaults, drop_demo_statements, flex_statement_xml, offline_run

START = datetime(2025, 3, 3, 9, 0, tzinfo=sessions.NEW_YORK)


def test_names_match_ibflex_types_and_figures_match_the_truth() -> None:
    for name in ("demo",):  # 3 accounts, one EUR-based (the offline run takes scenarios without socket faults)
        scenario = load_scenario(name, start_time=START)
        sim = offline_run(scenario, 6)
        days = sorted({date.fromisoformat(e["session"]) for e in sim.truth["eod"]})
        assert len(days) == 6
        for day in days:
            xml = flex_statement_xml(scenario, sim.truth["eod"], day, faults=StatementFaults(unknown_account=True))
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                response = parser.parse(xml)
            assert not [str(w.message) for w in caught], f"{name} {day}: names ibflex does not know"
            assert [s.accountId for s in response.FlexStatements][:-1] == scenario.account_ids
            truth = {(e["account"], e["con_id"]): e for e in sim.truth["eod"] if e["session"] == day.isoformat()}
            for stmt in response.FlexStatements:
                for m in stmt.MTMPerformanceSummaryInBase:
                    e = truth[(stmt.accountId, int(m.conid or 0))]
                    if e["daily_pnl"] is not None:
                        assert float(m.total or 0) == Money(e["daily_pnl"] * e["fx_rate"])
                for p in stmt.OpenPositions:
                    e = truth[(stmt.accountId, int(p.conid or 0))]
                    assert float(p.position or 0) == e["position"] and float(p.markPrice or 0) == e["mark"]


def test_the_demo_drop_plants_exactly_one_mark_difference(tmp_path: Path) -> None:
    scenario = load_scenario("demo", start_time=START)
    sim = offline_run(scenario, 4)
    days = sorted({date.fromisoformat(e["session"]) for e in sim.truth["eod"]})
    files = drop_demo_statements(scenario, sim.truth["eod"], tmp_path, days)
    assert [f.name for f in files] == [f"flex-{d.isoformat()}.xml" for d in days]
    assert not list(tmp_path.glob(".*"))  # written aside and renamed: no leftovers
    differing = 0
    for f, day in zip(files, days, strict=True):
        truth = {(e["account"], e["con_id"]): e for e in sim.truth["eod"] if e["session"] == day.isoformat()}
        for stmt in parser.parse(f.read_bytes()).FlexStatements:
            for p in stmt.OpenPositions:
                differing += float(p.markPrice or 0) != truth[(stmt.accountId, int(p.conid or 0))]["mark"]
    assert differing == 1
