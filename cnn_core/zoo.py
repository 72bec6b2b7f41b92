"""Classic CNN architectures as layer specifications, with per-layer and total counts.

A network is data: an input shape and a tuple of layer records (`Conv`, `Pool`, `Linear`, ...).
Builders write the repeated parts: `vgg` from a configuration list, `inception` modules, residual
`basic_block` and `bottleneck_block` stages. `summary(name)` walks a specification with
`cnn_core.arith` and reports, for one example (batch size 1), per layer and in total:

- params: trainable parameters: weights, biases, batch norm's gamma and beta (not its running
  statistics, which are buffers);
- macs: multiply-adds of convolutions, fully connected layers and LeNet-5's trainable subsampling,
  bias additions not included; pooling, activation functions, LRN, batch norm, concatenation and
  residual additions count none;
- activations: values output by each convolution, pooling and fully connected layer. Activation
  functions, LRN, dropout, batch norm and residual additions are taken to work in place and a
  concatenation to be written directly by its branches, so they add none (and are left out of the
  specifications).

Your own stacks are summarized the same way, e.g. three 3x3 convolutions against one 7x7:

    >>> three = summarize(Network("3x3", (64, 56, 56), tuple(Conv(f"c{i}", 64, 3, padding=1)
    ...                                                     for i in range(3))))
    >>> one = summarize(Network("7x7", (64, 56, 56), (Conv("c", 64, 7, padding=3),)))
    >>> three.total_params, one.total_params
    (110784, 200768)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
from numpy.typing import DTypeLike

from cnn_core.arith import (
    IntOrPair,
    activation_bytes,
    activation_count,
    batchnorm_params,
    conv2d_output_shape,
    conv_macs,
    conv_params,
    linear_macs,
    linear_params,
    pool2d_output_shape,
)

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Row:
    """One line of a summary: a layer, or a whole block, and what it costs for one example.

    output_shape is (C, H, W) or (D,); params and activations are counts of values, macs of
    multiply-adds. connections follows LeCun et al. 1998: multiply-adds plus one per output of a
    layer with a bias.
    """

    name: str
    kind: str
    output_shape: Shape
    params: int
    macs: int
    activations: int
    connections: int


def _row(name: str, kind: str, shape: Shape, params: int, macs: int, bias: bool) -> Row:
    """A leaf layer's row; its activations are its output's values."""
    acts = activation_count(shape)
    return Row(name, kind, shape, params, macs, acts, macs + acts * bias)


@dataclass(frozen=True)
class Conv:
    """2D convolution, optionally grouped; batchnorm=True adds a batch norm after it (2 params per
    output channel)."""

    name: str
    out_channels: int
    kernel_size: IntOrPair
    stride: IntOrPair = 1
    padding: IntOrPair = 0
    groups: int = 1
    bias: bool = True
    batchnorm: bool = False

    def walk(self, shape: Shape) -> tuple[list[Row], Shape]:
        out = conv2d_output_shape(
            shape, self.out_channels, self.kernel_size, self.stride, self.padding
        )
        params = conv_params(shape[0], self.out_channels, self.kernel_size, self.bias, self.groups)
        if self.batchnorm:
            params += batchnorm_params(self.out_channels)
        macs = conv_macs(
            shape, self.out_channels, self.kernel_size, self.stride, self.padding, self.groups
        )
        return [_row(self.name, "conv", out, params, macs, self.bias)], out


@dataclass(frozen=True)
class Pool:
    """2D max ("max") or average ("avg") pooling; stride None means stride = kernel_size."""

    name: str
    kernel_size: IntOrPair
    stride: IntOrPair | None = None
    padding: IntOrPair = 0
    kind: str = "max"

    def __post_init__(self) -> None:
        if self.kind not in ("max", "avg"):
            raise ValueError(f"Pool {self.name!r}: kind must be 'max' or 'avg', got {self.kind!r}")

    def walk(self, shape: Shape) -> tuple[list[Row], Shape]:
        out = pool2d_output_shape(shape, self.kernel_size, self.stride, self.padding)
        return [_row(self.name, f"{self.kind}pool", out, 0, 0, False)], out


@dataclass(frozen=True)
class Linear:
    """Fully connected layer; an input of shape (C, H, W) is flattened to C * H * W features."""

    name: str
    out_features: int
    bias: bool = True

    def walk(self, shape: Shape) -> tuple[list[Row], Shape]:
        d = activation_count(shape)
        out = (self.out_features,)
        params = linear_params(d, self.out_features, self.bias)
        macs = linear_macs(d, self.out_features)
        return [_row(self.name, "linear", out, params, macs, self.bias)], out


@dataclass(frozen=True)
class Subsample:
    """LeNet-5's trainable subsampling: per map, the sum of each kernel_size x kernel_size window
    (stride kernel_size) times a trainable coefficient, plus a trainable bias."""

    name: str
    kernel_size: int = 2

    def walk(self, shape: Shape) -> tuple[list[Row], Shape]:
        out = pool2d_output_shape(shape, self.kernel_size)
        c = out[0]
        params = 2 * c  # one coefficient and one bias per map
        # coefficient * window sum = a depthwise convolution whose k*k weights are tied
        macs = conv_macs(shape, c, self.kernel_size, self.kernel_size, groups=c)
        return [_row(self.name, "subsample", out, params, macs, True)], out


@dataclass(frozen=True)
class PartialConv:
    """Convolution in which output map j sees only the input maps listed in table[j], as in
    LeNet-5's C3. Each output map has its own bias."""

    name: str
    table: tuple[tuple[int, ...], ...]
    kernel_size: IntOrPair

    def walk(self, shape: Shape) -> tuple[list[Row], Shape]:
        out = conv2d_output_shape(shape, len(self.table), self.kernel_size)
        for j, inputs in enumerate(self.table):
            if not inputs or not all(0 <= i < shape[0] for i in inputs):
                raise ValueError(f"table[{j}] = {inputs!r} must list input maps in [0, {shape[0]})")
        # each output map is a one-filter convolution over its own subset of input maps
        params = sum(conv_params(len(t), 1, self.kernel_size) for t in self.table)
        macs = sum(conv_macs((len(t), *shape[1:]), 1, self.kernel_size) for t in self.table)
        return [_row(self.name, "partial conv", out, params, macs, True)], out


@dataclass(frozen=True)
class Concat:
    """Parallel branches over the same input; their outputs are concatenated along channels."""

    name: str
    branches: tuple[tuple[Layer, ...], ...]

    def walk(self, shape: Shape) -> tuple[list[Row], Shape]:
        rows, outs = [], []
        for branch in self.branches:
            branch_rows, out = _walk_seq(branch, shape)
            rows += branch_rows
            outs.append(out)
        if len({out[1:] for out in outs}) != 1:
            raise ValueError(f"branch outputs {outs} differ in height or width; cannot concatenate")
        return _prefixed(self.name, rows), (sum(out[0] for out in outs), *outs[0][1:])


@dataclass(frozen=True)
class Residual:
    """main(x) + shortcut(x); an empty shortcut is the identity."""

    name: str
    main: tuple[Layer, ...]
    shortcut: tuple[Layer, ...] = ()

    def walk(self, shape: Shape) -> tuple[list[Row], Shape]:
        main_rows, out = _walk_seq(self.main, shape)
        short_rows, short = _walk_seq(self.shortcut, shape)
        if out != short:
            raise ValueError(f"main path gives {out} but the shortcut gives {short}; cannot add")
        return _prefixed(self.name, main_rows + short_rows), out


# Every layer record has walk(input shape) -> (its summary rows, its output shape).
Layer = Conv | Pool | Linear | Subsample | PartialConv | Concat | Residual
_BLOCKS = (Concat, Residual)


def _walk_one(layer: Layer, shape: Shape) -> tuple[list[Row], Shape]:
    """Rows and output shape of one layer; errors name the layer and its input."""
    try:
        return layer.walk(shape)
    except ValueError as err:
        raise ValueError(f"layer {layer.name!r} on input {shape}: {err}") from err


def _walk_seq(layers: tuple[Layer, ...], shape: Shape) -> tuple[list[Row], Shape]:
    """Rows of a sequence of layers, each fed the previous one's output, and the final shape."""
    rows = []
    for layer in layers:
        layer_rows, shape = _walk_one(layer, shape)
        rows += layer_rows
    return rows, shape


def _prefixed(prefix: str, rows: list[Row]) -> list[Row]:
    return [dataclasses.replace(r, name=f"{prefix}.{r.name}") for r in rows]


def _block_row(block: Concat | Residual, rows: list[Row], shape: Shape) -> Row:
    """One row standing for all of a block's layers."""
    kind = "concat" if isinstance(block, Concat) else "residual"
    fields = ("params", "macs", "activations", "connections")
    return Row(block.name, kind, shape, *(sum(getattr(r, f) for r in rows) for f in fields))


@dataclass(frozen=True)
class Network:
    """A network specification: input shape (C, H, W) of one example and its layers in order."""

    name: str
    input_shape: tuple[int, int, int]
    layers: tuple[Layer, ...]


@dataclass(frozen=True)
class Summary:
    """Per-layer counts of a network for one example, with totals; str() prints a table."""

    name: str
    input_shape: Shape
    layers: tuple[Row, ...]

    @property
    def total_params(self) -> int:
        return sum(r.params for r in self.layers)

    @property
    def total_macs(self) -> int:
        return sum(r.macs for r in self.layers)

    @property
    def total_activations(self) -> int:
        return sum(r.activations for r in self.layers)

    def row(self, name: str) -> Row:
        """The row called `name`, e.g. "conv1" or, in an expanded summary, "inception3a.3x3"."""
        for r in self.layers:
            if r.name == name:
                return r
        names = ", ".join(r.name for r in self.layers)
        raise KeyError(f"{self.name} has no layer {name!r}; its layers: {names}")

    def activation_bytes(self, dtype: DTypeLike = np.float32, batch_size: int = 1) -> int:
        """Bytes to hold every layer's output for a batch, as kept for backpropagation."""
        return activation_bytes((self.total_activations,), dtype, batch_size)

    def __str__(self) -> str:
        header = ("layer", "kind", "output", "params", "MACs", "activations")
        body = [
            (
                r.name,
                r.kind,
                _shape_text(r.output_shape),
                f"{r.params:,}",
                f"{r.macs:,}",
                f"{r.activations:,}",
            )
            for r in self.layers
        ]
        total = (
            "total",
            "",
            "",
            f"{self.total_params:,}",
            f"{self.total_macs:,}",
            f"{self.total_activations:,}",
        )
        widths = [max(len(cells[i]) for cells in (header, *body, total)) for i in range(6)]

        def line(cells: tuple[str, ...]) -> str:
            # text columns left-aligned, numbers right-aligned
            return "  ".join(
                c.ljust(w) if i < 3 else c.rjust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            )

        rule = "-" * len(line(header))
        title = f"{self.name}: input {_shape_text(self.input_shape)}, counts per example"
        return "\n".join([title, line(header), rule, *map(line, body), rule, line(total)])


def _shape_text(shape: Shape) -> str:
    return "x".join(map(str, shape))


def summarize(network: Network, expand: bool = False) -> Summary:
    """Count a network's parameters, multiply-adds and activations, layer by layer.

    A block (Inception module, residual block) is one row unless expand=True, which lists every
    layer inside it as "block.layer".
    """
    rows, shape = [], network.input_shape
    for layer in network.layers:
        layer_rows, shape = _walk_one(layer, shape)
        if isinstance(layer, _BLOCKS) and not expand:
            layer_rows = [_block_row(layer, layer_rows, shape)]
        rows += layer_rows
    return Summary(network.name, network.input_shape, tuple(rows))


# LeNet-5's C3 connection table (LeCun et al. 1998, Table I): the S2 maps each C3 map reads.
LENET5_C3_TABLE = (
    (0, 1, 2),
    (1, 2, 3),
    (2, 3, 4),
    (3, 4, 5),
    (0, 4, 5),
    (0, 1, 5),
    (0, 1, 2, 3),
    (1, 2, 3, 4),
    (2, 3, 4, 5),
    (0, 3, 4, 5),
    (0, 1, 4, 5),
    (0, 1, 2, 5),
    (0, 1, 3, 4),
    (1, 2, 4, 5),
    (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)


def lenet5() -> Network:
    """LeNet-5 as in LeCun et al. 1998, on a 32x32 input.

    S2 and S4 are trainable subsamplings (a coefficient and a bias per map), C3 reads the S2 maps
    of Table I, C5 is a 5x5 convolution with a 1x1 output, and the output layer has 10 Euclidean
    RBF units over F6's 84 values: 84 * 10 parameters, counted like a bias-free linear layer (one
    parameter and one subtract-square-accumulate per connection).
    """
    return Network(
        "lenet5",
        (1, 32, 32),
        (
            Conv("C1", 6, 5),
            Subsample("S2"),
            PartialConv("C3", LENET5_C3_TABLE, 5),
            Subsample("S4"),
            Conv("C5", 120, 5),
            Linear("F6", 84),
            Linear("output", 10, bias=False),
        ),
    )


def alexnet() -> Network:
    """AlexNet as in Krizhevsky et al. 2012, with its two-GPU split: conv2, conv4 and conv5 are
    grouped convolutions in 2 groups (each half sees only the maps on its own GPU).

    The input is 227x227: the paper's 224x224 does not fit its first layer, (224 - 11) / 4 + 1 is
    not a whole number, while (227 - 11) / 4 + 1 = 55 gives the paper's 55x55x96 conv1 maps and
    every later shape. LRN, ReLU and dropout are left out: they have no parameters or MACs.
    """
    return Network(
        "alexnet",
        (3, 227, 227),
        (
            Conv("conv1", 96, 11, stride=4),
            Pool("pool1", 3, 2),
            Conv("conv2", 256, 5, padding=2, groups=2),
            Pool("pool2", 3, 2),
            Conv("conv3", 384, 3, padding=1),
            Conv("conv4", 384, 3, padding=1, groups=2),
            Conv("conv5", 256, 3, padding=1, groups=2),
            Pool("pool5", 3, 2),
            Linear("fc6", 4096),
            Linear("fc7", 4096),
            Linear("fc8", 1000),
        ),
    )


# Simonyan & Zisserman 2015, Table 1: output channels of each 3x3 convolution, "M" a 2x2 max pool.
VGG_CONFIGS = {
    16: (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"),
    19: (
        64,
        64,
        "M",
        128,
        128,
        "M",
        256,
        256,
        256,
        256,
        "M",
        512,
        512,
        512,
        512,
        "M",
        512,
        512,
        512,
        512,
        "M",
    ),
}


def vgg_features(config: tuple[int | str, ...]) -> tuple[Layer, ...]:
    """3x3 padding-1 convolutions and 2x2 stride-2 max pools from a VGG configuration list.

    Layers are named conv{stage}_{i} and pool{stage}, stages counted from 1.
    """
    layers: list[Layer] = []
    stage, i = 1, 1
    for item in config:
        if item == "M":
            layers.append(Pool(f"pool{stage}", 2))
            stage, i = stage + 1, 1
        else:
            layers.append(Conv(f"conv{stage}_{i}", item, 3, padding=1))
            i += 1
    return tuple(layers)


def vgg(depth: int) -> Network:
    """VGG-16 (configuration D) or VGG-19 (E) on a 224x224 input, 4096-4096-1000 classifier."""
    if depth not in VGG_CONFIGS:
        raise ValueError(f"vgg: depth must be one of {sorted(VGG_CONFIGS)}, got {depth!r}")
    classifier = (Linear("fc6", 4096), Linear("fc7", 4096), Linear("fc8", 1000))
    return Network(f"vgg{depth}", (3, 224, 224), vgg_features(VGG_CONFIGS[depth]) + classifier)


def inception(
    name: str,
    n1x1: int,
    n3x3_reduce: int | None,
    n3x3: int,
    n5x5_reduce: int | None,
    n5x5: int,
    pool_proj: int | None,
) -> Concat:
    """An Inception module (Szegedy et al. 2015, Figure 2), channels as in the columns of Table 1.

    Branches: 1x1; 1x1 reduce then 3x3; 1x1 reduce then 5x5; 3x3 max pool then 1x1 projection.
    None for the reductions and the projection gives the naive module of Figure 2(a), for
    measuring what the 1x1 reductions save.
    """

    def pointwise(layer_name: str, channels: int | None) -> tuple[Layer, ...]:
        return () if channels is None else (Conv(layer_name, channels, 1),)

    return Concat(
        name,
        (
            pointwise("1x1", n1x1),
            (*pointwise("3x3_reduce", n3x3_reduce), Conv("3x3", n3x3, 3, padding=1)),
            (*pointwise("5x5_reduce", n5x5_reduce), Conv("5x5", n5x5, 5, padding=2)),
            (Pool("pool", 3, 1, padding=1), *pointwise("pool_proj", pool_proj)),
        ),
    )


# Szegedy et al. 2015, Table 1: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj.
GOOGLENET_INCEPTIONS = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}


def googlenet() -> Network:
    """GoogLeNet (Inception v1) as in Szegedy et al. 2015, Table 1, on a 224x224 input.

    Every convolution and the final linear layer has a bias. The auxiliary classifiers (used only
    in training) and LRN (no parameters) are left out. The 3x3 stride-2 max pools use padding 1,
    which gives the table's sizes (112 -> 56 -> 28 -> 14 -> 7) as rounding up does.

    The channels follow Table 1's columns; its params and ops columns mostly agree with them (its K
    is 1024), except for conv1 (listed 2.7K and 34M; 7x7x3x64 weights make 9.4K and 118M), the
    params of inception (4c) and both figures of inception (5a). Hence 6,998,552 parameters (the
    paper's "6.8M" is the table's sum in its K) and 1.58G multiply-adds (the paper's "1.5 billion").
    """

    def stage(*keys: str) -> tuple[Concat, ...]:
        return tuple(inception(f"inception{k}", *GOOGLENET_INCEPTIONS[k]) for k in keys)

    return Network(
        "googlenet",
        (3, 224, 224),
        (
            Conv("conv1", 64, 7, stride=2, padding=3),
            Pool("pool1", 3, 2, padding=1),
            Conv("conv2_reduce", 64, 1),
            Conv("conv2", 192, 3, padding=1),
            Pool("pool2", 3, 2, padding=1),
            *stage("3a", "3b"),
            Pool("pool3", 3, 2, padding=1),
            *stage("4a", "4b", "4c", "4d", "4e"),
            Pool("pool4", 3, 2, padding=1),
            *stage("5a", "5b"),
            Pool("pool5", 7, 1, kind="avg"),
            Linear("fc", 1000),
        ),
    )


def _conv_bn(name: str, out_channels: int, kernel_size: int, stride: int = 1) -> Conv:
    """ResNet's convolution: no bias (batch norm's beta plays its part), "same" padding."""
    return Conv(
        name, out_channels, kernel_size, stride, kernel_size // 2, bias=False, batchnorm=True
    )


def _shortcut(in_channels: int, out_channels: int, stride: int) -> tuple[Layer, ...]:
    """Identity where shapes agree, else a strided 1x1 projection (He et al. 2016, option B)."""
    if in_channels == out_channels and stride == 1:
        return ()
    return (_conv_bn("downsample", out_channels, 1, stride),)


def basic_block(name: str, in_channels: int, channels: int, stride: int = 1) -> Residual:
    """ResNet-18/34 block: two 3x3 convolutions with `channels` outputs, the first strided."""
    main = (_conv_bn("conv1", channels, 3, stride), _conv_bn("conv2", channels, 3))
    return Residual(name, main, _shortcut(in_channels, channels, stride))


def bottleneck_block(name: str, in_channels: int, channels: int, stride: int = 1) -> Residual:
    """ResNet-50/101/152 block: 1x1 down to `channels`, 3x3, 1x1 up to 4 * channels.

    The stride sits on the first 1x1, as in the paper; moving it to the 3x3 (torchvision's
    "v1.5") keeps the parameters and costs more multiply-adds.
    """
    main = (
        _conv_bn("conv1", channels, 1, stride),
        _conv_bn("conv2", channels, 3),
        _conv_bn("conv3", 4 * channels, 1),
    )
    return Residual(name, main, _shortcut(in_channels, 4 * channels, stride))


# He et al. 2016, Table 1: block type, its output channels per unit of width, blocks per stage.
RESNET_CONFIGS = {
    18: (basic_block, 1, (2, 2, 2, 2)),
    34: (basic_block, 1, (3, 4, 6, 3)),
    50: (bottleneck_block, 4, (3, 4, 6, 3)),
    101: (bottleneck_block, 4, (3, 4, 23, 3)),
    152: (bottleneck_block, 4, (3, 8, 36, 3)),
}


def resnet(depth: int) -> Network:
    """ResNet-18/34/50/101/152 (He et al. 2016, Table 1) on a 224x224 input.

    Every convolution is followed by batch norm and has no bias. Blocks are named after the
    table's stages, conv{stage}_{i}; the first block of stages 3-5 halves height and width.
    Parameters equal torchvision's models; multiply-adds are 1.81, 3.66, 3.86, 7.57 and 11.28
    x10^9, which the paper lists as 1.8, 3.6, 3.8, 7.6 and 11.3.
    """
    if depth not in RESNET_CONFIGS:
        raise ValueError(f"resnet: depth must be one of {sorted(RESNET_CONFIGS)}, got {depth!r}")
    block, expansion, counts = RESNET_CONFIGS[depth]
    layers: list[Layer] = [_conv_bn("conv1", 64, 7, 2), Pool("maxpool", 3, 2, padding=1)]
    in_channels = 64
    for stage, (count, channels) in enumerate(zip(counts, (64, 128, 256, 512), strict=True), 2):
        for i in range(count):
            stride = 2 if i == 0 and stage > 2 else 1
            layers.append(block(f"conv{stage}_{i + 1}", in_channels, channels, stride))
            in_channels = channels * expansion
    layers += [Pool("avgpool", 7, kind="avg"), Linear("fc", 1000)]
    return Network(f"resnet{depth}", (3, 224, 224), tuple(layers))


_NETWORKS: dict[str, Callable[[], Network]] = {
    "lenet5": lenet5,
    "alexnet": alexnet,
    "vgg16": partial(vgg, 16),
    "vgg19": partial(vgg, 19),
    "googlenet": googlenet,
    **{f"resnet{d}": partial(resnet, d) for d in RESNET_CONFIGS},
}
NAMES: tuple[str, ...] = tuple(_NETWORKS)


def network(name: str) -> Network:
    """The specification of a zoo network by name; see NAMES."""
    if name not in _NETWORKS:
        raise ValueError(f"unknown network {name!r}; known networks: {', '.join(NAMES)}")
    return _NETWORKS[name]()


def summary(name: str, expand: bool = False) -> Summary:
    """Per-layer and total counts of a zoo network (see NAMES); print it for a table."""
    return summarize(network(name), expand)
