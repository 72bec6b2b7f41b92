"""`cnnkit validate NOTEBOOK`: what a student can know before submitting.

Two things the grader would find, checked on the student's own machine:

1. the kit's static checks (`static_checks.inspect`) against the released notebook: edited or
   deleted locked cells, use of the kit's reference ops, libraries that do the work, patched
   checkers (what `cnnkit grade` would flag);
2. the notebook run top to bottom in a fresh kernel, as the grader would run it, each cell under
   the assignment's cell limit: which visible tests fail, and with what error.

The hidden tests are not run: they exist only in the instructor's source.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from autograder.release import ASSIGNMENTS
from autograder.static_checks import Flag, inspect, policy

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
    stopped: str = ""  # why the run stopped early, if it did
    unanswered: list[str] = field(default_factory=list)  # written answers left as released

    @property
    def ok(self) -> bool:
        return not (self.flags or self.failing or self.stopped)


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
    found = Validation(name, inspect(submitted, nbformat.read(release, as_version=4), policy(name)))
    found.unanswered = _unanswered(submitted)
    _run(submitted, path.parent, timeout, found)
    return found


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


def _run(nb: nbformat.NotebookNode, folder: Path, timeout: float, found: Validation) -> None:
    """Execute a copy of `nb` in a fresh kernel in `folder` and sort its test cells."""
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
            client.execute()
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
    for cell in copy.cells:
        meta = cell.metadata.get("nbgrader", {})
        if not (meta.get("grade") and cell.cell_type == "code"):
            continue
        gid = meta.get("grade_id", "?")
        error = _error(cell)
        if cell.get("execution_count") is None:
            found.failing.append((gid, "not run"))
        elif error:
            found.failing.append((gid, error))
        else:
            found.passing.append(gid)


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
    if found.stopped:
        lines += ["", "The run stopped there: the cells after it did not run."]
    if found.unanswered:
        lines += [
            "",
            f"Written answers still as released (they score 0): {', '.join(found.unanswered)}.",
        ]
    lines += ["", "Hidden tests run only when graded, on cases drawn for you."]
    return "\n".join(lines)
