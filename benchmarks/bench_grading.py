"""Grading throughput, side by side in one run: `cnnkit grade` against plain `nbgrader autograde`
on the same synthetic class of a1_convolution submissions, on this machine.

What is measured:

- A temporary nbgrader course gets a1_convolution released into it, and a class of N submissions
  in nbgrader's layout: mostly correct (the release answered from the source), some half done,
  some with wrong answers, a few slow (a cell that sleeps SLOW_SECONDS). The mix is fixed and
  printed.
- `cnnkit grade` (`autograder.grade.grade`, in this process, `force`, one sandbox per worker,
  workers = cores by default) grades the class: wall seconds from the call to its return,
  reports and gradebook included. It grades it twice, before nbgrader and after, and its time is
  the mean of the two: the speed of a VM drifts over the minutes nbgrader takes.
- `nbgrader autograde a1_convolution --force`, run as a command in a copy of the course made right
  after the release (same source, release and gradebook), grades the same notebooks, copied into
  its `submitted/` folder: wall seconds of the command. Its log, `autograded/` and the gradebook's
  scores are checked, and both graders' mean scores per kind of student are printed.
- Where one full-marks submission's time goes in cnnkit's sandbox, from sandbox runs made one at
  a time after the batches (fastest of REPEAT each), in work folders prepared as grading prepares
  them: a one-cell notebook (sandbox and kernel start-up and shut-down), the graded notebook
  without and with the output checks' harvest cell (the sandbox server holding the kit's numba
  kernels, as grading starts it), and the graded notebook from a server without them, its work
  folder's numba cache a copy of the grader's (each run loads the kernels it calls) or empty
  (each run compiles them). The cell timestamps nbclient records split each run too.

    python benchmarks/bench_grading.py [--students 40] [--workers N] [--keep DIR] [--quick]

Run it as root (the sandbox needs namespaces and uids of its own) on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path

import nbformat
import nbgrader
from nbgrader.api import Gradebook

from autograder.grade import UID_BASE, assemble, cell_timeout, grade
from autograder.kernel_cache import kernel_cache, seed
from autograder.outputs import harvest_cell
from autograder.release import SOLUTIONS, release
from autograder.sandbox import Limits, run_notebook, start_server
from autograder.synthetic import answer_key, filled
from autograder.synthetic import make_class as synthetic_class
from cnn_core.grading import STUDENT_ENV

ASSIGNMENT = "a1_convolution"
NOTEBOOK = f"{ASSIGNMENT}.ipynb"
SLOW_SECONDS = 3
TIMEOUT = 600.0  # seconds per notebook, for both graders: generous, nothing here should hit it
REPEAT = 3  # sandbox runs per measurement of the breakdown; the fastest is kept
TARGET = 3.0  # cnnkit grade's throughput over nbgrader's, on 2 cores
# Share of the class of each kind but "correct" (at least one each); the rest are correct.
SHARES = {"half-done": 0.1, "wrong-answer": 0.1, "slow": 0.1}
# Edits that make a correct submission wrong: (solution grade_id, right text, wrong text).
WRONG_EDITS = [
    ("answers_1d", "y_valid = [5, 8, 7, 12, 7]", "y_valid = [5, 8, 7, 12, 8]"),
    ("conv_output_size", "int(_out_len(n, k, stride, padding))", "int(_out_len(n, k, stride, 0))"),
]
# The students of the hang measurement (autograder.synthetic): a cell that loops forever, and a
# function that hangs on strided cases; each graded alone with the grader's default limits.
HANGING = ("infinite-loop", "hangs-on-stride")


# --------------------------------------------------------------------------- the class


def class_mix(n: int) -> list[tuple[str, str]]:
    """[(student id, kind)] of a class of `n`, in a fixed shuffled order."""
    kinds = []
    for kind, share in SHARES.items():
        kinds += [kind] * max(1, round(share * n))
    kinds += ["correct"] * (n - len(kinds))
    if len(kinds) != n:
        raise ValueError(f"a class of {n} is too small for one student of each kind")
    random.Random(0).shuffle(kinds)
    return [(f"s{i:02d}-{kind}", kind) for i, kind in enumerate(kinds, 1)]


def submission(kind: str, source, released) -> nbformat.NotebookNode:
    """The notebook a student of `kind` hands in."""
    if kind == "half-done":
        return filled(source, released, share=0.5)
    nb = filled(source, released)
    if kind == "wrong-answer":
        for grade_id, right, wrong in WRONG_EDITS:
            cell = next(c for c in nb.cells if _gid(c) == grade_id)
            if right not in cell.source:
                raise ValueError(f"{grade_id} no longer holds {right!r}: update WRONG_EDITS")
            cell.source = cell.source.replace(right, wrong)
    elif kind == "slow":
        setup = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
        nb.cells.insert(
            setup + 1, nbformat.v4.new_code_cell(f"import time\ntime.sleep({SLOW_SECONDS})")
        )
    return nb


def _gid(cell) -> str | None:
    """The nbgrader grade_id of `cell`, if it has one."""
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def make_class(course: Path, dest: Path, mix: list[tuple[str, str]]) -> None:
    """Write every submission of `mix` as dest/<student>/<assignment>/<notebook>, answered from
    a notebook a student wrote independently of the solutions."""
    source = answer_key(
        ASSIGNMENT, nbformat.read(course / "source" / ASSIGNMENT / NOTEBOOK, as_version=4)
    )
    released = nbformat.read(course / "release" / ASSIGNMENT / NOTEBOOK, as_version=4)
    for student, kind in mix:
        folder = dest / student / ASSIGNMENT
        folder.mkdir(parents=True)
        nbformat.write(submission(kind, source, released), folder / NOTEBOOK)


# --------------------------------------------------------------------------- the machine


def cpu_now() -> tuple[float, float, float]:
    """(wall, CPU seconds the whole machine has been busy, CPU seconds of this process and all
    its descendants), for `others_cores`. Descendants still running (the sandbox servers,
    which outlive a run) count from /proc, the others through getrusage once waited for."""
    with open("/proc/stat") as stat:
        user, nice, system, _idle, _iowait, irq, softirq = map(int, stat.readline().split()[1:8])
    tick = os.sysconf("SC_CLK_TCK")
    machine = (user + nice + system + irq + softirq) / tick
    mine = sum(
        u.ru_utime + u.ru_stime
        for u in (
            resource.getrusage(resource.RUSAGE_SELF),
            resource.getrusage(resource.RUSAGE_CHILDREN),
        )
    )
    return time.monotonic(), machine, mine + _descendants_ticks(os.getpid()) / tick


def _descendants_ticks(root: int) -> int:
    """Clock ticks used by the processes below `root` that it has not waited for, with their
    own waited-for children (utime, stime, cutime and cstime of /proc/<pid>/stat)."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            table[int(stat.parent.name)] = (int(fields[1]), sum(map(int, fields[11:15])))
        except (OSError, ValueError, IndexError):
            continue  # exited while we looked
    below, todo, ticks = set(), [root], 0
    while todo:
        parent = todo.pop()
        for pid, (ppid, used) in table.items():
            if ppid == parent and pid not in below:
                below.add(pid)
                todo.append(pid)
                ticks += used
    return ticks


def others_cores(before: tuple[float, float, float]) -> float:
    """Cores other processes kept busy, on average, since `before` (a `cpu_now()`): machine
    busy time less this benchmark's own, per wall second. Near 0 on an idle machine."""
    after = cpu_now()
    wall = after[0] - before[0]
    return max(0.0, (after[1] - before[1]) - (after[2] - before[2])) / wall


# --------------------------------------------------------------------------- the two graders


def run_cnnkit(course: Path, subs: Path, out: Path, workers: int):
    """(wall seconds, Batch) of `cnnkit grade` on the class, nothing reused."""
    limits = Limits(timeout=TIMEOUT, cell_timeout=TIMEOUT)
    t0 = time.perf_counter()
    batch = grade(
        ASSIGNMENT,
        subs,
        course,
        out=out,
        workers=workers,
        limits=limits,
        force=True,
        progress=False,
    )
    return time.perf_counter() - t0, batch


def nbgrader_options(course: Path) -> list[str]:
    """Command-line config for a course folder, as autograder/release.py sets it in-process."""
    return [
        f"--CourseDirectory.root={course}",
        f"--CourseDirectory.db_url=sqlite:///{course / 'gradebook.db'}",
        f"--Exchange.root={course / 'exchange'}",
        f"--Execute.timeout={int(TIMEOUT)}",
    ]


def run_nbgrader(course: Path, subs: Path) -> tuple[float, str]:
    """(wall seconds, log) of `nbgrader autograde --force` on the class, copied into the course's
    submitted/ folder first."""
    shutil.copytree(subs, course / "submitted", dirs_exist_ok=True)
    command = ["nbgrader", "autograde", ASSIGNMENT, "--force", *nbgrader_options(course)]
    t0 = time.perf_counter()
    done = subprocess.run(command, cwd=course, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    log = done.stdout + done.stderr
    (course / "autograde.log").write_text(log)
    if done.returncode != 0:
        raise RuntimeError(f"nbgrader autograde failed ({done.returncode}):\n{log[-3000:]}")
    return seconds, log


def nbgrader_scores(course: Path, students: list[str]) -> dict[str, float]:
    """{student: total auto score} from the course's gradebook, after checking that nbgrader
    executed every notebook (every code cell of autograded/ has an execution count)."""
    for student in students:
        nb = nbformat.read(course / "autograded" / student / ASSIGNMENT / NOTEBOOK, as_version=4)
        unrun = [c for c in nb.cells if c.cell_type == "code" and c.execution_count is None]
        if unrun:
            raise RuntimeError(f"nbgrader left {len(unrun)} code cells of {student} unexecuted")
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        return {
            s: sum(
                g.auto_score or 0.0
                for nb in gb.find_submission(ASSIGNMENT, s).notebooks
                for g in nb.grades
            )
            for s in students
        }


def cells_seconds(course: Path, students: list[str]) -> list[float]:
    """Seconds each student's notebook spent in its cells (first code cell's start to the last
    one's end, from nbclient's timestamps) in the executed notebooks of course/autograded/."""
    spans = []
    for student in students:
        nb = nbformat.read(course / "autograded" / student / ASSIGNMENT / NOTEBOOK, as_version=4)
        stamps = _stamps(nb)
        spans.append(_at(stamps[-1], "shell.execute_reply") - _at(stamps[0], "iopub.status.busy"))
    return spans


def _stamps(nb: nbformat.NotebookNode) -> list[dict]:
    """The execution timestamps nbclient recorded in each code cell."""
    return [c.metadata.get("execution", {}) for c in nb.cells if c.cell_type == "code"]


def _at(stamp: dict, key: str) -> float:
    """One timestamp of a cell, in time.time() seconds."""
    return datetime.fromisoformat(stamp[key].replace("Z", "+00:00")).timestamp()


# --------------------------------------------------------------------------- one submission


def workdir_for(folder: Path, workdir: Path, seeded: bool) -> Path:
    """A new work folder holding a copy of the student's folder, as grading prepares one; with
    `seeded`, its numba cache a copy of the grader's kernel cache."""
    shutil.copytree(folder, workdir)
    if seeded and kernel_cache() is not None:
        seed(workdir, kernel_cache())
    return workdir


def sandbox_run(nb: nbformat.NotebookNode, workdir: Path, hide, student: str):
    """(wall seconds, RunResult, wall-clock time of the call) of one sandbox run of `nb` in
    `workdir`, with the uid, hidden paths and environment grading gives it."""
    private = workdir.with_name(f"{workdir.name}-run")  # outside the workdir, as grading does
    private.mkdir(mode=0o700, exist_ok=True)
    path = private / NOTEBOOK
    nbformat.write(nb, path)
    limits = Limits(timeout=TIMEOUT, cell_timeout=TIMEOUT)
    uid = UID_BASE + threading.get_native_id()
    started = time.time()
    t0 = time.perf_counter()
    run = run_notebook(path, workdir, limits, {STUDENT_ENV: student}, hide=hide, uid=uid)
    seconds = time.perf_counter() - t0
    if run.status != "ok":
        raise RuntimeError(f"breakdown run failed: {run.status}: {run.reason}")
    return seconds, run, started


def cell_times(run, started: float, harvested: bool) -> dict[str, float | None]:
    """Split one run with the timestamps nbclient records in each cell: start-up (call to the
    first cell's start), the notebook's own cells, the harvest cell (the last one, when
    `harvested`) and what follows the last cell (kernel shut-down, the notebook piped back and
    parsed)."""
    stamps = _stamps(run.notebook)
    first = _at(stamps[0], "iopub.status.busy")
    end = _at(stamps[-1], "shell.execute_reply")
    own_end = _at(stamps[-1], "iopub.status.busy") if harvested else end
    return {
        "start-up": first - started,
        "cells": own_end - first,
        "harvest": end - own_end if harvested else None,
        "after": started + run.seconds - end,
    }


def breakdown(course: Path, subs: Path, student: str, scratch: Path) -> dict:
    """Measured sandbox runs of one full-marks submission, one at a time."""
    folder = subs / student / ASSIGNMENT
    nb = assemble(
        nbformat.read(folder / NOTEBOOK, as_version=4),
        nbformat.read(course / "source" / ASSIGNMENT / NOTEBOOK, as_version=4),
        nbformat.read(course / "release" / ASSIGNMENT / NOTEBOOK, as_version=4),
    )
    harvested = nbformat.from_dict(json.loads(json.dumps(nb)))
    harvested.cells.append(harvest_cell(ASSIGNMENT))
    trivial = nbformat.v4.new_notebook(metadata=nb.metadata, cells=[nbformat.v4.new_code_cell()])
    trivial.cells[0].source = "pass"
    hide = (course, SOLUTIONS.resolve(), subs)
    scratch.mkdir(mode=0o711)

    def fastest(notebook, name: str, kernels: bool = True, seeded: bool = False):
        """The fastest of REPEAT runs, each in a new work folder, from a server holding the
        kit's kernels (as grading starts it) or not."""
        start_server(kernel_cache() if kernels else None)
        runs = []
        for i in range(REPEAT):
            workdir = workdir_for(folder, scratch / f"{name}-{i}", seeded)
            runs.append(sandbox_run(notebook, workdir, hide, student))
        return min(runs, key=_first)

    before = cpu_now()
    runs = {
        "trivial": fastest(trivial, "trivial"),
        "no-harvest": fastest(nb, "no-harvest"),
        "graded": fastest(harvested, "graded"),
        "loaded-per-run": fastest(harvested, "loaded-per-run", kernels=False, seeded=True),
        "compiled-per-run": fastest(harvested, "compiled-per-run", kernels=False),
    }
    return {
        "seconds": {k: v[0] for k, v in runs.items()},
        "stamps": {
            k: cell_times(v[1], v[2], k not in ("trivial", "no-harvest")) for k, v in runs.items()
        },
        "others": others_cores(before),
    }


def hang_costs(course: Path, root: Path, workers: int) -> list[tuple[str, float, object]]:
    """[(student, wall seconds, Outcome)] of each HANGING student graded alone, with the
    grader's default limits (the assignment's cell limit, the default case limit)."""
    subs = synthetic_class(
        course / "source" / ASSIGNMENT,
        course / "release" / ASSIGNMENT,
        ASSIGNMENT,
        root / "hanging",
        list(HANGING),
    )
    costs = []
    for student in HANGING:
        one = root / "hanging-one" / student
        shutil.copytree(subs / student, one / student)
        t0 = time.perf_counter()
        batch = grade(
            ASSIGNMENT,
            one,
            course,
            out=root / "hang-grades" / student,
            workers=workers,
            limits=Limits(timeout=TIMEOUT),
            force=True,
            progress=False,
        )
        costs.append((student, time.perf_counter() - t0, batch.outcomes[0]))
    return costs


def print_hang_costs(costs: list[tuple[str, float, object]]) -> None:
    """What a hanging submission costs: wall seconds, sandbox runs, skipped cells, score."""
    limits = Limits()
    print(
        f"\nwhat a hanging submission costs, graded alone with the default limits (cell limit "
        f"{cell_timeout(ASSIGNMENT):g} s for {ASSIGNMENT}, {limits.case_timeout:g} s per hidden "
        f"case, {TIMEOUT:g} s per notebook):"
    )
    for student, seconds, o in costs:
        skipped = sum(1 for f in o.flags if "was skipped" in f.reason)
        stopped = sum(
            1 for r in o.items for m in r.messages if "limit of one case and was stopped" in m
        )
        print(
            f"  {student:<18}{seconds:>7.1f} s   {o.attempts} sandbox runs, {skipped} cells "
            f"skipped, {stopped} hidden cases stopped (of those listed), "
            f"score {o.score:g} / {o.max_score:g}"
        )
    print(
        "  (a correct submission takes about 2-3 s; only submissions that hang are run again, "
        "so the class's throughput above is unchanged by this)"
    )


def _first(item: tuple):
    """The first element: a run's wall seconds, to pick the fastest."""
    return item[0]


# --------------------------------------------------------------------------- the report


def print_mix(mix: list[tuple[str, str]]) -> None:
    """The class: how many of each kind, what the kinds do and who is what."""
    counts = Counter(kind for _, kind in mix)
    print(
        f"class: {len(mix)} submissions of {ASSIGNMENT}: "
        + ", ".join(f"{counts[k]} {k}" for k in ("correct", *SHARES))
    )
    print(
        f"  wrong-answer edits: {', '.join(g for g, _, _ in WRONG_EDITS)}; "
        f"slow: one added cell sleeping {SLOW_SECONDS} s"
    )
    print("  order: " + " ".join(student for student, _ in mix))


def print_scores(mix, batch, nb_scores: dict[str, float]) -> None:
    """Mean auto score per kind of student for both graders, and cnnkit's statuses."""
    ours = {o.student_id: o for o in batch.outcomes}
    kinds = defaultdict(list)
    for student, kind in mix:
        kinds[kind].append(student)
    print("\nmean auto score per kind (of the autograded test cells; written answers excluded):")
    print(f"  {'kind':<14}{'n':>3}{'cnnkit grade':>14}{'nbgrader':>10}   cnnkit statuses")
    for kind, students in kinds.items():
        mine = statistics.mean(ours[s].score for s in students)
        theirs = statistics.mean(nb_scores[s] for s in students)
        statuses = dict(Counter(ours[s].status for s in students))
        print(f"  {kind:<14}{len(students):>3}{mine:>14.2f}{theirs:>10.2f}   {statuses}")
    print(f"  (out of {batch.outcomes[0].max_score:g})")


def print_table(n: int, workers: int, ours: dict, theirs: dict) -> None:
    """The side-by-side throughput table and the target. `ours` and `theirs`: wall seconds,
    the per-submission seconds in the notebooks' cells and the other processes' CPU use."""
    rate_ours, rate_theirs = 60 * n / ours["wall"], 60 * n / theirs["wall"]
    ratio = rate_ours / rate_theirs
    rows = [
        ("notebooks run at a time", f"{workers}", "1"),
        ("submissions", f"{n}", f"{n}"),
        ("wall seconds (*)", f"{ours['wall']:.1f}", f"{theirs['wall']:.1f}"),
        ("  cnnkit's batches before, after nbgrader", "{:.1f}, {:.1f}".format(*ours["walls"]), ""),
        ("submissions per minute", f"{rate_ours:.1f}", f"{rate_theirs:.1f}"),
        ("wall seconds / submissions", f"{ours['wall'] / n:.2f}", f"{theirs['wall'] / n:.2f}"),
        (
            "mean s in a notebook's own cells (**)",
            f"{statistics.mean(ours['cells']):.2f}",
            f"{statistics.mean(theirs['cells']):.2f}",
        ),
        (
            "other processes' CPU use, cores (***)",
            f"{ours['others']:.2f}",
            f"{theirs['others']:.2f}",
        ),
        ("throughput ratio cnnkit / nbgrader", f"x{ratio:.2f}", ""),
    ]
    print(f"\n{'':<40}{'cnnkit grade':>14}{'nbgrader':>12}")
    for label, mine, other in rows:
        print(f"{label:<40}{mine:>14}{other:>12}")
    print(
        "(*) cnnkit's: the mean of its two batches, one before nbgrader's and one after, since "
        "this machine's speed drifts over minutes"
    )
    print(
        "(**) first code cell's start to the last one's end, from nbclient's timestamps in "
        "autograded/ (cnnkit's second batch); cnnkit's without its harvest cell"
    )
    print(
        "(***) mean cores kept busy by processes other than this benchmark's during the run "
        "(/proc/stat less getrusage): near 0 when the comparison is fair"
    )
    verdict = "MET " if ratio >= TARGET else "MISS"
    print(
        f"\n  {verdict}  target on {os.cpu_count()} cores: cnnkit grade >= {TARGET:g}x nbgrader's "
        f"throughput, with the extra safety on (measured x{ratio:.2f})"
    )


def print_breakdown(batch, wall: float, workers: int, b: dict) -> None:
    """Mean per-submission seconds of the batch, then the single-submission runs."""
    per = [o.seconds for o in batch.outcomes]
    print(
        f"\ncnnkit grade, mean sandbox seconds per submission (Outcome.seconds, {workers} "
        f"running at a time): {statistics.mean(per):.2f} s (min {min(per):.2f}, max {max(per):.2f})"
    )
    outside = wall - sum(per) / workers
    print(
        f"  batch wall seconds not covered by sandbox runs, wall - sum(seconds) / {workers}: "
        f"{outside:.1f} s (what grade does besides the sandbox runs: set-up, static checks, scoring, reports)"
    )
    s = b["seconds"]
    print(
        "\nwhere one full-marks submission's time goes in cnnkit's sandbox "
        f"(runs one at a time, fastest of {REPEAT} each):"
    )
    rows = [
        ("trivial", "one-cell notebook ('pass')"),
        ("no-harvest", "graded notebook without the harvest cell"),
        ("graded", "graded notebook + harvest cell (as graded)"),
        ("loaded-per-run", "the same, server without the kernels, numba cache seeded"),
        ("compiled-per-run", "the same, server without the kernels, numba cache empty"),
    ]
    for i, (key, label) in enumerate(rows, 1):
        print(f"  ({i}) {label:<58}{s[key]:>7.2f} s")
    print(
        "  (1)-(3): a new work folder as grading prepares it, run by a sandbox server that has "
        "loaded the kit's numba kernels"
    )
    print("  differences (of separate runs: noisy when the machine is busy):")
    diffs = [
        ("sandbox + kernel start-up and shut-down = (1)", s["trivial"]),
        ("the notebook's own cells = (2) - (1)", s["no-harvest"] - s["trivial"]),
        ("the harvest cell = (3) - (2)", s["graded"] - s["no-harvest"]),
        ("loading the kit's kernels in each run = (4) - (3)", s["loaded-per-run"] - s["graded"]),
        ("compiling them in each run = (5) - (3)", s["compiled-per-run"] - s["graded"]),
    ]
    for label, value in diffs:
        print(f"      {label:<56}{value:>7.2f} s")
    print("  from nbclient's cell timestamps:        start-up     cells   harvest   after last")
    for i, (key, _) in enumerate(rows, 1):
        t = b["stamps"][key]
        harvest = "-" if t["harvest"] is None else f"{t['harvest']:.2f}"
        print(
            f"      run ({i}){'':<28}{t['start-up']:>9.2f}{t['cells']:>10.2f}{harvest:>10}"
            f"{t['after']:>13.2f}"
        )
    print(
        "      (start-up: the call to the first cell's start; cells: to the last own cell's end; "
        "after last: kernel shut-down, the notebook piped back and parsed)"
    )
    print(f"  other processes' CPU use during these runs: {b['others']:.2f} cores")


# --------------------------------------------------------------------------- main


def main(argv=None) -> None:
    """Parse the options, run the benchmark, remove its folder unless --keep."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=40, help="submissions in the class")
    parser.add_argument("--workers", type=int, default=None, help="default: the number of cores")
    parser.add_argument("--keep", type=Path, help="build the course in this new folder, keep it")
    parser.add_argument("--quick", action="store_true", help="a class of 8, for a smoke run")
    args = parser.parse_args(argv)
    n = 8 if args.quick else args.students
    workers = args.workers or os.cpu_count() or 1
    if args.keep and args.keep.exists() and any(args.keep.iterdir()):
        parser.error(f"--keep {args.keep}: the folder must be new or empty")
    root = args.keep.resolve() if args.keep else Path(tempfile.mkdtemp(prefix="bench-grading-"))
    try:
        run(root, n, workers)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"\nkept: {root}")


def run(root: Path, n: int, workers: int) -> None:
    """Build the class under `root`, grade it both ways and print the report."""
    course, theirs_course = root / "course", root / "nbgrader-course"
    subs = root / "submissions"
    release(ASSIGNMENT, course, prove_pair=False)
    shutil.copytree(course, theirs_course)  # the same release and gradebook, before any grading
    mix = class_mix(n)
    make_class(course, subs, mix)
    print(f"{os.cpu_count()} cores; nbgrader {nbgrader.__version__}; course and class in {root}")
    print_mix(mix)
    students = [s for s, _ in mix]
    print(f"\ngrading with cnnkit grade ({workers} workers) ...", flush=True)
    before = cpu_now()
    first, batch = run_cnnkit(course, subs, root / "grades", workers)
    others = [others_cores(before)]
    print("grading with nbgrader autograde ...", flush=True)
    before = cpu_now()
    wall, log = run_nbgrader(theirs_course, subs)
    theirs = {"wall": wall, "others": others_cores(before)}
    theirs["cells"] = cells_seconds(theirs_course, students)
    print(f"  nbgrader's log: {log.count('] Autograding ')} notebooks autograded")
    print(f"grading with cnnkit grade again ({workers} workers) ...", flush=True)
    before = cpu_now()
    second, _ = run_cnnkit(course, subs, root / "grades-after", workers)
    others.append(others_cores(before))
    ours = {"wall": (first + second) / 2, "walls": (first, second)}
    ours |= {"others": statistics.mean(others), "cells": cells_seconds(course, students)}
    print_scores(mix, batch, nbgrader_scores(theirs_course, students))
    print_table(n, workers, ours, theirs)
    print("\nmeasuring one full-marks submission ...", flush=True)
    student = next(s for s, kind in mix if kind == "correct")
    print_breakdown(batch, first, workers, breakdown(course, subs, student, root / "breakdown"))
    print("\nmeasuring hanging submissions ...", flush=True)
    print_hang_costs(hang_costs(course, root, workers))


if __name__ == "__main__":
    main()
