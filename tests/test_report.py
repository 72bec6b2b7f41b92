"""autograder.report: grades.csv, the HTML feedback page, Gradescope's results.json and the
terminal summary, all written from Outcomes alone, byte-identical on a rewrite, student text
escaped."""

from __future__ import annotations

import csv
import json
import re
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path

import jsonschema
import pytest

from autograder import report
from autograder.gradebook import Standing, WrittenAnswer
from autograder.outcome import FlagNote, Item, ItemResult, Outcome

A = "a1_convolution"
NB = "a1_convolution.ipynb"
ITEMS = [Item("conv_forward", NB, 3.0), Item("conv_backward", NB, 2.5), Item("conv_pool", NB, 1.0)]
HOSTILE = "<script>alert(1)</script>"


def graded() -> Outcome:
    """alice: full marks on two items, 1.5 of 2.5 on conv_backward (score 5.5 of 6.5)."""
    return Outcome(
        "alice",
        A,
        "graded",
        items=[
            ItemResult("conv_forward", 3.0, 3.0),
            ItemResult("conv_backward", 1.5, 2.5, ["case 2: dx has shape (2, 3), expected (3, 2)"]),
            ItemResult("conv_pool", 1.0, 1.0),
        ],
        seconds=40.0,
    )


def invalid() -> Outcome:
    """bob: nothing to grade, so no item results at all."""
    return Outcome("bob", A, "invalid", reason=f"no folder {A}/ in bob/", seconds=0.25)


def flagged() -> Outcome:
    """`carol & co`: a hostile message, two flags given out of FLAGS order, no conv_pool result."""
    return Outcome(
        "carol & co",
        A,
        "graded",
        items=[
            ItemResult("conv_forward", 0.0, 3.0, [HOSTILE, "case 1: raised ValueError"]),
            ItemResult("conv_backward", 2.5, 2.5),
        ],
        flags=[
            FlagNote("reference-use", "calls cnn_core.functional.conv2d_forward", "conv_forward"),
            FlagNote("tampered", "the test cell conv_pool was edited", "conv_pool"),
        ],
        seconds=12.5,
    )


def timed_out() -> Outcome:
    """dave: killed at the time limit after conv_forward."""
    return Outcome(
        "dave",
        A,
        "timeout",
        items=[ItemResult("conv_forward", 3.0, 3.0)],
        flags=[FlagNote("timeout", "exceeded 600 s")],
        reason="exceeded the time limit of 600 s",
        seconds=600.0,
    )


def everyone() -> list[Outcome]:
    return [flagged(), timed_out(), invalid(), graded()]  # not in student_id order


# --------------------------------------------------------------------------- grades.csv


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def test_csv_header_is_the_fixed_columns_then_the_items_in_order(tmp_path: Path) -> None:
    rows = read_csv(report.write_grades_csv(tmp_path / "grades.csv", A, ITEMS, everyone()))
    assert rows[0] == [
        "student_id",
        "assignment",
        "score",
        "max_score",
        "status",
        "flags",
        "timestamp",
        "seconds_late",
        "late_penalty",
        "conv_forward",
        "conv_backward",
        "conv_pool",
    ]


def test_csv_rows_sorted_by_student_with_scores_flags_and_item_points(tmp_path: Path) -> None:
    late = Standing(datetime(2026, 12, 6, 14, 30), seconds_late=5400.5, late_penalty=1.5)
    standings = {"alice": late, "dave": Standing()}
    path = report.write_grades_csv(tmp_path / "grades.csv", A, ITEMS, everyone(), standings)
    rows = read_csv(path)
    assert rows[1:] == [
        ["alice", A, "5.5", "6.5", "graded", "", "2026-12-06T14:30:00Z", "5400.5", "1.5"]
        + ["3", "1.5", "1"],
        # invalid: no item results, yet the assignment's max_score; not in the gradebook
        ["bob", A, "0", "6.5", "invalid", "", "", "", "", "", "", ""],
        # flags in FLAGS order; no conv_pool result: an empty cell, not 0
        ["carol & co", A, "2.5", "6.5", "graded", "tampered;reference-use", "", "", ""]
        + ["0", "2.5", ""],
        ["dave", A, "3", "6.5", "timeout", "timeout", "", "0", "0", "3", "", ""],
    ]


def test_csv_rewrite_is_byte_identical_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = report.write_grades_csv(tmp_path / "out" / "grades.csv", A, ITEMS, everyone())
    first = path.read_bytes()
    # the same records read back from their JSON, in another order and with other wall times
    again = [Outcome.from_json(o.to_json()) for o in reversed(everyone())]
    for o in again:
        o.seconds += 1.0
    report.write_grades_csv(path, A, ITEMS, again)
    assert path.read_bytes() == first
    assert sorted(p.name for p in path.parent.iterdir()) == ["grades.csv"]


# --------------------------------------------------------------------------- feedback page


class Page(HTMLParser):
    """The text of a page, its table rows (cell texts), and every tag and attribute used."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: set[str] = set()
        self.attrs: set[str] = set()
        self.rows: list[list[str]] = []
        self.text: list[str] = []
        self._cell: list[str] | None = None
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attrs.update(name for name, _ in attrs)
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "div" and self._cell:
            self._cell.append("\n")  # each message is its own block

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)


def feedback(
    tmp_path: Path, outcome: Outcome, standing: Standing | None = None, titles=None
) -> tuple[str, Page]:
    (path,) = report.write_feedback(tmp_path, A, ITEMS, outcome, standing, titles)
    # where nbgrader release_feedback looks: feedback/<student>/<assignment>/<notebook>.html
    assert path == tmp_path / outcome.student_id / A / f"{A}.html"
    text = path.read_text(encoding="utf-8")
    return text, Page(text)


def test_feedback_lists_each_item_with_its_points_and_messages(tmp_path: Path) -> None:
    _, page = feedback(tmp_path, graded())
    assert page.rows == [
        ["Autograded tests", "5.5 / 6.5"],
        ["Task", "Points", "Feedback"],
        ["conv_forward", "3 / 3", "passed"],
        ["conv_backward", "1.5 / 2.5", "case 2: dx has shape (2, 3), expected (3, 2)"],
        ["conv_pool", "1 / 1", "passed"],
    ]
    text = "".join(page.text)
    assert "alice" in text and A in text
    assert "Total: 5.5 / 6.5" in text
    assert "Status:" not in text  # a graded submission has no status to explain


def test_feedback_titles_tasks_and_gives_marks_comments_lateness_and_the_total(
    tmp_path: Path,
) -> None:
    standing = Standing(
        timestamp=datetime(2026, 12, 6, 14, 30, 5),
        seconds_late=3 * 3600 + 120,
        due=datetime(2026, 12, 6, 11, 28, 5),
        late_penalty=2.0,
        written=[
            WrittenAnswer("q1", "a1_convolution", 1.5, 2.0, "Say why <b>shared</b> weights help."),
            WrittenAnswer("q2", "a1_convolution", None, 3.0, "No response."),
        ],
    )
    titles = {"conv_backward": "Task 5.2: conv2d_backward", "q1": "Question 2.3"}
    raw, page = feedback(tmp_path, graded(), standing, titles)
    assert page.rows[:3] == [
        ["Autograded tests", "5.5 / 6.5"],
        ["Written answers", "1.5 / 5 (1 not graded yet)"],
        ["Late penalty", "−2"],
    ]
    text = "".join(page.text)
    assert "Total so far: 5 / 11.5" in text  # 5.5 + 1.5 - 2, with one answer still to mark
    assert (
        "Submitted 2026-12-06 14:30:05 UTC, 3 h 2 min after the due date "
        "(due 2026-12-06 11:28:05 UTC)." in text
    )
    assert ["Task 5.2: conv2d_backward\nconv_backward", "1.5 / 2.5"] == page.rows[5][:2]
    assert ["Question 2.3\nq1", "1.5 / 2", "Say why <b>shared</b> weights help."] in page.rows
    assert ["q2", "– / 3", "not graded yet\nNo response."] in page.rows
    assert "&lt;b&gt;shared" in raw


def test_feedback_escapes_hostile_messages_and_student_ids(tmp_path: Path) -> None:
    raw, page = feedback(tmp_path, flagged())
    assert "<script" not in raw.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in raw
    assert "carol &amp; co" in raw and "carol & co" not in raw
    # what the reader sees is the text itself, each message on its own line
    assert page.rows[2] == ["conv_forward", "0 / 3", f"{HOSTILE}\ncase 1: raised ValueError"]
    assert page.rows[4][0] == "conv_pool" and "not graded" in page.rows[4][2]
    text = "".join(page.text)
    for flag in flagged().flags:
        assert flag.name in text and flag.reason in text


def test_feedback_is_standalone_without_scripts_or_external_resources(tmp_path: Path) -> None:
    raw, page = feedback(tmp_path, flagged())
    assert "script" not in page.tags and "link" not in page.tags and "img" not in page.tags
    assert not page.attrs & {"src", "href", "onload", "onclick", "onerror"}
    assert "://" not in raw and "@import" not in raw and "url(" not in raw
    assert "style" in page.tags  # inline CSS


def test_feedback_shows_a_status_other_than_graded_with_its_reason(tmp_path: Path) -> None:
    _, page = feedback(tmp_path, invalid())
    text = "".join(page.text)
    assert "Status: invalid" in text and f"no folder {A}/ in bob/" in text
    assert "Total: 0 / 6.5" in text
    assert [row[1:] for row in page.rows[2:]] == [
        ["– / 3", "not graded"],
        ["– / 2.5", "not graded"],
        ["– / 1", "not graded"],
    ]


def test_feedback_rewrite_is_byte_identical(tmp_path: Path) -> None:
    (first,) = report.write_feedback(tmp_path / "a", A, ITEMS, timed_out())
    first = first.read_bytes()
    later = Outcome.from_json(timed_out().to_json())
    later.seconds = 1.0  # wall time never reaches the page
    assert report.write_feedback(tmp_path / "b", A, ITEMS, later)[0].read_bytes() == first
    assert report.write_feedback(tmp_path / "a", A, ITEMS, later)[0].read_bytes() == first


@pytest.mark.parametrize("student_id", ["../escape", "", ".hidden", "a/b"])
def test_reports_refuse_a_student_id_that_is_not_a_safe_folder(
    tmp_path: Path, student_id: str
) -> None:
    outcome = Outcome(student_id, A, "invalid", reason="unsafe id")
    out = tmp_path / "feedback"
    with pytest.raises(ValueError, match="student id"):
        report.write_feedback(out, A, ITEMS, outcome)
    with pytest.raises(ValueError, match="student id"):
        report.write_gradescope(out, ITEMS, outcome)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- Gradescope


@pytest.fixture
def gradescope(tmp_path: Path, gradescope_schema: dict):
    """write_gradescope of an outcome into tmp_path, checked against the schema; its data."""

    def write(outcome: Outcome) -> dict:
        path = report.write_gradescope(tmp_path, ITEMS, outcome)
        assert path == tmp_path / outcome.student_id / "results.json"
        data = json.loads(path.read_text(encoding="utf-8"))
        jsonschema.validate(data, gradescope_schema)
        return data

    return write


@pytest.mark.parametrize("make", [graded, invalid, flagged, timed_out])
def test_gradescope_results_follow_the_documented_format(gradescope, make) -> None:
    outcome = make()
    data = gradescope(outcome)
    assert data["visibility"] == "visible" and data["stdout_visibility"] == "hidden"
    assert [t["name"] for t in data["tests"]] == [item.grade_id for item in ITEMS]
    assert all(t["visibility"] == "visible" for t in data["tests"])
    assert data["score"] == outcome.score == pytest.approx(sum(t["score"] for t in data["tests"]))
    assert sum(t["max_score"] for t in data["tests"]) == 6.5
    assert data["output"].startswith(f"Status: {outcome.status}")


def test_gradescope_tests_carry_points_status_and_messages(gradescope) -> None:
    data = gradescope(graded())
    assert data["score"] == 5.5
    assert [(t["score"], t["max_score"], t["status"], t["output"]) for t in data["tests"]] == [
        (3.0, 3.0, "passed", "passed"),
        (1.5, 2.5, "failed", "case 2: dx has shape (2, 3), expected (3, 2)"),
        (1.0, 1.0, "passed", "passed"),
    ]


def test_gradescope_output_gives_the_reason_and_every_flag(gradescope) -> None:
    data = gradescope(timed_out())
    assert "exceeded the time limit of 600 s" in data["output"]
    assert "timeout" in data["output"] and "exceeded 600 s" in data["output"]
    data = gradescope(flagged())
    for flag in flagged().flags:
        assert flag.name in data["output"] and flag.reason in data["output"]
    assert data["tests"][0]["output"] == f"{HOSTILE}\ncase 1: raised ValueError"
    assert data["tests"][2]["score"] == 0.0 and data["tests"][2]["status"] == "failed"


def test_gradescope_rewrite_is_byte_identical(tmp_path: Path) -> None:
    first = report.write_gradescope(tmp_path, ITEMS, timed_out()).read_bytes()
    # equal as numbers, different as types (3 == 3.0): still the same bytes
    ints = timed_out()
    ints.items = [ItemResult("conv_forward", 3, 3)]
    ints.seconds = 1.0
    assert report.write_gradescope(tmp_path, ITEMS, ints).read_bytes() == first


# --------------------------------------------------------------------------- summary


def section(text: str, title: str) -> list[str]:
    """The stripped lines under `title` in the summary, up to the next blank line."""
    blocks = [block.splitlines() for block in text.split("\n\n")]
    block = next(b for b in blocks if b[0] == title)
    return [line.strip() for line in block[1:]]


def histogram(text: str) -> dict[str, tuple[int, str]]:
    """{bin label: (count, bar)} from the summary's score section."""
    rows = (
        re.fullmatch(r"(\S+)\s+(\d+)\s*(#*)", line) for line in section(text, "Score (% of max)")
    )
    return {m[1]: (int(m[2]), m[3]) for m in rows if m}


def test_summary_counts_statuses_scores_and_flags(tmp_path: Path) -> None:
    text = report.summary(everyone(), 6.5)
    assert text.splitlines()[0].startswith("4 submissions, max score 6.5")
    assert section(text, "Status") == [
        "graded         2",
        "timeout        1",
        "memory         0",
        "crashed        0",
        "invalid        1",
    ]
    bins = histogram(text)
    assert len(bins) == 10
    # bob 0%, dave 46%, carol 38%, alice 85%
    assert {label: count for label, (count, _) in bins.items() if count} == {
        "0-10%": 1,
        "30-40%": 1,
        "40-50%": 1,
        "80-90%": 1,
    }
    assert bins["80-90%"][1] == "#" and bins["50-60%"][1] == ""
    flags = [line.split() for line in section(text, "Flags")]
    assert flags == [["timeout", "1"], ["tampered", "1"], ["reference-use", "1"]]


def test_summary_bins_edges_and_scales_long_bars() -> None:
    def scored(student: str, points: float) -> Outcome:
        return Outcome(student, A, "graded", items=[ItemResult("q", points, 10.0)])

    outcomes = [scored(f"s{i:03d}", 10.0) for i in range(100)] + [scored("seven", 7.0)]
    bins = histogram(report.summary(outcomes, 10.0))
    assert bins["90-100%"] == (100, "#" * 40)  # full marks fall in the last bin; bars are capped
    assert bins["70-80%"] == (1, "#")  # exactly 70% is in 70-80%, and a count never shows no bar
    assert "Flags\n  (none)" in report.summary(outcomes, 10.0)


def test_summary_lists_the_slowest_submissions_with_their_recorded_seconds() -> None:
    text = report.summary(everyone(), 6.5, slowest=3)
    assert [line.split() for line in section(text, "Slowest")] == [
        ["dave", "600.0", "s"],
        ["alice", "40.0", "s"],
        ["carol", "&", "co", "12.5", "s"],
    ]
    assert "Slowest" not in report.summary(everyone(), 6.5, slowest=0)
