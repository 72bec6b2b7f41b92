"""The whole nbgrader cycle with `cnnkit grade` in it, with nbgrader's own commands and an exchange
in a temporary folder: release, fetch, submit (one student three hours late, one with blank
written answers), collect, grade, a grader's mark and comment, feedback released and fetched,
export. nbgrader's own autograde on a copy of the course is the oracle for the late penalty."""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook
from nbgrader.apps import NbGraderAPI

from autograder import grade as grading
from autograder.cli import main
from autograder.gradebook import NO_RESPONSE, course_config, db_url
from autograder.release import SOLUTIONS
from autograder.sandbox import Limits
from autograder.synthetic import answer_key, filled, independent

A1 = "a1_convolution"
NB = f"{A1}.ipynb"
COURSE_ID = "cnn101"
LIMITS = Limits(timeout=120, cell_timeout=30)
STUDENTS = ("alice", "bob", "carol", "dave")  # carol is late; dave leaves written answers blank
LATE = "carol"
BLANK = "dave"
MARK, COMMENT = 1.5, "Right idea; say why the parameters are shared."
CONFIG = '''
from nbgrader.plugins import LateSubmissionPlugin


class PointPerHour(LateSubmissionPlugin):
    """One point off for every full hour late."""

    def late_submission_penalty(self, student_id, score, total_seconds_late):
        return float(total_seconds_late // 3600)


c = get_config()
c.CourseDirectory.course_id = "{course_id}"
c.CourseDirectory.root = r"{root}"
c.Exchange.root = r"{exchange}"
c.AssignLatePenalties.plugin_class = PointPerHour
'''

needs_faketime = pytest.mark.skipif(
    shutil.which("faketime") is None, reason="faketime (apt-get install faketime) submits late"
)


def nbgrader(*args: str, cwd: Path, home: Path | None = None, late: bool = False) -> str:
    """Run an nbgrader command; its output. `late`: three and a half hours in the future."""
    env = dict(os.environ, HOME=str(home or cwd))
    command = [sys.executable, "-m", "nbgrader", *args]
    if late:
        command = ["faketime", "-f", "+210m", *command]
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def student_args(exchange: Path, student: str) -> list[str]:
    return ["--course", COURSE_ID, f"--Exchange.root={exchange}", f"--student={student}"]


def answered(student: str, released: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """What each student hands in: independently written answers (dave keeps the written
    answers as released)."""
    source = nbformat.read(SOLUTIONS / A1 / NB, as_version=4)
    styles = list(independent(A1).values()) or [answer_key(A1, source)]
    nb = filled(styles[STUDENTS.index(student) % len(styles)], released)
    if student == BLANK:
        blank = {
            c.metadata["nbgrader"]["grade_id"]: c.source for c in released.cells if _written(c)
        }
        for cell in nb.cells:
            if _written(cell):
                cell.source = blank[cell.metadata["nbgrader"]["grade_id"]]
    return nb


def _written(cell) -> bool:
    meta = cell.metadata.get("nbgrader", {})
    return cell.cell_type == "markdown" and bool(meta.get("solution"))


@pytest.fixture(scope="module")
def cycle(tmp_path_factory):
    root = tmp_path_factory.mktemp("cycle")
    course, exchange = root / "course", root / "exchange"
    course.mkdir()
    exchange.mkdir(mode=0o777)
    exchange.chmod(0o777)
    (course / "nbgrader_config.py").write_text(
        CONFIG.format(course_id=COURSE_ID, root=course, exchange=exchange)
    )
    assert main(["release", A1, "--course", str(course), "--no-proof"]) == 0
    due = datetime.now(timezone.utc) + timedelta(minutes=15)
    nbgrader("db", "assignment", "add", A1, f"--duedate={due:%Y-%m-%d %H:%M:%S} UTC", cwd=course)
    nbgrader("release_assignment", A1, cwd=course)
    homes = {}
    for student in STUDENTS:
        home = homes[student] = root / "home" / student
        home.mkdir(parents=True)
        nbgrader("fetch_assignment", A1, *student_args(exchange, student), cwd=home)
        path = home / A1 / NB
        nbformat.write(answered(student, nbformat.read(path, as_version=4)), path)
        nbgrader("submit", A1, *student_args(exchange, student), cwd=home, late=student == LATE)
    nbgrader("collect", A1, cwd=course)
    oracle = root / "oracle"
    shutil.copytree(course, oracle)
    (oracle / "nbgrader_config.py").write_text(
        CONFIG.format(course_id=COURSE_ID, root=oracle, exchange=exchange)
    )
    batch = grading.grade(A1, course / "submitted", course, limits=LIMITS, progress=False)
    with Gradebook(db_url(course)) as gb:
        gb.find_grade("answer_dense", A1, A1, "alice").manual_score = MARK
        gb.find_comment("answer_dense", A1, A1, "alice").manual_comment = COMMENT
        gb.db.commit()
    assert main(["feedback", A1, "--course", str(course)]) == 0
    nbgrader("release_feedback", A1, cwd=course)
    for student, home in homes.items():
        nbgrader("fetch_feedback", A1, *student_args(exchange, student), cwd=home)
    nbgrader("export", cwd=course)
    return course, oracle, homes, batch


def penalties(course: Path) -> dict[str, float]:
    with Gradebook(db_url(course)) as gb:
        return {s: float(gb.find_submission(A1, s).late_submission_penalty or 0) for s in STUDENTS}


@needs_faketime
def test_the_late_penalty_is_the_one_nbgrader_autograde_gives(cycle):
    course, oracle, _, batch = cycle
    nbgrader("autograde", A1, cwd=oracle)
    ours, theirs = penalties(course), penalties(oracle)
    assert ours == theirs and ours[LATE] == 3.0
    assert all(ours[s] == 0 for s in STUDENTS if s != LATE)
    assert batch.standings[LATE].late_penalty == 3.0
    assert 3 * 3600 < batch.standings[LATE].seconds_late < 4 * 3600


@needs_faketime
def test_formgrader_sees_every_submission_autograded_with_the_kits_score(cycle):
    course, _, _, batch = cycle
    api = NbGraderAPI(config=course_config(course))
    rows = {s["student"]: s for s in api.get_submissions(A1)}
    scores = {o.student_id: o.score for o in batch.outcomes}
    for student in STUDENTS:
        assert rows[student]["autograded"], student
        # formgrader's score is the raw one: autograded points and graders' marks, no penalty
        manual = MARK if student == "alice" else 0
        assert rows[student]["score"] == pytest.approx(scores[student] + manual), student


@needs_faketime
def test_only_filled_written_answers_wait_for_a_grader(cycle):
    course, _, _, batch = cycle
    autograded = {i.grade_id for i in batch.setup.items}
    with Gradebook(db_url(course)) as gb:
        for student in STUDENTS:
            for grade in gb.find_submission_notebook(A1, A1, student).grades:
                if grade.name in autograded:
                    assert not grade.needs_manual_grade, (student, grade.name)
                elif student == BLANK:
                    assert (grade.auto_score, grade.needs_manual_grade) == (0, False)
                    comment = gb.find_comment(grade.name, A1, A1, student)
                    assert comment.auto_comment == NO_RESPONSE
                elif student == "alice" and grade.name == "answer_dense":
                    assert grade.score == MARK
                else:
                    assert grade.auto_score is None and grade.needs_manual_grade, grade.name


@needs_faketime
def test_the_fetched_feedback_holds_the_mark_and_comment_and_no_hidden_test(
    cycle, hidden_test_lines
):
    _, _, homes, batch = cycle
    hidden = hidden_test_lines
    for student, home in homes.items():
        (page,) = (home / A1 / "feedback").glob(f"*/{A1}.html")
        text = page.read_text()
        assert not [line for line in hidden if line in text], student
        assert "Task 5.2: conv2d_backward" in text
    alice = next((homes["alice"] / A1 / "feedback").glob(f"*/{A1}.html")).read_text()
    assert COMMENT.replace("'", "&#x27;") in alice and "1.5 / 2" in alice
    carol = next((homes[LATE] / A1 / "feedback").glob(f"*/{A1}.html")).read_text()
    assert "after the due date" in carol and "Late penalty" in carol
    assert "(3 not graded yet)" in carol  # her written answers wait for a grader
    dave = next((homes[BLANK] / A1 / "feedback").glob(f"*/{A1}.html")).read_text()
    assert NO_RESPONSE in dave and "not graded yet" not in dave  # blank answers score zero


@needs_faketime
def test_the_export_has_every_student_with_the_penalty_applied(cycle):
    course, _, _, batch = cycle
    with open(course / "grades.csv", newline="") as f:
        rows = {r["student_id"]: r for r in csv.DictReader(f)}
    assert set(rows) == set(STUDENTS)
    assert float(rows[LATE]["late_submission_penalty"]) == 3.0
    carol = next(o for o in batch.outcomes if o.student_id == LATE)
    assert float(rows[LATE]["score"]) == pytest.approx(carol.score - 3.0)


@needs_faketime
def test_grades_csv_and_the_summary_show_the_lateness(cycle, capsys):
    course, _, _, batch = cycle
    with open(batch.out / "grades.csv", newline="") as f:
        rows = {r["student_id"]: r for r in csv.DictReader(f)}
    assert float(rows[LATE]["late_penalty"]) == 3.0 and float(rows[LATE]["seconds_late"]) > 3 * 3600
    assert rows["alice"]["timestamp"] and float(rows["alice"]["seconds_late"]) == 0
    from autograder.report import summary

    text = summary(batch.outcomes, 38, standings=batch.standings)
    assert re.search(r"Late \(1\)\n  carol +3 h \d+ min late, penalty 3", text)


@needs_faketime
def test_nbgrader_s_own_feedback_shows_no_hidden_test_either(cycle, hidden_test_lines):
    course = cycle[0]
    config = (course / "nbgrader_config.py").read_text()
    assert config.startswith(
        CONFIG.format(course_id=COURSE_ID, root=course, exchange=course.parent / "exchange")
    )
    assert "ClearHiddenTests" in config  # added by cnnkit, after what the course had
    elsewhere = "--CourseDirectory.feedback_directory=nbgrader-feedback"
    nbgrader("generate_feedback", A1, elsewhere, cwd=course)
    pages = list((course / "nbgrader-feedback").glob(f"*/{A1}/{A1}.html"))
    assert len(pages) == len(STUDENTS)
    hidden = hidden_test_lines
    for page in pages:
        assert not [line for line in hidden if line in page.read_text()], page


@needs_faketime
def test_a_regrade_keeps_the_graders_marks_and_comments(cycle):
    course, _, _, _ = cycle
    again = grading.grade(
        A1, course / "submitted", course, limits=LIMITS, force=True, progress=False
    )
    assert sorted(again.graded_now) == sorted(STUDENTS)
    with Gradebook(db_url(course)) as gb:
        assert gb.find_grade("answer_dense", A1, A1, "alice").manual_score == MARK
        assert gb.find_comment("answer_dense", A1, A1, "alice").manual_comment == COMMENT
    (dense,) = [w for w in again.standings["alice"].written if w.grade_id == "answer_dense"]
    assert (dense.points, dense.comment) == (MARK, COMMENT)
    assert again.standings[LATE].late_penalty == 3.0


@needs_faketime
def test_the_lms_export_totals_are_nbgrader_s_with_marks_and_penalties(cycle, tmp_path):
    course = cycle[0]
    out = tmp_path / "totals.csv"
    assert main(["export", A1, "--course", str(course), "--format", "csv", "--out", str(out)]) == 0
    with open(out, newline="") as f:
        ours = {r["student_id"]: r for r in csv.DictReader(f)}
    with open(course / "grades.csv", newline="") as f:  # nbgrader export's, made by the fixture
        theirs = {r["student_id"]: r for r in csv.DictReader(f)}
    assert set(ours) == set(STUDENTS)
    for student in STUDENTS:
        assert float(ours[student]["total"]) == pytest.approx(float(theirs[student]["score"]))
    assert float(ours[LATE]["late_penalty"]) == 3.0
