"""Grading submitted training curves: the replay that shows a curve (one History or a runs file
of several) is genuine, and the whole a4 class graded through the sandbox."""

from __future__ import annotations

import json

import numpy as np
import pytest

from autograder import grade as grading
from autograder.curves import CurveSpec, genuine, history_export
from autograder.release import release
from autograder.sandbox import Limits
from autograder.synthetic import CURVE_EXPECTED, make_class
from cnn_core import nn, optim
from cnn_core.data import load_dataset
from cnn_core.history import History
from cnn_core.train import REPLAY_ENV, fit

A4 = "a4_train_cnn"
SPEC = CurveSpec(items=("test_history_valid", "test_test_accuracy"))
RUNS = CurveSpec(items=("test_runs",), file="runs.json", variable="runs", runs=True)


def small_run(iterations: int | None = None) -> History:
    data = load_dataset("fashion-mnist-subset")
    rng = np.random.default_rng(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 10, rng=rng))
    opt = optim.SGD(model.parameters(), lr=0.05)
    return fit(
        model,
        data,
        opt,
        epochs=1,
        batch_size=256,
        eval_every=5,
        seed=3,
        max_iterations=iterations,
        progress=False,
    )


@pytest.fixture(scope="module")
def run() -> History:
    return small_run()


def replay_of(history: History, iterations: int) -> dict:
    """What the export of a replay of `history`'s first iterations holds."""
    short = small_run(iterations)
    short.config = history.config  # a replay records the configuration it was given
    return history_export(SPEC)({"history": short})


def copy_of(history: History) -> History:
    return History.from_dict(json.loads(json.dumps(history.to_dict())))


def test_fit_stops_at_the_replay_length_and_keeps_its_configuration(monkeypatch, run):
    monkeypatch.setenv(REPLAY_ENV, "7")
    replay = small_run()
    assert replay.iterations == 7 and replay.test is None
    assert replay.config == run.config
    assert replay.train_loss == run.train_loss[:7]  # bit for bit on one machine
    monkeypatch.setenv(REPLAY_ENV, "-3")
    with pytest.raises(ValueError, match=REPLAY_ENV):
        small_run()


def test_a_genuine_curve_matches_its_replay(run):
    assert genuine(run, replay_of(run, 10), SPEC) == ""


def test_an_edited_loss_is_found(run):
    edited = copy_of(run)
    edited.train_loss[4] *= 0.9
    why = genuine(edited, replay_of(run, 10), SPEC)
    assert (
        "training loss at iteration 5 is" in why and "a replay of the notebook's code gives" in why
    )


def test_rounding_drift_after_the_first_iterations_is_not_fabrication(run):
    """Another machine's rounding grows over the replayed steps: a curve equal to the replay for
    its first iterations and 1% off later is genuine; 10% off later is not."""
    replay = replay_of(run, 30)
    drifted = copy_of(run)
    drifted.train_loss[12:30] = [v * 1.01 for v in run.train_loss[12:30]]
    assert genuine(drifted, replay, SPEC) == ""
    drifted.train_loss[12:30] = [v * 1.1 for v in run.train_loss[12:30]]
    assert "by 10% (median)" in genuine(drifted, replay, SPEC)


def test_a_run_that_diverged_matches_its_replay(run):
    """A learning rate too large turns the loss nan; the replay diverges the same way."""
    diverged = copy_of(run)
    diverged.train_loss[5:] = [float("nan")] * (len(run.train_loss) - 5)
    replay = {k: v.copy() for k, v in replay_of(run, 30).items()}
    replay["0/train_loss"][5:] = np.nan
    assert genuine(diverged, replay, SPEC) == ""
    diverged.train_loss[3] = float("nan")
    assert "iteration 4 is nan" in genuine(diverged, replay, SPEC)


def test_a_changed_configuration_is_found(run):
    edited = copy_of(run)
    edited.config["seed"] = 4
    assert "configuration differs in seed" in genuine(edited, replay_of(run, 10), SPEC)


def test_a_curve_that_cannot_be_replayed_is_not_verified(run):
    assert genuine(run, "raised NameError: name 'history' is not defined", SPEC).startswith(
        "not verified"
    )


def runs_replay_of(runs: dict[str, History], iterations: int) -> dict:
    """What the export of a replay of an experiment's runs holds (each a replay of `run`)."""
    replays = {}
    for label, history in runs.items():
        short = small_run(iterations)
        short.config = history.config
        replays[label] = short
    return history_export(RUNS)({"runs": replays})


def test_genuine_runs_match_their_replay(run):
    runs = {"slow": run, "fast": copy_of(run)}
    assert genuine(runs, runs_replay_of(runs, 10), RUNS) == ""


def test_an_edited_run_is_named(run):
    runs = {"slow": run, "fast": copy_of(run)}
    replay = runs_replay_of(runs, 10)
    runs["fast"].train_loss[2] *= 0.9
    why = genuine(runs, replay, RUNS)
    assert "run 'fast'" in why and "training loss at iteration 3 is" in why


def test_runs_the_notebook_does_not_make_are_found(run):
    replay = runs_replay_of({"slow": run, "fast": run}, 10)
    why = genuine({"slow": run, "fastest": copy_of(run)}, replay, RUNS)
    assert "holds the runs 'slow', 'fastest'" in why and "makes 'slow', 'fast'" in why
    assert "holds the runs 'fast', 'slow'" in genuine({"fast": run, "slow": run}, replay, RUNS)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("a4")
    course = root / "course"
    released = release(A4, course, prove_pair=False)
    subs = make_class(course / "source" / A4, released, A4, root / "submissions")
    limits = Limits(timeout=300, cell_timeout=300)
    return grading.grade(A4, subs, course, workers=2, limits=limits, progress=False)


def test_the_a4_class_is_graded_on_its_curves(graded):
    rows = {o.student_id: o for o in graded.outcomes}
    assert set(rows) == set(CURVE_EXPECTED)
    for student, (status, flags) in CURVE_EXPECTED.items():
        assert (rows[student].status, set(rows[student].flag_names)) == (status, flags), student
    assert rows["full-marks"].score == rows["full-marks"].max_score == 8
    points = {o.student_id: {r.grade_id: r for r in o.items} for o in graded.outcomes}
    edited = points["edited-curve"]
    assert edited["test_history_valid"].points == edited["test_test_accuracy"].points == 0
    assert "was not made by the notebook's training" in edited["test_history_valid"].messages[-1]
    assert edited["test_build_model"].points == 2  # the rest of the work still counts
    figure = points["no-figure"]["test_history_valid"]
    assert figure.points == 0 and "plotted training curves" in figure.messages[0]
    assert points["no-figure"]["test_test_accuracy"].points == 3
    missing = points["no-history"]["test_test_accuracy"]
    assert missing.points == 0 and "history.json is missing" in missing.messages[0]
    assert rows["unfilled"].score == 0
    assert rows["half-done"].score == 2  # build_model; no curve was submitted
