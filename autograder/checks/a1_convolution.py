"""Output checks of a1_convolution: every graded function and every answer variable, on hidden
per-student cases (see autograder.outputs)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from autograder.checks.common import answers, first, returns
from autograder.outputs import Case, Check
from cnn_core import arith, zoo
from cnn_core import functional as ref
from cnn_core.grading import TOLERANCES

DTYPES = (np.float64, np.float32)


def _conv_geometry(rng: np.random.Generator, fixed: dict, t: int, max_k: int = 5) -> dict:
    """Shapes, stride and padding of one convolution case; `fixed` overrides drawn values, and
    `fixed["oblong"]` makes both the input and the filter non-square."""
    g = {
        "dtype": DTYPES[t % 2],
        "N": fixed.get("N", int(rng.integers(1, 4))),
        "C": int(rng.integers(1, 4)),
        "F": int(rng.integers(1, 5)),
        "H": int(rng.integers(3, 10)),
        "W": int(rng.integers(3, 10)),
        "S": fixed.get("S", int(rng.integers(1, 4))),
        "P": fixed.get("P", int(rng.integers(0, 3))),
    }
    if fixed.get("oblong") and g["W"] == g["H"]:
        g["W"] = g["H"] + int(rng.integers(1, 4))
    g["KH"] = int(rng.integers(1, min(max_k, g["H"] + 2 * g["P"]) + 1))
    widths = range(1, min(max_k, g["W"] + 2 * g["P"]) + 1)
    if fixed.get("oblong"):
        widths = [k for k in widths if k != g["KH"]]
    g["KW"] = int(rng.choice(widths))
    g["OH"] = (g["H"] + 2 * g["P"] - g["KH"]) // g["S"] + 1
    g["OW"] = (g["W"] + 2 * g["P"] - g["KW"]) // g["S"] + 1
    return g


def _conv_label(g: dict) -> str:
    return (
        f"{np.dtype(g['dtype']).name}, batch {g['N']}, C={g['C']}, F={g['F']}, "
        f"{g['KH']}x{g['KW']} filter, stride {g['S']}, padding {g['P']}"
    )


# Every student's six cases hold each kind of case a correct convolution must get right (real
# bugs live there: a gradient cropped with [pad:-pad] is empty when the padding is 0): batch 1
# and more, stride 1 and more, padding 0 and more, a non-square input and filter, float64 and float32
# (alternately); the rest is drawn.
FIXED_2D = (
    {"N": 1, "S": 1, "P": 0},
    {"S": 3, "P": 0},
    {"N": 3, "S": 2, "P": 2},
    {"S": 1, "P": 1, "oblong": True},
    {"P": 0, "oblong": True},
    {},
)


def _conv_cases(rng: np.random.Generator) -> list[Case]:
    """Convolutions with random shapes: x, w, b, dout and the im2col matrix's cotangent y."""
    cases = []
    for t, fixed in enumerate(FIXED_2D):
        g = _conv_geometry(rng, fixed, t)
        dtype = g["dtype"]
        args = {
            "x": rng.standard_normal((g["N"], g["C"], g["H"], g["W"])).astype(dtype),
            "w": rng.standard_normal((g["F"], g["C"], g["KH"], g["KW"])).astype(dtype),
            "b": rng.standard_normal(g["F"]).astype(dtype),
            "dout": rng.standard_normal((g["N"], g["F"], g["OH"], g["OW"])).astype(dtype),
            "y": rng.standard_normal(
                (g["C"] * g["KH"] * g["KW"], g["N"] * g["OH"] * g["OW"])
            ).astype(dtype),
        } | {k: g[k] for k in ("S", "P", "KH", "KW")}
        cases.append(Case(args, _conv_label(g)))
    return cases


def _conv1d_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    for t in range(6):
        dtype = DTYPES[t % 2]
        # stride 3 with padding 2, stride 1 without padding, stride 2 without padding, then drawn
        drawn = (int(rng.integers(1, 4)), int(rng.integers(0, 3)))
        S, P = {0: (3, 2), 1: (1, 0), 2: (2, 0)}.get(t, drawn)
        L = int(rng.integers(4, 16))
        K = int(rng.integers(1, min(5, L + 2 * P) + 1))
        args = {
            "x": rng.standard_normal(L).astype(dtype),
            "f": rng.standard_normal(K).astype(dtype),
            "S": S,
            "P": P,
        }
        cases.append(
            Case(args, f"{np.dtype(dtype).name}, length {L}, filter {K}, stride {S}, padding {P}")
        )
    return cases


def _conv1d_expected(case: Case) -> dict:
    a = case.args
    zero = np.zeros(1, a["x"].dtype)
    out, _ = ref.conv1d_forward(a["x"][None, None], a["f"][None, None], zero, a["S"], a["P"])
    return {"y": out[0, 0]}


def _size_cases(rng: np.random.Generator) -> list[Case]:
    cases = []
    for _ in range(10):
        S, P = int(rng.integers(1, 5)), int(rng.integers(0, 4))
        n = int(rng.integers(1, 300))
        k = int(rng.integers(1, n + 2 * P + 1))
        cases.append(Case({"n": n, "k": k, "S": S, "P": P}, f"stride {S}, padding {P}"))
    return cases


def _conv_forward_expected(case: Case) -> dict:
    a = case.args
    out, _ = ref.conv2d_forward(a["x"], a["w"], a["b"], stride=a["S"], padding=a["P"])
    return {"out": out}


def _conv_backward_expected(case: Case) -> dict:
    a = case.args
    _, cache = ref.conv2d_forward(a["x"], a["w"], a["b"], stride=a["S"], padding=a["P"])
    dx, dw, db = ref.conv2d_backward(a["dout"], cache)
    return {"dx": dx, "dw": dw, "db": db}


def _col2im_expected(case: Case) -> dict:
    """col2im(y) is the input gradient of a convolution whose weight matrix is the identity."""
    a = case.args
    x, y, KH, KW = a["x"], a["y"], a["KH"], a["KW"]
    N, C, _, _ = x.shape
    R = C * KH * KW
    eye = np.eye(R, dtype=x.dtype).reshape(R, C, KH, KW)
    _, cache = ref.conv2d_forward(np.zeros_like(x), eye, np.zeros(R, x.dtype), a["S"], a["P"])
    OH, OW = (
        (x.shape[2] + 2 * a["P"] - KH) // a["S"] + 1,
        (x.shape[3] + 2 * a["P"] - KW) // a["S"] + 1,
    )
    dx, _, _ = ref.conv2d_backward(y.reshape(R, N, OH, OW).transpose(1, 0, 2, 3), cache)
    return {"x": dx}


# The notebook's visible test says the same when its gradient check fails for x, w and b at once.
D_HINT = (
    "dx, dw and db are all wrong, so check how dout becomes the matrix D: dout is (N, F, OH, OW); "
    "move F to the front before reshaping, D = dout.transpose(1, 0, 2, 3).reshape(F, -1); "
    "dout.reshape(F, -1) alone mixes images and filters when N > 1"
)


def _explain_backward(case: Case, outputs: dict[str, np.ndarray]) -> str:
    """D_HINT when the student's dx, dw and db all disagree with the reference, else ""."""
    expected = _conv_backward_expected(case)
    rtol, atol = TOLERANCES[np.dtype(case.args["x"].dtype)]

    def wrong(name: str) -> bool:
        got, want = outputs.get(name), expected[name]
        if got is None:
            return False  # not an array: the failure message says what it was
        return got.shape != want.shape or not np.allclose(got, want, rtol=rtol, atol=atol)

    return D_HINT if all(wrong(name) for name in ("dx", "dw", "db")) else ""


def _conv_backward_run(ns: Mapping[str, Any], case: Case) -> dict:
    a = case.args
    result = ns["conv2d_forward"](a["x"], a["w"], a["b"], stride=a["S"], padding=a["P"])
    result = returns(result, 2, "conv2d_forward", "(out, cache)")
    grads = ns["conv2d_backward"](a["dout"], result[1])
    dx, dw, db = returns(grads, 3, "conv2d_backward", "(dx, dw, db)")
    return {"dx": dx, "dw": dw, "db": db}


def _hand_1d(stride: int, padding: int) -> Callable[[], np.ndarray]:
    x = np.array([[[1, 2, 3, 2, 5, 1]]], dtype=np.float64)
    f = np.array([[[1, 2]]], dtype=np.float64)
    return lambda: ref.conv1d_forward(x, f, np.zeros(1), stride, padding)[0][0, 0]


def _row(model: str, layer: str, field: str, expand: bool = False) -> Callable[[], Any]:
    return lambda: np.asarray(getattr(zoo.summary(model, expand=expand).row(layer), field))


def _total(model: str) -> Callable[[], int]:
    return lambda: zoo.summary(model).total_params


def _fc_share() -> float:
    alex = zoo.summary("alexnet")
    return sum(alex.row(n).params for n in ("fc6", "fc7", "fc8")) / alex.total_params


def _inception_branch() -> int:
    google = zoo.summary("googlenet", expand=True)
    return google.row("inception3a.5x5_reduce").macs + google.row("inception3a.5x5").macs


CONV_FORBID = ("conv2d_forward", "conv2d_backward", "im2col")
# seconds a cell may run when graded: every cell of the solution takes well under one
CELL_TIMEOUT = 60.0
CHECKS = [
    answers("test_1d_valid", {"y_valid": _hand_1d(1, 0)}),
    answers("test_1d_stride2", {"y_stride2": _hand_1d(2, 0)}),
    answers("test_1d_pad1", {"y_pad1": _hand_1d(1, 1)}),
    Check(
        "test_conv1d",
        "conv1d",
        _conv1d_cases,
        lambda ns, c: {
            "y": ns["conv1d"](c.args["x"], c.args["f"], stride=c.args["S"], padding=c.args["P"])
        },
        _conv1d_expected,
        forbid=("conv1d_forward", "conv2d_forward"),
    ),
    Check(
        "test_conv_output_size",
        "conv_output_size",
        _size_cases,
        lambda ns, c: {
            "n": ns["conv_output_size"](
                c.args["n"], c.args["k"], stride=c.args["S"], padding=c.args["P"]
            )
        },
        lambda c: {"n": arith.conv_output_size(c.args["n"], c.args["k"], c.args["S"], c.args["P"])},
    ),
    answers(
        "test_dense",
        {
            "conv_params": lambda: arith.conv_params(3, 6, 5),
            "conv_macs": lambda: arith.conv_macs((3, 32, 32), 6, 5),
            "dense_params": lambda: arith.linear_params(3 * 32 * 32, 6 * 28 * 28),
            "dense_macs": lambda: arith.linear_macs(3 * 32 * 32, 6 * 28 * 28),
        },
    ),
    Check(
        "test_conv2d_forward_naive",
        "conv2d_forward_naive",
        _conv_cases,
        lambda ns, c: {
            "out": ns["conv2d_forward_naive"](
                c.args["x"], c.args["w"], c.args["b"], stride=c.args["S"], padding=c.args["P"]
            )
        },
        _conv_forward_expected,
        forbid=CONV_FORBID,
    ),
    Check(
        "test_im2col",
        "im2col",
        _conv_cases,
        lambda ns, c: {
            "X_col": ns["im2col"](
                c.args["x"], c.args["KH"], c.args["KW"], stride=c.args["S"], padding=c.args["P"]
            )
        },
        lambda c: {
            "X_col": ref.im2col(
                c.args["x"], (c.args["KH"], c.args["KW"]), (c.args["S"],) * 2, (c.args["P"],) * 2
            )
        },
        forbid=CONV_FORBID,
    ),
    Check(
        "test_conv2d_forward",
        "conv2d_forward",
        _conv_cases,
        lambda ns, c: {
            "out": first(
                ns["conv2d_forward"](
                    c.args["x"], c.args["w"], c.args["b"], stride=c.args["S"], padding=c.args["P"]
                ),
                "conv2d_forward",
            )
        },
        _conv_forward_expected,
        forbid=CONV_FORBID,
    ),
    Check(
        "test_col2im",
        "col2im",
        _conv_cases,
        lambda ns, c: {
            "x": ns["col2im"](
                c.args["y"],
                c.args["x"].shape,
                c.args["KH"],
                c.args["KW"],
                stride=c.args["S"],
                padding=c.args["P"],
            )
        },
        _col2im_expected,
        forbid=CONV_FORBID,
    ),
    Check(
        "test_conv2d_backward",
        "conv2d_backward",
        _conv_cases,
        _conv_backward_run,
        _conv_backward_expected,
        forbid=CONV_FORBID,
        explain=_explain_backward,
    ),
    answers(
        "test_lenet",
        {
            "lenet_c1_shape": _row("lenet5", "C1", "output_shape"),
            "lenet_c1_params": _row("lenet5", "C1", "params"),
            "lenet_c5_shape": _row("lenet5", "C5", "output_shape"),
            "lenet_c5_params": _row("lenet5", "C5", "params"),
            "lenet_f6_params": _row("lenet5", "F6", "params"),
        },
    ),
    answers(
        "test_alexnet",
        {
            "alexnet_conv1_shape": _row("alexnet", "conv1", "output_shape"),
            "alexnet_conv1_params": _row("alexnet", "conv1", "params"),
            "alexnet_conv1_macs": _row("alexnet", "conv1", "macs"),
            "alexnet_pool1_shape": _row("alexnet", "pool1", "output_shape"),
            "alexnet_fc6_params": _row("alexnet", "fc6", "params"),
            "alexnet_fc_fraction": _fc_share,
        },
        atol={"alexnet_fc_fraction": 1e-3},
    ),
    answers(
        "test_vgg",
        {
            "vgg_conv1_1_params": _row("vgg16", "conv1_1", "params"),
            "vgg_conv1_2_macs": _row("vgg16", "conv1_2", "macs"),
            "vgg_pool5_shape": _row("vgg16", "pool5", "output_shape"),
            "vgg_fc6_params": _row("vgg16", "fc6", "params"),
            "vgg_total_params": _total("vgg16"),
        },
    ),
    answers(
        "test_stack",
        {
            "rf_three_3x3": lambda: arith.receptive_field([(3, 1)] * 3),
            "rf_one_7x7": lambda: arith.receptive_field([(7, 1)]),
            "params_three_3x3": lambda: 3 * arith.conv_params(64, 64, 3),
            "params_one_7x7": lambda: arith.conv_params(64, 64, 7),
        },
    ),
    answers(
        "test_inception",
        {
            "macs_5x5_direct": lambda: arith.conv_macs((192, 28, 28), 32, 5, padding=2),
            "macs_5x5_reduced": _inception_branch,
        },
    ),
]
