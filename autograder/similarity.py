"""`cnnkit similarity`: the code each student wrote compared with every other student's of the
batch, with the kit's reference sources (`cnn_core`), with the assignment's solution cells and
with any folders the course adds (earlier years, known public solutions).

What is compared is each function and class a student defined in their answer cells and in the
cells they added (at a cell's top level, under a module-level `if`, `try`, `with` or loop, or in a
string run by `exec`), without the lines the release gave them (signatures, docstrings, `YOUR CODE
HERE`). Module-level code (hand-computed answers, calls) is left out: every honest student writes
`conv_params = 3 * 5 * 5 * 6 + 6` alike. Each function is first put in one layout (`ast.unparse`)
without what changes nothing it does (comments, docstrings and other bare constants, `pass`,
`_ = 0`, type annotations, `if True:`), then tokenised with pygments: every name the author chose
anywhere in the notebook (variables, helpers, names imported from a module) becomes one letter,
a module alias becomes its module (`npy.pad` reads `numpy.pad`), while the names of what the code
calls (`numpy.pad`, `.reshape`, `range`) stay, since renaming cannot change them. The fingerprints
are copydetect's winnowing (MOSS's algorithm; copydetect is MIT and maintained) of k-gram hashes
that are the same in every process, which do not depend on the order of the functions. copydetect's
own tokeniser puts one letter for library names too, and on a1's short numeric functions that
made independently written notebooks share over 70% of their code; its all-pairs loop took 60 s
for 300 students where this one takes about 24 (benchmarks/bench_similarity.py).

A pair is reported when the code one side wrote is matched by the other's over `SHARE` of its
fingerprinted tokens, or when a function of at least `MIN_FUNCTION` tokens on each side (on the
student's side alone, against the kit or the solution) is matched over `FUNCTION_SHARE`: a copied
function stands out even in a long notebook, while the short functions everyone writes alike
count for little. The thresholds were tuned on four a1 notebooks written independently from the
release: their pairs, and each against the solution, share at most 53% of their code and 86% of
a function of theirs, while disguised copies share 90-100%, the cheap disguises a red-team trial
tried included (every statement followed by `pass`, functions under `if True:` or in `exec`,
numpy imported under another name, helpers renamed). Independent statements swapped in every
function (six swaps in the solution's cells) still get past it: what k-grams cannot see. Nothing is taken from anyone's
grade: the flags (`similar`, `copied-reference`, `copied-solution`) go to grades.csv and the staff's
report, never into the students' feedback.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import hashlib
import html
import json
import pickle
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from types import MappingProxyType

import nbformat
import numpy as np
from copydetect.utils import winnow
from pygments import token
from pygments.lexers import PythonLexer

from autograder.cache import cache_folder, stamp
from autograder.collect import Submission
from autograder.report import STYLE, html_page, write_atomic

NOISE = 60  # characters of filtered code in a k-gram (copydetect's noise threshold)
GUARANTEE = 70  # a match this long is always found (winnowing window = GUARANTEE - NOISE + 1)
SHARE = 0.75  # share of a student's fingerprinted code matched that reports a pair
FUNCTION_SHARE = 0.9  # share of one function matched that reports a pair on its own
MIN_FUNCTION = 150  # filtered characters a function needs to count on its own
FLAGS = ("similar", "copied-reference", "copied-solution")
KIT = Path(__file__).resolve().parents[1]
REPORT_PAIRS = 50  # pairs shown side by side in the HTML report, highest first


@dataclass(frozen=True)
class Unit:
    """One function or class: its name, its code as written, and its span [start, end) in the
    filtered text of its document."""

    name: str
    raw: str
    offsets: np.ndarray  # copydetect's map from filtered to raw positions
    start: int
    end: int


@dataclass
class Document:
    """The code of one author: a student, a module of the kit, the solution, or a file of an
    earlier year. `kind`: "student", "reference", "solution" or "earlier"."""

    owner: str
    kind: str
    units: list[Unit]
    filtered: str = ""
    hashes: set = field(default_factory=set)  # the fingerprints kept
    kept: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # each k-gram's hash
    starts: np.ndarray = field(default_factory=lambda: np.zeros(0, int))  # and where it starts
    covered: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))


@dataclass
class Pair:
    """Two documents whose code overlaps: the share of each side's code matched, the functions
    of each side matched over FUNCTION_SHARE, and whether the pair is reported (`flag`)."""

    a: str
    b: str
    kind: str  # the kind of b: "student", "reference", "solution" or "earlier"
    share_a: float
    share_b: float
    functions_a: list[str]
    functions_b: list[str]
    flag: str = ""  # a FLAGS name when reported

    @property
    def share(self) -> float:
        return max(self.share_a, self.share_b)


# --------------------------------------------------------------------------- documents


def units_of(code: str, given: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
    """(name, code) of each function and class `code` defines outside any other (in a cell's
    top level, or under its `if`, `try`, `with` or loop, or in a string it passes to `exec`),
    normalised (`_normalised`), without the lines in `given` (the release's, normalised
    alike); [] when `code` does not parse."""
    found = []
    for node in _definitions(_parsed(code)):
        text = _normalised(node)
        # the header stays: taken out, it would cut the k-grams where a body begins
        lines = [ln for ln in text.splitlines() if ln.strip() not in given or _header(ln)]
        if any(ln.strip() not in given for ln in lines):  # the student wrote some of it
            found.append((node.name, "\n".join(lines)))
    return found


def _parsed(code: str) -> ast.Module:
    """The syntax tree of a cell's `code` without its IPython magics and shell escapes."""
    plain = "\n".join("" if ln.lstrip().startswith(("%", "!")) else ln for ln in code.splitlines())
    try:
        return ast.parse(plain)
    except (SyntaxError, ValueError):
        return ast.Module(body=[], type_ignores=[])


DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _definitions(tree: ast.AST, depth: int = 0) -> list[ast.AST]:
    """The functions and classes under `tree` that no other function or class encloses,
    including those of code given to `exec` as a literal string (one level deep)."""
    found = []
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, DEFINITIONS):
            found.append(node)
        elif isinstance(node, ast.Call) and _exec_of_literal(node) and depth == 0:
            found += _definitions(_parsed(node.args[0].value), depth + 1)
        elif not isinstance(node, (ast.Lambda, ast.expr_context)):
            found += _definitions(node, depth)
    return found


def _exec_of_literal(call: ast.Call) -> bool:
    return (
        isinstance(call.func, ast.Name)
        and call.func.id in ("exec", "eval", "compile")
        and bool(call.args)
        and isinstance(call.args[0], ast.Constant)
        and isinstance(call.args[0].value, str)
    )


def _header(line: str) -> bool:
    return line.lstrip().startswith(("def ", "async def ", "class "))


class _Plain(ast.NodeTransformer):
    """What changes nothing a program does, taken out: docstrings and other bare constants,
    `pass`, `_ = <constant>`, type annotations; `if True:` replaced by its body."""

    def generic_visit(self, node: ast.AST) -> ast.AST:
        super().generic_visit(node)
        for name in ("body", "orelse", "finalbody"):
            block = getattr(node, name, None)
            if isinstance(block, list) and block and isinstance(block[0], ast.stmt):
                kept = [s for b in block for s in _kept(b)]
                setattr(node, name, kept or ([ast.Pass()] if name == "body" else []))
        return node

    def visit_arg(self, node: ast.arg) -> ast.arg:
        node.annotation = None
        return node

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        node.returns = None
        return self.generic_visit(node)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AST:
        if node.value is None:
            return ast.Pass()
        return ast.Assign(targets=[node.target], value=node.value, lineno=node.lineno)


def _kept(stmt: ast.stmt) -> list[ast.stmt]:
    """`stmt` as kept by _Plain: [] for a no-op, the body of an `if True:`, else [stmt]."""
    if isinstance(stmt, ast.Pass):
        return []
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
        return []
    if (
        isinstance(stmt, ast.Assign)
        and [getattr(t, "id", None) for t in stmt.targets] == ["_"]
        and isinstance(stmt.value, ast.Constant)
    ):
        return []
    if isinstance(stmt, ast.If) and isinstance(stmt.test, ast.Constant) and stmt.test.value:
        return list(stmt.body)
    return [stmt]


def _normalised(node: ast.AST) -> str:
    """`node`'s code in one layout, without comments and what _Plain takes out."""
    return ast.unparse(_Plain().visit(node))


@functools.lru_cache(maxsize=4096)  # the release's cells are in every student's notebook
def names_of(code: str) -> tuple[frozenset[str], Mapping[str, str]]:
    """(the names `code` binds: functions, classes, arguments, variables, names imported from
    a module; {module alias: the module}, e.g. {"np": "numpy"})."""
    bound, aliases = set(), {}
    for n in ast.walk(_parsed(code)):
        if isinstance(n, DEFINITIONS):
            bound.add(n.name)
        elif isinstance(n, ast.arg):
            bound.add(n.arg)
        elif isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del)):
            bound.add(n.id)
        elif isinstance(n, ast.Import):
            for a in n.names:
                aliases[a.asname or a.name.split(".")[0]] = (
                    a.name if a.asname else a.name.split(".")[0]
                )
        elif isinstance(n, ast.ImportFrom):  # a name brought in is one the author chose
            bound.update(a.asname or a.name for a in n.names)
    return frozenset(bound), MappingProxyType(aliases)


def tokens_of(
    code: str, bound: frozenset[str] | set[str], aliases: dict[str, str] | None = None
) -> tuple[str, np.ndarray]:
    """`code` as the text that is fingerprinted, and copydetect's map of its positions back to
    `code`: every name the author chose (`bound`) becomes "V", every string "S", an import
    alias what it imports (`npy` -> `numpy`); comments and layout go; keywords, operators,
    numbers, attribute names and the names of what the code calls from outside (`np.pad`,
    `.reshape`, `range`) stay, since renaming cannot change them."""
    aliases = aliases or {}
    out, offset, offsets = [], 0, [[0, 0]]
    length, previous = 0, ""
    for kind, text in PythonLexer().get_tokens(code):
        if kind in token.Text or kind in token.Comment:
            offsets.append([length - 1, offset])
            offset += len(text)
            continue
        if kind in token.Literal.String:
            text_out = '"' if text in ("'", '"') else "S"
        elif kind in token.Name and previous != ".":
            text_out = "V" if text in bound else aliases.get(text, text)
        else:
            text_out = text
        previous = text
        out.append(text_out)
        length += len(text_out)
        if text_out != text:
            offsets.append([length - 1, offset])
            offset += len(text) - len(text_out)
    return "".join(out), np.array(offsets)


def document(
    owner: str,
    kind: str,
    named: Iterable[tuple[str, str]],
    codes: Iterable[str] = (),
) -> Document:
    """A Document of the (name, code) units, fingerprinted; the names the author chose and the
    import aliases come from all of `codes` (every cell of the notebook, or the file), so a
    helper renamed everywhere, or numpy imported as another name, changes nothing."""
    bound: set[str] = set()
    aliases: dict[str, str] = {}
    for code in codes:
        b, a = names_of(code)
        bound |= b
        aliases |= a
    units, parts, start = [], [], 0
    for name, raw in named:
        filtered, offsets = tokens_of(raw, bound | names_of(raw)[0], aliases)
        units.append(Unit(name, raw, offsets, start, start + len(filtered)))
        parts.append(filtered)
        start += len(filtered)
    doc = Document(owner, kind, units, "".join(parts))
    doc.kept, doc.starts = _fingerprints(doc.filtered)
    doc.hashes = set(doc.kept.tolist())
    doc.covered = _mask(len(doc.filtered), doc.starts)
    return doc


def _fingerprints(text: str) -> tuple[np.ndarray, np.ndarray]:
    """(the hashes winnowing keeps, where each k-gram starts): copydetect's robust winnowing,
    over a hash that is the same in every process (Python's `hash` of a string is not), so a
    pair's shares never change from one run to the next."""
    count = len(text) - NOISE + 1
    if count <= 0:
        return np.zeros(0, np.int64), np.zeros(0, int)
    grams = np.array(
        [
            int.from_bytes(
                hashlib.blake2b(text[i : i + NOISE].encode(), digest_size=8).digest(),
                "little",
                signed=True,
            )
            for i in range(count)
        ],
        dtype=np.int64,
    )
    kept, starts = winnow(grams, GUARANTEE - NOISE + 1, remove_duplicates=False)
    return np.asarray(kept, dtype=np.int64), np.asarray(starts, dtype=int)


def _mask(length: int, starts: np.ndarray) -> np.ndarray:
    """Which of `length` positions the k-grams starting at `starts` cover."""
    edges = np.zeros(length + NOISE + 1, int)
    np.add.at(edges, starts, 1)
    np.add.at(edges, starts + NOISE, -1)
    return np.cumsum(edges)[:length] > 0


@dataclass(frozen=True)
class Release:
    """What the release gave every student: its code lines, as written (stripped) and
    normalised, and the grade_ids of its locked cells (instructions, set-up, tests)."""

    lines: frozenset[str]
    locked: frozenset[str]

    @classmethod
    def of(cls, notebooks: Sequence[nbformat.NotebookNode]) -> Release:
        lines: set[str] = set()
        locked: set[str] = set()
        for cell in (c for nb in notebooks for c in nb.cells):
            meta = cell.metadata.get("nbgrader", {})
            if meta.get("grade_id") and not meta.get("solution"):
                locked.add(meta["grade_id"])
            if cell.cell_type == "code":
                lines.update(_lines(cell.source))
        return cls(frozenset(lines), frozenset(locked))


def _lines(code: str) -> set[str]:
    """The stripped lines of `code` as written and normalised."""
    lines = {ln.strip() for ln in code.splitlines()}
    return lines | {ln.strip() for ln in _normalised(_parsed(code)).splitlines()}


def student_document(
    student: str, submitted: Sequence[nbformat.NotebookNode], release: Release
) -> Document:
    """What `student` wrote: the functions and classes of their answer cells and added cells."""
    cells = [c for nb in submitted for c in nb.cells if c.cell_type == "code"]
    named = [
        unit
        for c in cells
        if c.metadata.get("nbgrader", {}).get("grade_id") not in release.locked
        for unit in units_of(c.source, release.lines)
    ]
    return document(student, "student", named, [c.source for c in cells])


def solution_document(source: Sequence[nbformat.NotebookNode], release: Release) -> Document:
    """The functions and classes of the instructor's solution cells."""
    cells = [c for nb in source for c in nb.cells if c.cell_type == "code"]
    named = [
        unit
        for c in cells
        if c.metadata.get("nbgrader", {}).get("solution")
        for unit in units_of(c.source, release.lines)
    ]
    return document("solution", "solution", named, [c.source for c in cells])


def file_document(path: Path, owner: str, kind: str) -> Document | None:
    """The functions and classes of a .py file or of every code cell of a notebook; None for
    another kind of file or one that cannot be read."""
    try:
        if path.suffix == ".py":
            code = path.read_text(encoding="utf-8")
            return document(owner, kind, units_of(code), [code])
        if path.suffix == ".ipynb":
            nb = nbformat.read(path, as_version=4)
            cells = [c.source for c in nb.cells if c.cell_type == "code"]
            return document(owner, kind, [u for code in cells for u in units_of(code)], cells)
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return None


def reference_documents() -> list[Document]:
    """Each module of the kit's `cnn_core`, the answer key students could paste from: made
    once for these modules and this one as they are now, and kept in the grader's cache."""
    modules = sorted((KIT / "cnn_core").glob("*.py"))
    folder = cache_folder() / "similarity"
    path = None
    with contextlib.suppress(Exception):  # missing or unreadable: made again below
        made_by = [sys.version, *(version(p) for p in ("numpy", "pygments", "copydetect"))]
        path = folder / f"reference-{stamp([*modules, Path(__file__)], *made_by)}.pickle"
        return pickle.loads(path.read_bytes())  # the grader's own folder, which runs never see
    found = [file_document(p, f"cnn_core/{p.name}", "reference") for p in modules]
    docs = [d for d in found if d is not None and d.units]
    with contextlib.suppress(OSError, TypeError):  # TypeError: no path, the stamp failed
        folder.mkdir(exist_ok=True)
        for old in folder.glob("reference-*.pickle"):  # other versions of the kit
            old.unlink(missing_ok=True)
        write_atomic(path, pickle.dumps(docs))
    return docs


def earlier_documents(folders: Sequence[Path]) -> list[Document]:
    """Every .py and .ipynb file under `folders` (earlier years, known public solutions), each
    a document named by its path."""
    docs = []
    for folder in folders:
        for path in sorted(Path(folder).rglob("*")):
            if path.is_file() and not any(p.startswith(".") for p in path.parts):
                doc = file_document(path, str(path), "earlier")
                if doc is not None and doc.units:
                    docs.append(doc)
    return docs


# --------------------------------------------------------------------------- comparing


def compare(a: Document, b: Document, shared: np.ndarray | None = None) -> Pair:
    """How much of `a`'s and of `b`'s code the other's matches (`shared`: their common
    fingerprints, when the caller has them)."""
    shared = _shared(a, b) if shared is None else shared
    matched_a, matched_b = _matched(a, shared), _matched(b, shared)
    return Pair(
        a.owner,
        b.owner,
        b.kind,
        _share(matched_a, a.covered),
        _share(matched_b, b.covered),
        _copied_units(a, matched_a),
        _copied_units(b, matched_b),
    )


def _shared(a: Document, b: Document) -> np.ndarray:
    """The fingerprints two documents have in common."""
    return np.fromiter(a.hashes & b.hashes, dtype=np.int64)


def _matched(doc: Document, shared: np.ndarray) -> np.ndarray:
    """Positions of `doc`'s filtered text inside a k-gram whose fingerprint is `shared`."""
    return _mask(len(doc.filtered), doc.starts[np.isin(doc.kept, shared)]) & doc.covered


def _share(matched: np.ndarray, covered: np.ndarray) -> float:
    total = int(covered.sum())
    return round(int(matched.sum()) / total, 4) if total else 0.0


def _copied_units(doc: Document, matched: np.ndarray) -> list[str]:
    """Names of `doc`'s functions long enough to count alone and matched over FUNCTION_SHARE."""
    copied = []
    for u in doc.units:
        size = int(doc.covered[u.start : u.end].sum())
        if size >= MIN_FUNCTION and matched[u.start : u.end].sum() >= FUNCTION_SHARE * size:
            copied.append(u.name)
    return copied


def _worth_comparing(shared: np.ndarray) -> bool:
    """Whether two documents share enough fingerprints to be compared in full: a function of
    MIN_FUNCTION tokens copied whole shares at least a few."""
    return len(shared) * (GUARANTEE - NOISE + 1) >= FUNCTION_SHARE * MIN_FUNCTION / 2


def _flag(pair: Pair) -> str:
    """The flag a compared pair earns ("" when none). Against the kit or the solution only the
    student's side counts. Between two authors either side's share counts, but a function only
    when each side has one matched: a short canonical function of one side, matched by longer
    code of the other, is what two students write alike from the same lecture."""
    if pair.kind in ("reference", "solution"):
        share, functions = pair.share_a, pair.functions_a
    else:
        share, functions = pair.share, pair.functions_a and pair.functions_b
    if share < SHARE and not functions:
        return ""
    flags = {"reference": "copied-reference", "solution": "copied-solution"}
    return flags.get(pair.kind, "similar")


def find_pairs(students: Sequence[Document], others: Sequence[Document]) -> list[Pair]:
    """Every reported pair: each student against every other student and against `others`
    (the kit, the solution, earlier years); highest share first."""
    pairs = []
    for i, a in enumerate(students):
        for b in [*students[i + 1 :], *others]:
            if not a.units or not b.units:
                continue
            shared = _shared(a, b)  # once: the test of worth and the comparison both need it
            if not _worth_comparing(shared):
                continue
            pair = compare(a, b, shared)
            pair.flag = _flag(pair)
            if pair.flag:
                pairs.append(pair)
    return sorted(pairs, key=lambda p: (-p.share, p.a, p.b))


def flags_by_student(pairs: Sequence[Pair]) -> dict[str, list[dict]]:
    """{student: [{"flag", "partner", "share", "functions"}]}: each student's side of every
    reported pair (both students of a student pair)."""
    found: dict[str, list[dict]] = {}
    for p in pairs:
        sides = [(p.a, p.b, p.share_a, p.functions_a)]
        if p.kind == "student":
            sides.append((p.b, p.a, p.share_b, p.functions_b))
        for me, partner, share, functions in sides:
            found.setdefault(me, []).append(
                {"flag": p.flag, "partner": partner, "share": share, "functions": functions}
            )
    return found


# --------------------------------------------------------------------------- reports


def write_reports(
    out: Path, assignment: str, docs: dict[str, Document], pairs: list[Pair]
) -> tuple[Path, Path]:
    """similarity.json (every reported pair, and each student's flags) and similarity.html (the
    pairs ranked, each with both sides' code and the matched regions marked) under `out`."""
    record = {
        "version": 1,
        "assignment": assignment,
        "settings": {
            "share": SHARE,
            "function_share": FUNCTION_SHARE,
            "min_function": MIN_FUNCTION,
        },
        "pairs": [asdict(p) for p in pairs],
        "students": flags_by_student(pairs),
    }
    data = write_atomic(out / "similarity.json", json.dumps(record, indent=1))
    page = write_atomic(out / "similarity.html", _html(assignment, docs, pairs))
    return data, page


def flag_names(pairs: Sequence[Pair]) -> dict[str, list[str]]:
    """{student: their distinct flags of the reported `pairs`, in FLAGS order}."""
    found = flags_by_student(pairs)
    return {s: [f for f in FLAGS if any(e["flag"] == f for e in v)] for s, v in found.items()}


STYLE_EXTRA = """
.pair { margin: 1.5rem 0; border-top: 1px solid #ccc; padding-top: 0.5rem; }
body { max-width: 120rem; }
.sides { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 1rem; }
.sides pre { background: #f6f8fa; padding: 0.5rem; overflow-x: auto; font-size: 0.8rem; }
mark { background: #ffd8a8; }
td, th { padding: 0.2rem 0.6rem; text-align: left; }
"""


def _html(assignment: str, docs: dict[str, Document], pairs: list[Pair]) -> str:
    e = html.escape
    body = [
        f"<h1>Similar code: {e(assignment)}</h1>",
        "<p>For the course staff only: nothing here reaches the students, and no points were "
        f"taken. A pair is listed when over {SHARE:.0%} of one side's code, or over "
        f"{FUNCTION_SHARE:.0%} of one of its functions, is matched by the other's, after names, "
        "comments and layout are set aside. The code is shown as it was compared: each function "
        "reformatted, without comments, docstrings and the lines the release gave. Read it "
        "before deciding anything: short functions written from the same lecture can look "
        "alike. Functions shorter than "
        f"{MIN_FUNCTION} tokens are marked where they match but never listed on their own. "
        "When both sides match in full, the report cannot say who copied from whom.</p>",
    ]
    if not pairs:
        body.append("<p>No pair is above the thresholds.</p>")
        return html_page(f"Similarity {assignment}", body)
    body.append(
        "<table><tr><th>#</th><th>student</th><th>other</th><th>flag</th>"
        "<th>share of each side matched</th><th>the student's functions matched</th></tr>"
    )
    for n, p in enumerate(pairs, 1):
        body.append(
            f"<tr><td><a href='#pair-{n}'>{n}</a></td><td>{e(p.a)}</td><td>{e(p.b)}</td>"
            f"<td>{e(p.flag)}</td><td>{p.share_a:.0%} / {p.share_b:.0%}</td>"
            f"<td>{e(', '.join(p.functions_a))}</td></tr>"
        )
    body.append("</table>")
    for n, p in enumerate(pairs[:REPORT_PAIRS], 1):
        a, b = docs[p.a], docs[p.b]
        shared = _shared(a, b)
        body += [
            f"<div class='pair' id='pair-{n}'><h2>{n}. {e(p.a)} and {e(p.b)} ({e(p.flag)})</h2>",
            "<div class='sides'>",
            f"<div><h3>{e(p.a)}: {p.share_a:.0%} matched</h3>{_marked(a, _matched(a, shared))}</div>",
            f"<div><h3>{e(p.b)}: {p.share_b:.0%} matched</h3>{_marked(b, _matched(b, shared))}</div>",
            "</div></div>",
        ]
    return html_page(f"Similarity {assignment}", body, STYLE + STYLE_EXTRA)


def _marked(doc: Document, matched: np.ndarray) -> str:
    """Each unit of `doc` that has matched code, as <pre> with the matched regions in <mark>;
    units without a match are named only."""
    shown, quiet = [], []
    for u in doc.units:
        part = matched[u.start : u.end]
        if not part.any():
            quiet.append(u.name)
            continue
        shown.append(f"<pre>{_highlight(u, part)}</pre>")
    if quiet:
        shown.append(f"<p>not matched: {html.escape(', '.join(quiet))}</p>")
    return "".join(shown)


def _highlight(unit: Unit, part: np.ndarray) -> str:
    """The unit's raw code, escaped, with the raw regions of its matched filtered runs marked."""
    runs = _runs(part)
    marks = np.zeros(len(unit.raw) + 1, int)
    for s, e in runs:
        rs, re_ = _raw_position(unit, s), _raw_position(unit, e)
        marks[rs] += 1
        marks[re_] -= 1
    inside = np.cumsum(marks)[: len(unit.raw)] > 0
    out, current = [], False
    for ch, flag in zip(unit.raw, inside, strict=True):
        if flag != current:
            out.append("<mark>" if flag else "</mark>")
            current = flag
        out.append(html.escape(ch))
    if current:
        out.append("</mark>")
    return "".join(out)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True in `mask`."""
    padded = np.concatenate([[False], mask, [False]]).astype(int)
    change = np.flatnonzero(np.diff(padded))
    return list(zip(change[::2].tolist(), change[1::2].tolist(), strict=True))


def _raw_position(unit: Unit, filtered: int) -> int:
    """The position in the unit's raw code of position `filtered` of its filtered code
    (copydetect's mapping, as its own report uses it)."""
    if len(unit.offsets) == 0:
        return min(filtered, len(unit.raw))
    i = np.clip(np.searchsorted(unit.offsets[:, 0], filtered), 0, len(unit.offsets) - 1)
    return int(min(filtered + unit.offsets[i, 1], len(unit.raw)))


# --------------------------------------------------------------------------- a batch


def _notebooks(folder: Path) -> list[nbformat.NotebookNode]:
    return [nbformat.read(p, as_version=4) for p in sorted(Path(folder).glob("*.ipynb"))]


def compare_batch(
    subs: Sequence[Submission], source: Path, released: Path, against: Sequence[Path] = ()
) -> tuple[dict[str, Document], list[Pair]]:
    """Every valid submission of `subs` against each other, the kit's `cnn_core`, the solution
    cells of the notebooks in `source` and the files under `against`: the documents by owner,
    and the reported pairs."""
    release = Release.of(_notebooks(released))
    students = []
    for sub in subs:
        if sub.status != "ok":
            continue
        try:
            books = [nbformat.read(p, as_version=4) for p in sub.notebooks.values()]
        except (OSError, ValueError):
            continue  # unreadable: the grader reports it as invalid
        students.append(student_document(sub.student_id, books, release))
    others = [solution_document(_notebooks(source), release), *reference_documents()]
    others += earlier_documents(against)
    docs = {d.owner: d for d in [*students, *others]}
    return docs, find_pairs(students, others)
