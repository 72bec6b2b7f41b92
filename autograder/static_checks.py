"""Checks of a submitted notebook made without running it: tampering with the released cells or
with what the tests share with student code, use of the kit's reference implementation, and
imports of libraries that do the assignment's work.

    flags = inspect(submitted, released, policy("a1_convolution"))

The checks read text only; the run-time guard (`cnn_core.grading.no_reference`) catches what text
hides. Names bound to modules are followed through imports and assignments, with a function's
parameters and locals shadowing them. Student code is every code cell that is not one of the
release's locked cells left unchanged: the solution cells, the cells the student added and any
edited locked cell. Its IPython lines are read as Python (`%time code` as `code`, `x = %pwd` as
`x = None`, other magic and shell lines blanked); code that still does not parse is not flagged,
since it fails when run and scores zero by itself.

Code whose effect the text cannot show is "reference-use" (a way around the guard): strings run as
code (exec, eval, compile), imports by a name built at run time, get_ipython() (the kernel's hooks
and namespaces), %run, another Python started from the notebook, ESCAPES (ctypes, runpy, pkgutil,
importlib.util, walks of the interpreter's objects and frames), the grader's package and the
variables it gives a run (CNNKIT_...).

The hidden tests run in the kernel the student's code ran in, so student code that changes what
they use would make failing tests pass. It is flagged "tampered" when it
- monkeypatches a module, builtins included, or anything imported from one: assigns, augments,
  annotates with a value or deletes an attribute at any depth (`np.testing.assert_allclose = f`,
  `del np.allclose`), calls setattr or delattr on it, writes its namespace (`vars(np)[k] = f`,
  `np.__dict__.update(...)`, `__builtins__["abs"] = f`) or writes a container it holds
  (`grading.TOLERANCES[k] = v`); matplotlib's rcParams and os.environ are settings and allowed;
- rebinds in the notebook's global scope a name that the release's locked cells import (`grading`,
  `np`, `rel_error`, ...), by an assignment, def, class, import or loop at module scope, in a
  function that declares it global, or through globals(). Importing it again as the same thing
  (`import numpy as np`) is fine; deleting it only makes the tests fail, and is not flagged.
Not seen: a namespace or module reached through an expression the text does not follow
(`g = globals()`, `vars(importlib)["import_module"]`, a module passed as an argument; only the
run-time guard stands there, in the student's own process), and builtins shadowed by a global name
(`all = ...`), since students reuse such names (`filter`, `input`, `sum`) for their own values.

Reasons name a cell by its grade_id, or "added cell N" (counting from 1) for a cell the release
does not have, and say what was found in the student's own code: never the code of a test cell.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from nbformat import NotebookNode
from nbgrader.utils import compute_checksum

TAMPERED = "tampered"
REFERENCE_USE = "reference-use"
FORBIDDEN_LIBRARY = "forbidden-library"

KIT = "cnn_core"
GRADER = "autograder"  # the grader's own package: the hidden tests' code, never student code's
# The variables that carry the grader's settings into a run, the student's key to their cases
# among them.
GRADER_VARIABLES = re.compile(r"CNNKIT_\w+")
# Kit modules that help students without doing their assignment: checkers, arithmetic, data, plots.
HELPERS = frozenset({"gradcheck", "grading", "arith", "zoo", "data", "plot"})
# The training stack a4 builds its network with, once the layers were written in a1-a3.
TRAINING = frozenset({"nn", "train", "optim", "history", "init"})
# Packages whose convolutions, layers or autograd would do an assignment's work.
LIBRARIES = frozenset(
    {
        "torch",
        "tensorflow",
        "jax",
        "keras",
        "scipy.signal",
        "scipy.ndimage",
        "skimage",
        "cv2",
        "sklearn.neural_network",
        "chainer",
        "mxnet",
    }
)
# Attributes that reach the function a guarded op wraps, or the globals and code behind it.
ESCAPE_HATCHES = frozenset({"__closure__", "__wrapped__", "__globals__", "__code__"})
# The nbgrader metadata that decides how a cell is graded.
GRADING_KEYS = ("grade", "solution", "locked", "points")

# Containers of settings that student code may write, though modules hold them: matplotlib's
# rcParams (how plots look) and os.environ (the a4 notebook tells students to set
# FASHION_MNIST_DIR). Neither holds code or tolerances that a test calls or reads.
SETTINGS = frozenset({"matplotlib.rcParams", "matplotlib.pyplot.rcParams", "os.environ"})
# Methods that write to a dict (a namespace or a container); pop and clear also empty lists and sets.
WRITERS = frozenset(
    {"update", "setdefault", "pop", "popitem", "clear", "__setitem__", "__delitem__"}
)

# Ways to run code the checks cannot read, or to reach past the guard from outside the kit:
# loading code from a file, the interpreter's memory and frames, another Python process.
ESCAPES = frozenset(
    {
        "ctypes",
        "runpy",
        "pkgutil",
        "importlib.util",
        "importlib.machinery",
        "gc.get_objects",
        "gc.get_referrers",
        "gc.get_referents",
        "sys._getframe",
        "sys.executable",
    }
)
# Builtins that run code held in a string.
STRING_CODE = ("exec", "eval", "compile")

MAGIC = re.compile(r"^(\s*)[%!].*$", re.MULTILINE)
# A magic or shell command as an assignment's value (`here = %pwd`, `files = !ls`).
ASSIGNED_MAGIC = re.compile(r"^(\s*[^\s=#'\"][^=#'\"]*?=\s*)[%!].*$", re.MULTILINE)
# Line magics whose argument is Python that runs (`%timeit -n 10 conv1d(x, f)`): read as that code.
TIMED = re.compile(r"^(\s*)%(?:time|timeit|prun)\b(?:\s+-\w+(?:\s+\d+)?)*\s*", re.MULTILINE)
PIP_INSTALL = re.compile(r"^\s*[%!].*\b(pip|conda|mamba)\b.*\binstall\b", re.MULTILINE)
RUN_FILE = re.compile(r"^\s*%run\b", re.MULTILINE)
# A shell command or shell cell that starts Python, or a cell of Python in another process.
OTHER_PYTHON = re.compile(
    r"^\s*(?:(?:!|%sx\b|%system\b).*\bpython|%%(?:python|pypy|script\s+\S*python)\w*)"
    r"|\A\s*%%(?:bash|sh|script)\b(?:.|\n)*\bpython",
    re.MULTILINE,
)


@dataclass(frozen=True)
class Flag:
    """A finding: `name` is the grades.csv flag, `reason` says why, `cell` is the grade_id."""

    name: str
    reason: str
    cell: str | None


@dataclass(frozen=True)
class Policy:
    """What student code may use. `kit_modules`: the cnn_core modules it may use; everything else
    under cnn_core (the reference layers and the ops re-exported at its top level) and every
    private name is the reference implementation. `libraries`: dotted names of forbidden packages.
    """

    kit_modules: frozenset[str] = HELPERS
    libraries: frozenset[str] = LIBRARIES


def policy(assignment: str) -> Policy:
    """The policy of `assignment`: a4_train_cnn may use the training stack; a5_training_techniques
    too, but not its initialisers, which it asks students to write; any other only the helpers,
    since it asks students to write the layers themselves."""
    if assignment == "a4_train_cnn":
        return Policy(kit_modules=HELPERS | TRAINING)
    if assignment == "a5_training_techniques":
        return Policy(kit_modules=HELPERS | TRAINING - {"init"})
    return Policy()


def inspect(
    submitted: NotebookNode, released: NotebookNode, rules: Policy | None = None
) -> list[Flag]:
    """All flags of `submitted` against the `released` notebook it was filled from, under `rules`
    (default: the strict policy of a1-a3)."""
    rules = rules or Policy()
    flags = list(_tampering(submitted, released))
    ids = {_meta(c).get("grade_id") for c in released.cells} - {None}
    aliases = _aliases(submitted.cells)
    protected = _protected(released)
    for index, cell in _student_code(submitted, released):
        gid = _meta(cell).get("grade_id")
        cell_id = gid if gid in ids else None
        label = f"cell {gid!r}" if cell_id else f"added cell {index + 1}"
        flags += _code_flags(cell.source, aliases, protected, rules, label, cell_id)
    return flags


# --- tampering ---------------------------------------------------------------------------------


def _meta(cell: NotebookNode) -> dict:
    """The cell's nbgrader metadata, or {} when it has none (or something that is not a dict)."""
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return meta if isinstance(meta, dict) else {}


def _checksum(cell: NotebookNode) -> str | None:
    """nbgrader's checksum of the cell, or None when its metadata is too broken to compute one."""
    try:
        return compute_checksum(cell)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def _released_checksum(cell: NotebookNode) -> str | None:
    """The checksum stored at release (the one nbgrader checks), computed if it is missing."""
    return _meta(cell).get("checksum") or _checksum(cell)


def _tampering(submitted: NotebookNode, released: NotebookNode) -> Iterator[Flag]:
    """A flag for every released cell deleted, re-typed, re-graded or (if locked) edited, and for
    every added cell that claims to be graded or locked."""
    copies: dict[str, list[NotebookNode]] = {}
    for cell in submitted.cells:
        gid = _meta(cell).get("grade_id")
        if isinstance(gid, str):
            copies.setdefault(gid, []).append(cell)
    for cell in released.cells:
        gid = _meta(cell).get("grade_id")
        problem = gid and _released_cell_problem(cell, copies.get(gid, []))
        if problem:
            yield Flag(TAMPERED, f"cell {gid!r}: {problem}", gid)
    released_ids = {_meta(c).get("grade_id") for c in released.cells}
    for gid, cells in copies.items():
        if gid not in released_ids and any(_claims_grading(c) for c in cells):
            reason = f"cell {gid!r}: not in the release, but its metadata marks it graded or locked"
            yield Flag(TAMPERED, reason, gid)


def _claims_grading(cell: NotebookNode) -> bool:
    """Whether the cell's metadata marks it graded or locked."""
    return bool(_meta(cell).get("grade") or _meta(cell).get("locked"))


def _released_cell_problem(cell: NotebookNode, copies: list[NotebookNode]) -> str | None:
    """What was done to the released `cell`, given the submitted cells with its grade_id.

    Copies are allowed (Jupyter keeps the metadata when a cell is copied) if each is unchanged.
    """
    meta = _meta(cell)
    if not copies:
        return (
            "deleted (it is locked or graded)" if meta.get("locked") or meta.get("grade") else None
        )
    for copy in copies:
        if copy.cell_type != cell.cell_type:
            return f"changed from a {cell.cell_type} cell to a {copy.cell_type} cell"
        changed = [k for k in GRADING_KEYS if _meta(copy).get(k) != meta.get(k)]
        if changed:
            return "nbgrader metadata changed: " + ", ".join(changed)
        # nbgrader's checksum covers the source with the type, flags, grade_id and points; the
        # release's stored value is used, so editing the copy's checksum field changes nothing.
        if meta.get("locked") and _checksum(copy) != _released_checksum(cell):
            return (
                "source differs from the release's (the cell is locked: it was edited, or the "
                "notebook came from an older release, whose cells must be copied into the current one)"
            )
    return None


def _student_code(
    submitted: NotebookNode, released: NotebookNode
) -> Iterator[tuple[int, NotebookNode]]:
    """(index, cell) of every code cell in `submitted` but the release's unchanged locked cells."""
    kit = {
        _meta(c)["grade_id"]: _released_checksum(c)
        for c in released.cells
        if _meta(c).get("locked") and _meta(c).get("grade_id")
    }
    for index, cell in enumerate(submitted.cells):
        gid = _meta(cell).get("grade_id")
        if cell.cell_type == "code" and not (gid in kit and _checksum(cell) == kit[gid]):
            yield index, cell


# --- code ----------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=512)  # each cell twice, and the release's cells in every notebook
def _parse(source: str) -> ast.Module | None:
    """The AST of a cell as Python: the code of `%time`-like magics kept, magic and shell
    commands assigned replaced by `None`, other magic and shell lines by `pass`; None when it
    still does not parse. Shared between callers: read it, never change it."""
    code = ASSIGNED_MAGIC.sub(r"\1None", TIMED.sub(r"\1", source))
    try:
        return ast.parse(MAGIC.sub(r"\1pass", code))
    except (SyntaxError, ValueError):
        return None


def _dynamic_import(node: ast.AST, aliases: dict[str, str]) -> str | None:
    """The literal module name of `importlib.import_module("m")` or `__import__("m")`, or None."""
    if not (isinstance(node, ast.Call) and node.args):
        return None
    arg = node.args[0]
    if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
        return None
    func = node.func
    if isinstance(func, ast.Name) and func.id == "__import__" and func.id not in aliases:
        return arg.value
    if _resolve(func, aliases) in ("importlib.import_module", "builtins.__import__"):
        return arg.value
    return None


def _resolve(node: ast.AST, aliases: dict[str, str]) -> str | None:
    """The dotted path an expression stands for (`F.conv2d_forward` with F bound to
    cnn_core.functional: "cnn_core.functional.conv2d_forward"), or None."""
    if isinstance(node, ast.Name):
        return aliases.get(node.id)
    if isinstance(node, ast.Attribute):
        base = _resolve(node.value, aliases)
        return f"{base}.{node.attr}" if base else None
    if not isinstance(node, ast.Call):
        return None
    module = _dynamic_import(node, aliases)
    if module is None:
        return _getattr_path(node, aliases)
    # import_module returns the module it names, __import__ the top-level package
    via_importlib = _resolve(node.func, aliases) == "importlib.import_module"
    return module if via_importlib else module.split(".")[0]


def _getattr_path(node: ast.Call, aliases: dict[str, str]) -> str | None:
    """The path of `getattr(x, "name")` when x has one, else None."""
    if not (_is_getattr(node) and len(node.args) >= 2):
        return None
    name = node.args[1]
    if not (isinstance(name, ast.Constant) and isinstance(name.value, str)):
        return None
    base = _resolve(node.args[0], aliases)
    return f"{base}.{name.value}" if base else None


SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)


def _walk_scope(nodes: list[ast.AST]) -> Iterator[ast.AST]:
    """The nodes of `nodes` and below, in order, without entering a nested function or class."""
    stack = nodes[::-1]  # a stack rather than recursion: every node of every cell comes here
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, SCOPES):
            stack.extend(reversed(list(ast.iter_child_nodes(node))))


def _aliases(cells: list[NotebookNode]) -> dict[str, str]:
    """Global names bound to modules or their members by imports and plain assignments, in all
    code cells (the kit's too): cells may run in any order, so every binding counts everywhere."""
    # the kernel binds __builtins__ to the builtins module (or, in some kernels, to its dict)
    aliases: dict[str, str] = {"__builtins__": "builtins"}
    for cell in cells:
        tree = _parse(cell.source) if cell.cell_type == "code" else None
        for node in _walk_scope(tree.body) if tree else ():
            _bind(node, aliases)
    return aliases


def _local_aliases(scope: ast.AST, outer: dict[str, str]) -> dict[str, str]:
    """The aliases seen inside a function or lambda: the outer ones less the names it binds
    itself (its parameters and assigned names), plus the aliases its own body makes."""
    args = scope.args
    params = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
    body = scope.body if isinstance(scope.body, list) else [scope.body]
    nodes = list(_walk_scope(body))
    local = {a.arg for a in params if a}
    local |= {n.id for n in nodes if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    local -= {name for n in nodes if isinstance(n, ast.Global) for name in n.names}
    aliases = {k: v for k, v in outer.items() if k not in local}
    for node in nodes:
        _bind(node, aliases)
    return aliases


def _bind(node: ast.AST, aliases: dict[str, str]) -> None:
    """Record the names `node` binds to a dotted path."""
    if isinstance(node, ast.Import | ast.ImportFrom):
        aliases.update((name, path) for name, path in _import_bindings(node) if path)
    elif isinstance(node, ast.Assign | ast.NamedExpr):
        path = _resolve(node.value, aliases)
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        for target in targets:
            if path and isinstance(target, ast.Name):
                aliases[target.id] = path


def _import_bindings(node: ast.Import | ast.ImportFrom) -> Iterator[tuple[str, str | None]]:
    """(name, dotted path) for each name an import binds; the path is None for a relative import,
    whose module the text does not say. A star import binds names the text does not say either."""
    if isinstance(node, ast.Import):
        for a in node.names:
            top = a.name.split(".")[0]
            yield a.asname or top, a.name if a.asname else top
        return
    module = None if node.level else node.module
    for a in node.names:
        if a.name != "*":
            yield a.asname or a.name, f"{module}.{a.name}" if module else None


def _judge(path: str, rules: Policy) -> str | None:
    """The flag a use of `path` earns under `rules`, or None."""
    parts = path.split(".")
    if ESCAPE_HATCHES.intersection(parts) or parts[:2] == ["sys", "modules"]:
        return REFERENCE_USE
    if parts[0] == GRADER or any(path == e or path.startswith(e + ".") for e in ESCAPES):
        return REFERENCE_USE
    if parts[0] == KIT and len(parts) > 1:
        private = any(p.startswith("_") for p in parts[1:])
        if private or parts[1] not in rules.kit_modules:
            return REFERENCE_USE
    if any(path == lib or path.startswith(lib + ".") for lib in rules.libraries):
        return FORBIDDEN_LIBRARY
    return None


class _Scoped(ast.NodeVisitor):
    """A visitor that sees each function or lambda with its own aliases (`self.aliases`)."""

    aliases: dict[str, str]

    def visit_scope(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        """Visit a function with its own aliases: its parameters and locals shadow global ones."""
        outer = self.aliases
        self.aliases = _local_aliases(node, outer)
        self.generic_visit(node)
        self.aliases = outer

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = visit_scope


class _Finder(_Scoped):
    """Collects what a cell's code imports or uses that `rules` forbid, as {finding: flag}."""

    def __init__(self, aliases: dict[str, str], rules: Policy) -> None:
        self.aliases, self.rules = aliases, rules
        self.found: dict[str, str] = {}

    def check(self, path: str, verb: str) -> None:
        flag = _judge(path, self.rules)
        if flag:
            self.found.setdefault(f"{verb} {path}", flag)

    def visit_Import(self, node: ast.Import) -> None:
        for a in node.names:
            self.check(a.name, "imports")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module and not node.level:
            for a in node.names:
                self.check(f"{node.module}.{a.name}", "imports")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        path = _resolve(node, self.aliases)
        if path:
            self.check(path, "uses")  # the whole chain: its inner names add nothing
            base = _chain_base(node)
            if isinstance(base, ast.Call):
                self.visit(base)  # a dynamic import or getattr at the root of the chain
            return
        if node.attr in ESCAPE_HATCHES:
            self.found.setdefault(f"uses .{node.attr}", REFERENCE_USE)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        built = _built_code(node, self.aliases)
        if built:
            self.found.setdefault(built, REFERENCE_USE)
        module = _dynamic_import(node, self.aliases)
        if module and module.split(".")[0] == KIT:
            self.found.setdefault(f"imports {module} dynamically", REFERENCE_USE)
        elif module:
            self.check(module, "imports")
        path = _getattr_path(node, self.aliases)
        if path:
            self.check(path, "uses")
        name = node.args[1] if len(node.args) >= 2 else None
        if _is_getattr(node) and isinstance(name, ast.Constant) and name.value in ESCAPE_HATCHES:
            self.found.setdefault(f"uses .{name.value}", REFERENCE_USE)
        self.generic_visit(node)


def _built_code(node: ast.Call, aliases: dict[str, str]) -> str | None:
    """The finding of a call that runs code the checks cannot read: a string run as code, a
    module imported by a name built at run time, the kernel reached through get_ipython()."""
    for name in STRING_CODE:
        if _is_builtin(node.func, name, aliases):
            return f"runs code from a string ({name})"
    importer = _is_builtin(node.func, "__import__", aliases) or (
        _resolve(node.func, aliases) == "importlib.import_module"
    )
    if importer and _dynamic_import(node, aliases) is None:
        return "imports a module by a name built at run time"
    if isinstance(node.func, ast.Name) and node.func.id == "get_ipython":
        return "reaches the kernel itself (get_ipython)"
    return None


def _chain_base(node: ast.Attribute) -> ast.AST:
    """The expression at the root of an attribute chain: `x` in `x.a.b`."""
    while isinstance(node, ast.Attribute):
        node = node.value
    return node


def _is_getattr(node: ast.Call) -> bool:
    """Whether `node` calls the builtin getattr."""
    return isinstance(node.func, ast.Name) and node.func.id == "getattr"


# --- patches ---------------------------------------------------------------------------------


def _protected(released: NotebookNode) -> Mapping[str, frozenset[str]]:
    """The names that the release's locked cells import at module scope, each with the dotted
    paths it is imported as: the names its tests, visible and hidden, rely on."""
    locked = [c.source for c in released.cells if c.cell_type == "code" and _meta(c).get("locked")]
    return _imported(tuple(locked))


@functools.lru_cache(maxsize=64)  # the same release for every student of a batch
def _imported(sources: tuple[str, ...]) -> Mapping[str, frozenset[str]]:
    """{name: the dotted paths it is imported as} at module scope of the cells `sources`."""
    protected: dict[str, set[str]] = {}
    for source in sources:
        tree = _parse(source)
        for node in _walk_scope(tree.body) if tree else ():
            if isinstance(node, ast.Import | ast.ImportFrom):
                for name, path in _import_bindings(node):
                    protected.setdefault(name, set()).update({path} - {None})
    return MappingProxyType({name: frozenset(paths) for name, paths in protected.items()})


def _rebind(name: str) -> str:
    """The finding of a global rebinding of `name`."""
    return f"rebinds {name}, which the notebook's tests use"


def _literal(node: ast.AST | None) -> str | None:
    """The value of a string constant, else None."""
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _literal_keys(call: ast.Call) -> list[str]:
    """The keys a dict method call names literally: keyword names, string keys of a dict display
    and a string first argument (`update(a=1)`, `update({"a": 1})`, `setdefault("a", 1)`)."""
    keys = [k.arg for k in call.keywords if k.arg]
    first = call.args[0] if call.args else None
    if isinstance(first, ast.Dict):
        keys += [k for k in map(_literal, first.keys) if k]
    elif _literal(first):
        keys.append(_literal(first))
    return keys


def _is_builtin(node: ast.AST, name: str, aliases: dict[str, str]) -> bool:
    """Whether `node` names the builtin `name`: by its own name unless that is rebound to a
    module path, or through the builtins module."""
    if isinstance(node, ast.Name) and node.id == name:
        return name not in aliases
    return _resolve(node, aliases) == f"builtins.{name}"


def _is_setting(path: str) -> bool:
    """Whether `path` is one of the SETTINGS or inside one."""
    return any(path == s or path.startswith(s + ".") for s in SETTINGS)


def _namespace(node: ast.AST, aliases: dict[str, str]) -> str | None:
    """The module whose namespace `node` is, or None: m for `vars(m)` and `m.__dict__`, builtins
    for anything that resolves to it (`__builtins__` may be the module's dict)."""
    if isinstance(node, ast.Call) and _is_builtin(node.func, "vars", aliases) and node.args:
        return _resolve(node.args[0], aliases)
    if isinstance(node, ast.Attribute) and node.attr == "__dict__":
        return _resolve(node.value, aliases)
    return "builtins" if _resolve(node, aliases) == "builtins" else None


def _is_globals(node: ast.AST, aliases: dict[str, str]) -> bool:
    """Whether `node` is a call of globals(): the notebook's global namespace."""
    return isinstance(node, ast.Call) and _is_builtin(node.func, "globals", aliases)


def _attribute_write(
    node: ast.Call, aliases: dict[str, str]
) -> tuple[ast.AST, ast.AST | None, bool] | None:
    """(owner, name, deleting) of a call that sets or deletes an attribute, else None:
    `setattr(owner, name, v)`, `delattr(owner, name)`, `owner.__setattr__(name, v)`,
    `owner.__delattr__(name)` and `object.__setattr__(owner, name, v)`."""
    func, args = node.func, node.args
    for builtin, deleting in (("setattr", False), ("delattr", True)):
        if _is_builtin(func, builtin, aliases) and args:
            return args[0], args[1] if len(args) > 1 else None, deleting
    if not (isinstance(func, ast.Attribute) and func.attr in ("__setattr__", "__delattr__")):
        return None
    deleting = func.attr == "__delattr__"
    if _is_builtin(func.value, "object", aliases):  # the unbound method: the owner comes first
        return (args[0], args[1] if len(args) > 1 else None, deleting) if args else None
    return func.value, args[0] if args else None, deleting


class _Patches(_Scoped):
    """Collects how a cell's code changes what the tests share with it in the kernel: modules and
    what they hold (builtins included), and, through globals(), the `protected` names."""

    def __init__(self, aliases: dict[str, str], protected: Mapping[str, frozenset[str]]) -> None:
        self.aliases, self.protected = aliases, protected
        self.found: list[str] = []

    def add(self, finding: str) -> None:
        if finding not in self.found:
            self.found.append(finding)

    def member(self, path: str, name: str | None, deleting: bool) -> None:
        """The attribute `name` of `path` (None: named at run time) is set or deleted."""
        target = f"{path}.{name}" if name else path
        if not _is_setting(target):
            what = target if name else f"an attribute of {path}"
            self.add(f"{'deletes' if deleting else 'monkeypatches'} {what}")

    def attribute(self, owner: ast.AST, name: str | None, deleting: bool) -> None:
        """`owner.name` is set or deleted: a patch if `owner` is a module or from one."""
        path = _resolve(owner, self.aliases)
        if path:
            self.member(path, name, deleting)

    def item(self, container: ast.AST, key: str | None, deleting: bool) -> None:
        """`container[key]` is set or deleted (key None: not a literal string)."""
        module = _namespace(container, self.aliases)
        path = _resolve(container, self.aliases)
        if module:
            self.member(module, key, deleting)
        elif _is_globals(container, self.aliases):
            if key in self.protected:
                self.add(_rebind(key))
        elif path and not _is_setting(path):
            self.add(f"{'deletes from' if deleting else 'monkeypatches'} {path}[...]")

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        """A bare annotation (`np.x: int`) assigns nothing: its target is not visited."""
        if node.value is None:
            self.visit(node.annotation)
        else:
            self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if isinstance(node.ctx, ast.Store | ast.Del):
            self.attribute(node.value, node.attr, isinstance(node.ctx, ast.Del))
        self.generic_visit(node)

    def visit_Subscript(self, node: ast.Subscript) -> None:
        if isinstance(node.ctx, ast.Store | ast.Del):
            self.item(node.value, _literal(node.slice), isinstance(node.ctx, ast.Del))
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        write = _attribute_write(node, self.aliases)
        if write:
            owner, name, deleting = write
            self.attribute(owner, _literal(name), deleting)
        elif isinstance(node.func, ast.Attribute) and node.func.attr in WRITERS:
            for key in _literal_keys(node) or [None]:
                self.item(node.func.value, key, deleting=False)
        self.generic_visit(node)


def _other_bindings(node: ast.AST) -> Iterator[tuple[str, str | None]]:
    """(name, path) for the names `node` binds other than as a Name target: imports (path as
    imported), defs, classes, `except ... as` and match captures (path None)."""
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield from _import_bindings(node)
    elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        yield node.name, None
    elif isinstance(node, ast.ExceptHandler | ast.MatchAs | ast.MatchStar) and node.name:
        yield node.name, None


def _scope_bindings(
    body: list[ast.stmt], aliases: dict[str, str]
) -> Iterator[tuple[str, str | None]]:
    """(name, path) for every name that the statements `body` bind in their own scope: path is
    the dotted path an import or plain assignment binds it to, None for anything else."""
    skip: set[int] = set()  # Name targets already yielded, or that bind nothing in this scope
    for node in _walk_scope(body):
        if isinstance(node, ast.Assign | ast.NamedExpr):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [t for t in targets if isinstance(t, ast.Name)]
            skip.update(map(id, names))
            yield from ((t.id, _resolve(node.value, aliases)) for t in names)
        elif isinstance(node, ast.comprehension):  # its variables are local to the comprehension
            skip.update(map(id, ast.walk(node.target)))
        elif isinstance(node, ast.AnnAssign) and node.value is None:  # a bare annotation
            skip.add(id(node.target))
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            if id(node) not in skip:
                yield node.id, None
        else:
            yield from _other_bindings(node)


def _declared_global(body: list[ast.stmt]) -> set[str]:
    """The names that a function body declares global."""
    return {name for n in _walk_scope(body) if isinstance(n, ast.Global) for name in n.names}


def _rebinds(
    tree: ast.Module, aliases: dict[str, str], protected: Mapping[str, frozenset[str]]
) -> Iterator[str]:
    """A finding for each `protected` name that the cell binds in the notebook's global scope to
    anything but what the release imports it as: at module scope, or in a function that declares
    it global."""
    scopes = [(tree.body, set(protected))]
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            scopes.append((node.body, _declared_global(node.body)))
    for body, names in scopes:
        for name, path in _scope_bindings(body, aliases):
            if name in names and name in protected and path not in protected[name]:
                yield _rebind(name)


def _patches(
    tree: ast.Module, aliases: dict[str, str], protected: Mapping[str, frozenset[str]]
) -> list[str]:
    """The findings of a cell's code that changes what the tests share with it in the kernel."""
    visitor = _Patches(aliases, protected)
    visitor.visit(tree)
    return visitor.found + [r for r in _rebinds(tree, aliases, protected) if r not in visitor.found]


WHY = {
    TAMPERED: "tests run in the same kernel and would see the change",
    REFERENCE_USE: "the kit's reference implementation, or a way around its guard",
    FORBIDDEN_LIBRARY: "a library that does the assignment's work",
}


def _code_flags(
    source: str,
    aliases: dict[str, str],
    protected: Mapping[str, frozenset[str]],
    rules: Policy,
    label: str,
    cell_id: str | None,
) -> list[Flag]:
    """The flags of one cell of student code: at most one per flag name, listing its findings."""
    found: dict[str, str] = {}
    if PIP_INSTALL.search(source):
        found["installs packages"] = FORBIDDEN_LIBRARY
    if RUN_FILE.search(source):
        found["runs a file (%run)"] = REFERENCE_USE
    if OTHER_PYTHON.search(source):
        found["starts another Python process"] = REFERENCE_USE
    for name in sorted(set(GRADER_VARIABLES.findall(source))):
        found[f"reads the grader's {name}"] = REFERENCE_USE
    tree = _parse(source)
    if tree:
        found.update(dict.fromkeys(_patches(tree, aliases, protected), TAMPERED))
        finder = _Finder(aliases, rules)
        finder.visit(tree)
        found.update(finder.found)
    flags = []
    for name in (TAMPERED, REFERENCE_USE, FORBIDDEN_LIBRARY):
        what = [finding for finding, flag in found.items() if flag == name]
        if what:
            reason = f"{label} {'; '.join(what)} ({WHY[name]})"
            flags.append(Flag(name, reason, cell_id))
    return flags
