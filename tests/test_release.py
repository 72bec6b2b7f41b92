"""`cnnkit release`: nbgrader release of a source notebook, and the proof of the pair."""

from __future__ import annotations

import nbformat
import pytest

from autograder import release as rel
from autograder.cli import main


def cell(kind: str, source: str, grade_id: str, **nbgrader) -> nbformat.NotebookNode:
    meta = {
        "grade": False,
        "solution": False,
        "locked": False,
        "grade_id": grade_id,
        "schema_version": 3,
        **nbgrader,
    }
    make = nbformat.v4.new_code_cell if kind == "code" else nbformat.v4.new_markdown_cell
    return make(source, metadata={"nbgrader": meta})


SOLUTION = '''def double(x):
    """Twice x."""
    ### BEGIN SOLUTION
    return 2 * x
    ### END SOLUTION'''

TESTS = """assert double(2) == 4
### BEGIN HIDDEN TESTS
assert double(21) == 42, "double: wrong for a hidden case"
### END HIDDEN TESTS"""


def toy_notebook(solution: str = SOLUTION, tests: str = TESTS) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [
        cell("markdown", "# Doubling\nWrite $f(x) = 2x$.", "intro", locked=True),
        cell("code", solution, "double", solution=True),
        cell("code", tests, "test_double", grade=True, locked=True, points=2),
        cell("markdown", "Because it is linear.", "why", solution=True, grade=True, points=1),
    ]
    return nb


@pytest.fixture
def kit(tmp_path, monkeypatch):
    """A kit folder with solutions/toy holding one source notebook."""
    monkeypatch.setattr(rel, "SOLUTIONS", tmp_path / "solutions")
    monkeypatch.setattr(rel, "ASSIGNMENTS", tmp_path / "assignments")
    (tmp_path / "solutions" / "toy").mkdir(parents=True)
    write(tmp_path, toy_notebook())
    return tmp_path


def write(kit, nb) -> None:
    nbformat.write(nb, kit / "solutions" / "toy" / "toy.ipynb")


def test_release_strips_solutions_and_hidden_tests_and_proves_the_pair(kit):
    out = rel.release("toy")
    assert out == kit / "assignments" / "toy"
    text = (out / "toy.ipynb").read_text()
    assert "return 2 * x" not in text and "double(21)" not in text
    assert "raise NotImplementedError" in text and "YOUR ANSWER HERE" in text
    nb = nbformat.read(out / "toy.ipynb", as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")
    assert nb.cells[2].metadata.nbgrader["points"] == 2


def test_proof_scores_both_versions(kit):
    out = rel.release("toy", prove_pair=False)
    [(solved, unfilled)] = rel.prove(kit / "solutions" / "toy", out)
    assert (solved.score, solved.max_score) == (2, 2)
    assert unfilled.score == 0 and "NotImplementedError" in unfilled.tests[0].error


def test_a_wrong_solution_fails_the_proof(kit):
    write(kit, toy_notebook(solution=SOLUTION.replace("2 * x", "x + 2")))
    with pytest.raises(
        rel.ReleaseError,
        match=r"test_double scored 0/2 \(AssertionError: double: wrong for a hidden case",
    ):
        rel.release("toy")
    assert not (kit / "assignments" / "toy").exists()  # nothing half-made is left behind


def test_a_test_that_passes_unfilled_fails_the_proof(kit):
    write(kit, toy_notebook(tests="assert True"))
    with pytest.raises(rel.ReleaseError, match="test_double scored 2/2 unfilled"):
        rel.release("toy")


def test_stderr_in_a_test_cell_scores_zero(kit):
    noisy = "import sys\nsys.stderr.write('careful')\n" + TESTS
    write(kit, toy_notebook(tests=noisy))
    with pytest.raises(rel.ReleaseError, match="stderr: careful"):
        rel.release("toy")


def test_course_folder_keeps_the_instructors_copy(kit, tmp_path):
    course = tmp_path / "course"
    out = rel.release("toy", course, prove_pair=False)
    assert out == course / "release" / "toy" and (course / "gradebook.db").exists()
    edited = course / "source" / "toy" / "toy.ipynb"
    edited.write_text(edited.read_text().replace("Doubling", "Doubling (edited)"))
    with pytest.raises(rel.ReleaseError, match="--force"):
        rel.release("toy", course, prove_pair=False)
    assert "edited" in edited.read_text()
    rel.release("toy", course, force=True, prove_pair=False)
    assert "edited" not in edited.read_text()


def test_unknown_assignment_lists_the_known_ones(kit, capsys):
    assert main(["release", "nope"]) == 1
    err = capsys.readouterr().err
    assert "nope" in err and "toy" in err


# --------------------------------------------------------------------------- the kit's assignments

KIT_ASSIGNMENTS = rel.assignment_names()


@pytest.mark.parametrize("name", KIT_ASSIGNMENTS)
def test_committed_release_is_what_the_command_makes(name, tmp_path):
    out = rel.release(name, tmp_path / "course", prove_pair=False)
    committed = rel.ASSIGNMENTS / name
    made = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert made == sorted(p.relative_to(committed) for p in committed.rglob("*") if p.is_file())
    for rel_path in made:
        assert (out / rel_path).read_bytes() == (committed / rel_path).read_bytes(), (
            f"assignments/{name}/{rel_path} differs from what `cnnkit release {name}` makes"
        )


@pytest.mark.parametrize("name", KIT_ASSIGNMENTS)
def test_release_proof_of_each_assignment(name):
    [(solved, unfilled)] = rel.prove(rel.source_dir(name), rel.ASSIGNMENTS / name)
    assert solved.score == solved.max_score > 0
    assert unfilled.score == 0


def test_run_outputs_in_the_source_folder_are_not_released(kit):
    (kit / "solutions" / "toy" / "history.json").write_text("{}")
    out = rel.release("toy", prove_pair=False)
    assert not (out / "history.json").exists()
