"""`cnnkit validate`: what a student learns before submitting, on real a1 notebooks: a notebook a
student completed on their own passes, the release fails its visible tests, and a notebook the
grader would flag says why."""

from __future__ import annotations

import nbformat
import pytest

from autograder.cli import main
from autograder.release import ASSIGNMENTS
from autograder.synthetic import filled, independent

A1 = "a1_convolution"
NB = f"{A1}.ipynb"


def released() -> nbformat.NotebookNode:
    return nbformat.read(ASSIGNMENTS / A1 / NB, as_version=4)


def write(tmp_path, nb) -> str:
    path = tmp_path / NB
    nbformat.write(nb, path)
    return str(path)


def answered() -> nbformat.NotebookNode:
    """The release of a1 filled with the answers of a notebook a student wrote on their own."""
    return filled(next(iter(independent(A1).values())), released())


def cell(nb: nbformat.NotebookNode, grade_id: str) -> nbformat.NotebookNode:
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def test_a_completed_notebook_passes_and_nothing_would_be_flagged(tmp_path, capsys):
    assert main(["validate", write(tmp_path, answered())]) == 0
    out = capsys.readouterr().out
    assert "Nothing the grader would flag." in out
    assert "Visible tests: 16 of 16 pass." in out


def test_the_release_lists_each_failing_test_with_its_error(tmp_path, capsys):
    assert main(["validate", write(tmp_path, released())]) == 1
    out = capsys.readouterr().out
    assert "Visible tests: 0 of 16 pass." in out
    assert "Written answers still as released (they score 0): answer_dense, answer_stack" in out
    assert (
        "test_conv2d_backward: NotImplementedError" in out
        or "test_conv2d_backward: NameError" in out
    )


def test_a_cell_that_raises_outside_the_tests_is_named(tmp_path, capsys):
    """An answer cell emptied after a good run leaves the cells that use it raising: the
    student hears which, though every visible test may still pass on earlier results."""
    nb = answered()
    figure = cell(nb, "fig_im2col")
    figure.source = "raise RuntimeError('the figure broke')\n" + figure.source
    assert main(["validate", write(tmp_path, nb)]) == 1
    out = capsys.readouterr().out
    assert "Other cells raised an error" in out
    assert "(`fig_im2col`): RuntimeError: the figure broke" in out


def test_code_beside_the_notebook_is_left_out_as_the_grader_leaves_it_out(tmp_path, capsys):
    """A module the notebook imports from its folder does not run, as when graded: the student
    hears which files, and which tests fail without them. Nothing in the folder is written."""
    nb = answered()
    conv1d = cell(nb, "conv1d")
    (tmp_path / "helpers.py").write_text("import numpy as np\n\n\n" + conv1d.source)
    conv1d.source = "from helpers import conv1d, _out_len\n"
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "helpers.cpython-311.pyc").write_bytes(b"")
    path = write(tmp_path, nb)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    assert main(["validate", path]) == 1
    out = capsys.readouterr().out
    assert "  files-left-out: left out of the run: helpers.py. Only the notebook is run" in out
    assert "(`conv1d`): ModuleNotFoundError: No module named 'helpers'" in out
    assert "test_conv1d: NameError: name 'conv1d' is not defined" in out
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_what_the_grader_would_flag_is_named_before_submitting(tmp_path, capsys):
    nb = answered()
    test = cell(nb, "test_conv1d")
    test.source = "pass"
    conv = cell(nb, "conv2d_forward")
    conv.source = "import torch\n" + conv.source
    assert main(["validate", write(tmp_path, nb)]) == 1
    out = capsys.readouterr().out
    assert "The grader would flag:" in out
    assert "tampered (cell test_conv1d)" in out
    assert "forbidden-library (cell conv2d_forward): cell 'conv2d_forward' imports torch" in out


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (NB, "{not json", "cannot read"),
        ("homework.ipynb", None, "name the assignment with --assignment"),
    ],
)
def test_a_notebook_that_cannot_be_validated_says_why(tmp_path, capsys, name, content, message):
    path = tmp_path / name
    if content is None:
        nbformat.write(released(), path)
    else:
        path.write_text(content)
    assert main(["validate", str(path)]) == 2
    assert message in capsys.readouterr().err


def test_a_cell_that_hangs_is_named_and_would_be_flagged(tmp_path, capsys):
    nb = answered()
    nb.cells.insert(5, nbformat.v4.new_code_cell("while True:\n    pass"))
    assert main(["validate", write(tmp_path, nb), "--timeout", "3"]) == 1
    captured = capsys.readouterr()
    assert "The grader would flag:" in captured.out
    assert "cell 6 (`while True:`) ran past the 3 s cell limit" in captured.out
    assert "Traceback" not in captured.err  # the stopped kernel's complaints are not the student's
