"""The one money rule: half a cent plus float noise; rounding both sides is what it replaces."""

from __future__ import annotations

import math

import polars as pl
import pytest

from v6_assets.contracts.money import HALF_CENT, Money, amounts_agree, amounts_disagree_expr, format_cents


def test_a_value_on_a_half_cent_computed_two_ways_agrees() -> None:
    computed, truth = -499.78499999999985, -499.78500000000065  # the case that failed with round(x, 2)
    assert round(computed, 2) != round(truth, 2)  # why rounding both sides is not the rule
    assert amounts_agree(computed, truth)
    assert computed == Money(truth)


@pytest.mark.parametrize(
    ("a", "b", "agree"),
    [
        (100.00, 100.005, True),  # exactly half a cent apart (as floats: within noise of it)
        (100.00, 100.0051, False),
        (-0.004, 0.0, True),
        (0.0, 0.006, False),
        (1e9, 1e9 + 0.004, True),
        (1e9, 1e9 + 0.01, False),  # the noise term stays far below a cent at a billion
    ],
)
def test_boundaries(a: float, b: float, agree: bool) -> None:
    assert amounts_agree(a, b) is agree
    assert amounts_agree(b, a) is agree


def test_nan_never_agrees_and_a_negative_tolerance_is_an_error() -> None:
    assert not amounts_agree(math.nan, math.nan)
    assert Money(1.0) != math.nan
    with pytest.raises(ValueError, match="tolerance"):
        amounts_agree(1.0, 1.0, -0.01)


def test_the_polars_form_equals_the_scalar_rule() -> None:
    pairs = [(100.0, 100.005), (100.0, 100.0051), (-499.78499999999985, -499.78500000000065), (5.0, None)]
    frame = pl.DataFrame({"a": [p[0] for p in pairs], "b": [p[1] for p in pairs]})
    got = frame.select(amounts_disagree_expr(pl.col("a"), pl.col("b"))).to_series().to_list()
    assert got == [not amounts_agree(100.0, 100.005), True, False, None]
    wider = frame.select(amounts_disagree_expr(pl.col("a"), pl.col("b"), 0.01)).to_series().to_list()
    assert wider == [False, False, False, None]


def test_metadata_shows_cents_and_unknown_is_never_zero() -> None:
    assert format_cents(-1234.5) == "-1,234.50"
    assert format_cents(0.004) == "0.00"
    assert format_cents(None) == "n/a" and format_cents(math.nan) == "n/a"
    assert HALF_CENT == 0.005
