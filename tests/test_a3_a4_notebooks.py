"""What a3's and a4's notebooks tell students, held to what their code does: a3's batch norm
refuses a training batch of one, a3's residual question quotes its own experiment, a3's written
questions show their rubric, a4's `fit` signature is fit's, a4's written question and rubric are
visible in the release, and a4's locked cells, not the answer cells, run the student's comparison
and final training."""

from __future__ import annotations

import ast
import contextlib
import inspect
import io
import re
from pathlib import Path

import matplotlib
import nbformat
import numpy as np
import pytest

from cnn_core.train import fit

matplotlib.use("Agg")

ROOT = Path(__file__).resolve().parents[1]
A3, A4 = "a3_backprop", "a4_train_cnn"


def _notebook(kind: str, assignment: str) -> nbformat.NotebookNode:
    return nbformat.read(ROOT / kind / assignment / f"{assignment}.ipynb", as_version=4)


def _cell(nb: nbformat.NotebookNode, grade_id: str) -> nbformat.NotebookNode:
    (found,) = [c for c in nb.cells if c.metadata["nbgrader"]["grade_id"] == grade_id]
    return found


def _run(nb: nbformat.NotebookNode, grade_id: str, ns: dict) -> str:
    """Execute a code cell of `nb` in `ns`; returns what it printed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(_cell(nb, grade_id).source, grade_id, "exec"), ns)
    return out.getvalue()


# --------------------------------------------------------------------------- a3


@pytest.fixture(scope="module")
def a3_solution() -> dict:
    """The setup cell and the solution cells of a3's source, run in one namespace."""
    nb = _notebook("solutions", A3)
    ns: dict = {"__name__": "a3_notebook"}
    for cell in nb.cells:
        meta = cell.metadata["nbgrader"]
        if cell.cell_type == "code" and (meta.get("solution") or meta["grade_id"] == "setup"):
            _run(nb, meta["grade_id"], ns)
    return ns


def test_a3_batchnorm_refuses_a_training_batch_of_one(a3_solution):
    forward = a3_solution["batchnorm_forward"]
    rm, rv = np.zeros(3), np.ones(3)
    with pytest.raises(ValueError, match=r"batchnorm_forward: .*at least 2.*N=1"):
        forward(np.ones((1, 3)), np.ones(3), np.zeros(3), rm, rv, train=True)
    assert np.array_equal(rm, np.zeros(3)) and np.array_equal(rv, np.ones(3))
    out, _ = forward(np.ones((1, 3)), np.ones(3), np.zeros(3), rm, rv, train=False)
    assert out.shape == (1, 3)
    intro = _cell(_notebook("assignments", A3), "part5_intro").source
    assert "raises a `ValueError`" in intro and "PyTorch's default `momentum=0.1`" in intro


def test_a3_residual_question_and_answer_quote_the_experiment(a3_solution):
    nb = _notebook("solutions", A3)
    printed = _run(nb, "figure_gradient_norms", dict(a3_solution))
    found = re.search(r"top: ([\d.]+); .*plain ([\d.e-]+), residual ([\d.]+)", printed)
    top, plain, residual = (float(v) for v in found.groups())
    factor = float(re.search(r"residual ([\d.]+)$", printed.strip()).group(1))
    assert round(top) == 22 and round(residual) == 124 and plain < 1e-15
    assert round(factor, 2) == 1.06
    question = _cell(nb, "residual_question").source
    assert "from about 22 at the top to about 120 at the bottom" in question
    answer = _cell(nb, "residual_answer").source
    assert "about 1.06" in answer and "about 124 at the bottom" in answer
    assert "stays\nof the order" not in answer and "same order" not in question


def test_a3_batchnorm_backward_test_says_what_it_checks():
    source = _cell(_notebook("assignments", A3), "test_batchnorm_backward").source
    assert "each column of dx (one feature, summed over the N examples" in source
    assert "np.asarray(_dx).sum(axis=0)" in source and "A row of dx" not in source


def test_a3_written_questions_show_their_rubric_in_the_release():
    released = _notebook("assignments", A3)
    for question, answer in (
        ("bn_question", "bn_answer"),
        ("residual_question", "residual_answer"),
    ):
        text = _cell(released, question).source
        assert "*Graded by hand, 1 point per part:*" in text, question
        assert all(f"({part})" in text.split("Graded by hand")[1] for part in "ab"), question
        assert _cell(released, answer).source.strip() == "YOUR ANSWER HERE"


# --------------------------------------------------------------------------- a4


def test_a4_fit_signature_in_the_notebook_is_fits():
    text = _cell(_notebook("assignments", A4), "fit_md").source
    block = re.search(r"```python\n(fit\(.*?\))\n```", text, re.S).group(1)
    shown = ast.parse(f"def {block}: pass").body[0].args
    pairs = zip(shown.kwonlyargs, shown.kw_defaults, strict=True)
    defaults = {a.arg: ast.literal_eval(d) for a, d in pairs}
    real = inspect.signature(fit).parameters
    assert [a.arg for a in shown.args] == [n for n, p in real.items() if p.default is p.empty]
    assert defaults == {n: p.default for n, p in real.items() if p.default is not p.empty}


def test_a4_written_question_and_rubric_are_in_the_release():
    released = _notebook("assignments", A4)
    ids = [c.metadata["nbgrader"]["grade_id"] for c in released.cells]
    question = released.cells[ids.index("curves_answer") - 1]
    meta = question.metadata["nbgrader"]
    assert meta["grade_id"] == "curves_question" and meta["locked"] and not meta["solution"]
    assert "**What differs.**" in question.source and "**Why.**" in question.source
    assert "Graded by hand, 1 point each" in question.source
    assert _cell(released, "curves_answer").source.strip() == "YOUR ANSWER HERE"
    model = _cell(_notebook("solutions", A4), "curves_answer").source
    assert model.startswith("*Model answer") and "Question" not in model


class FakeHistory:
    """What the locked cells read of a History."""

    def __init__(self, test=None):
        self.iterations, self.epochs_done = 10, 1
        self.wall_time, self.val_loss, self.val_accuracy = [0.5], [0.4], [0.9]
        self.test = test
        self.saved = []

    def save(self, path, overwrite=False):
        self.saved.append(path)


class Calls:
    """A student's function that counts its calls and returns a new result each time."""

    def __init__(self, make):
        self.make, self.count = make, 0

    def function(self):
        def student_function(*args):
            self.count += 1
            return self.make()

        return student_function


LOCKED = {
    # cell: (function name, variable, a result the function returns)
    "compare_plot": ("compare_settings", "runs", lambda: {"a": FakeHistory(), "b": FakeHistory()}),
    "final_run": ("train_final_model", "history", lambda: FakeHistory(test={"accuracy": 0.9})),
}


def _locked_namespace(function: str, calls: Calls) -> dict:
    return {
        "data": object(),
        "History": FakeHistory,
        "ACCURACY_THRESHOLD": 0.82,
        "plot_history": lambda h: None,
        "plot_histories": lambda runs: None,
        function: calls.function(),
    }


@pytest.mark.parametrize("grade_id", list(LOCKED))
def test_a4_locked_cell_calls_the_students_function(grade_id, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    nb = _notebook("assignments", A4)
    assert _cell(nb, grade_id).source == _cell(_notebook("solutions", A4), grade_id).source
    function, variable, make = LOCKED[grade_id]
    # the answer cells only define the function, in the release and in the solution
    for kind in ("assignments", "solutions"):
        answer = _cell(_notebook(kind, A4), function).source
        assert f"def {function}(" in answer and f"{function}(" not in answer.split("\n")[-1]
        assert f"{variable} = {function}(" not in answer
    # the locked cell checks that the function exists, then makes the call, nothing else first
    code = [ln for ln in _cell(nb, grade_id).source.splitlines() if not ln.startswith("#")]
    assert code[0] == f'if "{function}" not in globals():' and code[1].lstrip().startswith(
        "raise NameError("
    )
    call = next(i for i, ln in enumerate(code) if ln.startswith(f"{variable} = {function}("))
    assert all(ln.startswith(" ") for ln in code[1:call]), code[:call]
    assert "_made_by" not in _cell(nb, grade_id).source

    calls = Calls(make)
    ns = _locked_namespace(function, calls)
    ns[variable] = stale = make()  # a result left from an earlier run is not reused
    printed = _run(nb, grade_id, ns)
    assert calls.count == 1 and ns[variable] is not stale and printed
    made = ns[variable]
    _run(nb, grade_id, ns)  # every run of the cell runs the student's current function
    assert calls.count == 2 and ns[variable] is not made
    if grade_id == "final_run":
        assert ns["history"].saved == ["history.json"] and "test accuracy 0.900" in printed


@pytest.mark.parametrize("grade_id", list(LOCKED))
def test_a4_locked_cell_says_which_cell_to_run(grade_id):
    function, variable, _ = LOCKED[grade_id]
    ns = _locked_namespace(function, Calls(dict))
    del ns[function]
    with pytest.raises(NameError, match=f"{function} is not defined: run the cell of task"):
        _run(_notebook("assignments", A4), grade_id, ns)


def test_a4_final_run_explains_a_result_that_is_not_a_history(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ns = _locked_namespace("train_final_model", Calls(lambda: None))
    with pytest.raises(
        AssertionError, match="should return the History that fit returned, got NoneType"
    ):
        _run(_notebook("assignments", A4), "final_run", ns)
    ns = _locked_namespace("train_final_model", Calls(FakeHistory))  # no test result
    assert "no test accuracy recorded" in _run(_notebook("assignments", A4), "final_run", ns)
