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
from collections import Counter
from pathlib import Path

from autograder.collect import unsafe_id_problem
from autograder.outcome import FLAGS, STATUSES, FlagNote, Item, ItemResult, Outcome

CSV_COLUMNS = ("student_id", "assignment", "score", "max_score", "status", "flags")
FEEDBACK_NOTE = "Written answers (manual grading) are graded separately by the course staff."
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
.note { margin-top: 1.5rem; color: #555; font-size: 0.9rem; }
""".strip()


def write_grades_csv(
    path: Path, assignment: str, items: list[Item], outcomes: list[Outcome]
) -> Path:
    """Write grades.csv at `path` atomically; the path written.

    One row per outcome, sorted by student_id: `student_id,assignment,score,max_score,status,flags`
    (flags `;`-joined in FLAGS order, empty when clean), then each item's points under its
    grade_id, in `items` order (empty when the outcome has no result for it). max_score is the
    assignment's (the sum of `items`), the same on every row.
    """
    max_score = _num(_total(items))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*CSV_COLUMNS, *(item.grade_id for item in items)])
    for outcome in sorted(outcomes, key=lambda o: o.student_id):
        results = _results(outcome)
        writer.writerow(
            [
                outcome.student_id,
                assignment,
                _num(outcome.score),
                max_score,
                outcome.status,
                ";".join(outcome.flag_names),
                *(
                    _num(results[item.grade_id].points) if item.grade_id in results else ""
                    for item in items
                ),
            ]
        )
    return _write_atomic(path, buffer.getvalue())


def write_feedback(folder: Path, assignment: str, items: list[Item], outcome: Outcome) -> Path:
    """Write `folder/<student_id>/<assignment>.html` atomically; the path written.

    A standalone page (inline CSS, no scripts, nothing fetched) giving the student's total out of
    the assignment's maximum, the status and its reason when it is not "graded", every flag with
    its reason, and per item its points out of its maximum and the messages explaining lost points.
    ValueError for a student id that is not a safe folder name.
    """
    path = _student_folder(folder, outcome) / f"{assignment}.html"
    e = html.escape
    title = f"{assignment}: {outcome.student_id}"
    body = [
        f"<h1>{e(assignment)}</h1>",
        f'<p class="student">Student: <strong>{e(outcome.student_id)}</strong></p>',
        f'<p class="total">Score: <strong>{_num(outcome.score)} / {_num(_total(items))}</strong>'
        "</p>",
    ]
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
    body.append("<h2>Autograded items</h2>")
    body.append("<table>")
    body.append("<thead><tr><th>Item</th><th>Points</th><th>Feedback</th></tr></thead>")
    body.append("<tbody>")
    results = _results(outcome)
    for item in items:
        result = results.get(item.grade_id)
        row_class = "full" if _full_marks(item, result) else "short"
        points = "&ndash;" if result is None else _num(result.points)
        messages = "".join(f'<div class="msg">{e(m)}</div>' for m in _messages(item, result))
        body.append(
            f'<tr class="{row_class}"><td>{e(item.grade_id)}</td>'
            f'<td class="points">{points} / {_num(item.max_points)}</td>'
            f"<td>{messages}</td></tr>"
        )
    body.append("</tbody>")
    body.append("</table>")
    body.append(f'<p class="note">{e(FEEDBACK_NOTE)}</p>')
    page = "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            # a second line of defence should escaping ever miss: no script, no fetch runs
            '<meta http-equiv="Content-Security-Policy" '
            "content=\"default-src 'none'; style-src 'unsafe-inline'\">",
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{e(title)}</title>",
            f"<style>\n{STYLE}\n</style>",
            "</head>",
            "<body>",
            *body,
            "</body>",
            "</html>",
            "",
        ]
    )
    return _write_atomic(path, page)


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
    return _write_atomic(path, text)


def summary(outcomes: list[Outcome], max_score: float, slowest: int = 5) -> str:
    """A plain-text summary for the terminal: submissions per status, a histogram of scores as a
    percentage of `max_score` in 10% bins, submissions per flag, and the `slowest` submissions
    by wall time (a reused earlier grading shows the seconds it took then)."""
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


def _write_atomic(path: Path, text: str) -> Path:
    """Write `text` as UTF-8 to `path` through a temporary file, so a reader never sees half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_bytes(text.encode("utf-8"))
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
