"""Grading a4's submitted training curve: the replay that shows a curve is genuine, and the
whole a4 class graded through the sandbox."""

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
    return history_export("h")({"h": short})


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
    edited = History.from_dict(json.loads(json.dumps(run.to_dict())))
    edited.train_loss[4] *= 0.9
    why = genuine(edited, replay_of(run, 10), SPEC)
    assert "training loss at iteration 5 differs" in why


def test_a_changed_configuration_is_found(run):
    edited = History.from_dict(json.loads(json.dumps(run.to_dict())))
    edited.config["seed"] = 4
    assert "configuration differs in seed" in genuine(edited, replay_of(run, 10), SPEC)


def test_a_curve_that_cannot_be_replayed_is_not_verified(run):
    assert genuine(run, "raised NameError: name 'history' is not defined", SPEC).startswith(
        "not verified"
    )


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
