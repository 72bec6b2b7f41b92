"""Similarity: copies are found through renaming, reformatting, dropped comments and reordered
functions; independently written correct notebooks are not flagged against each other or the
solution."""

from __future__ import annotations

import ast
import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import time
from functools import cache
from pathlib import Path

import nbformat
import pytest

from autograder import similarity
from autograder.cli import main
from autograder.synthetic import STUDENTS, disguise

ROOT = Path(__file__).resolve().parents[1]
A1 = "a1_convolution"
INDEPENDENT = sorted(p.stem for p in (STUDENTS / A1).glob("*.ipynb"))
GRADED = frozenset(
    ["conv1d", "conv_output_size", "conv2d_forward_naive", "im2col", "conv2d_forward"]
    + ["col2im", "conv2d_backward"]
)


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


@cache
def _release_nb() -> nbformat.NotebookNode:
    return _read(ROOT / "assignments" / A1 / f"{A1}.ipynb")


@cache
def _release() -> similarity.Release:
    return similarity.Release.of([_release_nb()])


@cache
def _source() -> tuple:
    return (_read(ROOT / "solutions" / A1 / f"{A1}.ipynb"),)


def _independent(name: str) -> nbformat.NotebookNode:
    return _read(STUDENTS / A1 / f"{name}.ipynb")


def _disguised(code: str, seed: int) -> str:
    return disguise(code, seed, GRADED)


def _with_cells(nb: nbformat.NotebookNode, cells: dict[str, str]) -> nbformat.NotebookNode:
    """A copy of `nb` whose cells of the given grade_ids hold the given code."""
    nb = nbformat.from_dict(nb)
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id")
        if gid in cells:
            cell.source = cells[gid]
    return nb


def _answer_cells(nb: nbformat.NotebookNode) -> dict[str, str]:
    """{grade_id: code} of the solution code cells that define something."""
    return {
        c.metadata["nbgrader"]["grade_id"]: c.source
        for c in nb.cells
        if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution")
        if "def " in c.source
    }


def _doc(owner: str, nb: nbformat.NotebookNode) -> similarity.Document:
    return similarity.student_document(owner, [nb], _release())


def _pairs(docs: list[similarity.Document]) -> list[similarity.Pair]:
    others = [similarity.solution_document(_source(), _release())]
    return similarity.find_pairs(docs, others + similarity.reference_documents())


def _solution_code() -> dict[str, str]:
    """The solution cells without nbgrader's markers, as a student would paste them."""
    return {
        gid: "\n".join(ln for ln in code.splitlines() if "### " not in ln)
        for gid, code in _answer_cells(_source()[0]).items()
    }


def test_independently_written_notebooks_are_not_flagged():
    """Four notebooks written from the release alone, in four styles: no pair among them, none
    against the solution or the kit."""
    assert len(INDEPENDENT) >= 4
    docs = [_doc(name, _independent(name)) for name in INDEPENDENT]
    assert _pairs(docs) == []


def test_independent_notebooks_stay_well_below_the_thresholds():
    """The margin the thresholds were tuned with: honest pairs share at most about half of their
    code, and no function of 150 tokens or more over 0.85."""
    docs = [_doc(name, _independent(name)) for name in INDEPENDENT]
    others = [similarity.solution_document(_source(), _release())]
    for a, b in [*itertools.combinations(docs, 2), *((d, others[0]) for d in docs)]:
        pair = similarity.compare(a, b)
        assert pair.share < 0.65, (a.owner, b.owner, pair.share)


def test_a_disguised_copy_of_another_student_flags_both():
    original = _independent("loops")
    copied = {g: _disguised(code, 1) for g, code in _answer_cells(original).items()}
    docs = [_doc("ann", original), _doc("ben", _with_cells(original, copied))]
    docs.append(_doc("cat", _independent("vectorised")))
    pairs = _pairs(docs)
    assert [(p.a, p.b, p.flag) for p in pairs] == [("ann", "ben", "similar")]
    assert pairs[0].share > 0.85 and "conv2d_backward" in pairs[0].functions_a
    flags = similarity.flag_names(pairs)
    assert flags == {"ann": ["similar"], "ben": ["similar"]}


def test_pasted_solution_cells_are_flagged_copied_solution():
    pasted = {g: _disguised(code, 2) for g, code in _solution_code().items()}
    doc = _doc("dan", _with_cells(_independent("nested"), pasted))
    pairs = _pairs([doc])
    assert [(p.a, p.b, p.flag) for p in pairs] == [("dan", "solution", "copied-solution")]


def test_one_function_pasted_from_the_kit_is_flagged_copied_reference():
    """conv2d_backward pasted from cnn_core/naive.py, renamed and reformatted, in a notebook
    whose other functions are the student's own."""
    naive = (ROOT / "cnn_core" / "naive.py").read_text()
    tree = ast.parse(naive)
    code = next(
        ast.get_source_segment(naive, n)
        for n in tree.body
        if isinstance(n, ast.FunctionDef) and n.name == "conv2d_backward"
    )
    nb = _with_cells(_independent("offsets"), {"conv2d_backward": _disguised(code, 3)})
    pairs = _pairs([_doc("eve", nb)])
    assert [(p.a, p.b, p.flag, p.functions_a) for p in pairs] == [
        ("eve", "cnn_core/naive.py", "copied-reference", ["conv2d_backward"])
    ]


def test_a_student_sharing_canonical_code_with_a_copier_is_not_flagged():
    """An honest student whose short conv2d_backward resembles the solution's is not flagged
    against a student who pasted the solution; the copier is."""
    pasted = {g: _disguised(code, 4) for g, code in _solution_code().items()}
    docs = [_doc(n, _independent(n)) for n in INDEPENDENT]
    docs.append(_doc("fay", _with_cells(_independent("nested"), pasted)))
    flagged = {p.a for p in _pairs(docs)} | {p.b for p in _pairs(docs) if p.kind == "student"}
    assert flagged == {"fay", "solution"} or flagged == {"fay"}


def test_hand_answers_alone_do_not_make_a_pair():
    """Module-level answers are what every honest student types alike: they are not compared."""
    nb = _independent("loops")
    answers = {
        c.metadata["nbgrader"]["grade_id"]: c.source
        for c in nb.cells
        if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("solution")
        if "def " not in c.source
    }
    assert answers  # the notebook has answer cells
    only = [_doc(f"s{i}", _with_cells(_release_nb(), answers)) for i in range(2)]
    assert all(not d.units for d in only) and _pairs(only) == []


def test_the_report_shows_the_pair_with_the_matched_code_marked(tmp_path):
    original = _independent("loops")
    copied = {g: _disguised(code, 5) for g, code in _answer_cells(original).items()}
    docs = [_doc("ann", original), _doc("ben", _with_cells(original, copied))]
    pairs = _pairs(docs)
    by_owner = {d.owner: d for d in docs}
    data, page = similarity.write_reports(tmp_path, A1, by_owner, pairs)
    record = json.loads(data.read_text())
    assert record["students"]["ben"][0] | {"functions": []} == {
        "flag": "similar",
        "partner": "ann",
        "share": pairs[0].share_b,
        "functions": [],
    }
    text = page.read_text()
    assert "ann and ben (similar)" in text and text.count("<mark>") >= 10
    assert "<script" not in text
    # the marked code is the students' own, escaped
    assert re.search(r"<mark>[^<]*def conv2d_backward", text)


def test_cnnkit_similarity_compares_a_folder_of_submissions(tmp_path, capsys):
    subs = tmp_path / "subs"
    original = _independent("loops")
    copied = {g: _disguised(code, 6) for g, code in _answer_cells(original).items()}
    for student, nb in [
        ("ann", original),
        ("ben", _with_cells(original, copied)),
        ("cat", _independent("vectorised")),
    ]:
        (subs / student / A1).mkdir(parents=True)
        nbformat.write(nb, subs / student / A1 / f"{A1}.ipynb")
    earlier = tmp_path / "earlier"
    earlier.mkdir()
    code = "\n\n".join(_answer_cells(_independent("vectorised")).values())
    (earlier / "2025_student.py").write_text(code)
    out = tmp_path / "out"
    args = ["similarity", A1, str(subs), "--course", str(tmp_path / "course")]
    assert main([*args, "--out", str(out), "--against", str(earlier)]) == 0
    printed = capsys.readouterr().out
    assert "3 submissions compared" in printed and "ann and ben" in printed
    record = json.loads((out / "similarity.json").read_text())
    found = {(p["a"], p["b"], p["flag"]) for p in record["pairs"]}
    assert found == {
        ("ann", "ben", "similar"),
        ("cat", str(earlier / "2025_student.py"), "similar"),
    }
    assert (out / "similarity.html").is_file()


@pytest.mark.parametrize("bad", ["not python at all (", "%matplotlib inline\nx = 1"])
def test_cells_that_do_not_parse_are_left_out(bad):
    nb = _with_cells(_independent("loops"), {"conv1d": bad})
    doc = _doc("gus", nb)
    assert "conv1d" not in [u.name for u in doc.units] and doc.units


def _every_statement(code: str, filler: str) -> str:
    """`code` with the statement `filler` after every statement of every block."""
    tree = ast.parse(code)
    for node in ast.walk(tree):
        for name in ("body", "orelse", "finalbody"):
            block = getattr(node, name, None)
            if isinstance(block, list) and block and isinstance(block[0], ast.stmt):
                setattr(node, name, [s for b in block for s in (b, ast.parse(filler).body[0])])
    return ast.unparse(tree)


def _indented(code: str, header: str) -> str:
    return header + "\n" + "\n".join("    " + ln for ln in code.splitlines())


TRICKS = {
    "under if True": lambda code: _indented(code, "if True:"),
    "under if __name__": lambda code: _indented(code, 'if __name__ == "__main__":'),
    "run by exec": lambda code: f"exec({code!r})",
    "pass after every statement": lambda code: _every_statement(code, "pass"),
    "a string after every statement": lambda code: _every_statement(code, "'step'"),
    "_ = 0 after every statement": lambda code: _every_statement(code, "_ = 0"),
    "numpy under another name": lambda code: (
        "import numpy as npy\n" + re.sub(r"\bnp\.", "npy.", code)
    ),
    "helpers renamed": lambda code: re.sub(r"\b_(out_len|pad_input)\b", r"helper_\1", code),
}


@pytest.mark.parametrize("trick", list(TRICKS))
def test_cheap_disguises_of_a_copy_are_seen_through(trick):
    """What a student trying to hide a copy tried first (a red-team trial): each still flags."""
    original = _independent("loops")
    copied = {g: TRICKS[trick](code) for g, code in _answer_cells(original).items()}
    docs = [_doc("ann", original), _doc("ben", _with_cells(original, copied))]
    pairs = _pairs(docs)
    assert [(p.a, p.b, p.flag) for p in pairs] == [("ann", "ben", "similar")], trick
    assert pairs[0].share > 0.9


def test_shares_are_the_same_in_every_process():
    """Fingerprints use a hash that does not change between runs (Python's str hash does)."""
    code = (
        "from autograder import similarity\n"
        "from autograder.synthetic import STUDENTS\n"
        "import nbformat\n"
        "rel = similarity.Release.of([nbformat.read('assignments/a1_convolution/"
        "a1_convolution.ipynb', 4)])\n"
        "a, b = (similarity.student_document(s, [nbformat.read(STUDENTS / 'a1_convolution' / "
        "f'{s}.ipynb', 4)], rel) for s in ('loops', 'offsets'))\n"
        "print(similarity.compare(a, b).share)\n"
    )
    runs = {
        subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout
        for _ in range(2)
    }
    assert len(runs) == 1


def test_the_kit_s_documents_are_made_once_and_again_when_a_module_changes(tmp_path, monkeypatch):
    """cnn_core's documents come from the grader's cache while its modules are unchanged; a
    changed module, or a damaged cache file, has them made again."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    kit = tmp_path / "kit"
    shutil.copytree(ROOT / "cnn_core", kit / "cnn_core", ignore=shutil.ignore_patterns("__py*"))
    monkeypatch.setattr(similarity, "KIT", kit)
    made = similarity.reference_documents()
    folder = tmp_path / "cache" / "cnnkit" / "similarity"
    [kept] = folder.glob("reference-*.pickle")

    def fail(*args):
        raise AssertionError("made again, not read from the cache")

    with monkeypatch.context() as m:
        m.setattr(similarity, "file_document", fail)
        again = similarity.reference_documents()
    assert [(d.owner, d.hashes) for d in again] == [(d.owner, d.hashes) for d in made]
    assert len(made) > 10 and all(d.units for d in made)

    kept.write_bytes(b"damaged")
    assert [d.owner for d in similarity.reference_documents()] == [d.owner for d in made]
    os.utime(kit / "cnn_core" / "functional.py", ns=(0, time.time_ns() + 10**9))
    changed = similarity.reference_documents()
    assert [d.owner for d in changed] == [d.owner for d in made]
    [now] = folder.glob("reference-*.pickle")
    assert now != kept, "the changed module's documents were not kept under a new name"
