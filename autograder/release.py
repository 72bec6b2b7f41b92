"""`cnnkit release`: make the student version of an assignment with nbgrader, then prove the pair.

The instructor's source notebooks live in `solutions/<assignment>/`. nbgrader's generate_assignment
strips solutions and hidden tests and clears outputs; the result goes to `assignments/<assignment>/`
(or, with a course folder, to that nbgrader course's `release/<assignment>/`). The proof then runs
both versions: the source must score full marks on every autograded cell, and the unfilled release
must score zero, each graded function failing with NotImplementedError.
"""

from __future__ import annotations

import filecmp
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbgrader.apps import NbGraderAPI
from nbgrader.utils import determine_grade, is_grade, is_solution
from traitlets.config import Config

from autograder.outputs import curve_specs

KIT_ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = KIT_ROOT / "solutions"
ASSIGNMENTS = KIT_ROOT / "assignments"
CELL_TIMEOUT = 600  # seconds a proof allows one cell (a4 trains a network in one)
# What running a notebook in place leaves behind: never copied into a release or a proof.
# What a run does not take from a release folder: its notebooks (the student's stand in their
# place), hidden files and Python's caches. A copytree ignore: (folder, names) -> names skipped.
NOT_FOR_RUNS = shutil.ignore_patterns("*.ipynb", ".*", "__pycache__")
LEFTOVERS = (".ipynb_checkpoints", "__pycache__", "history.json", "curves.png", "model.npz")


def leftovers(assignment: str) -> tuple[str, ...]:
    """LEFTOVERS and the curve files the assignment's notebook saves when it runs."""
    return LEFTOVERS + tuple(spec.file for spec in curve_specs(assignment))


class ReleaseError(RuntimeError):
    """Generating a release failed, or the proof of a source/release pair failed."""


def assignment_names() -> list[str]:
    """The assignments that have a source folder in solutions/."""
    return sorted(p.name for p in SOLUTIONS.iterdir() if p.is_dir() and any(p.glob("*.ipynb")))


def source_dir(assignment: str) -> Path:
    """solutions/<assignment>, or ReleaseError listing the assignments there are."""
    path = SOLUTIONS / assignment
    if not any(path.glob("*.ipynb")):
        known = ", ".join(assignment_names()) or "none"
        raise ReleaseError(f"no source notebooks in {path}; assignments: {known}")
    return path


def generate(assignment: str, course: Path) -> Path:
    """Run nbgrader generate_assignment in the nbgrader course folder `course`; return
    course/release/<assignment>. The course's source/<assignment> must already be there."""
    config = Config()
    config.CourseDirectory.root = str(course)
    config.CourseDirectory.db_url = f"sqlite:///{course / 'gradebook.db'}"
    config.Exchange.root = str(course / "exchange")  # nbgrader's default is a system folder
    result = NbGraderAPI(config=config).generate_assignment(assignment, force=True, create=True)
    if not result["success"]:
        raise ReleaseError(
            f"nbgrader generate_assignment {assignment} failed:\n"
            f"{result.get('error') or result.get('log')}"
        )
    return course / "release" / assignment


def place_source(assignment: str, course: Path, force: bool) -> None:
    """Copy solutions/<assignment> to course/source/<assignment>. A different copy already there
    is the instructor's work: replaced only with `force`."""
    src, dst = source_dir(assignment), course / "source" / assignment
    if dst.exists() and not _same_tree(src, dst, leftovers(assignment)):
        if not force:
            raise ReleaseError(
                f"{dst} differs from {src}; pass --force to replace it with the kit's source"
            )
        shutil.rmtree(dst)
    skip = leftovers(assignment)
    shutil.copytree(src, dst, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*skip))


def _same_tree(a: Path, b: Path, skip: tuple[str, ...]) -> bool:
    cmp = filecmp.dircmp(a, b, ignore=list(skip))
    if cmp.left_only or cmp.right_only or cmp.diff_files or cmp.funny_files:
        return False
    return all(_same_tree(a / d, b / d, skip) for d in cmp.common_dirs)


def release(
    assignment: str, course: Path | None = None, force: bool = False, prove_pair: bool = True
) -> Path:
    """Generate the student version of `assignment` and, with `prove_pair`, prove it.

    Without `course` it goes to assignments/<assignment> in the kit (replacing the previous
    release: those files are generated, never edited); with `course`, an nbgrader course folder
    (created if missing), to course/release/<assignment>, recorded in its gradebook.
    Returns the folder written. Raises ReleaseError when generation or the proof fails.
    """
    if course is None:
        with tempfile.TemporaryDirectory(prefix="cnnkit-release-") as tmp:
            place_source(assignment, Path(tmp), force=True)
            out = generate(assignment, Path(tmp))
            if prove_pair:
                prove(source_dir(assignment), out)
            target = ASSIGNMENTS / assignment
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(out, target)
            return target
    course.mkdir(parents=True, exist_ok=True)
    place_source(assignment, course, force)
    out = generate(assignment, course)
    if prove_pair:
        prove(source_dir(assignment), out)
    return out


# --------------------------------------------------------------------------- the proof


@dataclass
class CellResult:
    grade_id: str
    kind: str  # "test" (autograded test cell), "solution" (a cell the student fills) or "other"
    points: float
    max_points: float
    error: str | None  # "NameError: ..." of the cell's first error, if any


@dataclass
class NotebookResult:
    name: str
    cells: list[CellResult] = field(default_factory=list)  # in notebook order

    @property
    def tests(self) -> list[CellResult]:
        return [c for c in self.cells if c.kind == "test"]

    @property
    def score(self) -> float:
        return sum(c.points for c in self.tests)

    @property
    def max_score(self) -> float:
        return sum(c.max_points for c in self.tests)


def run_notebook(path: Path, workdir: Path) -> NotebookResult:
    """Execute the notebook at `path` with `workdir` as its folder and score its test cells
    the way nbgrader's autograder does (an error or stderr output scores zero)."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": str(workdir)}},
    )
    client.execute()
    result = NotebookResult(path.name)
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        error = _first_error(cell)
        if is_grade(cell) and cell.cell_type == "code":
            points, max_points = determine_grade(cell)
            result.cells.append(CellResult(meta["grade_id"], "test", points, max_points, error))
        elif is_solution(cell) and cell.cell_type == "code":
            result.cells.append(CellResult(meta["grade_id"], "solution", 0, 0, error))
        elif cell.cell_type == "code":
            result.cells.append(CellResult(meta.get("grade_id", ""), "other", 0, 0, error))
    return result


def _first_error(cell) -> str | None:
    for out in cell.get("outputs", []):
        if out.output_type == "error":
            return f"{out.ename}: {out.evalue}"
        if out.output_type == "stream" and out.name == "stderr":
            return f"stderr: {out.text.strip()[:200]}"
    return None


def prove(source: Path, released: Path) -> list[tuple[NotebookResult, NotebookResult]]:
    """Run every source notebook and its release; ReleaseError listing every broken promise."""
    problems, results = [], []
    skip = leftovers(source.name)
    for nb_path in sorted(source.glob("*.ipynb")):
        with tempfile.TemporaryDirectory(prefix="cnnkit-proof-") as tmp:
            solved = run_notebook(nb_path, _copy_folder(source, Path(tmp) / "source", skip))
            unfilled_dir = _copy_folder(released, Path(tmp) / "release", skip)
            unfilled = run_notebook(unfilled_dir / nb_path.name, unfilled_dir)
        problems += _check_solved(solved) + _check_unfilled(unfilled)
        results.append((solved, unfilled))
    if problems:
        raise ReleaseError("the release proof failed:\n  " + "\n  ".join(problems))
    return results


def _copy_folder(src: Path, dst: Path, skip: tuple[str, ...]) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(*skip))
    return dst


def _check_solved(r: NotebookResult) -> list[str]:
    """The source must pass every test cell with full marks."""
    if not r.tests:
        return [f"{r.name}: no autograded test cells"]
    return [
        f"{r.name} (solution): {c.grade_id} scored {c.points:g}/{c.max_points:g}"
        + (f" ({c.error})" if c.error else "")
        for c in r.tests
        if c.points != c.max_points
    ]


def _check_unfilled(r: NotebookResult) -> list[str]:
    """The unfilled release must score zero, each graded function raising NotImplementedError."""
    problems = [
        f"{r.name} (release): {c.grade_id} scored {c.points:g}/{c.max_points:g} unfilled"
        for c in r.tests
        if c.points
    ]
    # A solution cell is proven when it, or a cell after it up to the next test cell (the locked
    # cell that calls it, or the test), fails with NotImplementedError.
    unproven, pending = [], []
    for c in r.cells:
        raised = "NotImplementedError" in (c.error or "")
        if c.kind == "solution" and not raised:
            pending.append(c.grade_id)
        elif raised:
            pending = []
        elif c.kind == "test":
            unproven += pending
            pending = []
    problems += [
        f"{r.name} (release): {grade_id} did not raise NotImplementedError unfilled"
        for grade_id in unproven + pending
    ]
    return problems
