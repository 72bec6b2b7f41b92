"""Static checks of submissions: tampering (with cells, modules or the names the tests import),
reference use and forbidden libraries, on the real released notebooks filled with the instructor's
solutions."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest

from autograder.static_checks import Flag, inspect, policy

ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENTS = ["a1_convolution", "a2_pooling_dropout", "a3_backprop", "a4_train_cnn"]
A1 = "a1_convolution"


def read(folder: str, assignment: str) -> nbformat.NotebookNode:
    return nbformat.read(ROOT / folder / assignment / f"{assignment}.ipynb", as_version=4)


def filled(assignment: str) -> nbformat.NotebookNode:
    """The released notebook with every solution cell's source taken from the source notebook:
    a submission that a student who knew the answers would hand in."""
    answers = {
        c.metadata.nbgrader["grade_id"]: c.source
        for c in read("solutions", assignment).cells
        if c.metadata.get("nbgrader", {}).get("solution")
    }
    nb = read("assignments", assignment)
    for c in nb.cells:
        meta = c.metadata.get("nbgrader", {})
        if meta.get("solution"):
            c.source = answers[meta["grade_id"]]
    return nb


def hidden_lines(assignment: str) -> list[str]:
    """Every non-blank line of the source notebook's hidden tests."""
    hidden = re.compile(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", re.DOTALL)
    return [
        line.strip()
        for c in read("solutions", assignment).cells
        for block in hidden.findall(c.source)
        for line in block.splitlines()
        if line.strip()
    ]


@pytest.fixture(scope="module")
def a1() -> tuple[nbformat.NotebookNode, nbformat.NotebookNode]:
    """(released, full-marks submission) of a1."""
    return read("assignments", A1), filled(A1)


def cell(nb: nbformat.NotebookNode, grade_id: str) -> nbformat.NotebookNode:
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


def append_to(grade_id: str, code: str) -> Callable[[nbformat.NotebookNode], None]:
    """A mutation adding `code` at the end of the cell `grade_id`."""

    def mutate(nb: nbformat.NotebookNode) -> None:
        cell(nb, grade_id).source += "\n" + code

    return mutate


def add_cell(code: str) -> Callable[[nbformat.NotebookNode], None]:
    """A mutation adding a new code cell (no nbgrader metadata) at the end."""

    def mutate(nb: nbformat.NotebookNode) -> None:
        nb.cells.append(nbformat.v4.new_code_cell(code))

    return mutate


def delete(grade_id: str) -> Callable[[nbformat.NotebookNode], None]:
    def mutate(nb: nbformat.NotebookNode) -> None:
        nb.cells.remove(cell(nb, grade_id))

    return mutate


def set_meta(grade_id: str, **changes) -> Callable[[nbformat.NotebookNode], None]:
    def mutate(nb: nbformat.NotebookNode) -> None:
        cell(nb, grade_id).metadata.nbgrader.update(changes)

    return mutate


def retype(grade_id: str) -> Callable[[nbformat.NotebookNode], None]:
    def mutate(nb: nbformat.NotebookNode) -> None:
        old = cell(nb, grade_id)
        nb.cells[nb.cells.index(old)] = nbformat.v4.new_markdown_cell(
            old.source, metadata=old.metadata
        )

    return mutate


def flags_after(a1, mutate: Callable[[nbformat.NotebookNode], None]) -> list[Flag]:
    released, submission = a1
    nb = copy.deepcopy(submission)
    mutate(nb)
    return inspect(nb, released, policy(A1))


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_full_marks_submission_is_clean(assignment):
    assert inspect(filled(assignment), read("assignments", assignment), policy(assignment)) == []


def test_unfilled_release_is_clean(a1):
    released, _ = a1
    assert inspect(copy.deepcopy(released), released, policy(A1)) == []


CHEATS = {
    "edit test": (append_to("test_conv1d", "pass"), "tampered", "test_conv1d"),
    "edit instructions": (append_to("intro", "easy"), "tampered", "intro"),
    "delete test": (delete("test_conv2d_backward"), "tampered", "test_conv2d_backward"),
    "delete setup": (delete("setup"), "tampered", "setup"),
    "points": (set_meta("test_im2col", points=30), "tampered", "test_im2col"),
    "ungraded": (set_meta("test_im2col", grade=False), "tampered", "test_im2col"),
    "unlocked": (set_meta("test_dense", locked=False), "tampered", "test_dense"),
    "retyped": (retype("test_conv1d"), "tampered", "test_conv1d"),
    "forged graded cell": (
        lambda nb: nb.cells.append(
            nbformat.v4.new_code_cell(
                "x = 1",
                metadata={
                    "nbgrader": {
                        "grade": True,
                        "grade_id": "bonus",
                        "locked": True,
                        "points": 50,
                        "solution": False,
                        "schema_version": 3,
                    }
                },
            )
        ),
        "tampered",
        "bonus",
    ),
    "from functional": (
        append_to("conv2d_forward", "from cnn_core.functional import conv2d_forward as c"),
        "reference-use",
        "conv2d_forward",
    ),
    "top-level op": (
        append_to("conv2d_forward", "import cnn_core as cc\ncc.conv2d_forward"),
        "reference-use",
        "conv2d_forward",
    ),
    "from top-level": (
        append_to("conv1d", "from cnn_core import conv2d_forward"),
        "reference-use",
        "conv1d",
    ),
    "star import": (append_to("conv1d", "from cnn_core import *"), "reference-use", "conv1d"),
    "private": (
        append_to("im2col", "import cnn_core.functional\ncnn_core.functional._im2col"),
        "reference-use",
        "im2col",
    ),
    "private of helper": (
        append_to("im2col", "forbidden = grading._guard._forbidden"),
        "reference-use",
        "im2col",
    ),
    "naive": (append_to("im2col", "import cnn_core.naive"), "reference-use", "im2col"),
    "kernels": (append_to("im2col", "from cnn_core import _kernels"), "reference-use", "im2col"),
    "nn in a1": (append_to("im2col", "from cnn_core import nn"), "reference-use", "im2col"),
    "alias module": (
        append_to("col2im", "from cnn_core import functional as ref\nref.col2im"),
        "reference-use",
        "col2im",
    ),
    "alias by assignment": (
        add_cell("import cnn_core\nx = cnn_core\ny = x.functional\ny.conv2d_backward(1, 2)"),
        "reference-use",
        None,
    ),
    "alias inside a function": (
        append_to("conv1d", "def f():\n    c = grading\n    return c._guard"),
        "reference-use",
        "conv1d",
    ),
    "getattr": (
        append_to("conv1d", 'import cnn_core\ngetattr(cnn_core, "conv1d_forward")'),
        "reference-use",
        "conv1d",
    ),
    "closure": (
        append_to("conv1d", "f = lambda: 0\nf.__closure__"),
        "reference-use",
        "conv1d",
    ),
    "wrapped via getattr": (
        append_to("conv1d", 'getattr(check_gradients, "__wrapped__")'),
        "reference-use",
        "conv1d",
    ),
    "globals": (add_cell("g = check_gradients.__globals__"), "reference-use", None),
    "__import__": (
        append_to("conv1d", '__import__("cnn_core")'),
        "reference-use",
        "conv1d",
    ),
    "import_module kit": (
        append_to("conv1d", 'import importlib\nimportlib.import_module("cnn_core.gradcheck")'),
        "reference-use",
        "conv1d",
    ),
    "sys.modules": (
        append_to("conv1d", 'import sys\nsys.modules["cnn_core"]'),
        "reference-use",
        "conv1d",
    ),
    "import torch": (append_to("conv1d", "import torch"), "forbidden-library", "conv1d"),
    "from scipy": (
        append_to("conv1d", "from scipy import signal"),
        "forbidden-library",
        "conv1d",
    ),
    "scipy attribute": (
        append_to("conv1d", "import scipy\nscipy.ndimage.convolve"),
        "forbidden-library",
        "conv1d",
    ),
    "import_module torch": (
        append_to("conv1d", 'import importlib\nimportlib.import_module("torch")'),
        "forbidden-library",
        "conv1d",
    ),
    "__import__ cv2": (add_cell('cv = __import__("cv2")'), "forbidden-library", None),
    "pip install": (add_cell("%pip install torch==2.13.0"), "forbidden-library", None),
    "magic hiding a cell": (
        add_cell("here = %pwd\nfrom cnn_core import conv2d_forward"),
        "reference-use",
        None,
    ),
    "timed reference": (
        append_to("conv1d", "%time from cnn_core.functional import conv1d_forward"),
        "reference-use",
        "conv1d",
    ),
    "exec": (add_cell('exec("from cnn_core import *")'), "reference-use", None),
    "eval": (append_to("conv1d", 'eval("1 + 1")'), "reference-use", "conv1d"),
    "compile": (add_cell('compile("x = 1", "x", "exec")'), "reference-use", None),
    "built import name": (
        append_to("conv1d", 'import importlib\nimportlib.import_module("cnn" + "_core")'),
        "reference-use",
        "conv1d",
    ),
    "built __import__ name": (
        add_cell('__import__("".join(["cnn", "_core"]))'),
        "reference-use",
        None,
    ),
    "kernel hooks": (
        add_cell('get_ipython().events.register("post_run_cell", print)'),
        "reference-use",
        None,
    ),
    "%run": (append_to("conv1d", "%run helpers.py"), "reference-use", "conv1d"),
    "python in the shell": (add_cell("!python -c 'import cnn_core'"), "reference-use", None),
    "python cell": (add_cell("%%python3\nimport cnn_core"), "reference-use", None),
    "bash cell": (add_cell("%%bash\ncd /tmp\npython3 x.py"), "reference-use", None),
    "ctypes": (add_cell("import ctypes"), "reference-use", None),
    "pkgutil": (
        add_cell('import pkgutil\npkgutil.resolve_name("cnn" + "_core:conv2d_forward")'),
        "reference-use",
        None,
    ),
    "the grader's code": (
        append_to("conv1d", "import autograder.outputs as o\no.checks"),
        "reference-use",
        "conv1d",
    ),
    "the student's key": (
        add_cell('import os\nkey = os.environ["CNNKIT_CASE_KEY"]'),
        "reference-use",
        None,
    ),
    "gc objects": (add_cell("import gc\nops = gc.get_objects()"), "reference-use", None),
    "file loader": (
        add_cell("import importlib.util\nimportlib.util.spec_from_file_location('m', 'm.py')"),
        "reference-use",
        None,
    ),
    "shell install under magic": (
        add_cell("if True:\n    !pip install scikit-image"),
        "forbidden-library",
        None,
    ),
}


@pytest.mark.parametrize("name", CHEATS)
def test_cheat_is_flagged(a1, name):
    mutate, flag, grade_id = CHEATS[name]
    flags = flags_after(a1, mutate)
    assert [(f.name, f.cell) for f in flags] == [(flag, grade_id)]
    label = f"'{grade_id}'" if grade_id else "added cell"
    assert label in flags[0].reason


@pytest.mark.parametrize(
    "code",
    [
        "import numpy\nimport numpy as np\nnp.convolve",
        "import scipy.linalg\nfrom scipy import linalg",
        "import matplotlib.pyplot as plt",
        "from cnn_core.gradcheck import numerical_gradient\nimport cnn_core.gradcheck",
        "import cnn_core\ncnn_core.gradcheck.rel_error(1.0, 1.0)\ncnn_core.arith",
        "grading.check_close",
        "def f(grading, x):\n    return grading._cache, x.shape",  # parameters shadow globals
        "x = grading\nlambda x: x._private",
        "%timeit conv1d([1.0], [1.0])\n!ls",
        "%timeit -n 10 -r 3 y = conv1d([1.0], [1.0])\nhere = %pwd\nfiles = !ls -la",
        "%%time\ny = conv1d([1.0], [1.0])",
        'import re, gc\nre.compile("a+")\ngc.collect()',
        'import importlib\nimportlib.import_module("numpy")',
        "import subprocess\nsubprocess.run(['ls'])",
        "def broken(:\n    import torch",  # does not parse: it fails when run, unflagged here
    ],
)
def test_allowed_code_is_not_flagged(a1, code):
    assert flags_after(a1, append_to("conv1d", code)) == []


def test_reference_use_and_library_in_one_cell_give_two_flags(a1):
    flags = flags_after(a1, append_to("conv1d", "import torch\nimport cnn_core.naive"))
    assert sorted(f.name for f in flags) == ["forbidden-library", "reference-use"]


def test_edited_test_cell_is_also_checked_as_student_code(a1):
    flags = flags_after(a1, append_to("test_conv1d", "import torch"))
    assert [(f.name, f.cell) for f in flags] == [
        ("tampered", "test_conv1d"),
        ("forbidden-library", "test_conv1d"),
    ]


def test_unchanged_copy_of_a_test_cell_is_fine(a1):
    def duplicate(nb):
        nb.cells.append(copy.deepcopy(cell(nb, "test_conv1d")))

    assert flags_after(a1, duplicate) == []


def test_a4_policy_allows_the_training_stack():
    released = read("assignments", "a4_train_cnn")
    nb = filled("a4_train_cnn")
    nb.cells.append(nbformat.v4.new_code_cell("from cnn_core import nn, optim\nnn.Conv2d"))
    assert inspect(nb, released, policy("a4_train_cnn")) == []
    strict = [f for f in inspect(nb, released, policy(A1)) if f.cell is None]
    assert [f.name for f in strict] == ["reference-use"]


def test_clearing_the_guard_is_reference_use_and_a_patch(a1):
    flags = flags_after(a1, append_to("im2col", "grading._guard._forbidden.clear()"))
    assert [(f.name, f.cell) for f in flags] == [
        ("tampered", "im2col"),
        ("reference-use", "im2col"),
    ]
    assert "cnn_core.grading._guard._forbidden" in flags[0].reason


# --- monkeypatching ------------------------------------------------------------------------------

# name: (mutation, grade_id of the flagged cell or None for an added one, what the reason names)
PATCHES = {
    "module attribute": (
        append_to("conv1d", "np.allclose = lambda *a, **k: True"),
        "conv1d",
        "monkeypatches numpy.allclose",
    ),
    "submodule attribute": (
        add_cell("np.testing.assert_allclose = print"),
        None,
        "monkeypatches numpy.testing.assert_allclose",
    ),
    "kit helper": (
        append_to("im2col", "grading.check_close = lambda *a, **k: None"),
        "im2col",
        "monkeypatches cnn_core.grading.check_close",
    ),
    "full kit path": (
        add_cell("import cnn_core.gradcheck\ncnn_core.gradcheck.rel_error = lambda a, b: 0.0"),
        None,
        "monkeypatches cnn_core.gradcheck.rel_error",
    ),
    "alias by assignment": (
        add_cell("g = grading\ng.check_close = print"),
        None,
        "monkeypatches cnn_core.grading.check_close",
    ),
    "imported function": (
        add_cell("check_gradients.tolerance = 1.0"),
        None,
        "monkeypatches cnn_core.gradcheck.check_gradients.tolerance",
    ),
    "inside a function": (
        append_to("conv1d", "def cheat():\n    np.allclose = lambda *a: True"),
        "conv1d",
        "monkeypatches numpy.allclose",
    ),
    "augmented": (add_cell("np.pi += 1"), None, "monkeypatches numpy.pi"),
    "annotated": (add_cell("np.allclose: object = print"), None, "monkeypatches numpy.allclose"),
    "tuple target": (add_cell("np.allclose, x = print, 1"), None, "monkeypatches numpy.allclose"),
    "del": (add_cell("del np.allclose"), None, "deletes numpy.allclose"),
    "import_module": (
        add_cell('import importlib\nimportlib.import_module("numpy").allclose = print'),
        None,
        "monkeypatches numpy.allclose",
    ),
    "setattr": (add_cell('setattr(np, "allclose", print)'), None, "monkeypatches numpy.allclose"),
    "setattr of a name built at run time": (
        add_cell('setattr(np, "all" + "close", print)'),
        None,
        "monkeypatches an attribute of numpy",
    ),
    "setattr through getattr": (
        add_cell('setattr(getattr(np, "testing"), "assert_allclose", print)'),
        None,
        "monkeypatches numpy.testing.assert_allclose",
    ),
    "object.__setattr__": (
        add_cell('object.__setattr__(np, "allclose", print)'),
        None,
        "monkeypatches numpy.allclose",
    ),
    "module.__setattr__": (
        add_cell('np.__setattr__("allclose", print)'),
        None,
        "monkeypatches numpy.allclose",
    ),
    "delattr": (
        add_cell('delattr(grading, "check_close")'),
        None,
        "deletes cnn_core.grading.check_close",
    ),
    "vars": (add_cell('vars(np)["allclose"] = print'), None, "monkeypatches numpy.allclose"),
    "__dict__": (add_cell('np.__dict__["allclose"] = print'), None, "monkeypatches numpy.allclose"),
    "__dict__.update": (
        add_cell("np.__dict__.update(allclose=print)"),
        None,
        "monkeypatches numpy.allclose",
    ),
    "vars().update with a dict": (
        add_cell('vars(grading).update({"check_close": print})'),
        None,
        "monkeypatches cnn_core.grading.check_close",
    ),
    "container of a module": (
        add_cell("grading.TOLERANCES[np.dtype(np.float64)] = (1.0, 1.0)"),
        None,
        "monkeypatches cnn_core.grading.TOLERANCES",
    ),
    "container of a module, by method": (
        add_cell("tolerances = grading.TOLERANCES\ntolerances.update({})"),
        None,
        "monkeypatches cnn_core.grading.TOLERANCES",
    ),
    "builtins": (
        add_cell("import builtins\nbuiltins.abs = lambda x: 0"),
        None,
        "monkeypatches builtins.abs",
    ),
    "builtins by setattr": (
        add_cell('import builtins as b\nsetattr(b, "AssertionError", Warning)'),
        None,
        "monkeypatches builtins.AssertionError",
    ),
    "__builtins__ attribute": (
        add_cell("__builtins__.abs = lambda x: 0"),
        None,
        "monkeypatches builtins.abs",
    ),
    "__builtins__ item": (
        add_cell('__builtins__["abs"] = lambda x: 0'),
        None,
        "monkeypatches builtins.abs",
    ),
    "__builtins__ namespace": (
        add_cell("__builtins__.__dict__.update(all=lambda *a: True)"),
        None,
        "monkeypatches builtins.all",
    ),
    # rebinding, in the notebook's global scope, a name that the locked cells import
    "def": (
        add_cell("def rel_error(a, b):\n    return 0.0"),
        None,
        "rebinds rel_error, which the notebook's tests use",
    ),
    "assignment": (append_to("conv1d", "grading = None"), "conv1d", "rebinds grading"),
    "other module": (add_cell("import math as np"), None, "rebinds np"),
    "other function": (
        add_cell("from numpy import isclose as check_gradients"),
        None,
        "rebinds check_gradients",
    ),
    "class": (add_cell("class numerical_gradient:\n    pass"), None, "rebinds numerical_gradient"),
    "loop variable": (add_cell("for plt in range(3):\n    pass"), None, "rebinds plt"),
    "walrus": (add_cell("(np := None)"), None, "rebinds np"),
    "global in a function": (
        append_to("conv1d", "def f():\n    global rel_error\n    rel_error = abs"),
        "conv1d",
        "rebinds rel_error",
    ),
    "globals()": (add_cell('globals()["rel_error"] = abs'), None, "rebinds rel_error"),
    "globals().update": (add_cell("globals().update(grading=None)"), None, "rebinds grading"),
}


@pytest.mark.parametrize("name", PATCHES)
def test_patch_is_flagged(a1, name):
    mutate, grade_id, what = PATCHES[name]
    flags = flags_after(a1, mutate)
    assert [(f.name, f.cell) for f in flags] == [("tampered", grade_id)]
    assert what in flags[0].reason
    assert (f"'{grade_id}'" if grade_id else "added cell") in flags[0].reason


def test_patches_of_one_cell_make_one_flag_naming_each(a1):
    flags = flags_after(a1, append_to("conv1d", "np.allclose = print\ngrading = None"))
    assert [(f.name, f.cell) for f in flags] == [("tampered", "conv1d")]
    assert "numpy.allclose" in flags[0].reason and "rebinds grading" in flags[0].reason


def test_patch_in_an_edited_test_cell_is_a_second_tampered_flag(a1):
    flags = flags_after(a1, append_to("test_conv1d", "np.allclose = print"))
    assert [(f.name, f.cell) for f in flags] == [
        ("tampered", "test_conv1d"),
        ("tampered", "test_conv1d"),
    ]
    assert "numpy.allclose" in flags[1].reason


@pytest.mark.parametrize(
    "code",
    [
        # attributes of the student's own objects
        "class Model:\n    def __init__(self):\n        self.w = 1\nmodel = Model()\nmodel.lr = 0.1",
        "import types\ncache = types.SimpleNamespace()\ncache.x = 1\nopt = types.SimpleNamespace()"
        "\nopt.lr = 0.1",
        "class A:\n    def __init__(self, **kw):\n        self.__dict__.update(kw)\n"
        "        vars(self)['b'] = 2\n        setattr(self, 'c', 3)\n        object.__setattr__(self, 'd', 4)",
        "fig, ax = plt.subplots()\nfig.tight_layout()\nplt.close(fig)",
        # numpy arrays and other containers of the student's
        "x = np.zeros((2, 3))\nx[0] = 1\nout = np.zeros((2, 3))\nfor i in range(3):\n"
        "    out[:, i] = x[:, i]\nd = {}\nd.update(a=1)\ndel d['a']",
        # calls are not patches
        "np.random.seed(0)\nnp.set_printoptions(precision=3)",
        # settings
        'plt.rcParams["figure.dpi"] = 100\nplt.rcParams.update({"font.size": 9})',
        "import matplotlib as mpl\nfrom matplotlib import rcParams\nmpl.rcParams['lines.linewidth'] = 2"
        "\nrcParams['axes.grid'] = True",
        "import os\nos.environ['FASHION_MNIST_DIR'] = '/data/fashion-mnist'",
        # locals named like modules or like the tests' names
        "def f(x):\n    np = x\n    np.allclose = None\n    grading = x\n    grading.check_close = 1"
        "\n    rel_error = 0\n    return np, rel_error",
        "def g(rel_error, grading):\n    rel_error.x = 1\n    setattr(grading, 'y', 2)",
        "lambda np: setattr(np, 'x', 1)",
        "[grading for grading in range(3)]\n{np: 1 for np in range(2)}",
        "class Config:\n    np = 1\n    grading = 'strict'",
        # the same bindings again
        "import numpy as np\nfrom cnn_core import grading\nfrom matplotlib import pyplot as plt",
        "import numpy\nnp = numpy\nrel_error = rel_error\nfrom cnn_core import gradcheck"
        "\ncheck_gradients = gradcheck.check_gradients",
        # names the locked cells do not import
        "def my_rel_error(a, b):\n    return 0.0\ncheck_close = None\nref = 1\nnumpy = 2",
        "np.x: int",  # a bare annotation assigns nothing
    ],
)
def test_ordinary_code_is_not_a_patch(a1, code):
    assert flags_after(a1, append_to("conv1d", code)) == []


@pytest.mark.parametrize(
    ("assignment", "code", "rebound"),
    [
        ("a2_pooling_dropout", "def check_gradients(*a):\n    return None", "check_gradients"),
        ("a3_backprop", "ref = None", "ref"),  # imported by locked test cells, not by setup
        ("a3_backprop", "from matplotlib.patches import Rectangle as Circle", "Circle"),
        ("a3_backprop", "grading = None", None),  # a3's locked cells do not import grading
        ("a4_train_cnn", "def fit(*args, **kwargs):\n    return None", "fit"),
        ("a4_train_cnn", "History = dict", "History"),
        ("a4_train_cnn", "from cnn_core import nn as _nn\nimport warnings", None),
    ],
)
def test_protected_names_come_from_the_release(assignment, code, rebound):
    nb = filled(assignment)
    nb.cells.append(nbformat.v4.new_code_cell(code))
    flags = inspect(nb, read("assignments", assignment), policy(assignment))
    if rebound is None:
        assert flags == []
    else:
        assert [(f.name, f.cell) for f in flags] == [("tampered", None)]
        assert f"rebinds {rebound}," in flags[0].reason


def test_reasons_never_show_hidden_tests(a1):
    hidden = hidden_lines(A1)
    assert hidden, "the source notebook has hidden tests"
    mutations = [m for m, _, _ in CHEATS.values()] + [m for m, _, _ in PATCHES.values()]
    mutations.append(append_to("test_conv2d_forward", "np.allclose = print"))
    reasons = [f.reason for mutate in mutations for f in flags_after(a1, mutate)]
    assert not [line for line in hidden for reason in reasons if line in reason]
