"""Random trade histories (fixed seed) against an independent PnL reference, and bad inputs."""

from __future__ import annotations

import random
from datetime import UTC, date

import polars as pl
import pytest

from v6_assets import sessions
from v6_assets.analytics import AnalyticsInputError, daily_pnl, eod_positions, exposure, synthetic_updates
from v6_assets.analytics._common import check_no_sentinels
from v6_assets.contracts.unset import is_ib_unset
from v6_assets_tests.analytics.helpers import CONTRACTS, et, greek, greeks_frame, pos, updates_frame

DAYS = sessions.sessions_between(date(2026, 3, 10), date(2026, 3, 16))  # 5 sessions
NO_GREEKS = greeks_frame([])


def _random_history(seed: int) -> tuple[list[dict], dict[tuple[str, int, date], float]]:
    """Portfolio rows of random trades and marks, and the reference pnl per (account, con_id, D >= second session).

    Reference (independent of the average-cost identity): position MTM + transaction MTM,
    pnl_D = q_{D-1} (P_D - P_{D-1}) m + sum over D's trades dq_i (P_D - p_i) m.
    """
    rng = random.Random(seed)
    rows: list[dict] = []
    reference: dict[tuple[str, int, date], float] = {}
    for account in ("U1", "U2", "U3"):
        for con_id in (1, 2, 3, 4):
            m = CONTRACTS[con_id]["multiplier"]
            q, avg, price = 0.0, 0.0, round(rng.uniform(1, 20), 2)
            for day in DAYS:
                if rng.random() < 0.2:  # a session without any update: nothing traded, mark unchanged
                    if q != 0 and day != DAYS[0]:
                        reference[(account, con_id, day)] = 0.0
                    continue
                q_prev, p_prev, realized, trades = q, price, 0.0, []
                for i in range(rng.randint(0 if q else 1, 3)):
                    p = round(max(0.05, price + rng.uniform(-1, 1)), 2)
                    if q == 0:
                        dq = float(rng.choice([-1, 1]) * rng.randint(1, 10))
                        avg = p * m
                    elif rng.random() < 0.5:  # add
                        dq = float((1 if q > 0 else -1) * rng.randint(1, 5))
                        avg = (avg * q + p * m * dq) / (q + dq)
                    else:  # reduce, maybe to zero
                        dq = float((-1 if q > 0 else 1) * rng.randint(1, int(abs(q))))
                        realized += (p * m - avg) * -dq
                    q += dq
                    if q == 0:
                        avg = 0.0
                    trades.append((dq, p))
                    rows.append(
                        pos(account, con_id, et(day, 10, i), position=q, average_cost=avg, market_price=p,
                            realized_pnl=realized)
                    )  # fmt: skip
                price = round(max(0.05, price + rng.uniform(-2, 2)), 2)
                rows.append(
                    pos(account, con_id, et(day, 15, 55), position=q, average_cost=avg, market_price=price,
                        realized_pnl=realized if trades else None)
                )  # fmt: skip
                if day != DAYS[0]:
                    reference[(account, con_id, day)] = q_prev * (price - p_prev) * m + sum(
                        dq * (price - p) * m for dq, p in trades
                    )
    return rows, reference


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_pnl_identity_matches_mark_to_market_reference(seed: int) -> None:
    rows, reference = _random_history(seed)
    upd = updates_frame(rows)
    eod = eod_positions(upd, NO_GREEKS, DAYS)
    daily = daily_pnl(eod, None, DAYS)
    later = daily.filter(pl.col("trade_date") > DAYS[0])
    got = {(r["account"], r["con_id"], r["trade_date"]): r["pnl"] for r in later.iter_rows(named=True)}
    expected = {k: v for k, v in reference.items() if k in got or v != 0.0}
    assert set(got) >= set(expected)
    for key, value in got.items():
        assert value is not None, key
        assert value == pytest.approx(reference.get(key, 0.0), abs=1e-6), key
    # the parts add up, and the first session is a baseline
    assert (later["pnl"] - later["unrealized_change"] - later["realized_pnl"]).abs().max() < 1e-9  # type: ignore[operator]
    assert daily.filter(pl.col("trade_date") == DAYS[0])["is_baseline"].all()
    # session by session with the stored previous EOD gives the same frames as the one-run backfill
    prev = None
    for day in DAYS:
        e = eod_positions(upd, NO_GREEKS, [day], prev)
        assert e.equals(eod.filter(pl.col("trade_date") == day))
        assert daily_pnl(e, prev, [day]).equals(daily.filter(pl.col("trade_date") == day))
        prev = e


def _one_row(**overrides: object) -> pl.DataFrame:
    row = pos("U1", 1, et(DAYS[0], 12, 0), position=1, average_cost=500.0, market_price=5.0)
    row.update(overrides)
    return updates_frame([row])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"market_price": 1.7976931348623157e308}, "sentinel"),
        ({"unrealized_pnl": float("nan")}, "sentinel"),
        ({"ib_value": float("inf")}, "sentinel"),
        ({"market_price": -1.0}, "negative market price"),
        ({"multiplier": 0.0}, "multiplier"),
        ({"account": ""}, "empty account"),
        ({"source": "tick"}, "source"),
    ],
)
def test_bad_position_values_are_rejected(overrides: dict, message: str) -> None:
    with pytest.raises(AnalyticsInputError, match=message):
        eod_positions(_one_row(**overrides), NO_GREEKS, [DAYS[0]])


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"delta": -2.0}, "delta"),
        ({"gamma": -2.0}, "gamma"),
        ({"vega": -2.0}, "vega"),
        ({"und_price": -1.0}, "underlying price"),
        ({"implied_vol": -1.0}, "implied vol"),
        ({"theta": 1.7976931348623157e308}, "sentinel"),
    ],
)
def test_bad_greeks_are_rejected(overrides: dict, message: str) -> None:
    g = greek(1, et(DAYS[0], 12, 0), delta=0.5)
    g.update(overrides)
    with pytest.raises(AnalyticsInputError, match=message):
        eod_positions(_one_row(), greeks_frame([g]), [DAYS[0]])


def test_structural_errors_are_clear() -> None:
    upd = _one_row()
    with pytest.raises(AnalyticsInputError, match="missing column"):
        eod_positions(upd.drop("position"), NO_GREEKS, [DAYS[0]])
    with pytest.raises(AnalyticsInputError, match="time-zone aware"):
        eod_positions(upd.with_columns(pl.col("received_at").dt.replace_time_zone(None)), NO_GREEKS, [DAYS[0]])
    with pytest.raises(AnalyticsInputError, match="not an NYSE trading session"):
        eod_positions(upd, NO_GREEKS, [date(2026, 3, 14)])
    with pytest.raises(AnalyticsInputError, match="contiguous"):
        eod_positions(upd, NO_GREEKS, [DAYS[0], DAYS[2]])
    with pytest.raises(AnalyticsInputError, match="empty"):
        eod_positions(upd, NO_GREEKS, [])
    with pytest.raises(AnalyticsInputError, match="null values in key columns"):
        eod_positions(upd.with_columns(pl.lit(None, dtype=pl.Int64).alias("spool_offset")), NO_GREEKS, [DAYS[0]])
    eod0 = eod_positions(upd, NO_GREEKS, [DAYS[0]])
    with pytest.raises(AnalyticsInputError, match="expected only"):
        eod_positions(upd, NO_GREEKS, [DAYS[2]], eod0)
    with pytest.raises(AnalyticsInputError, match="outside sessions"):
        daily_pnl(eod0, None, [DAYS[1]])
    with pytest.raises(AnalyticsInputError, match="duplicate"):
        daily_pnl(pl.concat([eod0, eod0]), None, [DAYS[0]])
    with pytest.raises(AnalyticsInputError, match="expected only"):
        daily_pnl(eod0, eod0, [DAYS[0]])


def test_lazy_input_and_later_rows_outside_the_range_are_ignored() -> None:
    rows = [
        pos("U1", 1, et(DAYS[0], 12, 0), position=1, average_cost=500.0, market_price=5.0),
        pos("U1", 1, et(DAYS[1], 12, 0), position=7, average_cost=500.0, market_price=5.0),
    ]
    eod = eod_positions(updates_frame(rows).lazy(), NO_GREEKS.lazy(), [DAYS[0]])
    assert eod["position"].to_list() == [1.0]


def test_synthetic_generator_feeds_all_three_outputs() -> None:
    day = DAYS[1]
    frames = synthetic_updates(20_000, 200, day, seed=7)
    assert frames.updates.height == 20_000 and frames.updates["con_id"].n_unique() == 200
    cut = sessions.eod_cut(day).astimezone(UTC)
    assert frames.updates["received_at"].max() <= cut  # type: ignore[operator]
    eod = eod_positions(frames.updates, frames.greeks, [day])
    assert eod.height == 200 and not eod["missing_greeks"].any() and not eod["carried_forward"].any()
    last = frames.updates.sort("received_at", "spool_offset").group_by("con_id").last()
    joined = eod.join(last, on="con_id", suffix="_u")
    assert (joined["position"] == joined["position_u"]).all()
    assert exposure(eod)["positions"].sum() == 200
    assert daily_pnl(eod, None, [day])["is_baseline"].all()


def test_synthetic_trades_and_flat_rows_follow_the_realized_pnl_rules() -> None:
    prev_day, day = DAYS[0], DAYS[1]
    base = synthetic_updates(4_000, 200, prev_day, seed=11, flat_fraction=0.05)
    prev_eod = eod_positions(base.updates, base.greeks, [prev_day])
    frames = synthetic_updates(20_000, 200, day, seed=11, trade_fraction=0.3, flat_fraction=0.05)
    upd = frames.updates
    # the options do not change the book: the same positions as without them, flat ones flat all session
    plain = synthetic_updates(20_000, 200, day, seed=11).updates
    assert upd.select("account", "con_id", "received_at").equals(plain.select("account", "con_id", "received_at"))
    traded = set(upd.filter(pl.col("realized_pnl").is_not_null())["con_id"])
    all_flat = upd.group_by("con_id").agg((pl.col("position") == 0).all().alias("f")).filter("f")["con_id"]
    flat = set(all_flat) - traded  # (a position closed before its first update of the session looks flat too)
    assert flat and traded and not flat & traded
    eod = eod_positions(upd, frames.greeks, [day], prev_eod)
    # lingering flat rows (flat the day before too) create no row; a closing trade leaves a closed row
    assert not set(eod["con_id"]) & flat and eod.height == 200 - len(flat)
    assert eod.filter(pl.col("is_closed"))["con_id"].is_in(list(traded)).all()
    daily = daily_pnl(eod, prev_eod, [day]).join(
        upd.group_by("con_id").agg(pl.col("realized_pnl").drop_nulls().last().alias("trade_realized")), on="con_id"
    )
    # a traded position's realized PnL is the trade's, from whichever stream reported after the trade
    moved = daily.filter(pl.col("con_id").is_in(list(traded)))
    assert moved["realized_source"].is_in(["portfolio", "pnl_single"]).all()
    assert (moved["realized_pnl"] - moved["trade_realized"]).abs().max() < 1e-6  # type: ignore[operator]
    assert (daily.filter(~pl.col("con_id").is_in(list(traded)))["realized_pnl"] == 0.0).all()


@pytest.mark.parametrize("value", [9.99e299, 1e300, -1e305, float("nan"), float("inf")])
def test_input_validation_applies_the_one_unset_rule(value: float) -> None:
    frame = pl.DataFrame({"x": [value]})
    if is_ib_unset(value):
        with pytest.raises(AnalyticsInputError, match="sentinel"):
            check_no_sentinels(frame, ["x"], "frame")
    else:
        check_no_sentinels(frame, ["x"], "frame")
