"""The limits file: the shipped example parses; every malformation is an error naming the line; breaches by scope."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import polars as pl
import pytest

from v6_assets.pipeline.limits import LimitsFileError, breaches, load_limits, parse_limits

ROOT = Path(__file__).resolve().parents[2]
D = date(2026, 3, 3)


def test_the_shipped_example_parses() -> None:
    limits = load_limits(ROOT / "deploy" / "risk_limits.example.yaml")
    assert [(lim.account, lim.underlying) for lim in limits] == [
        ("DU1000001", None),
        ("DU1000002", "AAPL"),
        (None, "ES"),
    ]
    assert limits[2].levels["vega"].warn is None and limits[2].levels["vega"].error == 6000.0
    assert load_limits("") == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("limits:\n  - account: DU1\n    vega: lots\n", "line 3: 'lots' is not a number"),
        ("limits:\n  - account: DU1\n    vega: -5\n", "line 3: a finite number >= 0 expected"),
        ("limits:\n  - account: DU1\n    gamma: 3\n", "line 3: unknown key 'gamma'"),
        ("limits:\n  - account: DU1\n    theta: {warn: 5, error: 2}\n", "line 3: warn 5.0 is above error 2.0"),
        ("limits:\n  - account: DU1\n    theta: {wran: 5}\n", "line 3: unknown level 'wran'"),
        ("limits:\n  - account: [DU1\n", "line 3: not valid YAML"),
        ("limits:\n  - vega: 3\n", "limits entry at line 2: account and/or underlying expected"),
        ("limits:\n  - account: DU1\n", "limits entry at line 2: at least one of"),
        ("limit:\n  - account: DU1\n", "line 1: a mapping with one key 'limits' expected"),
        ("limits: 3\n", "line 1: 'limits' must be a list"),
    ],
)
def test_malformed_files_name_the_line(text: str, message: str) -> None:
    with pytest.raises(LimitsFileError, match=r"limits file x\.yaml") as err:
        parse_limits(text, "limits file x.yaml")
    assert message in str(err.value)


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(LimitsFileError, match="cannot be read"):
        load_limits(tmp_path / "absent.yaml")


def test_breaches_by_scope_and_severity() -> None:
    ladder = pl.DataFrame(
        {
            "trade_date": [D, D, D],
            "account": ["A", "A", "B"],
            "underlying": ["SPY", "QQQ", "SPY"],
            "currency": ["USD"] * 3,
            "bucket": ["8-30"] * 3,
            "dollar_delta": [100.0, -250.0, 40.0],
            "vega": [10.0, 5.0, 1.0],
            "theta": [-3.0, -1.0, -9.0],
        }
    )
    limits = parse_limits(
        "limits:\n"
        "  - account: A\n"  # line 2: net -150 (|.| 150): warn 120, error 200 -> WARN; vega 15 > 12 -> ERROR
        "    net_delta: {warn: 120, error: 200}\n"
        "    vega: 12\n"
        "  - underlying: SPY\n"  # line 5: SPY over accounts: theta |-12| > 10 -> ERROR; delta 140 fine
        "    theta: {warn: 5, error: 10}\n"
        "    net_delta: 1000\n"
    )
    found = breaches(limits, greeks=ladder)
    assert [(b["scope"], b["measure"], b["severity"], b["value"], b["limit"], b["line"]) for b in found] == [
        ("account A", "vega", "ERROR", 15.0, 12.0, 2),
        ("underlying SPY", "theta", "ERROR", 12.0, 10.0, 5),
        ("account A", "net_delta", "WARN", 150.0, 120.0, 2),
    ]
    grid = pl.DataFrame(
        {
            "trade_date": [D] * 4,
            "account": ["A", "A", "A", "A"],
            "underlying": ["SPY", "SPY", "QQQ", "QQQ"],
            "currency": ["USD"] * 4,
            "spot_shift_pct": [-10.0, 10.0, -10.0, 10.0],
            "vol_shift_pts": [0.0] * 4,
            "pnl": [-300.0, 200.0, 100.0, -50.0],
        }
    )
    worst = parse_limits("limits:\n  - account: A\n    worst_loss: {warn: 150, error: 250}\n")
    # the account's cells summed over underlyings: -10 % -> -200, +10 % -> +150: worst loss 200 -> WARN
    assert [(b["value"], b["severity"]) for b in breaches(worst, scenarios=grid)] == [(200.0, "WARN")]
