"""The one rule for comparing amounts of money.

Amounts are float64 in the position's currency, as IB sends them (doubles). Two amounts *agree* when

    |a - b| <= tolerance + FLOAT_NOISE * max(|a|, |b|)

with ``tolerance`` half a cent (``HALF_CENT``) unless a check states its own (``V6_PNL_TOLERANCE``). The relative
``FLOAT_NOISE`` term (2**-40, about 1e-12 of the amount) absorbs the rounding noise of float arithmetic, so an
amount that sits on a half cent and is computed two ways (-499.78499999999985 vs -499.78500000000065) agrees,
which ``round(a, 2) == round(b, 2)`` gets wrong. Never compare money by rounding both sides.
"""

from __future__ import annotations

import math

import polars as pl

HALF_CENT = 0.005
FLOAT_NOISE = 2.0**-40


def amounts_agree(a: float, b: float, tolerance: float = HALF_CENT) -> bool:
    """True when ``a`` and ``b`` agree within ``tolerance`` (plus float noise). NaN never agrees."""
    if tolerance < 0 or math.isnan(tolerance):
        raise ValueError(f"tolerance must be >= 0, got {tolerance!r}")
    if math.isnan(a) or math.isnan(b):
        return False
    return abs(a - b) <= tolerance + FLOAT_NOISE * max(abs(a), abs(b))


def amounts_disagree_expr(a: pl.Expr, b: pl.Expr, tolerance: float = HALF_CENT) -> pl.Expr:
    """Polars form of ``not amounts_agree(a, b)`` for rows where both are known (null in, null out)."""
    scale = pl.max_horizontal(a.abs(), b.abs())
    return (a - b).abs() > (tolerance + FLOAT_NOISE * scale)


def format_cents(value: float | None) -> str:
    """An amount as shown in metadata: always to the cent with thousands separators; unknown is "n/a", never 0."""
    if value is None or math.isnan(value):
        return "n/a"
    return f"{value:,.2f}"


class Money:
    """Test helper form: ``computed == Money(expected)`` compares by ``amounts_agree`` (like ``pytest.approx``)."""

    __slots__ = ("expected", "tolerance")

    def __init__(self, expected: float, tolerance: float = HALF_CENT) -> None:
        self.expected = float(expected)
        self.tolerance = tolerance

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Money):
            return amounts_agree(self.expected, other.expected, min(self.tolerance, other.tolerance))
        if isinstance(other, int | float) and not isinstance(other, bool):
            return amounts_agree(float(other), self.expected, self.tolerance)
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.expected, self.tolerance))

    def __repr__(self) -> str:
        return f"Money({self.expected!r} +- {self.tolerance})"
