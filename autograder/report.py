"""The reports written from graded Outcomes: grades.csv for the course staff, an HTML feedback page
and a Gradescope results.json per student, and a plain-text summary for the terminal.

The files are functions of the Outcomes and Items alone (no dates, no wall times), so re-running
over unchanged submissions rewrites identical bytes. Student text (messages, reasons, ids) is
escaped wherever it is placed into HTML.
"""

from __future__ import annotations

import csv
import html
import io
import json
import os
import threading
from collections import Counter
from pathlib import Path

from autograder.collect import unsafe_id_problem
from autograder.gradebook import Standing, WrittenAnswer
from autograder.outcome import FLAGS, STATUSES, FlagNote, Item, ItemResult, Outcome

CSV_COLUMNS = ("student_id", "assignment", "score", "max_score", "status", "flags")
LATE_COLUMNS = ("timestamp", "seconds_late", "late_penalty")
FEEDBACK_NOTE = "Written answers are graded by the course staff; a mark shows here once given."
PENDING = "not graded yet"  # a written answer a grader has not marked
NOT_GRADED = "not graded"  # an item the outcome has no result for (e.g. an invalid submission)
HISTOGRAM_BINS = 10
BAR_WIDTH = 40  # longest '#' bar in the summary; longer bars are scaled down to it
EPS = 1e-9  # float slack when comparing points, so 0.1 + 0.2 earns the full 0.3

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 52rem; margin: 2rem auto; padding: 0 1rem;
       color: #1b1b1b; line-height: 1.45; }
h1 { font-size: 1.5rem; margin-bottom: 0.25rem; }
h2 { font-size: 1.15rem; margin-top: 1.75rem; }
.total { font-size: 1.25rem; }
.status { padding: 0.5rem 0.75rem; border-left: 4px solid #b3261e; background: #fbeaea; }
.flags li { margin-bottom: 0.35rem; }
table { border-collapse: collapse; width: 100%; }
th, td { border: 1px solid #c8c8c8; padding: 0.4rem 0.6rem; text-align: left;
         vertical-align: top; }
th { background: #f0f0f0; }
td.points { white-space: nowrap; }
tr.full td.points { color: #1e6b2f; }
tr.short td.points { color: #b3261e; }
.msg { white-space: pre-wrap; font-family: ui-monospace, monospace; font-size: 0.9rem; }
.gid { color: #666; font-family: ui-monospace, monospace; font-size: 0.8rem; }
table.totals { width: auto; margin-bottom: 0.75rem; }
.late { color: #7a4b00; }
.note { margin-top: 1.5rem; color: #555; font-size: 0.9rem; }
""".strip()


def write_grades_csv(
    path: Path,
    assignment: str,
    items: list[Item],
    outcomes: list[Outcome],
    standings: dict[str, Standing] | None = None,
    similar: dict[str, list[str]] | None = None,
) -> Path:
    """Write grades.csv at `path` atomically; the path written.

    One row per outcome, sorted by student_id: `student_id,assignment,score,max_score,status,flags`
    (score: the autograded points, before any late penalty; flags `;`-joined in FLAGS order, then
    the student's flags of `similar` (autograder.similarity; they cost no points), empty when
    clean), then `timestamp,seconds_late,late_penalty` from the gradebook's
    `standings` (empty when it has none), then each item's points under its grade_id, in
    `items` order (empty when the outcome has no result for it). max_score is the assignment's
    autograded maximum (the sum of `items`), the same on every row.
    """
    standings = standings or {}
    max_score = _num(_total(items))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*CSV_COLUMNS, *LATE_COLUMNS, *(item.grade_id for item in items)])
    for outcome in sorted(outcomes, key=lambda o: o.student_id):
        results = _results(outcome)
        writer.writerow(
            [
                outcome.student_id,
                assignment,
                _num(outcome.score),
                max_score,
                outcome.status,
                ";".join([*outcome.flag_names, *(similar or {}).get(outcome.student_id, [])]),
                *_late_cells(standings.get(outcome.student_id)),
                *(
                    _num(results[item.grade_id].points) if item.grade_id in results else ""
                    for item in items
                ),
            ]
        )
    return write_atomic(path, buffer.getvalue())


def _late_cells(standing: Standing | None) -> list[str]:
    """timestamp (ISO, UTC), seconds late and late penalty of one row of grades.csv."""
    if standing is None or standing.timestamp is None:
        return ["", "", ""] if standing is None else ["", "0", _num(standing.late_penalty)]
    return [
        standing.timestamp.isoformat() + "Z",  # nbgrader keeps UTC times without a zone
        _num(round(standing.seconds_late, 3)),
        _num(standing.late_penalty),
    ]


def write_feedback(
    folder: Path,
    assignment: str,
    items: list[Item],
    outcome: Outcome,
    standing: Standing | None = None,
    titles: dict[str, str] | None = None,
) -> list[Path]:
    """Write `folder/<student_id>/<assignment>/<notebook>.html` for each notebook of `items`,
    atomically, where `nbgrader release_feedback` looks for it (`folder`: the course's
    feedback/); the paths written.

    A standalone page (inline CSS, no scripts, nothing fetched) giving the student's total (the
    autograder's points, the written answers' marks, the late penalty), when the submission
    came in and how late, the status and its reason when it is not "graded", every flag with
    its reason, per task (titled as in the notebook, `titles`) the points and why points were
    lost, and the written answers with the grader's marks and comments. Never hidden test code,
    inputs or expected values: the messages come from the grader, which gives none.
    ValueError for a student id that is not a safe folder name.
    """
    standing = standing or Standing()
    student = _student_folder(folder, outcome) / assignment
    notebooks = list(dict.fromkeys(item.notebook for item in items))
    return [
        write_atomic(
            student / f"{name.removesuffix('.ipynb')}.html",
            _feedback_page(assignment, items, outcome, standing, titles or {}, name, notebooks),
        )
        for name in notebooks
    ]


def _feedback_page(
    assignment: str,
    items: list[Item],
    outcome: Outcome,
    standing: Standing,
    titles: dict[str, str],
    notebook: str,
    notebooks: list[str],
) -> str:
    """The feedback page of one notebook of a submission (the total is the submission's)."""
    e = html.escape
    body = [
        f"<h1>{e(assignment)}</h1>",
        f'<p class="student">Student: <strong>{e(outcome.student_id)}</strong></p>',
        *_totals_html(items, outcome, standing),
    ]
    if len(notebooks) > 1:
        body.append(f"<p>This page: <code>{e(notebook)}</code>.</p>")
    if outcome.status != "graded":
        body.append(
            f'<p class="status">Status: <strong>{e(outcome.status)}</strong>'
            + (f" &mdash; {e(outcome.reason)}" if outcome.reason else "")
            + "</p>"
        )
    if outcome.flags:
        body.append("<h2>Flags</h2>")
        body.append('<ul class="flags">')
        body.extend(f"<li>{_flag_html(flag)}</li>" for flag in outcome.flags)
        body.append("</ul>")
    body += _items_html([i for i in items if i.notebook == notebook], outcome, titles)
    stem = notebook.removesuffix(".ipynb")
    body += _written_html([w for w in standing.written if w.notebook == stem], titles)
    return html_page(f"{assignment}: {outcome.student_id}", body)


def _totals_html(items: list[Item], outcome: Outcome, standing: Standing) -> list[str]:
    """The total and what it is made of, and when the submission came in."""
    written = standing.written
    marked = sum(w.points for w in written if w.points is not None)
    total = max(outcome.score + marked - standing.late_penalty, 0.0)
    maximum = _total(items) + sum(w.max_points for w in written)
    rows = [("Autograded tests", f"{_num(outcome.score)} / {_num(_total(items))}")]
    if written:
        pending = sum(w.points is None for w in written)
        text = f"{_num(marked)} / {_num(sum(w.max_points for w in written))}"
        rows.append(("Written answers", text + (f" ({pending} not graded yet)" if pending else "")))
    if standing.late_penalty:
        rows.append(("Late penalty", f"&minus;{_num(standing.late_penalty)}"))
    label = "Total so far" if any(w.points is None for w in written) else "Total"
    lines = [
        f'<p class="total">{label}: <strong>{_num(round(total, 6))} / {_num(maximum)}</strong></p>',
        '<table class="totals"><tbody>',
        *(f"<tr><th>{label}</th><td>{value}</td></tr>" for label, value in rows),
        "</tbody></table>",
    ]
    if standing.timestamp is not None:
        when = f"Submitted {standing.timestamp:%Y-%m-%d %H:%M:%S} UTC"
        late = standing.seconds_late > 0
        if late:
            when += f", {duration(standing.seconds_late)} after the due date"
        if standing.due is not None:
            when += f" (due {standing.due:%Y-%m-%d %H:%M:%S} UTC)"
        lines.append(f'<p class="{"late" if late else "when"}">{when}.</p>')
    return lines


def duration(seconds: float) -> str:
    """'2 days 3 h 5 min', '3 h 0 min', '12 min', '40 s'."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days} day{'s' if days > 1 else ''} {hours} h {minutes} min"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min" if minutes else f"{secs} s"


def _items_html(items: list[Item], outcome: Outcome, titles: dict[str, str]) -> list[str]:
    e = html.escape
    lines = [
        "<h2>Autograded tests</h2>",
        "<table>",
        "<thead><tr><th>Task</th><th>Points</th><th>Feedback</th></tr></thead>",
        "<tbody>",
    ]
    results = _results(outcome)
    for item in items:
        result = results.get(item.grade_id)
        row_class = "full" if _full_marks(item, result) else "short"
        points = "&ndash;" if result is None else _num(result.points)
        messages = "".join(f'<div class="msg">{e(m)}</div>' for m in _messages(item, result))
        lines.append(
            f'<tr class="{row_class}"><td>{_task_html(item.grade_id, titles)}</td>'
            f'<td class="points">{points} / {_num(item.max_points)}</td>'
            f"<td>{messages}</td></tr>"
        )
    return [*lines, "</tbody>", "</table>"]


def _written_html(written: list[WrittenAnswer], titles: dict[str, str]) -> list[str]:
    if not written:
        return []
    e = html.escape
    lines = [
        "<h2>Written answers</h2>",
        "<table>",
        "<thead><tr><th>Question</th><th>Points</th><th>Comment</th></tr></thead>",
        "<tbody>",
    ]
    for answer in written:
        points = "&ndash;" if answer.points is None else _num(answer.points)
        notes = ([PENDING] if answer.points is None else []) + (
            [answer.comment] * bool(answer.comment)
        )
        comment = "".join(f'<div class="msg">{e(note)}</div>' for note in notes)
        lines.append(
            f"<tr><td>{_task_html(answer.grade_id, titles)}</td>"
            f'<td class="points">{points} / {_num(answer.max_points)}</td><td>{comment}</td></tr>'
        )
    return [*lines, "</tbody>", "</table>", f'<p class="note">{e(FEEDBACK_NOTE)}</p>']


def _task_html(grade_id: str, titles: dict[str, str]) -> str:
    """A task's title as the notebook words it, with the cell's grade_id beneath."""
    e = html.escape
    title = titles.get(grade_id)
    if not title:
        return e(grade_id)
    return f'{e(title)}<div class="gid">{e(grade_id)}</div>'


def html_page(title: str, body: list[str], style: str = STYLE) -> str:
    """A standalone HTML page: inline CSS, and a policy that lets no script run and nothing
    load, a second line of defence should escaping ever miss."""
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta http-equiv="Content-Security-Policy" '
            "content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">",
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{html.escape(title)}</title>",
            f"<style>\n{style}\n</style>",
            "</head>",
            "<body>",
            *body,
            "</body>",
            "</html>",
            "",
        ]
    )


def write_gradescope(folder: Path, items: list[Item], outcome: Outcome) -> Path:
    """Write `folder/<student_id>/results.json` atomically in Gradescope's autograder results
    format; the path written.

    Top level: the total "score", an "output" text with the status, its reason and the flags with
    theirs, visible to the student, with stdout hidden. "tests": one per item, named by grade_id,
    with its score, max_score, "passed"/"failed" status and the messages as output.
    ValueError for a student id that is not a safe folder name.
    """
    path = _student_folder(folder, outcome) / "results.json"
    results = _results(outcome)
    # floats throughout: records equal as numbers (3 == 3.0) must give equal bytes
    tests = []
    for item in items:
        result = results.get(item.grade_id)
        tests.append(
            {
                "name": item.grade_id,
                "score": 0.0 if result is None else float(result.points),
                "max_score": float(item.max_points),
                "status": "passed" if _full_marks(item, result) else "failed",
                "output": "\n".join(_messages(item, result)),
                "visibility": "visible",
            }
        )
    lines = [f"Status: {outcome.status}"]
    if outcome.reason:
        lines.append(f"Reason: {outcome.reason}")
    if outcome.flags:
        lines.append("Flags:")
        lines.extend(f"- {_flag_text(flag)}" for flag in outcome.flags)
    data = {
        "score": float(outcome.score),
        "output": "\n".join(lines),
        "visibility": "visible",
        "stdout_visibility": "hidden",  # the grader's own log is for the staff only
        "tests": tests,
    }
    text = json.dumps(data, indent=2, sort_keys=True) + "\n"
    return write_atomic(path, text)


def summary(
    outcomes: list[Outcome],
    max_score: float,
    slowest: int = 5,
    standings: dict[str, Standing] | None = None,
) -> str:
    """A plain-text summary for the terminal: submissions per status, a histogram of scores as a
    percentage of `max_score` in 10% bins, submissions per flag, the late submissions with
    their penalties (from the gradebook's `standings`), and the `slowest` submissions by wall
    time (a reused earlier grading shows the seconds it took then)."""
    lines = [f"{len(outcomes)} submissions, max score {_num(max_score)}"]
    if outcomes and max_score > 0:
        mean = sum(o.score for o in outcomes) / len(outcomes)
        lines[0] += f", mean {_num(round(mean, 2))} ({mean / max_score:.0%})"

    statuses = Counter(o.status for o in outcomes)
    lines += ["", "Status"]
    lines += [f"  {status:<10} {statuses[status]:>5}" for status in STATUSES]

    lines += ["", "Score (% of max)"]
    if max_score > 0:
        bins = [0] * HISTOGRAM_BINS
        for outcome in outcomes:
            percent = 100 * outcome.score / max_score
            bins[min(max(int((percent + EPS) // 10), 0), HISTOGRAM_BINS - 1)] += 1
        scale = min(1.0, BAR_WIDTH / max(max(bins), 1))
        for i, count in enumerate(bins):
            bar = "#" * (max(1, round(count * scale)) if count else 0)
            label = f"{10 * i}-{10 * (i + 1)}%"
            lines.append(f"  {label:>8} {count:>5} {bar}".rstrip())
    else:
        lines.append("  (no points to distribute)")

    flags = Counter(name for o in outcomes for name in o.flag_names)
    lines += ["", "Flags"]
    lines += [f"  {name:<18} {flags[name]:>5}" for name in FLAGS if flags[name]] or ["  (none)"]

    late = sorted((student, st) for student, st in (standings or {}).items() if st.seconds_late > 0)
    if late:
        lines += ["", f"Late ({len(late)})"]
        width = max(len(student) for student, _ in late)
        lines += [
            f"  {student:<{width}} {duration(st.seconds_late):>16} late, "
            f"penalty {_num(st.late_penalty)}"
            for student, st in late
        ]

    if slowest > 0 and outcomes:
        lines += ["", "Slowest"]
        ranked = sorted(outcomes, key=lambda o: (-o.seconds, o.student_id))[:slowest]
        width = max(len(o.student_id) for o in ranked)
        lines += [f"  {o.student_id:<{width}} {o.seconds:>8.1f} s" for o in ranked]
    return "\n".join(lines)


def _num(x: float) -> str:
    """Compact and stable: 3.0 -> "3", 2.5 -> "2.5"; adding 0.0 turns -0.0 into 0."""
    return f"{x + 0.0:.10g}"


def _total(items: list[Item]) -> float:
    return round(sum(item.max_points for item in items), 6)


def _results(outcome: Outcome) -> dict[str, ItemResult]:
    return {r.grade_id: r for r in outcome.items}


def _full_marks(item: Item, result: ItemResult | None) -> bool:
    return result is not None and result.points >= item.max_points - EPS


def _messages(item: Item, result: ItemResult | None) -> list[str]:
    """The lines shown for an item: its messages, else "passed" or why there are no points."""
    if result is None:
        return [NOT_GRADED]
    if result.messages:
        return list(result.messages)
    return ["passed"] if _full_marks(item, result) else []


def _flag_text(flag: FlagNote) -> str:
    cell = f" (cell {flag.cell})" if flag.cell else ""
    return f"{flag.name}{cell}: {flag.reason}"


def _flag_html(flag: FlagNote) -> str:
    e = html.escape
    cell = f" (cell <code>{e(flag.cell)}</code>)" if flag.cell else ""
    return f"<strong>{e(flag.name)}</strong>{cell}: {e(flag.reason)}"


def _student_folder(folder: Path, outcome: Outcome) -> Path:
    """The student's folder under `folder`; the id must not lead the path anywhere else."""
    problem = unsafe_id_problem(outcome.student_id)
    if problem:
        raise ValueError(f"student id {outcome.student_id!r} {problem}: no report written")
    return folder / outcome.student_id


def write_atomic(path: Path, text: str | bytes) -> Path:
    """Write `text` (as UTF-8 if a str) to `path` through a temporary file, so a reader never
    sees half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # a name of this thread's own: two writers of one path never share a temporary file
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        tmp.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
