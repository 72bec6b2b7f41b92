"""a5_training_techniques graded end to end: its synthetic class (one real run of the filled
notebook, whose five curve files every submitting student hands in) graded through the sandbox,
with each experiment replayed from the notebook's code; and `cnnkit validate`, which shows a
student the same checks of the curve files before submitting."""

from __future__ import annotations

import pytest

from autograder import grade as grading
from autograder.checks.a5_training_techniques import CURVES
from autograder.release import release
from autograder.sandbox import Limits
from autograder.synthetic import CURVE_EXPECTED, make_class
from autograder.validate import describe, validate

A5 = "a5_training_techniques"
CODE_ITEMS = {
    "test_initial_loss": 2,
    "test_initialisers": 3,
    "test_layer_stats": 2,
    "test_spatial_batchnorm_forward": 3,
    "test_spatial_batchnorm_backward": 3,
    "test_looking_inside": 2,
}
CURVE_ITEMS = {spec.items[0]: 2 for spec in CURVES}


@pytest.fixture(scope="module")
def submissions(tmp_path_factory):
    root = tmp_path_factory.mktemp("a5")
    course = root / "course"
    released = release(A5, course, prove_pair=False)
    return course, make_class(course / "source" / A5, released, A5, root / "submissions")


@pytest.fixture(scope="module")
def graded(submissions):
    course, subs = submissions
    limits = Limits(timeout=600, cell_timeout=300)
    result = grading.grade(A5, subs, course, workers=2, limits=limits, progress=False)
    return {o.student_id: o for o in result.outcomes}


def points(outcome) -> dict[str, float]:
    return {r.grade_id: r.points for r in outcome.items}


def messages(outcome, grade_id: str) -> str:
    return "\n".join(next(r.messages for r in outcome.items if r.grade_id == grade_id))


def test_every_student_gets_the_status_and_flags_expected(graded):
    assert set(graded) == set(CURVE_EXPECTED)
    for student, (status, flags) in CURVE_EXPECTED.items():
        assert (graded[student].status, set(graded[student].flag_names)) == (status, flags), student


def test_the_solution_earns_every_autograded_point(graded):
    full = graded["full-marks"]
    assert points(full) == CODE_ITEMS | CURVE_ITEMS
    assert full.score == full.max_score == sum(CODE_ITEMS.values()) + sum(CURVE_ITEMS.values())


def test_an_edited_experiment_loses_its_points_and_nothing_else(graded):
    edited = graded["edited-curve"]
    assert points(edited)["test_overfit"] == 0
    assert "overfit.json was not made by the notebook's training" in messages(
        edited, "test_overfit"
    )
    for grade_id, value in (CODE_ITEMS | CURVE_ITEMS).items():
        if grade_id != "test_overfit":
            assert points(edited)[grade_id] == value, grade_id


def test_missing_files_and_figures_cost_the_experiments_only(graded):
    for student, why in (("no-history", "is missing"), ("no-figure", "plotted training curves")):
        got = points(graded[student])
        assert {g: got[g] for g in CODE_ITEMS} == CODE_ITEMS, student
        for grade_id in CURVE_ITEMS:
            assert got[grade_id] == 0, (student, grade_id)
            assert why in messages(graded[student], grade_id), (student, grade_id)


def test_half_done_and_unfilled_work_earn_what_they_did(graded):
    half = points(graded["half-done"])
    # the first 6 of the 11 answer cells: initial_loss, overfit_small, the initialisers,
    # layer_stats, compare_inits, spatial_batchnorm_forward; no experiment's file was submitted
    assert {g for g, p in half.items() if p} == {
        "test_initial_loss",
        "test_initialisers",
        "test_layer_stats",
        "test_spatial_batchnorm_forward",
    }
    assert graded["unfilled"].score == 0


def test_validate_replays_the_experiments_and_checks_the_files(submissions):
    _, subs = submissions
    folder = subs / "full-marks" / A5
    before = {f.name: f.read_bytes() for f in folder.iterdir()}
    good = validate(folder / f"{A5}.ipynb")
    assert {f.name: f.read_bytes() for f in folder.iterdir()} == before  # nothing rewritten
    assert good.ok and good.replayed, describe(good)
    assert set(CURVE_ITEMS) | set(CODE_ITEMS) <= set(good.passing)
    edited = validate(subs / "edited-curve" / A5 / f"{A5}.ipynb")
    assert [f.name for f in edited.flags] == ["fabricated-curve"]
    assert [g for g, _ in edited.failing] == ["test_overfit"]
    report = describe(edited)
    assert "overfit.json was not made by the notebook's training" in report
    assert "replayed briefly from your code" in report
