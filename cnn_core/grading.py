"""What the assignments' tests use: per-student test cases, tolerances, comparisons whose failure
messages say which case failed and by how much (never the hidden inputs), and a guard that makes
a call to the reference implementation of the function being graded fail.

Hidden tests draw fresh inputs from `case_rng(assignment, test)`, seeded by the student's id (the
grader sets $CNNKIT_STUDENT_ID; a student working on their own gets a fixed "local" seed), so
answers hard-coded from the visible tests earn nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import numbers
import os
import warnings
from collections.abc import Iterator

import numpy as np

from cnn_core import _guard
from cnn_core._guard import ReferenceUseError

__all__ = [
    "STUDENT_ENV",
    "CASE_KEY_ENV",
    "CURVE_TOLERANCE",
    "TOLERANCES",
    "ReferenceUseError",
    "case_rng",
    "check_close",
    "no_reference",
    "student_id",
]

STUDENT_ENV = "CNNKIT_STUDENT_ID"
CASE_KEY_ENV = "CNNKIT_CASE_KEY"  # the graded student's key, derived from the course's secret

# The kit's tolerances, in one place: (rtol, atol) by dtype. A correct implementation differs from
# the reference by rounding only; float32 sums of a few hundred terms lose about 1e-5 relative.
TOLERANCES: dict[np.dtype, tuple[float, float]] = {
    np.dtype(np.float32): (1e-4, 1e-5),
    np.dtype(np.float64): (1e-7, 1e-9),
}
# (rtol, atol) between a submitted training curve's first losses and the grader's replay of them:
# equal bit for bit on one machine; another machine's BLAS may round differently and the
# difference grows over the replayed steps, while an edited or invented loss is off by far more.
CURVE_TOLERANCE: tuple[float, float] = (1e-3, 1e-6)


def student_id() -> str:
    """The id of the student being graded, or "local" outside the grader."""
    return os.environ.get(STUDENT_ENV) or "local"


def case_key() -> str:
    """The key of the student being graded, which the grader derives from its course's secret
    ($CNNKIT_CASE_KEY), or "" outside the grader."""
    return os.environ.get(CASE_KEY_ENV, "")


def seeded_rng(*parts: str) -> np.random.Generator:
    """A Generator seeded by the SHA-256 of `parts`."""
    digest = hashlib.sha256("/".join(parts).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def case_rng(assignment: str, test: str) -> np.random.Generator:
    """A Generator of one student's cases of one test: seeded by the student's key when graded
    (so no one can draw them without the course's secret), else by the student's id ("local"
    when working alone). The same at every run, different for every other student."""
    return seeded_rng(case_key() or student_id(), assignment, test)


def max_rel_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """max |a - e| / max(1e-8, |a| + |e|): the error measure of the gradient checkers."""
    a, e = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - e) / np.maximum(1e-8, np.abs(a) + np.abs(e))))


def check_close(what: str, actual, expected, case: str = "") -> None:
    """Assert that `actual` matches the reference `expected` within TOLERANCES[expected.dtype].

    A scalar `expected` (such as a loss) also accepts a plain Python number as `actual`.
    what: names the result, e.g. "conv2d_backward: dw"; case: describes the case without its
    values, e.g. "stride 2, padding 1". The AssertionError says what is wrong (type, shape, dtype,
    non-finite values or the largest error), never the inputs or the expected values.
    """
    where = f"{what} wrong" + (f" with {case}" if case else "")
    expected = np.asarray(expected)
    if expected.ndim == 0 and isinstance(actual, numbers.Real) and not isinstance(actual, bool):
        actual = np.asarray(actual, dtype=expected.dtype)  # a loss: a plain float is fine
    if not isinstance(actual, np.ndarray):
        raise AssertionError(f"{where}: expected a numpy array, got {type(actual).__name__}")
    if actual.shape != expected.shape:
        raise AssertionError(f"{where}: shape {actual.shape}, expected {expected.shape}")
    if actual.dtype != expected.dtype:
        raise AssertionError(f"{where}: dtype {actual.dtype}, expected {expected.dtype}")
    if not np.all(np.isfinite(actual)):
        raise AssertionError(f"{where}: contains nan or inf")
    rtol, atol = TOLERANCES.get(expected.dtype, TOLERANCES[np.dtype(np.float64)])
    if not np.allclose(actual, expected, rtol=rtol, atol=atol):
        raise AssertionError(f"{where}; max relative error {max_rel_error(actual, expected):.2g}")


@contextlib.contextmanager
def no_reference(*names: str) -> Iterator[None]:
    """Within the block, calling the kit's own implementation of any op in `names` (fast path or
    naive, however it was imported) raises ReferenceUseError; warnings are silenced, since any
    output on stderr makes nbgrader score a test cell zero.

        with no_reference("conv2d_forward"):
            out, cache = conv2d_forward(x, w, b)      # the student's function
    """
    with _guard.forbidden(names), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield
