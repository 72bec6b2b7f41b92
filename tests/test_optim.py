"""Tests for cnn_core.optim: optimisers, penalties, schedules, early stopping and the factories.

Oracles: update rules worked out by hand in the tests (numbers written here, not computed by the
code under test), torch.optim and torch.optim.lr_scheduler on the same problems, and scripted
loss sequences with known answers.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from cnn_core.optim import (
    SGD,
    Adam,
    CosineAnnealingLR,
    EarlyStopping,
    ReduceLROnPlateau,
    StepLR,
    l1_penalty,
    l2_penalty,
    make_optimizer,
    make_schedule,
)


@dataclass
class Param:
    data: np.ndarray
    grad: np.ndarray
    name: str
    decay: bool


def param(values, decay=True, dtype=np.float64, name="w") -> Param:
    data = np.array(values, dtype=dtype)
    return Param(data, np.zeros_like(data), name, decay)


def steps_with_grads(opt, p, grads) -> list[np.ndarray]:
    """Set p.grad to each of `grads` in turn and step; return p.data after each step."""
    out = []
    for g in grads:
        p.grad[...] = g
        opt.step()
        out.append(p.data.copy())
    return out


def close(actual, expected, rtol=1e-12, atol=1e-12):
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


# --------------------------------------------------------------------------- by hand


def test_sgd_plain_with_weight_decay_and_l1_by_hand():
    # w -= lr * (g + wd * w + l1 * sign(w)), lr 0.1, wd 0.1, l1 0.01, w = [1, -2], g = [0.5, -1]
    # w0: 1 - 0.1 * (0.5 + 0.1 + 0.01) = 0.939;  w1: -2 - 0.1 * (-1 - 0.2 - 0.01) = -1.879
    p = param([1.0, -2.0])
    opt = SGD([p], lr=0.1, weight_decay=0.1, l1=0.01)
    (w1,) = steps_with_grads(opt, p, [[0.5, -1.0]])
    close(w1, [0.939, -1.879])


def test_sgd_momentum_by_hand():
    # constant g = [1, -2], lr 0.1, momentum 0.9: v1 = [-0.1, 0.2], v2 = [-0.19, 0.38],
    # v3 = [-0.271, 0.542]; w = [1, -2] + cumulative v
    p = param([1.0, -2.0])
    opt = SGD([p], lr=0.1, momentum=0.9)
    ws = steps_with_grads(opt, p, [[1.0, -2.0]] * 3)
    close(ws, [[0.9, -1.8], [0.71, -1.42], [0.439, -0.878]])


def test_sgd_momentum_weight_decay_inside_velocity_by_hand():
    # AlexNet: v <- 0.9 v - wd*lr*w - lr*g with g = 0, lr 0.1, wd 0.5 (wd*lr = 0.05), w0 = [1, -2]
    # v1 = [-0.05, 0.1], w1 = [0.95, -1.9]; v2 = 0.9 v1 - 0.05 w1 = [-0.0925, 0.185], w2 = [0.8575, -1.715]
    p = param([1.0, -2.0])
    opt = SGD([p], lr=0.1, momentum=0.9, weight_decay=0.5)
    ws = steps_with_grads(opt, p, [[0.0, 0.0]] * 2)
    close(ws, [[0.95, -1.9], [0.8575, -1.715]])


def test_sgd_momentum_l1_inside_velocity_by_hand():
    # v <- 0.9 v - lr*l1*sign(w) with g = 0, lr 0.1, l1 0.5: v1 = [-0.05, 0.05], w1 = [0.95, -1.95]
    # v2 = [-0.095, 0.095], w2 = [0.855, -1.855]
    p = param([1.0, -2.0])
    opt = SGD([p], lr=0.1, momentum=0.9, l1=0.5)
    ws = steps_with_grads(opt, p, [[0.0, 0.0]] * 2)
    close(ws, [[0.95, -1.95], [0.855, -1.855]])


def test_nesterov_by_hand():
    # constant g = [1, -2], lr 0.1, momentum 0.9; w += -0.9 v_prev + 1.9 v
    # step 1: v = [-0.1, 0.2], w = [1, -2] + 1.9 v = [0.81, -1.62]
    # step 2: v = [-0.19, 0.38], w = [0.81, -1.62] - 0.9 [-0.1, 0.2] + 1.9 v = [0.539, -1.078]
    p = param([1.0, -2.0])
    opt = SGD([p], lr=0.1, momentum=0.9, nesterov=True)
    ws = steps_with_grads(opt, p, [[1.0, -2.0]] * 2)
    close(ws, [[0.81, -1.62], [0.539, -1.078]])


def test_adam_by_hand():
    # lr 0.1, betas (0.9, 0.999), eps 1e-8, w0 = [1, -2], g1 = [1, -2], g2 = [3, 0]
    # step 1: m_hat = g1, v_hat = g1**2, so w1 = w0 - 0.1 * g1 / (|g1| + 1e-8)
    # step 2: m = 0.9 [0.1, -0.2] + 0.1 [3, 0] = [0.39, -0.18]
    #         v = 0.999 [0.001, 0.004] + 0.001 [9, 0] = [0.009999, 0.003996]
    #         m_hat = m / (1 - 0.81) = m / 0.19, v_hat = v / (1 - 0.998001) = v / 0.001999
    p = param([1.0, -2.0])
    opt = Adam([p], lr=0.1, betas=(0.9, 0.999), eps=1e-8)
    w1, w2 = steps_with_grads(opt, p, [[1.0, -2.0], [3.0, 0.0]])
    expect1 = np.array([1 - 0.1 * 1 / (1 + 1e-8), -2 + 0.1 * 2 / (2 + 1e-8)])
    m_hat = np.array([0.39, -0.18]) / 0.19
    v_hat = np.array([0.009999, 0.003996]) / 0.001999
    close(w1, expect1)
    close(w2, expect1 - 0.1 * m_hat / (np.sqrt(v_hat) + 1e-8), rtol=1e-10)


def test_adam_adds_l1_and_weight_decay_to_the_gradient():
    # g = 0 but l1 0.5 and wd 0.1: g_total = 0.5 sign(w) + 0.1 w, the first Adam step moves each
    # entry by lr * sign(g_total) = 0.1 * sign(w)
    p = param([1.0, -2.0])
    opt = Adam([p], lr=0.1, weight_decay=0.1, l1=0.5)
    (w1,) = steps_with_grads(opt, p, [[0.0, 0.0]])
    close(w1, [0.9, -1.9], rtol=1e-7)


# --------------------------------------------------------------------------- against torch

RNG = np.random.default_rng(0)
W0, B0 = RNG.standard_normal((3, 4)), RNG.standard_normal(4)
AW, AB = RNG.uniform(0.5, 2.0, (3, 4)), RNG.uniform(0.5, 2.0, 4)
CW, CB = RNG.standard_normal((3, 4)), RNG.standard_normal(4)
STEPS = 20


def ours_on_quadratic(make):
    """Minimise 0.5 * sum(a * (x - c)**2) over a weight (decay) and a bias (no decay)."""
    w, b = param(W0, name="w"), param(B0, decay=False, name="b")
    opt = make([w, b])
    for _ in range(STEPS):
        w.grad[...] = AW * (w.data - CW)
        b.grad[...] = AB * (b.data - CB)
        opt.step()
    return w.data, b.data


def torch_on_quadratic(cls, weight_decay, **kwargs):
    w, b = torch.tensor(W0, requires_grad=True), torch.tensor(B0, requires_grad=True)
    groups = [{"params": [w], "weight_decay": weight_decay}, {"params": [b], "weight_decay": 0.0}]
    opt = cls(groups, **kwargs)
    aw, ab, cw, cb = (torch.tensor(a) for a in (AW, AB, CW, CB))
    for _ in range(STEPS):
        opt.zero_grad()
        loss = 0.5 * (aw * (w - cw) ** 2).sum() + 0.5 * (ab * (b - cb) ** 2).sum()
        loss.backward()
        opt.step()
    return w.detach().numpy(), b.detach().numpy()


# torch's SGD keeps b <- momentum * b + g_total, w <- w - lr * b; with a constant lr this is our
# AlexNet form with v = -lr * b. Its nesterov step w <- w - lr * (g_total + momentum * b_new) equals
# ours too: -momentum * v_prev + (1 + momentum) * v_new = momentum * v_new - lr * g_total.
# Adam in torch adds weight_decay * w to the gradient, the classic L2 form used here.
TORCH_CASES = {
    "sgd": (dict(lr=0.1), torch.optim.SGD, 0.0, dict(lr=0.1)),
    "sgd+wd": (dict(lr=0.1, weight_decay=0.05), torch.optim.SGD, 0.05, dict(lr=0.1)),
    "momentum+wd": (
        dict(lr=0.05, momentum=0.9, weight_decay=0.01),
        torch.optim.SGD,
        0.01,
        dict(lr=0.05, momentum=0.9),
    ),
    "nesterov+wd": (
        dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.01),
        torch.optim.SGD,
        0.01,
        dict(lr=0.05, momentum=0.8, nesterov=True),
    ),
    "adam+wd": (
        dict(lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.01),
        torch.optim.Adam,
        0.01,
        dict(lr=0.05, betas=(0.8, 0.99), eps=1e-6),
    ),
}


@pytest.mark.parametrize("case", list(TORCH_CASES))
def test_optimisers_match_torch_over_20_steps(case):
    ours_kwargs, torch_cls, wd, torch_kwargs = TORCH_CASES[case]
    cls = Adam if torch_cls is torch.optim.Adam else SGD
    w, b = ours_on_quadratic(lambda ps: cls(ps, **ours_kwargs))
    tw, tb = torch_on_quadratic(torch_cls, wd, **torch_kwargs)
    close(w, tw, rtol=1e-10)
    close(b, tb, rtol=1e-10)


# --------------------------------------------------------------------------- mechanics

MAKERS = {
    "sgd": lambda ps: SGD(ps, lr=0.1, weight_decay=0.1, l1=0.01),
    "momentum": lambda ps: SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.1, l1=0.01),
    "nesterov": lambda ps: SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1, l1=0.01),
    "adam": lambda ps: Adam(ps, lr=0.1, weight_decay=0.1, l1=0.01),
}


@pytest.mark.parametrize("name", list(MAKERS))
def test_penalties_skip_parameters_without_decay(name):
    w, b = param([1.0, -2.0]), param([3.0, -4.0], decay=False, name="b")
    opt = MAKERS[name]([w, b])
    for _ in range(3):
        opt.step()  # zero gradients: only the penalties can move anything
    close(b.data, [3.0, -4.0], rtol=0, atol=0)
    assert np.all(np.abs(w.data) < [1.0, 2.0])


@pytest.mark.parametrize("name", list(MAKERS))
def test_float32_kept_and_updated_in_place(name):
    runs = {}
    for dtype in (np.float32, np.float64):
        p = param([1.0, -2.0, 0.5], dtype=dtype)
        data_id, grad_id = id(p.data), id(p.grad)
        opt = MAKERS[name]([p])
        for k in range(5):
            p.grad[...] = [0.3 * k, -1.0, 2.0]
            opt.step()
        assert id(p.data) == data_id and id(p.grad) == grad_id
        assert p.data.dtype == dtype and p.grad.dtype == dtype
        assert all(a.dtype == dtype for a in opt.state_dict().values() if isinstance(a, np.ndarray))
        runs[dtype] = p.data
    close(runs[np.float32], runs[np.float64], rtol=1e-5, atol=1e-6)


def test_float64_grad_on_float32_data_keeps_float32():
    p = param([1.0, -2.0], dtype=np.float32)
    p.grad = np.array([0.5, 0.5])
    SGD([p], lr=0.1).step()
    assert p.data.dtype == np.float32
    close(p.data, [0.95, -2.05], rtol=1e-6)


def test_zero_grad_zeroes_in_place():
    w, b = param([1.0, 2.0]), param([3.0], decay=False)
    w.grad[...], b.grad[...] = 5.0, 7.0
    grads = [w.grad, b.grad]
    SGD([w, b], lr=0.1).zero_grad()
    assert w.grad is grads[0] and b.grad is grads[1]
    assert not w.grad.any() and not b.grad.any()


def test_penalty_values_by_hand():
    w, b = param([1.0, -2.0]), param([3.0], decay=False)
    assert l2_penalty([w, b], 0.1) == pytest.approx(0.5 * 0.1 * (1 + 4))
    assert l1_penalty([w, b], 0.01) == pytest.approx(0.01 * (1 + 2))
    assert l2_penalty([w, b], 0.0) == 0.0


def test_penalty_gradients_are_the_update_terms():
    # a plain SGD step with zero data gradient moves w by -lr * d(penalty)/dw
    w0 = np.array([0.7, -1.3, 2.1])
    w, b = param(w0), param([3.0], decay=False)
    SGD([w, b], lr=0.01, weight_decay=0.2, l1=0.05).step()
    h = 1e-6
    numeric = np.zeros(3)
    for i in range(3):
        plus, minus = param(w0), param(w0)
        plus.data[i] += h
        minus.data[i] -= h
        f = [l2_penalty([q], 0.2) + l1_penalty([q], 0.05) for q in (plus, minus)]
        numeric[i] = (f[0] - f[1]) / (2 * h)
    close((w0 - w.data) / 0.01, numeric, rtol=1e-7)


def test_bad_gradient_raises_before_any_parameter_changes():
    w, b = param([1.0, 2.0], name="conv1.w"), param([3.0, 4.0], decay=False, name="conv1.b")
    opt = SGD([w, b], lr=0.1)
    w.grad[...] = 1.0
    b.grad = np.ones(3)
    with pytest.raises(
        ValueError, match=r"'conv1.b' has grad of shape \(3,\) but data of shape \(2,\)"
    ):
        opt.step()
    close(w.data, [1.0, 2.0], rtol=0, atol=0)
    b.grad = None
    with pytest.raises(TypeError, match="'conv1.b' has grad of type NoneType"):
        opt.step()


# --------------------------------------------------------------------------- state and config


def quad_grads(ps):
    for k, p in enumerate(ps):
        p.grad[...] = (k + 1.0) * p.data - 0.5


def fresh_params():
    return [param([1.0, -2.0, 0.5], name="w"), param([0.3, -0.1], decay=False, name="b")]


@pytest.mark.parametrize("name", list(MAKERS))
def test_state_dict_round_trip_through_npz_continues_identically(name):
    a = fresh_params()
    opt_a = MAKERS[name](a)
    for _ in range(3):
        quad_grads(a)
        opt_a.step()
    opt_a.lr = 0.05  # as a schedule would
    buf = io.BytesIO()
    np.savez(buf, **opt_a.state_dict())
    buf.seek(0)
    state = dict(np.load(buf))
    b = [param(p.data, decay=p.decay, name=p.name) for p in a]
    opt_b = MAKERS[name](b)
    opt_b.load_state_dict(state)
    assert opt_b.lr == 0.05 and opt_b.t == 3
    for _ in range(4):
        for ps, opt in ((a, opt_a), (b, opt_b)):
            quad_grads(ps)
            opt.step()
    for pa, pb in zip(a, b, strict=True):
        np.testing.assert_array_equal(pa.data, pb.data)


def test_state_dict_is_a_copy_and_load_checks_it():
    p = param([1.0, -2.0])
    opt = SGD([p], lr=0.1, momentum=0.9)
    p.grad[...] = 1.0
    opt.step()
    state = opt.state_dict()
    opt.step()
    close(state["velocity.0"], [-0.1, -0.1])
    with pytest.raises(ValueError, match=r"missing keys \['velocity.0'\]"):
        opt.load_state_dict({"lr": 0.1, "t": 1})
    with pytest.raises(ValueError, match=r"velocity.0 has shape \(3,\), expected \(2,\)"):
        opt.load_state_dict({"lr": 0.1, "t": 1, "velocity.0": np.zeros(3)})


@pytest.mark.parametrize(
    "opt_name, kwargs",
    [
        ("sgd", dict(lr=0.1)),
        ("sgd", dict(lr=0.1, momentum=0.5, weight_decay=1e-4)),
        ("momentum", dict(lr=0.01)),
        ("nesterov", dict(lr=0.01, momentum=0.95, l1=1e-5)),
        ("adam", dict(lr=3e-4, betas=[0.8, 0.9], weight_decay=1e-3)),
    ],
)
def test_config_round_trips_through_json_and_make_optimizer(opt_name, kwargs):
    original = make_optimizer(fresh_params(), opt_name, **kwargs)
    original.lr = 1e-6  # a schedule's change does not alter the recorded configuration
    config = json.loads(json.dumps(original.config()))
    assert config == original.config()
    rebuilt = make_optimizer(fresh_params(), **config)
    assert type(rebuilt) is type(original) and rebuilt.config() == config
    assert rebuilt.lr == kwargs["lr"]


def test_make_optimizer_names():
    ps = fresh_params()
    assert make_optimizer(ps, "momentum", lr=0.1).momentum == 0.9
    nesterov = make_optimizer(ps, "nesterov", lr=0.1)
    assert nesterov.nesterov and nesterov.momentum == 0.9
    assert make_optimizer(ps, "sgd", lr=0.1).config()["name"] == "sgd"
    assert make_optimizer(ps, "adam").config() == {
        "name": "adam",
        "lr": 1e-3,
        "betas": [0.9, 0.999],
        "eps": 1e-8,
        "weight_decay": 0.0,
        "l1": 0.0,
    }
    with pytest.raises(ValueError, match="unknown optimiser 'rmsprop'"):
        make_optimizer(ps, "rmsprop", lr=0.1)
    with pytest.raises(ValueError, match="'momentum' contradicts"):
        make_optimizer(ps, "momentum", lr=0.1, momentum=0.0)
    with pytest.raises(TypeError, match="momentum"):
        make_optimizer(ps, "adam", momentum=0.9)


# --------------------------------------------------------------------------- schedules


def our_lrs(make_sched, losses):
    opt = SGD([param([1.0])], lr=0.1)
    sched = make_sched(opt)
    lrs = []
    for loss in losses:
        sched.step(loss)
        lrs.append(opt.lr)
    return lrs


def torch_lrs(make_sched, losses, with_loss=False):
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=0.1)
    sched = make_sched(opt)
    lrs = []
    for loss in losses:
        opt.step()
        sched.step(loss) if with_loss else sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    return lrs


def test_step_lr_matches_torch():
    epochs = [None] * 12
    ours = our_lrs(lambda o: StepLR(o, step_size=3, gamma=0.5), epochs)
    theirs = torch_lrs(lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=3, gamma=0.5), epochs)
    close(ours, theirs)
    close(ours[:4], [0.1, 0.1, 0.05, 0.05])


def test_cosine_matches_torch_then_stays_at_eta_min():
    ours = our_lrs(lambda o: CosineAnnealingLR(o, t_max=10, eta_min=0.001), [None] * 14)
    theirs = torch_lrs(
        lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=10, eta_min=0.001),
        [None] * 10,
    )
    close(ours[:10], theirs)
    close(ours[4], 0.001 + 0.099 * (1 + math.cos(math.pi * 5 / 10)) / 2)
    assert ours[9:] == [0.001] * 5


PLATEAU_CASES = {
    # 0.8999 is not 0.1% below 0.9: epochs 2, 3, 4 are bad, the third is more than patience=2;
    # then 0.7 plateaus and the lr halves every third epoch until min_lr stops it
    "halving to min_lr": (
        [1.0, 0.9, 0.8999, 0.9, 0.95, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7],
        [0.1] * 4 + [0.05] * 4 + [0.025] * 3 + [0.02] * 4,
    ),
    # the threshold is relative: 9.995 is within 0.1% of 10 (an absolute 1e-3 would count it)
    "relative threshold": (
        [10.0, 9.995, 9.992, 9.5, 9.499, 9.498, 9.497],
        [0.1] * 6 + [0.05],
    ),
}


@pytest.mark.parametrize("case", list(PLATEAU_CASES))
def test_plateau_matches_torch_on_a_scripted_loss_sequence(case):
    losses, expected = PLATEAU_CASES[case]
    kw = dict(factor=0.5, patience=2, threshold=1e-3, min_lr=0.02)
    ours = our_lrs(lambda o: ReduceLROnPlateau(o, **kw), losses)
    theirs = torch_lrs(
        lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(o, mode="min", **kw),
        losses,
        with_loss=True,
    )
    close(ours, theirs)
    close(ours, expected)


def test_plateau_defaults_match_torch():
    torch_defaults = torch.optim.lr_scheduler.ReduceLROnPlateau(
        torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    )
    ours = ReduceLROnPlateau(SGD([param([1.0])], lr=0.1))
    assert (ours.factor, ours.patience, ours.threshold) == (
        torch_defaults.factor,
        torch_defaults.patience,
        torch_defaults.threshold,
    )
    with pytest.raises(TypeError, match="pass the epoch's validation loss"):
        ours.step()


@pytest.mark.parametrize(
    "name, kwargs",
    [
        ("step", dict(step_size=2, gamma=0.5)),
        ("cosine", dict(t_max=6, eta_min=0.01)),
        ("plateau", dict(factor=0.5, patience=1)),
    ],
)
def test_schedule_config_and_state_round_trip(name, kwargs):
    losses = [1.0, 0.9, 0.95, 0.97, 0.96, 0.99, 0.98, 1.0]
    opt = SGD([param([1.0])], lr=0.1)
    sched = make_schedule(opt, name, **kwargs)
    config = json.loads(json.dumps(sched.config()))
    assert config["name"] == name and all(config[k] == v for k, v in kwargs.items())
    for loss in losses[:4]:
        sched.step(loss)
    opt2 = SGD([param([1.0])], lr=0.1)
    sched2 = make_schedule(opt2, **config)
    opt2.load_state_dict(opt.state_dict())
    sched2.load_state_dict(json.loads(json.dumps(sched.state_dict())))
    for loss in losses[4:]:
        sched.step(loss)
        sched2.step(loss)
        assert opt2.lr == opt.lr
    assert sched2.config() == sched.config()


def test_make_schedule_none_and_unknown():
    opt = SGD([param([1.0])], lr=0.1)
    assert make_schedule(opt, None) is None
    with pytest.raises(ValueError, match="takes no arguments"):
        make_schedule(opt, None, step_size=3)
    with pytest.raises(ValueError, match="unknown schedule 'linear'"):
        make_schedule(opt, "linear")


# --------------------------------------------------------------------------- early stopping


def test_early_stopping_on_a_scripted_sequence():
    # min_delta 0.005: 0.8 improves on 1.0, 0.85 does not, 0.79 < 0.8 - 0.005 does, then 3 bad
    stopper = EarlyStopping(patience=3, min_delta=0.005)
    decisions = [stopper.step(v) for v in [1.0, 0.8, 0.85, 0.79, 0.9, 0.9, 0.9]]
    assert decisions == [False] * 6 + [True]
    assert stopper.should_stop and stopper.best == 0.79 and stopper.best_epoch == 3


def test_early_stopping_min_delta_and_state():
    stopper = EarlyStopping(patience=2, min_delta=0.02)
    assert stopper.best == math.inf and stopper.best_epoch == -1
    assert [stopper.step(v) for v in [0.8, 0.79, 0.785]] == [False, False, True]
    assert stopper.best == 0.8 and stopper.best_epoch == 0
    copy = EarlyStopping(**stopper.config())
    copy.load_state_dict(stopper.state_dict())
    assert copy.should_stop and copy.step(0.5) is False and copy.best_epoch == 3


# --------------------------------------------------------------------------- errors


def one():
    return [param([1.0, 2.0])]


@pytest.mark.parametrize(
    "build, error, message",
    [
        (lambda: SGD(one(), lr=0.0), ValueError, "SGD: lr must be a positive number, got 0.0"),
        (lambda: SGD(one(), lr=-0.1), ValueError, "lr must be a positive number"),
        (lambda: SGD(one(), lr=float("nan")), ValueError, "lr must be a positive number"),
        (lambda: SGD(one(), lr="0.1"), TypeError, "lr must be a positive number, got '0.1'"),
        (
            lambda: SGD(one(), lr=0.1, momentum=1.0),
            ValueError,
            r"momentum must be a number in \[0, 1\)",
        ),
        (lambda: SGD(one(), lr=0.1, momentum=-0.1), ValueError, "momentum"),
        (lambda: SGD(one(), lr=0.1, nesterov=True), ValueError, "nesterov=True needs momentum > 0"),
        (
            lambda: SGD(one(), lr=0.1, weight_decay=-1),
            ValueError,
            "weight_decay must be a number >= 0",
        ),
        (lambda: SGD(one(), lr=0.1, l1=-1), ValueError, "l1 must be a number >= 0"),
        (
            lambda: Adam(one(), betas=(1.0, 0.999)),
            ValueError,
            r"betas\[0\] must be a number in \[0, 1\)",
        ),
        (lambda: Adam(one(), betas=(0.9,)), TypeError, "betas must be a pair"),
        (lambda: Adam(one(), eps=0), ValueError, "eps must be a positive number"),
        (lambda: SGD([], lr=0.1), ValueError, "params is empty"),
        (lambda: SGD([object()], lr=0.1), TypeError, r"params\[0\] \(object\) has no .data"),
        (
            lambda: SGD([Param(np.zeros(2, int), np.zeros(2), "w", True)], lr=0.1),
            TypeError,
            "'w' has data of int64; it must be a float32 or float64 array",
        ),
        (
            lambda: SGD([Param(np.zeros(2), np.zeros(3), "fc.w", True)], lr=0.1),
            ValueError,
            r"'fc.w' has grad of shape \(3,\) but data of shape \(2,\)",
        ),
        (lambda: SGD(one() * 2, lr=0.1), ValueError, "shares its data"),
        (
            lambda: StepLR(SGD(one(), lr=0.1), step_size=0),
            ValueError,
            "step_size must be positive",
        ),
        (lambda: StepLR(SGD(one(), lr=0.1), step_size=2, gamma=0), ValueError, "gamma"),
        (lambda: CosineAnnealingLR(SGD(one(), lr=0.1), t_max=0), ValueError, "t_max"),
        (lambda: CosineAnnealingLR(SGD(one(), lr=0.1), t_max=5, eta_min=0.2), ValueError, "above"),
        (lambda: ReduceLROnPlateau(SGD(one(), lr=0.1), factor=1.0), ValueError, "factor"),
        (lambda: ReduceLROnPlateau(SGD(one(), lr=0.1), patience=-1), ValueError, "patience"),
        (lambda: ReduceLROnPlateau(SGD(one(), lr=0.1), patience=1.5), TypeError, "patience"),
        (lambda: EarlyStopping(patience=0), ValueError, "patience must be positive"),
        (lambda: EarlyStopping(min_delta=-0.1), ValueError, "min_delta"),
    ],
)
def test_bad_hyper_parameters_raise_clear_errors(build, error, message):
    with pytest.raises(error, match=message):
        build()
