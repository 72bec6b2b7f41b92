"""Argument checks shared by the fast ops (`cnn_core.functional`) and the loops (`cnn_core.naive`).

Every check raises an error that names the op, the argument and the shapes involved, so that a student
who passes the wrong thing reads what is wrong instead of an IndexError from inside a kernel.
"""

from __future__ import annotations

import numbers

import numpy as np

from cnn_core._args import integers as as_tuple
from cnn_core._args import number
from cnn_core.arith import conv_output_size

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def as_float(op: str, name: str, a, ndim: int | None = None, layout: str = "") -> np.ndarray:
    """Return `a` as a float32/float64 array, or raise naming `op` and `name`.

    Lists are converted (to float64); integer, boolean and other dtypes raise TypeError, a wrong
    number of dimensions raises ValueError. `layout` (e.g. "(N, C, H, W)") is quoted in the message.
    """
    if isinstance(a, (list, tuple)) or np.isscalar(a):
        a = np.asarray(a, dtype=np.float64)
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{op}: {name} must be a numpy array, got {type(a).__name__}")
    if a.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{op}: {name} has dtype {a.dtype}; use float32 or float64 "
            f"(for example {name}.astype(np.float64))"
        )
    if ndim is not None and a.ndim != ndim:
        raise ValueError(
            f"{op}: {name} must be {ndim}-D {layout}".rstrip()
            + f", got shape {tuple(a.shape)} ({a.ndim}-D)"
        )
    return a


def same_dtype(dtype: np.dtype, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Cast `arrays` to `dtype` (no copy when they already have it): outputs keep the input's dtype."""
    return tuple(a.astype(dtype, copy=False) for a in arrays)


def window_output(
    op: str,
    size: tuple[int, ...],
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    padding: tuple[int, ...],
) -> tuple[int, ...]:
    """Output sizes floor((n + 2p - k) / s) + 1 per spatial axis; raise if a kernel does not fit.

    size, kernel, stride, padding: one int per spatial axis (L, or H and W).
    """
    out = []
    for n, k, s, p in zip(size, kernel, stride, padding, strict=True):
        if k > n + 2 * p:
            raise ValueError(
                f"{op}: kernel {tuple(kernel)} is larger than the padded input "
                f"{tuple(m + 2 * q for m, q in zip(size, padding, strict=True))} "
                f"(input {tuple(size)}, padding {tuple(padding)})"
            )
        out.append(conv_output_size(n, k, s, p))
    return tuple(out)


def conv_args(op: str, x, w, b, stride, padding, spatial: int):
    """Check a convolution's arguments.

    x: (N, C, *S), w: (F, C, *K), b: (F,), with `spatial` = len(S) = 1 or 2.
    Returns (x, w, b, stride, padding, out_size), arrays in x's dtype.
    """
    layout = "(N, C, L)" if spatial == 1 else "(N, C, H, W)"
    wlayout = "(F, C, K)" if spatial == 1 else "(F, C, KH, KW)"
    x = as_float(op, "x", x, 2 + spatial, layout)
    w = as_float(op, "w", w, 2 + spatial, wlayout)
    b = as_float(op, "b", b, 1, "(F,)")
    if x.shape[1] != w.shape[1]:
        raise ValueError(
            f"{op}: x has {x.shape[1]} channels (shape {x.shape}) but w expects "
            f"{w.shape[1]} (shape {w.shape})"
        )
    if b.shape[0] != w.shape[0]:
        raise ValueError(
            f"{op}: b has shape {b.shape} but w has {w.shape[0]} filters; b must be ({w.shape[0]},)"
        )
    stride = as_tuple(op, "stride", stride, spatial, 1)
    padding = as_tuple(op, "padding", padding, spatial, 0)
    out = window_output(op, x.shape[2:], w.shape[2:], stride, padding)
    w, b = same_dtype(x.dtype, w, b)
    return x, w, b, stride, padding, out


def pool_args(op: str, x, kernel_size, stride):
    """Check a 2D pooling's arguments. x: (N, C, H, W); stride None means the kernel size.

    Returns (x, kernel, stride, (OH, OW)).
    """
    x = as_float(op, "x", x, 4, "(N, C, H, W)")
    kernel = as_tuple(op, "kernel_size", kernel_size, 2, 1)
    stride = kernel if stride is None else as_tuple(op, "stride", stride, 2, 1)
    out = window_output(op, x.shape[2:], kernel, stride, (0, 0))
    return x, kernel, stride, out


def linear_args(op: str, x, w, b):
    """Check a fully connected layer's arguments. x: (N, ...), w: (D, M), b: (M,)."""
    x = as_float(op, "x", x)
    if x.ndim < 1:
        raise ValueError(f"{op}: x must have a batch axis, got a scalar")
    w = as_float(op, "w", w, 2, "(D, M)")
    b = as_float(op, "b", b, 1, "(M,)")
    d = int(np.prod(x.shape[1:], dtype=np.int64))
    if d != w.shape[0]:
        raise ValueError(
            f"{op}: x of shape {x.shape} flattens to {d} features per example but w has shape "
            f"{w.shape}, expecting {w.shape[0]}"
        )
    if b.shape[0] != w.shape[1]:
        raise ValueError(f"{op}: b has shape {b.shape} but w has {w.shape[1]} outputs")
    w, b = same_dtype(x.dtype, w, b)
    return x, w, b


def dropout_p(op: str, p) -> float:
    """Check a drop probability: a real number in [0, 1)."""
    if isinstance(p, bool) or not isinstance(p, numbers.Real):
        raise TypeError(f"{op}: p must be a number in [0, 1), got {p!r}")
    if not 0.0 <= p < 1.0:
        raise ValueError(
            f"{op}: p is the probability of dropping a unit and must be in [0, 1), got {p!r}"
        )
    return float(p)


def as_rng(op: str, rng) -> np.random.Generator:
    """A Generator from None (fresh entropy), an int seed or a Generator."""
    if isinstance(rng, numbers.Integral) and not isinstance(rng, bool):
        if rng < 0:
            raise ValueError(f"{op}: rng seed must be non-negative, got {rng}")
        return np.random.default_rng(rng)
    if rng is None:
        return np.random.default_rng()
    if isinstance(rng, np.random.Generator):
        return rng
    raise TypeError(
        f"{op}: rng must be a numpy.random.Generator, an int seed or None, got {type(rng).__name__}"
    )


def dropout_mask(shape: tuple[int, ...], p: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean keep-mask: each unit is kept with probability 1 - p. Shared so both paths draw alike."""
    return rng.random(shape) >= p


def batchnorm_args(op: str, x, gamma, beta, running_mean, running_var, momentum, eps, ndim: int):
    """Check batch-norm arguments. x: (N, D) if ndim == 2 or (N, C, H, W) if ndim == 4.

    gamma, beta, running_mean, running_var: (D,) or (C,). Running statistics must be float arrays
    (they are updated in place). Returns (x, gamma, beta).
    """
    layout = "(N, D)" if ndim == 2 else "(N, C, H, W)"
    x = as_float(op, "x", x, ndim, layout)
    feat = x.shape[1]
    pshape = "(D,)" if ndim == 2 else "(C,)"
    for name, a in (("running_mean", running_mean), ("running_var", running_var)):
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{op}: {name} must be a numpy array (it is updated in place)")
    checked = {}
    for name, a in (
        ("gamma", gamma),
        ("beta", beta),
        ("running_mean", running_mean),
        ("running_var", running_var),
    ):
        checked[name] = as_float(op, name, a, 1, pshape)
        if checked[name].shape[0] != feat:
            raise ValueError(
                f"{op}: {name} has shape {checked[name].shape} but x of shape {x.shape} has "
                f"{feat} features"
            )
    number(op, "momentum", momentum, 0.0, 1.0)
    if number(op, "eps", eps) <= 0:
        raise ValueError(f"{op}: eps must be positive, got {eps!r}")
    gamma, beta = same_dtype(x.dtype, checked["gamma"], checked["beta"])
    return x, gamma, beta


def dout_like(op: str, dout, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Check an upstream gradient against the forward output's shape; return it in `dtype`."""
    dout = as_float(op, "dout", dout)
    if dout.shape != tuple(shape):
        raise ValueError(
            f"{op}: dout has shape {dout.shape} but the forward output had shape {tuple(shape)}"
        )
    return dout.astype(dtype, copy=False)


def labels_args(op: str, scores, y):
    """Check class scores (N, K) and integer labels y (N,) with 0 <= y < K."""
    scores = as_float(op, "scores", scores, 2, "(N, K)")
    y = np.asarray(y)
    if y.dtype.kind not in "iu":
        raise TypeError(f"{op}: y must hold integer class labels, got dtype {y.dtype}")
    if scores.shape[0] == 0:
        raise ValueError(f"{op}: scores must be a non-empty batch, got shape {scores.shape}")
    if y.shape != (scores.shape[0],):
        raise ValueError(
            f"{op}: y has shape {y.shape} but scores has shape {scores.shape}; y must be ({scores.shape[0]},)"
        )
    if y.size and (y.min() < 0 or y.max() >= scores.shape[1]):
        raise ValueError(
            f"{op}: labels must be in [0, {scores.shape[1]}), got values from {y.min()} to {y.max()}"
        )
    return scores, y


def paired_args(op: str, pred_name: str, pred, target_name: str, target):
    """Check a prediction and a target of the same shape; the target is cast to the prediction's dtype."""
    pred = as_float(op, pred_name, pred)
    target = np.asarray(target)
    if target.dtype.kind not in "fiub":
        raise TypeError(f"{op}: {target_name} must be numeric, got dtype {target.dtype}")
    if pred.ndim < 1 or pred.shape[0] == 0:
        raise ValueError(f"{op}: {pred_name} must be a non-empty batch, got shape {pred.shape}")
    if target.shape != pred.shape:
        raise ValueError(
            f"{op}: {target_name} has shape {target.shape} but {pred_name} has shape {pred.shape}"
        )
    return pred, target.astype(pred.dtype, copy=False)


def batchnorm_train_count(op: str, x: np.ndarray) -> int:
    """Values per feature in a training batch (N, or N*H*W per channel); raise if fewer than 2.

    The running variance is the unbiased batch variance, undefined for a single value.
    """
    m = x.shape[0] * int(np.prod(x.shape[2:], dtype=np.int64))
    if m < 2:
        raise ValueError(f"{op}: training needs at least 2 values per feature, got {m}")
    return m
