"""What the assignments' tests use: per-student test cases, tolerances, comparisons whose failure
messages say which case failed and by how much (never the hidden inputs), and a guard that makes
a call to the reference implementation of the function being graded fail.

Hidden tests draw fresh inputs from `case_rng(assignment, test)`, seeded by the student's id (the
grader sets $CNNKIT_STUDENT_ID; a student working on their own gets a fixed "local" seed), so
answers hard-coded from the visible tests earn nothing.

Answers computed by hand (a parameter count, an output shape) are checked in the visible tests
against a digest, so a student learns whether an answer is right before submitting while the
notebook does not give it away:

    check_answer("lenet_c1_params", lenet_c1_params, "5b0c...")   # AssertionError if wrong
    answer_digest("lenet_c1_params", 156)                         # the instructor's digest

The digest is a salted, deliberately slow hash (PBKDF2-SHA256, ANSWER_ITERATIONS rounds, the
answer's name in the salt) of the answer in a normal form (`normal_answer`): about 10 ms a check,
so a notebook's visible tests stay well under a second while trying every count up to a million
costs hours.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import numbers
import os
import warnings
from collections.abc import Iterator

import numpy as np

from cnn_core import _guard
from cnn_core._guard import ReferenceUseError

__all__ = [
    "ANSWER_DECIMALS",
    "ANSWER_ITERATIONS",
    "STUDENT_ENV",
    "CASE_KEY_ENV",
    "CURVE_DRIFT",
    "CURVE_EXACT_ITERATIONS",
    "CURVE_TOLERANCE",
    "TOLERANCES",
    "ReferenceUseError",
    "answer_digest",
    "case_rng",
    "check_answer",
    "check_answers",
    "check_close",
    "no_reference",
    "normal_answer",
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
# A submitted training curve against the grader's replay of its first iterations. Another BLAS
# or thread count rounds a little differently, and training amplifies the difference about
# twofold per iteration of SGD with momentum (measured here between one and two threads: equal
# for 20 iterations, 2e-3 relative at 30, 1e-2 at 55). So the first CURVE_EXACT_ITERATIONS are
# held to CURVE_TOLERANCE (rtol, atol), and the rest of the replay to a median relative
# difference of CURVE_DRIFT; an edited or invented loss is off by far more from the first one.
CURVE_TOLERANCE: tuple[float, float] = (1e-3, 1e-6)
CURVE_EXACT_ITERATIONS = 10
CURVE_DRIFT = 0.02


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


# --------------------------------------------------------------------------- hand-computed answers

# Decimals a non-integral float answer is rounded to before hashing, unless a check says otherwise.
ANSWER_DECIMALS = 6
# PBKDF2 rounds of an answer's digest: about 10 ms on the kit's 2-core AMD EPYC. Changing it changes
# every digest, so the notebooks' digests would have to be made again (answer_digest).
ANSWER_ITERATIONS = 40_000
_ANSWER_SALT = "cnnkit/answer/"
_ANSWER_KINDS = "a number, or a tuple or list of numbers"


def normal_answer(value, decimals: int = ANSWER_DECIMALS) -> str:
    """The normal form of a hand-computed answer, the text its digest is taken of.

    Python and numpy integers, and floats with an integral value, are written as integers
    (2 and 2.0 and np.int64(2) give "2"); other floats are rounded to `decimals` decimals
    ("0.962" for 0.96171 and decimals=3). Tuples, lists and numpy arrays are written elementwise
    in brackets, so (6, 28, 28), [6, 28, 28] and np.array([6, 28, 28]) give "[6,28,28]".
    Raises TypeError for anything else (strings, None, booleans, complex numbers) and ValueError
    for nan and infinity.
    """
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, (tuple, list, np.ndarray)):
        return "[" + ",".join(normal_answer(v, decimals) for v in value) + "]"
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"an answer must be {_ANSWER_KINDS}, got a bool")
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(f"an answer must be finite, got {number}")
        if number.is_integer():
            return str(int(number))
        return f"{round(number, decimals):.{decimals}f}"
    raise TypeError(f"an answer must be {_ANSWER_KINDS}, got {type(value).__name__}")


def answer_digest(name: str, value, decimals: int = ANSWER_DECIMALS) -> str:
    """The digest `check_answer` compares with: what an instructor writes into a visible test.

    name: the answer's variable name (it salts the hash, so equal values of two answers differ);
    value: the right answer; decimals: as `normal_answer`. Returns 32 hex digits.
    """
    text = normal_answer(value, decimals)
    salt = (_ANSWER_SALT + name).encode()
    return hashlib.pbkdf2_hmac("sha256", text.encode(), salt, ANSWER_ITERATIONS, 16).hex()


def check_answer(
    name: str, value, digest: str, hint: str = "", decimals: int = ANSWER_DECIMALS
) -> None:
    """Assert that the hand-computed answer `value` of `name` is the one `digest` was made of.

    Answers are compared in their normal form (`normal_answer`): 2 == 2.0, (6, 28, 28) ==
    [6, 28, 28], numpy scalars and arrays like Python numbers and lists, floats rounded to
    `decimals` decimals. The AssertionError names the answer and says `hint` (default: to
    recount it), never the expected value:

        lenet_c1_params is not right: recount it (6 filters of 1x5x5 weights and a bias)
    """
    check_answers((name, value, digest, hint), decimals=decimals)


def check_answers(*checks: tuple, decimals: int = ANSWER_DECIMALS) -> None:
    """`check_answer` for several answers at once, each check a tuple (name, value, digest) or
    (name, value, digest, hint). Raises one AssertionError naming every wrong answer, a line
    each, so that all of them show at the first run. `decimals` applies to every non-integral
    float among them.

        check_answers(
            ("lenet_c1_shape", lenet_c1_shape, "9f0e..."),
            ("lenet_c1_params", lenet_c1_params, "5b0c...", "6 filters of 1x5x5 plus biases"),
        )
    """
    problems = [_answer_problem(*check, decimals=decimals) for check in checks]
    if any(problems):
        raise AssertionError("\n".join(p for p in problems if p))


def _answer_problem(
    name: str, value, digest: str, hint: str = "", *, decimals: int = ANSWER_DECIMALS
) -> str:
    """Why the answer `value` of `name` is not the one of `digest` ("" when it is)."""
    try:
        if answer_digest(name, value, decimals) == digest:
            return ""
    except (TypeError, ValueError) as exc:
        return f"{name} is not right: {exc}"
    rounded = (
        f" (floats are compared rounded to {decimals} decimals)" if _has_fraction(value) else ""
    )
    return f"{name} is not right: {hint or 'recount it with the formulas above'}{rounded}"


def _has_fraction(value) -> bool:
    """Whether `value` holds a float that is not a whole number (whose rounding matters)."""
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    return bool(np.any(np.isfinite(array) & (array != np.round(array))))
