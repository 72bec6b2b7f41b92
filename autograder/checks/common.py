"""Helpers the assignments' check modules share: checks of typed answers, and the shape of what
a student's function returns."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from autograder.outputs import Case, Check


def dtype_name(dtype: Any) -> str:
    """'float32' for np.float32, np.dtype("float32") or "float32"."""
    return np.dtype(dtype).name


def returns(value: Any, n: int, what: str, names: str) -> tuple:
    """`value` as a tuple of `n` items, else a TypeError saying what `what` should return
    (`names`, e.g. "(out, cache)")."""
    if isinstance(value, (tuple, list)) and len(value) == n:
        return tuple(value)
    got = (
        f"a {type(value).__name__} of {len(value)} items"
        if isinstance(value, (tuple, list))
        else type(value).__name__
    )
    raise TypeError(f"{what} should return a tuple {names}, got {got}")


def first(value: Any, what: str, names: str = "(out, cache)") -> Any:
    """The first item of the pair `what` returns (a forward pass's out)."""
    return returns(value, 2, what, names)[0]


def answers(
    grade_id: str, expected: dict[str, Callable[[], Any]], atol: dict[str, float] | None = None
) -> Check:
    """A check of answers the notebook stores in variables: each variable is one case, compared
    exactly or, for a variable named in `atol`, within that absolute tolerance."""
    atol = atol or {}
    names = list(expected)
    return Check(
        grade_id=grade_id,
        what="answers",
        cases=lambda rng: [Case({"name": n, "atol": atol.get(n)}, n) for n in names],
        run=lambda ns, case: {case.args["name"]: ns[case.args["name"]]},
        expected=lambda case: {case.args["name"]: expected[case.args["name"]]()},
        exact_dtype=False,
    )
