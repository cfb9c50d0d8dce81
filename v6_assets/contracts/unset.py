"""IB's "no value" double and the ONE rule that recognises it.

IB sends ``UNSET_DOUBLE`` (``sys.float_info.max``, 1.7976931348623157e308) where a double has no value (a realized
PnL of a position not traded today, a greek not computed yet...). The rule, used by every layer:

    a double carries a value only when it is a finite number with |x| < 1e300 (``UNSET_MAGNITUDE``)

so IB's UNSET_DOUBLE of either sign, anything of that order of magnitude (a sentinel that went through a lossy
encoding), infinities and NaN are all "no value". No price, quantity, amount or greek comes anywhere near 1e300, so
the margin costs nothing real and a stored 1e305 cannot pass one layer and fail the next.

Where the rule applies: the IB conversion turns such a double into ``None`` (``is_ib_unset``); the lake refuses to
store one (NaN is stored as null there, infinities and huge magnitudes raise); the analytics refuse them as input; the
stream checks count them (``ib_unset_expr``).
"""

from __future__ import annotations

import sys

import polars as pl

IB_UNSET_DOUBLE: float = sys.float_info.max
UNSET_MAGNITUDE = 1e300


def is_ib_unset(value: float) -> bool:
    """True when ``value`` carries no value: NaN, an infinity, or a magnitude of at least ``UNSET_MAGNITUDE``."""
    return not -UNSET_MAGNITUDE < value < UNSET_MAGNITUDE


def ib_unset_expr(column: pl.Expr) -> pl.Expr:
    """Polars form of :func:`is_ib_unset` (null in, null out)."""
    return column.is_nan() | (column.abs() >= UNSET_MAGNITUDE)
