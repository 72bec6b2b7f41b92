"""Training: fit's records, determinism, stopping rules, and the `cnnkit train` command."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from threadpoolctl import ThreadpoolController, threadpool_limits

from autograder.cli import main
from cnn_core import _threads, nn, optim
from cnn_core.data import Augmentation, load_builtin_subset
from cnn_core.history import History
from cnn_core.train import evaluate, fit


@pytest.fixture(scope="module")
def small():
    """The first 800 training and 200 test images of the built-in subset."""
    d = load_builtin_subset()
    return replace(
        d,
        x_train=d.x_train[:800],
        y_train=d.y_train[:800],
        x_test=d.x_test[:200],
        y_test=d.y_test[:200],
    )


def run(data, seed=0, epochs=2, **kwargs):
    model = nn.build("bench_cnn", rng=seed)
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    return fit(
        model,
        data,
        opt,
        epochs=epochs,
        batch_size=32,
        seed=seed,
        progress=False,
        architecture="bench_cnn",
        **kwargs,
    ), model


def test_training_on_the_builtin_subset_learns():
    data = load_builtin_subset()
    model = nn.build("lenet", rng=1)
    opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    h = fit(model, data, opt, epochs=2, progress=False)
    assert np.mean(h.train_loss[-20:]) < 0.5 * np.mean(h.train_loss[:20])
    assert h.val_accuracy[-1] > 0.7 and h.test["accuracy"] > 0.7
    assert h.train_accuracy[1] > h.train_accuracy[0]


def test_records_agree_with_the_run(small):
    h, model = run(small, epochs=3)
    c = h.config
    n_train = c["dataset"]["n_train"]
    assert n_train + c["dataset"]["n_val"] == 800 and abs(c["dataset"]["n_val"] - 80) <= 5
    per_epoch = -(-n_train // 32)
    assert h.iterations == 3 * per_epoch
    assert h.epoch_end_iteration == [per_epoch, 2 * per_epoch, 3 * per_epoch]
    assert h.val_iteration == h.epoch_end_iteration
    assert h.lr == [0.05] * 3 and len(h.wall_time) == 3
    assert c["optimizer"]["name"] == "momentum" and c["seed"] == 0 and c["batch_size"] == 32
    assert c["architecture"]["n_params"] == model.n_params()
    assert "Conv2d" in c["architecture"]["summary"] or "conv" in c["architecture"]["summary"]
    # the last validation point is the model as returned
    data_val_loss = h.val_loss[-1]
    assert np.isfinite(data_val_loss) and 0 <= h.val_accuracy[-1] <= 1
    History.from_dict(json.loads(json.dumps(h.to_dict())))  # valid against the schema


def test_same_seed_same_losses_bit_for_bit(small):
    aug = Augmentation(crop_padding=2, flip=True, jitter=0.1)
    a, _ = run(small, seed=4, augmentation=aug)
    b, _ = run(small, seed=4, augmentation=aug)
    assert a.train_loss == b.train_loss and a.val_loss == b.val_loss
    c, _ = run(small, seed=5, augmentation=aug)
    assert c.train_loss != a.train_loss


def test_training_holds_blas_to_one_thread_and_gives_its_threads_back(small, monkeypatch):
    """BLAS's own workers would contend with the layers' chunk threads: a run keeps BLAS on one
    thread and restores it afterwards, even on an error (`blas_held`, tests/test_threads.py)."""
    controller = ThreadpoolController().select(user_api="blas")
    if not controller.lib_controllers:
        pytest.skip("no BLAS library threadpoolctl can control")
    seen = []
    step = optim.SGD.step

    def recording_step(self):
        seen.append(min(lib.num_threads for lib in controller.lib_controllers))
        if len(seen) > 3:
            raise RuntimeError("a step failed")
        step(self)

    monkeypatch.setattr(optim.SGD, "step", recording_step)
    with threadpool_limits(2, user_api="blas"):
        run(small, epochs=1, max_iterations=3)
        assert seen == [1, 1, 1]
        assert all(lib.num_threads == 2 for lib in controller.lib_controllers)
        with pytest.raises(RuntimeError, match="a step failed"):
            run(small, epochs=1)
        assert all(lib.num_threads == 2 for lib in controller.lib_controllers)
        assert _threads._holder is None


def test_evaluate_matches_a_manual_pass(small):
    h, model = run(small, epochs=1)
    x = (small.x_test.astype(np.float32) / 255 - 0.3) / 0.35
    loss, acc = evaluate(model, x, small.y_test, batch_size=64)
    scores = model.eval()(x)
    assert acc == np.mean(scores.argmax(axis=1) == small.y_test)
    shifted = scores - scores.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    assert loss == pytest.approx(-logp[np.arange(len(x)), small.y_test].mean(), rel=1e-5)


def test_max_iterations_and_eval_every(small):
    h, _ = run(small, epochs=3, max_iterations=30, eval_every=10)
    assert h.iterations == 30
    assert h.epoch_end_iteration == [23, 30]  # a full epoch, then a partial one
    assert h.val_iteration == [10, 20, 23, 30]
    assert h.config["max_iterations"] == 30 and h.config["eval_every"] == 10


def test_schedule_and_early_stopping(small):
    model = nn.build("bench_cnn", rng=0)
    opt = optim.SGD(model.parameters(), lr=0.05)
    schedule = optim.StepLR(opt, step_size=1, gamma=0.5)
    stop = optim.EarlyStopping(patience=1, min_delta=1e9)  # nothing counts as improvement
    h = fit(
        model,
        small,
        opt,
        epochs=5,
        batch_size=64,
        schedule=schedule,
        early_stopping=stop,
        progress=False,
    )
    assert h.stopped_early and h.epochs_done == 2
    assert h.lr == [0.05, 0.025]
    assert h.config["schedule"]["name"] == "step"


def test_bad_arguments_are_named(small):
    model = nn.build("bench_cnn", rng=0)
    opt = optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="batch_size"):
        fit(model, small, opt, batch_size=0, progress=False)
    with pytest.raises(TypeError, match="epochs must be an int"):
        fit(model, small, opt, epochs=1.5, progress=False)
    with pytest.raises(ValueError, match="seed must be at least 0"):
        fit(model, small, opt, seed=-1, progress=False)


def test_cli_train_writes_files_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    args = [
        "train",
        "--arch",
        "bench_cnn",
        "--epochs",
        "1",
        "--out",
        str(out),
        "--quiet",
        "--flip",
        "--schedule",
        "cosine",
    ]
    assert main(args) == 0
    h = History.load(out / "history.json")
    assert (
        h.config["augmentation"]["flip"] is True and h.config["architecture"]["name"] == "bench_cnn"
    )
    assert (out / "curves.png").stat().st_size > 1000
    assert nn.build("bench_cnn").load(out / "model.npz").n_params() > 0
    before = (out / "history.json").read_bytes()
    assert main(args) == 2
    assert "--force" in capsys.readouterr().err
    assert (out / "history.json").read_bytes() == before


def test_cli_train_missing_data_is_a_clear_error(tmp_path, capsys):
    args = [
        "train",
        "--data",
        "fashion-mnist",
        "--data-dir",
        str(tmp_path / "nowhere"),
        "--out",
        str(tmp_path / "run"),
    ]
    assert main(args) == 2
    assert "nowhere" in capsys.readouterr().err
