"""Record graded submissions in an nbgrader course's gradebook the way `nbgrader autograde` does,
so that formgrader, `nbgrader export` and `nbgrader release_feedback` work on them, and read back
what the course staff added there.

What `update_gradebook` writes, per submission, following nbgrader's own steps
(`Autograde.init_assignment`, the `SaveAutoGrades` and `AssignLatePenalties` preprocessors):

- the submission with the timestamp of its `timestamp.txt` (formgrader treats a submission as
  autograded when that timestamp matches the one in `submitted/`);
- every autograded test cell's score, not waiting for manual grading unless a grader has
  already overridden it;
- every written answer (a manually graded solution cell): zero, with the comment "No response."
  and nothing to grade, when the student left it as released; otherwise waiting for a grader;
- each notebook's late penalty from the course's `LateSubmissionPlugin` (its
  `nbgrader_config.py`), clamped to the notebook's score as nbgrader clamps it.

Manual scores and comments are never touched. Only the grader's main process writes here, once
per batch, after every outcome is known.
"""

from __future__ import annotations

import logging
import sys
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import nbformat
from nbgrader import utils
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.preprocessors import AssignLatePenalties
from sqlalchemy.exc import SAWarning
from traitlets.config import Config, PyFileConfigLoader

from autograder.outcome import Item, Outcome

CONFIG = "nbgrader_config.py"  # the course's own nbgrader settings, in its folder
NO_RESPONSE = "No response."  # nbgrader's comment on an answer left as released
# Appended to a course's nbgrader_config.py: nbgrader's own feedback without hidden tests
FEEDBACK_CONFIG = """
# Added by cnnkit: nbgrader generate_feedback shows hidden tests unless they are cleared first.
# `cnnkit feedback` writes the kit's own feedback, which never shows them.
from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor  # noqa: E402
from nbgrader.preprocessors import ClearHiddenTests, GetGrades  # noqa: E402

c = get_config()  # noqa: F821
c.GenerateFeedback.preprocessors = [GetGrades, ClearHiddenTests, CSSHTMLHeaderPreprocessor]
"""


@dataclass(frozen=True)
class WrittenAnswer:
    """A manually graded answer of one student, as the gradebook holds it."""

    grade_id: str
    notebook: str
    points: float | None  # None: not graded yet
    max_points: float
    comment: str  # the grader's comment, else nbgrader's automatic one, else ""


@dataclass(frozen=True)
class Standing:
    """What the gradebook says of one student's submission besides the autograder's points."""

    timestamp: datetime | None = None  # UTC, from timestamp.txt
    seconds_late: float = 0.0
    late_penalty: float = 0.0  # points taken off the whole submission
    written: list[WrittenAnswer] = field(default_factory=list)
    due: datetime | None = None  # UTC: the assignment's due date, with the student's extension


def db_url(course: Path) -> str:
    """The sqlite URL of the gradebook of nbgrader course folder `course`."""
    return f"sqlite:///{Path(course) / 'gradebook.db'}"


def course_config(course: Path) -> Config:
    """The course's nbgrader settings: its nbgrader_config.py, if any (ValueError when it cannot
    be loaded), with the course folder as nbgrader's root and its gradebook."""
    config = Config()
    path = Path(course) / CONFIG
    if path.is_file():
        try:
            config.merge(PyFileConfigLoader(CONFIG, path=str(course)).load_config())
        except Exception as exc:  # a course's config file may raise anything
            raise ValueError(f"cannot load {path}: {type(exc).__name__}: {exc}") from None
    config.CourseDirectory.root = str(course)
    config.CourseDirectory.db_url = db_url(course)
    return config


def strip_hidden_tests_from_feedback(course: Path) -> str:
    """Make `nbgrader generate_feedback` in `course` strip hidden tests (it publishes them by
    default) by adding nbgrader's ClearHiddenTests to its steps in the course's
    nbgrader_config.py, which keeps everything it held. What was done, for the terminal ("" when
    the config already strips them); a config that sets other feedback steps is left alone and
    the message says so."""
    config = course_config(course)
    steps = config.GenerateFeedback.get("preprocessors") if "GenerateFeedback" in config else None
    if steps is not None:
        if any(getattr(step, "__name__", str(step)).endswith("ClearHiddenTests") for step in steps):
            return ""
        return (
            f"note: {course / CONFIG} sets GenerateFeedback.preprocessors without ClearHiddenTests:"
            " nbgrader generate_feedback would show students the hidden tests (use cnnkit feedback)"
        )
    path = Path(course) / CONFIG
    existing = path.read_text() if path.is_file() else ""
    path.write_text(existing.rstrip("\n") + "\n" + FEEDBACK_CONFIG)
    return f"{path}: nbgrader generate_feedback now strips hidden tests (ClearHiddenTests)"


def registered(course: Path, assignment: str) -> bool:
    """True when the course's gradebook knows `assignment` (formgrader needs it there)."""
    if not (course / "gradebook.db").exists():
        return False
    with Gradebook(db_url(course)) as gb:
        try:
            gb.find_assignment(assignment)
        except MissingEntry:
            return False
    return True


def read_timestamp(folder: Path | None) -> str | None:
    """The text of `folder`/timestamp.txt (as nbgrader submit wrote it), or None."""
    path = None if folder is None else folder / "timestamp.txt"
    if path is None or not path.is_file():
        return None
    return path.read_text(errors="replace").strip()[:100] or None


def parse_timestamp(text: str | None) -> datetime | None:
    """nbgrader's reading of a timestamp.txt (naive UTC); None when missing or unreadable."""
    if not text:
        return None
    try:
        return utils.parse_utc(text)
    except (ValueError, OverflowError):
        return None


def update_gradebook(
    course: Path, assignment: str, items: list[Item], outcomes: list[Outcome]
) -> None:
    """Write every outcome into the course's gradebook as `nbgrader autograde` would (see the
    module's docstring). The executed notebooks are read from `<course>/autograded/`."""
    notebook_of = {i.grade_id: i.notebook.removesuffix(".ipynb") for i in items}
    notebooks = set(notebook_of.values())
    plugin = late_penalties(course)
    # nbgrader's add_submission trips an autoflush warning of SQLAlchemy's; the rows are right
    with Gradebook(db_url(course)) as gb, warnings.catch_warnings():
        warnings.simplefilter("ignore", SAWarning)
        names = _cell_names(gb, assignment, notebooks)
        for outcome in outcomes:
            student = outcome.student_id
            gb.update_or_create_student(student)
            submission = gb.update_or_create_submission(
                assignment, student, timestamp=parse_timestamp(outcome.timestamp)
            )
            # each notebook's grades and comments at once, not one query per cell
            cells = {
                nb.name: _Cells(nb, names[nb.name])
                for nb in submission.notebooks
                if nb.name in names
            }
            for result in outcome.items:
                grade = cells[notebook_of[result.grade_id]].grades[result.grade_id]
                grade.auto_score = result.points
                grade.needs_manual_grade = grade.manual_score is not None
            for name, found in sorted(cells.items()):
                executed = course / "autograded" / student / assignment / f"{name}.ipynb"
                _save_answers(found, executed, set(notebook_of))
            gb.db.commit()
            for name in sorted(cells):
                _assign_late_penalty(cells[name].notebook, plugin, submission, student)
            gb.db.commit()


def _cell_names(gb, assignment: str, notebooks: set[str]) -> dict[str, dict[str, str]]:
    """{notebook: {cell id: cell name}} of the assignment's graded, solution and task cells:
    a grade's or comment's name read through its cell is a query each time a commit has
    expired it."""
    names = {}
    for name in notebooks:
        nb = gb.find_notebook(name, assignment)
        cells = [*nb.grade_cells, *nb.solution_cells, *nb.task_cells]
        names[name] = {cell.id: cell.name for cell in cells}
    return names


@dataclass
class _Cells:
    """A submitted notebook's gradebook rows: its grades and comments by cell name."""

    notebook: object  # nbgrader.api.SubmittedNotebook
    names: dict[str, str]  # {cell id: name} of its notebook (_cell_names)
    grades: dict = field(init=False)
    comments: dict = field(init=False)

    def __post_init__(self) -> None:
        self.grades = {self.names[g.cell_id]: g for g in self.notebook.grades}
        self.comments = {self.names[c.cell_id]: c for c in self.notebook.comments}


def _save_answers(cells: _Cells, path: Path, autograded: set[str]) -> None:
    """The written answers' automatic scores and every answer's automatic comment, from the
    executed notebook at `path` (none: nothing was handed in, so every answer scores zero).
    A cell the gradebook does not know (an edited notebook) is left out."""
    executed = nbformat.read(path, as_version=4).cells if path.is_file() else []
    for cell in executed:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if not gid or gid in autograded:
            continue
        grade = cells.grades.get(gid)
        if utils.is_grade(cell) and grade is not None:
            grade.auto_score, _ = utils.determine_grade(cell)
            grade.needs_manual_grade = grade.manual_score is not None or grade.auto_score is None
        comment = cells.comments.get(gid)
        if (utils.is_solution(cell) or utils.is_task(cell)) and comment is not None:
            unchanged = cell.metadata.nbgrader.get("checksum") == utils.compute_checksum(cell)
            comment.auto_comment = NO_RESPONSE if unchanged and not utils.is_task(cell) else None
    if not executed:  # as nbgrader does for a notebook that was not submitted
        for name, grade in cells.grades.items():
            if name not in autograded:
                grade.auto_score, grade.needs_manual_grade = 0.0, False


def _find(finder, gid: str, name: str, assignment: str, student: str):
    try:
        return finder(gid, name, assignment, student)
    except MissingEntry:  # a cell the gradebook does not know (an edited notebook)
        return None


def late_penalties(course: Path) -> AssignLatePenalties:
    """nbgrader's late-penalty step with the course's LateSubmissionPlugin, found as `nbgrader
    autograde` run in the course folder finds it (a class named in nbgrader_config.py may live
    in a module there). ValueError when it cannot be loaded."""
    sys.path.insert(0, str(course))
    try:
        step = AssignLatePenalties(config=course_config(course))
        step.log = logging.getLogger("cnnkit.late")
        step.init_plugin()
    except ValueError:
        raise
    except Exception as exc:  # an import error, a bad class: the course's code may raise anything
        why = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        raise ValueError(f"the late-submission plugin of {course / CONFIG} fails: {why}") from None
    finally:
        sys.path.remove(str(course))
    return step


def _assign_late_penalty(notebook, step, submission, student: str) -> None:
    """A submitted notebook's late penalty, exactly as nbgrader's AssignLatePenalties sets it."""
    notebook.late_submission_penalty = None
    if submission.total_seconds_late > 0:
        penalty = step.plugin_inst.late_submission_penalty(
            student, notebook.score, submission.total_seconds_late
        )
        if penalty is not None:
            notebook.late_submission_penalty = step._check_late_penalty(notebook, penalty)


def standings(
    course: Path, assignment: str, items: list[Item], students: list[str]
) -> dict[str, Standing]:
    """{student: Standing} from the gradebook, for each of `students` it holds; written answers
    are its graded cells other than `items`."""
    autograded = {i.grade_id for i in items}
    found = {}
    with Gradebook(db_url(course)) as gb:
        for student in students:
            try:
                submission = gb.find_submission(assignment, student)
            except MissingEntry:
                continue
            written = [
                _written(gb, grade, notebook.name, assignment, student)
                for notebook in submission.notebooks
                for grade in notebook.grades
                if grade.name not in autograded
            ]
            found[student] = Standing(
                submission.timestamp,
                float(submission.total_seconds_late),
                float(submission.late_submission_penalty or 0.0),
                written,
                submission.duedate,
            )
    return found


def _written(gb, grade, notebook: str, assignment: str, student: str) -> WrittenAnswer:
    comment = _find(gb.find_comment, grade.name, notebook, assignment, student)
    text = ""
    if comment is not None:
        text = comment.manual_comment or comment.auto_comment or ""
    # nbgrader's Grade.score counts an ungraded answer as 0: this says "not graded yet"
    points = grade.manual_score if grade.manual_score is not None else grade.auto_score
    return WrittenAnswer(grade.name, notebook, points, float(grade.max_score), text)
