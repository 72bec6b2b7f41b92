"""Output checks of a3_backprop: the hand-computed numbers, the gates, the graph with a fork, the
two-layer network, softmax with cross-entropy, batch normalisation and the residual block, on
hidden per-student cases (see autograder.outputs).

Where cnn_core has no such op (the gates, the graph) the expected values come from the formulas
of the notebook's hidden tests.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from autograder.checks.common import answers, dtype_name, first, returns
from autograder.outputs import Case, Check
from cnn_core import functional as ref

DTYPES = (np.float64, np.float32)
GRADS = ("dx", "dw1", "db1", "dw2", "db2")
BN_GRADS = ("dx", "dgamma", "dbeta")


def _fresh(v: Any) -> Any:
    """A copy of an array (the student's code may write into its arguments), a number as is."""
    return v.copy() if isinstance(v, np.ndarray) else v


def _named(value: Any, what: str, names: tuple[str, ...]) -> dict:
    """{name: item} of the tuple `what` returned, checked to hold one item per name."""
    items = returns(value, len(names), what, f"({', '.join(names)})")
    return dict(zip(names, items, strict=True))


def _as_dtype(value: Any, dtype: Any) -> Any:
    """A number in `dtype`, as the notebook's tests compare losses; anything else unchanged."""
    if isinstance(value, (int, float, np.number, np.ndarray)) and not isinstance(value, bool):
        return np.asarray(value, dtype=dtype)
    return value


# --------------------------------------------------------------------------- part 1


def _logistic() -> dict[str, float]:
    """The lecture's graph, computed as the test cell does: x = 1.2, w = 0.5, b = -0.6, y = 1."""
    x, w, b, y = 1.2, 0.5, -0.6, 1.0
    s = 1.0 / (1.0 + math.exp(-(w * x + b)))
    dz = s - y
    return {
        "L_hand": -y * math.log(s) - (1 - y) * math.log(1 - s),
        "dL_dz_hand": dz,
        "dL_dw_hand": dz * x,
        "dL_db_hand": dz,
        "dL_dx_hand": dz * w,
    }


HAND = tuple(_logistic())


# --------------------------------------------------------------------------- part 2


def _elementwise_cases(names: tuple[str, ...], per_dtype: int) -> Callable:
    """`per_dtype` cases of random arrays (1 to 3 axes) per dtype, named `names`, then one case
    of Python floats."""

    def cases(rng: np.random.Generator) -> list[Case]:
        out = []
        for dtype in DTYPES:
            for _ in range(per_dtype):
                shape = tuple(int(n) for n in rng.integers(1, 6, size=int(rng.integers(1, 4))))
                args = {n: rng.normal(size=shape).astype(dtype) for n in names}
                out.append(Case(args, f"{dtype_name(dtype)} arrays of shape {shape}"))
        out.append(Case({n: float(rng.normal()) for n in names}, "Python floats"))
        return out

    return cases


def _gates_run(ns: Mapping[str, Any], case: Case) -> dict:
    a, b, dout = (case.args[n] for n in ("a", "b", "dout"))
    results = {}
    for gate in ("Add", "Multiply"):
        g = ns[gate]()
        results[f"{gate}.forward: out"] = g.forward(_fresh(a), _fresh(b))
        da, db = returns(g.backward(_fresh(dout)), 2, f"{gate}.backward", "(da, db)")
        results[f"{gate}.backward: da"], results[f"{gate}.backward: db"] = da, db
    return results


def _gates_expected(case: Case) -> dict:
    a, b, dout = (case.args[n] for n in ("a", "b", "dout"))
    return {
        "Add.forward: out": np.asarray(a + b),
        "Add.backward: da": np.asarray(dout),
        "Add.backward: db": np.asarray(dout),
        "Multiply.forward: out": np.asarray(a * b),
        "Multiply.backward: da": np.asarray(dout * b),
        "Multiply.backward: db": np.asarray(dout * a),
    }


def _graph_run(ns: Mapping[str, Any], case: Case) -> dict:
    x, y, z, df = (_fresh(case.args[n]) for n in ("x", "y", "z", "df"))
    f, cache = returns(ns["graph_forward"](x, y, z), 2, "graph_forward", "(f, cache)")
    dx, dy, dz = returns(ns["graph_backward"](df, cache), 3, "graph_backward", "(dx, dy, dz)")
    return {"f": f, "dx": dx, "dy": dy, "dz": dz}


def _graph_expected(case: Case) -> dict:
    x, y, z, df = (case.args[n] for n in ("x", "y", "z", "df"))
    return {
        "f": np.asarray((x + y) * (x * z)),
        "dx": np.asarray(df * (x * z) + df * (x + y) * z),
        "dy": np.asarray(df * (x * z)),
        "dz": np.asarray(df * (x + y) * x),
    }


# --------------------------------------------------------------------------- part 3


def _two_layer_cases(rng: np.random.Generator) -> list[Case]:
    """A batch of 1, a random batch and a wider network per dtype, with an upstream dloss."""
    cases = []
    for dtype in DTYPES:
        for what in ("batch of 1", "a random batch", "a wider network"):
            n = 1 if what == "batch of 1" else int(rng.integers(2, 9))
            d, d1, d2 = (int(v) for v in rng.integers(1, 20 if "wider" in what else 8, size=3))
            args = {
                "x": rng.normal(size=(n, d)).astype(dtype),
                "w1": (rng.normal(size=(d, d1)) / np.sqrt(d)).astype(dtype),
                "b1": rng.normal(size=d1).astype(dtype),
                "w2": (rng.normal(size=(d1, d2)) / np.sqrt(d1)).astype(dtype),
                "b2": rng.normal(size=d2).astype(dtype),
                "y": rng.normal(size=(n, d2)).astype(dtype),
                "dloss": float(rng.uniform(0.5, 2.0)),
            }
            wider = ", a wider network" if "wider" in what else ""
            cases.append(Case(args, f"{dtype_name(dtype)}, N={n}, D={d}, D1={d1}, D2={d2}{wider}"))
    return cases


def _two_layer_args(case: Case) -> list:
    """Copies of x, w1, b1, w2, b2 and y."""
    return [case.args[n].copy() for n in ("x", "w1", "b1", "w2", "b2", "y")]


def _two_layer_forward_run(ns: Mapping[str, Any], case: Case) -> dict:
    result = ns["two_layer_forward"](*_two_layer_args(case))
    loss = first(result, "two_layer_forward", "(loss, cache)")
    return {"loss": _as_dtype(loss, case.args["x"].dtype)}


def _two_layer_backward_run(ns: Mapping[str, Any], case: Case) -> dict:
    result = ns["two_layer_forward"](*_two_layer_args(case))
    cache = returns(result, 2, "two_layer_forward", "(loss, cache)")[1]
    grads = ns["two_layer_backward"](case.args["dloss"], cache)
    return _named(grads, "two_layer_backward", GRADS)


def _two_layer_reference(case: Case) -> dict:
    """The loss and the five gradients, from cnn_core's layers."""
    x, w1, b1, w2, b2, y = _two_layer_args(case)
    z1, c1 = ref.linear_forward(x, w1, b1)
    h, c2 = ref.sigmoid_forward(z1)
    yhat, c3 = ref.linear_forward(h, w2, b2)
    loss, dyhat = ref.mse_loss(yhat, y)
    dh, dw2, db2 = ref.linear_backward(dyhat * case.args["dloss"], c3)
    dx, dw1, db1 = ref.linear_backward(ref.sigmoid_backward(dh, c2), c1)
    grads = dict(zip(GRADS, (dx, dw1, db1, dw2, db2), strict=True))
    return {"loss": np.asarray(loss, dtype=x.dtype)} | grads


# --------------------------------------------------------------------------- part 4


SOFTMAX_KINDS = ("batch of 1", "a random batch", "two classes", "large scores", "confident scores")


def _softmax_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    for dtype in DTYPES:
        for what in SOFTMAX_KINDS:
            n = 1 if what == "batch of 1" else int(rng.integers(2, 10))
            k = 2 if what == "two classes" else int(rng.integers(3, 12))
            scale = 15.0 if what == "confident scores" else float(rng.uniform(0.5, 4.0))
            scores = rng.normal(scale=scale, size=(n, k))
            if what == "large scores":
                scores += rng.uniform(200.0, 900.0) * rng.choice([-1.0, 1.0])
            args = {"scores": scores.astype(dtype), "y": rng.integers(0, k, size=n)}
            cases.append(Case(args, f"{dtype_name(dtype)}, {what}, N={n}, K={k}"))
    return cases


def _softmax_run(ns: Mapping[str, Any], case: Case) -> dict:
    scores, y = case.args["scores"], case.args["y"]
    result = ns["softmax_cross_entropy"](scores.copy(), y.copy())
    loss, dscores = returns(result, 2, "softmax_cross_entropy", "(loss, dscores)")
    return {"loss": _as_dtype(loss, scores.dtype), "dscores": dscores}


def _softmax_expected(case: Case) -> dict:
    scores = case.args["scores"]
    loss, dscores = ref.softmax_cross_entropy(scores, case.args["y"])
    return {"loss": np.asarray(loss, dtype=scores.dtype), "dscores": dscores}


# --------------------------------------------------------------------------- part 5


def _bn_inputs(rng: np.random.Generator, n: int, d: int, dtype: Any) -> dict:
    """x (n, d) whose every feature spreads (no ill-conditioned batch), gamma, beta and running
    statistics."""
    z = rng.normal(size=(n, d))
    if n > 1:
        z = (z - z.mean(axis=0)) / z.std(axis=0)
    x = rng.uniform(-3, 3, size=d) + rng.uniform(0.5, 3.0, size=d) * z
    return {
        "x": x.astype(dtype),
        "gamma": rng.uniform(0.5, 2.0, size=d).astype(dtype),
        "beta": rng.normal(size=d).astype(dtype),
        "rm": rng.normal(size=d).astype(dtype),
        "rv": rng.uniform(0.5, 2.0, size=d).astype(dtype),
    }


REFUSAL = "ValueError for a training batch of one"  # the output of the refusal case


def _bn_forward_cases(rng: np.random.Generator) -> list[Case]:
    """A training step (a batch of 2, a random batch, a larger eps), then a test-mode batch
    x_test, in each dtype; last, a training batch of one, which must raise ValueError."""
    cases = []
    for dtype in DTYPES:
        for t, what in enumerate(("", "", ", a larger eps")):
            n = 2 if t == 0 else int(rng.integers(3, 12))
            d = int(rng.integers(1, 7))
            args = _bn_inputs(rng, n, d, dtype) | {
                "momentum": float(rng.uniform(0.5, 0.99)),
                "eps": float(rng.uniform(1e-3, 1e-1)) if what else 1e-5,
            }
            size = (int(rng.integers(1, 6)), d)
            args["x_test"] = rng.normal(loc=rng.uniform(-3, 3), scale=2.0, size=size).astype(dtype)
            cases.append(Case(args, f"{dtype_name(dtype)}, N={n}, D={d}{what}"))
    dtype = DTYPES[int(rng.integers(len(DTYPES)))]
    d = int(rng.integers(1, 7))
    args = _bn_inputs(rng, 1, d, dtype) | {"momentum": 0.9, "eps": 1e-5, "refuse": True}
    cases.append(Case(args, f"{dtype_name(dtype)}, training mode, N=1, D={d}"))
    return cases


def _bn_forward(fn: Callable, a: dict, train: bool) -> dict:
    """out and the running statistics after one call of `fn` in the given mode."""
    rm, rv = a["rm"].copy(), a["rv"].copy()
    x = a["x"] if train else a["x_test"]
    result = fn(
        x.copy(),
        a["gamma"].copy(),
        a["beta"].copy(),
        rm,
        rv,
        train=train,
        momentum=a["momentum"],
        eps=a["eps"],
    )
    mode = "train" if train else "test mode"
    out = first(result, "batchnorm_forward")
    return {f"out ({mode})": out, f"running_mean ({mode})": rm, f"running_var ({mode})": rv}


def _bn_train_then_test(fn: Callable, a: dict) -> dict:
    """A training step, then a test-mode call on x_test, each from the case's running statistics."""
    return _bn_forward(fn, a, True) | _bn_forward(fn, a, False)


def _bn_refuses(fn: Callable, a: dict) -> dict:
    """{REFUSAL: 1} when `fn` raises ValueError on the case's training batch of one, 0 when it
    returns; any other exception propagates, to be reported as what it raised."""
    try:
        _bn_forward(fn, a, True)
    except ValueError:
        return {REFUSAL: np.int64(1)}
    return {REFUSAL: np.int64(0)}


def _bn_forward_run(ns: Mapping[str, Any], case: Case) -> dict:
    if case.args.get("refuse"):
        return _bn_refuses(ns["batchnorm_forward"], case.args)
    return _bn_train_then_test(ns["batchnorm_forward"], case.args)


def _bn_forward_expected(case: Case) -> dict:
    if case.args.get("refuse"):
        return _bn_refuses(ref.batchnorm_forward, case.args)
    return _bn_train_then_test(ref.batchnorm_forward, case.args)


def _bn_forward_explain(case: Case, outputs: dict) -> str:
    """The refusal case's hint: what Part 5 asks of a training batch of one."""
    if case.args.get("refuse") and outputs.get(REFUSAL) is not None:
        return (
            "it returned a result; in training mode a batch of fewer than 2 examples must "
            "raise a ValueError that names the problem (Part 5)"
        )
    return ""


def _bn_backward_cases(rng: np.random.Generator) -> list[Case]:
    """Training mode with a batch of 2 and a random batch, test mode with a random batch and a
    batch of 1, in each dtype."""
    cases = []
    for dtype in DTYPES:
        for train, n in ((True, 2), (True, 0), (False, 0), (False, 1)):
            n = n or int(rng.integers(3, 12))
            d = int(rng.integers(1, 7))
            args = _bn_inputs(rng, n, d, dtype) | {"train": train}
            args["dout"] = rng.normal(size=(n, d)).astype(dtype)
            mode = "training mode" if train else "test mode"
            cases.append(Case(args, f"{dtype_name(dtype)}, {mode}, N={n}, D={d}"))
    return cases


def _bn_backward_run(ns: Mapping[str, Any], case: Case) -> dict:
    a = case.args
    result = ns["batchnorm_forward"](
        a["x"].copy(),
        a["gamma"].copy(),
        a["beta"].copy(),
        a["rm"].copy(),
        a["rv"].copy(),
        train=a["train"],
    )
    cache = returns(result, 2, "batchnorm_forward", "(out, cache)")[1]
    return _named(ns["batchnorm_backward"](a["dout"].copy(), cache), "batchnorm_backward", BN_GRADS)


def _bn_backward_expected(case: Case) -> dict:
    a = case.args
    _, cache = ref.batchnorm_forward(
        a["x"], a["gamma"], a["beta"], a["rm"].copy(), a["rv"].copy(), train=a["train"]
    )
    return dict(zip(BN_GRADS, ref.batchnorm_backward(a["dout"], cache), strict=True))


# --------------------------------------------------------------------------- part 6


def _block_cases(rng: np.random.Generator) -> list[Case]:
    """Each dtype, with and without the skip connection, a batch of 1 and of several."""
    cases = []
    for dtype in DTYPES:
        for skip in (True, False):
            for n in (1, int(rng.integers(2, 9))):
                d = int(rng.integers(1, 9))
                args = {
                    "x": rng.normal(size=(n, d)).astype(dtype),
                    "w": (rng.normal(size=(d, d)) / np.sqrt(d)).astype(dtype),
                    "b": rng.normal(scale=0.5, size=d).astype(dtype),
                    "skip": skip,
                    "dout": rng.normal(size=(n, d)).astype(dtype),
                }
                label = f"{dtype_name(dtype)}, {'with' if skip else 'without'} skip, N={n}, D={d}"
                cases.append(Case(args, label))
    return cases


def _block_forward_run(ns: Mapping[str, Any], case: Case) -> dict:
    a = case.args
    result = ns["block_forward"](a["x"].copy(), a["w"].copy(), a["b"].copy(), skip=a["skip"])
    return {"out": first(result, "block_forward")}


def _block_backward_run(ns: Mapping[str, Any], case: Case) -> dict:
    a = case.args
    result = ns["block_forward"](a["x"].copy(), a["w"].copy(), a["b"].copy(), skip=a["skip"])
    cache = returns(result, 2, "block_forward", "(out, cache)")[1]
    grads = ns["block_backward"](a["dout"].copy(), cache)
    return _named(grads, "block_backward", ("dx", "dw", "db"))


def _block_reference(case: Case) -> dict:
    a = case.args
    z, c1 = ref.linear_forward(a["x"], a["w"], a["b"])
    out, c2 = ref.relu_forward(z)
    dx, dw, db = ref.linear_backward(ref.relu_backward(a["dout"], c2), c1)
    if a["skip"]:
        out, dx = out + a["x"], dx + a["dout"]
    return {"out": out, "dx": dx, "dw": dw, "db": db}


def _pick(names: tuple[str, ...], expected: Callable[[Case], dict]) -> Callable[[Case], dict]:
    """expected(case), restricted to `names`."""
    return lambda case: {n: v for n, v in expected(case).items() if n in names}


TWO_LAYER_FORBID = (
    "linear_forward",
    "linear_backward",
    "sigmoid_forward",
    "sigmoid_backward",
    "mse_loss",
)
BN_FORBID = (
    "batchnorm_forward",
    "batchnorm_backward",
    "batchnorm2d_forward",
    "batchnorm2d_backward",
)
# seconds a cell may run when graded: every cell of the solution takes well under one
CELL_TIMEOUT = 60.0
CHECKS = [
    answers(
        "test_hand_answers",
        {name: (lambda name=name: _logistic()[name]) for name in HAND},
        atol=dict.fromkeys(HAND, 1e-3),
    ),
    Check(
        "test_gates",
        "Add / Multiply",
        _elementwise_cases(("a", "b", "dout"), 3),
        _gates_run,
        _gates_expected,
    ),
    Check(
        "test_graph",
        "graph_forward / graph_backward",
        _elementwise_cases(("x", "y", "z", "df"), 2),
        _graph_run,
        _graph_expected,
    ),
    Check(
        "test_two_layer_forward",
        "two_layer_forward",
        _two_layer_cases,
        _two_layer_forward_run,
        _pick(("loss",), _two_layer_reference),
        forbid=("linear_forward", "sigmoid_forward", "mse_loss"),
    ),
    Check(
        "test_two_layer_backward",
        "two_layer_backward",
        _two_layer_cases,
        _two_layer_backward_run,
        _pick(GRADS, _two_layer_reference),
        forbid=TWO_LAYER_FORBID,
    ),
    Check(
        "test_softmax_cross_entropy",
        "softmax_cross_entropy",
        _softmax_cases,
        _softmax_run,
        _softmax_expected,
        forbid=("softmax_cross_entropy",),
    ),
    Check(
        "test_batchnorm_forward",
        "batchnorm_forward",
        _bn_forward_cases,
        _bn_forward_run,
        _bn_forward_expected,
        forbid=BN_FORBID,
        explain=_bn_forward_explain,
    ),
    Check(
        "test_batchnorm_backward",
        "batchnorm_backward",
        _bn_backward_cases,
        _bn_backward_run,
        _bn_backward_expected,
        forbid=BN_FORBID,
    ),
    Check(
        "test_block_forward",
        "block_forward",
        _block_cases,
        _block_forward_run,
        _pick(("out",), _block_reference),
        forbid=("linear_forward", "relu_forward"),
    ),
    Check(
        "test_block_backward",
        "block_backward",
        _block_cases,
        _block_backward_run,
        _pick(("dx", "dw", "db"), _block_reference),
        forbid=("linear_forward", "linear_backward", "relu_forward", "relu_backward"),
    ),
]
