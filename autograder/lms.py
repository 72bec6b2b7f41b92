"""`cnnkit export`: an assignment's totals from the course's gradebook, in the CSV layout a
learning-management system imports.

The total of a student is nbgrader's: the autograded points and the graders' marks of written
answers, less the late penalty (never below zero), out of the assignment's maximum. A roster CSV
maps the kit's student ids to the LMS's; its columns are `student_id` (required) and any of
`name`, `lms_id`, `sis_id`, `section`, `email`, `id_number`. Every student of the gradebook and
every student of the roster gets a row or a problem: a student with a submission but no roster
row, and a roster student without a submission, are both reported, never dropped.

- canvas: Canvas's gradebook import: `Student,ID,SIS User ID,SIS Login ID,Section` (from the
  roster's name, lms_id, sis_id, email and section), then one column
  "<assignment> (<Canvas assignment id>)" (the id from `--lms-assignment-id`; without
  one, Canvas makes a new assignment of that name), and a "Points Possible" row first.
- moodle: Moodle's grade import: `ID number,Email address,<assignment>`; map one of the first
  two to the user field at import.
- csv: `student_id,name,lms_id,raw_score,late_penalty,total,max_score`.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry

from autograder.gradebook import db_url
from autograder.report import write_atomic

FORMATS = ("canvas", "moodle", "csv")
ROSTER_COLUMNS = ("student_id", "name", "lms_id", "sis_id", "section", "email", "id_number")


class ExportError(ValueError):
    """The export cannot be made: an unknown assignment or format, an unreadable roster."""


@dataclass(frozen=True)
class Total:
    """One student's total for the assignment, as nbgrader counts it."""

    student_id: str
    raw: float  # autograded points and graders' marks
    penalty: float  # late penalty
    max_score: float

    @property
    def total(self) -> float:
        return round(max(self.raw - self.penalty, 0.0), 6)


@dataclass
class Export:
    """What `export` wrote, and the students it could not match."""

    path: Path
    rows: int
    problems: list[str] = field(default_factory=list)


def totals(course: Path, assignment: str) -> dict[str, Total]:
    """{student: Total} of every submission of `assignment` in the course's gradebook."""
    with Gradebook(db_url(course)) as gb:
        try:
            gb.find_assignment(assignment)
        except MissingEntry:
            raise ExportError(
                f"the gradebook of {course} has no assignment {assignment!r}"
            ) from None
        found = {}
        for student in gb.students:
            try:
                sub = gb.find_submission(assignment, student.id)
            except MissingEntry:
                continue
            penalty = float(sub.late_submission_penalty or 0.0)
            found[student.id] = Total(student.id, float(sub.score), penalty, float(sub.max_score))
        return found


def read_roster(path: Path) -> dict[str, dict[str, str]]:
    """{student_id: row} of a roster CSV; ExportError naming what is wrong with it."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or "student_id" not in reader.fieldnames:
                raise ExportError(
                    f"{path}: the roster needs a student_id column, got {reader.fieldnames}"
                )
            rows = list(reader)
    except OSError as exc:
        raise ExportError(f"cannot read the roster {path}: {exc.strerror}") from None
    roster: dict[str, dict[str, str]] = {}
    for number, row in enumerate(rows, 2):
        sid = (row.get("student_id") or "").strip()
        if not sid:
            raise ExportError(f"{path}, line {number}: no student_id")
        if sid in roster:
            raise ExportError(f"{path}, line {number}: student {sid!r} is listed twice")
        roster[sid] = {k: (row.get(k) or "").strip() for k in ROSTER_COLUMNS}
    return roster


def export(
    course: Path,
    assignment: str,
    fmt: str,
    out: Path,
    roster: Path | None = None,
    lms_assignment_id: str = "",
    force: bool = False,
) -> Export:
    """Write the assignment's totals in format `fmt` to `out` (see the module's docstring)."""
    if Path(out).exists() and not force:
        raise ExportError(f"{out} exists; pass --force to replace it")
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    found = totals(Path(course), assignment)
    people = read_roster(roster) if roster else {sid: {"student_id": sid} for sid in found}
    problems = [
        f"{sid}: graded, but not in the roster {roster}: no row written"
        for sid in sorted(set(found) - set(people))
    ]
    problems += [
        f"{sid}: in the roster, but no submission in the gradebook: exported without a score"
        for sid in sorted(set(people) - set(found))
    ]
    maximum = next(iter(found.values())).max_score if found else 0.0
    rows = [(people[sid], found.get(sid)) for sid in sorted(people)]
    text = {"canvas": _canvas, "moodle": _moodle, "csv": _plain}[fmt](
        assignment, rows, maximum, lms_assignment_id
    )
    return Export(write_atomic(Path(out), text), len(rows), problems)


def _writer() -> tuple[io.StringIO, csv.writer]:
    buffer = io.StringIO()
    return buffer, csv.writer(buffer, lineterminator="\n")


def _score(total: Total | None) -> str:
    return "" if total is None else f"{total.total:g}"


def _canvas(assignment, rows, maximum, lms_id) -> str:
    buffer, w = _writer()
    column = f"{assignment} ({lms_id})" if lms_id else assignment
    w.writerow(["Student", "ID", "SIS User ID", "SIS Login ID", "Section", column])
    w.writerow(["Points Possible", "", "", "", "", f"{maximum:g}"])
    for person, total in rows:
        w.writerow(
            [
                person.get("name") or person["student_id"],
                person.get("lms_id", ""),
                person.get("sis_id", ""),
                person.get("email", ""),
                person.get("section", ""),
                _score(total),
            ]
        )
    return buffer.getvalue()


def _moodle(assignment, rows, maximum, lms_id) -> str:
    buffer, w = _writer()
    w.writerow(["ID number", "Email address", assignment])
    for person, total in rows:
        w.writerow(
            [
                person.get("id_number") or person["student_id"],
                person.get("email", ""),
                _score(total),
            ]
        )
    return buffer.getvalue()


def _plain(assignment, rows, maximum, lms_id) -> str:
    buffer, w = _writer()
    w.writerow(["student_id", "name", "lms_id", "raw_score", "late_penalty", "total", "max_score"])
    for person, total in rows:
        w.writerow(
            [
                person["student_id"],
                person.get("name", ""),
                person.get("lms_id", ""),
                "" if total is None else f"{total.raw:g}",
                "" if total is None else f"{total.penalty:g}",
                _score(total),
                f"{maximum:g}",
            ]
        )
    return buffer.getvalue()
