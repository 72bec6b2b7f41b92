"""cnn_core.nn: modules against numerical gradients and PyTorch, state handling, summaries, builders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as tf

from cnn_core import arith, nn
from cnn_core import functional as F
from cnn_core.functional import softmax_cross_entropy
from cnn_core.gradcheck import check_gradients

F64 = np.float64
TOL32 = dict(rtol=1e-4, atol=1e-5)
TOL64 = dict(rtol=1e-9, atol=1e-11)


def away_from_kinks(rng, shape):
    """Normal values with none within 0.05 of 0 (relu and friends have a kink there)."""
    x = rng.standard_normal(shape)
    return np.where(np.abs(x) < 0.05, 0.5, x)


def assert_module_gradients(module: nn.Module, x: np.ndarray, reseed=()) -> None:
    """Gradient-check dx and every parameter's gradient of `module` at x, in float64.

    reseed: Dropout modules whose Generator is reset before every forward, so that every
    evaluation drops the same units.
    """
    params = module.parameters()

    def forward(x, *arrays):
        for p, a in zip(params, arrays, strict=True):
            p.data = a
        for d in reseed:
            d.rng = np.random.default_rng(123)
        return module(x), None

    def backward(dout, _):
        module.zero_grad()
        dx = module.backward(dout)
        return (dx, *[p.grad.copy() for p in params])

    inputs = {"x": x, **{p.name: p.data for p in params}}
    report = check_gradients(forward, backward, inputs)
    assert report.passed, str(report)


# --------------------------------------------------------------------------- gradient checks

GRADCHECK_CASES = {
    "conv": (lambda: nn.Conv2d(3, 4, 3, stride=2, padding=1, rng=0, dtype=F64), (2, 3, 7, 7)),
    "conv_rect_nobias": (
        lambda: nn.Conv2d(2, 3, (2, 3), padding=(1, 0), bias=False, rng=1, dtype=F64),
        (2, 2, 5, 6),
    ),
    "linear": (lambda: nn.Linear(12, 5, rng=0, dtype=F64), (3, 12)),
    "linear_4d_input": (lambda: nn.Linear(12, 4, rng=0, dtype=F64), (3, 3, 2, 2)),
    "linear_nobias": (lambda: nn.Linear(6, 3, bias=False, rng=0, dtype=F64), (4, 6)),
    "maxpool": (lambda: nn.MaxPool2d(2), (2, 3, 6, 6)),
    "maxpool_overlapping": (lambda: nn.MaxPool2d(3, stride=2), (2, 2, 7, 7)),
    "avgpool": (lambda: nn.AvgPool2d((2, 3), stride=1), (2, 3, 4, 6)),
    "global_avgpool": (lambda: nn.GlobalAvgPool2d(), (2, 3, 4, 5)),
    "relu": (lambda: nn.ReLU(), (3, 4, 2)),
    "leaky_relu": (lambda: nn.LeakyReLU(0.1), (3, 4)),
    "elu": (lambda: nn.ELU(0.7), (3, 4)),
    "sigmoid": (lambda: nn.Sigmoid(), (3, 4)),
    "tanh": (lambda: nn.Tanh(), (3, 4)),
    "flatten": (lambda: nn.Flatten(), (2, 3, 2, 2)),
    "batchnorm1d": (lambda: nn.BatchNorm1d(5, dtype=F64), (6, 5)),
    "batchnorm2d": (lambda: nn.BatchNorm2d(3, dtype=F64), (4, 3, 3, 3)),
    "batchnorm2d_eval": (lambda: nn.BatchNorm2d(3, dtype=F64).eval(), (4, 3, 3, 3)),
    "dropout_eval": (lambda: nn.Dropout(0.3, rng=0).eval(), (3, 4)),
    "sequential": (
        lambda: nn.Sequential(
            nn.Linear(6, 5, rng=0, dtype=F64), nn.Tanh(), nn.Linear(5, 2, rng=1, dtype=F64)
        ),
        (4, 6),
    ),
    "residual_identity": (
        lambda: nn.Residual(
            nn.Sequential(nn.Conv2d(3, 3, 3, padding=1, rng=0, dtype=F64), nn.Tanh())
        ),
        (2, 3, 4, 4),
    ),
    "residual_projection": (
        lambda: nn.Residual.auto(
            nn.Sequential(nn.Conv2d(2, 4, 3, stride=2, padding=1, rng=0, dtype=F64), nn.Tanh()),
            2,
            4,
            stride=2,
            rng=1,
            dtype=F64,
        ),
        (2, 2, 5, 5),
    ),
}


@pytest.mark.parametrize("case", GRADCHECK_CASES)
def test_module_backward_matches_numerical_gradients(case):
    make, shape = GRADCHECK_CASES[case]
    module = make()
    if case == "batchnorm2d_eval":  # non-trivial running statistics
        module.running_mean[:] = [0.3, -0.2, 0.1]
        module.running_var[:] = [0.5, 2.0, 1.5]
        module.weight.data[:] = [1.5, -0.5, 2.0]
    # not seed 0: check_gradients draws dout from it, and dout = x is a degenerate case for BN
    assert_module_gradients(module, away_from_kinks(np.random.default_rng(42), shape))


def test_dropout_backward_in_training_matches_numerical_gradients():
    drop = nn.Dropout(0.4, rng=0)
    assert_module_gradients(drop, away_from_kinks(np.random.default_rng(1), (5, 6)), reseed=[drop])


def test_whole_model_with_loss_matches_numerical_gradients():
    gen = np.random.default_rng(0)
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1, bias=False, rng=gen, dtype=F64),  # BN would cancel a bias
        nn.BatchNorm2d(3, dtype=F64),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Dropout(0.25, rng=gen),
        nn.Flatten(),
        nn.Linear(27, 4, rng=gen, dtype=F64),
    )
    params = model.parameters()
    x = np.random.default_rng(1).standard_normal((3, 2, 6, 6))
    y = np.array([0, 3, 1])

    def forward(x, *arrays):
        for p, a in zip(params, arrays, strict=True):
            p.data = a
        model[4].rng = np.random.default_rng(5)  # the same dropout mask at every evaluation
        return softmax_cross_entropy(model(x), y)

    def backward(dloss, dscores):
        model.zero_grad()
        dx = model.backward(dscores * dloss)
        return (dx, *[p.grad.copy() for p in params])

    report = check_gradients(forward, backward, {"x": x, **{p.name: p.data for p in params}})
    assert report.passed, str(report)
    assert [r.name for r in report.rows] == [
        "x",
        "0.weight",
        "1.weight",
        "1.bias",
        "6.weight",
        "6.bias",
    ]


# --------------------------------------------------------------------------- against PyTorch


def to_torch(module: nn.Module, dtype=torch.float32) -> torch.nn.Module:
    """The PyTorch module computing what `module` does, with the same weights and statistics."""
    if isinstance(module, nn.Sequential):
        return torch.nn.Sequential(*[to_torch(m, dtype) for m in module])
    if isinstance(module, nn.Conv2d):
        t = torch.nn.Conv2d(
            module.in_channels,
            module.out_channels,
            module.kernel_size,
            module.stride,
            module.padding,
            bias=module.bias is not None,
            dtype=dtype,
        )
    elif isinstance(module, nn.Linear):
        t = torch.nn.Linear(
            module.in_features, module.out_features, bias=module.bias is not None, dtype=dtype
        )
    elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        cls = torch.nn.BatchNorm1d if isinstance(module, nn.BatchNorm1d) else torch.nn.BatchNorm2d
        t = cls(module.num_features, module.eps, module.momentum, dtype=dtype)
        t.running_mean.copy_(torch.tensor(module.running_mean))
        t.running_var.copy_(torch.tensor(module.running_var))
    else:
        return SIMPLE_TORCH[type(module)](module)
    with torch.no_grad():
        t.weight.copy_(
            torch.tensor(
                module.weight.data.T if isinstance(module, nn.Linear) else module.weight.data
            )
        )
        if module.bias is not None:
            t.bias.copy_(torch.tensor(module.bias.data))
    return t.train(module.training)


SIMPLE_TORCH = {
    nn.ReLU: lambda m: torch.nn.ReLU(),
    nn.LeakyReLU: lambda m: torch.nn.LeakyReLU(m.negative_slope),
    nn.ELU: lambda m: torch.nn.ELU(m.alpha),
    nn.Sigmoid: lambda m: torch.nn.Sigmoid(),
    nn.Tanh: lambda m: torch.nn.Tanh(),
    nn.Flatten: lambda m: torch.nn.Flatten(),
    nn.MaxPool2d: lambda m: torch.nn.MaxPool2d(m.kernel_size, m.stride),
    nn.AvgPool2d: lambda m: torch.nn.AvgPool2d(m.kernel_size, m.stride),
    nn.GlobalAvgPool2d: lambda m: torch.nn.Sequential(
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()
    ),
}


def torch_grad(torch_param: torch.Tensor, linear: bool) -> np.ndarray:
    """PyTorch's gradient in our layout (a Linear weight's is transposed)."""
    g = torch_param.grad.numpy()
    return g.T if linear and g.ndim == 2 else g


def assert_same_as_torch(module: nn.Module, x: np.ndarray, tol=TOL32) -> None:
    """Forward, dx and every parameter's gradient of `module` equal those of its PyTorch twin."""
    t = to_torch(module, torch.float64 if x.dtype == F64 else torch.float32)
    xt = torch.tensor(x, requires_grad=True)
    out_t = t(xt)
    out = module(x)
    np.testing.assert_allclose(out, out_t.detach().numpy(), **tol)
    assert out.dtype == x.dtype
    dout = np.random.default_rng(9).standard_normal(out.shape).astype(x.dtype)
    out_t.backward(torch.tensor(dout))
    np.testing.assert_allclose(module.backward(dout), xt.grad.numpy(), **tol)
    torch_params = dict(t.named_parameters())
    for name, p in module.named_parameters():
        linear = isinstance(module, nn.Linear) or (
            isinstance(module, nn.Sequential)
            and isinstance(module[int(name.split(".")[0])], nn.Linear)
        )
        np.testing.assert_allclose(p.grad, torch_grad(torch_params[name], linear), **tol)


TORCH_CASES = {
    "conv": (lambda: nn.Conv2d(3, 4, 3, stride=2, padding=1, rng=0), (2, 3, 9, 8)),
    "conv_nobias": (
        lambda: nn.Conv2d(3, 5, (3, 1), stride=(1, 2), bias=False, rng=0),
        (2, 3, 6, 6),
    ),
    "linear": (lambda: nn.Linear(7, 5, rng=0), (4, 7)),
    "linear_nobias": (lambda: nn.Linear(7, 5, bias=False, rng=0), (4, 7)),
    "maxpool": (lambda: nn.MaxPool2d(2), (2, 3, 6, 7)),
    "maxpool_overlapping": (lambda: nn.MaxPool2d(3, stride=2), (2, 3, 7, 7)),
    "avgpool": (lambda: nn.AvgPool2d(2, stride=1), (2, 3, 5, 4)),
    "global_avgpool": (lambda: nn.GlobalAvgPool2d(), (2, 3, 5, 4)),
    "relu": (lambda: nn.ReLU(), (3, 5)),
    "leaky_relu": (lambda: nn.LeakyReLU(0.2), (3, 5)),
    "elu": (lambda: nn.ELU(0.5), (3, 5)),
    "sigmoid": (lambda: nn.Sigmoid(), (3, 5)),
    "tanh": (lambda: nn.Tanh(), (3, 5)),
    "flatten": (lambda: nn.Flatten(), (3, 2, 2, 2)),
    "batchnorm1d": (lambda: nn.BatchNorm1d(5), (8, 5)),
    "batchnorm2d": (lambda: nn.BatchNorm2d(3), (4, 3, 5, 5)),
}


@pytest.mark.parametrize("case", TORCH_CASES)
def test_module_matches_torch(case):
    make, shape = TORCH_CASES[case]
    x = away_from_kinks(np.random.default_rng(0), shape).astype(np.float32)
    assert_same_as_torch(make(), x)


@pytest.mark.parametrize("cls, shape", [(nn.BatchNorm1d, (16, 4)), (nn.BatchNorm2d, (6, 4, 3, 3))])
@pytest.mark.parametrize("momentum", [0.1, 0.3])
def test_batchnorm_running_statistics_follow_torch(cls, shape, momentum):
    ours = cls(4, momentum=momentum)
    ours.weight.data[:] = [1.0, 2.0, 0.5, -1.0]
    ours.bias.data[:] = [0.0, 0.1, -0.2, 0.3]
    theirs = to_torch(ours)
    rng = np.random.default_rng(0)
    for step in range(4):
        x = (3.0 * rng.standard_normal(shape) + step).astype(np.float32)
        np.testing.assert_allclose(ours(x), theirs(torch.tensor(x)).detach().numpy(), **TOL32)
    np.testing.assert_allclose(ours.running_mean, theirs.running_mean.numpy(), **TOL32)
    np.testing.assert_allclose(ours.running_var, theirs.running_var.numpy(), **TOL32)
    assert ours.running_mean.dtype == np.float32
    ours.eval()
    theirs.eval()
    before = ours.running_mean.copy()
    x = rng.standard_normal(shape).astype(np.float32)
    np.testing.assert_allclose(ours(x), theirs(torch.tensor(x)).detach().numpy(), **TOL32)
    np.testing.assert_array_equal(ours.running_mean, before)  # evaluation leaves them alone


def test_momentum_weighs_the_new_statistic_as_in_torch():
    bn = nn.BatchNorm1d(1, momentum=0.1, dtype=F64)
    bn(np.array([[1.0], [3.0]]))  # batch mean 2, unbiased variance 2
    assert bn.running_mean[0] == pytest.approx(0.9 * 0 + 0.1 * 2)
    assert bn.running_var[0] == pytest.approx(0.9 * 1 + 0.1 * 2)


def test_residual_with_identity_matches_torch():
    body = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1, rng=0, dtype=F64), nn.Tanh())
    block = nn.Residual(body)
    assert block.projection is None
    t_body = to_torch(body, torch.float64)
    x = np.random.default_rng(0).standard_normal((2, 4, 5, 5))
    xt = torch.tensor(x, requires_grad=True)
    out_t = t_body(xt) + xt
    np.testing.assert_allclose(block(x), out_t.detach().numpy(), **TOL64)
    dout = np.random.default_rng(1).standard_normal(out_t.shape)
    out_t.backward(torch.tensor(dout))
    np.testing.assert_allclose(block.backward(dout), xt.grad.numpy(), **TOL64)
    np.testing.assert_allclose(body[0].weight.grad, t_body[0].weight.grad.numpy(), **TOL64)


def test_residual_with_projection_matches_torch():
    gen = np.random.default_rng(0)
    body = nn.Sequential(
        nn.Conv2d(3, 6, 3, stride=2, padding=1, rng=gen, dtype=F64),
        nn.BatchNorm2d(6, dtype=F64),
        nn.ReLU(),
        nn.Conv2d(6, 6, 3, padding=1, rng=gen, dtype=F64),
    )
    block = nn.Residual.auto(body, 3, 6, stride=2, rng=gen, dtype=F64)
    proj = block.projection
    assert isinstance(proj, nn.Conv2d) and proj.kernel_size == (1, 1) and proj.stride == (2, 2)
    t_body, t_proj = to_torch(body, torch.float64), to_torch(proj, torch.float64)
    x = np.random.default_rng(1).standard_normal((2, 3, 7, 7))
    xt = torch.tensor(x, requires_grad=True)
    out_t = t_body(xt) + t_proj(xt)
    np.testing.assert_allclose(block(x), out_t.detach().numpy(), **TOL64)
    dout = np.random.default_rng(2).standard_normal(out_t.shape)
    out_t.backward(torch.tensor(dout))
    np.testing.assert_allclose(block.backward(dout), xt.grad.numpy(), **TOL64)
    np.testing.assert_allclose(proj.weight.grad, t_proj.weight.grad.numpy(), **TOL64)
    np.testing.assert_allclose(body[1].weight.grad, t_body[1].weight.grad.numpy(), **TOL64)
    assert [n for n, _ in block.named_parameters()] == [
        "body.0.weight", "body.0.bias", "body.1.weight", "body.1.bias",
        "body.3.weight", "body.3.bias", "projection.weight",
    ]  # fmt: skip


def test_residual_auto_keeps_the_identity_when_shapes_agree():
    assert nn.Residual.auto(nn.ReLU(), 4, 4, stride=1).projection is None


def test_residual_names_a_shape_mismatch():
    block = nn.Residual(nn.Conv2d(3, 6, 1, rng=0))
    with pytest.raises(ValueError, match="Residual: the body outputs shape.*Residual.auto"):
        block(np.zeros((1, 3, 4, 4), np.float32))
    with pytest.raises(ValueError, match="Residual.auto"):
        block.summary((3, 4, 4))


def test_lenet_forward_and_gradients_match_torch():
    model = nn.lenet(rng=0, dtype=F64)
    theirs = to_torch(model, torch.float64)
    x = np.random.default_rng(0).standard_normal((4, 1, 28, 28))
    y = np.array([1, 0, 9, 3])
    loss, dscores = softmax_cross_entropy(model(x), y)
    loss_t = tf.cross_entropy(theirs(torch.tensor(x)), torch.tensor(y))
    assert loss == pytest.approx(loss_t.item(), rel=1e-10)
    model.backward(dscores)
    loss_t.backward()
    torch_params = dict(theirs.named_parameters())
    for name, p in model.named_parameters():
        linear = isinstance(model[int(name.split(".")[0])], nn.Linear)
        np.testing.assert_allclose(p.grad, torch_grad(torch_params[name], linear), **TOL64)


# --------------------------------------------------------------------------- gradients accumulate


def test_gradients_accumulate_and_zero_grad_resets():
    model = nn.Sequential(nn.Linear(4, 3, rng=0), nn.ReLU(), nn.Linear(3, 2, rng=1))
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    dout = np.ones((5, 2), np.float32)
    model(x)
    model.backward(dout)
    once = [p.grad.copy() for p in model.parameters()]
    assert any(g.any() for g in once)
    model(x)
    model.backward(dout)
    for p, g in zip(model.parameters(), once, strict=True):
        np.testing.assert_allclose(p.grad, 2 * g, rtol=1e-6)
    grads = [p.grad for p in model.parameters()]
    model.zero_grad()
    for p, g in zip(model.parameters(), grads, strict=True):
        assert p.grad is g and not g.any()  # reset in place


@pytest.mark.parametrize(
    "module",
    [nn.Conv2d(1, 2, 3), nn.Linear(3, 2), nn.ReLU(), nn.MaxPool2d(2), nn.BatchNorm2d(2),
     nn.Flatten(), nn.GlobalAvgPool2d(), nn.Dropout(), nn.lenet()],
    ids=lambda m: type(m).__name__,
)  # fmt: skip
def test_backward_before_forward_is_a_clear_error(module):
    with pytest.raises(RuntimeError, match=r"backward was called before forward"):
        module.backward(np.zeros((1, 2), np.float32))


# --------------------------------------------------------------------------- names and state

LENET_PARAMS = [f"{i}.{k}" for i in (0, 3, 7, 9, 11) for k in ("weight", "bias")]


def test_parameter_names_order_and_decay():
    model = nn.lenet(rng=0)
    params = model.parameters()
    assert [p.name for p in params] == LENET_PARAMS
    assert [n for n, _ in model.named_parameters()] == LENET_PARAMS
    assert [p.decay for p in params] == [True, False] * 5
    assert model[0].weight is params[0] and model[0].weight.data.shape == (6, 1, 5, 5)
    assert model[7].weight.data.shape == (400, 120)  # (in, out)
    for p in params:
        assert p.grad.shape == p.data.shape and p.grad.dtype == p.data.dtype == np.float32
        assert not p.grad.any()


def test_nested_containers_name_their_parameters_by_path():
    inner = nn.Sequential(nn.Conv2d(2, 2, 1), nn.BatchNorm2d(2))
    model = nn.Sequential(nn.ReLU(), nn.Residual(inner))
    assert [p.name for p in model.parameters()] == [
        "1.body.0.weight", "1.body.0.bias", "1.body.1.weight", "1.body.1.bias",
    ]  # fmt: skip
    assert [p.decay for p in model.parameters()] == [True, False, False, False]
    assert [n for n, _ in model.named_buffers()] == [
        "1.body.1.running_mean",
        "1.body.1.running_var",
    ]


def test_batchnorm_statistics_are_buffers_not_parameters():
    model = nn.small_vgg(rng=0)
    names = [p.name for p in model.parameters()]
    assert names[:3] == ["0.weight", "1.weight", "1.bias"]  # the convolutions have no bias
    assert not any("running" in n for n in names)
    buffers = dict(model.named_buffers())
    assert list(buffers) == [
        f"{i}.{s}" for i in (1, 4, 8, 11) for s in ("running_mean", "running_var")
    ]
    assert buffers["1.running_var"].dtype == np.float32 and (buffers["1.running_var"] == 1).all()
    assert list(model.state_dict()) == names + list(buffers)


def test_state_dict_holds_copies():
    model = nn.lenet(rng=0)
    state = model.state_dict()
    state["0.weight"][:] = 7
    assert not (model[0].weight.data == 7).any()


def test_load_state_dict_copies_in_place():
    model, other = nn.small_vgg(rng=0), nn.small_vgg(rng=1)
    weight, running = model[0].weight.data, model[1].running_mean
    other[1].running_mean[:] = 0.25
    model.load_state_dict(other.state_dict())
    assert model[0].weight.data is weight and model[1].running_mean is running
    np.testing.assert_array_equal(weight, other[0].weight.data)
    assert (running == 0.25).all()


def test_load_state_dict_is_strict():
    model = nn.lenet(rng=0)
    state = model.state_dict()
    before = model[0].weight.data.copy()
    missing = {k: v for k, v in state.items() if k != "3.bias"}
    with pytest.raises(KeyError, match=r"missing keys: \['3.bias'\]"):
        model.load_state_dict(missing)
    with pytest.raises(KeyError, match=r"unexpected keys: \['12.weight'\]"):
        model.load_state_dict({**state, "12.weight": np.zeros(3)})
    wrong = {**state, "0.weight": np.ones((6, 1, 3, 3)), "7.weight": np.ones((1, 1))}
    with pytest.raises(ValueError) as err:
        model.load_state_dict(wrong)
    assert "'0.weight' has shape (6, 1, 3, 3) in the state but (6, 1, 5, 5)" in str(err.value)
    assert "'7.weight' has shape (1, 1) in the state but (400, 120)" in str(err.value)
    with pytest.raises(TypeError, match="'3.bias' holds <U1, not numbers"):
        model.load_state_dict({**state, "3.bias": np.array(["a"] * 16)})
    np.testing.assert_array_equal(model[0].weight.data, before)  # nothing was copied


def test_save_and_load_round_trip(tmp_path):
    model = nn.small_vgg(rng=0)
    model[1].running_var[:] = 3.0
    path = model.save(tmp_path / "vgg")
    assert path == tmp_path / "vgg.npz" and path.exists()
    restored = nn.small_vgg(rng=1).load(tmp_path / "vgg")
    for (k, a), (k2, b) in zip(
        model.state_dict().items(), restored.state_dict().items(), strict=True
    ):
        assert k == k2
        np.testing.assert_array_equal(a, b)
    x = np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32)
    np.testing.assert_array_equal(model.eval()(x), restored.eval()(x))


def test_save_refuses_to_overwrite(tmp_path):
    path = tmp_path / "model.npz"
    path.write_bytes(b"my notes")
    model = nn.lenet(rng=0)
    with pytest.raises(FileExistsError, match="model.npz already exists; pass overwrite=True"):
        model.save(path)
    assert path.read_bytes() == b"my notes"
    model.save(path, overwrite=True)
    nn.lenet(rng=1).load(path)


def test_loading_another_architecture_names_the_keys(tmp_path):
    path = nn.lenet(rng=0).save(tmp_path / "lenet.npz")
    with pytest.raises(KeyError, match=r"unexpected keys: \['9.weight', '9.bias', '11.weight'"):
        nn.bench_cnn(rng=0).load(path)


def test_train_and_eval_reach_every_module():
    model = nn.Sequential(nn.Dropout(), nn.Residual(nn.Sequential(nn.BatchNorm2d(2), nn.Dropout())))
    modules = [model, model[0], model[1], model[1].body, model[1].body[0], model[1].body[1]]
    assert all(m.training for m in modules)
    assert model.eval() is model
    assert not any(m.training for m in modules)
    assert model.train() is model
    assert all(m.training for m in modules)
    model.train(False)
    assert not any(m.training for m in modules)


def test_dropout_drops_with_probability_p_and_is_the_identity_in_eval():
    drop = nn.Dropout(0.3, rng=0)
    x = np.ones((200, 500), np.float32)
    out = drop(x)
    assert (out == 0).mean() == pytest.approx(0.3, abs=0.005)
    np.testing.assert_allclose(out[out != 0], 1 / 0.7, rtol=1e-6)
    np.testing.assert_array_equal(drop.eval()(x), x)
    with pytest.raises(ValueError, match="probability of dropping"):
        nn.Dropout(1.0)


def test_batchnorm_eval_leaves_running_statistics_alone():
    model = nn.small_vgg(rng=0).eval()
    before = model.state_dict()
    model(np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32))
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


# --------------------------------------------------------------------------- summaries


def test_lenet_summary_counts_match_arith():
    model = nn.lenet(rng=0)
    summary = model.summary((1, 28, 28))
    assert summary.total_params == model.n_params() == sum(p.data.size for p in model.parameters())
    assert summary.total_params == 61_706
    params = {r.name: r.params for r in summary.rows}
    assert params["0"] == arith.conv_params(1, 6, 5)
    assert params["3"] == arith.conv_params(6, 16, 5)
    assert params["7"] == arith.linear_params(400, 120)
    assert params["9"] == arith.linear_params(120, 84)
    assert params["11"] == arith.linear_params(84, 10)
    assert [r.output_shape for r in summary.rows][:7] == [
        (6, 28, 28), (6, 28, 28), (6, 14, 14), (16, 10, 10), (16, 10, 10), (16, 5, 5), (400,),
    ]  # fmt: skip
    text = str(summary)
    for shape in ("6x28x28", "6x14x14", "16x10x10", "16x5x5", "400", "120", "84"):
        assert shape in text
    assert "61,706" in text and "Conv2d" in text and "MaxPool2d" in text


@pytest.mark.parametrize("name", ["lenet", "small_vgg", "bench_cnn"])
def test_summary_agrees_with_a_forward_pass(name):
    model = nn.build(name, rng=0, in_channels=3, num_classes=7)
    summary = model.summary((3, 28, 28))
    assert summary.total_params == model.n_params()
    out = np.zeros((2, 3, 28, 28), np.float32)
    for layer, row in zip(model, summary.rows, strict=True):
        out = layer(out)
        assert row.output_shape == out.shape[1:]
    assert summary.output_shape == (7,)
    bn_rows = [r for r in summary.rows if r.kind == "BatchNorm2d"]
    assert all(r.params == arith.batchnorm_params(r.output_shape[0]) for r in bn_rows)


def test_summary_names_a_bad_input_shape():
    with pytest.raises(
        ValueError, match="Conv2d: expects 1 channels, got input shape \\(3, 28, 28\\)"
    ):
        nn.lenet().summary((3, 28, 28))
    with pytest.raises(ValueError, match="input_shape must be a tuple"):
        nn.lenet().summary(28)


def test_residual_summary_lists_both_paths():
    block = nn.Residual.auto(nn.Conv2d(2, 4, 3, stride=2, padding=1), 2, 4, stride=2)
    summary = block.summary((2, 8, 8))
    assert [(r.name, r.output_shape, r.params) for r in summary.rows] == [
        ("body", (4, 4, 4), 76), ("projection", (4, 4, 4), 8), ("Residual", (4, 4, 4), 0),
    ]  # fmt: skip


# --------------------------------------------------------------------------- builders and construction


def test_build_names():
    assert set(nn.ARCHITECTURES) == {"lenet", "small_vgg", "bench_cnn"}
    with pytest.raises(
        ValueError, match="unknown architecture 'resnet'; choose one of lenet, small_vgg, bench_cnn"
    ):
        nn.build("resnet")


def test_architectures_shapes():
    x = np.zeros((2, 1, 28, 28), np.float32)
    for name in nn.ARCHITECTURES:
        model = nn.build(name, rng=0, num_classes=5)
        assert model(x).shape == (2, 5) and model(x).dtype == np.float32
    bench = nn.bench_cnn(rng=0)
    assert bench[-1].in_features == 16 * 7 * 7 == 784
    assert len(bench) == 8 and isinstance(bench[0], nn.Conv2d)
    vgg = nn.small_vgg(rng=0)
    assert [type(m).__name__ for m in vgg][-5:] == [
        "Dropout",
        "Linear",
        "ReLU",
        "Dropout",
        "Linear",
    ]
    assert [m.out_channels for m in vgg if isinstance(m, nn.Conv2d)] == [32, 32, 64, 64]
    assert nn.lenet(input_size=32, rng=0)[7].in_features == 16 * 6 * 6


def test_one_seed_builds_the_same_model():
    for name in nn.ARCHITECTURES:
        a, b, c = nn.build(name, rng=0), nn.build(name, rng=0), nn.build(name, rng=1)
        for (k, u), v, w in zip(
            a.state_dict().items(), b.state_dict().values(), c.state_dict().values(), strict=True
        ):
            np.testing.assert_array_equal(u, v)
            if k.endswith("weight") and u.ndim > 1:
                assert not np.array_equal(u, w)
        from_generator = nn.build(name, rng=np.random.default_rng(0))
        np.testing.assert_array_equal(from_generator[0].weight.data, a[0].weight.data)
    # a shared Generator advances from layer to layer; the same int seed repeats the draws
    gen = np.random.default_rng(0)
    first, second = nn.Linear(4, 4, rng=gen), nn.Linear(4, 4, rng=gen)
    assert not np.array_equal(first.weight.data, second.weight.data)
    np.testing.assert_array_equal(nn.Linear(4, 4, rng=0).weight.data, first.weight.data)


def test_dropout_masks_are_reproducible_from_the_seed():
    x = np.random.default_rng(0).standard_normal((4, 1, 28, 28)).astype(np.float32)
    np.testing.assert_array_equal(nn.small_vgg(rng=3)(x), nn.small_vgg(rng=3)(x))


def test_init_and_dtype_arguments():
    conv = nn.Conv2d(3, 8, 3, init="xavier_uniform", rng=0, dtype=np.float64)
    bound = np.sqrt(6 / (27 + 72))
    assert conv.weight.data.dtype == np.float64 and np.abs(conv.weight.data).max() <= bound
    assert conv.bias.data.dtype == np.float64 and not conv.bias.data.any()
    lin = nn.Linear(3, 2, init=lambda shape, rng, dtype: np.full(shape, 0.5, dtype))
    assert (lin.weight.data == 0.5).all()
    with pytest.raises(ValueError, match="unknown initialiser 'kaiming'.*he_normal"):
        nn.Linear(3, 2, init="kaiming")


def test_constructor_arguments_are_checked():
    with pytest.raises(ValueError, match="Conv2d: in_channels must be positive, got 0"):
        nn.Conv2d(0, 3, 3)
    with pytest.raises(TypeError, match="Linear: out_features must be an int"):
        nn.Linear(3, 2.5)
    with pytest.raises(ValueError, match=r"BatchNorm2d: momentum must be in \[0.0, 1.0\]"):
        nn.BatchNorm2d(3, momentum=1.5)
    with pytest.raises(ValueError, match="BatchNorm1d: eps must be positive"):
        nn.BatchNorm1d(3, eps=0)
    with pytest.raises(TypeError, match="Sequential: 1 must be a Module, got ufunc"):
        nn.Sequential(nn.ReLU(), np.tanh)


def test_sequential_container_protocol_and_error_context():
    model = nn.lenet(rng=0)
    assert len(model) == 12 and model[0] is list(model)[0] and isinstance(model[-1], nn.Linear)
    with pytest.raises(TypeError, match="index must be an int"):
        model["0"]
    with pytest.raises(ValueError, match=r"layer 0 \(Conv2d\): conv2d_forward: x has 3 channels"):
        model(np.zeros((1, 3, 28, 28), np.float32))
    with pytest.raises(ValueError, match=r"layer 7 \(Linear\): linear_forward"):
        model(np.zeros((1, 1, 32, 32), np.float32))


@pytest.mark.parametrize("arch", ["lenet", "small_vgg", "bench_cnn"])
def test_backward_params_gives_the_same_parameter_gradients(arch):
    """Training skips the input gradient; the parameter gradients must not change."""
    x = np.random.default_rng(0).standard_normal((4, 1, 28, 28))
    grads = []
    for method in ("backward", "backward_params"):
        model = nn.build(arch, rng=3, dtype=np.float64)
        out = model(x)
        result = getattr(model, method)(np.ones_like(out))
        assert (result is None) == (method == "backward_params")
        grads.append([p.grad.copy() for p in model.parameters()])
    for full, only in zip(*grads, strict=True):
        np.testing.assert_array_equal(full, only)


def test_conv2d_backward_weights_matches_the_full_backward():
    rng = np.random.default_rng(1)
    x, w, b = rng.standard_normal((2, 3, 6, 5)), rng.standard_normal((4, 3, 3, 2)), np.zeros(4)
    out, cache = F.conv2d_forward(x, w, b, stride=2, padding=1)
    dout = rng.standard_normal(out.shape)
    _, dw, db = F.conv2d_backward(dout, cache)
    dw2, db2 = F.conv2d_backward_weights(dout, cache)
    np.testing.assert_array_equal(dw, dw2)
    np.testing.assert_array_equal(db, db2)
