"""Every op checked three ways on small random inputs: fast path against the naive loops, and the
fast backward against numerical gradients. Backs `cnnkit check` and the test suite.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from cnn_core import functional, naive
from cnn_core.gradcheck import DEFAULT_TOL, check_gradients


@dataclass(frozen=True)
class Case:
    """One op's inputs: `arrays` are differentiated, `rest` are further positional arguments."""

    op: str  # the name stem: `conv2d` for conv2d_forward / conv2d_backward
    arrays: tuple[np.ndarray, ...]
    rest: tuple = ()
    kwargs: dict = field(default_factory=dict)

    def forward(self, module) -> Callable:
        """`module`'s forward as a function of the differentiated arrays only.

        Batch norm gets fresh copies of its running statistics at every call, so that repeated
        calls (a numerical gradient makes many) neither drift them nor see each other's updates.
        """
        fn = getattr(module, f"{self.op}_forward")

        def run(*arrays):
            rest = tuple(np.copy(r) if isinstance(r, np.ndarray) else r for r in self.rest)
            return fn(*arrays, *rest, **self.kwargs)

        return run

    def backward(self, module) -> Callable:
        return getattr(module, f"{self.op}_backward")


def cases(rng: np.random.Generator) -> list[Case]:
    """A case per forward/backward pair of `cnn_core.functional`, in float64, with odd sizes,
    unequal strides and paddings and overlapping pooling windows."""

    def r(*shape):
        return rng.standard_normal(shape)

    x = r(2, 3, 7, 6)
    return [
        Case("conv2d", (x, r(4, 3, 3, 2), r(4)), (), {"stride": (2, 1), "padding": (1, 2)}),
        Case("conv1d", (r(2, 3, 9), r(2, 3, 4), r(2)), (), {"stride": 2, "padding": 1}),
        Case("maxpool2d", (x,), (3, 2)),
        Case("avgpool2d", (x,), ((2, 3),)),
        Case("global_avgpool2d", (x,)),
        Case("dropout", (x,), (0.4,), {"rng": 11}),
        Case("relu", (x,)),
        Case("leaky_relu", (x,), (), {"alpha": 0.2}),
        Case("elu", (x,)),
        Case("sigmoid", (x,)),
        Case("tanh", (x,)),
        Case("linear", (x, r(126, 5), r(5))),
        Case("batchnorm", (r(6, 4), r(4), r(4)), (np.zeros(4), np.ones(4))),
        Case("batchnorm2d", (x, r(3), r(3)), (np.zeros(3), np.ones(3))),
    ]


def as_tuple(grads) -> tuple[np.ndarray, ...]:
    """A backward's result as a tuple: ops with one input return a bare array."""
    return (grads,) if isinstance(grads, np.ndarray) else tuple(grads)


@dataclass(frozen=True)
class Result:
    op: str
    naive_diff: float  # max |fast - naive| over the output and every gradient
    grad_error: float  # max relative error of the fast backward against numerical gradients
    passed: bool


def check_case(case: Case, rng: np.random.Generator, tol: float = DEFAULT_TOL) -> Result:
    """Compare the fast and naive paths on `case`, and gradient-check the fast backward."""
    out, cache = case.forward(functional)(*case.arrays)
    n_out, n_cache = case.forward(naive)(*case.arrays)
    dout = rng.standard_normal(out.shape)
    pairs = zip(
        (out, *as_tuple(case.backward(functional)(dout, cache))),
        (n_out, *as_tuple(case.backward(naive)(dout, n_cache))),
        strict=True,
    )
    diff = max(float(np.max(np.abs(a - b), initial=0.0)) for a, b in pairs)
    report = check_gradients(
        case.forward(functional), case.backward(functional), list(case.arrays), dout=dout, tol=tol
    )
    error = max(row.max_rel_error for row in report.rows)
    return Result(case.op, diff, error, report.passed and diff < 1e-9)


def run(seed: int = 0) -> list[Result]:
    """Check every op; the inputs are drawn from `seed`."""
    rng = np.random.default_rng(seed)
    return [check_case(case, rng) for case in cases(rng)]


def format_results(results: list[Result]) -> str:
    """An aligned text table of `run`'s results."""
    lines = [f"{'op':<12} {'|fast - naive|':>15} {'grad rel error':>15}  result"]
    for r in results:
        verdict = "PASS" if r.passed else "FAIL"
        lines.append(f"{r.op:<12} {r.naive_diff:>15.2e} {r.grad_error:>15.2e}  {verdict}")
    return "\n".join(lines)
