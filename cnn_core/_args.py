"""Checks of plain arguments (counts, sizes, rates) shared by every module of the package.

Each returns the value in its canonical type or raises TypeError (wrong kind of value) or ValueError
(out of range) with a message that names the function and the argument.
"""

from __future__ import annotations

import math
import numbers


def integer(op: str, name: str, v, minimum: int = 1) -> int:
    """`v` as an int of at least `minimum`."""
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{op}: {name} must be an int, got {v!r}")
    if v < minimum:
        kind = "positive" if minimum == 1 else f"at least {minimum}"
        raise ValueError(f"{op}: {name} must be {kind}, got {v!r}")
    return int(v)


def integers(op: str, name: str, v, n: int = 2, minimum: int = 1) -> tuple[int, ...]:
    """An int or a sequence of `n` ints as an n-tuple, each at least `minimum`."""
    if isinstance(v, (tuple, list)):
        if len(v) != n:
            raise ValueError(f"{op}: {name} must be an int or {n} ints, got {tuple(v)!r}")
        return tuple(integer(op, name, x, minimum) for x in v)
    return (integer(op, name, v, minimum),) * n


def number(op: str, name: str, v, low: float = -math.inf, high: float = math.inf) -> float:
    """`v` as a finite float in [low, high]."""
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{op}: {name} must be a number, got {v!r}")
    if not math.isfinite(v):
        raise ValueError(f"{op}: {name} must be finite, got {v!r}")
    if not low <= v <= high:
        raise ValueError(f"{op}: {name} must be in [{low}, {high}], got {v!r}")
    return float(v)
