"""The loop references of `cnn_core.naive` against PyTorch CPU, plus dtype, layout and error rules.

Shapes stay tiny: the references are pure Python loops.
"""

from __future__ import annotations

import numpy as np
import pytest

from cnn_core import naive
from cnn_core._checks import dropout_mask

torch = pytest.importorskip("torch")
tF = torch.nn.functional


def close(actual, expected, tol=1e-10):
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol)


def check_against_torch(forward, backward, torch_fn, arrays, seed=0):
    """Run forward/backward on float64 `arrays` and compare out and every gradient with autograd.

    forward(*arrays) -> (out, cache); backward(dout, cache) -> one gradient per array.
    torch_fn(*tensors) -> the same output, differentiated with the same dout.
    """
    out, cache = forward(*arrays)
    tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
    ref = torch_fn(*tensors)
    assert out.shape == tuple(ref.shape)
    close(out, ref.detach().numpy())
    dout = np.random.default_rng(seed).standard_normal(out.shape)
    ref.backward(torch.from_numpy(dout))
    grads = backward(dout, cache)
    grads = grads if isinstance(grads, tuple) else (grads,)
    for g, t in zip(grads, tensors, strict=True):
        assert g.shape == tuple(t.shape)
        close(g, t.grad.numpy())


def randn(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


# ------------------------------------------------------------------------------------ convolution

CONV2D_CASES = [
    # N, C, H, W, F, KH, KW, stride, padding
    (2, 3, 5, 6, 4, 3, 2, 1, 0),
    (1, 1, 5, 5, 1, 1, 1, 1, 0),
    (2, 2, 7, 6, 3, 3, 3, 2, 1),
    (1, 3, 6, 9, 2, 2, 4, (3, 2), (2, 1)),
    (3, 1, 5, 4, 2, 5, 3, 3, 2),
    (1, 2, 4, 4, 2, 4, 4, 1, 0),
    (2, 2, 3, 5, 1, 3, 1, (1, 3), (0, 2)),
]


@pytest.mark.parametrize("N, C, H, W, F, KH, KW, stride, padding", CONV2D_CASES)
def test_conv2d_matches_torch(N, C, H, W, F, KH, KW, stride, padding):
    arrays = randn(N, C, H, W, seed=1), randn(F, C, KH, KW, seed=2), randn(F, seed=3)
    check_against_torch(
        lambda x, w, b: naive.conv2d_forward(x, w, b, stride=stride, padding=padding),
        naive.conv2d_backward,
        lambda x, w, b: tF.conv2d(x, w, b, stride=stride, padding=padding),
        arrays,
    )


CONV1D_CASES = [
    # N, C, L, F, K, stride, padding
    (2, 3, 7, 4, 3, 1, 0),
    (1, 1, 5, 1, 1, 1, 0),
    (2, 2, 9, 3, 4, 2, 1),
    (3, 1, 6, 2, 5, 3, 2),
    (1, 2, 4, 2, 4, (2,), (1,)),
]


@pytest.mark.parametrize("N, C, L, F, K, stride, padding", CONV1D_CASES)
def test_conv1d_matches_torch(N, C, L, F, K, stride, padding):
    arrays = randn(N, C, L, seed=1), randn(F, C, K, seed=2), randn(F, seed=3)
    check_against_torch(
        lambda x, w, b: naive.conv1d_forward(x, w, b, stride=stride, padding=padding),
        naive.conv1d_backward,
        lambda x, w, b: tF.conv1d(x, w, b, stride=stride, padding=padding),
        arrays,
    )


def test_conv2d_non_contiguous_inputs():
    x = randn(2, 3, 6, 5, seed=1)
    w = randn(4, 3, 2, 3, seed=2)
    x_view = np.ascontiguousarray(x.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)
    w_view = np.zeros((4, 3, 2, 6))
    w_view[..., ::2] = w
    w_view = w_view[..., ::2]
    assert not x_view.flags.c_contiguous and not w_view.flags.c_contiguous
    b = randn(4, seed=3)
    out, cache = naive.conv2d_forward(x, w, b, stride=2, padding=1)
    out_v, cache_v = naive.conv2d_forward(x_view, w_view, b, stride=2, padding=1)
    close(out_v, out)
    dout = randn(*out.shape, seed=4)
    for g_v, g in zip(naive.conv2d_backward(dout.T.copy().T, cache_v),
                      naive.conv2d_backward(dout, cache), strict=True):
        close(g_v, g)


def test_conv_mixed_dtypes_keep_x_dtype():
    x = randn(1, 2, 4, 4).astype(np.float32)
    out, cache = naive.conv2d_forward(x, randn(3, 2, 2, 2), randn(3))
    assert out.dtype == np.float32
    assert all(g.dtype == np.float32 for g in naive.conv2d_backward(np.ones_like(out), cache))


# ---------------------------------------------------------------------------------------- pooling

POOL_CASES = [
    # H, W, kernel_size, stride
    (4, 6, 2, None),
    (7, 7, 3, 2),  # overlapping windows
    (5, 7, (2, 3), (1, 2)),
    (3, 4, 1, 1),
    (7, 5, (3, 2), None),  # sizes not divisible by the kernel: the remainder is dropped
    (4, 5, (4, 5), 1),
]


@pytest.mark.parametrize("H, W, kernel_size, stride", POOL_CASES)
def test_maxpool2d_matches_torch(H, W, kernel_size, stride):
    check_against_torch(
        lambda x: naive.maxpool2d_forward(x, kernel_size, stride),
        naive.maxpool2d_backward,
        lambda x: tF.max_pool2d(x, kernel_size, stride),
        (randn(2, 3, H, W),),
    )


@pytest.mark.parametrize("H, W, kernel_size, stride", POOL_CASES)
def test_avgpool2d_matches_torch(H, W, kernel_size, stride):
    check_against_torch(
        lambda x: naive.avgpool2d_forward(x, kernel_size, stride),
        naive.avgpool2d_backward,
        lambda x: tF.avg_pool2d(x, kernel_size, stride),
        (randn(2, 3, H, W),),
    )


def test_maxpool2d_ties_send_gradient_to_first_max_and_overlaps_add_up():
    x = np.array([[[[1.0, 3.0, 3.0],
                    [3.0, 0.0, 2.0],
                    [1.0, 3.0, 1.0]]]])
    out, cache = naive.maxpool2d_forward(x, 2, stride=1)
    close(out, [[[[3.0, 3.0], [3.0, 3.0]]]])
    dx = naive.maxpool2d_backward(np.array([[[[1.0, 10.0], [100.0, 1000.0]]]]), cache)
    # windows (0,0) and (0,1) both pick x[0, 1]; (1,0) picks x[1, 0] over x[2, 1]
    expected = [[[[0.0, 11.0, 0.0],
                  [100.0, 0.0, 0.0],
                  [0.0, 1000.0, 0.0]]]]
    close(dx, expected)


def test_maxpool2d_constant_window_gradient_goes_to_its_first_element():
    out, cache = naive.maxpool2d_forward(np.full((1, 1, 2, 4), 5.0), 2)
    dx = naive.maxpool2d_backward(np.array([[[[1.0, 2.0]]]]), cache)
    close(dx, [[[[1.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 0.0]]]])


# ---------------------------------------------------------------------------------------- dropout


def test_dropout_eval_is_identity():
    x = randn(3, 4)
    out, cache = naive.dropout_forward(x, 0.7, train=False, rng=0)
    close(out, x)
    dout = randn(3, 4, seed=1)
    close(naive.dropout_backward(dout, cache), dout)


def test_dropout_keeps_about_1_minus_p_and_scales_kept_units():
    p = 0.3
    x = np.ones((100, 100))
    out, _ = naive.dropout_forward(x, p, rng=0)
    kept = out != 0
    assert abs(kept.mean() - (1 - p)) < 0.03
    close(out[kept], 1 / (1 - p))


def test_dropout_mask_is_the_shared_mask_for_the_seed():
    x = randn(4, 5)
    out_seed, _ = naive.dropout_forward(x, 0.5, rng=7)
    out_gen, _ = naive.dropout_forward(x, 0.5, rng=np.random.default_rng(7))
    close(out_seed, out_gen)
    mask = dropout_mask(x.shape, 0.5, np.random.default_rng(7))
    close(out_seed, x * mask / 0.5)


def test_dropout_backward_uses_the_forward_mask():
    x = randn(4, 5)
    out, cache = naive.dropout_forward(x, 0.4, rng=3)
    mask = dropout_mask(x.shape, 0.4, np.random.default_rng(3))
    dout = randn(4, 5, seed=1)
    close(naive.dropout_backward(dout, cache), dout * mask / 0.6)


def test_dropout_p_zero_is_identity_in_training():
    x = randn(2, 3)
    out, _ = naive.dropout_forward(x, 0.0, rng=0)
    close(out, x)


# ------------------------------------------------------------------------------------ activations

ACTIVATIONS = [
    (naive.relu_forward, naive.relu_backward, tF.relu),
    (naive.leaky_relu_forward, naive.leaky_relu_backward, tF.leaky_relu),
    (lambda x: naive.leaky_relu_forward(x, alpha=0.2), naive.leaky_relu_backward,
     lambda x: tF.leaky_relu(x, 0.2)),
    (naive.elu_forward, naive.elu_backward, tF.elu),
    (lambda x: naive.elu_forward(x, alpha=0.5), naive.elu_backward,
     lambda x: tF.elu(x, alpha=0.5)),
    (naive.sigmoid_forward, naive.sigmoid_backward, torch.sigmoid),
    (naive.tanh_forward, naive.tanh_backward, torch.tanh),
]


@pytest.mark.parametrize("forward, backward, torch_fn", ACTIVATIONS)
def test_activation_matches_torch(forward, backward, torch_fn):
    x = 3 * randn(2, 3, 4)
    x[0, 0, :3] = [0.0, -800.0, 800.0]  # the kink at zero and values that would overflow exp
    check_against_torch(forward, backward, torch_fn, (x,))


# -------------------------------------------------------------------------------- fully connected


@pytest.mark.parametrize("x_shape", [(3, 5), (2, 2, 3), (1, 2, 2, 2)])
def test_linear_matches_torch(x_shape):
    D = int(np.prod(x_shape[1:]))
    check_against_torch(
        naive.linear_forward,
        naive.linear_backward,
        lambda x, w, b: tF.linear(x.reshape(x.shape[0], -1), w.T, b),
        (randn(*x_shape, seed=1), randn(D, 4, seed=2), randn(4, seed=3)),
    )


# ------------------------------------------------------------------------------------- batch norm

BATCHNORM = [
    (naive.batchnorm_forward, naive.batchnorm_backward, (5, 3)),
    (naive.batchnorm2d_forward, naive.batchnorm2d_backward, (2, 3, 3, 2)),
    (naive.batchnorm2d_forward, naive.batchnorm2d_backward, (1, 2, 2, 3)),
]


@pytest.mark.parametrize("forward, backward, x_shape", BATCHNORM)
@pytest.mark.parametrize("train", [True, False])
def test_batchnorm_matches_torch(forward, backward, x_shape, train):
    D = x_shape[1]
    rm, rv = randn(D, seed=4), 1 + np.abs(randn(D, seed=5))
    rm_t, rv_t = torch.tensor(rm), torch.tensor(rv)
    rm_before, rv_before = rm.copy(), rv.copy()
    check_against_torch(
        lambda x, g, b: forward(x, g, b, rm, rv, train=train, momentum=0.8, eps=1e-3),
        backward,
        lambda x, g, b: tF.batch_norm(x, rm_t, rv_t, g, b, training=train, momentum=0.2, eps=1e-3),
        (2 + randn(*x_shape, seed=1), randn(D, seed=2), randn(D, seed=3)),
    )
    # torch's momentum weighs the batch statistic: ours is 1 - torch's
    close(rm, rm_t.numpy())
    close(rv, rv_t.numpy())
    if not train:
        close(rm, rm_before)
        close(rv, rv_before)


def test_batchnorm_running_variance_is_unbiased():
    x = np.array([[1.0], [2.0], [6.0]])
    rm, rv = np.zeros(1), np.ones(1)
    naive.batchnorm_forward(x, np.ones(1), np.zeros(1), rm, rv, momentum=0.9)
    close(rm, [0.1 * 3.0])
    close(rv, [0.9 + 0.1 * 7.0])  # unbiased variance of (1, 2, 6) is 7


def test_batchnorm_float32_running_stats_update_in_place():
    x = randn(4, 2).astype(np.float32)
    rm, rv = np.zeros(2, np.float32), np.ones(2, np.float32)
    out, _ = naive.batchnorm_forward(x, np.ones(2), np.zeros(2), rm, rv)
    assert out.dtype == np.float32 and rm.dtype == np.float32
    close(rm, 0.1 * x.astype(np.float64).mean(axis=0), tol=1e-6)


# ----------------------------------------------------------------------------------------- losses


def test_softmax_cross_entropy_matches_torch():
    scores = 3 * randn(4, 5)
    scores[0, 0] = 1000.0  # the shift by the max keeps exp finite
    y = np.array([0, 4, 2, 2])
    loss, dscores = naive.softmax_cross_entropy(scores, y)
    s = torch.tensor(scores, requires_grad=True)
    ref = tF.cross_entropy(s, torch.from_numpy(y))
    ref.backward()
    assert isinstance(loss, float)
    close(loss, ref.item())
    close(dscores, s.grad.numpy())


def test_softmax_cross_entropy_single_example():
    loss, dscores = naive.softmax_cross_entropy(np.zeros((1, 4)), np.array([1]))
    close(loss, np.log(4))
    close(dscores, [[0.25, -0.75, 0.25, 0.25]])


@pytest.mark.parametrize("shape", [(3,), (2, 3), (2, 1, 2, 2)])
def test_mse_loss_matches_torch(shape):
    pred, target = randn(*shape, seed=1), randn(*shape, seed=2)
    loss, dpred = naive.mse_loss(pred, target)
    p = torch.tensor(pred, requires_grad=True)
    ref = tF.mse_loss(p, torch.tensor(target))
    ref.backward()
    assert isinstance(loss, float)
    close(loss, ref.item())
    close(dpred, p.grad.numpy())


@pytest.mark.parametrize("shape", [(4,), (3, 2)])
def test_sigmoid_binary_cross_entropy_matches_torch(shape):
    logits = 3 * randn(*shape, seed=1)
    logits.flat[:2] = [-900.0, 900.0]  # would overflow a naive log(sigmoid)
    y = (randn(*shape, seed=2) > 0).astype(np.float64)
    y.flat[-1] = 0.3  # soft targets are allowed
    loss, dlogits = naive.sigmoid_binary_cross_entropy(logits, y)
    z = torch.tensor(logits, requires_grad=True)
    ref = tF.binary_cross_entropy_with_logits(z, torch.tensor(y))
    ref.backward()
    assert isinstance(loss, float)
    close(loss, ref.item())
    close(dlogits, z.grad.numpy())


def test_losses_keep_float32():
    scores = randn(3, 4).astype(np.float32)
    assert naive.softmax_cross_entropy(scores, np.array([0, 1, 3]))[1].dtype == np.float32
    assert naive.mse_loss(scores, np.zeros((3, 4)))[1].dtype == np.float32
    assert naive.sigmoid_binary_cross_entropy(scores, np.ones((3, 4)))[1].dtype == np.float32


# ----------------------------------------------------------------- every op: dtypes and layouts


def _bn(forward, D):
    return lambda x: forward(x, np.ones(D), np.zeros(D), np.zeros(D), np.ones(D))


# name -> (x shape, forward(x) -> (out, cache), backward)
OPS = {
    "conv1d": ((2, 2, 5), lambda x: naive.conv1d_forward(x, randn(3, 2, 2), randn(3), 2, 1),
               naive.conv1d_backward),
    "conv2d": ((2, 2, 4, 5), lambda x: naive.conv2d_forward(x, randn(3, 2, 2, 3), randn(3), 1, 1),
               naive.conv2d_backward),
    "maxpool2d": ((2, 2, 5, 4), lambda x: naive.maxpool2d_forward(x, 3, 2),
                  naive.maxpool2d_backward),
    "avgpool2d": ((2, 2, 5, 4), lambda x: naive.avgpool2d_forward(x, (2, 1)),
                  naive.avgpool2d_backward),
    "dropout": ((3, 4), lambda x: naive.dropout_forward(x, 0.5, rng=0), naive.dropout_backward),
    "relu": ((3, 4), naive.relu_forward, naive.relu_backward),
    "leaky_relu": ((3, 4), naive.leaky_relu_forward, naive.leaky_relu_backward),
    "elu": ((3, 4), naive.elu_forward, naive.elu_backward),
    "sigmoid": ((3, 4), naive.sigmoid_forward, naive.sigmoid_backward),
    "tanh": ((3, 4), naive.tanh_forward, naive.tanh_backward),
    "linear": ((3, 2, 2), lambda x: naive.linear_forward(x, randn(4, 2), randn(2)),
               naive.linear_backward),
    "batchnorm": ((4, 3), _bn(naive.batchnorm_forward, 3), naive.batchnorm_backward),
    "batchnorm2d": ((2, 3, 2, 2), _bn(naive.batchnorm2d_forward, 3), naive.batchnorm2d_backward),
}


def _run(name, x):
    _, forward, backward = OPS[name]
    out, cache = forward(x)
    grads = backward(np.linspace(-1, 1, out.size).reshape(out.shape).astype(x.dtype), cache)
    return out, grads if isinstance(grads, tuple) else (grads,)


@pytest.mark.parametrize("name", OPS)
def test_float32_in_float32_out(name):
    x = randn(*OPS[name][0])
    out64, grads64 = _run(name, x)
    out32, grads32 = _run(name, x.astype(np.float32))
    assert out32.dtype == np.float32 and out64.dtype == np.float64
    close(out32, out64, tol=1e-4)
    for g32, g64 in zip(grads32, grads64, strict=True):
        assert g32.dtype == np.float32 and g64.dtype == np.float64
        close(g32, g64, tol=1e-4)


@pytest.mark.parametrize("name", OPS)
def test_non_contiguous_input_gives_the_same_result(name):
    x = randn(*OPS[name][0])
    strided = np.zeros(x.shape[:-1] + (2 * x.shape[-1],))
    strided[..., ::2] = x
    view = strided[..., ::2]
    assert not view.flags.c_contiguous
    out, grads = _run(name, x)
    out_v, grads_v = _run(name, view)
    close(out_v, out)
    for g_v, g in zip(grads_v, grads, strict=True):
        close(g_v, g)


# ----------------------------------------------------------------------------------------- errors

x4, w4, b4 = randn(1, 3, 5, 5), randn(2, 3, 3, 3), randn(2)
x3, w3, b3 = randn(1, 3, 5), randn(2, 3, 3), randn(2)
stats = dict(running_mean=np.zeros(3), running_var=np.ones(3))

BAD_INPUTS = [
    # conv2d
    (lambda: naive.conv2d_forward(x4, randn(2, 4, 3, 3), b4), ValueError, "3 channels"),
    (lambda: naive.conv2d_forward(x4, randn(2, 3, 6, 3), b4), ValueError, "kernel"),
    (lambda: naive.conv2d_forward(x4, randn(2, 3, 8, 3), b4, padding=1), ValueError, "kernel"),
    (lambda: naive.conv2d_forward(x4, w4, b4, stride=0), ValueError, "stride"),
    (lambda: naive.conv2d_forward(x4, w4, b4, stride=(1, -1)), ValueError, "stride"),
    (lambda: naive.conv2d_forward(x4, w4, b4, padding=-1), ValueError, "padding"),
    (lambda: naive.conv2d_forward(x4, w4, b4, stride=1.5), TypeError, "stride"),
    (lambda: naive.conv2d_forward(x3, w4, b4), ValueError, "x must be 4-D"),
    (lambda: naive.conv2d_forward(x4, w3, b4), ValueError, "w must be 4-D"),
    (lambda: naive.conv2d_forward(x4, w4, randn(3)), ValueError, "b has shape"),
    (lambda: naive.conv2d_forward(x4.astype(int), w4, b4), TypeError, "x has dtype int"),
    (lambda: naive.conv2d_forward(x4, w4.astype(np.int32), b4), TypeError, "w has dtype"),
    # conv1d
    (lambda: naive.conv1d_forward(x3, randn(2, 2, 3), b3), ValueError, "3 channels"),
    (lambda: naive.conv1d_forward(x3, randn(2, 3, 6), b3), ValueError, "kernel"),
    (lambda: naive.conv1d_forward(x3, w3, b3, stride=0), ValueError, "stride"),
    (lambda: naive.conv1d_forward(x4, w3, b3), ValueError, "x must be 3-D"),
    (lambda: naive.conv1d_forward(x3.astype(np.int64), w3, b3), TypeError, "x has dtype"),
    # pooling
    (lambda: naive.maxpool2d_forward(x4, 6), ValueError, "kernel"),
    (lambda: naive.maxpool2d_forward(x4, 2, stride=0), ValueError, "stride"),
    (lambda: naive.maxpool2d_forward(x4, 0), ValueError, "kernel_size"),
    (lambda: naive.maxpool2d_forward(x3, 2), ValueError, "x must be 4-D"),
    (lambda: naive.avgpool2d_forward(x4, (2, 6)), ValueError, "kernel"),
    (lambda: naive.avgpool2d_forward(x4, 2, stride=-2), ValueError, "stride"),
    (lambda: naive.avgpool2d_forward(x4.astype(bool), 2), TypeError, "x has dtype bool"),
    # dropout
    (lambda: naive.dropout_forward(x4, 1.0), ValueError, "p is the probability"),
    (lambda: naive.dropout_forward(x4, -0.1), ValueError, "p is the probability"),
    (lambda: naive.dropout_forward(x4, "0.5"), TypeError, "p must be a number"),
    (lambda: naive.dropout_forward(x4, 0.5, rng="seed"), TypeError, "rng must be"),
    (lambda: naive.dropout_forward(x4.astype(int), 0.5), TypeError, "x has dtype"),
    # activations
    (lambda: naive.relu_forward(np.arange(3)), TypeError, "x has dtype"),
    (lambda: naive.sigmoid_forward(np.arange(3)), TypeError, "x has dtype"),
    # linear
    (lambda: naive.linear_forward(randn(2, 5), randn(4, 3), randn(3)), ValueError, "w has shape"),
    (lambda: naive.linear_forward(randn(2, 4), randn(4, 3), randn(2)), ValueError, "b has shape"),
    (lambda: naive.linear_forward(randn(2, 4), randn(4), randn(3)), ValueError, "w must be 2-D"),
    # batch norm
    (lambda: naive.batchnorm_forward(randn(2, 3), np.ones(2), np.zeros(3), **stats), ValueError,
     "gamma has shape"),
    (lambda: naive.batchnorm_forward(randn(2, 3), np.ones(3), np.zeros(3), [0.0] * 3,
                                     np.ones(3)), TypeError, "running_mean"),
    (lambda: naive.batchnorm_forward(randn(2, 3, 1, 1), np.ones(3), np.zeros(3), **stats),
     ValueError, "x must be 2-D"),
    (lambda: naive.batchnorm2d_forward(randn(2, 3), np.ones(3), np.zeros(3), **stats),
     ValueError, "x must be 4-D"),
    (lambda: naive.batchnorm2d_forward(randn(2, 3, 2, 2), np.ones(3), np.zeros(3), np.zeros(2),
                                       np.ones(3)), ValueError, "running_mean has shape"),
    (lambda: naive.batchnorm_forward(randn(1, 3), np.ones(3), np.zeros(3), **stats), ValueError,
     "at least 2 values"),
    (lambda: naive.batchnorm2d_forward(randn(1, 3, 1, 1), np.ones(3), np.zeros(3), **stats),
     ValueError, "at least 2 values"),
    (lambda: naive.batchnorm_forward(randn(2, 3), np.ones(3), np.zeros(3), momentum=2.0,
                                     **stats), ValueError, "momentum"),
    (lambda: naive.batchnorm_forward(randn(2, 3), np.ones(3), np.zeros(3), eps=0.0, **stats),
     ValueError, "eps"),
    # losses
    (lambda: naive.softmax_cross_entropy(randn(2, 3), np.array([0, 3])), ValueError, "labels"),
    (lambda: naive.softmax_cross_entropy(randn(2, 3), np.array([0.0, 1.0])), TypeError, "y must"),
    (lambda: naive.softmax_cross_entropy(randn(2, 3), np.array([0, 1, 2])), ValueError, "y has"),
    (lambda: naive.softmax_cross_entropy(randn(6), np.zeros(6, int)), ValueError, "scores must"),
    (lambda: naive.mse_loss(randn(2, 3), randn(3, 2)), ValueError, "target has shape"),
    (lambda: naive.mse_loss(np.arange(3), randn(3)), TypeError, "pred has dtype"),
    (lambda: naive.sigmoid_binary_cross_entropy(randn(2, 3), randn(2)), ValueError, "y has shape"),
    (lambda: naive.sigmoid_binary_cross_entropy(randn(2), np.array(["a", "b"])), TypeError,
     "y must be numeric"),
]


@pytest.mark.parametrize("call, error, match", BAD_INPUTS)
def test_bad_input_raises_a_named_error(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_error_message_gives_the_shapes():
    shapes = r"x has 3 channels \(shape \(1, 3, 5, 5\)\).*\(2, 4, 3, 3\)"
    with pytest.raises(ValueError, match=shapes):
        naive.conv2d_forward(x4, randn(2, 4, 3, 3), b4)


@pytest.mark.parametrize("name", OPS)
def test_backward_checks_dout_shape(name):
    x = randn(*OPS[name][0])
    out, cache = OPS[name][1](x)
    with pytest.raises(ValueError, match="dout has shape"):
        OPS[name][2](np.zeros(out.shape + (1,)), cache)
    with pytest.raises(TypeError, match="dout has dtype"):
        OPS[name][2](np.zeros(out.shape, dtype=int), cache)
