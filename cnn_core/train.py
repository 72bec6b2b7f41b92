"""Training: `fit` runs mini-batch training of a `cnn_core.nn` model and returns its `History`.

One seed fixes everything `fit` draws (the validation split, the batch order, the augmentations),
so the same seed, code and data give the same losses, bit for bit, on the same machine. The
model's own randomness (its initial weights, its dropout masks) comes from the Generator it was
built with.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from cnn_core import _threads
from cnn_core._args import integer
from cnn_core.data import Augmentation, Dataset, Normalizer, batches, num_batches, train_val_split
from cnn_core.functional import softmax_cross_entropy
from cnn_core.history import History
from cnn_core.optim import EarlyStopping, Optimizer, Schedule

# Set by the grader only: fit stops after this many iterations, records its configuration as
# given and skips the test set, so that the start of a submitted run can be replayed quickly.
REPLAY_ENV = "CNNKIT_REPLAY_ITERATIONS"
EVAL_BATCH = 500  # images per forward pass when evaluating; bounds the memory used


def evaluate(
    model, x: np.ndarray, y: np.ndarray, batch_size: int = EVAL_BATCH
) -> tuple[float, float]:
    """Mean cross-entropy loss and accuracy (fraction) of `model` in eval mode on x (N, C, H, W),
    already normalised, and labels y (N,). The model's train/eval mode is restored afterwards."""
    was_training = model.training
    model.eval()
    total_loss, correct = 0.0, 0
    try:
        for start in range(0, len(y), batch_size):
            xb, yb = x[start : start + batch_size], y[start : start + batch_size]
            scores = model(xb)
            loss, _ = softmax_cross_entropy(scores, yb)
            total_loss += loss * len(yb)
            correct += int(np.sum(scores.argmax(axis=1) == yb))
    finally:
        model.train(was_training)
    return total_loss / len(y), correct / len(y)


@dataclass
class _Prepared:
    """The splits of a data set, scaled to [0, 1] (train) or normalised (validation, test)."""

    x_train: np.ndarray  # (N, C, H, W) in [0, 1]: augmented per batch, then normalised
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    normalizer: Normalizer


def _scaled(x: np.ndarray, dtype) -> np.ndarray:
    """Images as `dtype` in [0, 1] (uint8 pixels are divided by 255)."""
    out = x.astype(dtype)
    if x.dtype == np.uint8:
        out /= 255
    return out


def _prepare(data: Dataset, val_fraction: float, seed: int, dtype, with_test: bool) -> _Prepared:
    x_tr, y_tr, x_val, y_val = train_val_split(data.x_train, data.y_train, val_fraction, rng=seed)
    norm = Normalizer.fit(x_tr)
    test = (norm(data.x_test).astype(dtype), data.y_test) if with_test else (None, None)
    return _Prepared(_scaled(x_tr, dtype), y_tr, norm(x_val).astype(dtype), y_val, *test, norm)


def _config(
    model, architecture, data, prep, optimizer, schedule, early_stopping, augmentation
) -> dict:
    """The full configuration recorded in the history: enough to run the training again."""
    return {
        "architecture": {
            "name": architecture,
            "summary": str(model.summary(prep.x_train.shape[1:])),
            "n_params": int(model.n_params()),
        },
        "optimizer": optimizer.config(),
        "schedule": None if schedule is None else schedule.config(),
        "early_stopping": None if early_stopping is None else early_stopping.config(),
        "augmentation": augmentation.to_dict(),
        "normalization": prep.normalizer.to_dict(),
        "dataset": {
            "name": data.name,
            "source": data.source,
            "n_train": len(prep.y_train),
            "n_val": len(prep.y_val),
            "n_test": 0 if prep.y_test is None else len(prep.y_test),
        },
    }


def _model_dtype(model) -> np.dtype:
    dtypes = {p.data.dtype for p in model.parameters()}
    if len(dtypes) != 1:
        raise TypeError(f"fit: the model's parameters mix dtypes {sorted(map(str, dtypes))}")
    return dtypes.pop()


def fit(
    model,
    data: Dataset,
    optimizer: Optimizer,
    *,
    epochs: int = 5,
    batch_size: int = 64,
    schedule: Schedule | None = None,
    early_stopping: EarlyStopping | None = None,
    augmentation: Augmentation | None = None,
    val_fraction: float = 0.1,
    eval_every: int | None = None,
    seed: int = 0,
    max_iterations: int | None = None,
    architecture: str | None = None,
    evaluate_test: bool = True,
    progress: bool = True,
) -> History:
    """Train `model` on `data` with softmax cross-entropy and return the History.

    model: a `cnn_core.nn` module mapping images (N, C, H, W) to class scores (N, K).
    data: a Dataset; `val_fraction` of its training images (stratified) become the validation
        split, and per-channel normalisation statistics come from the rest only.
    optimizer: built on model.parameters(); schedule (stepped once per epoch with the validation
        loss) and early_stopping (checked once per epoch) are optional.
    augmentation: applied to each training batch in [0, 1] intensity units, before normalisation.
    eval_every: iterations between validation evaluations (default: one epoch); the validation
        set is also evaluated at the end of every epoch and of training.
    seed: fixes the validation split, the batch order and the augmentation draws.
    max_iterations: stop after this many optimiser steps (the last epoch is then partial).
    architecture: a name for the model, recorded in the history's configuration.
    When $CNNKIT_REPLAY_ITERATIONS is set (the grader replaying the start of a submitted run),
    training stops after that many iterations and the test set is not evaluated.
    The recorded training loss is the mini-batch data loss (no penalty terms); train accuracy is
    measured on the training batches as they were seen, in train mode.
    """
    for name, value, minimum in (
        ("epochs", epochs, 1),
        ("batch_size", batch_size, 1),
        ("seed", seed, 0),
    ):
        integer("fit", name, value, minimum)
    for name, value in (("eval_every", eval_every), ("max_iterations", max_iterations)):
        if value is not None:
            integer("fit", name, value)
    dtype = _model_dtype(model)
    augmentation = augmentation or Augmentation()
    prep = _prepare(data, val_fraction, seed, dtype, evaluate_test)
    per_epoch = num_batches(len(prep.y_train), batch_size)
    eval_every = eval_every or per_epoch
    settings = {
        "seed": seed,
        "batch_size": batch_size,
        "epochs": epochs,
        "max_iterations": max_iterations,
        "eval_every": eval_every,
        "val_fraction": val_fraction,
        "evaluate_test": evaluate_test,
        "dtype": np.dtype(dtype).name,
    }
    parts = (optimizer, schedule, early_stopping, augmentation)
    history = History(_config(model, architecture, data, prep, *parts) | settings)
    shuffle_rng, augment_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2)
    )
    replay = _replay_iterations()
    last = max_iterations or epochs * per_epoch
    run = _Run(
        model,
        optimizer,
        prep,
        history,
        augmentation,
        augment_rng,
        eval_every,
        last if replay is None else min(last, replay),
    )
    model.train()
    with _threads.blas_held():  # BLAS's own workers would contend with the layers' chunk threads
        for epoch in range(1, epochs + 1):
            order = batches(prep.x_train, prep.y_train, batch_size, rng=shuffle_rng)
            desc = f"epoch {epoch}/{epochs}"
            with tqdm(order, total=per_epoch, desc=desc, disable=not progress, leave=False) as bar:
                run.epoch(bar)
            if run.finished or _end_of_epoch(history, schedule, early_stopping, optimizer):
                break
        if evaluate_test and prep.y_test is not None and replay is None:
            loss, acc = evaluate(model, prep.x_test, prep.y_test)
            history.test = {"loss": loss, "accuracy": acc}
    return history


def _replay_iterations() -> int | None:
    """The grader's replay length from $CNNKIT_REPLAY_ITERATIONS, or None outside a replay."""
    value = os.environ.get(REPLAY_ENV, "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"${REPLAY_ENV} must be a positive integer, got {value!r}")
    return int(value)


def _end_of_epoch(history: History, schedule, early_stopping, optimizer) -> bool:
    """Step the schedule and early stopping on the epoch's validation loss; True to stop."""
    val_loss = history.val_loss[-1]
    if schedule is not None:
        schedule.step(val_loss)
    if early_stopping is not None and early_stopping.step(val_loss):
        history.stopped_early = True
        return True
    return False


class _Run:
    """The state of one training run between epochs: iteration count, clock and records."""

    def __init__(
        self, model, optimizer, prep, history, augmentation, augment_rng, eval_every, last_iteration
    ):
        self.model, self.optimizer, self.prep, self.history = model, optimizer, prep, history
        self.augmentation, self.augment_rng = augmentation, augment_rng
        self.eval_every, self.last_iteration = eval_every, last_iteration
        self.iteration, self.start = 0, time.perf_counter()

    @property
    def finished(self) -> bool:
        return self.iteration >= self.last_iteration

    def epoch(self, bar) -> None:
        """Train on the batches `bar` yields; record the epoch's accuracy, lr and time."""
        lr, seen, correct = self.optimizer.lr, 0, 0
        for xb, yb in bar:
            loss, hits = self.step(xb, yb)
            seen, correct = seen + len(yb), correct + hits
            bar.set_postfix(loss=f"{loss:.3f}", acc=f"{correct / seen:.3f}", refresh=False)
            if self.iteration % self.eval_every == 0:
                self.validate()
            if self.finished:
                break
        if not self.history.val_iteration or self.history.val_iteration[-1] != self.iteration:
            self.validate()
        h = self.history
        h.epoch_end_iteration.append(self.iteration)
        h.train_accuracy.append(correct / seen)
        h.lr.append(lr)
        h.wall_time.append(time.perf_counter() - self.start)

    def step(self, xb: np.ndarray, yb: np.ndarray) -> tuple[float, int]:
        """One optimiser step on a batch of [0, 1] images; returns (loss, correct predictions)."""
        xb = self.prep.normalizer(self.augmentation(xb, self.augment_rng))
        xb = xb.astype(self.prep.x_val.dtype, copy=False)
        self.optimizer.zero_grad()
        scores = self.model(xb)
        loss, dscores = softmax_cross_entropy(scores, yb)
        self.model.backward_params(dscores)  # the images need no gradient
        self.optimizer.step()
        self.iteration += 1
        self.history.train_loss.append(loss)
        return loss, int(np.sum(scores.argmax(axis=1) == yb))

    def validate(self) -> None:
        loss, acc = evaluate(self.model, self.prep.x_val, self.prep.y_val)
        self.history.val_iteration.append(self.iteration)
        self.history.val_loss.append(loss)
        self.history.val_accuracy.append(acc)
