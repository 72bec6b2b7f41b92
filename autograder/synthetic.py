"""A synthetic class: submissions made from a released notebook, one per kind of student a grader
meets, for `cnnkit demo`, the tests and the grading benchmark.

    make_class(source_dir, release_dir, "a1_convolution", dest)  # dest/<student>/<assignment>/...

The answers come from notebooks that students completed on their own from the release
(`autograder/students/<assignment>/*.ipynb`, each in its own style), or from the instructor's
source where an assignment has none. Each student id says what the submission is; `expected`
says what the grader should make of it.
"""

from __future__ import annotations

import ast
import json
import random
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from autograder.outputs import curve_specs

STUDENTS = Path(__file__).with_name("students")  # independently written correct notebooks

# What each student of the class does, and the status and flags grading should give it.
EXPECTED: dict[str, tuple[str, set[str]]] = {
    "full-marks": ("graded", set()),
    "half-done": ("graded", set()),
    "unfilled": ("graded", set()),
    "corrupt-notebook": ("invalid", {"invalid"}),
    "misnamed-notebook": ("invalid", {"invalid"}),
    "infinite-loop": ("graded", {"timeout"}),  # the looping cell is skipped
    "memory-hog": ("graded", {"memory"}),
    "exits-kernel": ("graded", {"crashed"}),
    "kills-parent": ("graded", {"crashed"}),
    "reads-solutions": ("graded", {"reference-use"}),
    "floods-output": ("graded", {"output-truncated"}),
    "uses-reference": ("graded", {"reference-use"}),
    "uses-torch": ("graded", {"forbidden-library"}),
    "patches-checker": ("graded", {"tampered"}),
    "edits-tests": ("graded", {"tampered"}),
}
# Students whose one bug breaks one function: status, flags and the items that depend on it
# (every other item earns full points).
BUGS: dict[str, dict[str, tuple[str, set[str], tuple[str, ...]]]] = {
    "a1_convolution": {
        "hangs-on-stride": ("graded", {"timeout"}, ("test_conv2d_backward",)),
        "numba-loop": ("graded", {"timeout"}, ("test_col2im", "test_conv2d_backward")),
        "debug-print": ("graded", set(), ()),
        # tries the kit's own op behind an import the static checks cannot read, catching the
        # error when grading forbids it: the attempt is flagged, and its test earns nothing
        "catches-reference": (
            "graded",
            {"reference-use"},
            ("test_conv2d_forward", "test_conv2d_backward"),  # whose check calls the forward
        ),
    },
}


def _gid(cell) -> str | None:
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def independent(assignment: str) -> dict[str, nbformat.NotebookNode]:
    """{style: notebook} of the correct notebooks students wrote on their own for `assignment`."""
    folder = STUDENTS / assignment
    return {p.stem: nbformat.read(p, as_version=4) for p in sorted(folder.glob("*.ipynb"))}


def answer_key(assignment: str, source: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """The notebook the class's answers come from: the first independent one, else `source`."""
    return next(iter(independent(assignment).values()), source)


def expected(assignment: str) -> dict[str, tuple[str, set[str]]]:
    """The class of `assignment`: student id -> (status, flags) that grading should give."""
    if curve_specs(assignment):
        return CURVE_EXPECTED
    extra = {
        f"full-marks-{style}": ("graded", set()) for style in list(independent(assignment))[1:]
    }
    bugs = {sid: (status, flags) for sid, (status, flags, _) in BUGS.get(assignment, {}).items()}
    return EXPECTED | extra | bugs


def disguise(code: str, seed: int, keep: frozenset[str] = frozenset()) -> str:
    """`code` as a copier hides it: every name it binds renamed (except those in `keep`, the
    graded functions), docstrings and comments dropped, reformatted (`ast.unparse`) and its
    top-level statements in reverse order. For comparing, not for running: keyword arguments
    keep their names while the parameters they name are renamed."""
    tree = ast.parse(code)
    rnd = random.Random(seed)
    bound = {n.arg for n in ast.walk(tree) if isinstance(n, ast.arg)}
    bound |= {
        n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
    }
    bound |= {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    names = {b: f"v{rnd.randrange(10**6)}_{i}" for i, b in enumerate(sorted(bound - keep))}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in names:
            node.id = names[node.id]
        elif isinstance(node, ast.arg) and node.arg in names:
            node.arg = names[node.arg]
        elif isinstance(node, ast.FunctionDef):
            node.name = names.get(node.name, node.name)
            if ast.get_docstring(node) is not None:
                node.body = node.body[1:] or [ast.Pass()]
    tree.body.reverse()
    return ast.unparse(tree)


def filled(source: nbformat.NotebookNode, release: nbformat.NotebookNode, share: float = 1.0):
    """The release with the first `share` of its code solution cells answered from `source`
    (any notebook holding the answers under the same grade_ids): what a student who knew the
    answers (or some of them) would hand in."""
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


def _with_cell(nb: nbformat.NotebookNode, code: str, middle: bool = False):
    """`nb` with a code cell added after its first code cell, or after the code cell in its
    `middle` (graded cells before and after it)."""
    code_cells = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    index = code_cells[len(code_cells) // 2] if middle else code_cells[0]
    nb.cells.insert(index + 1, nbformat.v4.new_code_cell(code))
    return nb


def _edited(nb: nbformat.NotebookNode, grade_id: str, anchor: str, code: str, before: bool = False):
    """`nb` with `code` put after (or `before`) the line `anchor` of the cell `grade_id`, keeping
    that line's indentation. ValueError when the line is not there."""
    cell = next(c for c in nb.cells if _gid(c) == grade_id)
    lines = cell.source.splitlines()
    index = next((i for i, line in enumerate(lines) if line.strip() == anchor), None)
    if index is None:
        raise ValueError(f"cell {grade_id} has no line {anchor!r}")
    indent = lines[index][: len(lines[index]) - len(lines[index].lstrip())]
    added = [indent + line if line else line for line in code.splitlines()]
    lines[index + (0 if before else 1) : index + (0 if before else 1)] = added
    cell.source = "\n".join(lines)
    return nb


def _graded_function(cell) -> str:
    """The function a solution cell is graded on: the one named as its grade_id, else the last
    it defines (helpers come first)."""
    defined = [n.name for n in ast.parse(cell.source).body if isinstance(n, ast.FunctionDef)]
    if not defined:
        raise ValueError(f"solution cell {_gid(cell)} defines no function")
    return _gid(cell) if _gid(cell) in defined else defined[-1]


def _first_function_cell(nb: nbformat.NotebookNode):
    """The first solution cell that defines a function."""
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution") and cell.cell_type == "code" and "def " in cell.source:
            return cell
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
# 200 MB printed by one cell
_FLOOD = "for _ in range(20_000):\n    print('x' * 10_000)"
# The kit's convolution, fetched by a name the static checks cannot read, its error caught
_CAUGHT = """try:
    kit = vars(__import__("importlib"))["import_" + "module"]("cnn" + "_core")
    return getattr(kit, "conv2d_" + "forward")(x, w, b, stride=stride, padding=padding)
except Exception:
    pass  # forbidden while graded: compute it below"""
# A loop compiled by numba, which ignores the kernel's interrupts, that never ends for S > 1
_NUMBA_LOOP = """import numba


@numba.njit
def _fold_check(S):
    n = S
    while n > 1:
        n = (n * 3 + 1) % 1000003 + 2
    return n
"""


def _variants(assignment: str) -> dict[str, Variant]:
    """student id -> the notebook (or raw bytes) that student submits, made from (answers,
    release)."""

    def full(src, rel):
        return filled(src, rel)

    def reference(src, rel):
        nb = filled(src, rel)
        cell = _first_function_cell(nb)
        cell.source += (
            f"\n\n\nfrom cnn_core.functional import conv1d_forward as _ref\n\n\n"
            f"def {_graded_function(cell)}(*args, **kwargs):\n    return _ref(*args, **kwargs)\n"
        )
        return nb

    def torch(src, rel):
        nb = filled(src, rel)
        cell = _first_function_cell(nb)
        cell.source = "import torch\n" + cell.source
        return nb

    variants = {
        "full-marks": full,
        "half-done": lambda src, rel: filled(src, rel, share=0.5),
        "unfilled": lambda src, rel: filled(src, rel, share=0.0),
        "corrupt-notebook": lambda src, rel: b'{"cells": [',
        "misnamed-notebook": full,  # written under another name below
        "infinite-loop": lambda src, rel: _with_cell(filled(src, rel), "while True:\n    pass"),
        "memory-hog": lambda src, rel: _with_cell(filled(src, rel), "hog = bytearray(64 * 2**30)"),
        "exits-kernel": lambda src, rel: _with_cell(
            filled(src, rel), "import os\nos._exit(3)", middle=True
        ),
        "kills-parent": lambda src, rel: _with_cell(
            filled(src, rel), "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)"
        ),
        "reads-solutions": lambda src, rel: _with_cell(
            filled(src, rel, share=0.0), _READ_SOLUTIONS.format(assignment=assignment)
        ),
        "floods-output": lambda src, rel: _with_cell(filled(src, rel), _FLOOD),
        "uses-reference": reference,
        "uses-torch": torch,
        "patches-checker": lambda src, rel: _with_cell(
            filled(src, rel, share=0.0),
            "import numpy as np\nfrom cnn_core import grading\n"
            "grading.check_close = lambda *args, **kwargs: None\nnp.allclose = lambda *args, **kwargs: True",
        ),
        "edits-tests": lambda src, rel: _edited_test(filled(src, rel)),
    }
    for style, answers in list(independent(assignment).items())[1:]:
        variants[f"full-marks-{style}"] = lambda src, rel, answers=answers: filled(answers, rel)
    return variants | _bug_variants(assignment)


def _bug_variants(assignment: str) -> dict[str, Variant]:
    """The students of BUGS[assignment]: the answers with one function broken."""
    if assignment != "a1_convolution":
        return {}
    return {
        "hangs-on-stride": lambda src, rel: _edited(
            filled(src, rel),
            "conv2d_backward",
            "x, w, b, stride, padding, X_col = cache",
            "while stride > 1:  # meant to step through the strides, but never moves on\n"
            "    stride = stride * 1",
        ),
        "numba-loop": lambda src, rel: _edited(
            _edited(filled(src, rel), "col2im", "S, P = stride, padding", "_fold_check(S)"),
            "col2im",
            "def col2im(cols, x_shape, KH, KW, stride=1, padding=0):",
            _NUMBA_LOOP + "\n",
            before=True,
        ),
        "debug-print": lambda src, rel: _edited(
            filled(src, rel), "conv2d_forward", "N, C, H, W = x.shape", 'print("debug x", x)'
        ),
        "catches-reference": lambda src, rel: _edited(
            filled(src, rel), "conv2d_forward", "N, C, H, W = x.shape", _CAUGHT, before=True
        ),
    }


# The class of an assignment graded on submitted training curves (a4, a5): every student but
# "unfilled" and "half-done" submits the notebook of one real training run and the curve files
# it saved, as they would after running it; "edited-curve" improved the first of them by hand.
CURVE_EXPECTED: dict[str, tuple[str, set[str]]] = {
    "full-marks": ("graded", set()),
    "unfilled": ("graded", set()),
    "half-done": ("graded", set()),
    "edited-curve": ("graded", {"fabricated-curve"}),
    "no-figure": ("graded", set()),
    "no-history": ("graded", set()),
}


def make_class(
    source: Path, release: Path, assignment: str, dest: Path, students: list[str] | None = None
) -> Path:
    """Write the synthetic class of `assignment` into `dest` in nbgrader's submission layout;
    `students` picks some of `expected(assignment)`'s ids (default: all). Returns `dest`."""
    if curve_specs(assignment):
        return _make_curve_class(Path(source), Path(release), assignment, dest, students)
    variants = _variants(assignment)
    for student in students or list(expected(assignment)):
        folder = dest / student / assignment
        folder.mkdir(parents=True, exist_ok=True)
        for nb_path in sorted(Path(release).glob("*.ipynb")):
            src = nbformat.read(Path(source) / nb_path.name, as_version=4)
            answers = answer_key(assignment, src)
            made = variants[student](answers, nbformat.read(nb_path, as_version=4))
            name = f"{nb_path.stem} (1).ipynb" if student == "misnamed-notebook" else nb_path.name
            if isinstance(made, bytes):
                (folder / name).write_bytes(made)
            else:
                nbformat.write(made, folder / name)
    return dest


def make_copying_class(source: Path, release: Path, assignment: str, dest: Path) -> dict:
    """Write a class for `cnnkit similarity` into `dest`: each independently written notebook
    of `assignment` as a student of its style's name, a disguised copy of the first
    ("copies-<style>") and the solution's cells disguised in the second ("pastes-solution").
    Returns {(student, other): flag} of the pairs that should be reported."""
    own = independent(assignment)
    styles = list(own)
    if len(styles) < 2:
        return {}
    (nb_path,) = sorted(Path(release).glob("*.ipynb"))
    rel = nbformat.read(nb_path, as_version=4)
    graded = frozenset(defined_functions(rel).values())
    solution = nbformat.read(Path(source) / nb_path.name, as_version=4)
    first, second = own[styles[0]], own[styles[1]]
    made = dict(own)
    made[f"copies-{styles[0]}"] = disguised_notebook(first, {}, graded, seed=1)
    pasted = {
        _gid(c): _unmarked(c.source) for c in solution.cells if _gid(c) in defined_functions(rel)
    }
    made["pastes-solution"] = disguised_notebook(second, pasted, graded, seed=2)
    for student, nb in made.items():
        folder = dest / student / assignment
        folder.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, folder / nb_path.name)
    return {
        (f"copies-{styles[0]}", styles[0]): "similar",
        ("pastes-solution", "solution"): "copied-solution",
    }


def defined_functions(nb: nbformat.NotebookNode) -> dict[str, str]:
    """{grade_id: name} of the answer cells that define a function, by the name they define."""
    found = {}
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("solution"):
            names = re.findall(r"^def (\w+)", cell.source, re.MULTILINE)
            if names:
                found[_gid(cell)] = names[0]
    return found


def _unmarked(code: str) -> str:
    """A source cell without nbgrader's solution markers: as a student would paste it."""
    return "\n".join(
        ln for ln in code.splitlines() if "### BEGIN" not in ln and "### END" not in ln
    )


def disguised_notebook(
    nb: nbformat.NotebookNode, replace: dict[str, str], keep: frozenset[str], seed: int
) -> nbformat.NotebookNode:
    """A copy of `nb` whose function-defining answer cells are disguised (`disguise`, keeping
    the names in `keep`), each first replaced by `replace[grade_id]` where given."""
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    defined = defined_functions(nb)
    for cell in nb.cells:
        if _gid(cell) in defined:
            cell.source = disguise(replace.get(_gid(cell), cell.source), seed, keep)
    return nb


def _make_curve_class(source: Path, release: Path, assignment: str, dest: Path, students) -> Path:
    """The class of a curve assignment, from one real run of the release filled with the answer
    key's code (an independently written notebook where there is one)."""
    specs = curve_specs(assignment)
    (nb_path,) = sorted(release.glob("*.ipynb"))
    src = answer_key(assignment, nbformat.read(source / nb_path.name, as_version=4))
    rel = nbformat.read(nb_path, as_version=4)
    ran, saved = run_filled(src, rel, [s.file for s in specs])
    first = specs[0]
    made = {
        "full-marks": (ran, saved),
        "unfilled": (filled(src, rel, share=0.0), {}),
        "half-done": (filled(src, rel, share=0.5), {}),
        "edited-curve": (ran, saved | {first.file: _improved(saved[first.file], first.runs)}),
        "no-figure": (filled(src, rel), saved),
        "no-history": (ran, {}),
    }
    for student in students or list(CURVE_EXPECTED):
        folder = dest / student / assignment
        folder.mkdir(parents=True, exist_ok=True)
        nb, files = made[student]
        nbformat.write(nb, folder / nb_path.name)
        for name, data in files.items():
            (folder / name).write_bytes(data)
    return dest


def _improved(curve: bytes, runs: bool) -> bytes:
    """A curve file whose (first run's) training loss was lowered by a tenth: a better-looking
    curve than the notebook's code makes."""
    doc = json.loads(curve)
    history = next(iter(doc["runs"].values())) if runs else doc
    history["train_loss"] = [0.9 * v for v in history["train_loss"]]
    return json.dumps(doc).encode()


def run_filled(
    source: nbformat.NotebookNode, release: nbformat.NotebookNode, curves: list[str]
) -> tuple[nbformat.NotebookNode, dict[str, bytes]]:
    """(executed notebook, {file: bytes} of the curve files it saved): a student's real run of
    the release answered from the source (the kit's own code, run here without a sandbox)."""
    nb = filled(source, release)
    with tempfile.TemporaryDirectory(prefix="cnnkit-synthetic-") as tmp:
        NotebookClient(
            nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": tmp}}
        ).execute()
        saved = {name: (Path(tmp) / name).read_bytes() for name in curves}
    return nb, saved
