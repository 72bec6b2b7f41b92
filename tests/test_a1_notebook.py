"""The a1 notebook's own promises: the digests of its visible answer checks are the solution's
answers, its hints fire on the bug they name, the numbers its text quotes are the kit's, and
running it does not look like tampering."""

from __future__ import annotations

import ast
import copy
import re
from functools import cache
from pathlib import Path

import nbformat
import numpy as np
import pytest

from autograder import outputs, static_checks
from autograder.checks import a1_convolution as a1_checks
from cnn_core import grading, zoo
from cnn_core.gradcheck import check_gradients
from cnn_core.grading import answer_digest

ROOT = Path(__file__).resolve().parents[1]
A1 = "a1_convolution"
HIDDEN = "### BEGIN HIDDEN TESTS"
# the classic bug of conv2d_backward: dout reshaped to (F, -1) without moving the batch axis
RIGHT_D = "dout.transpose(1, 0, 2, 3).reshape(F, -1)"
WRONG_D = "dout.reshape(F, -1)"


def _notebook(kind: str) -> nbformat.NotebookNode:
    return nbformat.read(ROOT / kind / A1 / f"{A1}.ipynb", as_version=4)


def _gid(cell) -> str:
    return cell.metadata.get("nbgrader", {}).get("grade_id", "")


def _cell(kind: str, grade_id: str) -> str:
    [source] = [c.source for c in _notebook(kind).cells if _gid(c) == grade_id]
    return source


def _visible(source: str) -> str:
    """A test cell's code without its hidden block."""
    return source.split(HIDDEN)[0]


@cache
def _solution_namespace(replace: tuple[str, str] | None = None) -> dict:
    """The helpers of the setup cell and every solution code cell, executed in one dict;
    `replace` = (old, new) edits the solution code first (a student's bug)."""
    ns: dict = {"np": np, "grading": grading, "check_gradients": check_gradients}
    for cell in _notebook("solutions").cells:
        if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("solution"):
            source = cell.source if replace is None else cell.source.replace(*replace)
            exec(compile(source, _gid(cell), "exec"), ns)
    return ns


def _digest_calls(notebook: nbformat.NotebookNode) -> dict[str, tuple[str, int, str, str]]:
    """{answer name: (digest, decimals, grade_id, name of the value passed)} of every
    grading.check_answer and grading.check_answers call in the notebook's test cells."""
    found = {}
    for cell in notebook.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type != "code" or not meta.get("grade") or meta.get("solution"):
            continue
        for node in ast.walk(ast.parse(_visible(cell.source))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if node.func.attr == "check_answer":
                checks = [node.args]
            elif node.func.attr == "check_answers":
                checks = [arg.elts for arg in node.args]
            else:
                continue
            keywords = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
            decimals = keywords.get("decimals", grading.ANSWER_DECIMALS)
            for name, value, digest, *_ in checks:
                key = ast.literal_eval(name)
                assert key not in found, f"{key} is checked twice"
                found[key] = (ast.literal_eval(digest), decimals, _gid(cell), ast.unparse(value))
    return found


def _hidden_answers() -> dict[str, object]:
    """{answer name: the value the hidden tests grade against}, from the output checks."""
    values = {}
    for check in outputs.checks(A1):
        if check.what != "answers":
            continue
        for case in check.cases(np.random.default_rng(0)):
            name = case.args["name"]
            values[name] = check.expected(case)[name]
    return values


# --------------------------------------------------------------------------- answer digests


def test_every_hand_answer_has_a_visible_digest_check():
    calls = _digest_calls(_notebook("solutions"))
    assert set(calls) == set(_hidden_answers())
    for name, (_, _, grade_id, value) in calls.items():
        assert value == name, f"{grade_id} checks {value} under the name {name}"


def test_every_digest_is_that_of_the_hidden_tests_answer():
    calls = _digest_calls(_notebook("solutions"))
    for name, value in _hidden_answers().items():
        digest, decimals, grade_id, _ = calls[name]
        assert answer_digest(name, value, decimals) == digest, (
            f"{grade_id}: the digest of {name} is not that of the answer the hidden test grades "
            f"(make it again with grading.answer_digest({name!r}, value, {decimals}))"
        )


def test_every_digest_is_that_of_the_solutions_answer():
    ns = _solution_namespace()
    for name, (digest, decimals, grade_id, _) in _digest_calls(_notebook("solutions")).items():
        assert answer_digest(name, ns[name], decimals) == digest, (
            f"{grade_id}: the solution's {name} does not have the digest its visible test checks"
        )


def test_the_release_checks_the_same_digests():
    assert _digest_calls(_notebook("assignments")) == _digest_calls(_notebook("solutions"))


def test_a_wrong_hand_answer_fails_its_visible_test_by_name_without_the_value():
    ns = dict(_solution_namespace())
    ns["lenet_c1_params"] = 150  # forgot the biases
    with pytest.raises(AssertionError) as err:
        exec(_visible(_cell("solutions", "test_lenet")), ns)
    message = str(err.value)
    assert message.startswith("lenet_c1_params is not right: ")
    assert "156" not in message and "lenet_c5" not in message


def test_the_fraction_is_checked_to_three_decimals():
    ns = dict(_solution_namespace())
    exact = ns["alexnet_fc_fraction"]
    for right in (exact, round(exact, 3), round(exact, 4)):
        exec(_visible(_cell("solutions", "test_alexnet")), {**ns, "alexnet_fc_fraction": right})
    with pytest.raises(AssertionError, match="alexnet_fc_fraction is not right: .*3 decimals"):
        exec(_visible(_cell("solutions", "test_alexnet")), {**ns, "alexnet_fc_fraction": 0.96})


# --------------------------------------------------------------------------- conv2d_backward


def test_the_reshape_bug_gets_the_hint_about_d_in_the_visible_test():
    ns = dict(_solution_namespace((RIGHT_D, WRONG_D)))
    with pytest.raises(AssertionError) as err:
        exec(_visible(_cell("solutions", "test_conv2d_backward")), ns)
    assert "dx, dw and db all fail" in str(err.value) and RIGHT_D in str(err.value)


def test_the_reshape_bug_gets_the_hint_about_d_in_the_hidden_test():
    ns = _solution_namespace((RIGHT_D, WRONG_D))
    with pytest.raises(AssertionError) as err:
        outputs.hidden_test(ns, A1, "test_conv2d_backward")
    assert a1_checks.D_HINT in str(err.value) and RIGHT_D in a1_checks.D_HINT


def test_a_bug_in_dx_alone_gets_no_hint_about_d():
    assigned = ("] += cols[:, k, l]", "] = cols[:, k, l]")
    ns = _solution_namespace(assigned)  # col2im overwrites where windows overlap
    with pytest.raises(AssertionError) as err:
        exec(_visible(_cell("solutions", "test_conv2d_backward")), dict(ns))
    assert "all fail" not in str(err.value)
    with pytest.raises(AssertionError) as err:
        outputs.hidden_test(ns, A1, "test_conv2d_backward")
    assert a1_checks.D_HINT not in str(err.value)


def test_the_gradient_errors_the_text_quotes_are_what_the_solution_gets():
    """Task 5.2 quotes the errors of the demo's check; they come from the finite differences,
    so every correct solution gets them."""
    ns = _solution_namespace()
    rng = np.random.default_rng(5)
    inputs = {
        "x": rng.standard_normal((2, 3, 7, 6)),
        "w": rng.standard_normal((4, 3, 3, 2)),
        "b": rng.standard_normal(4),
    }
    report = check_gradients(
        lambda x, w, b: ns["conv2d_forward"](x, w, b, stride=2, padding=1),
        ns["conv2d_backward"],
        inputs,
    )
    text = _cell("solutions", "task_conv2d_backward")
    for row in report.rows:
        quoted = re.search(rf"\$(\d) \\cdot 10\^{{(-\d+)}}\$ for {row.name}\b", text)
        assert quoted, f"Task 5.2 quotes no error for {row.name}"
        value = int(quoted[1]) * 10.0 ** int(quoted[2])
        assert value / 2 < row.max_rel_error < value * 2, (row.name, row.max_rel_error, value)


# --------------------------------------------------------------------------- the text


def test_part7_quotes_the_zoos_numbers():
    text = _cell("solutions", "part7_intro")
    lenet = zoo.summary("lenet5")
    s2, s4 = lenet.row("S2"), lenet.row("S4")
    assert f"= {s2.params}$ for S2" in text and f"= {s4.params}$ for S4" in text
    assert f"{s2.macs:,}".replace(",", "{,}") in text
    assert "no parameters" in text and "pooling here uses no padding" not in text
    google = zoo.summary("googlenet")
    assert google.row("conv1").output_shape[1:] == (112, 112)
    assert google.row("pool1").output_shape[1:] == (56, 56)
    assert "112 \\to 56" in text


def test_the_notebook_says_what_it_does_with_mixed_and_integer_dtypes():
    text = _cell("solutions", "notation")
    assert "Mixed dtypes" in text and "integer" in text and "not graded" in text
    # ... and the checks never pass them: every case's arrays share one float dtype
    for check in outputs.checks(A1):
        if check.what == "answers":
            continue
        for case in check.cases(np.random.default_rng(1)):
            kinds = {v.dtype for v in case.args.values() if isinstance(v, np.ndarray)}
            assert len(kinds) <= 1 and kinds <= {np.dtype(np.float32), np.dtype(np.float64)}


# --------------------------------------------------------------------------- running it


def test_execution_metadata_from_running_the_notebook_is_not_tampering():
    """`jupyter nbconvert --execute --inplace` (and Jupyter's own execution timing) adds
    metadata.execution to every code cell it runs."""
    released = _notebook("assignments")
    submitted = copy.deepcopy(released)
    for cell in submitted.cells:
        if cell.cell_type == "code":
            cell.metadata["execution"] = {
                "iopub.execute_input": "2026-12-01T10:00:00.000000Z",
                "iopub.status.busy": "2026-12-01T10:00:00.000000Z",
                "iopub.status.idle": "2026-12-01T10:00:00.100000Z",
                "shell.execute_reply": "2026-12-01T10:00:00.100000Z",
            }
            cell.execution_count = 1
    assert static_checks.inspect(submitted, released, static_checks.policy(A1)) == []
