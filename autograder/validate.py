"""`cnnkit validate NOTEBOOK`: what a student can know before submitting.

Two things the grader would find, checked on the student's own machine:

1. the kit's static checks (`static_checks.inspect`) against the released notebook: edited or
   deleted locked cells, use of the kit's reference ops, libraries that do the work, patched
   checkers (what `cnnkit grade` would flag);
2. the notebook run top to bottom in a fresh kernel, as the grader would run it: in a temporary
   folder holding the notebook and the release's other files, nothing else of the student's
   (code beside the notebook is named in a files-left-out flag), each cell under the
   assignment's cell limit: which visible tests fail, and with what error;
3. for an assignment graded on training curves (a4, a5), what the grader checks on the curve
   files next to the notebook: the notebook runs with every `fit` cut to its first iterations,
   and each file is compared with that replay and checked by its visible test cells, as
   `cnnkit grade` does.

The hidden tests are not run: they exist only in the instructor's source.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from autograder import curves, outputs
from autograder.collect import code_beside, left_out_reason
from autograder.release import ASSIGNMENTS, NOT_FOR_RUNS
from autograder.static_checks import Flag, inspect, policy
from cnn_core.train import REPLAY_ENV

ERROR_CHARS = 300


class ValidateError(ValueError):
    """The notebook cannot be validated: unreadable, or of no known assignment."""


@dataclass
class Validation:
    """What `validate` found."""

    assignment: str
    flags: list[Flag] = field(default_factory=list)
    failing: list[tuple[str, str]] = field(default_factory=list)  # (test cell, error)
    passing: list[str] = field(default_factory=list)  # test cells that ran cleanly
    raised: list[tuple[str, str]] = field(default_factory=list)  # (other code cell, error)
    stopped: str = ""  # why the run stopped early, if it did
    unanswered: list[str] = field(default_factory=list)  # written answers left as released
    replayed: bool = False  # the training was replayed and the curve files checked

    @property
    def ok(self) -> bool:
        return not (self.flags or self.failing or self.stopped or self.raised)


def validate(
    path: Path, assignment: str | None = None, released: Path | None = None, timeout: float = 60.0
) -> Validation:
    """Validate the notebook at `path` (see the module's docstring). `assignment`: by default
    the notebook's file name (a1_convolution.ipynb); `released`: the release it was filled
    from (default: the kit's); `timeout`: seconds per cell."""
    path = Path(path)
    try:
        submitted = nbformat.read(path, as_version=4)
    except (OSError, ValueError) as exc:
        raise ValidateError(f"cannot read {path}: {exc}") from None
    name = assignment or re.sub(r"\s*\(\d+\)$", "", path.stem)
    release = Path(released) if released else ASSIGNMENTS / name / f"{name}.ipynb"
    if not release.is_file():
        known = ", ".join(sorted(p.name for p in ASSIGNMENTS.iterdir() if p.is_dir()))
        raise ValidateError(
            f"{path.name}: no released notebook {release} (name the assignment with "
            f"--assignment: {known})"
        )
    released_nb = nbformat.read(release, as_version=4)
    found = Validation(name, inspect(submitted, released_nb, policy(name)))
    beside = code_beside(path.parent, [path.name])
    found.flags += [Flag("files-left-out", left_out_reason(beside), None)] if beside else []
    found.unanswered = _unanswered(submitted)
    specs = outputs.curve_specs(name)
    with _run_folder(path, release.parent) as work:
        if not specs:
            _run(submitted, work, timeout, found)
            return found
        replaying = os.environ | {REPLAY_ENV: str(curves.replay_iterations(specs))}
        copy = submitted.copy()
        copy.cells = [*submitted.cells, outputs.harvest_cell(name, run_checks=False)]
        skip = {g for s in specs for g in s.items}
        ran = _run(copy, work, timeout, found, skip, env=replaying)
    _check_curves(specs, path.parent, submitted, released_nb, outputs.harvested(ran), found)
    return found


@contextlib.contextmanager
def _run_folder(notebook: Path, release: Path) -> Iterator[Path]:
    """A temporary folder holding links to the `notebook` and to the files of the `release`
    folder but its notebooks, as the grader's run has them: the student's other files, curve
    files included, are neither run nor written."""
    entries = list(release.iterdir())
    skipped = set(NOT_FOR_RUNS(str(release), [e.name for e in entries]))
    with tempfile.TemporaryDirectory(prefix="cnnkit-validate-") as tmp:
        for entry in entries:
            if entry.name not in skipped:
                (Path(tmp) / entry.name).symlink_to(entry.resolve())
        (Path(tmp) / notebook.name).symlink_to(notebook.resolve())
        yield Path(tmp)


def _check_curves(
    specs: tuple[curves.CurveSpec, ...],
    folder: Path,
    submitted: nbformat.NotebookNode,
    released: nbformat.NotebookNode,
    payload: dict | None,
    found: Validation,
) -> None:
    """Grade each curve file in `folder` as `cnnkit grade` would, on the release's visible tests."""
    found.replayed = True
    for spec in specs:
        replay = outputs.exported(payload, spec.export)
        results, flags = curves.grade_curve(
            spec, folder, submitted, released, replay, dict.fromkeys(spec.items, 1.0)
        )
        for gid, result in results.items():
            if result.points == result.max_points:
                found.passing.append(gid)
            else:
                found.failing.append((gid, "; ".join(result.messages)[:ERROR_CHARS]))
        found.flags += [Flag(f.name, f.reason, f.cell) for f in flags]


def _unanswered(nb: nbformat.NotebookNode) -> list[str]:
    """The grade_ids of the written answers still as released (nbgrader scores them zero)."""
    from nbgrader import utils

    return [
        cell.metadata["nbgrader"]["grade_id"]
        for cell in nb.cells
        if cell.cell_type == "markdown"
        and utils.is_solution(cell)
        and utils.is_grade(cell)
        and cell.metadata.nbgrader.get("checksum") == utils.compute_checksum(cell)
    ]


def _run(
    nb: nbformat.NotebookNode,
    folder: Path,
    timeout: float,
    found: Validation,
    skip: set[str] = frozenset(),
    env: dict[str, str] | None = None,
) -> nbformat.NotebookNode:
    """Execute a copy of `nb` in a fresh kernel in `folder` (with the environment `env`, default
    this process's), sort its test cells but those in `skip`, and return the executed copy."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    copy = nbformat.from_dict(nb)
    running: list[int] = []
    client = NotebookClient(
        copy,
        timeout=int(timeout),
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": str(folder)}},
        on_cell_start=lambda cell, cell_index: running.append(cell_index),
        log=logging.getLogger("cnnkit.validate"),
    )
    try:
        with _quiet_stderr():  # the kernel's own complaints when it is stopped
            client.execute(env=env or dict(os.environ))
    except CellTimeoutError:
        found.stopped = (
            f"{_cell_name(copy, running)} ran past the {timeout:g} s cell limit: the grader "
            "would skip it (flag timeout), and the tests that need it would fail"
        )
    except DeadKernelError:
        found.stopped = (
            f"{_cell_name(copy, running)} stopped the kernel: the grader would skip it (flag "
            "crashed), and the tests that need it would fail"
        )
    for index, cell in enumerate(copy.cells):
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type != "code":
            continue
        if not meta.get("grade"):
            if error := _error(cell):
                found.raised.append((_cell_name(copy, [index]), error))
            continue
        gid = meta.get("grade_id", "?")
        if gid in skip:
            continue
        error = _error(cell)
        if cell.get("execution_count") is None:
            found.failing.append((gid, "not run"))
        elif error:
            found.failing.append((gid, error))
        else:
            found.passing.append(gid)
    return copy


def _cell_name(nb: nbformat.NotebookNode, running: list[int]) -> str:
    """ "cell N (`grade_id` or its first line)" of the cell that was running."""
    if not running:
        return "the kernel's start-up"
    cell = nb.cells[running[-1]]
    gid = cell.metadata.get("nbgrader", {}).get("grade_id")
    first = next((line.strip() for line in cell.source.splitlines() if line.strip()), "")
    return f"cell {running[-1] + 1} (`{gid or first[:40]}`)"


@contextlib.contextmanager
def _quiet_stderr():
    """fd 2 on /dev/null for the block (a kernel started in it inherits that), then back."""
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _error(cell) -> str:
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            text = ": ".join(str(p) for p in (out.get("ename"), out.get("evalue")) if p)
            return text[:ERROR_CHARS]
    return ""


def describe(found: Validation) -> str:
    """The report printed for the student."""
    lines = [f"{found.assignment}: checked as the grader would, before you submit", ""]
    if found.flags or found.stopped:
        lines.append("The grader would flag:")
        lines += [
            f"  {f.name}{f' (cell {f.cell})' if f.cell else ''}: {f.reason}" for f in found.flags
        ]
        lines += [f"  {found.stopped}"] if found.stopped else []
    else:
        lines.append("Nothing the grader would flag.")
    total = len(found.passing) + len(found.failing)
    lines += ["", f"Visible tests: {len(found.passing)} of {total} pass."]
    lines += [f"  {gid}: {error}" for gid, error in found.failing]
    if found.raised:
        lines += [
            "",
            "Other cells raised an error (the grader runs them too, and what needs them fails):",
        ]
        lines += [f"  {cell}: {error}" for cell, error in found.raised]
    if found.stopped:
        lines += ["", "The run stopped there: the cells after it did not run."]
    if found.unanswered:
        lines += [
            "",
            f"Written answers still as released (they score 0): {', '.join(found.unanswered)}.",
        ]
    if found.replayed:
        lines += [
            "",
            "The training runs were replayed briefly from your code and compared with the curve "
            "files next to the notebook, as the grader does.",
        ]
    lines += ["", "Hidden tests run only when graded, on cases drawn for you."]
    return "\n".join(lines)
