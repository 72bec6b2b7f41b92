"""The fast ops (cnn_core.functional) against PyTorch CPU, the naive loops and the gradient checker."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from threadpoolctl import threadpool_limits

import cnn_core
from cnn_core import _threads, naive, selfcheck
from cnn_core import functional as fast

TOL = {np.float32: dict(rtol=2e-4, atol=2e-5), np.float64: dict(rtol=1e-10, atol=1e-11)}


def rand(rng, shape, dtype=np.float64, contiguous=True):
    """Normal values of `shape`; a strided (non-contiguous) view of them when asked."""
    if contiguous:
        return rng.standard_normal(shape).astype(dtype)
    return rng.standard_normal((*shape, 2)).astype(dtype)[..., 0]


def torch_grads(fn, arrays, dout):
    """Run torch `fn` on copies of `arrays` with autograd; return (out, [grad per array])."""
    ts = [torch.tensor(np.array(a), requires_grad=True) for a in arrays]
    out = fn(*ts)
    out.backward(torch.tensor(np.array(dout)))
    return out.detach().numpy(), [t.grad.numpy() for t in ts]


def assert_close(actual, expected, dtype):
    assert actual.dtype == np.dtype(dtype), f"dtype {actual.dtype}, expected {np.dtype(dtype)}"
    np.testing.assert_allclose(actual, expected, **TOL[dtype])


# --------------------------------------------------------------------------- convolution

conv_cases = st.fixed_dictionaries(
    {
        "n": st.integers(1, 4),
        "c": st.integers(1, 3),
        "f": st.integers(1, 4),
        "h": st.integers(1, 9),
        "w": st.integers(1, 9),
        "kh": st.integers(1, 4),
        "kw": st.integers(1, 4),
        "sh": st.integers(1, 3),
        "sw": st.integers(1, 3),
        "ph": st.integers(0, 2),
        "pw": st.integers(0, 2),
        "dtype": st.sampled_from([np.float32, np.float64]),
        "contiguous": st.booleans(),
        "one_image_chunks": st.booleans(),
        "seed": st.integers(0, 2**31),
    }
)


@contextlib.contextmanager
def one_image_per_chunk(enabled: bool = True):
    """Convolutions split every batch into one-image chunks, run on threads when BLAS has several."""
    saved = fast._CHUNK_BYTES
    fast._CHUNK_BYTES = 1 if enabled else saved
    try:
        yield
    finally:
        fast._CHUNK_BYTES = saved


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(
    conv_cases.filter(lambda p: p["kh"] <= p["h"] + 2 * p["ph"] and p["kw"] <= p["w"] + 2 * p["pw"])
)
def test_conv2d_matches_torch(p):
    rng = np.random.default_rng(p["seed"])
    dt = p["dtype"]
    x = rand(rng, (p["n"], p["c"], p["h"], p["w"]), dt, p["contiguous"])
    w = rand(rng, (p["f"], p["c"], p["kh"], p["kw"]), dt, p["contiguous"])
    b = rand(rng, (p["f"],), dt)
    stride, padding = (p["sh"], p["sw"]), (p["ph"], p["pw"])
    with one_image_per_chunk(p["one_image_chunks"]):
        out, cache = fast.conv2d_forward(x, w, b, stride=stride, padding=padding)
        dout = rand(rng, out.shape, dt)
        grads = fast.conv2d_backward(dout, cache)
    t_out, t_grads = torch_grads(
        lambda *a: tf.conv2d(*a, stride=stride, padding=padding), [x, w, b], dout
    )
    assert_close(out, t_out, dt)
    for g, tg in zip(grads, t_grads, strict=True):
        assert_close(g, tg, dt)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 3),
    st.integers(1, 3),
    st.integers(1, 3),
    st.integers(3, 12),
    st.integers(1, 3),
    st.integers(1, 3),
    st.integers(0, 2),
    st.sampled_from([np.float32, np.float64]),
    st.integers(0, 2**31),
)
def test_conv1d_matches_torch(n, c, f, length, k, s, pad, dt, seed):
    rng = np.random.default_rng(seed)
    x, w, b = rand(rng, (n, c, length), dt), rand(rng, (f, c, k), dt), rand(rng, (f,), dt)
    out, cache = fast.conv1d_forward(x, w, b, stride=s, padding=pad)
    dout = rand(rng, out.shape, dt)
    t_out, t_grads = torch_grads(lambda *a: tf.conv1d(*a, stride=s, padding=pad), [x, w, b], dout)
    assert_close(out, t_out, dt)
    for g, tg in zip(fast.conv1d_backward(dout, cache), t_grads, strict=True):
        assert_close(g, tg, dt)


def test_conv1d_lecture_example():
    """x = [1,2,3,2,5,1], f = [1,2]: valid, stride 2 and zero padding 1, worked by hand."""
    x = np.array([[[1, 2, 3, 2, 5, 1]]], dtype=np.float64)
    w = np.array([[[1, 2]]], dtype=np.float64)
    b = np.zeros(1)
    assert fast.conv1d_forward(x, w, b)[0].ravel().tolist() == [5, 8, 7, 12, 7]
    assert fast.conv1d_forward(x, w, b, stride=2)[0].ravel().tolist() == [5, 7, 7]
    assert fast.conv1d_forward(x, w, b, padding=1)[0].ravel().tolist() == [2, 5, 8, 7, 12, 7, 1]


def conv_in_chunks(x, w, b, dout, **kwargs):
    """out, dx, dw, db of a convolution whose batch runs one image a chunk."""
    with one_image_per_chunk():
        out, cache = fast.conv2d_forward(x, w, b, **kwargs)
        return (out, *fast.conv2d_backward(dout, cache))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv_gives_the_same_bits_on_one_thread_or_several(dtype, monkeypatch):
    monkeypatch.setattr(_threads, "_CORES", 2)  # two threads even on a one-core machine
    rng = np.random.default_rng(3)
    x, w, b = rand(rng, (7, 4, 9, 8), dtype), rand(rng, (5, 4, 3, 2), dtype), rand(rng, (5,), dtype)
    dout = rand(rng, (7, 5, 5, 9), dtype)
    runs = []
    for threads in (1, 2):
        with threadpool_limits(threads, user_api="blas"):
            runs.append(conv_in_chunks(x, w, b, dout, stride=(2, 1), padding=(1, 1)))
    for single, several in zip(*runs, strict=True):
        np.testing.assert_array_equal(single, several)


def test_conv_backward_uses_the_input_as_it_was_at_the_forward_pass():
    rng = np.random.default_rng(4)
    x, w, b = rand(rng, (3, 2, 6, 6)), rand(rng, (4, 2, 3, 3)), rand(rng, (4,))
    dout = rand(rng, (3, 4, 6, 6))
    expected = fast.conv2d_backward(dout, fast.conv2d_forward(x.copy(), w, b, padding=1)[1])
    _, cache = fast.conv2d_forward(x, w, b, padding=1)
    x[:] = 0  # a caller reusing its input buffer
    for g, e in zip(fast.conv2d_backward(dout, cache), expected, strict=True):
        np.testing.assert_array_equal(g, e)


def test_forward_conv_needs_no_numba_and_gives_the_same_bits_once_numba_is_loaded():
    """Until an op loads the numba kernels, the forward pass unfolds its input with numpy; its
    output must not change when the kernels take over."""
    code = textwrap.dedent("""
        import sys
        import numpy as np
        from cnn_core import functional as f
        rng = np.random.default_rng(5)
        cases = [((3, 2, 7, 6), (4, 2, 3, 2), (2, 1), (1, 2), np.float64),
                 ((2, 1, 9, 9), (3, 1, 5, 5), 3, 2, np.float32),
                 ((40, 16, 12, 12), (8, 16, 3, 3), 1, 1, np.float32),  # 4 chunks
                 ((9, 16, 7, 6), (17, 16, 3, 3), 1, 1, np.float32),  # Winograd, odd rows
                 ((3, 16, 5, 8), (16, 16, 3, 3), 1, (0, 2), np.float64),
                 ((2, 16, 6, 7), (16, 16, 3, 3), 1, 1, np.float32)]  # Winograd, odd columns
        args = [(rng.standard_normal(xs).astype(dt), rng.standard_normal(ws).astype(dt),
                 rng.standard_normal(ws[0]).astype(dt), s, p) for xs, ws, s, p, dt in cases]
        before = [f.conv2d_forward(x, w, b, stride=s, padding=p)[0] for x, w, b, s, p in args]
        assert "numba" not in sys.modules, "the forward pass loaded numba"
        f.maxpool2d_forward(np.ones((1, 1, 2, 2)), 2)
        assert "cnn_core._kernels" in sys.modules
        after = [f.conv2d_forward(x, w, b, stride=s, padding=p)[0] for x, w, b, s, p in args]
        assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


winograd_cases = [  # x shape, filters, padding: 3x3 windows at stride 1, 16 channels or more
    ((2, 16, 8, 8), 16, 1),
    ((3, 17, 7, 9), 18, 0),
    ((2, 16, 5, 6), 20, 2),
    ((1, 16, 3, 3), 16, 0),
    ((2, 16, 1, 2), 16, (1, 2)),
    ((5, 24, 6, 5), 32, (2, 0)),
]


@pytest.mark.parametrize("one_image", [False, True], ids=["chunks", "one-image-chunks"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,f,padding", winograd_cases)
def test_winograd_convolution_matches_torch(shape, f, padding, dtype, one_image):
    """Wide 3x3 layers at stride 1 run as Winograd F(2x2, 3x3): within the kit's tolerances of
    PyTorch for odd and even sizes (partial tiles), any padding, strided inputs, with or without
    the input gradient."""
    assert fast._winograd(shape[1], f, (3, 3), (1, 1))
    rng = np.random.default_rng(sum(shape) + f)
    x = rand(rng, shape, dtype, contiguous=False)
    w, b = rand(rng, (f, shape[1], 3, 3), dtype), rand(rng, (f,), dtype)
    with one_image_per_chunk(one_image):
        out, cache = fast.conv2d_forward(x, w, b, padding=padding)
        dout = rand(rng, out.shape, dtype, contiguous=False)
        grads = fast.conv2d_backward(dout, cache)
        weights_only = fast.conv2d_backward_weights(dout, cache)
    t_out, t_grads = torch_grads(lambda *a: tf.conv2d(*a, padding=padding), [x, w, b], dout)
    assert_close(out, t_out, dtype)
    for g, tg in zip(grads, t_grads, strict=True):
        assert_close(g, tg, dtype)
    for g, full in zip(weights_only, grads[1:], strict=True):
        np.testing.assert_array_equal(g, full)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_winograd_convolution_gives_the_same_bits_on_one_thread_or_several(dtype, monkeypatch):
    monkeypatch.setattr(_threads, "_CORES", 2)
    rng = np.random.default_rng(6)
    x, w, b = (
        rand(rng, (7, 16, 9, 8), dtype),
        rand(rng, (20, 16, 3, 3), dtype),
        rand(rng, (20,), dtype),
    )
    dout = rand(rng, (7, 20, 9, 8), dtype)
    runs = []
    for threads in (1, 2):
        with threadpool_limits(threads, user_api="blas"):
            runs.append(conv_in_chunks(x, w, b, dout, padding=1))
    for single, several in zip(*runs, strict=True):
        np.testing.assert_array_equal(single, several)


def test_narrow_or_strided_3x3_convolutions_keep_im2col():
    assert not fast._winograd(15, 64, (3, 3), (1, 1))
    assert not fast._winograd(64, 8, (3, 3), (1, 1))
    assert not fast._winograd(64, 64, (3, 3), (2, 2))
    assert not fast._winograd(64, 64, (5, 5), (1, 1))
    assert not fast._winograd(64, 64, (1, 3), (1, 1))  # a 1D convolution


@pytest.mark.parametrize("width", [13, 16, 17, 33, 40])
@pytest.mark.parametrize("kernel,padding", [(1, 0), (3, 1), (5, 2), (4, 0)])
def test_wide_stride_1_rows_unfold_in_vector_blocks(width, kernel, padding):
    """im2col copies stride-1 rows 16 at a time, running past a row's end into the next one (and
    past the last into spare elements): rows shorter than, as long as and longer than a block."""
    rng = np.random.default_rng(width * 10 + kernel)
    x, w = rand(rng, (3, 2, 5, width), np.float32), rand(rng, (4, 2, kernel, kernel), np.float32)
    b = rand(rng, (4,), np.float32)
    out, cache = fast.conv2d_forward(x, w, b, padding=padding)
    dout = rand(rng, out.shape, np.float32)
    t_out, t_grads = torch_grads(lambda *a: tf.conv2d(*a, padding=padding), [x, w, b], dout)
    assert_close(out, t_out, np.float32)
    for g, tg in zip(fast.conv2d_backward(dout, cache), t_grads, strict=True):
        assert_close(g, tg, np.float32)


def test_alexnet_conv1_im2col_shape():
    """The lecture's example: 227x227x3 input, 11x11 filters, stride 4 -> X_col of 363 x 3025."""
    x = np.zeros((1, 3, 227, 227), dtype=np.float32)
    cols = fast.im2col(x, (11, 11), (4, 4), (0, 0))
    assert cols.shape == (363, 3025)


# --------------------------------------------------------------------------- pooling

pool_cases = [  # (shape, kernel, stride)
    ((2, 3, 8, 8), 2, None),
    ((1, 1, 7, 9), 3, 2),
    ((2, 2, 13, 13), 3, 2),
    ((3, 1, 5, 6), (2, 3), (1, 2)),
    ((1, 4, 4, 4), 4, None),
    ((2, 2, 9, 7), 2, 1),
    ((1, 1, 1, 1), 1, None),
    ((2, 3, 6, 10), (3, 1), 3),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,kernel,stride", pool_cases)
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pooling_matches_torch(kind, shape, kernel, stride, dtype):
    rng = np.random.default_rng(len(shape) + sum(shape))
    x = rand(rng, shape, dtype, contiguous=False)
    forward = getattr(fast, f"{kind}pool2d_forward")
    backward = getattr(fast, f"{kind}pool2d_backward")
    t_fn = tf.max_pool2d if kind == "max" else tf.avg_pool2d
    out, cache = forward(x, kernel, stride)
    dout = rand(rng, out.shape, dtype)
    t_out, (t_dx,) = torch_grads(lambda a: t_fn(a, kernel, stride), [x], dout)
    assert_close(out, t_out, dtype)
    assert_close(backward(dout, cache), t_dx, dtype)


@pytest.mark.parametrize("impl", [fast, naive], ids=["fast", "naive"])
def test_maxpool_ties_send_gradient_to_first_max(impl):
    """Equal values in a window: the first in row-major order takes the whole gradient."""
    x = np.array(
        [[[[1.0, 3.0, 3.0, 0.0], [3.0, 2.0, 3.0, 3.0], [5.0, 5.0, 1.0, 1.0], [5.0, 5.0, 1.0, 1.0]]]]
    )
    out, cache = impl.maxpool2d_forward(x, 2)
    assert out[0, 0].tolist() == [[3.0, 3.0], [5.0, 1.0]]
    dx = impl.maxpool2d_backward(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]), cache)
    assert dx[0, 0].tolist() == [[0, 1, 2, 0], [0, 0, 0, 0], [3, 0, 4, 0], [0, 0, 0, 0]]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("stride", [2, 1], ids=["2x2-path", "general-kernel"])
@pytest.mark.parametrize("impl", [fast, naive], ids=["fast", "naive"])
def test_maxpool_takes_a_nan_anywhere_in_a_window_as_its_maximum(impl, stride, dtype):
    """As PyTorch does, a NaN in any position of a window is its output; it takes the window's
    gradient, the first of several NaNs (as the first of tied maxima; PyTorch takes the last)."""
    nan = np.nan
    x = np.array(
        [[1.0, nan, 7.0, 0.0], [3.0, 2.0, 1.0, nan], [nan, 9.0, 5.0, nan], [4.0, nan, nan, 8.0]],
        dtype,
    )[None, None]
    out, cache = impl.maxpool2d_forward(x, 2, stride)
    dout = np.arange(1.0, out.size + 1, dtype=dtype).reshape(out.shape)
    dx = impl.maxpool2d_backward(dout, cache)
    t_out, _ = torch_grads(lambda a: tf.max_pool2d(a, 2, stride), [x], dout)
    np.testing.assert_array_equal(out, t_out)  # NaN where torch has NaN
    takes = {  # stride 1: window (row, column) -> the entry taking its gradient, by hand
        (0, 0): (0, 1), (0, 1): (0, 1), (0, 2): (1, 3),
        (1, 0): (2, 0), (1, 1): (2, 1), (1, 2): (1, 3),  # (1, 1) holds no NaN: its 9
        (2, 0): (2, 0), (2, 1): (3, 1), (2, 2): (2, 3),
    }  # fmt: skip
    expected = np.zeros((4, 4))
    for (i, j), g in np.ndenumerate(dout[0, 0]):
        expected[takes[i, j] if stride == 1 else _pair_nan(x, i, j)] += g
    np.testing.assert_array_equal(dx[0, 0], expected)


def _pair_nan(x: np.ndarray, i: int, j: int) -> tuple[int, int]:
    """The first NaN in row-major order of the 2x2 window (i, j) at stride 2."""
    window = x[0, 0, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2]
    di, dj = np.argwhere(np.isnan(window))[0]
    return 2 * i + int(di), 2 * j + int(dj)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "shape", [(2, 3, 8, 8), (2, 3, 7, 9), (1, 2, 2, 3), (3, 1, 5, 2), (0, 2, 4, 4)]
)
def test_2x2_maxpool_path_equals_the_general_kernel_and_the_loops(shape, dtype):
    """2x2 windows at stride 2 take their own vectorised kernels: the same outputs and gradients,
    bit for bit, as the general kernels and the loops, on values full of ties, odd sizes (a row
    and a column no window covers) and strided inputs."""
    rng = np.random.default_rng(sum(shape))
    x = rng.integers(-2, 3, (*shape, 2)).astype(dtype)[..., 0]  # few distinct values: many ties
    out, cache = fast.maxpool2d_forward(x, 2)
    assert cache.argmax.dtype == np.uint8
    dout = rng.standard_normal((*out.shape, 2)).astype(dtype)[..., 1]
    dx = fast.maxpool2d_backward(dout, cache)
    from cnn_core import _kernels as k

    oh, ow = out.shape[2:]
    general_out, arg = k.maxpool_forward(np.ascontiguousarray(x), 2, 2, 2, 2, oh, ow)
    general_dx = k.maxpool_backward(np.ascontiguousarray(dout), arg, *shape[2:])
    loops_out, loops_cache = naive.maxpool2d_forward(x, 2)
    loops_dx = naive.maxpool2d_backward(dout, loops_cache)
    for got, general, loops in ((out, general_out, loops_out), (dx, general_dx, loops_dx)):
        assert got.dtype == np.dtype(dtype) and got.flags.c_contiguous
        np.testing.assert_array_equal(got, general)
        np.testing.assert_array_equal(got, loops)


def test_overlapping_maxpool_accumulates_gradient():
    """AlexNet's 3x3 stride 2 pooling: a maximum shared by two windows gets both gradients."""
    x = np.zeros((1, 1, 5, 5))
    x[0, 0, 2, 2] = 9.0  # the centre lies in all four windows
    out, cache = fast.maxpool2d_forward(x, 3, 2)
    assert out.shape == (1, 1, 2, 2) and np.all(out == 9.0)
    dx = fast.maxpool2d_backward(np.ones_like(out), cache)
    assert dx[0, 0, 2, 2] == 4.0 and dx.sum() == 4.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_relu_kernels_keep_numpys_bits_and_pass_no_gradient_where_x_is_not_positive(dtype):
    x = np.array([np.nan, -0.0, 0.0, np.inf, -np.inf, -1.5, 2.5, 1e-30], dtype)
    x = np.concatenate([x, np.random.default_rng(0).standard_normal(1000).astype(dtype)])
    out, cache = fast.relu_forward(x[::-1][::-1])
    np.testing.assert_array_equal(out.view(np.uint8), np.maximum(x, 0).view(np.uint8))
    dout = np.full_like(x, -np.inf)
    dx = fast.relu_backward(dout, cache)
    np.testing.assert_array_equal(dx, np.where(x > 0, dout, 0))
    assert not np.signbit(dx[x <= 0]).any()
    for scalar in (dtype(-2.0), dtype(3.0)):  # a 0-d array keeps its shape both ways
        out, cache = fast.relu_forward(np.array(scalar))
        assert out.shape == () and fast.relu_backward(np.array(dtype(1.0)), cache).shape == ()


# --------------------------------------------------------------------------- elementwise and dense

activations = [  # (name, kwargs, torch function)
    ("relu", {}, torch.relu),
    ("leaky_relu", {"alpha": 0.1}, lambda t: tf.leaky_relu(t, 0.1)),
    ("leaky_relu", {}, lambda t: tf.leaky_relu(t, 0.01)),
    ("elu", {"alpha": 0.7}, lambda t: tf.elu(t, 0.7)),
    ("elu", {}, tf.elu),
    ("sigmoid", {}, torch.sigmoid),
    ("tanh", {}, torch.tanh),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,kwargs,t_fn", activations)
def test_activations_match_torch(name, kwargs, t_fn, dtype):
    rng = np.random.default_rng(3)
    x = rand(rng, (4, 3, 5), dtype, contiguous=False) * 3
    x[0, 0, :2] = [-800.0, 800.0]  # saturation must not overflow
    out, cache = getattr(fast, f"{name}_forward")(x, **kwargs)
    dout = rand(rng, x.shape, dtype)
    t_out, (t_dx,) = torch_grads(t_fn, [x], dout)
    assert_close(out, t_out, dtype)
    assert_close(getattr(fast, f"{name}_backward")(dout, cache), t_dx, dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("x_shape", [(5, 12), (1, 3, 2, 2), (4, 2, 3)])
def test_linear_matches_torch(x_shape, dtype):
    rng = np.random.default_rng(4)
    d = int(np.prod(x_shape[1:]))
    x, w, b = (
        rand(rng, x_shape, dtype, False),
        rand(rng, (d, 7), dtype, False),
        rand(rng, (7,), dtype),
    )
    out, cache = fast.linear_forward(x, w, b)
    dout = rand(rng, out.shape, dtype)
    t_out, t_grads = torch_grads(lambda a, v, c: a.reshape(a.shape[0], -1) @ v + c, [x, w, b], dout)
    assert_close(out, t_out, dtype)
    dx, dw, db = fast.linear_backward(dout, cache)
    assert dx.shape == x_shape
    for g, tg in zip((dx, dw, db), t_grads, strict=True):
        assert_close(g, tg, dtype)


# --------------------------------------------------------------------------- batch normalisation


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(8, 5), (4, 3, 5, 2), (2, 1, 3, 3)])
def test_batchnorm_train_matches_torch(shape, dtype):
    rng = np.random.default_rng(5)
    x = rand(rng, shape, dtype, contiguous=False) * 2 + 1
    c = shape[1]
    gamma, beta = rand(rng, (c,), dtype), rand(rng, (c,), dtype)
    rm, rv = rng.standard_normal(c).astype(dtype), (rng.random(c) + 0.5).astype(dtype)
    t_rm, t_rv = torch.tensor(rm), torch.tensor(rv)
    forward = fast.batchnorm_forward if len(shape) == 2 else fast.batchnorm2d_forward
    backward = fast.batchnorm_backward if len(shape) == 2 else fast.batchnorm2d_backward
    out, cache = forward(x, gamma, beta, rm, rv, train=True, momentum=0.8)
    dout = rand(rng, out.shape, dtype)

    def t_bn(a, g, bb):  # torch's momentum weighs the new statistic: ours 0.8 is its 0.2
        return tf.batch_norm(a, t_rm, t_rv, g, bb, training=True, momentum=0.2, eps=1e-5)

    t_out, t_grads = torch_grads(t_bn, [x, gamma, beta], dout)
    assert_close(out, t_out, dtype)
    for g, tg in zip(backward(dout, cache), t_grads, strict=True):
        assert_close(g, tg, dtype)
    tol = TOL[dtype]
    np.testing.assert_allclose(rm, t_rm.numpy(), **tol)
    np.testing.assert_allclose(rv, t_rv.numpy(), **tol)  # unbiased variance, as torch


@pytest.mark.parametrize("shape", [(6, 4), (3, 4, 2, 5)])
def test_batchnorm_test_mode_uses_running_stats(shape):
    rng = np.random.default_rng(6)
    x = rand(rng, shape)
    c = shape[1]
    gamma, beta = rand(rng, (c,)), rand(rng, (c,))
    rm, rv = rng.standard_normal(c), rng.random(c) + 0.5
    rm0, rv0 = rm.copy(), rv.copy()
    forward = fast.batchnorm_forward if len(shape) == 2 else fast.batchnorm2d_forward
    backward = fast.batchnorm_backward if len(shape) == 2 else fast.batchnorm2d_backward
    out, cache = forward(x, gamma, beta, rm, rv, train=False)
    dout = rand(rng, out.shape)
    t_rm, t_rv = torch.tensor(rm), torch.tensor(rv)
    t_out, t_grads = torch_grads(
        lambda a, g, bb: tf.batch_norm(a, t_rm, t_rv, g, bb, training=False, eps=1e-5),
        [x, gamma, beta],
        dout,
    )
    assert_close(out, t_out, np.float64)
    for g, tg in zip(backward(dout, cache), t_grads, strict=True):
        assert_close(g, tg, np.float64)
    assert np.array_equal(rm, rm0) and np.array_equal(rv, rv0)


# --------------------------------------------------------------------------- losses


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_losses_match_torch(dtype):
    rng = np.random.default_rng(7)
    scores = rand(rng, (6, 5), dtype) * 4
    scores[0, 0] = 1000.0  # large logits must not overflow
    y = rng.integers(0, 5, size=6)
    checks = [
        (fast.softmax_cross_entropy, lambda s: tf.cross_entropy(s, torch.tensor(y)), scores, y),
        (
            fast.mse_loss,
            lambda p: tf.mse_loss(p, torch.tensor(scores.T.copy())),
            scores.T,
            scores.T.copy(),
        ),
    ]
    logits = rand(rng, (4, 3), dtype) * 30
    targets = rng.random((4, 3)).astype(dtype)
    checks.append(
        (
            fast.sigmoid_binary_cross_entropy,
            lambda z: tf.binary_cross_entropy_with_logits(z, torch.tensor(targets)),
            logits,
            targets,
        )
    )
    for ours, theirs, pred, target in checks:
        pred = pred * 0.5  # a fresh array, not a view shared between the two sides
        loss, dpred = ours(pred, target)
        t_loss, (t_grad,) = torch_grads(theirs, [pred], np.array(1.0, dtype))
        assert isinstance(loss, float)
        np.testing.assert_allclose(loss, float(t_loss), **TOL[dtype])
        assert_close(dpred, t_grad, dtype)


# --------------------------------------------------------------------------- dropout


def test_dropout_is_inverted_and_seeded():
    x = np.ones((200, 500), dtype=np.float32)
    out, cache = fast.dropout_forward(x, 0.3, rng=7)
    kept = out != 0
    assert out.dtype == np.float32
    assert abs(kept.mean() - 0.7) < 0.01  # 100,000 draws: the standard error is 0.0015
    np.testing.assert_allclose(out[kept], 1 / 0.7, rtol=1e-6)
    assert abs(out.mean() - 1.0) < 0.02  # expectation preserved
    again, _ = fast.dropout_forward(x, 0.3, rng=np.random.default_rng(7))
    assert np.array_equal(out, again)
    dout = np.full_like(x, 2.0)
    np.testing.assert_allclose(fast.dropout_backward(dout, cache), out * 2.0)


def test_dropout_identity_at_test_time_and_p_zero():
    x = np.random.default_rng(1).standard_normal((3, 4))
    out, cache = fast.dropout_forward(x, 0.9, train=False)
    assert np.array_equal(out, x)
    assert np.array_equal(fast.dropout_backward(np.ones_like(x), cache), np.ones_like(x))
    assert np.array_equal(fast.dropout_forward(x, 0.0, rng=0)[0], x)


# --------------------------------------------------------------------------- against the loops


CASES = selfcheck.cases(np.random.default_rng(8))


@pytest.mark.parametrize("case", CASES, ids=[c.op for c in CASES])
def test_fast_path_equals_loops_and_passes_gradient_check(case):
    result = selfcheck.check_case(case, np.random.default_rng(9))
    assert result.naive_diff < 1e-10, f"{case.op}: fast and naive differ by {result.naive_diff}"
    assert result.grad_error < 1e-6, f"{case.op}: gradient check error {result.grad_error}"
    assert result.passed


def test_selfcheck_catches_a_wrong_backward(monkeypatch):
    """A backward that is off by a factor must fail both comparisons."""
    case = next(c for c in CASES if c.op == "tanh")
    right = fast.tanh_backward
    monkeypatch.setattr(fast, "tanh_backward", lambda dout, cache: 1.5 * right(dout, cache))
    result = selfcheck.check_case(case, np.random.default_rng(9))
    assert not result.passed
    assert result.naive_diff > 0.01 and result.grad_error > 0.1


def test_selfcheck_covers_every_op():
    ops = {c.op for c in CASES}
    stems = {n.rsplit("_", 1)[0] for n in fast.__all__ if n.endswith("_forward")}
    assert ops == stems
    table = selfcheck.format_results(selfcheck.run(seed=1))
    assert table.count("PASS") == len(ops) and "FAIL" not in table


def test_reexported_from_package():
    for name in fast.__all__:
        assert getattr(cnn_core, name) is getattr(fast, name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 3, 5, 4), (1, 1, 1, 1), (3, 2, 7, 1)])
def test_global_avgpool_matches_torch(shape, dtype):
    rng = np.random.default_rng(11)
    x = rand(rng, shape, dtype, contiguous=False)
    out, cache = fast.global_avgpool2d_forward(x)
    dout = rand(rng, out.shape, dtype)
    t_out, (t_dx,) = torch_grads(lambda a: tf.adaptive_avg_pool2d(a, 1)[:, :, 0, 0], [x], dout)
    assert_close(out, t_out, dtype)
    assert_close(fast.global_avgpool2d_backward(dout, cache), t_dx, dtype)
