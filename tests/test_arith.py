"""cnn_core.arith against hand-worked examples, PyTorch's layers, and its error messages."""

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cnn_core import arith


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, 5),  # valid: positions 0..4 of a length-2 window on 6 values
        ({"stride": 2}, 3),  # windows start at 0, 2, 4
        ({"padding": 1}, 7),  # 8 padded values
        ({"stride": 2, "padding": 1}, 4),
    ],
)
def test_conv_output_size_1d_hand_examples(kwargs, expected):
    assert arith.conv_output_size(6, 2, **kwargs) == expected


def test_conv2d_output_shape():
    assert arith.conv2d_output_shape((3, 227, 227), 96, 11, stride=4) == (96, 55, 55)
    assert arith.conv2d_output_shape((64, 56, 56), 64, 3, padding=1) == (64, 56, 56)
    # pairs are (height, width): H = 32 + 2 - 3 + 1, W = (64 + 4 - 5) // 2 + 1
    assert arith.conv2d_output_shape((3, 32, 64), 8, (3, 5), (1, 2), (1, 2)) == (8, 32, 32)


def test_pool2d_output_shape():
    assert arith.pool2d_output_shape((96, 55, 55), 3, 2) == (96, 27, 27)  # overlapping
    assert arith.pool2d_output_shape((64, 224, 224), 2) == (64, 112, 112)  # stride = kernel
    assert arith.pool2d_output_shape((64, 112, 112), 3, 2, padding=1) == (64, 56, 56)


def test_im2col_shape_alexnet_conv1():
    # 11 * 11 * 3 = 363 values per receptive field, 55 * 55 = 3025 positions
    assert arith.im2col_shape((3, 227, 227), 11, stride=4) == (363, 3025)


def test_conv_params():
    assert arith.conv_params(3, 64, 3) == (3 * 3 * 3 + 1) * 64 == 1792
    assert arith.conv_params(3, 64, 3, bias=False) == 1728
    assert arith.conv_params(96, 256, 5, groups=2) == (5 * 5 * 48 + 1) * 256
    assert arith.conv_params(16, 8, (1, 7)) == (7 * 16 + 1) * 8


def test_conv_macs():
    # 2x2 outputs, each a 3x3 window of one channel
    assert arith.conv_macs((1, 4, 4), 1, 3) == 4 * 9
    assert arith.conv_macs((3, 227, 227), 96, 11, stride=4) == 96 * 55 * 55 * 363
    assert arith.conv_macs((96, 27, 27), 256, 5, padding=2, groups=2) == 256 * 27 * 27 * 48 * 25


def test_linear_and_batchnorm():
    assert arith.linear_params(4096, 1000) == 4_097_000
    assert arith.linear_params(84, 10, bias=False) == 840
    assert arith.linear_macs(4096, 1000) == 4_096_000
    assert arith.batchnorm_params(64) == 128


def test_activations():
    assert arith.activation_count((64, 112, 112)) == 802_816
    assert arith.activation_count((1000,)) == 1000
    assert arith.activation_bytes((64, 112, 112)) == 4 * 802_816
    assert arith.activation_bytes((10,), np.float64, batch_size=8) == 640
    assert arith.activation_bytes((10,), "float16") == 20


@pytest.mark.parametrize(
    ("layers", "field"),
    [
        ([], 1),
        ([(3, 1)] * 3, 7),
        ([(7, 1)], 7),
        ([(2, 2), (2, 2)], 4),
        ([(11, 4), (3, 2), (5, 1)], 1 + 10 + 2 * 4 + 4 * 8),  # AlexNet conv1, pool1, conv2
    ],
)
def test_receptive_field(layers, field):
    assert arith.receptive_field(layers) == field


def test_three_3x3_convs_versus_one_7x7():
    c = 64
    assert arith.receptive_field([(3, 1)] * 3) == arith.receptive_field([(7, 1)]) == 7
    assert 3 * arith.conv_params(c, c, 3, bias=False) == 27 * c * c
    assert arith.conv_params(c, c, 7, bias=False) == 49 * c * c


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: arith.conv2d_output_shape((3, 8, 8), 4, 0), "kernel_size must be positive, got 0"),
        (lambda: arith.conv2d_output_shape((3, 8, 8), 4, 3, stride=0), "stride must be positive"),
        (lambda: arith.conv2d_output_shape((3, 8, 8), 4, 3, padding=-1),
         "padding must be at least 0, got -1"),
        (lambda: arith.conv2d_output_shape((3, 5, 5), 4, 7),
         r"kernel_size \(7, 7\) is larger than the padded input \(5, 5\)"),
        (lambda: arith.conv2d_output_shape((3, 8, 8), 0, 3), "out_channels must be positive"),
        (lambda: arith.conv2d_output_shape((8, 8), 4, 3), r"input_shape must be \(C, H, W\)"),
        (lambda: arith.conv2d_output_shape((3, 8, 8), 4, (3, 3, 3)), "kernel_size must be"),
        (lambda: arith.pool2d_output_shape((3, 2, 2), 3), "larger than the padded input"),
        (lambda: arith.im2col_shape((3, 8, 8), 3, stride=-2), "stride must be positive, got -2"),
        (lambda: arith.conv_params(0, 4, 3), "in_channels must be positive, got 0"),
        (lambda: arith.conv_params(6, 4, 3, groups=4), "groups=4 must divide in_channels=6"),
        (lambda: arith.conv_macs((3, 8, 8), 4, 3, groups=2), "groups=2 must divide"),
        (lambda: arith.linear_params(10, -1), "out_features must be positive, got -1"),
        (lambda: arith.activation_bytes((10,), batch_size=0), "batch_size must be positive"),
        (lambda: arith.receptive_field([(3, 1), (0, 1)]), "kernel of layer 1 must be positive"),
        (lambda: arith.receptive_field([(3, 1, 1)]), r"layer 0 must be \(kernel, stride\)"),
    ],
)
def test_bad_values_raise_value_error_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("kernel", [2.0, True, "3"])
def test_non_integers_raise_type_error(kernel):
    with pytest.raises(TypeError, match="kernel_size must be an int"):
        arith.conv2d_output_shape((3, 8, 8), 4, kernel)


conv_cases = st.fixed_dictionaries({
    "c": st.integers(1, 4), "h": st.integers(1, 12), "w": st.integers(1, 12),
    "groups": st.sampled_from([1, 2]), "f": st.integers(1, 3),
    "kernel": st.tuples(st.integers(1, 5), st.integers(1, 5)),
    "stride": st.tuples(st.integers(1, 3), st.integers(1, 3)),
    "padding": st.tuples(st.integers(0, 2), st.integers(0, 2)),
    "bias": st.booleans(),
})


@settings(max_examples=60, deadline=None)
@given(conv_cases)
def test_conv_counts_match_torch(case):
    c, f, g = case["c"] * case["groups"], case["f"] * case["groups"], case["groups"]
    shape = (c, case["h"], case["w"])
    k, s, p = case["kernel"], case["stride"], case["padding"]
    if any(kk > n + 2 * pp for kk, n, pp in zip(k, shape[1:], p, strict=True)):
        with pytest.raises(ValueError):
            arith.conv2d_output_shape(shape, f, k, s, p)
        return
    layer = torch.nn.Conv2d(c, f, k, s, p, groups=g, bias=case["bias"])
    out = layer(torch.zeros(1, *shape))
    assert arith.conv2d_output_shape(shape, f, k, s, p) == tuple(out.shape[1:])
    assert arith.conv_params(c, f, k, case["bias"], g) == sum(t.numel() for t in layer.parameters())
    # each output value is a dot product of the filter's C/g * KH * KW weights with a window
    assert arith.conv_macs(shape, f, k, s, p, g) == out.numel() * layer.weight[0].numel()
    assert arith.im2col_shape(shape, k, s, p) == (c * k[0] * k[1], out.shape[2] * out.shape[3])


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 12), st.integers(1, 4), st.integers(1, 3), st.integers(0, 2))
def test_pool_shape_matches_torch(n, kernel, stride, padding):
    # torch rejects padding over half the kernel; an oversized kernel is tested above
    assume(padding <= kernel // 2 and kernel <= n + 2 * padding)
    out = torch.nn.functional.max_pool2d(torch.zeros(1, 2, n, n), kernel, stride, padding)
    assert arith.pool2d_output_shape((2, n, n), kernel, stride, padding) == tuple(out.shape[1:])
