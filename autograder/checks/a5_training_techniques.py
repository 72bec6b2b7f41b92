"""Checks of a5_training_techniques: the functions students write (the initial loss, the fans
and initialisers, the activation statistics of a linear stack, spatial batch normalisation, the
first-layer filters and feature maps) on hidden per-student cases, and the five experiments'
curve files (see autograder.curves): each replayed from the notebook's code and checked by its
test cell in a trusted process.

Expected values come from cnn_core (softmax_cross_entropy, cnn_core.init, batchnorm2d_*, the nn
layers) or, for the statistics of a linear stack, from the formula of the notebook's docstring.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from autograder.checks.common import dtype_name, first, returns
from autograder.curves import CurveSpec, history_export
from autograder.outputs import Case, Check
from cnn_core import functional as ref
from cnn_core import init as reference_init
from cnn_core import nn

DTYPES = (np.float64, np.float32)
BN_GRADS = ("dx", "dgamma", "dbeta")
BN_FORBID = (
    "batchnorm_forward",
    "batchnorm_backward",
    "batchnorm2d_forward",
    "batchnorm2d_backward",
)
INIT_FORBID = (
    "fan_in_out",
    "gaussian",
    "xavier_uniform",
    "xavier_normal",
    "he_uniform",
    "he_normal",
)
INITIALISERS = {
    "gaussian_init": reference_init.gaussian,
    "xavier_init": reference_init.xavier_normal,
    "he_init": reference_init.he_normal,
}

# --------------------------------------------------------------------------- part 1


def _loss_cases(rng: np.random.Generator) -> list[Case]:
    """Per dtype: a batch of 1, a random batch with large scores (a softmax that must not
    overflow), and a model with dropout (the loss is measured in evaluation mode)."""
    cases = []
    for dtype in DTYPES:
        for what in ("a batch of 1", "large scores", "a model with dropout"):
            n = 1 if what == "a batch of 1" else int(rng.integers(2, 12))
            d, k = int(rng.integers(2, 12)), int(rng.integers(2, 11))
            scale = 200.0 if what == "large scores" else 1.0
            args = {
                "x": rng.normal(size=(n, 1, 1, d)).astype(dtype),
                "y": rng.integers(0, k, size=n),
                "w": (scale * rng.normal(size=(d, k))).astype(dtype),
                "b": rng.normal(size=k).astype(dtype),
                "dropout": what == "a model with dropout",
            }
            cases.append(Case(args, f"{dtype_name(dtype)}, {what}, N={n}, {k} classes"))
    return cases


def _loss_model(a: Mapping[str, Any]) -> nn.Sequential:
    """Flatten -> [Dropout] -> Linear holding the case's weights."""
    d, k = a["w"].shape
    linear = nn.Linear(d, k, init="zeros", dtype=a["w"].dtype)
    linear.weight.data[...] = a["w"]
    linear.bias.data[...] = a["b"]
    middle = [nn.Dropout(0.5, rng=0)] if a["dropout"] else []
    return nn.Sequential(nn.Flatten(), *middle, linear)


def _loss_run(ns: Mapping[str, Any], case: Case) -> dict:
    a = case.args
    loss = ns["initial_loss"](_loss_model(a), a["x"].copy(), a["y"].copy())
    if isinstance(loss, (int, float, np.number)) and not isinstance(loss, bool):
        loss = np.asarray(loss, dtype=a["x"].dtype)
    return {"loss": loss}


def _loss_expected(case: Case) -> dict:
    a = case.args
    scores = a["x"].reshape(len(a["x"]), -1) @ a["w"] + a["b"]
    loss, _ = ref.softmax_cross_entropy(scores.astype(np.float64), a["y"])
    return {"loss": np.asarray(loss, dtype=a["x"].dtype)}


# --------------------------------------------------------------------------- part 2


def _init_cases(rng: np.random.Generator) -> list[Case]:
    """Per dtype, a fully connected and a convolution weight shape, each with its own seed."""
    cases = []
    for dtype in DTYPES:
        for kind in ("fully connected", "convolution"):
            if kind == "fully connected":
                shape = tuple(int(v) for v in rng.integers(1, 60, size=2))
            else:
                k = int(rng.choice([1, 3, 5]))
                shape = (int(rng.integers(1, 17)), int(rng.integers(1, 9)), k, k)
            args = {"shape": shape, "seed": int(rng.integers(2**31)), "dtype": np.dtype(dtype).name}
            cases.append(Case(args, f"{dtype_name(dtype)}, a {kind} weight of shape {shape}"))
    return cases


def _init_run(ns: Mapping[str, Any], case: Case) -> dict:
    a = case.args
    fan_in, fan_out = returns(ns["fans"](a["shape"]), 2, "fans", "(fan_in, fan_out)")
    out: dict[str, Any] = {"fans": np.asarray([fan_in, fan_out], dtype=np.int64)}
    for name in INITIALISERS:
        out[name] = ns[name](a["shape"], np.random.default_rng(a["seed"]), dtype=a["dtype"])
    return out


def _init_expected(case: Case) -> dict:
    a = case.args
    out: dict[str, Any] = {"fans": np.asarray(reference_init.fan_in_out(a["shape"]), np.int64)}
    for name, init in INITIALISERS.items():
        out[name] = init(a["shape"], np.random.default_rng(a["seed"]), dtype=a["dtype"])
    return out


def _stats_cases(rng: np.random.Generator) -> list[Case]:
    """Per nonlinearity: one layer, and a random stack of 2 to 6 layers."""
    cases = []
    for nonlinearity in ("relu", "tanh"):
        for layers in (1, int(rng.integers(2, 7))):
            widths = [int(v) for v in rng.integers(1, 13, size=layers + 1)]
            args = {
                "x": rng.normal(size=(int(rng.integers(1, 20)), widths[0])),
                "nonlinearity": nonlinearity,
            } | {
                f"w{i}": rng.normal(size=(a, b)) / np.sqrt(a)
                for i, (a, b) in enumerate(itertools.pairwise(widths))
            }
            cases.append(Case(args, f"{nonlinearity}, {layers} layer{'s' * (layers > 1)}"))
    return cases


def _weights(a: Mapping[str, Any]) -> list[np.ndarray]:
    return [a[f"w{i}"].copy() for i in range(sum(k.startswith("w") for k in a))]


def _stats_run(ns: Mapping[str, Any], case: Case) -> dict:
    a = case.args
    result = ns["layer_stats"](a["x"].copy(), _weights(a), a["nonlinearity"])
    means, stds = returns(result, 2, "layer_stats", "(means, stds)")
    return {"means": means, "stds": stds}


def _stats_expected(case: Case) -> dict:
    a = case.args
    f = (lambda z: np.maximum(z, 0)) if a["nonlinearity"] == "relu" else np.tanh
    h, means, stds = a["x"], [], []
    for w in _weights(a):
        h = f(h @ w)
        means.append(h.mean())
        stds.append(h.std())
    return {"means": np.asarray(means, np.float64), "stds": np.asarray(stds, np.float64)}


# --------------------------------------------------------------------------- part 3


def _sbn_inputs(rng: np.random.Generator, dtype: Any, train: bool) -> tuple[dict, str]:
    """x (N, C, H, W) whose every channel spreads, gamma, beta, running statistics, dout."""
    n = int(rng.integers(1, 5))
    c, h, w = (int(v) for v in rng.integers(1, 6, size=3))
    if train and n * h * w < 2:
        w = 2
    z = rng.normal(size=(n, c, h, w))
    x = rng.uniform(-3, 3, size=(1, c, 1, 1)) + rng.uniform(0.5, 3.0, size=(1, c, 1, 1)) * z
    args = {
        "x": x.astype(dtype),
        "gamma": rng.uniform(0.5, 2.0, size=c).astype(dtype),
        "beta": rng.normal(size=c).astype(dtype),
        "rm": rng.normal(size=c).astype(dtype),
        "rv": rng.uniform(0.5, 2.0, size=c).astype(dtype),
        "momentum": float(rng.uniform(0.5, 0.99)),
        "eps": float(rng.uniform(1e-3, 1e-1)),
        "train": train,
        "dout": rng.normal(size=(n, c, h, w)).astype(dtype),
    }
    mode = "training mode" if train else "test mode"
    return args, f"{dtype_name(dtype)}, {mode}, x of shape {(n, c, h, w)}"


def _sbn_cases(rng: np.random.Generator) -> list[Case]:
    """Per dtype, two cases in training mode and one in test mode."""
    return [
        Case(*_sbn_inputs(rng, dtype, train)) for dtype in DTYPES for train in (True, True, False)
    ]


def _sbn_forward(fn: Callable, a: Mapping[str, Any]) -> tuple[Any, dict]:
    """(what `fn` returned, and the running statistics after the call)."""
    rm, rv = a["rm"].copy(), a["rv"].copy()
    result = fn(
        a["x"].copy(),
        a["gamma"].copy(),
        a["beta"].copy(),
        rm,
        rv,
        train=a["train"],
        momentum=a["momentum"],
        eps=a["eps"],
    )
    return result, {"running_mean": rm, "running_var": rv}


def _sbn_forward_run(ns: Mapping[str, Any], case: Case) -> dict:
    result, running = _sbn_forward(ns["spatial_batchnorm_forward"], case.args)
    return {"out": first(result, "spatial_batchnorm_forward")} | running


def _sbn_forward_expected(case: Case) -> dict:
    (out, _), running = _sbn_forward(ref.batchnorm2d_forward, case.args)
    return {"out": out} | running


def _sbn_backward_run(ns: Mapping[str, Any], case: Case) -> dict:
    result, _ = _sbn_forward(ns["spatial_batchnorm_forward"], case.args)
    cache = returns(result, 2, "spatial_batchnorm_forward", "(out, cache)")[1]
    grads = ns["spatial_batchnorm_backward"](case.args["dout"].copy(), cache)
    return dict(
        zip(
            BN_GRADS,
            returns(grads, 3, "spatial_batchnorm_backward", "(dx, dgamma, dbeta)"),
            strict=True,
        )
    )


def _sbn_backward_expected(case: Case) -> dict:
    (_, cache), _ = _sbn_forward(ref.batchnorm2d_forward, case.args)
    return dict(zip(BN_GRADS, ref.batchnorm2d_backward(case.args["dout"], cache), strict=True))


# --------------------------------------------------------------------------- part 6


def _inside_cases(rng: np.random.Generator) -> list[Case]:
    """Random small CNNs (with dropout, so evaluation mode matters), a batch, and a depth."""
    cases = []
    for _ in range(3):
        f, k = int(rng.integers(1, 9)), int(rng.choice([3, 5]))
        args = {
            "seed": int(rng.integers(2**31)),
            "filters": f,
            "k": k,
            "x": rng.normal(size=(int(rng.integers(1, 4)), 1, 12, 12)).astype(np.float32),
            "layers": int(rng.integers(1, 8)),
        }
        cases.append(Case(args, f"{f} filters of {k}x{k}, the first {args['layers']} layers"))
    return cases


def _inside_model(a: Mapping[str, Any]) -> nn.Sequential:
    rng = np.random.default_rng(a["seed"])
    f, k = a["filters"], a["k"]
    return nn.Sequential(
        nn.Conv2d(1, f, k, padding=k // 2, init="he_normal", rng=rng),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Dropout(0.5, rng=rng),
        nn.Conv2d(f, 2, 3, padding=1, init="he_normal", rng=rng),
        nn.ReLU(),
        nn.Flatten(),
    )


def _inside_run(ns: Mapping[str, Any], case: Case) -> dict:
    a = case.args
    model = _inside_model(a)
    return {
        "first_layer_filters": ns["first_layer_filters"](model),
        "feature_maps": ns["feature_maps"](model, a["x"].copy(), a["layers"]),
    }


def _inside_expected(case: Case) -> dict:
    a = case.args
    model = _inside_model(a).eval()
    out = a["x"]
    for layer in list(model)[: a["layers"]]:
        out = layer(out)
    filters = np.asarray(model[0].weight.data[:, 0], dtype=np.float64)
    return {"first_layer_filters": filters, "feature_maps": out}


# seconds a cell may run when graded: an experiment cell replays its fits' first iterations only
CELL_TIMEOUT = 300.0
CHECKS = [
    Check(
        "test_initial_loss",
        "initial_loss",
        _loss_cases,
        _loss_run,
        _loss_expected,
        forbid=("softmax_cross_entropy",),
    ),
    Check(
        "test_initialisers",
        "fans / gaussian_init / xavier_init / he_init",
        _init_cases,
        _init_run,
        _init_expected,
        forbid=INIT_FORBID,
    ),
    Check("test_layer_stats", "layer_stats", _stats_cases, _stats_run, _stats_expected),
    Check(
        "test_spatial_batchnorm_forward",
        "spatial_batchnorm_forward",
        _sbn_cases,
        _sbn_forward_run,
        _sbn_forward_expected,
        forbid=BN_FORBID,
    ),
    Check(
        "test_spatial_batchnorm_backward",
        "spatial_batchnorm_backward",
        _sbn_cases,
        _sbn_backward_run,
        _sbn_backward_expected,
        forbid=BN_FORBID,
    ),
    Check(
        "test_looking_inside",
        "first_layer_filters / feature_maps",
        _inside_cases,
        _inside_run,
        _inside_expected,
    ),
]
CURVES = (
    CurveSpec(
        items=("test_overfit",), file="overfit.json", figure="overfit_run", variable="overfit"
    ),
    *(
        CurveSpec(
            items=(f"test_{name}",),
            file=f"{name}.json",
            figure=f"{name}_run",
            variable=name,
            runs=True,
        )
        for name in ("init_runs", "batchnorm_runs", "regularisation_runs", "schedule_runs")
    ),
)
EXPORTS = {spec.export: history_export(spec) for spec in CURVES}
