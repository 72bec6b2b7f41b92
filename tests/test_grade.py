"""`cnnkit grade` on a synthetic class made from the real a1 release: every kind of student gets
the score, status and flags it should, the reports say why without leaking hidden tests, the
gradebook is updated, and re-running changes nothing."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import jsonschema
import nbformat
import pytest
from nbgrader.api import Gradebook

from autograder import grade as grading
from autograder import similarity
from autograder.cli import main
from autograder.collect import find_submissions
from autograder.gradebook import db_url
from autograder.release import ASSIGNMENTS, KIT_ROOT, SOLUTIONS, release
from autograder.sandbox import Limits, groups
from autograder.secret import SECRET, student_key
from autograder.synthetic import BUGS, expected, make_class

A1 = "a1_convolution"
MAX = 38.0
LIMITS = Limits(timeout=120, cell_timeout=10, case_timeout=2)
EXPECTED = expected(A1)
REPORTS = ("grades.csv", "gradescope")  # under --out; the feedback goes to <course>/feedback


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """(course, submissions, batch) after grading the whole synthetic class once."""
    root = tmp_path_factory.mktemp("class")
    course = root / "course"
    released = release(A1, course, prove_pair=False)
    subs = make_class(course / "source" / A1, released, A1, root / "submissions")
    batch = grading.grade(A1, subs, course, workers=2, limits=LIMITS, progress=False)
    return course, subs, batch


def outcome(batch, student):
    return next(o for o in batch.outcomes if o.student_id == student)


def feedback_page(batch, student: str) -> str:
    """The student's feedback page, where nbgrader release_feedback takes it from."""
    return (batch.setup.course / "feedback" / student / A1 / f"{A1}.html").read_text()


def test_sandboxes_start_while_the_static_checks_run_and_score_only_after_them(monkeypatch):
    """The static checks of a batch no longer hold up its first sandbox runs, and no task scores
    (parses or compiles Python) while they run: CPython 3.11's parser is not thread-safe."""
    events, lock, started = [], threading.Lock(), threading.Event()

    def log(*event):
        with lock:
            events.append(event)

    def static(setup, sub):
        if sub.student_id == "s4":  # the last: hold it until a sandbox run has begun
            assert started.wait(10)
        log("static", sub.student_id)
        return [f"flags of {sub.student_id}"]

    def task(setup, sub, flags):
        log("run", sub.student_id)
        started.set()
        log("scored", sub.student_id, flags())
        return sub.student_id

    monkeypatch.setattr(grading, "_static_before", static)
    monkeypatch.setattr(grading, "grade_task", task)
    todo = [SimpleNamespace(student_id=f"s{i}") for i in range(1, 5)]
    with ThreadPoolExecutor(2) as pool:
        tasks = grading._submit_overlapped(pool.submit, None, todo)
        assert [t.result(timeout=10) for t in tasks] == ["s1", "s2", "s3", "s4"]
    last_static = events.index(("static", "s4"))
    assert any(e[0] == "run" for e in events[:last_static])
    scored = [e for e in events if e[0] == "scored"]
    assert all(events.index(e) > last_static for e in scored)
    assert sorted(scored) == [("scored", f"s{i}", [f"flags of s{i}"]) for i in range(1, 5)]


def test_every_student_has_one_row_with_the_expected_status_and_flags(graded):
    _, _, batch = graded
    assert [o.student_id for o in batch.outcomes] == sorted(EXPECTED)
    for o in batch.outcomes:
        assert (o.status, set(o.flag_names)) == EXPECTED[o.student_id], (o.student_id, o.reason)


def test_scores_reflect_what_each_student_did(graded):
    _, _, batch = graded
    for student in (
        "full-marks",
        "full-marks-vectorised",  # the second independently written correct notebook
        "edits-tests",  # the edited test was restored and passed
        "memory-hog",  # its own cell failed; the rest is earned
        "infinite-loop",  # the looping cell was skipped
        "exits-kernel",
        "kills-parent",
        "floods-output",  # its output was cut, nothing else
        "debug-print",
    ):
        assert outcome(batch, student).score == MAX, (student, outcome(batch, student).reason)
    assert 0 < outcome(batch, "half-done").score < MAX
    for student in (
        "unfilled",
        "corrupt-notebook",
        "misnamed-notebook",
        "reads-solutions",
        "patches-checker",
    ):
        assert outcome(batch, student).score == 0, student
    # the flagged function's test earns nothing; everything else is earned
    for student in ("uses-reference", "uses-torch"):
        o = outcome(batch, student)
        conv1d = next(r for r in o.items if r.grade_id == "test_conv1d")
        assert conv1d.points == 0 and any("no points" in m for m in conv1d.messages)
        assert o.score == MAX - conv1d.max_points, student


@pytest.mark.parametrize("student", sorted(BUGS[A1]))
def test_a_bug_costs_only_the_items_that_depend_on_the_broken_function(graded, student):
    _, _, batch = graded
    o = outcome(batch, student)
    _, flags, affected = BUGS[A1][student]
    for r in o.items:
        if r.grade_id in affected and "timeout" in flags:  # the cases it does not reach count
            assert 0 < r.points < r.max_points, (student, r)
        elif r.grade_id in affected:
            assert r.points == 0, (student, r)
        else:
            assert r.points == r.max_points, (student, r)


def test_a_caught_call_of_the_reference_op_is_flagged_with_its_name(graded):
    _, _, batch = graded
    flags = {
        f.cell: f for f in outcome(batch, "catches-reference").flags if f.name == "reference-use"
    }
    assert set(flags) == {"test_conv2d_forward", "test_conv2d_backward"}
    forward = flags["test_conv2d_forward"].reason
    assert "while test_conv2d_forward was graded" in forward
    assert "called the kit's own conv2d_forward" in forward


def test_a_skipped_cell_is_named_with_the_reason_in_the_feedback(graded):
    _, _, batch = graded
    page = feedback_page(batch, "hangs-on-stride")
    assert "cell `test_conv2d_backward` ran past the 10 s cell limit and was skipped" in page
    assert "ran past the 2 s limit of one case and was stopped" in page  # a hung hidden case
    page = feedback_page(batch, "infinite-loop")
    assert "(`while True:`) ran past the 10 s cell limit and was skipped" in page
    crashed = next(f for f in outcome(batch, "exits-kernel").flags if f.name == "crashed")
    assert "(`import os`) stopped the notebook" in crashed.reason
    assert "exit status 3" in crashed.reason


def test_a_numba_loop_in_hidden_cases_loses_only_those_cases(graded):
    _, _, batch = graded
    o = outcome(batch, "numba-loop")
    col2im = next(r for r in o.items if r.grade_id == "test_col2im")
    stopped = [m for m in col2im.messages if "limit of one case and was stopped" in m]
    assert stopped and all("stride 1," not in m for m in stopped)


def test_a_killed_kernel_keeps_the_points_of_cells_before_and_after_it(graded):
    course, _, batch = graded
    nb = nbformat.read(course / "autograded" / "exits-kernel" / A1 / f"{A1}.ipynb", as_version=4)
    index = next(i for i, c in enumerate(nb.cells) if c.source == "import os\nos._exit(3)")
    graded_before = [c for c in nb.cells[:index] if c.metadata.get("nbgrader", {}).get("grade")]
    graded_after = [c for c in nb.cells[index:] if c.metadata.get("nbgrader", {}).get("grade")]
    assert graded_before and graded_after  # the crash was mid-notebook
    assert outcome(batch, "exits-kernel").score == MAX


def test_a_flood_of_output_is_cut_to_its_head_and_tail(graded):
    course, _, batch = graded
    o = outcome(batch, "floods-output")
    (flag,) = [f for f in o.flags if f.name == "output-truncated"]
    assert "MB more than the output limit allows" in flag.reason and "no points" in flag.reason
    path = course / "autograded" / "floods-output" / A1 / f"{A1}.ipynb"
    assert path.stat().st_size < 2 * LIMITS.max_output_mb * 2**20 // 10
    text = path.read_text()
    assert "of this cell's output was cut here" in text


def test_partial_credit_names_the_failing_cases(graded):
    _, _, batch = graded
    half = outcome(batch, "half-done")
    backward = next(r for r in half.items if r.grade_id == "test_conv2d_backward")
    assert backward.points == 0
    assert any(
        re.search(
            r"conv2d_backward with float(32|64), batch \d.*stride \d, padding \d: "
            r"raised NotImplementedError",
            m,
        )
        for m in backward.messages
    )


def test_no_control_group_is_left_after_the_batch(graded):
    assert groups.of_grader(os.getpid()) == []
    _, _, batch = graded
    held = outcome(batch, "full-marks").isolation
    assert held["group"].startswith(("cgroup v", "none: ")) and "network" in held


def test_failures_have_reasons(graded):
    _, _, batch = graded
    assert (
        "a1_convolution.ipynb is not a valid notebook" in outcome(batch, "corrupt-notebook").reason
    )
    assert (
        "expected a1_convolution.ipynb, found 'a1_convolution (1).ipynb'"
        in outcome(batch, "misnamed-notebook").reason
    )
    crashed = outcome(batch, "exits-kernel")
    # a crash is tried once more as it was, then its cell is skipped
    assert crashed.attempts == 3 and "kernel died" in crashed.flags[0].reason
    assert outcome(batch, "kills-parent").attempts == 3
    assert outcome(batch, "infinite-loop").attempts == 2
    flags = {f.name: f.reason for f in outcome(batch, "patches-checker").flags}
    assert "check_close" in flags["tampered"] or "allclose" in flags["tampered"]


def test_grades_csv_has_the_contract_columns_and_a_row_per_student(graded):
    course, _, batch = graded
    with open(batch.out / "grades.csv", newline="") as f:
        rows = list(csv.reader(f))
    items = [i.grade_id for i in batch.setup.items]
    contract = ["student_id", "assignment", "score", "max_score", "status", "flags"]
    assert rows[0] == [*contract, "timestamp", "seconds_late", "late_penalty", *items]
    by_id = {r[0]: dict(zip(rows[0], r, strict=True)) for r in rows[1:]}
    assert set(by_id) == set(EXPECTED)
    assert by_id["full-marks"]["score"] == "38" and by_id["full-marks"]["max_score"] == "38"
    assert _own(by_id["uses-torch"]["flags"]) == "forbidden-library"
    assert (by_id["infinite-loop"]["status"], _own(by_id["infinite-loop"]["flags"])) == (
        "graded",
        "timeout",
    )
    assert sum(float(by_id["half-done"][i]) for i in items) == float(by_id["half-done"]["score"])


def _own(flags: str) -> str:
    """The grader's flags of a grades.csv cell, without the similarity flags."""
    return ";".join(f for f in flags.split(";") if f and f not in similarity.FLAGS)


def test_copies_in_the_class_are_flagged_for_the_staff_only(graded):
    """The synthetic class is made of copies of a few notebooks: grades.csv flags them, with
    their partners in similarity.json, and no student's feedback says so."""
    course, _, batch = graded
    record = json.loads((batch.out / "similarity.json").read_text())
    with open(batch.out / "grades.csv", newline="") as f:
        rows = {r["student_id"]: r for r in csv.DictReader(f)}
    assert {"full-marks", "half-done"} <= set(record["students"])
    partners = {e["partner"] for e in record["students"]["full-marks"]}
    assert "half-done" in partners
    for student, entries in record["students"].items():
        if student in rows:
            assert {e["flag"] for e in entries} <= set(rows[student]["flags"].split(";"))
        for page in (course / "feedback" / student).rglob("*.html"):
            text = page.read_text()
            assert "similar" not in text and "copied-" not in text, page
    assert batch.similar and "full-marks" in (batch.out / "similarity.html").read_text()


def test_feedback_explains_without_leaking_hidden_tests(graded, hidden_test_lines):
    _, _, batch = graded
    secret = hidden_test_lines
    for o in batch.outcomes:
        page = feedback_page(batch, o.student_id)
        assert not [line for line in secret if line in page], o.student_id
    page = feedback_page(batch, "half-done")
    assert "test_conv2d_backward" in page and "NotImplementedError" in page
    page = feedback_page(batch, "uses-torch")
    assert "forbidden-library" in page and "torch" in page


def test_gradescope_results_follow_the_format(graded, gradescope_schema):
    _, _, batch = graded
    for o in batch.outcomes:
        data = json.loads((batch.out / "gradescope" / o.student_id / "results.json").read_text())
        jsonschema.validate(data, gradescope_schema)
        assert data["tests"] and all("max_score" in t for t in data["tests"])
        assert data["score"] == o.score
        assert sum(t["score"] for t in data["tests"]) == pytest.approx(o.score)


def test_gradebook_holds_the_auto_scores(graded):
    course, _, batch = graded
    with Gradebook(db_url(course)) as gb:
        for o in batch.outcomes:
            sub = gb.find_submission(A1, o.student_id)
            assert sub.code_score == pytest.approx(o.score), o.student_id
    assert (course / "autograded" / "full-marks" / A1 / f"{A1}.ipynb").is_file()


def snapshot(out: Path) -> dict[str, bytes]:
    """grades.csv, the Gradescope files and every student's feedback, by path."""
    feedback = out.parents[1] / "feedback"
    return {
        str(p): p.read_bytes()
        for p in sorted([*out.rglob("*"), *feedback.rglob("*")])
        if p.is_file() and (p.is_relative_to(feedback) or p.parts[len(out.parts)] in REPORTS)
    }


def test_regrading_reuses_unchanged_work_and_writes_identical_files(graded):
    course, subs, batch = graded
    before = snapshot(batch.out)
    again = grading.grade(A1, subs, course, workers=2, limits=LIMITS, progress=False)
    assert again.graded_now == []
    assert snapshot(again.out) == before


def test_a_changed_submission_is_regraded_alone(graded, tmp_path):
    course, subs, batch = graded
    copy = tmp_path / "subs"
    shutil.copytree(subs, copy)
    nb_path = copy / "unfilled" / A1 / f"{A1}.ipynb"
    full = copy / "full-marks" / A1 / f"{A1}.ipynb"
    shutil.copy(full, nb_path)
    out = tmp_path / "out"
    shutil.copytree(batch.out, out)
    again = grading.grade(A1, copy, course, out=out, workers=2, limits=LIMITS, progress=False)
    assert again.graded_now == ["unfilled"]
    assert outcome(again, "unfilled").score == MAX


def test_an_unwritable_output_folder_is_refused_before_grading(graded, tmp_path):
    course, subs, _ = graded
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(grading.GradeError, match="cannot write into the output folder"):
        grading.grade(A1, subs, course, out=blocker / "out", progress=False)


def test_an_unsafe_assignment_name_is_refused(tmp_path):
    with pytest.raises(grading.GradeError, match="not a plain folder name"):
        grading.grade("../a1", tmp_path, tmp_path / "course", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_a_course_holding_the_kit_is_refused_before_anything_is_written(tmp_path):
    kit_parent = KIT_ROOT.parent
    before = sorted(p.name for p in kit_parent.iterdir())
    with pytest.raises(grading.GradeError, match="lies inside"):
        grading.grade(A1, tmp_path, kit_parent, out=tmp_path / "out", progress=False)
    assert sorted(p.name for p in kit_parent.iterdir()) == before


def test_assemble_restores_locked_cells_and_keeps_answers_and_added_cells():
    source = nbformat.read(SOLUTIONS / A1 / f"{A1}.ipynb", as_version=4)
    released = nbformat.read(ASSIGNMENTS / A1 / f"{A1}.ipynb", as_version=4)
    submitted = nbformat.from_dict(json.loads(json.dumps(released)))
    test = next(c for c in submitted.cells if c.metadata.get("nbgrader", {}).get("grade"))
    test.source = "pass"
    answer = next(c for c in submitted.cells if c.metadata.get("nbgrader", {}).get("solution"))
    answer.source = "y_valid = [1]"
    submitted.cells.insert(3, nbformat.v4.new_code_cell("extra = 1"))
    del submitted.cells[-1]  # a deleted locked cell comes back
    conv1d = next(
        c for c in submitted.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "conv1d"
    )
    submitted.cells.remove(conv1d)  # a deleted answer comes back unanswered, not solved
    run = grading.assemble(submitted, source, released)
    sources = [c.source for c in run.cells]
    assert "y_valid = [1]" in sources and "extra = 1" in sources and "pass" not in sources
    assert sources.index("extra = 1") == 3
    assert len(run.cells) == len(source.cells) + 1
    restored = next(
        c for c in run.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "conv1d"
    )
    assert (
        "raise NotImplementedError" in restored.source and "BEGIN SOLUTION" not in restored.source
    )
    nbformat.validate(run)


def test_cli_grade_prints_the_summary_and_refuses_a_missing_folder(graded, capsys, tmp_path):
    course, subs, _ = graded
    same_limits = ["--timeout", "120", "--cell-timeout", "10", "--case-timeout", "2"]
    args = ["grade", A1, str(subs), "--course", str(course), *same_limits, "--quiet"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "graded 0 submissions now" in printed and "grades.csv" in printed
    assert main(["grade", A1, str(tmp_path / "nothing"), "--course", str(course)]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_find_submissions_sees_the_whole_class(graded):
    _, subs, batch = graded
    rows = find_submissions(subs, A1, batch.setup.notebooks, subs.parent / "work")
    assert len(rows) == len(EXPECTED)


def test_each_assignment_has_its_own_cell_limit():
    assert grading.cell_timeout(A1) == 60  # every a1 cell takes well under a second
    assert grading.cell_timeout("a4_train_cnn") == 300  # training replays 50 iterations
    assert grading.cell_timeout("no_such_assignment") == grading.CELL_TIMEOUT


def test_the_class_summary_agrees_with_grades_csv(graded):
    _, _, batch = graded
    page = (batch.out / "summary.html").read_text()
    with open(batch.out / "grades.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    scores = [float(r["score"]) for r in rows]
    assert (
        f"{len(rows)} submissions; autograded maximum 38; mean {sum(scores) / len(rows):.2f}"
        in page
    )
    assert page.count('src="data:image/png;base64,') == 2  # the score and per-test plots
    assert "<script" not in page and "://" not in page.replace("data:image", "")
    # the flags, with the students flagged
    flagged = [r["student_id"] for r in rows if "timeout" in r["flags"].split(";")]
    timeout_row = re.search(r"<tr><td>timeout</td><td class=\"n\">(\d+)</td><td>([^<]*)</td>", page)
    assert int(timeout_row.group(1)) == len(flagged) and timeout_row.group(2) == ", ".join(flagged)
    # why conv2d_backward lost points, counted in students across the class
    lost = [r for r in rows if float(r["test_conv2d_backward"]) < 5 and r["status"] == "graded"]
    counts = [
        int(n)
        for n in re.findall(r'<td class="n">(\d+)</td><td class="reason">conv2d_backward', page)
    ]
    assert counts and max(counts) <= len(lost) and sorted(counts, reverse=True) == counts
    assert "Task 5.2: conv2d_backward" in page


def test_reasons_are_grouped_without_the_case_s_own_numbers():
    from autograder.class_summary import reason_key

    a = "conv2d_backward: dw wrong with float32, batch 2, C=3, F=4, 3x3 filter, stride 2, padding 1; max relative error 0.31"
    b = "conv2d_backward: dw wrong with float32, batch 1, C=2, F=1, 5x2 filter, stride 2, padding 1; max relative error 0.7"
    assert reason_key(a) == reason_key(b)
    assert (
        reason_key(a)
        == "conv2d_backward: dw wrong with float32, batch #, C=#, F=#, # filter, stride 2, padding 1"
    )
    assert reason_key(a.replace("stride 2", "stride 1")) != reason_key(a)


def test_a_run_is_given_the_student_s_key_and_never_the_course_s_secret(graded, tmp_path):
    course, subs, batch = graded
    secret = (course / SECRET).read_text().strip()
    spy = (
        "import os, pathlib\n"
        "print('KEY', os.environ.get('CNNKIT_CASE_KEY'))\n"
        f"path = pathlib.Path({str(course / SECRET)!r})\n"
        "try:\n    print('READ', path.read_text())\n"
        "except OSError as exc:\n    print('NOT READ', type(exc).__name__)\n"
        "print('ENV', ' '.join(f'{k}={v}' for k, v in os.environ.items()))"
    )
    folder = tmp_path / "class" / "spy" / A1
    shutil.copytree(subs / "full-marks" / A1, folder)
    nb = nbformat.read(folder / f"{A1}.ipynb", as_version=4)
    nb.cells.insert(3, nbformat.v4.new_code_cell(spy))
    nbformat.write(nb, folder / f"{A1}.ipynb")
    again = grading.grade(
        A1, tmp_path / "class", course, out=tmp_path / "out", limits=LIMITS, progress=False
    )
    spy = outcome(again, "spy")  # code that names the grader's variables is flagged
    assert (spy.score, spy.flag_names) == (0, ["reference-use"])
    assert "reads the grader's CNNKIT_CASE_KEY" in spy.flags[0].reason
    ran = (course / "autograded" / "spy" / A1 / f"{A1}.ipynb").read_text()
    assert secret not in ran
    assert f"KEY {student_key(secret.encode(), 'spy', A1)}" in ran
    assert "NOT READ" in ran  # the course folder is hidden


def test_lms_exports_carry_the_totals_and_report_unmatched_students(graded, tmp_path, capsys):
    course, _, batch = graded
    with open(batch.out / "grades.csv", newline="") as f:
        rows = {r["student_id"]: r for r in csv.DictReader(f)}
    ids = sorted(rows)
    roster = tmp_path / "roster.csv"
    with open(roster, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["student_id", "name", "lms_id", "sis_id", "section", "email", "id_number"])
        for sid in [*ids[1:], "ghost"]:  # the first student is missing, a ghost is added
            writer.writerow(
                [sid, f"Name {sid}", f"L-{sid}", f"S-{sid}", "A", f"{sid}@uni", f"N-{sid}"]
            )
    common = ["--course", str(course), "--roster", str(roster)]
    canvas, moodle = tmp_path / "canvas.csv", tmp_path / "moodle.csv"
    args = ["export", A1, *common, "--format", "canvas", "--out", str(canvas)]
    assert main([*args, "--lms-assignment-id", "4242"]) == 1  # unmatched students: exit 1
    err = capsys.readouterr().err
    assert f"{ids[0]}: graded, but not in the roster" in err
    assert "ghost: in the roster, but no submission in the gradebook" in err
    lines = list(csv.reader(canvas.open()))
    assert lines[0] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", f"{A1} (4242)"]
    assert lines[1] == ["Points Possible", "", "", "", "", "45"]  # 38 autograded, 7 written
    by_lms = {line[1]: line[5] for line in lines[2:]}
    for sid in ids[1:]:  # no marks or penalties yet: the totals are grades.csv's scores
        assert float(by_lms[f"L-{sid}"]) == float(rows[sid]["score"]), sid
    assert by_lms["L-ghost"] == ""
    assert main(["export", A1, *common, "--format", "moodle", "--out", str(moodle)]) == 1
    lines = list(csv.reader(moodle.open()))
    assert lines[0] == ["ID number", "Email address", A1]
    by_number = {line[0]: line[2] for line in lines[1:]}
    assert all(float(by_number[f"N-{sid}"]) == float(rows[sid]["score"]) for sid in ids[1:])
    assert main(["export", A1, *common, "--format", "moodle", "--out", str(moodle)]) == 1
    assert "exists; pass --force" in capsys.readouterr().err


FAKE_GRADER = {  # a package named like the kit's, whose checks would let anything pass
    "autograder/__init__.py": "",
    "autograder/outputs.py": (
        "def hidden_test(*args, **kwargs):\n    print('FAKE hidden_test')\n\n\n"
        "def harvest(*args, **kwargs):\n    print('FAKE harvest')\n"
    ),
}


def _writing(files: dict[str, str]) -> str:
    """A cell that writes `files` (relative path: text) into the run's working folder."""
    return (
        "import pathlib\n"
        f"for _name, _text in {files!r}.items():\n"
        "    pathlib.Path(_name).parent.mkdir(exist_ok=True)\n"
        "    pathlib.Path(_name).write_text(_text)\n"
    )


def _outputs(path: Path) -> str:
    """All a notebook's code cells printed, displayed or raised, as JSON text."""
    nb = nbformat.read(path, as_version=4)
    return json.dumps([c.get("outputs", []) for c in nb.cells])


FORGER = """
from IPython.display import display

def _forge(result):
    if "_cnnkit_harvest" in (result.info.raw_cell or ""):
        display({"application/vnd.cnnkit.outputs+json": {"version": 1, "checks": {}, "exports": {}}}, raw=True)

get_ipython().events.register("post_run_cell", _forge)
"""


def test_only_the_notebooks_run_and_nothing_can_stand_in_for_the_grader(graded, tmp_path):
    """A module beside the notebook is left out of the run and named in the feedback; a fake of
    the grader's own package, submitted or written by a cell, is never the one the tests use;
    results the notebook displays as the output checks' own are caught and score nothing."""
    course, subs, batch = graded
    notebook = f"{A1}.ipynb"
    helper = tmp_path / "class" / "keeps-helper" / A1
    shutil.copytree(subs / "full-marks" / A1, helper)
    nb = nbformat.read(helper / notebook, as_version=4)
    cell = next(c for c in nb.cells if "def conv1d(" in c.source)
    (helper / "helpers.py").write_text("import numpy as np\n\n\n" + cell.source)
    kept, _ = cell.source.split("def conv1d(")  # its helper, which other cells use
    cell.source = f"{kept}from helpers import conv1d\n"
    nbformat.write(nb, helper / notebook)
    for name, text in FAKE_GRADER.items():
        (helper / name).parent.mkdir(exist_ok=True)
        (helper / name).write_text(text)
    for made_by_tools in (
        "__pycache__/helpers.cpython-311.pyc",
        f".ipynb_checkpoints/{A1}-checkpoint.ipynb",
    ):
        (helper / made_by_tools).parent.mkdir(exist_ok=True)
        (helper / made_by_tools).write_bytes(b"")
    writer = tmp_path / "class" / "writes-grader" / A1
    shutil.copytree(subs / "full-marks" / A1, writer)
    nb = nbformat.read(writer / notebook, as_version=4)
    nb.cells.insert(3, nbformat.v4.new_code_cell(_writing(FAKE_GRADER)))
    nbformat.write(nb, writer / notebook)

    forger = tmp_path / "class" / "forges-results" / A1
    shutil.copytree(subs / "full-marks" / A1, forger)
    nb = nbformat.read(forger / notebook, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(FORGER))
    nbformat.write(nb, forger / notebook)

    again = grading.grade(
        A1, tmp_path / "class", course, out=tmp_path / "out", limits=LIMITS, progress=False
    )
    forged = outcome(again, "forges-results")
    assert (forged.score, forged.flag_names) == (0, ["tampered", "reference-use"])
    assert any("showed 2 sets of results where it shows one" in f.reason for f in forged.flags)
    printed = {
        s: _outputs(course / "autograded" / s / A1 / notebook)
        for s in ("keeps-helper", "writes-grader")
    }
    assert "FAKE" not in printed["keeps-helper"] + printed["writes-grader"]
    assert "No module named 'helpers'" in printed["keeps-helper"]
    writes = outcome(again, "writes-grader")
    assert (writes.score, writes.flag_names) == (MAX, [])
    keeps = outcome(again, "keeps-helper")
    assert keeps.flag_names == ["files-left-out"]
    (flag,) = keeps.flags
    assert flag.reason.startswith(
        "left out of the run: autograder/__init__.py, autograder/outputs.py, helpers.py. "
    )
    gid = next(c.metadata.nbgrader["grade_id"] for c in nb.cells if "def conv1d(" in c.source)
    fed = set(batch.setup.feeds[gid])
    assert fed
    for r in keeps.items:
        assert r.points == (0 if r.grade_id in fed else r.max_points), r
    assert "left out of the run: autograder/__init__.py" in feedback_page(again, "keeps-helper")
