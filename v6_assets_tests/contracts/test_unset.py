"""The IB-unset rule: one rule, the same answer in its scalar and polars forms (each layer's tests check that it
applies this rule: ib/test_convert.py, analytics/test_property_and_bad_input.py, lake/test_tables.py)."""

from __future__ import annotations

import math

import polars as pl
import pytest

from v6_assets.contracts.unset import IB_UNSET_DOUBLE, UNSET_MAGNITUDE, ib_unset_expr, is_ib_unset

VALUES = [0.0, -1.5, 1e299, -9.99e299, UNSET_MAGNITUDE, -UNSET_MAGNITUDE, 1e305, IB_UNSET_DOUBLE, -IB_UNSET_DOUBLE]
SPECIAL = [math.nan, math.inf, -math.inf]


def test_unset_double_is_what_ib_sends() -> None:
    assert IB_UNSET_DOUBLE == 1.7976931348623157e308


@pytest.mark.parametrize("value", VALUES + SPECIAL)
def test_scalar_and_polars_forms_agree(value: float) -> None:
    in_polars = pl.select(ib_unset_expr(pl.lit(value, dtype=pl.Float64))).item()
    assert in_polars is is_ib_unset(value)


def test_null_is_unknown_not_unset() -> None:
    assert pl.select(ib_unset_expr(pl.lit(None, dtype=pl.Float64))).item() is None
