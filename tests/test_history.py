"""history.json: schema, agreement checks, save/load, and the plots drawn from it."""

from __future__ import annotations

import copy
import json
import re

import numpy as np
import pytest
from matplotlib.figure import Figure

from cnn_core.history import History, HistoryError, load_runs, save_runs, validate
from cnn_core.plot import plot_histories, plot_history, smooth


def make_history(epochs: int = 3, per_epoch: int = 5) -> History:
    """A consistent hand-made history: loss falling, accuracy rising."""
    n = epochs * per_epoch
    config = {
        "seed": 3,
        "architecture": {"name": "lenet", "summary": "...", "n_params": 1234},
        "optimizer": {"name": "sgd", "lr": 0.1},
        "schedule": None,
        "batch_size": 8,
        "epochs": epochs,
        "augmentation": {},
        "normalization": {"mean": [0.3], "std": [0.2]},
        "dataset": {
            "name": "fashion-mnist-subset",
            "source": "built-in",
            "n_train": 40,
            "n_val": 10,
        },
        "dtype": "float32",
        "eval_every": per_epoch,
    }
    return History(
        config=config,
        train_loss=list(np.linspace(2.3, 0.5, n)),
        epoch_end_iteration=[per_epoch * (e + 1) for e in range(epochs)],
        train_accuracy=[0.3 + 0.2 * e for e in range(epochs)],
        lr=[0.1] * epochs,
        wall_time=[1.0 * (e + 1) for e in range(epochs)],
        val_iteration=[per_epoch * (e + 1) for e in range(epochs)],
        val_loss=[2.0 - 0.5 * e for e in range(epochs)],
        val_accuracy=[0.35 + 0.2 * e for e in range(epochs)],
    )


def test_round_trip(tmp_path):
    h = make_history()
    path = h.save(tmp_path / "history.json")
    loaded = History.load(path)
    assert loaded == h
    assert json.loads(path.read_text())["format"] == "cnnkit-history"


def test_save_refuses_to_overwrite(tmp_path):
    path = tmp_path / "history.json"
    path.write_text("mine")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        make_history().save(path)
    assert path.read_text() == "mine"
    make_history().save(path, overwrite=True)
    assert History.load(path) == make_history()


@pytest.mark.parametrize(
    "mutate,field",
    [
        (lambda d: d.pop("train_loss"), "train_loss"),
        (lambda d: d.update(version=2), "version"),
        (lambda d: d["val"].update(loss="low"), "val.loss"),
        (lambda d: d["epochs"]["train_accuracy"].__setitem__(1, 1.5), "epochs.train_accuracy.1"),
        (lambda d: d["config"].pop("seed"), "config.seed"),
        (lambda d: d["config"].update(batch_size=0), "config.batch_size"),
        (lambda d: d["epochs"]["lr"].append(0.1), "epochs.lr"),
        (lambda d: d["val"]["iteration"].reverse(), "val.iteration"),
        (lambda d: d["epochs"]["end_iteration"].__setitem__(-1, 99), "epochs.end_iteration"),
        (lambda d: d["train_loss"].__setitem__(0, float("inf")), "train_loss"),
        (lambda d: d.update(extra=1), "(top level)"),
    ],
)
def test_malformed_documents_name_the_field(mutate, field):
    doc = make_history().to_dict()
    bad = copy.deepcopy(doc)
    mutate(bad)
    with pytest.raises(HistoryError, match=re.escape(field)):
        validate(bad, "history.json")
    validate(doc)  # the untouched document passes


def test_error_message_names_nested_field():
    doc = make_history().to_dict()
    doc["val"]["loss"] = "low"
    with pytest.raises(HistoryError, match=r"history.json: field 'val.loss'"):
        validate(doc, "history.json")


def test_load_rejects_non_json(tmp_path):
    path = tmp_path / "history.json"
    path.write_text("{not json")
    with pytest.raises(HistoryError, match="not valid JSON"):
        History.load(path)
    path.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(HistoryError):
        History.load(path)


def test_runs_round_trip_in_order(tmp_path):
    runs = {"lr 0.1": make_history(), "lr 0.01": make_history(epochs=2)}
    path = save_runs(runs, tmp_path / "runs.json")
    loaded = load_runs(path)
    assert list(loaded) == ["lr 0.1", "lr 0.01"]
    assert all(loaded[k].to_dict() == runs[k].to_dict() for k in runs)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_runs(runs, path)
    save_runs({"one": make_history()}, path, overwrite=True)
    assert list(load_runs(path)) == ["one"]


@pytest.mark.parametrize(
    ("runs", "message"),
    [
        ({}, "non-empty dict"),
        ([make_history()], "non-empty dict"),
        ({"": make_history()}, "label '' is not a non-empty string"),
        ({"a": {"train_loss": []}}, "run 'a' is a dict, not the History fit returns"),
    ],
)
def test_save_runs_refuses_what_is_not_runs(tmp_path, runs, message):
    with pytest.raises(HistoryError, match=re.escape(message)):
        save_runs(runs, tmp_path / "runs.json")
    assert not (tmp_path / "runs.json").exists()


def test_load_runs_names_the_run_and_field(tmp_path):
    path = save_runs({"good": make_history(), "bad": make_history()}, tmp_path / "runs.json")
    doc = json.loads(path.read_text())
    del doc["runs"]["bad"]["train_loss"]
    path.write_text(json.dumps(doc))
    with pytest.raises(HistoryError, match=r"run 'bad'.*'train_loss' is missing"):
        load_runs(path)
    make_history().save(tmp_path / "one.json")
    with pytest.raises(HistoryError, match="not a runs file"):
        load_runs(tmp_path / "one.json")


def test_epoch_of_interpolates():
    h = make_history(epochs=2, per_epoch=4)
    assert h.epoch_of(2) == 0.5 and h.epoch_of(4) == 1.0 and h.epoch_of(6) == 1.5


def test_smooth_is_a_trailing_mean():
    np.testing.assert_allclose(smooth([1, 2, 3, 4], 2), [1, 1.5, 2.5, 3.5])
    np.testing.assert_allclose(smooth([5, 7], 1), [5, 7])


def test_plot_history_draws_labelled_curves(tmp_path):
    h = make_history()
    fig = plot_history(h, smoothing=3)
    assert isinstance(fig, Figure)
    loss_ax, acc_ax = fig.axes
    assert loss_ax.get_xlabel() == "iteration" and "loss" in loss_ax.get_ylabel()
    assert acc_ax.get_xlabel() == "epoch" and acc_ax.get_ylabel() == "accuracy"
    train_raw = loss_ax.lines[0]
    np.testing.assert_allclose(train_raw.get_ydata(), h.train_loss)
    val = loss_ax.lines[2]
    assert list(val.get_xdata()) == h.val_iteration and list(val.get_ydata()) == h.val_loss
    fig.savefig(tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 1000


def test_plot_histories_overlays_runs():
    fig = plot_histories({"sgd": make_history(), "adam": make_history(epochs=2)})
    loss_ax, acc_ax = fig.axes
    labels = [t.get_text() for t in loss_ax.get_legend().get_texts()]
    assert any(label.startswith("sgd") for label in labels)
    assert any(label.startswith("adam") for label in labels)
    assert len(acc_ax.lines) == 4
    with pytest.raises(ValueError, match="no histories"):
        plot_histories([])
