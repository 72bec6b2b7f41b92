"""The class at a glance, for the course staff: `grades/<assignment>/summary.html`.

What the class misunderstood, from the graded Outcomes and the gradebook's Standings: the
distribution of total scores and of each test's points (plots drawn with matplotlib, embedded
as PNG), the most frequent reasons points were lost per test, counted in students across the
class ("31 students: conv2d_backward: dw wrong with float32, ..., stride 2, padding 0"), the
flags, the late submissions and the slowest submissions. One standalone page: no script runs,
nothing is fetched.
"""

from __future__ import annotations

import base64
import html
import io
import re
from collections import Counter
from pathlib import Path

from autograder.gradebook import Standing
from autograder.outcome import FLAGS, Item, Outcome
from autograder.report import EPS, duration, html_page, write_atomic

TOP_REASONS = 5  # reasons shown per test
SLOWEST = 5
# Numbers that say what kind of case failed, kept when reasons are grouped; others become '#'
KEPT = re.compile(r"float(?:16|32|64)|int(?:32|64)|stride \d+|padding \d+|\d+ s (?:cell )?limit")
# a number of its own (not the 2 of conv2d), or a pair of sizes such as 3x3
NUMBER = re.compile(r"(?<![A-Za-z_\d.])\d+(?:x\d+|(?:\.\d+)?(?:e-?\d+)?)")
# Lines of a test's feedback that count cases rather than give a reason
COUNTS = re.compile(r"^\.\.\. and \d+ more failing cases$|: \d+ of \d+ cases passed$")


def reason_key(message: str) -> str:
    """A failure message with what differs between students' cases taken out: the error's size
    and any number that is not a dtype, a stride, a padding or a time limit."""
    head = re.sub(r"; max relative error \S+", "", message)
    kept = KEPT.findall(head)
    masked = NUMBER.sub("#", KEPT.sub("\0", head))
    for token in kept:
        masked = masked.replace("\0", token, 1)
    return masked


def lost_reasons(items: list[Item], outcomes: list[Outcome]) -> dict[str, list[tuple[int, str]]]:
    """{grade_id: [(students, reason)]}, the TOP_REASONS most frequent per test, most first."""
    counts: dict[str, Counter[str]] = {i.grade_id: Counter() for i in items}
    for outcome in outcomes:
        for result in outcome.items:
            if result.points >= result.max_points - EPS or result.grade_id not in counts:
                continue
            keys = {reason_key(m) for m in result.messages if not COUNTS.search(m)}
            counts[result.grade_id].update(keys)
    return {
        gid: [(n, key) for key, n in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))][
            :TOP_REASONS
        ]
        for gid, c in counts.items()
    }


def write_summary_html(
    path: Path,
    assignment: str,
    items: list[Item],
    outcomes: list[Outcome],
    standings: dict[str, Standing],
    titles: dict[str, str],
) -> Path:
    """Write the class summary page at `path` atomically; the path written."""
    e = html.escape
    maximum = sum(i.max_points for i in items)
    mean = sum(o.score for o in outcomes) / len(outcomes) if outcomes else 0.0
    body = [
        f"<h1>{e(assignment)}: the class at a glance</h1>",
        f"<p>{len(outcomes)} submissions; autograded maximum {maximum:g}; mean {mean:.2f} "
        f"({mean / maximum:.0%})</p>"
        if maximum
        else "<p>no autograded points</p>",
        "<h2>Scores</h2>",
        _image(_score_figure(outcomes, maximum), "histogram of the autograded scores"),
        "<h2>Each test</h2>",
        _image(
            _tests_figure(items, outcomes, titles),
            "share of students with full, some or no points per test",
        ),
        *_reasons_html(items, outcomes, titles),
        *_flags_html(outcomes),
        *_late_html(standings),
        *_slowest_html(outcomes),
    ]
    return write_atomic(path, html_page(f"{assignment}: class summary", body, STYLE))


STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem;
       color: #1b1b1b; line-height: 1.45; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.15rem; margin-top: 1.75rem; }
table { border-collapse: collapse; width: 100%; margin-bottom: 1rem; }
th, td { border: 1px solid #c8c8c8; padding: 0.35rem 0.6rem; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
td.n { text-align: right; white-space: nowrap; width: 6rem; }
.gid { color: #666; font-family: ui-monospace, monospace; font-size: 0.8rem; }
.reason { font-family: ui-monospace, monospace; font-size: 0.85rem; white-space: pre-wrap; }
img { max-width: 100%; }
""".strip()


def _image(figure, alt: str) -> str:
    """An <img> holding the figure as an embedded PNG (no date or software in it)."""
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    plt.close(figure)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _score_figure(outcomes: list[Outcome], maximum: float):
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(8, 3))
    ax = figure.subplots()
    scores = [o.score for o in outcomes]
    ax.hist(scores, bins=20, range=(0, maximum or 1), color="#3b6ea5", edgecolor="white")
    ax.set_xlabel(f"autograded score (of {maximum:g})")
    ax.set_ylabel("students")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.spines[["top", "right"]].set_visible(False)
    return figure


def _tests_figure(items: list[Item], outcomes: list[Outcome], titles: dict[str, str]):
    """Per test, the share of students with full points, some points and none."""
    from matplotlib.figure import Figure

    shares = []
    for item in items:
        got = [r.points for o in outcomes for r in o.items if r.grade_id == item.grade_id]
        full = sum(p >= item.max_points - EPS for p in got)
        none = sum(p <= EPS for p in got)
        n = max(len(got), 1)
        shares.append((full / n, (len(got) - full - none) / n, none / n))
    figure = Figure(figsize=(8, 0.35 * len(items) + 1))
    ax = figure.subplots()
    labels = [titles.get(i.grade_id, i.grade_id) + f"  [{i.grade_id}]" for i in items]
    left = [0.0] * len(items)
    for k, (name, color) in enumerate(
        (("full points", "#2e7d32"), ("some points", "#f9a825"), ("no points", "#c62828"))
    ):
        values = [s[k] for s in shares]
        ax.barh(labels, values, left=left, color=color, label=name)
        left = [a + b for a, b in zip(left, values, strict=True)]
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of students")
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False)
    ax.tick_params(axis="y", labelsize=8)
    return figure


def _reasons_html(items: list[Item], outcomes: list[Outcome], titles: dict[str, str]) -> list[str]:
    e = html.escape
    lines = ["<h2>Why points were lost</h2>", "<table>"]
    lines.append("<thead><tr><th>Test</th><th>Students</th><th>Reason</th></tr></thead><tbody>")
    reasons = lost_reasons(items, outcomes)
    shown = False
    for item in items:
        title = e(titles.get(item.grade_id, item.grade_id))
        rows = reasons[item.grade_id]
        for k, (n, reason) in enumerate(rows):
            test = (
                f'<td rowspan="{len(rows)}">{title}<div class="gid">{e(item.grade_id)}</div></td>'
                if k == 0
                else ""
            )
            lines.append(
                f'<tr>{test}<td class="n">{n}</td><td class="reason">{e(reason)}</td></tr>'
            )
            shown = True
    if not shown:
        return ["<h2>Why points were lost</h2>", "<p>No test lost points.</p>"]
    return [*lines, "</tbody></table>"]


def _flags_html(outcomes: list[Outcome]) -> list[str]:
    e = html.escape
    flagged = {
        name: sorted(o.student_id for o in outcomes if name in o.flag_names) for name in FLAGS
    }
    rows = [
        f'<tr><td>{e(name)}</td><td class="n">{len(ids)}</td><td>{e(", ".join(ids))}</td></tr>'
        for name, ids in flagged.items()
        if ids
    ]
    if not rows:
        return ["<h2>Flags</h2>", "<p>No submission was flagged.</p>"]
    head = "<thead><tr><th>Flag</th><th>Students</th><th>Who</th></tr></thead><tbody>"
    return ["<h2>Flags</h2>", "<table>", head, *rows, "</tbody></table>"]


def _late_html(standings: dict[str, Standing]) -> list[str]:
    e = html.escape
    late = sorted((s, st) for s, st in standings.items() if st.seconds_late > 0)
    if not late:
        return ["<h2>Late submissions</h2>", "<p>None.</p>"]
    head = "<thead><tr><th>Student</th><th>Late by</th><th>Penalty</th></tr></thead><tbody>"
    rows = [
        f"<tr><td>{e(s)}</td><td>{duration(st.seconds_late)}</td>"
        f'<td class="n">{st.late_penalty:g}</td></tr>'
        for s, st in late
    ]
    return [f"<h2>Late submissions ({len(late)})</h2>", "<table>", head, *rows, "</tbody></table>"]


def _slowest_html(outcomes: list[Outcome]) -> list[str]:
    e = html.escape
    ranked = sorted(outcomes, key=lambda o: (-o.seconds, o.student_id))[:SLOWEST]
    rows = [
        f'<tr><td>{e(o.student_id)}</td><td class="n">{o.seconds:.1f} s</td>'
        f"<td>{e(o.status)}</td></tr>"
        for o in ranked
    ]
    head = "<thead><tr><th>Student</th><th>Grading time</th><th>Status</th></tr></thead><tbody>"
    return ["<h2>Slowest submissions</h2>", "<table>", head, *rows, "</tbody></table>"]
