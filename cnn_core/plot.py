"""Training curves with matplotlib: one run, or several overlaid to compare settings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from cnn_core.history import History


def smooth(values: Sequence[float], window: int) -> np.ndarray:
    """Trailing moving average over up to `window` points (the first points average fewer)."""
    v = np.asarray(values, dtype=np.float64)
    if window <= 1 or v.size == 0:
        return v
    c = np.cumsum(np.insert(v, 0, 0.0))
    idx = np.arange(1, v.size + 1)
    lo = np.maximum(idx - window, 0)
    return (c[idx] - c[lo]) / (idx - lo)


def _new_axes(axes: Sequence[Axes] | None) -> tuple[Figure, Axes, Axes]:
    if axes is None:
        fig = Figure(figsize=(11, 4), layout="constrained")
        loss_ax, acc_ax = fig.subplots(1, 2)
        return fig, loss_ax, acc_ax
    loss_ax, acc_ax = axes
    return loss_ax.figure, loss_ax, acc_ax


def _draw(history: History, loss_ax: Axes, acc_ax: Axes, label: str, color, smoothing: int):
    """Draw one run: training loss (raw, faint, and smoothed), validation loss, accuracies."""
    it = np.arange(1, history.iterations + 1)
    prefix = f"{label}: " if label else ""
    loss_ax.plot(it, history.train_loss, color=color, alpha=0.25, linewidth=0.8)
    loss_ax.plot(
        it,
        smooth(history.train_loss, smoothing),
        color=color,
        label=f"{prefix}train (mean of {smoothing})",
    )
    if history.val_iteration:
        loss_ax.plot(
            history.val_iteration,
            history.val_loss,
            "o--",
            color=color,
            markersize=3,
            label=f"{prefix}validation",
        )
    epochs = np.arange(1, history.epochs_done + 1)
    acc_ax.plot(
        epochs,
        history.train_accuracy,
        "-",
        color=color,
        marker="s",
        markersize=3,
        label=f"{prefix}train",
    )
    if history.val_iteration:
        val_epochs = [history.epoch_of(i) for i in history.val_iteration]
        acc_ax.plot(
            val_epochs,
            history.val_accuracy,
            "o--",
            color=color,
            markersize=3,
            label=f"{prefix}validation",
        )


def _label_axes(loss_ax: Axes, acc_ax: Axes) -> None:
    loss_ax.set(xlabel="iteration", ylabel="loss (cross-entropy)", title="Loss")
    acc_ax.set(xlabel="epoch", ylabel="accuracy", title="Accuracy", ylim=(0, 1))
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")


def plot_history(
    history: History, axes: Sequence[Axes] | None = None, smoothing: int = 20
) -> Figure:
    """Training and validation loss against iterations, and accuracy against epochs.

    axes: two matplotlib Axes to draw into (loss, accuracy); a new Figure when None.
    smoothing: the training loss is also drawn as a moving average over this many iterations.
    Returns the Figure (in a notebook it displays itself; `fig.savefig(path)` writes it).
    """
    fig, loss_ax, acc_ax = _new_axes(axes)
    _draw(history, loss_ax, acc_ax, "", "C0", smoothing)
    _label_axes(loss_ax, acc_ax)
    return fig


def plot_histories(
    histories: Mapping[str, History] | Sequence[History],
    axes: Sequence[Axes] | None = None,
    smoothing: int = 20,
) -> Figure:
    """Overlay several runs to compare settings; `histories` maps a label to each run (a plain
    sequence is labelled run 1, run 2, ...). Returns the Figure."""
    if not isinstance(histories, Mapping):
        histories = {f"run {i + 1}": h for i, h in enumerate(histories)}
    if not histories:
        raise ValueError("plot_histories: no histories given")
    fig, loss_ax, acc_ax = _new_axes(axes)
    for i, (label, history) in enumerate(histories.items()):
        _draw(history, loss_ax, acc_ax, label, f"C{i % 10}", smoothing)
    _label_axes(loss_ax, acc_ax)
    return fig
