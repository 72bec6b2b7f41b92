"""`cnnkit grade`: grade every submission of one assignment, safely, and write the reports.

For each student found by `collect.find_submissions`:

1. Static checks (`static_checks.inspect`) of each submitted notebook against the release.
2. The notebook the sandbox runs is assembled as nbgrader's autograder would: every locked and
   test cell comes from the instructor's source (hidden tests included), the student's answers
   and added cells from the submission; the output-check cell (`outputs.harvest_cell`) goes last.
3. `sandbox.run_notebook` runs it in a fresh work folder holding the release's files and the
   student's notebooks, nothing else of theirs (`_stage`), as an unprivileged uid of its own,
   with the course, the solutions and the other students' material hidden; `CNNKIT_STUDENT_ID`
   seeds the hidden cases. A cell that runs past the cell limit or ends the kernel (twice) is
   replaced by one that raises an error naming it and the notebook runs again, so that a bug
   costs only what depends on it (`_run_with_skips`).
4. Scoring happens here, never in the student's process: an item with output checks is scored
   by `outputs.score_outputs` (partial credit); any other by its test cell (full points when it
   ran without an error). Flags of reference use, forbidden libraries or patching take the
   points of the items the flagged code feeds.

Each student's `Outcome` is saved under `<out>/results/` as soon as it is known, keyed by the
submission's digest and the grading set-up, so a re-run grades only what changed (or everything,
with `force`) and an interrupted run resumes. Then the course's gradebook is written as `nbgrader
autograde` would (`gradebook.update_gradebook`: timestamps, late penalties, written answers), and
the reports from the records and the gradebook: grades.csv, summary.html, Gradescope's files, and
each student's feedback in the course's feedback/ folder for `nbgrader release_feedback`.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import os
import re
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import astuple, dataclass, field, replace
from pathlib import Path

import nbformat
from tqdm.auto import tqdm

from autograder import curves, outputs, report
from autograder.class_summary import write_summary_html
from autograder.collect import Submission, find_submissions, left_out_reason, unsafe_id_problem
from autograder.gradebook import (
    Standing,
    late_penalties,
    read_timestamp,
    registered,
    standings,
    strip_hidden_tests_from_feedback,
    update_gradebook,
)
from autograder.kernel_cache import kernel_cache, seed
from autograder.outcome import FlagNote, Item, ItemResult, Outcome
from autograder.release import KIT_ROOT, NOT_FOR_RUNS, SOLUTIONS, generate, place_source
from autograder.sandbox import GRACE, Limits, RunResult, run_notebook, start_server
from autograder.sandbox.child import amount
from autograder.secret import course_secret, fingerprint, student_key
from autograder.similarity import Pair, compare_batch, flag_names
from autograder.similarity import write_reports as write_similarity
from autograder.static_checks import Flag, inspect, policy
from cnn_core.grading import CASE_KEY_ENV, STUDENT_ENV
from cnn_core.train import REPLAY_ENV

RESULTS = "results"  # folder of per-student records under the output folder
LOCK = ".cnnkit-grade.lock"  # in the course folder, held while grading
MB = 2**20
MIN_FREE_MB = 200  # free space the output folder needs before grading starts
# A sandbox runs as UID_BASE + the native id of the thread driving it: thread ids are unique on
# a host at any moment, so concurrent sandboxes (threads here, or Dask workers) never share a uid.
UID_BASE = 200_000
# Flags whose code earns nothing: the items that code feeds score zero.
VOIDING = ("reference-use", "forbidden-library", "tampered")
# CPython 3.11's ast.parse is not thread-safe ("AST constructor recursion depth mismatch"):
# the worker threads take turns at the static checks.
_AST_LOCK = threading.Lock()
STATUS_OF_RUN = {"ok": "graded", "timeout": "timeout", "memory": "memory", "crashed": "crashed"}
MAX_SKIPS = 3  # cells of one notebook that may be skipped for hanging or ending the kernel
MIN_RUN_SECONDS = 5.0  # a run again after a skip needs at least this much of the time limit
CELL_TIMEOUT = 120.0  # seconds per cell for an assignment whose check module sets none
# what nbgrader submit puts beside the notebooks, and its later steps read from autograded/
SUBMISSION_FILES = ("timestamp.txt", "submission_secret.txt")


class GradeError(RuntimeError):
    """Grading cannot start: a bad assignment, course or output folder."""


@dataclass(frozen=True)
class Setup:
    """What stays fixed while one assignment is graded."""

    assignment: str
    course: Path
    source: Path  # the instructor's notebooks, hidden tests included
    released: Path  # what students received
    notebooks: list[str]  # file names
    items: list[Item]  # every autograded test cell, in notebook order
    feeds: dict[str, list[str]]  # solution cell grade_id -> the test cells scoring it
    limits: Limits
    key: str  # digest of everything above that changes grades
    hide: tuple[Path, ...] = ()  # what the student's process must not see
    titles: dict[str, str] = field(default_factory=dict)  # graded cell -> its task's title
    secret: bytes = field(default=b"", repr=False)  # the course's (autograder.secret)

    def case_key(self, student: str) -> str:
        """The student's key to their hidden cases: all of the secret a run is given."""
        return student_key(self.secret, student, self.assignment)


@dataclass
class Batch:
    """The result of `grade`: every row, and which were graded now rather than reused."""

    setup: Setup
    outcomes: list[Outcome]
    graded_now: list[str] = field(default_factory=list)
    out: Path | None = None
    standings: dict[str, Standing] = field(default_factory=dict)  # from the gradebook
    notices: list[str] = field(default_factory=list)  # what grading changed besides grades
    similar: list[Pair] | None = None  # reported pairs of similar code; None: not compared


# --------------------------------------------------------------------------- set-up


def prepare(assignment: str, course: Path, limits: Limits) -> Setup:
    """The Setup of `assignment` in the nbgrader course folder `course`: its source is the
    course's `source/<assignment>` (placed there from the kit's solutions when missing) and its
    release is generated there when missing, which also records it in the gradebook."""
    _check_name(assignment)
    course = Path(course).resolve()
    source = course / "source" / assignment
    if not any(source.glob("*.ipynb")):
        if not (SOLUTIONS / assignment).is_dir():
            known = ", ".join(sorted(p.name for p in SOLUTIONS.iterdir() if p.is_dir()))
            raise GradeError(
                f"unknown assignment {assignment!r}: not in {source} nor in the kit ({known})"
            )
        place_source(assignment, course, force=False)
    late_penalties(course)  # a course whose late-penalty plugin fails is refused before grading
    secret = course_secret(course)
    released = course / "release" / assignment
    if not any(released.glob("*.ipynb")) or not registered(course, assignment):
        generate(assignment, course)
    names = sorted(p.name for p in source.glob("*.ipynb"))
    items, feeds = _items(source, names)
    if limits.cell_timeout is None:
        limits = replace(limits, cell_timeout=cell_timeout(assignment))
    if not items:
        raise GradeError(f"{source} has no autograded test cells")
    titles = {}
    for name in names:
        titles |= task_titles(nbformat.read(source / name, as_version=4))
    return Setup(
        assignment,
        course,
        source,
        released,
        names,
        items,
        feeds,
        limits,
        _setup_key(source, released, names, limits, secret),
        titles=titles,
        secret=secret,
    )


def task_titles(nb: nbformat.NotebookNode) -> dict[str, str]:
    """{grade_id: title} for each graded cell of `nb`: the title of the task it belongs to, as
    the notebook words it ("Task 5.2: conv2d_backward", "Question 2.3"), taken from the last
    heading (or leading bold phrase) of the nearest markdown cell before it that has one."""
    titles, current = {}, ""
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade") and current:
            titles[meta["grade_id"]] = current
        if cell.cell_type == "markdown" and not meta.get("solution"):
            current = _title(cell.source) or current
    return titles


def _title(text: str) -> str:
    """The last heading line of a markdown text, else its leading bold phrase, cleaned of
    markup and of the points ("(5 points)"); "" when it has neither."""
    headings = [line.lstrip("#").strip() for line in text.splitlines() if line.startswith("#")]
    bold = re.match(r"\s*\*\*(.+?)\*\*", text)
    title = headings[-1] if headings else bold.group(1) if bold else ""
    title = re.sub(r"\s*\([^()]*\bpoints?\b[^()]*\)", "", title)
    title = title.replace("\\times", "×").replace("$", "").replace("`", "")
    return title.strip().rstrip(".:").strip()


def cell_timeout(assignment: str) -> float:
    """The seconds a cell of `assignment` may run by default: its check module's CELL_TIMEOUT
    (a training cell needs more than a convolution's test), else CELL_TIMEOUT."""
    return float(getattr(outputs.check_module(assignment), "CELL_TIMEOUT", CELL_TIMEOUT))


def _check_name(assignment: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", assignment):
        raise GradeError(f"assignment {assignment!r} is not a plain folder name")


def _items(source: Path, names: list[str]) -> tuple[list[Item], dict[str, list[str]]]:
    """The autograded test cells of the source notebooks, and for each solution cell the test
    cells that follow it before the next solution cell (those that score it)."""
    items, feeds = [], {}
    for name in names:
        pending: list[str] = []
        for cell in nbformat.read(source / name, as_version=4).cells:
            meta = cell.metadata.get("nbgrader", {})
            if meta.get("solution") and not meta.get("grade"):
                if pending and feeds.get(pending[-1]):
                    pending = []
                pending.append(meta["grade_id"])
            elif meta.get("grade") and cell.cell_type == "code":
                items.append(Item(meta["grade_id"], name, float(meta["points"])))
                for gid in pending:
                    feeds.setdefault(gid, []).append(meta["grade_id"])
    return items, feeds


def _setup_key(
    source: Path, released: Path, names: list[str], limits: Limits, secret: bytes
) -> str:
    # values, not repr: Limits(timeout=25) and Limits(timeout=25.0) grade alike
    h = hashlib.sha256(repr([v if v is None else float(v) for v in astuple(limits)]).encode())
    h.update(fingerprint(secret).encode())  # a rotated secret draws other cases
    for folder in (source, released):
        for name in names:
            h.update((folder / name).read_bytes())
    # a changed check changes the grades
    module = outputs.check_module(source.name)
    for code in (outputs, curves, *([module] if module else [])):
        h.update(Path(code.__file__).read_bytes())
    return h.hexdigest()


# --------------------------------------------------------------------------- one student


def assemble(
    submitted: nbformat.NotebookNode,
    source: nbformat.NotebookNode,
    released: nbformat.NotebookNode,
) -> nbformat.NotebookNode:
    """The notebook to run: the source's cells in the source's order, each solution cell
    replaced by the student's cell of the same grade_id (or, when the student deleted it, by the
    released, unanswered one: never the instructor's answer), and the student's added cells kept
    after the cell they followed. Locked and test cells always come from the source, so an
    edited or deleted test is restored with its hidden part."""
    unanswered = {_gid(c): c for c in released.cells if _gid(c)}
    answers = {}
    added: dict[str | None, list] = {}  # grade_id of the preceding known cell -> added cells
    known = {_gid(c) for c in source.cells} - {None}
    previous = None
    for cell in submitted.cells:
        gid = _gid(cell)
        if gid in known:
            answers.setdefault(gid, cell)
            previous = gid
        else:
            added.setdefault(previous, []).append(cell)
    cells = list(added.get(None, []))
    for cell in source.cells:
        gid = _gid(cell)
        meta = cell.metadata.get("nbgrader", {})
        student = answers.get(gid)
        if not meta.get("solution"):
            cells.append(cell)
        elif student is not None and student.cell_type == cell.cell_type:
            cells.append(student)
        else:
            cells.append(unanswered.get(gid, _blank(cell)))
        cells.extend(added.get(gid, []))
    nb = nbformat.v4.new_notebook(metadata=source.metadata)
    nb.cells = [nbformat.from_dict(dict(c)) for c in cells]
    for index, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{index}"  # the two notebooks' ids may clash
    return nb


def _blank(cell) -> nbformat.NotebookNode:
    """An empty cell of `cell`'s kind and metadata: a solution cell with no answer."""
    blank = nbformat.from_dict(dict(cell))
    blank.source = ""
    return blank


def _gid(cell) -> str | None:
    return cell.metadata.get("nbgrader", {}).get("grade_id")


StaticFlags = list[FlagNote] | None  # a submission's static-check flags; None: not run yet


def grade_submission(
    setup: Setup,
    sub: Submission,
    workroot: Path,
    static: StaticFlags | Callable[[], StaticFlags] = None,
) -> Outcome:
    """Grade one student's submission; never raises for anything the submission does.
    `static`: its static checks' flags when the caller has them already, or a function that
    returns them once they are ready (it is called after the first sandbox run, before anything
    here parses or compiles Python: the caller's thread may be parsing meanwhile)."""
    if sub.status != "ok":
        return _not_graded(setup, sub, "invalid", sub.reason)
    books = [_read(setup, sub, name) for name in setup.notebooks]
    flags = _left_out(sub)
    results: dict[str, ItemResult] = {}
    status, reasons, seconds, attempts = "graded", [], 0.0, 0
    isolation: dict[str, str] = {}
    for index, book in enumerate(books):
        graded = _run_with_skips(setup, sub, book, workroot)
        if index == 0:
            known = static() if callable(static) else static
            flags += list(known) if known is not None else _static_flags(setup, books)
        run = graded.run
        isolation |= run.isolation
        seconds, attempts = seconds + graded.seconds, attempts + graded.attempts
        flags += [FlagNote(s.status, f"{book.name}: {s.reason}") for s in graded.skips]
        flags += _run_flags(book.name, run)
        if not run.completed:
            run_status = STATUS_OF_RUN.get(run.status, "invalid")
            status = _worse(status, run_status)
            reasons.append(f"{book.name}: {run.reason}")
        payload = outputs.harvested(run.notebook)
        flags += _attempt_flags(setup, book.name, payload) + _forged_flags(book.name, run)
        results |= _score_notebook(setup, sub, book.name, run, payload)
        curve_results, curve_flags = _grade_curve(setup, sub, book, run, payload)
        results |= curve_results
        flags += curve_flags
        _keep_autograded(setup, sub, book, run, graded.skips)
    items = [results[i.grade_id] for i in setup.items]
    items = _void(items, flags, setup)
    return Outcome(
        sub.student_id,
        setup.assignment,
        status,
        items,
        _dedupe(flags),
        "; ".join(reasons),
        _outcome_key(setup, sub),
        round(seconds, 3),
        attempts,
        read_timestamp(sub.folder),
        isolation,
    )


@dataclass(frozen=True)
class _Book:
    """One notebook of a submission, read once: as submitted, and the source and release it
    is graded against."""

    name: str
    submitted: nbformat.NotebookNode
    source: nbformat.NotebookNode
    released: nbformat.NotebookNode


def _read(setup: Setup, sub: Submission, name: str) -> _Book:
    return _Book(
        name,
        nbformat.read(sub.notebooks[name], as_version=4),
        nbformat.read(setup.source / name, as_version=4),
        nbformat.read(setup.released / name, as_version=4),
    )


def _not_graded(setup: Setup, sub: Submission, status: str, reason: str) -> Outcome:
    items = [
        ItemResult(i.grade_id, 0.0, i.max_points, [f"not graded: {reason}"]) for i in setup.items
    ]
    return Outcome(
        sub.student_id,
        setup.assignment,
        status,
        items,
        [FlagNote(status, reason)],
        reason,
        _outcome_key(setup, sub),
        timestamp=read_timestamp(sub.folder),
    )


def _outcome_key(setup: Setup, sub: Submission) -> str:
    return hashlib.sha256(f"{setup.key}/{sub.student_id}/{sub.digest}".encode()).hexdigest()


def _static_flags(setup: Setup, books: list[_Book]) -> list[FlagNote]:
    flags: list[Flag] = []
    with _AST_LOCK:
        for book in books:
            flags += inspect(book.submitted, book.released, policy(setup.assignment))
    return [FlagNote(f.name, f.reason, f.cell) for f in flags]


@dataclass(frozen=True)
class _Skip:
    """A cell that hung or ended its kernel, replaced by one that raises for the next run."""

    index: int  # in the notebook the sandbox runs
    status: str  # "timeout", "crashed" or "memory"
    reason: str  # names the cell and says why it was skipped
    source: str  # the cell's own code, restored in the autograded copy


@dataclass
class _Graded:
    """The last sandbox run of one notebook and what it took to get there."""

    run: RunResult
    skips: list[_Skip]
    attempts: int
    seconds: float


def _run_with_skips(setup: Setup, sub: Submission, book: _Book, workroot: Path) -> _Graded:
    """Run one notebook of `sub` in the sandbox until it runs to its end: a cell that runs past
    the cell limit, or in which the kernel or the runner dies twice, is replaced by one that
    raises an error naming it, and the notebook runs again from the start, so that only what
    depends on that cell loses points. At most MAX_SKIPS cells are skipped, and every run
    shares the notebook's wall-time limit; a crash outside any cell is retried once."""
    nb = assemble(book.submitted, book.source, book.released)
    deadline = time.monotonic() + setup.limits.timeout
    skips: list[_Skip] = []
    crashed_in: set[int | None] = set()
    attempts, seconds = 0, 0.0
    while True:
        run = _run_once(
            setup, sub, _with_harvest(setup, nb, deadline), book.name, workroot, deadline
        )
        attempts, seconds = attempts + 1, seconds + run.seconds
        if run.completed or run.status == "invalid":
            break
        if run.status == "crashed" and run.cell not in crashed_in:
            crashed_in.add(run.cell)  # once more as it was: the crash may not be the student's
            continue
        if not _skippable(run, nb, skips, deadline):
            break
        skip = _skip(nb, run, setup.limits)
        skips.append(skip)
        nb.cells[skip.index] = _raising(nb.cells[skip.index], skip.reason)
    return _Graded(run, skips, attempts, seconds)


def _with_harvest(setup: Setup, nb: nbformat.NotebookNode, deadline: float):
    """`nb` with the output-check cell appended (when the assignment has one), whose cases
    stop in time for the notebook's `deadline` (time.monotonic() seconds)."""
    if not outputs.harvests(setup.assignment):
        return nb
    run = nbformat.from_dict(dict(nb))
    cell = outputs.harvest_cell(setup.assignment, setup.limits.case_timeout, deadline - GRACE)
    run.cells = [*nb.cells, cell]
    return run


def _skippable(run: RunResult, nb: nbformat.NotebookNode, skips: list, deadline: float) -> bool:
    """True when the run stopped in one of the notebook's own cells and another run fits."""
    return (
        run.cell is not None
        and run.cell < len(nb.cells)
        and nb.cells[run.cell].cell_type == "code"
        and run.status in ("timeout", "crashed", "memory")
        and len(skips) < MAX_SKIPS
        and deadline - time.monotonic() > MIN_RUN_SECONDS
    )


def _skip(nb: nbformat.NotebookNode, run: RunResult, limits: Limits) -> _Skip:
    """The _Skip of the cell `run` stopped in, with a reason a student can act on."""
    cell = nb.cells[run.cell]
    name = _cell_name(cell, run.cell)
    why = {
        "timeout": f"ran past the {limits.per_cell:g} s cell limit",
        "memory": f"ran out of memory ({run.reason})",
    }.get(run.status, f"stopped the notebook ({run.reason})")
    reason = f"{name} {why} and was skipped; the notebook was run again without it"
    return _Skip(run.cell, run.status, reason, cell.source)


def _cell_name(cell, index: int) -> str:
    """ "cell `grade_id`", or for a cell without one "cell N (`its first line`)"."""
    gid = _gid(cell)
    if gid:
        return f"cell `{gid}`"
    first = next((line.strip() for line in cell.source.splitlines() if line.strip()), "")
    first = first if len(first) <= 40 else first[:37] + "..."
    return f"cell {index + 1} (`{first}`)"


def _raising(cell, reason: str) -> nbformat.NotebookNode:
    """`cell` (metadata kept, so it still scores under its grade_id) as code that raises."""
    stand_in = nbformat.from_dict(dict(cell))
    stand_in.source = f"raise RuntimeError({('cnnkit: ' + reason)!r})"
    return stand_in


def _attempt_flags(setup: Setup, name: str, payload: dict | None) -> list[FlagNote]:
    """reference-use for each check during which the student's code called the kit's own op,
    even when it caught the error: the attempt is the TA's to see. Such a check's test scores
    nothing (its `cell` is the test's grade_id)."""
    return [
        FlagNote(
            "reference-use",
            f"{name}: while {gid} was graded, the code called the kit's own {', '.join(ops)} "
            "(its reference implementation), whatever it then did with the error",
            gid,
        )
        for gid, ops in outputs.reference_attempts(setup.assignment, payload).items()
    ]


def _forged_flags(name: str, run: RunResult) -> list[FlagNote]:
    """tampered when the output checks' cell showed more results than the one `harvest`
    displays: the notebook's code displayed its own there (a hook of the kernel's, say), and no
    result of that run is scored."""
    shown = outputs.displayed(run.notebook)
    if shown <= 1:
        return []
    reason = (
        f"{name}: the output checks' cell showed {shown} sets of results where it shows one: "
        "the notebook's code displayed results of its own, and none were scored"
    )
    return [FlagNote("tampered", reason)]


def _run_flags(name: str, run: RunResult) -> list[FlagNote]:
    """Flags of a run that ran to its end but not cleanly: a cell out of memory (the rest of
    the notebook ran), output cut to the caps."""
    flags = []
    if run.completed and run.status == "memory":
        flags.append(FlagNote("memory", f"{name}: {run.reason}"))
    for index, cut in sorted(run.truncated.items()):
        flags.append(
            FlagNote(
                "output-truncated",
                f"{name}: cell {index + 1} printed {amount(cut)} more than the output limit "
                "allows; that part was cut (no points are lost for it)",
            )
        )
    return flags


def _run_once(
    setup: Setup,
    sub: Submission,
    nb: nbformat.NotebookNode,
    name: str,
    workroot: Path,
    deadline: float,
) -> RunResult:
    """One sandbox run of `nb` in a fresh work folder (`_stage`, removed afterwards), ending by
    `deadline` (time.monotonic() seconds)."""
    workdir = workroot / f"{sub.student_id}"
    specs = outputs.curve_specs(setup.assignment)
    env = {STUDENT_ENV: sub.student_id, CASE_KEY_ENV: setup.case_key(sub.student_id)}
    if specs:  # replay the notebook's training: its submitted curves are not in the work folder
        env[REPLAY_ENV] = str(curves.replay_iterations(specs))
    _stage(setup, sub, workdir)
    try:
        # outside the workdir, in a folder only the grader may enter: the notebook holds the
        # hidden tests, which the student's code must not read ahead of running them
        private = workroot / "run"
        private.mkdir(mode=0o700, exist_ok=True)
        path = private / name
        nbformat.write(nb, path)
        cache = kernel_cache()
        if not start_server(cache) and cache is not None:  # runs start without kernels
            seed(workdir, cache)
        return run_notebook(
            path,
            workdir,
            replace(setup.limits, timeout=max(deadline - time.monotonic(), MIN_RUN_SECONDS)),
            env,
            hide=setup.hide,
            uid=UID_BASE + threading.get_native_id(),
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _stage(setup: Setup, sub: Submission, workdir: Path) -> None:
    """Make the run's work folder: the release's files as released, and the student's notebooks.
    Nothing else of the student's: code to be graded must be in a notebook, where the static
    checks, the similarity check and the TAs read it; a module beside it (a package named like
    the kit's among them) could otherwise run unread. Submitted curves are not there either:
    the run replays the training that makes them."""
    shutil.copytree(setup.released, workdir, ignore=NOT_FOR_RUNS)
    for name, path in sub.notebooks.items():
        shutil.copyfile(path, workdir / name)


def _left_out(sub: Submission) -> list[FlagNote]:
    """The files-left-out flag of a student's code that `_stage` leaves out; [] if none."""
    return [FlagNote("files-left-out", left_out_reason(sub.code_beside))] if sub.code_beside else []


def _score_notebook(
    setup: Setup, sub: Submission, name: str, run: RunResult, payload: dict | None
) -> dict[str, ItemResult]:
    """{grade_id: ItemResult} for the items of notebook `name`, from the executed notebook and
    the output checks' `payload` in it. When the checks did not run (the notebook's time ran
    out before them), an item they would decide scores by its test cell, as what did run."""
    cells = {}
    if run.notebook is not None:
        cells = {_gid(c): c for c in run.notebook.cells if _gid(c)}
    checked = outputs.score_outputs(
        setup.assignment,
        sub.student_id,
        payload,
        run.reason
        or outputs.harvest_failure(run.notebook)
        or "the notebook did not run to its end",
        setup.case_key(sub.student_id),
    )
    scored = {}
    for item in (i for i in setup.items if i.notebook == name):
        cell = cells.get(item.grade_id)
        cell_points, cell_messages = _cell_score(cell, run)
        if item.grade_id in checked and (payload or run.completed or not _ran(cell)):
            fraction, messages = checked[item.grade_id]
            # a visible test's error is worth reading, but only the checks give points
            if fraction < 1 and _ran(cell):
                messages = messages + cell_messages
            points = round(fraction * item.max_points, 3)
        else:
            points, messages = cell_points * item.max_points, cell_messages
            if item.grade_id in checked:
                why = f"scored by its test cell: the output checks did not run ({run.reason})"
                messages = [why, *messages]
        scored[item.grade_id] = ItemResult(item.grade_id, points, item.max_points, messages)
    return scored


def _ran(cell) -> bool:
    return cell is not None and cell.get("execution_count") is not None


def _grade_curve(
    setup: Setup, sub: Submission, book: _Book, run: RunResult, payload: dict | None
) -> tuple[dict[str, ItemResult], list[FlagNote]]:
    """The items and flags of the assignment's training curves that are in `book`."""
    mine = {i.grade_id: i.max_points for i in setup.items if i.notebook == book.name}
    results: dict[str, ItemResult] = {}
    flags: list[FlagNote] = []
    for spec in outputs.curve_specs(setup.assignment):
        if not set(spec.items) <= set(mine):
            continue
        replay = outputs.exported(payload, spec.export)
        if isinstance(replay, str) and run.reason:
            replay = f"{replay}: {run.reason}"
        found, noted = curves.grade_curve(
            spec, sub.folder, book.submitted, book.source, replay, mine
        )
        results |= found
        flags += noted
    return results, flags


def _cell_score(cell, run: RunResult) -> tuple[float, list[str]]:
    """(1 or 0, messages) for one executed test cell: full points when it ran without an
    error. Output on stderr (a warning) costs nothing, unlike in nbgrader, and neither does
    a displayed number: nbgrader's determine_grade takes it as partial credit, which student
    code can forge."""
    if not _ran(cell):
        why = run.reason or "the notebook stopped before it"
        return 0.0, [f"not run: {why}"]
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            error = ": ".join(str(p) for p in (out.get("ename"), out.get("evalue")) if p)
            return 0.0, [error[:500]]
    return 1.0, []


def _void(items: list[ItemResult], flags: list[FlagNote], setup: Setup) -> list[ItemResult]:
    """Items fed by flagged code score zero. A flag on an added cell (cell None) voids every
    item, since its code may serve any function; one on a test (raised by its check) voids that
    test; one on an edited locked cell voids nothing, since the run restored that cell from the
    source."""
    voided: dict[str, str] = {}
    every = [i.grade_id for i in setup.items]
    for flag in flags:
        if flag.name not in VOIDING:
            continue
        # a reference-use raised by a test's check; an edited test was restored by the run
        tests = [flag.cell] if flag.cell in every and flag.name == "reference-use" else []
        targets = every if flag.cell is None else setup.feeds.get(flag.cell, tests)
        for gid in targets:
            voided.setdefault(gid, f"no points: {flag.name}: {flag.reason}")
    return [
        replace(r, points=0.0, messages=[*r.messages, voided[r.grade_id]])
        if r.grade_id in voided
        else r
        for r in items
    ]


def _worse(a: str, b: str) -> str:
    order = ["graded", "crashed", "memory", "timeout", "invalid"]
    return max(a, b, key=order.index)


def _dedupe(flags: list[FlagNote]) -> list[FlagNote]:
    return list(dict.fromkeys(flags))


def _keep_autograded(
    setup: Setup, sub: Submission, book: _Book, run: RunResult, skips: list[_Skip]
) -> None:
    """Write the executed notebook where formgrader expects it (autograded/<student>/...),
    without the output-check cell, each skipped cell showing its own code again (the submitted
    notebook when the run left none), with the submission's timestamp.txt and
    submission_secret.txt, which nbgrader's feedback steps read there."""
    nb = run.notebook if run.notebook is not None else book.submitted
    nb.cells = [c for c in nb.cells if "cnnkit" not in c.metadata]
    if run.notebook is not None:
        for skip in skips:
            if skip.index < len(nb.cells):
                nb.cells[skip.index].source = skip.source
    folder = setup.course / "autograded" / sub.student_id / setup.assignment
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / book.name)
    for name in SUBMISSION_FILES:
        if (sub.folder / name).is_file():
            shutil.copyfile(sub.folder / name, folder / name)


# --------------------------------------------------------------------------- the batch


def grade(
    assignment: str,
    submissions: Path,
    course: Path,
    out: Path | None = None,
    workers: int | None = None,
    limits: Limits = Limits(),  # noqa: B008 - frozen
    force: bool = False,
    progress: bool = True,
    scheduler: str | None = None,
    similarity: bool = True,
    against: Sequence[Path] = (),
) -> Batch:
    """Grade every submission of `assignment` in `submissions` (folder or zip) and write
    grades.csv, feedback/, gradescope/ and the course's gradebook. `scheduler`: the address of
    a Dask scheduler to grade on instead of local threads. `similarity`: also compare the
    students' code (autograder.similarity, with the folders `against`) and write
    similarity.json and similarity.html. Returns the Batch."""
    _check_name(assignment)
    course = Path(course).resolve()
    out = Path(out).resolve() if out else course / "grades" / assignment
    hide = _hidden(course, Path(submissions).resolve(), out)
    _check_writable(out)
    course.mkdir(parents=True, exist_ok=True)
    with _course_lock(course):
        return _grade_locked(
            assignment,
            Path(submissions),
            course,
            out,
            hide,
            workers,
            limits,
            force,
            progress,
            scheduler,
            similarity,
            tuple(Path(a) for a in against),
        )


def _grade_locked(
    assignment: str,
    submissions: Path,
    course: Path,
    out: Path,
    hide: tuple[Path, ...],
    workers: int | None,
    limits: Limits,
    force: bool,
    progress: bool,
    scheduler: str | None,
    similarity: bool,
    against: tuple[Path, ...],
) -> Batch:
    """`grade`, once the course is this process's alone."""
    setup = replace(prepare(assignment, course, limits), hide=hide)
    notices = [n for n in [strip_hidden_tests_from_feedback(course)] if n]
    subs = find_submissions(submissions, assignment, setup.notebooks, out / ".extracted")
    previous = _previous(out / RESULTS, force)
    todo = [s for s in subs if not _reusable(previous.get(s.student_id), setup, s)]
    done = {s.student_id: previous[s.student_id] for s in subs if s not in todo}
    _run_batch(setup, todo, out, workers or os.cpu_count() or 1, progress, done, scheduler)
    outcomes = [done[s.student_id] for s in subs]
    pairs = None
    if similarity:
        docs, pairs = compare_batch(subs, setup.source, setup.released, against)
        write_similarity(out, assignment, docs, pairs)
    marks = _write_reports(setup, outcomes, out, flag_names(pairs or []))
    return Batch(setup, outcomes, [s.student_id for s in todo], out, marks, notices, pairs)


def _reusable(old: Outcome | None, setup: Setup, sub: Submission) -> bool:
    """True when `old` graded exactly this submission under this set-up."""
    return old is not None and old.key == _outcome_key(setup, sub)


def _check_writable(out: Path) -> None:
    """GradeError unless `out` can be created and written and has room, before any grading."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".probe-"):
            pass
        free = shutil.disk_usage(out).free
    except OSError as exc:
        raise GradeError(f"cannot write into the output folder {out}: {exc.strerror}") from None
    if free < MIN_FREE_MB * MB:
        raise GradeError(
            f"only {free / MB:.0f} MB free in {out}; grading needs at least {MIN_FREE_MB} MB "
            "for its records, reports and the executed notebooks"
        )


@contextlib.contextmanager
def _course_lock(course: Path) -> Iterator[None]:
    """Hold the course's grading lock: a second `cnnkit grade` on the same course is refused
    rather than interleaved. The kernel drops the lock when its holder dies, however."""
    path = course / LOCK
    with open(path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = " ".join(lock.read().split()) or "another process"
            raise GradeError(
                f"another cnnkit grade is running on the course {course} ({holder}); "
                "wait for it to finish"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()}\n")
        lock.flush()
        yield


def _hidden(course: Path, submissions: Path, out: Path) -> tuple[Path, ...]:
    """What a student's process must not see: the course (gradebook, source, other students'
    files), the kit's solutions, the submissions and the output folder. GradeError when one of
    them holds the kit, which the student's kernel imports."""
    hidden = tuple(dict.fromkeys([course, SOLUTIONS.resolve(), submissions, out]))
    for path in hidden:
        if KIT_ROOT.is_relative_to(path):
            raise GradeError(
                f"the kit at {KIT_ROOT} lies inside {path}, which is hidden from students' code; "
                "keep the course, the submissions and --out outside the kit's folder"
            )
    return hidden


def _previous(folder: Path, force: bool) -> dict[str, Outcome]:
    """The records of earlier runs (none with `force`); damaged ones are regraded."""
    found = {}
    if force or not folder.is_dir():
        return found
    for path in folder.glob("*.json"):
        with contextlib.suppress(ValueError, OSError):
            outcome = Outcome.from_json(path.read_text())
            found[outcome.student_id] = outcome
    return found


def _run_batch(
    setup: Setup,
    todo: list[Submission],
    out: Path,
    workers: int,
    progress: bool,
    done: dict[str, Outcome],
    scheduler: str | None = None,
) -> None:
    """Grade `todo` on `workers` local threads, each driving one sandbox at a time, or on the
    Dask cluster at `scheduler`; each Outcome comes back here and is saved as soon as it is
    known, so an interrupted batch resumes where it stopped. Fills `done`."""
    counts: Counter[str] = Counter(o.status for o in done.values())
    bar = tqdm(
        total=len(todo), desc=f"grading {setup.assignment}", unit="sub", disable=not progress
    )
    with bar, _executor(workers, scheduler) as (submit, completed):
        if scheduler is None:
            tasks = _submit_overlapped(submit, setup, todo)
        else:  # a Dask worker gets its submission's flags with it
            static = {s.student_id: _static_before(setup, s) for s in todo}
            tasks = [submit(grade_task, setup, s, static[s.student_id]) for s in todo]
        for outcome in completed(tasks):
            if not unsafe_id_problem(outcome.student_id):  # its id cannot name a file
                outcome.save(out / RESULTS)
            done[outcome.student_id] = outcome
            counts[outcome.status] += 1
            bar.set_postfix(dict(sorted(counts.items())), refresh=False)
            bar.update()


@contextlib.contextmanager
def _executor(workers: int, scheduler: str | None) -> Iterator[tuple[Callable, Callable]]:
    """(submit, completed): submit(fn, *args) -> future; completed(futures) yields results as
    they finish. Local threads, or a dask.distributed Client connected to `scheduler`."""
    if scheduler is None:
        with ThreadPoolExecutor(workers) as pool:
            yield pool.submit, lambda fs: (f.result() for f in as_completed(fs))
        return
    try:
        from dask.distributed import Client
        from dask.distributed import as_completed as dask_completed
    except ImportError:
        raise GradeError("--scheduler needs dask.distributed: pip install 'cnnkit[dask]'") from None
    try:
        client = Client(scheduler, timeout=10)
    except (OSError, TimeoutError) as exc:
        raise GradeError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
    with client:
        # pure=False: a regrade must run again, never reuse a result the cluster remembers
        yield (
            lambda fn, *args: client.submit(fn, *args, pure=False),
            lambda fs: (f.result() for f in dask_completed(fs)),
        )


def _submit_overlapped(submit: Callable, setup: Setup, todo: list[Submission]) -> list:
    """Submit every task to the local threads at once and run the batch's static checks here
    while the sandboxes run; a task waits for them only before it scores its first notebook.
    CPython 3.11's parser is not thread-safe against other compiles (numba's generated code
    among them): no task parses or compiles before the static checks are done."""
    flags: dict[str, StaticFlags] = {}
    done = threading.Event()

    def ready(student_id: str) -> StaticFlags:
        done.wait()
        return flags.get(student_id)

    tasks = [submit(grade_task, setup, s, functools.partial(ready, s.student_id)) for s in todo]
    try:
        for s in todo:
            flags[s.student_id] = _static_before(setup, s)
    finally:
        done.set()
    return tasks


def _static_before(setup: Setup, sub: Submission) -> list[FlagNote] | None:
    """The static checks' flags of `sub`, or None (its task then runs them) when it cannot be
    read here."""
    if sub.status != "ok":
        return None
    try:
        return _static_flags(setup, [_read(setup, sub, name) for name in setup.notebooks])
    except Exception:  # the task reports whatever this was, on the student's row
        return None


def grade_task(
    setup: Setup, sub: Submission, static: StaticFlags | Callable[[], StaticFlags] = None
) -> Outcome:
    """Grade one submission wherever this runs (a local thread or a Dask worker), in a fresh
    work folder of its own; a failure of the grader itself becomes a "crashed" row."""
    workroot = Path(tempfile.mkdtemp(prefix="cnnkit-grade-"))
    try:
        workroot.chmod(0o711)  # the sandbox may pass through, not list it
        return grade_submission(setup, sub, workroot, static)
    except Exception as exc:  # a grader bug must not stop the batch: report it on the row
        why = f"the grader failed: {type(exc).__name__}: {exc}"
        return _not_graded(setup, sub, "crashed", why)
    finally:
        shutil.rmtree(workroot, ignore_errors=True)


def _write_reports(
    setup: Setup, outcomes: list[Outcome], out: Path, similar: dict[str, list[str]]
) -> dict[str, Standing]:
    """The gradebook first (timestamps, late penalties, written answers), then grades.csv with
    every row (and the `similar` flags of autograder.similarity, which reach no feedback),
    Gradescope's files and the feedback for each student whose id can name a file (the others
    are invalid rows, with the reason in grades.csv). The gradebook's standings."""
    named = [o for o in outcomes if not unsafe_id_problem(o.student_id)]
    update_gradebook(setup.course, setup.assignment, setup.items, named)
    marks = standings(setup.course, setup.assignment, setup.items, [o.student_id for o in named])
    report.write_grades_csv(
        out / "grades.csv", setup.assignment, setup.items, outcomes, marks, similar
    )
    for outcome in named:
        report.write_gradescope(out / "gradescope", setup.items, outcome)
    _write_feedback(setup, named, marks)
    write_summary_html(
        out / "summary.html", setup.assignment, setup.items, outcomes, marks, setup.titles
    )
    return marks


def _write_feedback(setup: Setup, outcomes: list[Outcome], marks: dict[str, Standing]) -> None:
    """Each student's feedback where `nbgrader release_feedback` takes it from:
    <course>/feedback/<student>/<assignment>/<notebook>.html, beside the timestamp.txt and
    submission_secret.txt of autograded/."""
    folder = setup.course / "feedback"
    for outcome in outcomes:
        standing = marks.get(outcome.student_id)
        report.write_feedback(
            folder, setup.assignment, setup.items, outcome, standing, setup.titles
        )
        graded = setup.course / "autograded" / outcome.student_id / setup.assignment
        for name in SUBMISSION_FILES:
            if (graded / name).is_file():
                target = folder / outcome.student_id / setup.assignment / name
                shutil.copyfile(graded / name, target)


def feedback(assignment: str, course: Path, out: Path | None = None) -> tuple[list[str], int]:
    """`cnnkit feedback`: write every graded student's feedback again from the records under
    `out` (default <course>/grades/<assignment>) and what the gradebook holds now (the
    graders' marks and comments, late penalties), without grading anything. (The students
    written, how many written answers still wait for a grader.) GradeError when the
    assignment was never graded there."""
    _check_name(assignment)
    course = Path(course).resolve()
    out = Path(out).resolve() if out else course / "grades" / assignment
    records = [
        o for o in _previous(out / RESULTS, force=False).values() if o.assignment == assignment
    ]
    if not records:
        raise GradeError(
            f"no grading records of {assignment} in {out / RESULTS}: run cnnkit grade first"
        )
    setup = prepare(assignment, course, Limits())
    named = sorted(
        (o for o in records if not unsafe_id_problem(o.student_id)), key=lambda o: o.student_id
    )
    marks = standings(course, assignment, setup.items, [o.student_id for o in named])
    _write_feedback(setup, named, marks)
    pending = sum(w.points is None for st in marks.values() for w in st.written)
    return [o.student_id for o in named], pending
