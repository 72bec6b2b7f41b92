"""CNN arithmetic: output sizes, parameters, multiply-adds, activation memory, receptive fields.

Counts are per example. Shapes are (C, H, W), the package's NCHW layout without the batch axis.
A multiply-add (MAC) is one multiplication plus one accumulation; bias additions are not counted.
Functions check their arguments and raise ValueError naming the argument and its value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import DTypeLike

from cnn_core._args import integer, integers

IntOrPair = int | tuple[int, int]


def conv_output_size(n: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Output length of a convolution or pooling window along one axis.

    floor((n + 2p - k) / s) + 1. Unchecked; the shape functions below check their arguments.
    """
    return (n + 2 * padding - kernel) // stride + 1


def _chw(op: str, input_shape) -> tuple[int, int, int]:
    """Check an input shape (C, H, W) of positive ints."""
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3:
        raise ValueError(f"{op}: input_shape must be (C, H, W), got {input_shape!r}")
    c, h, w = (integer(op, "input_shape", v, 1) for v in input_shape)
    return c, h, w


def _window(op: str, input_shape, kernel_size, stride, padding) -> tuple[int, int, int]:
    """(C, OH, OW) of a 2D window sliding over `input_shape`; raise if the kernel does not fit."""
    c, h, w = _chw(op, input_shape)
    kernel = integers(op, "kernel_size", kernel_size, 2, 1)
    stride = integers(op, "stride", stride, 2, 1)
    padding = integers(op, "padding", padding, 2, 0)
    padded = (h + 2 * padding[0], w + 2 * padding[1])
    if kernel[0] > padded[0] or kernel[1] > padded[1]:
        raise ValueError(
            f"{op}: kernel_size {kernel} is larger than the padded input {padded} "
            f"(input {(h, w)}, padding {padding})"
        )
    oh = conv_output_size(h, kernel[0], stride[0], padding[0])
    ow = conv_output_size(w, kernel[1], stride[1], padding[1])
    return c, oh, ow


def _groups(op: str, in_channels: int, out_channels: int, groups) -> int:
    """Check that `groups` divides both channel counts."""
    groups = integer(op, "groups", groups, 1)
    if in_channels % groups or out_channels % groups:
        raise ValueError(
            f"{op}: groups={groups} must divide in_channels={in_channels} "
            f"and out_channels={out_channels}"
        )
    return groups


def conv2d_output_shape(
    input_shape: tuple[int, int, int],
    out_channels: int,
    kernel_size: IntOrPair,
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
) -> tuple[int, int, int]:
    """Output shape (F, OH, OW) of a 2D convolution over one example of shape (C, H, W).

    OH = floor((H + 2 * PH - KH) / SH) + 1, and likewise OW. kernel_size, stride and padding are an
    int (same on both axes) or a pair (height, width).
    """
    op = "conv2d_output_shape"
    out_channels = integer(op, "out_channels", out_channels, 1)
    _, oh, ow = _window(op, input_shape, kernel_size, stride, padding)
    return out_channels, oh, ow


def pool2d_output_shape(
    input_shape: tuple[int, int, int],
    kernel_size: IntOrPair,
    stride: IntOrPair | None = None,
    padding: IntOrPair = 0,
) -> tuple[int, int, int]:
    """Output shape (C, OH, OW) of 2D max or average pooling over one example of shape (C, H, W).

    Pooling keeps the channel count. stride None means stride = kernel_size (windows do not
    overlap).
    """
    stride = kernel_size if stride is None else stride
    return _window("pool2d_output_shape", input_shape, kernel_size, stride, padding)


def im2col_shape(
    input_shape: tuple[int, int, int],
    kernel_size: IntOrPair,
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
) -> tuple[int, int]:
    """Shape (C * KH * KW, OH * OW) of the im2col matrix X_col of one example of shape (C, H, W).

    Each column holds one receptive field; a convolution is then W_row (F, C*KH*KW) @ X_col.
    """
    c, oh, ow = _window("im2col_shape", input_shape, kernel_size, stride, padding)
    kh, kw = integers("im2col_shape", "kernel_size", kernel_size, 2, 1)
    return c * kh * kw, oh * ow


def conv_params(
    in_channels: int,
    out_channels: int,
    kernel_size: IntOrPair,
    bias: bool = True,
    groups: int = 1,
) -> int:
    """Number of trainable parameters of a 2D convolution: (KH * KW * C_in / groups + 1) * C_out.

    The + 1 is the bias, dropped when bias=False. With groups=g each filter sees C_in / g channels.
    """
    op = "conv_params"
    c_in = integer(op, "in_channels", in_channels, 1)
    c_out = integer(op, "out_channels", out_channels, 1)
    kh, kw = integers(op, "kernel_size", kernel_size, 2, 1)
    g = _groups(op, c_in, c_out, groups)
    return (kh * kw * c_in // g + int(bias)) * c_out


def conv_macs(
    input_shape: tuple[int, int, int],
    out_channels: int,
    kernel_size: IntOrPair,
    stride: IntOrPair = 1,
    padding: IntOrPair = 0,
    groups: int = 1,
) -> int:
    """Multiply-adds of a 2D convolution over one example.

    C_out * OH * OW * (C_in / groups) * KH * KW: one per weight per output position.

    Bias additions are not counted. input_shape is (C_in, H, W).
    """
    op = "conv_macs"
    c_out, oh, ow = conv2d_output_shape(input_shape, out_channels, kernel_size, stride, padding)
    c_in = input_shape[0]
    g = _groups(op, c_in, c_out, groups)
    kh, kw = integers(op, "kernel_size", kernel_size, 2, 1)
    return c_out * oh * ow * (c_in // g) * kh * kw


def linear_params(in_features: int, out_features: int, bias: bool = True) -> int:
    """Trainable parameters of a fully connected layer with D inputs and M outputs: (D + 1) * M."""
    d = integer("linear_params", "in_features", in_features, 1)
    m = integer("linear_params", "out_features", out_features, 1)
    return (d + int(bias)) * m


def linear_macs(in_features: int, out_features: int) -> int:
    """Multiply-adds of a fully connected layer for one example: D * M (biases not counted)."""
    d = integer("linear_macs", "in_features", in_features, 1)
    m = integer("linear_macs", "out_features", out_features, 1)
    return d * m


def batchnorm_params(channels: int) -> int:
    """Trainable parameters of batch norm: gamma and beta per channel, 2 * C.

    The running mean and variance are buffers, not parameters.
    """
    return 2 * integer("batchnorm_params", "channels", channels, 1)


def activation_count(shape: Sequence[int]) -> int:
    """Number of values in one example's activation of shape e.g. (C, H, W) or (D,)."""
    return math.prod(integer("activation_count", "shape", v, 1) for v in shape)


def activation_bytes(
    shape: Sequence[int], dtype: DTypeLike = np.float32, batch_size: int = 1
) -> int:
    """Memory in bytes of a batch of activations: batch_size * prod(shape) * itemsize of dtype."""
    n = integer("activation_bytes", "batch_size", batch_size, 1)
    return n * activation_count(shape) * np.dtype(dtype).itemsize


def receptive_field(layers: Sequence[tuple[int, int]]) -> int:
    """Receptive field (in input pixels, along one axis) of a stack of (kernel, stride) layers.

    Layer i widens the field by (k_i - 1) times the product of the strides below it:
    r = 1 + sum_i (k_i - 1) * s_1 * ... * s_(i-1). Three 3x3 stride-1 convs see 7 pixels.
    """
    field, jump = 1, 1
    for i, layer in enumerate(layers):
        if not isinstance(layer, (tuple, list)) or len(layer) != 2:
            raise ValueError(f"receptive_field: layer {i} must be (kernel, stride), got {layer!r}")
        kernel = integer("receptive_field", f"kernel of layer {i}", layer[0], 1)
        stride = integer("receptive_field", f"stride of layer {i}", layer[1], 1)
        field += (kernel - 1) * jump
        jump *= stride
    return field
