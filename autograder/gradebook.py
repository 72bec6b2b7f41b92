"""Record autograded scores in an nbgrader course's gradebook, so that formgrader's manual
grading of written answers and `nbgrader export` work on the same submissions.

Only the grader's main process writes here, once per batch, after every outcome is known.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry
from sqlalchemy.exc import SAWarning

from autograder.outcome import Item, Outcome


def db_url(course: Path) -> str:
    """The sqlite URL of the gradebook of nbgrader course folder `course`."""
    return f"sqlite:///{Path(course) / 'gradebook.db'}"


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


def update_gradebook(
    course: Path, assignment: str, items: list[Item], outcomes: list[Outcome]
) -> None:
    """Create each student and submission if missing and set the auto score of every graded
    item. Written answers keep whatever manual score formgrader holds."""
    notebook_of = {i.grade_id: i.notebook.removesuffix(".ipynb") for i in items}
    # nbgrader's add_submission trips an autoflush warning of SQLAlchemy's; the rows are right
    with Gradebook(db_url(course)) as gb, warnings.catch_warnings():
        warnings.simplefilter("ignore", SAWarning)
        for outcome in outcomes:
            gb.update_or_create_student(outcome.student_id)
            try:
                gb.find_submission(assignment, outcome.student_id)
            except MissingEntry:
                gb.add_submission(assignment, outcome.student_id)
            for result in outcome.items:
                grade = gb.find_grade(
                    result.grade_id, notebook_of[result.grade_id], assignment, outcome.student_id
                )
                grade.auto_score = result.points
            gb.db.commit()
