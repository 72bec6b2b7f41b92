"""A synthetic class: submissions made from a released notebook and its source, one per kind of
student a grader meets, for `cnnkit demo`, the tests and the grading benchmark.

    make_class(source_dir, release_dir, "a1_convolution", dest)  # dest/<student>/<assignment>/...

Each student id says what the submission is; `EXPECTED` says what the grader should make of it.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from autograder.outputs import check_module

# What each student of the class does, and the status and flags grading should give it.
EXPECTED: dict[str, tuple[str, set[str]]] = {
    "full-marks": ("graded", set()),
    "half-done": ("graded", set()),
    "unfilled": ("graded", set()),
    "corrupt-notebook": ("invalid", {"invalid"}),
    "misnamed-notebook": ("invalid", {"invalid"}),
    "infinite-loop": ("timeout", {"timeout"}),
    "memory-hog": ("memory", {"memory"}),
    "exits-kernel": ("crashed", {"crashed"}),
    "kills-parent": ("crashed", {"crashed"}),
    "reads-solutions": ("graded", {"reference-use"}),
    "floods-output": ("invalid", {"invalid"}),
    "uses-reference": ("graded", {"reference-use"}),
    "uses-torch": ("graded", {"forbidden-library"}),
    "patches-checker": ("graded", {"tampered"}),
    "edits-tests": ("graded", {"tampered"}),
}


def _gid(cell) -> str | None:
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def filled(source: nbformat.NotebookNode, release: nbformat.NotebookNode, share: float = 1.0):
    """The release with the first `share` of its code solution cells answered from the source:
    what a student who knew the answers (or some of them) would hand in."""
    answers = {
        _gid(c): c.source for c in source.cells if c.metadata.get("nbgrader", {}).get("solution")
    }
    nb = nbformat.from_dict(json.loads(json.dumps(release)))
    code = [
        c
        for c in nb.cells
        if c.metadata.get("nbgrader", {}).get("solution") and c.cell_type == "code"
    ]
    for cell in code[: round(share * len(code))]:
        cell.source = answers[_gid(cell)]
    for cell in nb.cells:  # written answers too, so that formgrader has something to grade
        if cell.cell_type == "markdown" and cell.metadata.get("nbgrader", {}).get("solution"):
            cell.source = answers[_gid(cell)]
    return nb


def _with_cell(nb: nbformat.NotebookNode, code: str, after: str | None = None):
    """`nb` with a code cell added after the cell `after` (default: after the first code cell)."""
    cells = nb.cells
    index = next(
        i
        for i, c in enumerate(cells)
        if c.cell_type == "code" and (after is None or _gid(c) == after)
    )
    cells.insert(index + 1, nbformat.v4.new_code_cell(code))
    return nb


def _replace_solution(nb: nbformat.NotebookNode, grade_id: str, code: str):
    next(c for c in nb.cells if _gid(c) == grade_id).source = code
    return nb


def _first_function_cell(nb: nbformat.NotebookNode) -> tuple[str, str]:
    """(grade_id, function name) of the first solution cell that defines a function."""
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution") and cell.cell_type == "code" and cell.source.startswith("def "):
            return meta["grade_id"], cell.source.split("(", 1)[0][4:]
    raise ValueError("no solution cell defines a function")


def _edited_test(nb: nbformat.NotebookNode):
    test = next(
        c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade") and c.cell_type == "code"
    )
    test.source = "pass  # nothing to see here"
    return nb


Variant = Callable[
    [nbformat.NotebookNode, nbformat.NotebookNode], nbformat.NotebookNode | bytes | None
]


# A student who runs the instructor's answers, read from the kit's solutions/ folder
_READ_SOLUTIONS = """import json, pathlib
import cnn_core
kit = pathlib.Path(cnn_core.__file__).resolve().parents[1]
source = kit / "solutions" / "{assignment}" / "{assignment}.ipynb"
for cell in json.loads(source.read_text())["cells"]:
    if cell["metadata"].get("nbgrader", {{}}).get("solution") and cell["cell_type"] == "code":
        exec("".join(cell["source"]))"""


def _variants(assignment: str) -> dict[str, Variant]:
    """student id -> the notebook (or raw bytes) that student submits."""

    def full(src, rel):
        return filled(src, rel)

    def reference(src, rel):
        nb = filled(src, rel)
        gid, fn = _first_function_cell(nb)
        return _replace_solution(
            nb,
            gid,
            f"from cnn_core.functional import conv1d_forward as _ref\n\n"
            f"def {fn}(*args, **kwargs):\n    return _ref(*args, **kwargs)\n",
        )

    def torch(src, rel):
        nb = filled(src, rel)
        gid, _ = _first_function_cell(nb)
        cell = next(c for c in nb.cells if _gid(c) == gid)
        cell.source = "import torch\n" + cell.source
        return nb

    return {
        "full-marks": full,
        "half-done": lambda src, rel: filled(src, rel, share=0.5),
        "unfilled": lambda src, rel: filled(src, rel, share=0.0),
        "corrupt-notebook": lambda src, rel: b'{"cells": [',
        "misnamed-notebook": full,  # written under another name below
        "infinite-loop": lambda src, rel: _with_cell(filled(src, rel), "while True:\n    pass"),
        "memory-hog": lambda src, rel: _with_cell(filled(src, rel), "hog = bytearray(64 * 2**30)"),
        "exits-kernel": lambda src, rel: _with_cell(filled(src, rel), "import os\nos._exit(3)"),
        "kills-parent": lambda src, rel: _with_cell(
            filled(src, rel), "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)"
        ),
        "reads-solutions": lambda src, rel: _with_cell(
            filled(src, rel, share=0.0), _READ_SOLUTIONS.format(assignment=assignment)
        ),
        "floods-output": lambda src, rel: _with_cell(
            filled(src, rel), "for _ in range(10**6):\n    print('x' * 10_000)"
        ),
        "uses-reference": reference,
        "uses-torch": torch,
        "patches-checker": lambda src, rel: _with_cell(
            filled(src, rel, share=0.0),
            "import numpy as np\nfrom cnn_core import grading\n"
            "grading.check_close = lambda *args, **kwargs: None\nnp.allclose = lambda *args, **kwargs: True",
        ),
        "edits-tests": lambda src, rel: _edited_test(filled(src, rel)),
    }


# The class of an assignment graded on a submitted training curve (a4): every student but
# "unfilled" submits the notebook of one real training run, as they would after running it.
CURVE_EXPECTED: dict[str, tuple[str, set[str]]] = {
    "full-marks": ("graded", set()),
    "unfilled": ("graded", set()),
    "edited-curve": ("graded", {"fabricated-curve"}),
    "no-figure": ("graded", set()),
    "no-history": ("graded", set()),
}


def expected(assignment: str) -> dict[str, tuple[str, set[str]]]:
    """The class of `assignment`: student id -> (status, flags) that grading should give."""
    return CURVE_EXPECTED if _curve(assignment) else EXPECTED


def _curve(assignment: str):
    return getattr(check_module(assignment), "CURVE", None)


def make_class(
    source: Path, release: Path, assignment: str, dest: Path, students: list[str] | None = None
) -> Path:
    """Write the synthetic class of `assignment` into `dest` in nbgrader's submission layout;
    `students` picks some of `expected(assignment)`'s ids (default: all). Returns `dest`."""
    if _curve(assignment):
        return _make_curve_class(Path(source), Path(release), assignment, dest, students)
    variants = _variants(assignment)
    for student in students or list(EXPECTED):
        folder = dest / student / assignment
        folder.mkdir(parents=True, exist_ok=True)
        for nb_path in sorted(Path(release).glob("*.ipynb")):
            src = nbformat.read(Path(source) / nb_path.name, as_version=4)
            made = variants[student](src, nbformat.read(nb_path, as_version=4))
            name = f"{nb_path.stem} (1).ipynb" if student == "misnamed-notebook" else nb_path.name
            if isinstance(made, bytes):
                (folder / name).write_bytes(made)
            else:
                nbformat.write(made, folder / name)
    return dest


def _make_curve_class(source: Path, release: Path, assignment: str, dest: Path, students) -> Path:
    """The class of a curve assignment, from one real run of the filled notebook."""
    spec = _curve(assignment)
    (nb_path,) = sorted(release.glob("*.ipynb"))
    src = nbformat.read(source / nb_path.name, as_version=4)
    rel = nbformat.read(nb_path, as_version=4)
    ran, curve = run_filled(src, rel, spec.file)
    edited = json.loads(curve)
    edited["train_loss"] = [0.9 * v for v in edited["train_loss"]]  # a better-looking curve
    made = {
        "full-marks": (ran, curve),
        "unfilled": (filled(src, rel, share=0.0), None),
        "edited-curve": (ran, json.dumps(edited).encode()),
        "no-figure": (filled(src, rel), curve),
        "no-history": (ran, None),
    }
    for student in students or list(CURVE_EXPECTED):
        folder = dest / student / assignment
        folder.mkdir(parents=True, exist_ok=True)
        nb, data = made[student]
        nbformat.write(nb, folder / nb_path.name)
        if data is not None:
            (folder / spec.file).write_bytes(data)
    return dest


def run_filled(source: nbformat.NotebookNode, release: nbformat.NotebookNode, curve: str):
    """(executed notebook, bytes of the curve file it saved): a student's real run of the
    release answered from the source (the kit's own code, run here without a sandbox)."""
    nb = filled(source, release)
    with tempfile.TemporaryDirectory(prefix="cnnkit-synthetic-") as tmp:
        NotebookClient(
            nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": tmp}}
        ).execute()
        data = (Path(tmp) / curve).read_bytes()
    return nb, data
