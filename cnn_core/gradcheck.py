"""Gradient checkers: compare a hand-written backward pass with centred finite differences.

Students run these after writing each op's backward pass::

    from cnn_core.gradcheck import check_gradients
    report = check_gradients(linear_forward, linear_backward, {"x": x, "w": w, "b": b})
    report    # an HTML table in Jupyter; in a terminal (or print(report)) an aligned text table

Every check runs in float64. In float32 the rounding error of f(x) (about 6e-8 relative) is
comparable to the change a step of h = 1e-5 causes, so the difference quotient is noise and the
check says nothing about the backward pass. `check_gradients` therefore checks float64 copies of
its inputs; `numerical_gradient`, which perturbs its argument in place, accepts only float64.
"""

from __future__ import annotations

import html
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

# A correct float64 backward of a smooth op typically scores below 1e-7; the slack up to 1e-5
# absorbs the larger relative noise of near-zero gradient entries in big ops. Bugs score >= 1e-3.
DEFAULT_TOL = 1e-5

_HEADER = ("input", "shape", "max rel error", "result")
_COLOURS = {True: "#1a7f37", False: "#cf222e"}


def rel_error(a, b) -> float:
    """Largest elementwise relative error, max |a - b| / max(1e-8, |a| + |b|).

    a, b: arrays or scalars of the same shape. Returns a float in [0, 1] for finite inputs
    (0.0 for empty arrays, nan if either holds a nan). The 1e-8 floor keeps entries where both
    are (nearly) zero from dividing by zero.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(
            f"rel_error: a has shape {a.shape} but b has shape {b.shape}; they must match"
        )
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))))


def numerical_gradient(
    f: Callable[[np.ndarray], object], x: np.ndarray, dout=None, h: float = 1e-5
) -> np.ndarray:
    """Centred-difference gradient of f at x, one element at a time.

    f: called as f(x); returns a scalar, or an array of any shape.
    x: float64 array of any shape (non-contiguous views are fine). It must be writeable: each
       element is nudged in place, so f may read x through a closure, as when x is a layer's
       weight array. Every element gets back its exact old value, also when f raises.
    dout: upstream gradient, the shape of f(x). Required when f returns an array: the result is
       then the gradient of sum(f(x) * dout). For a scalar f it may be omitted (taken as 1).
    h: step, in the units of x.

    Returns a float64 array of x's shape, entry i being (F(x + h e_i) - F(x - h e_i)) / 2h with
    F = sum(f * dout). Costs 2 * x.size calls of f. Raises TypeError unless x is float64, and
    if f returns float32: in float32, a step of 1e-5 drowns in rounding error.
    """
    _check_point(x)
    _check_step(h)
    weights = None if dout is None else np.asarray(dout, dtype=np.float64)
    grad = np.zeros(x.shape)
    for idx in np.ndindex(x.shape):
        grad[idx] = _centred_difference(f, x, idx, weights, h)
    return grad


def _check_point(x) -> None:
    if not isinstance(x, np.ndarray):
        raise TypeError(
            "numerical_gradient: x must be a numpy array (it is perturbed in place), "
            f"got {type(x).__name__}"
        )
    if x.dtype != np.float64:
        raise TypeError(
            f"numerical_gradient: x has dtype {x.dtype}, but gradient checks run in float64 "
            "(in float32 a step of 1e-5 is lost to rounding). Use x = x.astype(np.float64) and "
            "let f compute in float64, or call check_gradients, which checks float64 copies."
        )
    if not x.flags.writeable:
        raise ValueError(
            "numerical_gradient: x is read-only, but it is perturbed in place; pass a writeable "
            "array (for example x.copy())"
        )


def _check_step(h) -> None:
    if isinstance(h, bool) or not isinstance(h, numbers.Real) or not 0 < h < np.inf:
        raise ValueError(f"numerical_gradient: h must be a positive finite number, got {h!r}")


def _centred_difference(f, x: np.ndarray, idx: tuple[int, ...], dout, h: float) -> float:
    """Slope of F = sum(f(x) * dout) along element idx of x; restores x[idx] whatever happens."""
    old = x[idx]
    up, down = old + h, old - h
    try:
        x[idx] = up
        plus = _objective(f(x), dout)
        x[idx] = down
        minus = _objective(f(x), dout)
    finally:
        x[idx] = old
    # Divide by the step actually taken: old + h rounds, and so does old - h.
    return (plus - minus) / (up - down)


def _objective(value, dout) -> float:
    """F = value for a scalar value, sum(value * dout) otherwise."""
    out = _as_float64("numerical_gradient: f", value)
    if dout is None:
        if out.ndim:
            raise ValueError(
                f"numerical_gradient: f returned an array of shape {out.shape}; pass dout of "
                "that shape (the upstream gradient), or make f return a scalar"
            )
        return float(out)
    if dout.shape != out.shape:
        raise ValueError(
            f"numerical_gradient: dout has shape {dout.shape} but f returned shape {out.shape}; "
            "they must match"
        )
    return float(np.sum(out * dout))


def _as_float64(who: str, value) -> np.ndarray:
    """`value` as a float64 array; refuse non-numbers and values computed in low precision."""
    out = np.asarray(value)
    if out.dtype.kind not in "biuf":
        raise TypeError(f"{who} must return real numbers, got {type(value).__name__} ({out.dtype})")
    if out.dtype.kind == "f" and out.dtype.itemsize < 8:
        raise TypeError(
            f"{who} returned {out.dtype} values for float64 inputs; gradient checks need float64 "
            "throughout (outputs should keep the input's dtype)"
        )
    return out.astype(np.float64, copy=False)


@dataclass(frozen=True)
class GradientRow:
    """One input's result.

    name, shape: the input checked. max_rel_error: rel_error(analytic, numeric), the worst entry.
    passed: max_rel_error <= the report's tol. analytic, numeric: the two gradients, each of the
    input's shape, to inspect where they disagree.
    """

    name: str
    shape: tuple[int, ...]
    max_rel_error: float
    passed: bool
    analytic: np.ndarray | None = field(default=None, repr=False, compare=False)
    numeric: np.ndarray | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, repr=False)
class GradientReport:
    """The outcome of `check_gradients`: one row per input, checked at tolerance `tol`.

    `print(report)`, and `report` at a Python or IPython prompt, show an aligned text table, one
    line per input; Jupyter renders it as an HTML table. The table's columns are the fields of
    `report.rows[i]` (a GradientRow): input = `name`, `shape`, max rel error = `max_rel_error`,
    result = `passed`; each row also keeps the two gradients, `analytic` and `numeric`.
    """

    rows: tuple[GradientRow, ...]
    tol: float

    @property
    def passed(self) -> bool:
        """True iff every input passed."""
        return all(row.passed for row in self.rows)

    def summary(self) -> str:
        """One line: the tolerance and how many inputs failed."""
        failed = sum(not row.passed for row in self.rows)
        verdict = "all passed" if not failed else f"{failed} of {len(self.rows)} FAILED"
        return f"Gradient check (max relative error, tolerance {self.tol:g}): {verdict}"

    def _cells(self) -> list[tuple[str, str, str, str]]:
        return [
            (row.name, str(row.shape), f"{row.max_rel_error:.2e}", "PASS" if row.passed else "FAIL")
            for row in self.rows
        ]

    def __str__(self) -> str:
        table = [_HEADER, *self._cells()]
        widths = [max(len(line[i]) for line in table) for i in range(len(_HEADER))]
        lines = [
            "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
            for line in table
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join([self.summary(), *lines])

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in _HEADER)
        pairs = zip(self._cells(), self.rows, strict=True)
        body = "".join(_html_row(cells, row.passed) for cells, row in pairs)
        return (
            f"<table><caption>{html.escape(self.summary())}</caption>"
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        )


def _html_row(cells: tuple[str, ...], passed: bool) -> str:
    *plain, result = (html.escape(c) for c in cells)
    style = f"color: {_COLOURS[passed]}; font-weight: bold"
    tds = "".join(f"<td>{c}</td>" for c in plain)
    return f'<tr>{tds}<td style="{style}">{result}</td></tr>'


_Inputs = Mapping[str, np.ndarray] | Sequence[np.ndarray] | np.ndarray


def check_gradients(
    forward: Callable[..., tuple[object, object]],
    backward: Callable[[np.ndarray, object], object],
    inputs: _Inputs,
    dout=None,
    tol: float = DEFAULT_TOL,
    h: float = 1e-5,
    seed: int | np.random.Generator | None = 0,
) -> GradientReport:
    """Check backward against numerical gradients of forward, for every input.

    forward: forward(*arrays) -> (out, cache), arrays in the order of `inputs`.
    backward: backward(dout, cache) -> one gradient per input, in the same order (a tuple, or a
        bare array when there is a single input), each of its input's shape.
    inputs: dict name -> array, e.g. {"x": x, "w": w, "b": b}; or a sequence of arrays, named
        x0, x1, ...; or a single array, named x. Checked as float64 copies: the caller's arrays
        are never modified, and float32 inputs are checked in float64 (see the module notes).
    dout: upstream gradient, out's shape. Default: standard normal draws from `seed`, or 1.0
        when out is a scalar (a loss).
    tol: largest max relative error (see `rel_error`) that passes.
    h: finite-difference step. seed: an int or a numpy Generator for the default dout.

    Returns a GradientReport comparing backward's gradients with the numerical gradients of
    sum(out * dout). Ops with kinks (relu, max pooling) have no derivative where an input sits on
    a kink or a max ties; an input within h of one fails even a correct backward, so draw inputs
    away from kinks rather than loosening tol. Raises ValueError if backward returns the wrong
    number of gradients or a gradient of the wrong shape, or if dout has the wrong shape.
    """
    names, arrays = _float64_copies(inputs)
    out, cache = _run_forward(forward, arrays)
    dout = _upstream(dout, out.shape, seed)
    analytic = _backward_gradients(backward, dout.copy(), cache, names, arrays)

    def objective(_: np.ndarray) -> np.ndarray:
        return _run_forward(forward, arrays)[0]

    rows = []
    for name, x, grad in zip(names, arrays, analytic, strict=True):
        numeric = numerical_gradient(objective, x, dout, h)
        err = rel_error(grad, numeric)
        rows.append(GradientRow(name, x.shape, err, bool(err <= tol), grad, numeric))
    return GradientReport(tuple(rows), tol)


def assert_gradients(
    forward: Callable[..., tuple[object, object]],
    backward: Callable[[np.ndarray, object], object],
    inputs: _Inputs,
    dout=None,
    tol: float = DEFAULT_TOL,
    h: float = 1e-5,
    seed: int | np.random.Generator | None = 0,
) -> GradientReport:
    """`check_gradients`, raising AssertionError with the report's table if any input fails."""
    report = check_gradients(forward, backward, inputs, dout, tol=tol, h=h, seed=seed)
    if not report.passed:
        raise AssertionError(f"backward disagrees with the numerical gradient\n{report}")
    return report


def _float64_copies(inputs: _Inputs) -> tuple[list[str], list[np.ndarray]]:
    """Names and float64 copies of the inputs, in order."""
    if isinstance(inputs, np.ndarray):
        named = [("x", inputs)]
    elif isinstance(inputs, Mapping):
        named = [(str(k), v) for k, v in inputs.items()]
    elif isinstance(inputs, (list, tuple)):
        named = [(f"x{i}", v) for i, v in enumerate(inputs)]
    else:
        raise TypeError(
            "check_gradients: inputs must be a dict of arrays, a list or tuple of arrays, or an "
            f"array, got {type(inputs).__name__}"
        )
    if not named:
        raise ValueError("check_gradients: inputs is empty; pass at least one array to check")
    return [n for n, _ in named], [_float64_copy(n, v) for n, v in named]


def _float64_copy(name: str, value) -> np.ndarray:
    a = np.asarray(value)
    if a.dtype.kind not in "biuf":
        raise TypeError(f"check_gradients: input {name!r} must hold real numbers, got {a.dtype}")
    return a.astype(np.float64)  # always a copy: the caller's array is never perturbed


def _run_forward(forward, arrays: list[np.ndarray]) -> tuple[np.ndarray, object]:
    result = forward(*arrays)
    if not isinstance(result, tuple) or len(result) != 2:
        raise TypeError(
            f"check_gradients: forward must return a pair (out, cache), got {type(result).__name__}"
        )
    return _as_float64("check_gradients: forward", result[0]), result[1]


def _upstream(dout, shape: tuple[int, ...], seed) -> np.ndarray:
    """The upstream gradient: the caller's (checked), 1.0 for a scalar out, or seeded normals."""
    if dout is None:
        if shape == ():
            return np.array(1.0)
        return np.random.default_rng(seed).standard_normal(shape)
    dout = np.array(dout, dtype=np.float64)
    if dout.shape != shape:
        raise ValueError(
            f"check_gradients: dout has shape {dout.shape} but forward's output has shape {shape}"
        )
    return dout


def _backward_gradients(
    backward, dout: np.ndarray, cache, names: list[str], arrays: list[np.ndarray]
) -> list[np.ndarray]:
    """Call backward and check it returns one gradient of the right shape per input."""
    grads = backward(dout, cache)
    if not isinstance(grads, (tuple, list)):
        if len(names) > 1:
            raise ValueError(
                f"check_gradients: backward returned one {type(grads).__name__} but there are "
                f"{len(names)} inputs ({', '.join(names)}); return a tuple of their gradients"
            )
        grads = (grads,)
    if len(grads) != len(names):
        raise ValueError(
            f"check_gradients: backward returned {len(grads)} gradients but there are "
            f"{len(names)} inputs ({', '.join(names)}); return one per input, in that order"
        )
    return [_gradient(n, g, a.shape) for n, g, a in zip(names, grads, arrays, strict=True)]


def _gradient(name: str, grad, shape: tuple[int, ...]) -> np.ndarray:
    if grad is None:
        raise ValueError(f"check_gradients: backward returned None as the gradient for {name!r}")
    g = np.asarray(grad)
    if g.dtype.kind not in "biuf":
        raise TypeError(f"check_gradients: the gradient for {name!r} has dtype {g.dtype}")
    if g.shape != shape:
        raise ValueError(
            f"check_gradients: backward's gradient for {name!r} has shape {g.shape} but {name} "
            f"has shape {shape}"
        )
    return g.astype(np.float64)  # a copy, in case backward returned a view of an input
