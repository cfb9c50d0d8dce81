"""End to end: gateway simulator -> real streamer (ib_async over loopback) -> real sensor ticks -> real Delta tables
-> daily assets materialized with Dagster on a real instance, compared with the simulator's ground truth.

One simulated run (the demo book from 2025-03-03: 3 accounts, shorts, puts, ES futures options, a multiplier-103
option, partial closes, a same-day open+close, an expiry in session 4, UNSET realized PnL and greeks sentinels) is
shared by the tests of this module.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Any

import polars as pl
import pytest
from dagster import (
    AssetCheckEvaluation,
    AssetMaterialization,
    DagsterInstance,
    Definitions,
    SensorResult,
    SkipReason,
    build_sensor_context,
    instance_for_test,
    materialize,
)
from polars.testing import assert_frame_equal

from v6_assets import sessions
from v6_assets.contracts.money import amounts_agree, format_cents
from v6_assets.contracts.tables import EOD_POSITIONS, ROLLUP_DETAIL
from v6_assets.defs.account_assets import ACCOUNT_ASSETS, account_checks
from v6_assets.defs.assets import DAILY_ASSETS, STREAM_SPECS
from v6_assets.defs.book_assets import BOOK_ASSETS, BOOK_STREAM_SPECS, book_checks
from v6_assets.defs.checks import all_checks
from v6_assets.defs.jobs import daily_assets_job
from v6_assets.defs.lifecycle_assets import LIFECYCLE_ASSETS, LIFECYCLE_CHECKS
from v6_assets.defs.resources import IBStreamResource, LakeResource
from v6_assets.defs.risk_assets import RISK_ASSETS, RISK_CHECKS
from v6_assets.defs.schedules import RANGE_END_TAG, RANGE_START_TAG
from v6_assets.defs.sensors import ib_position_stream
from v6_assets.gateway_sim import GatewaySimulator, load_scenario
from v6_assets.ib.streamer import IBPositionStreamer, discard_process_streamer
from v6_assets.lake import Lake
from v6_assets_tests.pyenv import set_env

NY = sessions.NEW_YORK
SIM_START = datetime(2025, 3, 3, 9, 0, tzinfo=NY)
SESSIONS = 6  # 2025-03-03 .. 2025-03-10 (the expiry is in session 4)
SPEED = 6000.0
CLIENT_ID = 61


@dataclasses.dataclass
class Pipeline:
    instance: DagsterInstance
    ib: IBStreamResource
    lake_resource: LakeResource
    lake: Lake
    days: list[date]
    truth_eod: list[dict[str, Any]]
    truth_sent: list[dict[str, Any]]
    tick_results: list[SensorResult | SkipReason]
    preview_results: list[SensorResult | SkipReason]
    ingested_offsets_after_preview: tuple[int, int]
    per_session_done: bool = False
    truth_accounts: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # the accounts at each close
    range_run: Any = None  # the daily job's run over the whole range (every daily asset and check), once run


def materialize_each_session(p: Pipeline) -> None:
    """One run per session, oldest first (done once per module: the tests share the result)."""
    if not p.per_session_done:
        for day in p.days:
            materialize_daily(p, partition_key=day.isoformat())
        p.per_session_done = True


def tick(
    instance: DagsterInstance, ib: IBStreamResource, lake: LakeResource, cursor: str | None, *, report: bool = True
) -> Any:
    """One evaluation; with ``report`` also what the daemon does next: store its runless events (a preview does not)."""
    with build_sensor_context(instance=instance, cursor=cursor, resources={"ib_stream": ib, "lake": lake}) as ctx:
        result = ib_position_stream(ctx)
    if report and isinstance(result, SensorResult):
        for event in result.asset_events or []:
            instance.report_runless_asset_event(event)
    return result


def cursor_after(result: Any, cursor: str | None) -> str | None:
    return result.cursor if isinstance(result, SensorResult) and result.cursor is not None else cursor


def offsets(lake: Lake) -> tuple[int, int, int]:
    counts = []
    for table in ("position_updates", "greeks_updates", "stream_health"):
        frame = lake.scan(table).select("spool_offset").collect()
        assert frame["spool_offset"].n_unique() == frame.height, f"duplicate spool offsets in {table}"
        counts.append(frame.height)
    return counts[0], counts[1], counts[2]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    home = tmp_path_factory.mktemp("v6home")
    scenario = load_scenario("demo", start_time=SIM_START)
    scenario = dataclasses.replace(scenario, nastiness=dataclasses.replace(scenario.nastiness, greeks_sentinel_every=5))
    # set_dagster_home=False: no setenv while native threads run (v6_assets_tests.pyenv)
    with pytest.MonkeyPatch.context() as mp, instance_for_test(set_dagster_home=False) as instance:
        set_env(mp, "V6_IB_GREEKS_THROTTLE_S", "0")  # a trailing-edge throttle would stamp greeks late in sim time
        set_env(mp, "V6_IB_PORTFOLIO_ROTATION_S", "0.3")
        set_env(mp, "V6_REFRESH_MINUTES", "0")
        with GatewaySimulator(scenario, port=0, speed=SPEED).running() as sim:
            ib = IBStreamResource(host="127.0.0.1", port=sim.port, client_id=CLIENT_ID, home=str(home))
            lake_resource = LakeResource(uri=str(home / "lake"))
            IBPositionStreamer().ensure_started(ib.settings(), clock=sim.clock.now)
            days = sessions.sessions_between(SIM_START.date(), SIM_START.date() + timedelta(days=14))[:SESSIONS]
            end = sessions.eod_cut(days[-1]) + timedelta(minutes=1)
            cursor: str | None = None
            results: list[Any] = []
            previews: list[Any] = []
            after_preview = (0, 0)
            deadline = time.monotonic() + 120
            while sim.clock.now() < end:
                assert time.monotonic() < deadline, "simulation did not reach the last session's cut in time"
                result = tick(instance, ib, lake_resource, cursor)
                results.append(result)
                cursor = cursor_after(result, cursor)
                if len(results) == 3:
                    # a UI "Preview tick": runs the sensor for real, but its cursor is thrown away
                    previews.append(tick(instance, ib, lake_resource, cursor, report=False))
                    after_preview = offsets(lake_resource.lake())
                time.sleep(0.4)
            IBPositionStreamer().stop()  # flushes the spool
            truth_eod = [e for e in sim.truth["eod"] if date.fromisoformat(e["session"]) in days]
            truth_sent = [e for e in sim.truth["sent"] if e["client_id"] == CLIENT_ID]
            truth_accounts = [e for e in sim.truth["accounts"] if date.fromisoformat(e["session"]) in days]
            assert sim.order_violations() == 0
            sim.write_truth(home / "truth")  # kept beside the lake for a post-mortem of a failure
        # The gateway is gone: the next ticks restart the streamer (it cannot connect) and drain what is left.
        for _ in range(20):
            result = tick(instance, ib, lake_resource, cursor)
            results.append(result)
            cursor = cursor_after(result, cursor)
            if not (isinstance(result, SensorResult) and result.asset_events):
                break
        yield Pipeline(instance, ib, lake_resource, lake_resource.lake(), days, truth_eod, truth_sent, results,
                       previews, after_preview, truth_accounts=truth_accounts)  # fmt: skip
    discard_process_streamer()


def materialize_daily(p: Pipeline, **kwargs: Any) -> None:
    result = materialize(
        [*STREAM_SPECS, *DAILY_ASSETS, *all_checks()],
        instance=p.instance,
        resources={"lake": p.lake_resource},
        **kwargs,
    )
    assert result.success
    for evaluation in result.get_asset_check_evaluations():
        if evaluation.check_name in ("no_duplicate_offsets", "no_sentinel_values", "reconciles_with_stream"):
            assert evaluation.passed, (evaluation.asset_key, evaluation.check_name, evaluation.metadata)


def test_sensor_ticks_ingest_everything_once_and_report_sessions(pipeline: Pipeline) -> None:
    p = pipeline
    spool = p.ib.open_spool()
    try:
        assert spool.depth() == 0  # everything spooled was ingested and acknowledged
        last = spool.last_offset()
    finally:
        spool.close()
    pos, grk, health = offsets(p.lake)  # asserts (no duplicate offsets)
    # executions and account values share the spool's offsets
    others = [p.lake.scan(t).select("spool_offset").collect() for t in ("executions", "account_values")]
    assert all(f["spool_offset"].n_unique() == f.height for f in others)
    # every spooled record is in Delta: no loss (stream_health: the connection's intervals, at least "connected")
    assert pos + grk + health + sum(f.height for f in others) == last
    assert pos > 100 and grk > 50 and health >= 1 and all(f.height for f in others)
    reported_events = [e for r in p.tick_results if isinstance(r, SensorResult) for e in (r.asset_events or [])]
    events = [e for e in reported_events if isinstance(e, AssetMaterialization)]
    checks = [e for e in reported_events if isinstance(e, AssetCheckEvaluation)]
    assert len(events) + len(checks) == len(reported_events)
    reported = {(e.asset_key.to_user_string(), e.partition) for e in events}
    # the stream checks run where the data lands: both of them, on every (table, session) a tick appended to, after
    # its materialization, and they compared rows (never a pass on nothing)
    evaluated = Counter((e.asset_key.to_user_string(), e.metadata["session"].value, e.check_name) for e in checks)
    assert evaluated and all(e.passed and e.metadata["rows"].value > 0 for e in checks), checks[:3]
    assert {(t, s) for t, s, _ in evaluated} == reported
    assert {c for _, _, c in evaluated} == {"no_duplicate_offsets", "no_sentinel_values"}
    for r in p.tick_results:
        if isinstance(r, SensorResult) and r.asset_events:
            kinds = [isinstance(e, AssetCheckEvaluation) for e in r.asset_events]
            assert kinds == sorted(kinds), "a check is reported after the materialization it checks"
    for day in p.days:
        assert ("position_updates", day.isoformat()) in reported
    rows_reported = sum(
        int(e.metadata["rows"].value) for e in events if e.asset_key.to_user_string() == "position_updates"
    )
    # the preview tick's rows are in Delta but its events were thrown away with it
    preview_rows = sum(
        int(e.metadata["rows"].value)
        for r in p.preview_results if isinstance(r, SensorResult) for e in (r.asset_events or [])
        if isinstance(e, AssetMaterialization) and e.asset_key.to_user_string() == "position_updates"
    )  # fmt: skip
    assert rows_reported + preview_rows == pos
    some = next(e for e in events if e.asset_key.to_user_string() == "position_updates")
    for key in ("rows", "min_offset", "max_offset", "lag_s", "connection", "txn_version", "stream_id"):
        assert key in some.metadata
    runs = [r for res in p.tick_results if isinstance(res, SensorResult) for r in (res.run_requests or [])]
    assert runs, "new data must request a refresh of the daily assets"
    assert len({r.run_key for r in runs}) == len(runs)
    assert all(r.tags["v6/kind"] == "refresh" and r.partition_key for r in runs)
    # the tick's own explanation travels with the run request (shown in the sensor's tick history)
    assert all(r.tags["v6/why"].startswith("ingested ") and r.partition_key in r.tags["v6/why"] for r in runs), runs
    idle = p.tick_results[-1]
    message = idle.skip_message if isinstance(idle, SkipReason) else idle.skip_reason.skip_message  # type: ignore[union-attr]
    assert message is not None and ("not connected" in message or "circuit open until" in message), message


def test_preview_tick_does_not_break_exactly_once(pipeline: Pipeline) -> None:
    assert pipeline.preview_results, "the preview tick ran"
    before = pipeline.ingested_offsets_after_preview
    after = offsets(pipeline.lake)
    assert after[0] >= before[0] and after[1] >= before[1]  # and offsets() asserted uniqueness


def _truth_frame(p: Pipeline) -> pl.DataFrame:
    rows = [
        {k: e[k] for k in ("account", "con_id", "position", "unrealized_pnl", "daily_pnl", "baseline", "closed",
                           "average_cost", "market_value")} | {"trade_date": date.fromisoformat(e["session"])}
        for e in p.truth_eod
    ]  # fmt: skip
    return pl.DataFrame(rows, infer_schema_length=None)


def _assert_matches_truth(p: Pipeline) -> None:
    truth = _truth_frame(p)
    eod = p.lake.read_sessions(EOD_POSITIONS.name, p.days)
    pnl = p.lake.read_sessions("daily_pnl", p.days)
    keys = ["trade_date", "account", "con_id"]
    assert sorted(eod.select(keys).rows()) == sorted(truth.select(keys).rows())
    assert sorted(pnl.select(keys).rows()) == sorted(truth.select(keys).rows())
    joined = truth.join(eod, on=keys, suffix="_eod").join(pnl, on=keys, suffix="_pnl")
    problems = []
    for row in joined.iter_rows(named=True):
        where = (row["trade_date"], row["account"], row["con_id"])
        if row["position_eod"] != row["position"]:
            problems.append((where, "position", row["position_eod"], row["position"]))
        if not amounts_agree(row["unrealized_pnl_pnl"] or 0.0, row["unrealized_pnl"]):
            problems.append((where, "U_D", row["unrealized_pnl_pnl"], row["unrealized_pnl"]))
        if row["baseline"]:
            # a baseline carries IB's own daily PnL (pnl_source ib_daily), null only without one
            source = "ib_daily" if row["pnl"] is not None else None
            carried = row["pnl"] == row["ib_daily_pnl"] and row["pnl_source"] == source
            if not (row["is_baseline"] and carried):
                problems.append((where, "baseline", row["pnl"], row["ib_daily_pnl"]))
        elif row["pnl"] is None or not amounts_agree(row["pnl"], row["daily_pnl"]):
            problems.append((where, "pnl", row["pnl"], row["daily_pnl"]))
        if row["closed"] != bool(row["is_closed"]):
            problems.append((where, "closed", row["is_closed"], row["closed"]))
    assert not problems, problems[:20]


def test_daily_assets_per_session_equal_the_ground_truth_to_the_cent(pipeline: Pipeline) -> None:
    materialize_each_session(pipeline)
    _assert_matches_truth(pipeline)


GREEK_FIELDS = ("delta", "gamma", "vega", "theta", "und_price")
# Simulated seconds a message may take from the simulator's send to the streamer's receive stamp at SPEED.
RECEIVE_LAG = timedelta(seconds=120)


def _greeks_candidates(p: Pipeline) -> dict[tuple[date, int], list[dict[str, float]]]:
    """Per (session, con_id): the greeks the simulator sent that can be the last known at the EOD cut: the last one
    sent before ``cut - RECEIVE_LAG`` and any sent within ``RECEIVE_LAG`` of the cut (which side of the cut they were
    received on depends on timing). Sentinel ticks (-2) are never candidates."""
    sent = sorted(
        (e for e in p.truth_sent if e["kind"] == "greeks" and e["delta"] != -2.0), key=lambda e: e["sim_time"]
    )
    out: dict[tuple[date, int], list[dict[str, float]]] = {}
    for day in p.days:
        cut = sessions.eod_cut(day)
        last_before: dict[int, dict[str, float]] = {}
        near: dict[int, list[dict[str, float]]] = {}
        for e in sent:
            at = datetime.fromisoformat(e["sim_time"])
            values = {k: e[k] for k in GREEK_FIELDS}
            if at <= cut - RECEIVE_LAG:
                last_before[e["con_id"]] = values
            elif at <= cut + RECEIVE_LAG:
                near.setdefault(e["con_id"], []).append(values)
        for con_id in set(last_before) | set(near):
            out[(day, con_id)] = ([last_before[con_id]] if con_id in last_before else []) + near.get(con_id, [])
    return out


def test_exposure_equals_values_computed_from_the_ground_truth_greeks(pipeline: Pipeline) -> None:
    p = pipeline
    materialize_each_session(p)
    candidates = _greeks_candidates(p)
    eod = p.lake.read_sessions(EOD_POSITIONS.name, p.days)
    stored = {(r["trade_date"], r["account"], r["con_id"]): r for r in eod.iter_rows(named=True)}
    expected: dict[tuple[Any, ...], dict[str, float]] = {}
    problems: list[Any] = []
    for e in p.truth_eod:
        day = date.fromisoformat(e["session"])
        if e["position"] == 0:
            continue
        row = stored[(day, e["account"], e["con_id"])]
        # the greeks used must be values the simulator sent for this contract around this cut
        g = next(
            (c for c in candidates.get((day, e["con_id"]), []) if all(abs(c[k] - row[k]) < 1e-9 for k in GREEK_FIELDS)),
            None,
        )
        if g is None:
            problems.append(((day, e["account"], e["con_id"]), "greeks not sent by the simulator near the cut"))
            continue
        q, m, s = e["position"], e["multiplier"], g["und_price"]
        key = (day, e["account"], e["symbol"], date.fromisoformat(e["expiry"]))
        measures = ("delta_shares", "dollar_delta", "dollar_gamma_1pct", "vega", "theta", "notional", "contracts")
        acc = expected.setdefault(key, dict.fromkeys(measures, 0.0))
        acc["delta_shares"] += g["delta"] * q * m
        acc["dollar_delta"] += g["delta"] * q * m * s
        acc["dollar_gamma_1pct"] += 0.5 * g["gamma"] * q * m * (0.01 * s) ** 2
        acc["vega"] += g["vega"] * q * m
        acc["theta"] += g["theta"] * q * m
        acc["notional"] += abs(q) * m * s
        acc["contracts"] += abs(q)
    assert not problems, problems[:20]
    frame = p.lake.read_sessions("exposure", p.days).filter(pl.col("rollup") == ROLLUP_DETAIL)
    got = {(r["trade_date"], r["account"], r["underlying"], r["expiry"]): r for r in frame.iter_rows(named=True)}
    assert set(got) == set(expected)
    for key, values in expected.items():
        assert got[key]["greeks_coverage"] == 1.0, key
        for name, value in values.items():
            if not amounts_agree(got[key][name], value):
                problems.append((key, name, got[key][name], value))
    assert not problems, problems[:20]


def run_daily_job_over_range(p: Pipeline) -> Any:
    """One run of the project's daily job over the whole range (kept: later tests read its results)."""
    defs = Definitions(
        assets=[*STREAM_SPECS, *BOOK_STREAM_SPECS, *DAILY_ASSETS, *BOOK_ASSETS, *LIFECYCLE_ASSETS, *RISK_ASSETS,
                *ACCOUNT_ASSETS],
        asset_checks=[*all_checks(), *book_checks(), *LIFECYCLE_CHECKS, *RISK_CHECKS, *account_checks()],
        jobs=[daily_assets_job],
        resources={"lake": p.lake_resource},
    )  # fmt: skip
    p.range_run = defs.resolve_job_def("daily_assets").execute_in_process(
        instance=p.instance,
        tags={RANGE_START_TAG: p.days[0].isoformat(), RANGE_END_TAG: p.days[-1].isoformat()},
    )
    return p.range_run


def test_single_run_backfill_of_the_range_gives_the_per_session_results(pipeline: Pipeline) -> None:
    p = pipeline
    materialize_each_session(p)
    tables = ("eod_positions", "daily_pnl", "exposure")
    per_session = {t: p.lake.read_sessions(t, p.days) for t in tables}
    versions = {t: p.lake.open(t).version() for t in tables}  # type: ignore[union-attr]
    # the nightly re-run's mechanism: ONE run of the daily job over a partition range
    result = run_daily_job_over_range(p)
    assert result.success
    for t in tables:
        # one partition overwrite for the whole range: exactly one new table version
        assert p.lake.open(t).version() == versions[t] + 1, t  # type: ignore[union-attr]
        order = (
            ["trade_date", "account", "con_id"]
            if t != "exposure"
            else ["trade_date", "rollup", "account", "underlying", "expiry", "currency"]
        )
        before = per_session[t].sort(order, nulls_last=True)
        after = p.lake.read_sessions(t, p.days).sort(order, nulls_last=True)
        # same rows and values; float sums may differ in the last bits (polars' streaming group_by order)
        assert_frame_equal(before, after, check_exact=False, rel_tol=1e-9, abs_tol=1e-9)
    _assert_matches_truth(p)
    mats = [e for e in result.all_events if e.event_type_value == "ASSET_MATERIALIZATION"]
    # the book and the explain and risk assets of the range are rebuilt in the same run
    daily_extras = {
        "book_pnl",
        "position_events",
        "pnl_explain",
        "risk_scenarios",
        "expiry_ladder",
        "account_eod",
        "account_pnl",
    }
    assert {m.asset_key.to_user_string() for m in mats} == {*tables, *daily_extras}
    md = mats[0].step_materialization_data.materialization.metadata  # type: ignore[union-attr]
    for key in ("dagster/row_count", "dagster/column_schema", "dagster/column_lineage", "preview"):
        assert key in md


ACCOUNT_FIGURES = {"net_liquidation": "NetLiquidation", "total_cash_value": "TotalCashValue",
                   "init_margin_req": "InitMarginReq", "maint_margin_req": "MaintMarginReq",
                   "available_funds": "AvailableFunds", "excess_liquidity": "ExcessLiquidity"}  # fmt: skip
# Net liquidation comes to the cent from IB: a change of two rounded values is off by up to one cent.
NET_LIQ_CENT = 0.01


def _truth_value(entry: dict[str, Any], key: str, currency: str) -> float:
    (found,) = [float(v["value"]) for v in entry["values"] if v["key"] == key and v["currency"] == currency]
    return found


def test_account_assets_equal_the_simulator_truth_to_the_cent(pipeline: Pipeline) -> None:
    """account_eod = the simulator's account values at each close (EUR account holding USD options included);
    account_pnl = the statement daily PnL summed per account, in EUR at 0.9231, next to the net liquidation change
    (which equals it where the account holds only options); the daily job's checks for account_values run too."""
    from v6_assets.defs.pnl_overview import BASE_HEADING, overview_metadata

    p = pipeline
    materialize_each_session(p)
    # the daily job's range run (shared with the backfill test): the account assets and every check it selects
    result = p.range_run or run_daily_job_over_range(p)
    assert result.success
    checks = {(e.asset_key.to_user_string(), e.check_name): e for e in result.get_asset_check_evaluations()}
    for key in (("account_values", "no_duplicate_offsets"), ("account_values", "no_sentinel_values"),
                ("account_eod", "figures_known_at_cut")):  # fmt: skip
        assert checks[key].passed, (key, checks[key].metadata)
    eod = p.lake.read_sessions("account_eod", p.days)
    truth = {(date.fromisoformat(e["session"]), e["account"]): e for e in p.truth_accounts}
    assert {(r["trade_date"], r["account"]) for r in eod.filter(pl.col("currency") == "BASE").iter_rows(named=True)} \
        == set(truth)  # fmt: skip
    for (day, acct), entry in truth.items():
        base = eod.filter((pl.col("trade_date") == day) & (pl.col("account") == acct))
        row = base.filter(pl.col("currency") == "BASE").row(0, named=True)
        assert row["base_currency"] == entry["base_currency"] and row["problem"] is None, row
        for column, key in ACCOUNT_FIGURES.items():
            assert amounts_agree(row[column], _truth_value(entry, key, entry["base_currency"])), (day, acct, column)
        for v in entry["values"]:
            if v["key"] in ("CashBalance", "ExchangeRate") and v["currency"] != "BASE":
                got = base.filter(pl.col("currency") == v["currency"]).row(0, named=True)
                column = "cash_balance" if v["key"] == "CashBalance" else "fx_rate"
                assert amounts_agree(got[column], float(v["value"])), (day, acct, v)
    assert eod.filter((pl.col("account") == "DU1000003") & (pl.col("currency") == "USD"))["fx_rate"].to_list() == \
        [0.9231] * len(p.days)  # fmt: skip

    pnl = p.lake.read_sessions("account_pnl", p.days)
    statement: dict[tuple[date, str], list[dict[str, Any]]] = {}
    for e in p.truth_eod:
        statement.setdefault((date.fromisoformat(e["session"]), e["account"]), []).append(e)
    compared = 0
    for (day, acct), entries in statement.items():
        rows = pnl.filter((pl.col("trade_date") == day) & (pl.col("account") == acct))
        total = rows.filter(pl.col("level") == "account").row(0, named=True)
        prev = truth.get((sessions.previous_session(day), acct))
        if prev is not None:
            change = _truth_value(truth[(day, acct)], "NetLiquidation", total["currency"]) - _truth_value(
                prev, "NetLiquidation", total["currency"]
            )
            assert amounts_agree(total["net_liquidation_change"], change), (day, acct, total)
        else:
            assert total["net_liquidation_change"] is None and "previous cut" in total["reason"], total
        if any(e["baseline"] for e in entries):
            continue  # the statement truth has no figure for a baseline session
        usd = sum(e["daily_pnl"] for e in entries)
        fx = entries[0]["fx_rate"]
        currency = rows.filter(pl.col("level") == "currency").row(0, named=True)
        assert currency["currency"] == "USD" and amounts_agree(currency["pnl"], usd), (day, acct, currency, usd)
        assert amounts_agree(currency["pnl_base"], usd * fx) and amounts_agree(total["pnl"], usd * fx), (day, acct)
        if acct != "DU1000001" and prev is not None:  # DU1000001 also holds stock, which the option book ignores
            assert amounts_agree(total["pnl"], total["net_liquidation_pnl"], NET_LIQ_CENT), (day, acct, total)
            compared += 1
    assert compared >= 2 * (len(p.days) - 2)
    check = checks[("account_pnl", "positions_match_net_liquidation")]
    assert check.metadata["compared_rows"].value >= compared  # type: ignore[attr-defined]

    # the first screen: the last closed session's PnL per account, and in each account's base currency
    last = p.days[-1]
    text = overview_metadata(p.lake, [last], sessions.eod_cut(last) + timedelta(hours=1), simulated=True)
    lines = text["last_closed_session_pnl"].splitlines()
    eur = pnl.filter(
        (pl.col("trade_date") == last) & (pl.col("account") == "DU1000003") & (pl.col("level") == "account")
    )
    assert BASE_HEADING in lines and f"DU1000003 EUR {format_cents(eur['pnl'][0])}" in lines, lines
