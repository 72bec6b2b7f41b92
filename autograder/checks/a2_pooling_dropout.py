"""Output checks of a2_pooling_dropout: every autograded test cell (pooling, activations, dropout),
on hidden per-student cases (see autograder.outputs).

Dropout is random, but the notebook fixes how the mask is drawn (`rng.random(x.shape) >= p`, one
call, from the Generator or from `np.random.default_rng(seed)`) and its hidden tests compare the
masks with `cnn_core`'s exactly: so do these checks. One case adds the statistics of a large
input, which hold whatever the draws.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from autograder.checks.common import dtype_name, first, returns
from autograder.outputs import Case, Check
from cnn_core import functional as ref

WHOLE = "whole map"  # a window as large as the map
STATS_UNITS = 200_000  # units of the dropout statistics case


def _pair(v: Any) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


# --------------------------------------------------------------------------- pooling


def _pool_case(rng: np.random.Generator, k: Any, s: Any, n1: bool, dtype: Any, how: str) -> Case:
    """One pooling case: x (N, C, H, W), the window `k`, the stride `s` and a dout; `how` may
    hold "ties" (small integers, so that windows hold their maximum twice) and "view"
    (a non-contiguous x)."""
    n, c = 1 if n1 else int(rng.integers(2, 4)), int(rng.integers(1, 4))
    kh, kw = (2, 2) if k == WHOLE else _pair(k)
    h, w = int(rng.integers(kh, kh + 9)), int(rng.integers(kw, kw + 9))
    kernel = (h, w) if k == WHOLE else k
    shape = (n, c, w, h) if "view" in how else (n, c, h, w)
    if "ties" in how:
        base = rng.integers(0, 3, shape).astype(dtype)
    else:
        base = rng.standard_normal(shape).astype(dtype)
    x = np.swapaxes(base, 2, 3) if "view" in how else base
    (kh, kw), (sh, sw) = _pair(kernel), _pair(kernel if s is None else s)
    dout = rng.standard_normal((n, c, (h - kh) // sh + 1, (w - kw) // sw + 1)).astype(dtype)
    window = "a whole-map window" if k == WHOLE else f"kernel_size={k}"
    label = (
        f"{dtype_name(dtype)}, x of shape {(n, c, h, w)}, {window}, "
        + ("default stride" if s is None else f"stride={s}")
        + (", tied values" if "ties" in how else "")
        + (", non-contiguous x" if "view" in how else "")
    )
    return Case({"x": x, "k": kernel, "s": s, "dout": dout}, label)


def _pool_cases(
    configs: list[tuple[Any, Any]], batch1: tuple[int, ...], f32: int, how: Callable[[int], str]
) -> Callable[[np.random.Generator], list[Case]]:
    """Cases over `configs` (kernel_size, stride): a batch of 1 at the indices `batch1`, float32
    where index % 2 == f32, and how(index) saying which cases have ties or a non-contiguous x."""

    def cases(rng: np.random.Generator) -> list[Case]:
        return [
            _pool_case(rng, k, s, t in batch1, np.float32 if t % 2 == f32 else np.float64, how(t))
            for t, (k, s) in enumerate(configs)
        ]

    return cases


def _pool_forward(name: str, op: Callable) -> tuple[Callable, Callable]:
    """run and expected of the forward pass `name` of the reference `op`."""

    def run(ns: Mapping[str, Any], case: Case) -> dict:
        a = case.args
        return {"out": first(ns[name](a["x"], a["k"], stride=a["s"]), name)}

    def expected(case: Case) -> dict:
        return {"out": op(case.args["x"], case.args["k"], stride=case.args["s"])[0]}

    return run, expected


def _pool_backward(name: str, op: Callable, op_backward: Callable) -> tuple[Callable, Callable]:
    """run and expected of the student's forward `name`_forward, then `name`_backward with the
    student's own cache."""

    def run(ns: Mapping[str, Any], case: Case) -> dict:
        a = case.args
        result = ns[f"{name}_forward"](a["x"], a["k"], stride=a["s"])
        cache = returns(result, 2, f"{name}_forward", "(out, cache)")[1]
        return {"dx": ns[f"{name}_backward"](a["dout"], cache)}

    def expected(case: Case) -> dict:
        a = case.args
        _, cache = op(a["x"], a["k"], stride=a["s"])
        return {"dx": op_backward(a["dout"], cache)}

    return run, expected


# (kernel_size, stride) of each case, as in the notebook's hidden tests
MAXPOOL_FORWARD = [(2, None), (3, 2), (2, 1), ((2, 3), None), (3, (1, 2)), ((3, 2), (2, 3)), (2, 3)]
MAXPOOL_FORWARD += [(1, None), (WHOLE, None)]
MAXPOOL_BACKWARD = [(3, 2), (2, None), ((3, 3), 1), ((2, 4), (2, 1)), (3, 3), ((1, 3), None)]
MAXPOOL_BACKWARD += [(3, (2, 1)), (WHOLE, None)]
AVGPOOL_FORWARD = [(2, None), (3, 2), (2, 1), ((3, 2), None), ((2, 3), (1, 3)), (3, 3)]
AVGPOOL_FORWARD += [(WHOLE, None)]
AVGPOOL_BACKWARD = [(3, 2), (2, None), ((2, 2), 1), ((3, 2), (1, 2)), (2, 3), ((1, 4), None)]
AVGPOOL_BACKWARD += [(WHOLE, None)]
MAX_FORBID = ("maxpool2d_forward", "maxpool2d_backward")
AVG_FORBID = ("avgpool2d_forward", "avgpool2d_backward")


def _global_cases(rng: np.random.Generator) -> list[Case]:
    """Global average pooling: a batch of 1, a 1x1 map, then random shapes; last, a float32 x
    with a float64 dout (dx keeps x's dtype, as in cnn_core)."""
    cases = []
    for t in range(6):
        n, c = (1 if t == 0 else int(rng.integers(2, 5))), int(rng.integers(1, 6))
        h, w = (1, 1) if t == 1 else (int(rng.integers(1, 10)), int(rng.integers(1, 10)))
        dtype = np.float32 if t % 2 else np.float64
        args = {
            "x": rng.standard_normal((n, c, h, w)).astype(dtype),
            "dout": rng.standard_normal((n, c)).astype(dtype),
        }
        cases.append(Case(args, f"{dtype_name(dtype)}, x of shape {(n, c, h, w)}"))
    n, c, h, w = (int(d) for d in rng.integers(1, 6, size=4))
    args = {
        "x": rng.standard_normal((n, c, h, w)).astype(np.float32),
        "dout": rng.standard_normal((n, c)),
    }
    cases.append(Case(args, f"float32, x of shape {(n, c, h, w)}, float64 dout"))
    return cases


def _global_run(ns: Mapping[str, Any], case: Case) -> dict:
    a = case.args
    result = ns["global_avgpool_forward"](a["x"])
    out, cache = returns(result, 2, "global_avgpool_forward", "(out, cache)")
    return {"out": out, "dx": ns["global_avgpool_backward"](a["dout"], cache)}


def _global_expected(case: Case) -> dict:
    out, cache = ref.global_avgpool2d_forward(case.args["x"])
    return {"out": out, "dx": ref.global_avgpool2d_backward(case.args["dout"], cache)}


# --------------------------------------------------------------------------- activations


def _act_cases(f32: int, draw: Callable[[np.random.Generator, int], tuple[float, dict, str]]):
    """Six elementwise cases of random shape (1 to 4 axes), float32 where index % 2 == f32;
    draw(rng, index) gives the scale of x, the keyword arguments and what the label adds."""

    def cases(rng: np.random.Generator) -> list[Case]:
        out = []
        for t in range(6):
            shape = tuple(int(d) for d in rng.integers(1, 7, size=int(rng.integers(1, 5))))
            dtype = np.float32 if t % 2 == f32 else np.float64
            scale, kwargs, what = draw(rng, t)
            x = (scale * rng.standard_normal(shape)).astype(dtype)
            if "zeros" in what:  # exact zeros: the kink
                x.flat[rng.integers(0, x.size, size=max(1, x.size // 5))] = 0.0
            dout = rng.standard_normal(shape).astype(dtype)
            label = f"{dtype_name(dtype)}, x of shape {shape}, {what}"
            out.append(Case({"x": x, "dout": dout, "kwargs": kwargs}, label))
        return out

    return cases


def _kink(rng: np.random.Generator, t: int) -> tuple[float, dict, str]:
    return 3.0, {}, "some exact zeros"


def _alpha(low: float, high: float) -> Callable[[np.random.Generator, int], tuple]:
    """Case 0 with the default alpha, the others with a drawn one; all with exact zeros."""

    def draw(rng: np.random.Generator, t: int) -> tuple[float, dict, str]:
        if t == 0:
            return 3.0, {}, "some exact zeros, default alpha"
        alpha = round(float(rng.uniform(low, high)), 3)
        return 3.0, {"alpha": alpha}, f"some exact zeros, alpha {alpha}"

    return draw


def _saturating(large: float, moderate: float) -> Callable[[np.random.Generator, int], tuple]:
    """Moderate inputs, then (cases 4 and 5) large ones, where the function saturates."""
    return lambda rng, t: (
        (large, {}, "large inputs") if t >= 4 else (moderate, {}, "moderate inputs")
    )


def _act(name: str, f32: int, draw: Callable) -> Check:
    """The check of the pair name_forward / name_backward against cnn_core's."""
    forward, backward = getattr(ref, f"{name}_forward"), getattr(ref, f"{name}_backward")

    def run(ns: Mapping[str, Any], case: Case) -> dict:
        a = case.args
        result = ns[f"{name}_forward"](a["x"], **a["kwargs"])
        out, cache = returns(result, 2, f"{name}_forward", "(out, cache)")
        return {"out": out, "dx": ns[f"{name}_backward"](a["dout"], cache)}

    def expected(case: Case) -> dict:
        out, cache = forward(case.args["x"], **case.args["kwargs"])
        return {"out": out, "dx": backward(case.args["dout"], cache)}

    return Check(
        f"test_{name}",
        f"{name}_forward / {name}_backward",
        _act_cases(f32, draw),
        run,
        expected,
        forbid=(f"{name}_forward", f"{name}_backward"),
    )


# --------------------------------------------------------------------------- dropout


def _dropout_cases(rng: np.random.Generator) -> list[Case]:
    """Six inputs of random shape, p = 0.5, then 0, then drawn, each with a seed; then the
    statistics case: p drawn, a large input of ones, within six standard deviations."""
    cases = []
    for t in range(6):
        shape = tuple(int(d) for d in rng.integers(1, 8, size=int(rng.integers(1, 5))))
        dtype = np.float32 if t % 2 else np.float64
        p = [0.5, 0.0][t] if t < 2 else round(float(rng.uniform(0.05, 0.9)), 3)
        seed = int(rng.integers(2**31))
        args = {"x": rng.standard_normal(shape).astype(dtype), "p": p, "seed": seed}
        cases.append(Case(args, f"{dtype_name(dtype)}, x of shape {shape}, p = {p}"))
    p = round(float(rng.uniform(0.1, 0.9)), 3)
    atol = 6 * float(np.sqrt(p * (1 - p) / STATS_UNITS))
    args = {"n": STATS_UNITS, "p": p, "seed": int(rng.integers(2**31)), "atol": atol}
    cases.append(Case(args, f"float64, {STATS_UNITS:,} ones, p = {p} (statistics)"))
    return cases


def _dropout_forward_run(ns: Mapping[str, Any], case: Case) -> dict:
    """A seed; a Generator twice (the second call continues its stream); train=False. For the
    statistics case: the share of units kept and the smallest and largest kept value."""
    a, forward = case.args, ns["dropout_forward"]
    if "n" in a:
        out = first(forward(np.ones(a["n"]), a["p"], rng=a["seed"]), "dropout_forward")
        kept = out[out != 0]
        return {"kept_share": kept.size / out.size, "kept_min": kept.min(), "kept_max": kept.max()}
    x, p, seed = a["x"], a["p"], a["seed"]
    gen = np.random.default_rng(seed)
    return {
        "out with an int seed": first(forward(x.copy(), p, rng=seed), "dropout_forward"),
        "out with a Generator": first(forward(x.copy(), p, train=True, rng=gen), "dropout_forward"),
        "out of a second call with the same Generator": first(
            forward(x.copy(), p, rng=gen), "dropout_forward"
        ),
        "out with train=False": first(
            forward(x.copy(), p, train=False, rng=gen), "dropout_forward"
        ),
    }


def _dropout_forward_expected(case: Case) -> dict:
    a = case.args
    if "n" in a:
        scale = 1 / (1 - a["p"])
        return {"kept_share": 1 - a["p"], "kept_min": scale, "kept_max": scale}
    x, p, gen = a["x"], a["p"], np.random.default_rng(a["seed"])
    return {
        "out with an int seed": ref.dropout_forward(x, p, rng=a["seed"])[0],
        "out with a Generator": ref.dropout_forward(x, p, rng=gen)[0],
        "out of a second call with the same Generator": ref.dropout_forward(x, p, rng=gen)[0],
        "out with train=False": x,
    }


def _dropout_explain(case: Case, outputs: dict[str, np.ndarray]) -> str:
    """What a wrong dropout output most likely gets wrong: the scaling of the kept units first
    (it decides every expected value), then which units are dropped."""
    a = case.args
    scale = 1 / (1 - a["p"])
    if "n" in a:  # the statistics case: outputs are the kept share and the kept values
        kept = float(outputs.get("kept_min", np.nan))
        if not np.isclose(kept, scale):
            return _scaling(kept, scale)
        return f"a share of {float(outputs['kept_share']):.3f} of the units is kept, not 1 - p"
    out, x = outputs["out with an int seed"], a["x"]
    kept = (out != 0) & (x != 0)
    if kept.any():
        ratio = float(np.median(out[kept] / x[kept]))
        if not np.isclose(ratio, scale, rtol=1e-3):
            return _scaling(ratio, scale)
    mask = np.random.default_rng(a["seed"]).random(x.shape) >= a["p"]
    if not np.array_equal(out != 0, mask & (x != 0)):
        return (
            "other units are dropped than the notebook's convention drops: draw the mask in one "
            "call, keep = rng.random(x.shape) >= p, from the Generator (or the seed's)"
        )
    return ""


def _scaling(found: float, scale: float) -> str:
    return (
        f"kept units are multiplied by {found:.4g}; inverted dropout multiplies them by "
        f"1 / (1 - p) = {scale:.4g}"
    )


def _dropout_backward_cases(rng: np.random.Generator) -> list[Case]:
    """Five training cases and one test-time case with an int seed, then one training case whose
    rng is a Generator (a backward pass that redraws the mask gets it wrong), then a training case
    of a float32 x with a float64 dout (dx keeps x's dtype, as in cnn_core)."""
    cases = []
    for t in range(7):
        shape = tuple(int(d) for d in rng.integers(1, 8, size=int(rng.integers(1, 5))))
        dtype = np.float64 if t % 2 else np.float32
        p = round(float(rng.uniform(0.05, 0.9)), 3)
        args = {
            "p": p,
            "train": t != 1,
            "seed": int(rng.integers(2**31)),
            "generator": t == 6,
            "x": rng.standard_normal(shape).astype(dtype),
            "dout": rng.standard_normal(shape).astype(dtype),
        }
        mode = ("train" if t != 1 else "train=False") + (", rng a Generator" if t == 6 else "")
        cases.append(Case(args, f"{dtype_name(dtype)}, x of shape {shape}, p = {p}, {mode}"))
    shape = tuple(int(d) for d in rng.integers(1, 8, size=int(rng.integers(1, 5))))
    p = round(float(rng.uniform(0.05, 0.9)), 3)
    args = {
        "p": p,
        "train": True,
        "seed": int(rng.integers(2**31)),
        "generator": False,
        "x": rng.standard_normal(shape).astype(np.float32),
        "dout": rng.standard_normal(shape),
    }
    cases.append(Case(args, f"float32, x of shape {shape}, float64 dout, p = {p}, train"))
    return cases


def _dropout_rng(a: dict) -> Any:
    return np.random.default_rng(a["seed"]) if a["generator"] else a["seed"]


def _dropout_backward_run(ns: Mapping[str, Any], case: Case) -> dict:
    a = case.args
    result = ns["dropout_forward"](a["x"], a["p"], train=a["train"], rng=_dropout_rng(a))
    cache = returns(result, 2, "dropout_forward", "(out, cache)")[1]
    return {"dx": ns["dropout_backward"](a["dout"], cache)}


def _dropout_backward_expected(case: Case) -> dict:
    a = case.args
    _, cache = ref.dropout_forward(a["x"], a["p"], train=a["train"], rng=_dropout_rng(a))
    return {"dx": ref.dropout_backward(a["dout"], cache)}


DROPOUT_FORBID = ("dropout_forward", "dropout_backward")
# seconds a cell may run when graded: every cell of the solution takes well under one
CELL_TIMEOUT = 60.0
CHECKS = [
    Check(
        "test_maxpool_forward",
        "maxpool_forward",
        _pool_cases(
            MAXPOOL_FORWARD,
            (0, 5),
            1,
            lambda t: ("ties" if t % 3 == 1 else "") + " view" * (t == 6),
        ),
        *_pool_forward("maxpool_forward", ref.maxpool2d_forward),
        forbid=MAX_FORBID,
    ),
    Check(
        "test_maxpool_backward",
        "maxpool_backward",
        _pool_cases(MAXPOOL_BACKWARD, (1, 4), 0, lambda t: "ties" if t % 2 == 0 else ""),
        *_pool_backward("maxpool", ref.maxpool2d_forward, ref.maxpool2d_backward),
        forbid=MAX_FORBID,
    ),
    Check(
        "test_avgpool_forward",
        "avgpool_forward",
        _pool_cases(AVGPOOL_FORWARD, (2,), 1, lambda t: ""),
        *_pool_forward("avgpool_forward", ref.avgpool2d_forward),
        forbid=AVG_FORBID,
    ),
    Check(
        "test_avgpool_backward",
        "avgpool_backward",
        _pool_cases(AVGPOOL_BACKWARD, (1,), 0, lambda t: ""),
        *_pool_backward("avgpool", ref.avgpool2d_forward, ref.avgpool2d_backward),
        forbid=AVG_FORBID,
    ),
    Check(
        "test_global_avgpool",
        "global_avgpool_forward / global_avgpool_backward",
        _global_cases,
        _global_run,
        _global_expected,
        forbid=AVG_FORBID + ("global_avgpool2d_forward", "global_avgpool2d_backward"),
    ),
    _act("relu", 1, _kink),
    _act("leaky_relu", 0, _alpha(0.01, 0.4)),
    _act("elu", 1, _alpha(0.2, 2.0)),
    _act("sigmoid", 0, _saturating(40.0, 3.0)),
    _act("tanh", 1, _saturating(20.0, 2.0)),
    Check(
        "test_dropout_forward",
        "dropout_forward",
        _dropout_cases,
        _dropout_forward_run,
        _dropout_forward_expected,
        forbid=DROPOUT_FORBID,
        explain=_dropout_explain,
    ),
    Check(
        "test_dropout_backward",
        "dropout_backward",
        _dropout_backward_cases,
        _dropout_backward_run,
        _dropout_backward_expected,
        forbid=DROPOUT_FORBID,
    ),
]
