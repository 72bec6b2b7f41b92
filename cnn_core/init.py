"""Weight initialisers: fill a parameter array of a given shape from a seeded random Generator.

Every initialiser is called as `fn(shape, rng, dtype=np.float32)` and returns a new array of that
shape and dtype. rng is a numpy.random.Generator, an int seed, or None for fresh entropy; share one
Generator across a model's layers and one seed builds the whole model. Values are drawn in float64
and then rounded to dtype, so float32 and float64 arrays from the same seed agree up to rounding.

The scaled initialisers read the fans of the weight's shape (see `fan_in_out`):

    xavier_uniform, xavier_normal   Glorot & Bengio 2010: Var(w) = 2 / (fan_in + fan_out);
                                    uniform on [-a, a] with a = sqrt(6 / (fan_in + fan_out))
    he_uniform, he_normal           He et al. 2015, for ReLU layers: Var(w) = 2 / fan_in;
                                    uniform on [-a, a] with a = sqrt(6 / fan_in)

`get(name)` resolves a name ("he_normal") to its function, as the layers' `init=` arguments do.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import numpy as np
from numpy.typing import DTypeLike

from cnn_core import _checks, _guard

Shape = tuple[int, ...]
Rng = np.random.Generator | int | None

__all__ = [
    "fan_in_out",
    "gaussian",
    "uniform",
    "xavier_uniform",
    "xavier_normal",
    "he_uniform",
    "he_normal",
    "zeros",
    "ones",
    "get",
]


def _shape(op: str, shape) -> Shape:
    """`shape` (an int or a sequence of ints) as a tuple of positive ints, or raise naming `op`."""
    dims = (shape,) if isinstance(shape, numbers.Integral) else shape
    if not isinstance(dims, (tuple, list)) or not all(
        isinstance(d, numbers.Integral) and not isinstance(d, bool) and d > 0 for d in dims
    ):
        raise ValueError(f"{op}: shape must be a tuple of positive ints, got {shape!r}")
    return tuple(int(d) for d in dims)


def _dtype(op: str, dtype: DTypeLike) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in _checks.FLOAT_DTYPES:
        raise TypeError(f"{op}: dtype must be float32 or float64, got {dt}")
    return dt


def _positive(op: str, name: str, v) -> float:
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0 < v < math.inf:
        raise ValueError(f"{op}: {name} must be a positive number, got {v!r}")
    return float(v)


def _fans(op: str, shape) -> tuple[int, int]:
    shape = _shape(op, shape)
    if len(shape) < 2:
        raise ValueError(
            f"{op}: fans are defined for weights of at least 2 axes, Linear (D, M) or convolution "
            f"(F, C, KH, KW), got shape {shape}"
        )
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def fan_in_out(shape) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight shape: the inputs each output sees and the outputs each input feeds.

    Linear weight (D, M), as `cnn_core.functional.linear_forward` uses it: fan_in = D, fan_out = M.
    (PyTorch stores a Linear weight as (M, D), the transpose.)
    Convolution weight (F, C, KH, KW): fan_in = C*KH*KW, fan_out = F*KH*KW; (F, C, K) likewise.
    Raises ValueError for shapes of fewer than 2 axes (a bias has no fans).
    """
    return _fans("fan_in_out", shape)


def _normal(op: str, shape, rng: Rng, std: float, dtype: DTypeLike) -> np.ndarray:
    shape, dt = _shape(op, shape), _dtype(op, dtype)
    return (_checks.as_rng(op, rng).standard_normal(shape) * std).astype(dt)


def _uniform(op: str, shape, rng: Rng, bound: float, dtype: DTypeLike) -> np.ndarray:
    shape, dt = _shape(op, shape), _dtype(op, dtype)
    return _checks.as_rng(op, rng).uniform(-bound, bound, shape).astype(dt)


def gaussian(shape, rng: Rng, std: float = 0.01, dtype: DTypeLike = np.float32) -> np.ndarray:
    """Normal draws with mean 0 and standard deviation `std`, an array of `shape`.

    std is the standard deviation, not the variance: the "N(0, 0.01)" of AlexNet-era papers and
    course notes means std 0.01 (variance 1e-4).
    """
    return _normal("gaussian", shape, rng, _positive("gaussian", "std", std), dtype)


def uniform(shape, rng: Rng, a: float = 0.05, dtype: DTypeLike = np.float32) -> np.ndarray:
    """Uniform draws on [-a, a], an array of `shape`."""
    return _uniform("uniform", shape, rng, _positive("uniform", "a", a), dtype)


def xavier_uniform(shape, rng: Rng, dtype: DTypeLike = np.float32) -> np.ndarray:
    """Glorot uniform: U(-a, a) with a = sqrt(6 / (fan_in + fan_out)), so Var = 2 / (fan_in + fan_out)."""
    fan_in, fan_out = _fans("xavier_uniform", shape)
    return _uniform("xavier_uniform", shape, rng, math.sqrt(6.0 / (fan_in + fan_out)), dtype)


def xavier_normal(shape, rng: Rng, dtype: DTypeLike = np.float32) -> np.ndarray:
    """Glorot normal: N(0, std**2) with std = sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = _fans("xavier_normal", shape)
    return _normal("xavier_normal", shape, rng, math.sqrt(2.0 / (fan_in + fan_out)), dtype)


def he_uniform(shape, rng: Rng, dtype: DTypeLike = np.float32) -> np.ndarray:
    """He (Kaiming) uniform: U(-a, a) with a = sqrt(6 / fan_in), so Var = 2 / fan_in."""
    fan_in, _ = _fans("he_uniform", shape)
    return _uniform("he_uniform", shape, rng, math.sqrt(6.0 / fan_in), dtype)


def he_normal(shape, rng: Rng, dtype: DTypeLike = np.float32) -> np.ndarray:
    """He (Kaiming) normal: N(0, std**2) with std = sqrt(2 / fan_in), for layers followed by ReLU."""
    fan_in, _ = _fans("he_normal", shape)
    return _normal("he_normal", shape, rng, math.sqrt(2.0 / fan_in), dtype)


def zeros(shape, rng: Rng = None, dtype: DTypeLike = np.float32) -> np.ndarray:
    """All zeros (the default for biases). rng is accepted, and unused, so every initialiser has
    the same signature."""
    return np.zeros(_shape("zeros", shape), dtype=_dtype("zeros", dtype))


def ones(shape, rng: Rng = None, dtype: DTypeLike = np.float32) -> np.ndarray:
    """All ones (batch norm's scale). rng is accepted, and unused, as for `zeros`."""
    return np.ones(_shape("ones", shape), dtype=_dtype("ones", dtype))


_BY_NAME: dict[str, Callable[..., np.ndarray]] = {
    "gaussian": gaussian,
    "uniform": uniform,
    "xavier_uniform": xavier_uniform,
    "xavier_normal": xavier_normal,
    "he_uniform": he_uniform,
    "he_normal": he_normal,
    "zeros": zeros,
    "ones": ones,
}


def get(init: str | Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    """The initialiser called `init` (e.g. "he_normal"); a callable is returned unchanged.

    A callable must take (shape, rng, dtype=...) and return an array of that shape.
    Raises ValueError, listing the names, for anything else.
    """
    if callable(init):
        return init
    if isinstance(init, str) and init in _BY_NAME:
        return _BY_NAME[init]
    raise ValueError(
        f"unknown initialiser {init!r}; use one of {', '.join(_BY_NAME)}, "
        "or a function (shape, rng, dtype) -> array"
    )


# The initialisers a5 asks students to write refuse to run while a grader forbids them
# (cnn_core.grading), by name or through get() as the layers' init= resolves it.
_guard.guard_module(
    globals(),
    ["fan_in_out", "gaussian", "xavier_uniform", "xavier_normal", "he_uniform", "he_normal"],
)
_BY_NAME.update({name: globals()[name] for name in _BY_NAME})
