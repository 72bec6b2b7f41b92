"""Output checks: the student's functions called on hidden per-student inputs inside the sandbox,
their results compared with `cnn_core` in the grader's own process.

The notebook's hidden tests run in the student's kernel, where a patched numpy, checker or
reference op could make a wrong answer pass. Output checks do not trust that kernel with
anything but producing outputs:

- In the kernel, a cell the grader appends after the student's notebook calls `harvest`, which
  draws each check's cases, calls the student's functions under `grading.no_reference` and
  displays the results as one JSON document of `.npy` bytes (MIME type `MIME`).
- In the grader, `score_outputs` draws the same cases from the student's id, computes the
  expected values with `cnn_core`, and decodes the student's arrays with `allow_pickle=False`:
  nothing from the student's process is unpickled or executed.

A check scores one autograded test cell (its grade_id), with partial credit: the share of its
cases that pass. Its messages name the case ("stride 2, padding 1, float32") and the error,
never the inputs. Assignments without checks here are scored from their test cells alone.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import importlib
import io
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from cnn_core.grading import check_close, no_reference, student_id

if TYPE_CHECKING:  # grader side only: importing nbformat in the kernel costs about 1 s
    import nbformat

MIME = "application/vnd.cnnkit.outputs+json"
HARVEST_ID = "cnnkit_outputs"  # grade_id-like marker of the appended cell, in its metadata
MAX_MESSAGES = 3  # failing cases spelled out per check; the rest are counted
ERROR_CHARS = 300  # of an exception's message kept for the feedback


@dataclass(frozen=True)
class Case:
    """One call's inputs (`args`: arrays and plain numbers) and a label saying what kind of case
    it is without giving its values, e.g. "float32, batch 2, 3x3 filter, stride 2, padding 1"."""

    args: dict[str, Any]
    label: str


@dataclass(frozen=True)
class Check:
    """The cases that score one test cell.

    cases(rng): the inputs; run(namespace, case): in the kernel, call the student's functions
    found in the notebook's namespace and return {output name: value}; expected(case): in the
    grader, the reference values under the same names. `forbid`: reference ops that raise if
    called during `run`. `exact_dtype`: False for answers typed by hand, where 5 and 5.0 agree.
    """

    grade_id: str
    what: str
    cases: Callable[[np.random.Generator], list[Case]]
    run: Callable[[Mapping[str, Any], Case], dict[str, Any]]
    expected: Callable[[Case], dict[str, Any]]
    forbid: tuple[str, ...] = ()
    exact_dtype: bool = True


def case_rng(student: str, assignment: str, grade_id: str) -> np.random.Generator:
    """The generator of one student's cases of one check: the same in the kernel and the grader."""
    key = f"{student}/{assignment}/outputs/{grade_id}".encode()
    return np.random.default_rng(int.from_bytes(hashlib.sha256(key).digest()[:8], "little"))


def checks(assignment: str) -> list[Check]:
    """The output checks of `assignment`: CHECKS of the module autograder.checks.<assignment>
    (empty when there is no such module)."""
    module = check_module(assignment)
    return [] if module is None else module.CHECKS


def harvests(assignment: str) -> bool:
    """True when the assignment's notebook needs the harvest cell: it has checks or exports."""
    module = check_module(assignment)
    return bool(module and (module.CHECKS or getattr(module, "EXPORTS", None)))


def check_module(assignment: str) -> ModuleType | None:
    """The module autograder.checks.<assignment>, or None when the assignment has none."""
    if not assignment.isidentifier():
        return None
    try:
        return importlib.import_module(f"autograder.checks.{assignment}")
    except ModuleNotFoundError as exc:
        if exc.name != f"autograder.checks.{assignment}":
            raise  # a check module that fails to import is a bug, not a missing module
        return None


# --------------------------------------------------------------------------- kernel side


def harvest_cell(assignment: str) -> nbformat.NotebookNode:
    """The cell appended to the notebook the sandbox runs."""
    import nbformat

    cell = nbformat.v4.new_code_cell(
        f"from autograder.outputs import harvest as _cnnkit_harvest\n"
        f"_cnnkit_harvest(globals(), {assignment!r})"
    )
    cell.metadata["cnnkit"] = {"role": HARVEST_ID}
    return cell


def harvest(namespace: Mapping[str, Any], assignment: str) -> None:
    """Display the checks' `results` and the module's `exports` as MIME data (kernel side)."""
    from IPython.display import display

    payload = {
        "version": 1,
        "checks": results(namespace, assignment, student_id()),
        "exports": exports(namespace, assignment),
    }
    display({MIME: payload}, raw=True)


def exports(namespace: Mapping[str, Any], assignment: str) -> dict[str, dict]:
    """{name: {"outputs": ...} or {"error": ...}} for each function of the check module's
    EXPORTS ({name: f(namespace) -> {output name: array}}): data the grader inspects itself,
    such as the training history a4's curve is replayed into."""
    module = check_module(assignment)
    found = {}
    for name, export in getattr(module, "EXPORTS", {}).items():
        try:
            found[name] = {"outputs": {k: _encode(v) for k, v in export(_Names(namespace)).items()}}
        except BaseException as exc:  # the student's objects may raise anything
            found[name] = {"error": _describe(exc)}
    return found


def results(namespace: Mapping[str, Any], assignment: str, student: str) -> dict[str, list[dict]]:
    """{grade_id: one encoded result per case} of every check, calling the functions found in
    `namespace`. Each case's exception is recorded, never raised: one broken function costs only
    its own checks."""
    return {
        c.grade_id: [
            _run_case(c, namespace, case)
            for case in c.cases(case_rng(student, assignment, c.grade_id))
        ]
        for c in checks(assignment)
    }


def _run_case(check: Check, namespace: Mapping[str, Any], case: Case) -> dict:
    try:
        with no_reference(*check.forbid):
            outputs = check.run(_Names(namespace), case)
        return {"outputs": {name: _encode(value) for name, value in outputs.items()}}
    except BaseException as exc:  # SystemExit and KeyboardInterrupt are the student's too
        return {"error": _describe(exc)}


def _describe(exc: BaseException) -> str:
    """'ErrorType: message' (just the type without a message), cut to ERROR_CHARS."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text[:ERROR_CHARS]


class _Names(dict):
    """The notebook's namespace, where a missing name is the NameError Python would raise."""

    def __missing__(self, key: str) -> Any:
        raise NameError(f"name {key!r} is not defined")


def _encode(value: Any) -> dict:
    """{"npy": base64 of the .npy bytes} for numbers and numeric arrays, else {"type": name}."""
    if isinstance(value, (np.ndarray, np.generic, int, float)) and not isinstance(value, bool):
        array = np.asarray(value)
        if array.dtype.kind in "iuf":
            buffer = io.BytesIO()
            np.save(buffer, array, allow_pickle=False)
            return {"npy": base64.b64encode(buffer.getvalue()).decode("ascii")}
    if isinstance(value, (tuple, list)):
        try:
            return _encode(np.asarray(value))  # an answer typed as a tuple or a list
        except (ValueError, TypeError):
            pass
    return {"type": type(value).__name__}


# --------------------------------------------------------------------------- grader side


def harvested(nb: nbformat.NotebookNode | None) -> dict | None:
    """The payload `harvest` displayed in the executed notebook `nb`, or None when the cell did
    not run to the end. Read as JSON data only."""
    if nb is None:
        return None
    cells = [c for c in nb.cells if c.metadata.get("cnnkit", {}).get("role") == HARVEST_ID]
    if not cells:
        return None
    found = [o for o in cells[-1].get("outputs", []) if MIME in o.get("data", {})]
    if not found:
        return None
    payload = found[-1]["data"][MIME]  # the last one: harvest displays after every call returned
    if isinstance(payload, str):
        payload = json.loads(payload)
    if not isinstance(payload, dict) or not isinstance(payload.get("checks"), dict):
        return None
    return payload


def exported(payload: dict | None, name: str) -> dict[str, np.ndarray] | str:
    """The arrays of export `name` in a harvested payload, or a string saying why there are none."""
    entry = ((payload or {}).get("exports") or {}).get(name)
    if not isinstance(entry, dict):
        return "the notebook did not run to its end"
    if "error" in entry:
        return f"raised {str(entry['error'])[:ERROR_CHARS]}"
    values = {k: _decode(v) for k, v in (entry.get("outputs") or {}).items()}
    bad = [k for k, v in values.items() if isinstance(v, _Unreadable)]
    return f"{', '.join(bad)} could not be read" if bad else values


def score_outputs(
    assignment: str, student: str, payload: dict | None, failure: str
) -> dict[str, tuple[float, list[str]]]:
    """{grade_id: (fraction of cases passed, messages)} for every check of `assignment`.
    `payload` comes from `harvested` (None: the checks did not run, and `failure` says why)."""
    results = (payload or {}).get("checks")
    scores = {}
    for check in checks(assignment):
        cases = check.cases(case_rng(student, assignment, check.grade_id))
        got = (results or {}).get(check.grade_id)
        if not isinstance(got, list) or len(got) != len(cases):
            scores[check.grade_id] = (0.0, [f"{check.what}: not checked: {failure}"])
            continue
        problems = [_judge(check, case, result) for case, result in zip(cases, got, strict=True)]
        failed = [p for p in problems if p]
        messages = failed[:MAX_MESSAGES]
        if len(failed) > MAX_MESSAGES:
            messages.append(f"... and {len(failed) - MAX_MESSAGES} more failing cases")
        if failed:
            messages.append(
                f"{check.what}: {len(cases) - len(failed)} of {len(cases)} cases passed"
            )
        scores[check.grade_id] = (1 - len(failed) / len(cases), messages)
    return scores


def _judge(check: Check, case: Case, result: Any) -> str:
    """Why the student's result for `case` is wrong ("" when right)."""
    if not isinstance(result, dict):
        return f"{check.what}: no result with {case.label}"
    if "error" in result:
        return f"{check.what} with {case.label}: raised {str(result['error'])[:ERROR_CHARS]}"
    outputs = result.get("outputs")
    if not isinstance(outputs, dict):
        return f"{check.what}: no result with {case.label}"
    for name, expected in check.expected(case).items():
        what = f"{check.what}: {name}"
        try:
            actual = _decode(outputs.get(name))
            _compare(what, actual, expected, case, check.exact_dtype)
        except AssertionError as exc:
            return str(exc)
    return ""


def _decode(encoded: Any) -> Any:
    """The array in an _encode result; for anything else, a stand-in naming its type."""
    if isinstance(encoded, dict) and isinstance(encoded.get("npy"), str):
        try:
            return np.load(io.BytesIO(base64.b64decode(encoded["npy"])), allow_pickle=False)
        except (ValueError, OSError, binascii.Error, EOFError):
            return _Unreadable("unreadable array")
    if isinstance(encoded, dict) and isinstance(encoded.get("type"), str):
        return _Unreadable(encoded["type"][:40])
    return _Unreadable("nothing")


class _Unreadable:
    """A result that is not an array: `check_close` reports its type name."""

    def __init__(self, name: str):
        self.name = name


def _compare(what: str, actual: Any, expected: Any, case: Case, exact_dtype: bool) -> None:
    """AssertionError saying what is wrong unless `actual` matches `expected`: integers exactly,
    floats within the case's "atol" if it has one, else the kit's tolerances (check_close)."""
    label, atol = case.label, case.args.get("atol")
    where = f"{what} wrong" + (f" with {label}" if label else "")
    if isinstance(actual, _Unreadable):
        raise AssertionError(f"{where}: expected a number or an array, got {actual.name}")
    expected = np.asarray(expected)
    if expected.dtype.kind in "iu":
        if actual.dtype.kind not in "iu" and (exact_dtype or not _integral(actual)):
            raise AssertionError(f"{where}: expected an integer, got {actual.dtype}")
        if actual.shape != expected.shape or not np.array_equal(actual, expected):
            raise AssertionError(
                where
                if actual.shape == expected.shape
                else f"{where}: shape {actual.shape}, expected {expected.shape}"
            )
        return
    if not exact_dtype and actual.dtype.kind in "iuf":
        actual = actual.astype(expected.dtype)
    if atol is not None:
        if actual.shape != expected.shape or not np.allclose(actual, expected, rtol=0, atol=atol):
            raise AssertionError(where)
        return
    check_close(what, actual, expected, label)


def _integral(a: np.ndarray) -> bool:
    return a.dtype.kind == "f" and bool(np.all(np.isfinite(a))) and bool(np.all(a == np.round(a)))
