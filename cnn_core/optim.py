"""Optimisers, learning-rate schedules, weight penalties and early stopping.

An optimiser updates each parameter's `.data` in place (the same array object, in its own dtype)
from its `.grad`. The gradient it descends is

    g_total = grad + weight_decay * w + l1 * sign(w)

with the two penalty terms only on parameters whose `.decay` is True (weights, not biases or
batch-norm gamma/beta). These are the gradients of `l2_penalty` and `l1_penalty`, so adding those
two to the reported data loss gives the objective actually being minimised.

- `SGD`: w -= lr * g_total. With momentum it is the AlexNet update (Krizhevsky et al. 2012, sec. 5)
  v <- momentum * v - lr * g_total; w <- w + v, where weight decay sits inside the velocity.
  For a constant lr this is PyTorch's SGD with its buffer b = -v / lr. With `nesterov=True` it is
  the Sutskever et al. (2013) look-ahead in the form of CS231n:
  v_prev = v; v <- momentum * v - lr * g_total; w <- w - momentum * v_prev + (1 + momentum) * v.
- `Adam` (Kingma & Ba 2015) with bias correction. Weight decay and L1 enter through g_total,
  like PyTorch's `Adam(weight_decay=...)`: classic L2 regularisation, not AdamW's decoupled decay.

Schedules change `optimizer.lr` and are stepped once per epoch, after validation, as
`schedule.step(val_loss)` (the epoch-based ones ignore the loss). "No schedule" is `None`.
`make_optimizer` and `make_schedule` rebuild either from the dict its `config()` returned.
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from typing import Protocol

import numpy as np

from cnn_core._args import integer
from cnn_core._checks import FLOAT_DTYPES

__all__ = [
    "ParamLike",
    "Optimizer",
    "SGD",
    "Adam",
    "l2_penalty",
    "l1_penalty",
    "Schedule",
    "StepLR",
    "CosineAnnealingLR",
    "ReduceLROnPlateau",
    "EarlyStopping",
    "make_optimizer",
    "make_schedule",
]


class ParamLike(Protocol):
    """What an optimiser needs of a parameter (`cnn_core.nn.Parameter` provides it).

    data: float32 or float64 array of any shape, updated in place; grad: dLoss/d data, same shape;
    name: used in error messages; decay: True if weight decay and L1 apply to it.
    """

    data: np.ndarray
    grad: np.ndarray
    name: str
    decay: bool


# --------------------------------------------------------------------------- argument checks


def _number(op: str, name: str, value, ok, wanted: str) -> float:
    """`value` as a float if it is a finite real number with ok(value); else raise saying `wanted`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{op}: {name} must be {wanted}, got {value!r}")
    if not (math.isfinite(value) and ok(value)):
        raise ValueError(f"{op}: {name} must be {wanted}, got {value!r}")
    return float(value)


def _positive(op: str, name: str, value) -> float:
    return _number(op, name, value, lambda v: v > 0, "a positive number")


def _non_negative(op: str, name: str, value) -> float:
    return _number(op, name, value, lambda v: v >= 0, "a number >= 0")


def _fraction(op: str, name: str, value) -> float:
    return _number(op, name, value, lambda v: 0 <= v < 1, "a number in [0, 1)")


def _check_param(op: str, i: int, p) -> None:
    """Check that params[i] has .data (float array), .grad (array of the same shape), .name, .decay."""
    missing = [a for a in ("data", "grad", "name", "decay") if not hasattr(p, a)]
    if missing:
        raise TypeError(
            f"{op}: params[{i}] ({type(p).__name__}) has no .{', .'.join(missing)}; a parameter "
            "needs .data, .grad, .name and .decay"
        )
    if not isinstance(p.data, np.ndarray) or p.data.dtype not in FLOAT_DTYPES:
        kind = p.data.dtype if isinstance(p.data, np.ndarray) else type(p.data).__name__
        raise TypeError(
            f"{op}: parameter {p.name!r} has data of {kind}; it must be a float32 or float64 array"
        )
    _check_grad(op, p)


def _check_grad(op: str, p) -> None:
    if not isinstance(p.grad, np.ndarray):
        raise TypeError(
            f"{op}: parameter {p.name!r} has grad of type {type(p.grad).__name__}; it must be an "
            f"array of shape {p.data.shape}"
        )
    if p.grad.shape != p.data.shape:
        raise ValueError(
            f"{op}: parameter {p.name!r} has grad of shape {p.grad.shape} but data of shape "
            f"{p.data.shape}; they must match"
        )


def _params(op: str, params: Iterable[ParamLike]) -> list[ParamLike]:
    """The parameters as a checked, non-empty list in which no array appears twice."""
    params = list(params)
    if not params:
        raise ValueError(f"{op}: params is empty; pass the model's parameters")
    seen: dict[int, str] = {}
    for i, p in enumerate(params):
        _check_param(op, i, p)
        if id(p.data) in seen:
            raise ValueError(
                f"{op}: parameter {p.name!r} shares its data with {seen[id(p.data)]!r}; "
                "list each parameter once or it is updated twice per step"
            )
        seen[id(p.data)] = p.name
    return params


def _check_keys(op: str, state: Mapping, expected: Iterable[str]) -> None:
    expected = set(expected)
    missing, unexpected = expected - set(state), set(state) - expected
    if missing or unexpected:
        raise ValueError(
            f"{op}: state does not match: missing keys {sorted(missing)}, "
            f"unexpected keys {sorted(unexpected)}"
        )


def _scalar_state(obj, spec: Mapping[str, type]) -> dict:
    return {key: getattr(obj, key) for key in spec}


def _load_scalar_state(op: str, obj, spec: Mapping[str, type], state: Mapping) -> None:
    """Set obj's attributes from `state`, converting each with its type in `spec`.

    0-d arrays (what np.savez / np.load make of numbers) convert like the numbers themselves.
    """
    _check_keys(op, state, spec)
    for key, kind in spec.items():
        setattr(obj, key, kind(state[key]))


def _repr(obj) -> str:
    args = ", ".join(f"{k}={v!r}" for k, v in obj.config().items() if k != "name")
    return f"{type(obj).__name__}({args})"


# --------------------------------------------------------------------------- optimisers


class Optimizer(ABC):
    """Base of the optimisers: the parameters, the learning rate and the weight penalties.

    params: parameters with .data, .grad, .name, .decay (see `ParamLike`).
    lr: learning rate (step size per update); schedules change `lr` between epochs and the
    constructor's value stays in `config()`. weight_decay: L2 coefficient; l1: L1 coefficient,
    both applied only to parameters with decay=True.
    `t` counts the steps taken. Per-parameter buffers live in `buffers[name][i]` (same shape and
    dtype as params[i].data).
    """

    def __init__(
        self, params: Iterable[ParamLike], lr: float, weight_decay: float = 0.0, l1: float = 0.0
    ):
        op = type(self).__name__
        self.params = _params(op, params)
        self.lr = _positive(op, "lr", lr)
        self.initial_lr = self.lr
        self.weight_decay = _non_negative(op, "weight_decay", weight_decay)
        self.l1 = _non_negative(op, "l1", l1)
        self.t = 0
        self.buffers: dict[str, list[np.ndarray]] = {}

    def step(self) -> None:
        """Update every parameter's .data in place from its .grad (one descent step).

        All gradients are checked before any parameter changes, so a bad one leaves the model as
        it was.
        """
        grads = [self._gradient(p) for p in self.params]
        self.t += 1
        for i, (p, g) in enumerate(zip(self.params, grads, strict=True)):
            self._update(i, p.data, g)

    def zero_grad(self) -> None:
        """Set every parameter's .grad to 0, in place."""
        for p in self.params:
            p.grad.fill(0)

    def _gradient(self, p: ParamLike) -> np.ndarray:
        """g_total = grad + weight_decay * w + l1 * sign(w) (penalties only if p.decay), in w's dtype.

        May be p.grad itself: `_update` must not change it in place.
        """
        _check_grad(f"{type(self).__name__}.step", p)
        w = p.data
        g = p.grad.astype(w.dtype, copy=False)
        if p.decay and self.weight_decay:
            g = g + self.weight_decay * w
        if p.decay and self.l1:
            g = g + self.l1 * np.sign(w)
        return g

    @abstractmethod
    def _update(self, i: int, w: np.ndarray, g: np.ndarray) -> None:
        """Update params[i]'s data `w` in place given its total gradient `g` (same shape)."""

    @abstractmethod
    def config(self) -> dict:
        """Name and constructor arguments, JSON-serialisable: `make_optimizer(params, **config())`."""

    def _buffer_items(self) -> dict[str, np.ndarray]:
        return {
            f"{name}.{i}": a for name, arrays in self.buffers.items() for i, a in enumerate(arrays)
        }

    def state_dict(self) -> dict:
        """What changes while training: {"lr": float, "t": int, "<buffer>.<i>": array copy, ...}.

        Plain numbers and arrays, so `np.savez(file, **opt.state_dict())` can store it.
        """
        state = {"lr": self.lr, "t": self.t}
        state.update({key: a.copy() for key, a in self._buffer_items().items()})
        return state

    def load_state_dict(self, state: Mapping) -> None:
        """Restore what `state_dict` returned (or np.load of it), for the same parameter shapes."""
        op = f"{type(self).__name__}.load_state_dict"
        buffers = self._buffer_items()
        _check_keys(op, state, ["lr", "t", *buffers])
        for key, a in buffers.items():
            src = np.asarray(state[key])
            if src.shape != a.shape:
                raise ValueError(f"{op}: {key} has shape {src.shape}, expected {a.shape}")
        for key, a in buffers.items():
            a[...] = state[key]
        self.lr = _non_negative(op, "lr", float(state["lr"]))
        self.t = integer(op, "t", int(state["t"]), 0)

    def __repr__(self) -> str:
        return _repr(self)


class SGD(Optimizer):
    """Stochastic gradient descent, optionally with (Nesterov) momentum.

    params: see `ParamLike`. lr: learning rate (> 0). momentum: in [0, 1); 0 is plain SGD.
    nesterov: Nesterov momentum (needs momentum > 0). weight_decay, l1: >= 0, on decay params.
    Updates (g = g_total, see the module docstring), with velocity v (shape of w) starting at 0:
      plain:    w <- w - lr * g
      momentum: v <- momentum * v - lr * g;  w <- w + v
      nesterov: v_prev = v;  v <- momentum * v - lr * g;  w <- w - momentum * v_prev + (1 + momentum) * v
    """

    def __init__(
        self,
        params: Iterable[ParamLike],
        lr: float,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        l1: float = 0.0,
    ):
        super().__init__(params, lr, weight_decay, l1)
        self.momentum = _fraction("SGD", "momentum", momentum)
        if not isinstance(nesterov, bool):
            raise TypeError(f"SGD: nesterov must be True or False, got {nesterov!r}")
        if nesterov and self.momentum == 0:
            raise ValueError("SGD: nesterov=True needs momentum > 0, got momentum=0")
        self.nesterov = nesterov
        if self.momentum:
            self.buffers["velocity"] = [np.zeros_like(p.data) for p in self.params]

    def _update(self, i: int, w: np.ndarray, g: np.ndarray) -> None:
        if not self.momentum:
            w -= self.lr * g
            return
        v = self.buffers["velocity"][i]
        v_prev = v.copy() if self.nesterov else None
        v *= self.momentum
        v -= self.lr * g
        if self.nesterov:
            w += (1 + self.momentum) * v - self.momentum * v_prev
        else:
            w += v

    def config(self) -> dict:
        """{"name": "sgd" | "momentum" | "nesterov", "lr", "momentum", "nesterov", "weight_decay", "l1"}."""
        name = "nesterov" if self.nesterov else "momentum" if self.momentum else "sgd"
        return {
            "name": name,
            "lr": self.initial_lr,
            "momentum": self.momentum,
            "nesterov": self.nesterov,
            "weight_decay": self.weight_decay,
            "l1": self.l1,
        }


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with bias correction and classic L2 (not AdamW).

    params: see `ParamLike`. lr: step size (> 0). betas: (beta1, beta2), decay rates of the first-
    and second-moment averages, each in [0, 1). eps: > 0, added to sqrt(v_hat) for stability.
    weight_decay, l1: >= 0, added to the gradient of decay params (so they are rescaled by the
    moment estimates like the loss gradient; AdamW would instead subtract lr * wd * w directly).
    At step t, with m and v (shape of w) starting at 0:
      m <- beta1 * m + (1 - beta1) * g;  v <- beta2 * v + (1 - beta2) * g**2
      w <- w - lr * m_hat / (sqrt(v_hat) + eps),  m_hat = m / (1 - beta1**t), v_hat = v / (1 - beta2**t)
    """

    def __init__(
        self,
        params: Iterable[ParamLike],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        l1: float = 0.0,
    ):
        super().__init__(params, lr, weight_decay, l1)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"Adam: betas must be a pair (beta1, beta2), got {betas!r}")
        self.betas = (
            _fraction("Adam", "betas[0]", betas[0]),
            _fraction("Adam", "betas[1]", betas[1]),
        )
        self.eps = _positive("Adam", "eps", eps)
        self.buffers["m"] = [np.zeros_like(p.data) for p in self.params]
        self.buffers["v"] = [np.zeros_like(p.data) for p in self.params]

    def _update(self, i: int, w: np.ndarray, g: np.ndarray) -> None:
        beta1, beta2 = self.betas
        m, v = self.buffers["m"][i], self.buffers["v"][i]
        m *= beta1
        m += (1 - beta1) * g
        v *= beta2
        v += (1 - beta2) * np.square(g)
        m_hat = m / (1 - beta1**self.t)
        v_hat = v / (1 - beta2**self.t)
        w -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)

    def config(self) -> dict:
        """{"name": "adam", "lr", "betas": [beta1, beta2], "eps", "weight_decay", "l1"}."""
        return {
            "name": "adam",
            "lr": self.initial_lr,
            "betas": list(self.betas),
            "eps": self.eps,
            "weight_decay": self.weight_decay,
            "l1": self.l1,
        }


# --------------------------------------------------------------------------- penalties


def l2_penalty(params: Iterable[ParamLike], weight_decay: float) -> float:
    """0.5 * weight_decay * sum(w**2) over the parameters with decay=True.

    Its gradient, weight_decay * w, is the term the optimisers add; add this to the data loss to
    report the objective being minimised. Summed in float64.
    """
    wd = _non_negative("l2_penalty", "weight_decay", weight_decay)
    total = sum(float(np.sum(np.square(p.data, dtype=np.float64))) for p in params if p.decay)
    return 0.5 * wd * total


def l1_penalty(params: Iterable[ParamLike], l1: float) -> float:
    """l1 * sum(|w|) over the parameters with decay=True.

    Its (sub)gradient, l1 * sign(w), is the term the optimisers add; add this to the data loss to
    report the objective being minimised. Summed in float64.
    """
    coef = _non_negative("l1_penalty", "l1", l1)
    return coef * sum(float(np.sum(np.abs(p.data), dtype=np.float64)) for p in params if p.decay)


# --------------------------------------------------------------------------- schedules


class Schedule(ABC):
    """Base of the learning-rate schedules: `step(val_loss)` once per epoch sets `optimizer.lr`.

    optimizer: anything with a float attribute `lr`. Subclasses list their state in `_state`
    (attribute name -> type) for `state_dict` / `load_state_dict`.
    """

    _state: dict[str, type] = {}

    def __init__(self, optimizer: Optimizer):
        self.optimizer = optimizer
        _positive(type(self).__name__, "optimizer.lr", getattr(optimizer, "lr", None))

    @abstractmethod
    def step(self, val_loss: float | None = None) -> None:
        """End one epoch: update optimizer.lr (given the epoch's validation loss)."""

    @abstractmethod
    def config(self) -> dict:
        """Name and arguments, JSON-serialisable: `make_schedule(optimizer, **config())`."""

    def state_dict(self) -> dict:
        """The schedule's progress as plain numbers (the lr itself is in the optimiser's state)."""
        return _scalar_state(self, self._state)

    def load_state_dict(self, state: Mapping) -> None:
        """Restore what `state_dict` returned."""
        _load_scalar_state(f"{type(self).__name__}.load_state_dict", self, self._state, state)

    def __repr__(self) -> str:
        return _repr(self)


class _EpochSchedule(Schedule):
    """A schedule that is a function of the epoch: lr = lr_at(epoch), from the lr it started with."""

    _state = {"base_lr": float, "epoch": int}

    def __init__(self, optimizer: Optimizer):
        super().__init__(optimizer)
        self.base_lr = float(optimizer.lr)
        self.epoch = 0

    def step(self, val_loss: float | None = None) -> None:
        """End one epoch: epoch += 1 and optimizer.lr = lr_at(epoch). val_loss is not used."""
        self.epoch += 1
        self.optimizer.lr = self.lr_at(self.epoch)

    @abstractmethod
    def lr_at(self, epoch: int) -> float:
        """The learning rate for `epoch` (0 = before the first step)."""


class StepLR(_EpochSchedule):
    """Multiply the learning rate by `gamma` every `step_size` epochs.

    lr_at(epoch) = lr0 * gamma ** (epoch // step_size), lr0 = optimizer.lr at construction.
    step_size: int >= 1 (epochs); gamma: in (0, 1].
    """

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1):
        super().__init__(optimizer)
        self.step_size = integer("StepLR", "step_size", step_size, 1)
        self.gamma = _number("StepLR", "gamma", gamma, lambda g: 0 < g <= 1, "a number in (0, 1]")

    def lr_at(self, epoch: int) -> float:
        return self.base_lr * self.gamma ** (epoch // self.step_size)

    def config(self) -> dict:
        """{"name": "step", "step_size", "gamma"}."""
        return {"name": "step", "step_size": self.step_size, "gamma": self.gamma}


class CosineAnnealingLR(_EpochSchedule):
    """Cosine decay from lr0 (optimizer.lr at construction) to eta_min over t_max epochs.

    lr_at(t) = eta_min + (lr0 - eta_min) * (1 + cos(pi * t / t_max)) / 2 for t <= t_max, and
    eta_min after that. t_max: int >= 1 (epochs); eta_min: in [0, lr0].
    """

    def __init__(self, optimizer: Optimizer, t_max: int, eta_min: float = 0.0):
        super().__init__(optimizer)
        self.t_max = integer("CosineAnnealingLR", "t_max", t_max, 1)
        self.eta_min = _non_negative("CosineAnnealingLR", "eta_min", eta_min)
        if self.eta_min > self.base_lr:
            raise ValueError(
                f"CosineAnnealingLR: eta_min={eta_min!r} is above the optimiser's lr "
                f"{self.base_lr!r}; the schedule decays from lr to eta_min"
            )

    def lr_at(self, epoch: int) -> float:
        t = min(epoch, self.t_max)
        return (
            self.eta_min
            + (self.base_lr - self.eta_min) * (1 + math.cos(math.pi * t / self.t_max)) / 2
        )

    def config(self) -> dict:
        """{"name": "cosine", "t_max", "eta_min"}."""
        return {"name": "cosine", "t_max": self.t_max, "eta_min": self.eta_min}


class ReduceLROnPlateau(Schedule):
    """Multiply the lr by `factor` when the validation loss stops improving.

    An epoch improves if val_loss < best * (1 - threshold). After more than `patience` epochs in a
    row without improvement, lr <- max(lr * factor, min_lr) and the count restarts. This is
    PyTorch's ReduceLROnPlateau with mode="min", threshold_mode="rel", cooldown=0.
    factor: in (0, 1); patience: int >= 0 (epochs); threshold: in [0, 1); min_lr: >= 0.
    """

    _state = {"best": float, "bad_epochs": int}

    def __init__(
        self,
        optimizer: Optimizer,
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        min_lr: float = 0.0,
    ):
        super().__init__(optimizer)
        op = "ReduceLROnPlateau"
        self.factor = _number(op, "factor", factor, lambda f: 0 < f < 1, "a number in (0, 1)")
        self.patience = integer(op, "patience", patience, 0)
        self.threshold = _fraction(op, "threshold", threshold)
        self.min_lr = _non_negative(op, "min_lr", min_lr)
        self.best = math.inf
        self.bad_epochs = 0

    def step(self, val_loss: float | None = None) -> None:
        """End one epoch with validation loss `val_loss` (required); maybe lower optimizer.lr."""
        if val_loss is None:
            raise TypeError(
                "ReduceLROnPlateau.step: pass the epoch's validation loss, step(val_loss)"
            )
        loss = float(val_loss)
        if loss < self.best * (1 - self.threshold):
            self.best, self.bad_epochs = loss, 0
        else:
            self.bad_epochs += 1
        if self.bad_epochs > self.patience:
            self.optimizer.lr = min(
                self.optimizer.lr, max(self.optimizer.lr * self.factor, self.min_lr)
            )
            self.bad_epochs = 0

    def config(self) -> dict:
        """{"name": "plateau", "factor", "patience", "threshold", "min_lr"}."""
        return {
            "name": "plateau",
            "factor": self.factor,
            "patience": self.patience,
            "threshold": self.threshold,
            "min_lr": self.min_lr,
        }


# --------------------------------------------------------------------------- early stopping


class EarlyStopping:
    """Say when to stop training: after `patience` epochs in a row without improvement.

    An epoch improves if val_loss < best - min_delta. patience: int >= 1 (epochs); min_delta: >= 0,
    in loss units. `best` is the lowest loss seen (inf before any), `best_epoch` its 0-based epoch
    (-1 before any), `epochs` the number of losses seen, `bad_epochs` the current run without
    improvement.
    """

    _state = {"best": float, "best_epoch": int, "epochs": int, "bad_epochs": int}

    def __init__(self, patience: int = 5, min_delta: float = 0.0):
        self.patience = integer("EarlyStopping", "patience", patience, 1)
        self.min_delta = _non_negative("EarlyStopping", "min_delta", min_delta)
        self.best = math.inf
        self.best_epoch = -1
        self.epochs = 0
        self.bad_epochs = 0

    def step(self, val_loss: float) -> bool:
        """Record one epoch's validation loss; return True if training should stop now."""
        loss = float(val_loss)
        if loss < self.best - self.min_delta:
            self.best, self.best_epoch, self.bad_epochs = loss, self.epochs, 0
        else:
            self.bad_epochs += 1
        self.epochs += 1
        return self.should_stop

    @property
    def should_stop(self) -> bool:
        """True once `patience` epochs in a row have passed without improvement."""
        return self.bad_epochs >= self.patience

    def config(self) -> dict:
        """{"patience", "min_delta"}: the constructor's arguments."""
        return {"patience": self.patience, "min_delta": self.min_delta}

    def state_dict(self) -> dict:
        """{"best", "best_epoch", "epochs", "bad_epochs"} as plain numbers."""
        return _scalar_state(self, self._state)

    def load_state_dict(self, state: Mapping) -> None:
        """Restore what `state_dict` returned."""
        _load_scalar_state("EarlyStopping.load_state_dict", self, self._state, state)


# --------------------------------------------------------------------------- factories

_OPTIMIZERS: dict[str, tuple[type[Optimizer], dict]] = {
    "sgd": (SGD, {}),
    "momentum": (SGD, {"momentum": 0.9}),
    "nesterov": (SGD, {"momentum": 0.9, "nesterov": True}),
    "adam": (Adam, {}),
}

_SCHEDULES: dict[str, type[Schedule]] = {
    "step": StepLR,
    "cosine": CosineAnnealingLR,
    "plateau": ReduceLROnPlateau,
}


def make_optimizer(params: Iterable[ParamLike], name: str, **kwargs) -> Optimizer:
    """Build an optimiser by name; `make_optimizer(params, **opt.config())` rebuilds `opt`.

    name: "sgd" (SGD with the given arguments), "momentum" (SGD, momentum 0.9 unless given),
    "nesterov" (SGD, nesterov=True, momentum 0.9 unless given) or "adam".
    kwargs: the constructor's arguments (lr is required for the SGD family).
    """
    if name not in _OPTIMIZERS:
        raise ValueError(
            f"make_optimizer: unknown optimiser {name!r}; choose one of {list(_OPTIMIZERS)}"
        )
    cls, defaults = _OPTIMIZERS[name]
    opt = cls(params, **{**defaults, **kwargs})
    built = opt.config()["name"]
    if name != "sgd" and built != name:
        raise ValueError(
            f"make_optimizer: name {name!r} contradicts {kwargs}, which describe {built!r}"
        )
    return opt


def make_schedule(optimizer: Optimizer, name: str | None, **kwargs) -> Schedule | None:
    """Build a schedule by name; `make_schedule(optimizer, **schedule.config())` rebuilds it.

    name: "step" (StepLR), "cosine" (CosineAnnealingLR), "plateau" (ReduceLROnPlateau), or None
    for a constant learning rate (returns None). kwargs: the constructor's arguments.
    """
    if name is None:
        if kwargs:
            raise ValueError(
                f"make_schedule: no schedule (name=None) takes no arguments, got {kwargs}"
            )
        return None
    if name not in _SCHEDULES:
        raise ValueError(
            f"make_schedule: unknown schedule {name!r}; choose one of {list(_SCHEDULES)} or None"
        )
    return _SCHEDULES[name](optimizer, **kwargs)
