"""Layers as stateful modules over `cnn_core.functional`, with PyTorch's names, and model builders.

Calling a module (or its `forward`) runs the functional op and keeps the op's cache; `backward(dout)`
returns dx and ADDS each parameter's gradient into `param.grad`, as PyTorch does, so clear the
gradients (`model.zero_grad()` or the optimiser's) before each step::

    model = nn.lenet(rng=0)
    loss, dscores = softmax_cross_entropy(model(x), y)      # x: (N, 1, 28, 28)
    model.zero_grad()
    model.backward(dscores)                                 # fills p.grad for p in parameters()

Layout is NCHW. A Linear weight is (in_features, out_features), the transpose of PyTorch's, as in
`functional.linear_forward`. Modules with weights or randomness take `rng` (a numpy Generator, an int
seed, or None for fresh entropy); pass one Generator to every layer and one seed builds the model.
Shapes passed to `output_shape` and `summary` are per example, without the batch axis: (C, H, W) or (D,).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np
from numpy.typing import DTypeLike

from cnn_core import _checks, arith
from cnn_core import functional as F
from cnn_core import init as _init
from cnn_core._args import integer, number

Shape = tuple[int, ...]
Rng = np.random.Generator | int | None
Init = str | Callable[..., np.ndarray]

__all__ = [
    "Parameter",
    "Module",
    "Conv2d",
    "Linear",
    "MaxPool2d",
    "AvgPool2d",
    "GlobalAvgPool2d",
    "Dropout",
    "ReLU",
    "LeakyReLU",
    "ELU",
    "Sigmoid",
    "Tanh",
    "Flatten",
    "BatchNorm1d",
    "BatchNorm2d",
    "Sequential",
    "Residual",
    "LayerRow",
    "ModelSummary",
    "lenet",
    "small_vgg",
    "bench_cnn",
    "ARCHITECTURES",
    "build",
]


# --------------------------------------------------------------------------- argument checks


def _example_shape(op: str, shape) -> Shape:
    """A per-example shape such as (C, H, W) or (D,): a tuple of positive ints."""
    if not isinstance(shape, (tuple, list)) or not shape:
        raise ValueError(f"{op}: input_shape must be a tuple such as (C, H, W), got {shape!r}")
    return tuple(integer(op, "input_shape", d) for d in shape)


def _chw(op: str, shape: Shape, channels: int | None = None) -> Shape:
    """Check a per-example image shape (C, H, W), and its channel count when given."""
    if len(shape) != 3:
        raise ValueError(f"{op}: expects images (C, H, W), got input shape {shape}")
    if channels is not None and shape[0] != channels:
        raise ValueError(f"{op}: expects {channels} channels, got input shape {shape}")
    return shape


# --------------------------------------------------------------------------- base classes


class Parameter:
    """A trainable array and its gradient.

    data: the values, any shape. grad: zeros of data's shape and dtype, to which backward adds.
    name: the parameter's name in its model, e.g. "0.weight" (containers set it on adoption).
    decay: whether optimisers apply weight decay to it: True for weights, False for biases and for
    batch norm's scale and shift.
    """

    def __init__(self, data: np.ndarray, name: str, decay: bool = True) -> None:
        self.data = _checks.as_float("Parameter", "data", data)
        self.grad = np.zeros_like(self.data)
        self.name = name
        self.decay = decay

    def __repr__(self) -> str:
        return (
            f"Parameter({self.name!r}, shape={self.data.shape}, dtype={self.data.dtype}, "
            f"decay={self.decay})"
        )


@dataclass(frozen=True)
class LayerRow:
    """One layer in a summary: its name in the model, its class, output shape per example and
    its number of parameters."""

    name: str
    kind: str
    output_shape: Shape
    params: int


@dataclass(frozen=True, repr=False)
class ModelSummary:
    """A model's layers with their output shapes (per example) and parameter counts; str() and
    repr() print a table with the totals."""

    model: str
    input_shape: Shape
    output_shape: Shape
    rows: tuple[LayerRow, ...]

    @property
    def total_params(self) -> int:
        return sum(r.params for r in self.rows)

    def __str__(self) -> str:
        header = ("layer", "kind", "output", "params")
        body = [(r.name, r.kind, _shape_text(r.output_shape), f"{r.params:,}") for r in self.rows]
        total = ("total", "", _shape_text(self.output_shape), f"{self.total_params:,}")
        widths = [max(len(cells[i]) for cells in (header, *body, total)) for i in range(4)]

        def line(cells: tuple[str, ...]) -> str:
            # text columns left-aligned, the count right-aligned
            return "  ".join(
                c.rjust(w) if i == 3 else c.ljust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )

        rule = "-" * len(line(header))
        title = f"{self.model}: input {_shape_text(self.input_shape)}, shapes per example"
        return "\n".join([title, line(header), rule, *map(line, body), rule, line(total)])

    __repr__ = __str__


def _shape_text(shape: Shape) -> str:
    return "x".join(map(str, shape))


class Module:
    """Base class: a layer or a container of layers.

    Subclasses implement `forward(x)`, keeping what backward needs, `backward(dout) -> dx`, adding
    parameter gradients into `.grad`, and `output_shape(input_shape)`. They register parameters,
    buffers (state that is saved but not trained, like batch norm's running statistics) and
    sub-modules with `_add_parameter`, `_add_buffer` and `_add_child`.
    """

    def __init__(self) -> None:
        self.training = True
        self._parameters: dict[str, Parameter] = {}
        self._buffers: dict[str, np.ndarray] = {}
        self._children: dict[str, Module] = {}
        self._cache = None

    # ---- computing

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """The layer's output for a batch x (N, ...)."""
        raise NotImplementedError(f"{type(self).__name__} does not define forward")

    def backward(self, dout: np.ndarray) -> np.ndarray:
        """dx for dout (the output's shape); adds the parameters' gradients into their .grad."""
        raise NotImplementedError(f"{type(self).__name__} does not define backward")

    def backward_params(self, dout: np.ndarray) -> None:
        """Only the parameters' gradients, for a model whose input needs none (as in training).

        The same as `backward` but for its result; layers that can skip computing dx do.
        """
        self.backward(dout)

    def output_shape(self, input_shape: Shape) -> Shape:
        """The output shape of one example of `input_shape`, both without the batch axis."""
        raise NotImplementedError(f"{type(self).__name__} does not define output_shape")

    def _saved(self):
        """The cache of the last forward; raise if there was none."""
        if self._cache is None:
            raise RuntimeError(
                f"{type(self).__name__}.backward was called before forward; run the module on a "
                "batch first (backward uses what forward saved)"
            )
        return self._cache

    # ---- registration

    def _add_parameter(self, name: str, data: np.ndarray, decay: bool = True) -> Parameter:
        self._parameters[name] = Parameter(data, name, decay)
        return self._parameters[name]

    def _add_buffer(self, name: str, data: np.ndarray) -> np.ndarray:
        self._buffers[name] = data
        return data

    def _add_child(self, name: str, module: Module) -> Module:
        """Register `module` under `name` and rename every parameter by its path from here."""
        if not isinstance(module, Module):
            raise TypeError(
                f"{type(self).__name__}: {name} must be a Module, got {type(module).__name__}"
            )
        self._children[name] = module
        for qualified, p in self.named_parameters():
            p.name = qualified
        return module

    def _named(self, table: str, prefix: str) -> list[tuple[str, object]]:
        own = [(prefix + name, v) for name, v in getattr(self, table).items()]
        for key, child in self._children.items():
            own += child._named(table, f"{prefix}{key}.")
        return own

    # ---- parameters and state

    def named_parameters(self) -> list[tuple[str, Parameter]]:
        """(name, parameter) pairs, recursively: a module's own, then its children's, in order."""
        return self._named("_parameters", "")

    def parameters(self) -> list[Parameter]:
        """The trainable parameters, recursively, in the order of `named_parameters`."""
        return [p for _, p in self.named_parameters()]

    def named_buffers(self) -> list[tuple[str, np.ndarray]]:
        """(name, array) pairs of the non-trained state, e.g. ("1.running_mean", array)."""
        return self._named("_buffers", "")

    def n_params(self) -> int:
        """Number of trainable values."""
        return sum(p.data.size for p in self.parameters())

    def zero_grad(self) -> None:
        """Set every parameter's gradient to zero, in place."""
        for p in self.parameters():
            p.grad.fill(0)

    def train(self, mode: bool = True) -> Module:
        """Set training mode (mode=True) or evaluation mode, recursively. Returns self.

        Dropout drops units and batch norm uses and updates batch statistics only in training.
        """
        self.training = bool(mode)
        for child in self._children.values():
            child.train(mode)
        return self

    def eval(self) -> Module:
        """Evaluation mode, recursively: `train(False)`. Returns self."""
        return self.train(False)

    def _state(self) -> dict[str, np.ndarray]:
        """Name -> the live array: parameters' data, then buffers."""
        arrays = {name: p.data for name, p in self.named_parameters()}
        return {**arrays, **dict(self.named_buffers())}

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of every parameter's data and every buffer, by name (parameters first)."""
        return {name: a.copy() for name, a in self._state().items()}

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Copy `state` into the model's arrays, in place.

        Strict: raises KeyError naming missing and unexpected keys, and ValueError naming every key
        whose shape differs; nothing is copied unless every key matches.
        """
        own = self._state()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if missing or unexpected:
            raise KeyError(
                f"load_state_dict: the state does not fit this {type(self).__name__}; "
                f"missing keys: {missing or 'none'}; unexpected keys: {unexpected or 'none'}"
            )
        values = {k: np.asarray(state[k]) for k in own}
        for k, v in values.items():
            if v.dtype.kind not in "fiu":
                raise TypeError(f"load_state_dict: {k!r} holds {v.dtype}, not numbers")
        wrong = [
            f"{k!r} has shape {values[k].shape} in the state but {target.shape} in the model"
            for k, target in own.items()
            if values[k].shape != target.shape
        ]
        if wrong:
            raise ValueError("load_state_dict: " + "; ".join(wrong))
        for k, target in own.items():
            np.copyto(target, values[k])

    def save(self, path: str | PathLike, overwrite: bool = False) -> Path:
        """Write `state_dict()` to an .npz file (".npz" is appended if missing). Returns the path.

        Raises FileExistsError if the file exists, unless overwrite=True.
        """
        path = _npz_path(path)
        try:
            with open(path, "wb" if overwrite else "xb") as f:
                np.savez(f, **self.state_dict())
        except FileExistsError:
            raise FileExistsError(
                f"save: {path} already exists; pass overwrite=True to replace it"
            ) from None
        return path

    def load(self, path: str | PathLike) -> Module:
        """Load a file written by `save` into this model (strictly, see `load_state_dict`)."""
        with np.load(_npz_path(path), allow_pickle=False) as f:
            self.load_state_dict({k: f[k] for k in f.files})
        return self

    # ---- description

    def summary(self, input_shape: Shape) -> ModelSummary:
        """Each layer's output shape and parameter count for one example of `input_shape`.

        input_shape: e.g. (1, 28, 28), without the batch axis. Shapes come from `cnn_core.arith`,
        parameter counts from the parameters themselves; nothing is run. `print` the result.
        """
        shape = _example_shape("summary", input_shape)
        rows, out = self._summary_rows("", shape)
        return ModelSummary(type(self).__name__, shape, out, tuple(rows))

    def _summary_rows(self, name: str, shape: Shape) -> tuple[list[LayerRow], Shape]:
        """Rows of this module's layers for input `shape`, and the output shape."""
        out = self.output_shape(shape)
        params = sum(p.data.size for p in self._parameters.values())
        kind = type(self).__name__
        return [LayerRow(name or kind, kind, out, params)], out

    def extra_repr(self) -> str:
        """The arguments shown inside the module's repr."""
        return ""

    def __repr__(self) -> str:
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not self._children:
            return head + ")"
        lines = [f"  ({k}): " + repr(m).replace("\n", "\n  ") for k, m in self._children.items()]
        return "\n".join([head, *lines, ")"])


def _npz_path(path: str | PathLike) -> Path:
    path = Path(path)
    return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")


def _weight(op: str, init: Init, shape: Shape, rng: Rng, dtype: DTypeLike) -> np.ndarray:
    """Draw a weight of `shape` with the initialiser `init` (a name or a function)."""
    w = _init.get(init)(shape, _checks.as_rng(op, rng), dtype=dtype)
    if np.shape(w) != shape:
        raise ValueError(f"{op}: init returned shape {np.shape(w)}, expected {shape}")
    return w


class _Affine(Module):
    """A layer y = x * weight + bias (Conv2d, Linear): the bias is optional."""

    bias: Parameter | None

    def _bias_data(self, n: int) -> np.ndarray:
        return self.bias.data if self.bias is not None else np.zeros(n, self.weight.data.dtype)

    def _accumulate(self, dw: np.ndarray, db: np.ndarray) -> None:
        self.weight.grad += dw
        if self.bias is not None:
            self.bias.grad += db


# --------------------------------------------------------------------------- layers with weights


class Conv2d(_Affine):
    """2D convolution (cross-correlation) of x (N, C, H, W), as torch.nn.Conv2d.

    weight: (out_channels, in_channels, KH, KW), drawn by `init` (a name known to
    `cnn_core.init.get`, or a function (shape, rng, dtype)); default "he_normal", N(0, 2 / fan_in)
    with fan_in = in_channels*KH*KW. bias: (out_channels,), zeros; none if bias=False.
    kernel_size, stride, padding: int or (height, width). Output (N, F, OH, OW) with
    OH = (H + 2*ph - KH) // sh + 1, OW likewise.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] = 0,
        bias: bool = True,
        init: Init = "he_normal",
        rng: Rng = None,
        dtype: DTypeLike = np.float32,
    ) -> None:
        super().__init__()
        op = "Conv2d"
        self.in_channels = integer(op, "in_channels", in_channels)
        self.out_channels = integer(op, "out_channels", out_channels)
        self.kernel_size = _checks.as_tuple(op, "kernel_size", kernel_size)
        self.stride = _checks.as_tuple(op, "stride", stride)
        self.padding = _checks.as_tuple(op, "padding", padding, 2, 0)
        shape = (self.out_channels, self.in_channels, *self.kernel_size)
        self.weight = self._add_parameter("weight", _weight(op, init, shape, rng, dtype))
        zeros = _init.zeros((self.out_channels,), dtype=dtype)
        self.bias = self._add_parameter("bias", zeros, decay=False) if bias else None

    def forward(self, x: np.ndarray) -> np.ndarray:
        b = self._bias_data(self.out_channels)
        out, self._cache = F.conv2d_forward(x, self.weight.data, b, self.stride, self.padding)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        dx, dw, db = F.conv2d_backward(dout, self._saved())
        self._accumulate(dw, db)
        return dx

    def backward_params(self, dout: np.ndarray) -> None:
        self._accumulate(*F.conv2d_backward_weights(dout, self._saved()))

    def output_shape(self, input_shape: Shape) -> Shape:
        shape = _chw("Conv2d", input_shape, self.in_channels)
        return arith.conv2d_output_shape(
            shape, self.out_channels, self.kernel_size, self.stride, self.padding
        )

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}"
        )


class Linear(_Affine):
    """Fully connected layer: out (N, M) = x.reshape(N, D) @ weight + bias.

    An input of more than 2 axes, (N, C, H, W) say, is flattened to (N, C*H*W) first.
    weight: (in_features, out_features), the TRANSPOSE of torch.nn.Linear's, drawn by `init`
    (default "he_normal", N(0, 2 / in_features)); bias: (out_features,), zeros; none if bias=False.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        init: Init = "he_normal",
        rng: Rng = None,
        dtype: DTypeLike = np.float32,
    ) -> None:
        super().__init__()
        op = "Linear"
        self.in_features = integer(op, "in_features", in_features)
        self.out_features = integer(op, "out_features", out_features)
        shape = (self.in_features, self.out_features)
        self.weight = self._add_parameter("weight", _weight(op, init, shape, rng, dtype))
        zeros = _init.zeros((self.out_features,), dtype=dtype)
        self.bias = self._add_parameter("bias", zeros, decay=False) if bias else None

    def forward(self, x: np.ndarray) -> np.ndarray:
        b = self._bias_data(self.out_features)
        out, self._cache = F.linear_forward(x, self.weight.data, b)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        dx, dw, db = F.linear_backward(dout, self._saved())
        self._accumulate(dw, db)
        return dx

    def output_shape(self, input_shape: Shape) -> Shape:
        if math.prod(input_shape) != self.in_features:
            raise ValueError(
                f"Linear: expects {self.in_features} features per example, got input shape "
                f"{tuple(input_shape)} ({math.prod(input_shape)} values)"
            )
        return (self.out_features,)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, bias={self.bias is not None}"


class _BatchNorm(Module):
    """What BatchNorm1d and BatchNorm2d share; they differ in the functional op and input shape.

    weight (gamma, starts at 1) and bias (beta, starts at 0) are parameters without weight decay;
    running_mean (starts at 0) and running_var (at 1) are buffers of the module's dtype. Training
    normalises with the batch statistics and updates the running ones; evaluation mode normalises
    with the running ones and leaves them alone.
    momentum has PyTorch's meaning, the weight of the NEW batch statistic:
    running = (1 - momentum) * running + momentum * batch_stat, the variance taken unbiased.
    `cnn_core.functional`'s momentum weighs the OLD value instead; the module passes it 1 - momentum.
    """

    _forward_op: Callable
    _backward_op: Callable

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        dtype: DTypeLike = np.float32,
    ) -> None:
        super().__init__()
        op = type(self).__name__
        self.num_features = integer(op, "num_features", num_features)
        self.eps = number(op, "eps", eps)
        if self.eps <= 0:
            raise ValueError(f"{op}: eps must be positive, got {eps!r}")
        self.momentum = number(op, "momentum", momentum, 0.0, 1.0)
        shape = (self.num_features,)
        self.weight = self._add_parameter("weight", _init.ones(shape, dtype=dtype), decay=False)
        self.bias = self._add_parameter("bias", _init.zeros(shape, dtype=dtype), decay=False)
        self._add_buffer("running_mean", _init.zeros(shape, dtype=dtype))
        self._add_buffer("running_var", _init.ones(shape, dtype=dtype))

    @property
    def running_mean(self) -> np.ndarray:
        return self._buffers["running_mean"]

    @property
    def running_var(self) -> np.ndarray:
        return self._buffers["running_var"]

    def forward(self, x: np.ndarray) -> np.ndarray:
        out, self._cache = type(self)._forward_op(
            x,
            self.weight.data,
            self.bias.data,
            self.running_mean,
            self.running_var,
            train=self.training,
            momentum=1.0 - self.momentum,
            eps=self.eps,
        )
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        dx, dgamma, dbeta = type(self)._backward_op(dout, self._saved())
        self.weight.grad += dgamma
        self.bias.grad += dbeta
        return dx

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of x (N, D) per feature, as torch.nn.BatchNorm1d on 2-D input
    (parameters, buffers and momentum as described on _BatchNorm)."""

    _forward_op = staticmethod(F.batchnorm_forward)
    _backward_op = staticmethod(F.batchnorm_backward)

    def output_shape(self, input_shape: Shape) -> Shape:
        if tuple(input_shape) != (self.num_features,):
            raise ValueError(
                f"BatchNorm1d: expects ({self.num_features},) per example, got {tuple(input_shape)}"
            )
        return tuple(input_shape)


class BatchNorm2d(_BatchNorm):
    """Spatial batch normalisation of x (N, C, H, W) per channel, as torch.nn.BatchNorm2d
    (parameters, buffers and momentum as described on _BatchNorm)."""

    _forward_op = staticmethod(F.batchnorm2d_forward)
    _backward_op = staticmethod(F.batchnorm2d_backward)

    def output_shape(self, input_shape: Shape) -> Shape:
        return _chw("BatchNorm2d", input_shape, self.num_features)


# --------------------------------------------------------------------------- layers without weights


class _Op(Module):
    """A module over one functional op pair with no parameters: forward_op(x, **op_kwargs)."""

    _forward_op: Callable
    _backward_op: Callable

    def _op_kwargs(self) -> dict:
        return {}

    def forward(self, x: np.ndarray) -> np.ndarray:
        out, self._cache = type(self)._forward_op(x, **self._op_kwargs())
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return type(self)._backward_op(dout, self._saved())


class _Elementwise(_Op):
    """An op that keeps its input's shape."""

    def output_shape(self, input_shape: Shape) -> Shape:
        return tuple(input_shape)


class ReLU(_Elementwise):
    """max(0, x), elementwise."""

    _forward_op = staticmethod(F.relu_forward)
    _backward_op = staticmethod(F.relu_backward)


class _OneNumber(_Elementwise):
    """An activation with one number, a slope or a scale, handed to its op as `alpha`."""

    _number_name: str  # the constructor argument's name, as in PyTorch

    def __init__(self, value: float) -> None:
        super().__init__()
        setattr(self, self._number_name, number(type(self).__name__, self._number_name, value))

    def _op_kwargs(self) -> dict:
        return {"alpha": getattr(self, self._number_name)}

    def extra_repr(self) -> str:
        return f"{self._number_name}={getattr(self, self._number_name)}"


class LeakyReLU(_OneNumber):
    """x if x > 0 else negative_slope * x, elementwise."""

    _forward_op = staticmethod(F.leaky_relu_forward)
    _backward_op = staticmethod(F.leaky_relu_backward)
    _number_name = "negative_slope"

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__(negative_slope)


class ELU(_OneNumber):
    """x if x > 0 else alpha * (exp(x) - 1), elementwise."""

    _forward_op = staticmethod(F.elu_forward)
    _backward_op = staticmethod(F.elu_backward)
    _number_name = "alpha"

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__(alpha)


class Sigmoid(_Elementwise):
    """1 / (1 + exp(-x)), elementwise."""

    _forward_op = staticmethod(F.sigmoid_forward)
    _backward_op = staticmethod(F.sigmoid_backward)


class Tanh(_Elementwise):
    """tanh(x), elementwise."""

    _forward_op = staticmethod(F.tanh_forward)
    _backward_op = staticmethod(F.tanh_backward)


class Dropout(_Elementwise):
    """Inverted dropout: in training each unit is zeroed with probability p (the probability of
    DROPPING) and kept units are scaled by 1 / (1 - p); in evaluation mode it is the identity.

    Masks are drawn from `self.rng`, the Generator made from `rng` (or `rng` itself).
    """

    _forward_op = staticmethod(F.dropout_forward)
    _backward_op = staticmethod(F.dropout_backward)

    def __init__(self, p: float = 0.5, rng: Rng = None) -> None:
        super().__init__()
        self.p = _checks.dropout_p("Dropout", p)
        self.rng = _checks.as_rng("Dropout", rng)

    def _op_kwargs(self) -> dict:
        return {"p": self.p, "train": self.training, "rng": self.rng}

    def extra_repr(self) -> str:
        return f"p={self.p}"


class _Pool(_Op):
    """Pooling over windows of kernel_size (int or pair); stride defaults to the kernel size."""

    def __init__(
        self, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] | None = None
    ) -> None:
        super().__init__()
        op = type(self).__name__
        self.kernel_size = _checks.as_tuple(op, "kernel_size", kernel_size)
        self.stride = self.kernel_size if stride is None else _checks.as_tuple(op, "stride", stride)

    def _op_kwargs(self) -> dict:
        return {"kernel_size": self.kernel_size, "stride": self.stride}

    def output_shape(self, input_shape: Shape) -> Shape:
        shape = _chw(type(self).__name__, input_shape)
        return arith.pool2d_output_shape(shape, self.kernel_size, self.stride)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}"


class MaxPool2d(_Pool):
    """Max pooling of x (N, C, H, W): out (N, C, OH, OW), OH = (H - KH) // sh + 1."""

    _forward_op = staticmethod(F.maxpool2d_forward)
    _backward_op = staticmethod(F.maxpool2d_backward)


class AvgPool2d(_Pool):
    """Average pooling of x (N, C, H, W): out (N, C, OH, OW), OH = (H - KH) // sh + 1."""

    _forward_op = staticmethod(F.avgpool2d_forward)
    _backward_op = staticmethod(F.avgpool2d_backward)


class GlobalAvgPool2d(Module):
    """The mean of each channel over its whole plane: x (N, C, H, W) -> out (N, C)."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        out, self._cache = F.global_avgpool2d_forward(x)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return F.global_avgpool2d_backward(dout, self._saved())

    def output_shape(self, input_shape: Shape) -> Shape:
        return _chw("GlobalAvgPool2d", input_shape)[:1]


class Flatten(Module):
    """x (N, d1, ..., dk) -> (N, d1*...*dk), e.g. (N, C, H, W) -> (N, C*H*W)."""

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = _checks.as_float("Flatten", "x", x)
        if x.ndim < 1:
            raise ValueError("Flatten: x must have a batch axis, got a scalar")
        self._cache = (x.shape, x.dtype)
        return x.reshape(x.shape[0], -1)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        shape, dtype = self._saved()
        flat = (shape[0], math.prod(shape[1:]))
        return _checks.dout_like("Flatten.backward", dout, flat, dtype).reshape(shape)

    def output_shape(self, input_shape: Shape) -> Shape:
        return (math.prod(input_shape),)


# --------------------------------------------------------------------------- containers


def _run_child(key: str, module: Module, x: np.ndarray) -> np.ndarray:
    """module(x); a ValueError or TypeError message gets the layer's name in front of it."""
    try:
        return module(x)
    except (ValueError, TypeError) as e:
        if len(e.args) == 1 and isinstance(e.args[0], str):
            e.args = (f"layer {key} ({type(module).__name__}): {e.args[0]}",)
        raise


class Sequential(Module):
    """Modules applied in order; indexable (model[0]), with len() and iteration.

    Children are named "0", "1", ..., so parameters are named "0.weight", "0.bias", ...
    """

    def __init__(self, *modules: Module) -> None:
        super().__init__()
        for i, m in enumerate(modules):
            self._add_child(str(i), m)

    def __len__(self) -> int:
        return len(self._children)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._children.values())

    def __getitem__(self, index: int) -> Module:
        if isinstance(index, bool) or not isinstance(index, numbers.Integral):
            raise TypeError(f"Sequential: index must be an int, got {index!r}")
        return list(self._children.values())[index]

    def forward(self, x: np.ndarray) -> np.ndarray:
        for key, m in self._children.items():
            x = _run_child(key, m, x)
        return x

    def backward(self, dout: np.ndarray) -> np.ndarray:
        for m in reversed(self._children.values()):
            dout = m.backward(dout)
        return dout

    def backward_params(self, dout: np.ndarray) -> None:
        children = list(self._children.values())
        for m in reversed(children[1:]):
            dout = m.backward(dout)
        if children:
            children[0].backward_params(dout)

    def output_shape(self, input_shape: Shape) -> Shape:
        return self._summary_rows("", tuple(input_shape))[1]

    def _summary_rows(self, name: str, shape: Shape) -> tuple[list[LayerRow], Shape]:
        rows: list[LayerRow] = []
        for key, m in self._children.items():
            child_rows, shape = m._summary_rows(f"{name}.{key}" if name else key, shape)
            rows += child_rows
        return rows, shape


class Residual(Module):
    """A residual block: y = body(x) + x, or y = body(x) + projection(x) when a projection is given.

    The projection (typically a 1x1 Conv2d with the body's stride) makes the shortcut's shape match
    the body's when the block changes channels or resolution; `Residual.auto` adds one when needed.
    backward sums the gradients of both paths. Put a ReLU after the block for a ResNet block.
    """

    def __init__(self, body: Module, projection: Module | None = None) -> None:
        super().__init__()
        self.body = self._add_child("body", body)
        self.projection = None if projection is None else self._add_child("projection", projection)

    @classmethod
    def auto(
        cls,
        body: Module,
        in_channels: int,
        out_channels: int,
        stride: int = 1,
        rng: Rng = None,
        dtype: DTypeLike = np.float32,
    ) -> Residual:
        """A Residual whose shortcut is the identity when in_channels == out_channels and
        stride == 1, else a 1x1 Conv2d(in_channels, out_channels, stride=stride, bias=False)
        (the body's own bias or batch norm shift makes a shortcut bias redundant)."""
        if in_channels == out_channels and stride == 1:
            return cls(body)
        projection = Conv2d(
            in_channels, out_channels, 1, stride=stride, bias=False, rng=rng, dtype=dtype
        )
        return cls(body, projection)

    def _shortcut_shape_check(self, body_shape: Shape, shortcut_shape: Shape) -> None:
        if body_shape != shortcut_shape:
            raise ValueError(
                f"Residual: the body outputs shape {body_shape} but the shortcut gives "
                f"{shortcut_shape}; add a projection (Residual.auto adds a 1x1 Conv2d when the "
                "channels or the stride change)"
            )

    def forward(self, x: np.ndarray) -> np.ndarray:
        y = _run_child("body", self.body, x)
        s = x if self.projection is None else _run_child("projection", self.projection, x)
        self._shortcut_shape_check(y.shape, np.shape(s))
        return y + s

    def backward(self, dout: np.ndarray) -> np.ndarray:
        dx = self.body.backward(dout)
        return dx + (dout if self.projection is None else self.projection.backward(dout))

    def output_shape(self, input_shape: Shape) -> Shape:
        return self._summary_rows("", tuple(input_shape))[1]

    def _summary_rows(self, name: str, shape: Shape) -> tuple[list[LayerRow], Shape]:
        prefix = f"{name}." if name else ""
        rows, out = self.body._summary_rows(prefix + "body", shape)
        shortcut = shape
        if self.projection is not None:
            projection_rows, shortcut = self.projection._summary_rows(prefix + "projection", shape)
            rows += projection_rows
        self._shortcut_shape_check(out, shortcut)
        return [*rows, LayerRow(name or "Residual", "Residual (add)", out, 0)], out


# --------------------------------------------------------------------------- architectures


def _flat_features(op: str, layers: list[Module], in_channels: int, input_size) -> int:
    """Values per example after `layers` (ending in Flatten) for images of input_size."""
    shape: Shape = (in_channels, *_checks.as_tuple(op, "input_size", input_size))
    for m in layers:
        shape = m.output_shape(shape)
    return shape[0]


def lenet(
    num_classes: int = 10,
    in_channels: int = 1,
    rng: Rng = None,
    dtype: DTypeLike = np.float32,
    input_size: int | tuple[int, int] = 28,
) -> Sequential:
    """A LeNet-style network for 28x28 images (input_size sets another size), 61,706 parameters
    for one channel and 10 classes:

    conv 5x5 6 pad 2 - ReLU - maxpool 2 - conv 5x5 16 - ReLU - maxpool 2 - flatten -
    linear 120 - ReLU - linear 84 - ReLU - linear num_classes.
    One Generator made from rng initialises every layer.
    """
    gen = _checks.as_rng("lenet", rng)
    features: list[Module] = [
        Conv2d(in_channels, 6, 5, padding=2, rng=gen, dtype=dtype),
        ReLU(),
        MaxPool2d(2),
        Conv2d(6, 16, 5, rng=gen, dtype=dtype),
        ReLU(),
        MaxPool2d(2),
        Flatten(),
    ]
    flat = _flat_features("lenet", features, in_channels, input_size)
    return Sequential(
        *features,
        Linear(flat, 120, rng=gen, dtype=dtype),
        ReLU(),
        Linear(120, 84, rng=gen, dtype=dtype),
        ReLU(),
        Linear(84, num_classes, rng=gen, dtype=dtype),
    )


def _vgg_block(in_channels: int, channels: int, gen: np.random.Generator, dtype) -> list[Module]:
    """[conv 3x3 pad 1 (no bias: batch norm shifts) - BatchNorm2d - ReLU] x 2 - maxpool 2."""
    layers: list[Module] = []
    for c_in in (in_channels, channels):
        layers += [
            Conv2d(c_in, channels, 3, padding=1, bias=False, rng=gen, dtype=dtype),
            BatchNorm2d(channels, dtype=dtype),
            ReLU(),
        ]
    return [*layers, MaxPool2d(2)]


def small_vgg(
    num_classes: int = 10,
    in_channels: int = 1,
    rng: Rng = None,
    dtype: DTypeLike = np.float32,
    input_size: int | tuple[int, int] = 28,
) -> Sequential:
    """A small VGG-style network with batch norm, for 28x28 images (input_size sets another size):

    two blocks of [conv 3x3 pad 1 - BatchNorm2d - ReLU] x 2 - maxpool 2, with 32 then 64
    channels (the convolutions have no bias: batch norm's shift replaces it), then flatten -
    Dropout(0.5) - linear 128 - ReLU - Dropout(0.5) - linear num_classes.
    One Generator made from rng initialises every layer and draws the dropout masks.
    """
    gen = _checks.as_rng("small_vgg", rng)
    features = [
        *_vgg_block(in_channels, 32, gen, dtype),
        *_vgg_block(32, 64, gen, dtype),
        Flatten(),
    ]
    flat = _flat_features("small_vgg", features, in_channels, input_size)
    return Sequential(
        *features,
        Dropout(0.5, rng=gen),
        Linear(flat, 128, rng=gen, dtype=dtype),
        ReLU(),
        Dropout(0.5, rng=gen),
        Linear(128, num_classes, rng=gen, dtype=dtype),
    )


def bench_cnn(
    num_classes: int = 10,
    in_channels: int = 1,
    rng: Rng = None,
    dtype: DTypeLike = np.float32,
    input_size: int | tuple[int, int] = 28,
) -> Sequential:
    """The small CNN of the speed benchmarks, for 28x28 images (input_size sets another size):

    conv 5x5 8 pad 2 - ReLU - maxpool 2 - conv 5x5 16 pad 2 - ReLU - maxpool 2 - flatten -
    linear num_classes (16*7*7 = 784 inputs for 28x28 images).
    One Generator made from rng initialises every layer.
    """
    gen = _checks.as_rng("bench_cnn", rng)
    features: list[Module] = [
        Conv2d(in_channels, 8, 5, padding=2, rng=gen, dtype=dtype),
        ReLU(),
        MaxPool2d(2),
        Conv2d(8, 16, 5, padding=2, rng=gen, dtype=dtype),
        ReLU(),
        MaxPool2d(2),
        Flatten(),
    ]
    flat = _flat_features("bench_cnn", features, in_channels, input_size)
    return Sequential(*features, Linear(flat, num_classes, rng=gen, dtype=dtype))


ARCHITECTURES: dict[str, Callable[..., Sequential]] = {
    "lenet": lenet,
    "small_vgg": small_vgg,
    "bench_cnn": bench_cnn,
}


def build(name: str, **kwargs) -> Sequential:
    """The architecture called `name` (see ARCHITECTURES), built with `kwargs`, e.g.
    build("lenet", num_classes=10, rng=0)."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; choose one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name](**kwargs)
