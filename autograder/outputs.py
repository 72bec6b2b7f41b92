"""Output checks: the student's functions called on hidden per-student inputs inside the sandbox,
their results compared with `cnn_core` in the grader's own process.

Each check is the one definition of a hidden test. The source notebook's hidden block is a call
of `hidden_test`, which runs the check in the kernel and judges it there: that is how plain
`nbgrader autograde` grades. But in the kernel a patched numpy, checker or reference op could make
a wrong answer pass, so `cnnkit grade` does not trust the kernel with anything but producing
outputs:

- In the kernel, a cell the grader appends after the student's notebook calls `harvest`, which
  draws each check's cases, calls the student's functions under `grading.no_reference` and
  displays the results as one JSON document of `.npy` bytes (MIME type `MIME`). The calls are
  made in forks of the kernel (`run_isolated`), each case with a time limit of its own, so a
  case that hangs (a numba loop ignores interrupts) or ends its process costs only that case.
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
import contextlib
import functools
import hashlib
import importlib
import io
import json
import os
import select
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from cnn_core import _guard
from cnn_core.grading import case_key, check_close, no_reference, seeded_rng, student_id

if TYPE_CHECKING:  # grader side only: importing nbformat in the kernel costs about 1 s
    import nbformat

MIME = "application/vnd.cnnkit.outputs+json"
HARVEST_ID = "cnnkit_outputs"  # grade_id-like marker of the appended cell, in its metadata
MAX_MESSAGES = 3  # failing cases spelled out per check; the rest are counted
ERROR_CHARS = 300  # of an exception's message kept for the feedback
HINT = "likely cause:"  # marks a failure message that says what is most likely wrong
CASE_SECONDS = 10.0  # wall seconds one case may take in the sandbox before it is stopped


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
    `explain(case, outputs)`: in the grader, for a failed case, what is most likely wrong given
    the student's decoded outputs (a hint without hidden values), or "" when it cannot say;
    failures with a hint are reported first.
    """

    grade_id: str
    what: str
    cases: Callable[[np.random.Generator], list[Case]]
    run: Callable[[Mapping[str, Any], Case], dict[str, Any]]
    expected: Callable[[Case], dict[str, Any]]
    forbid: tuple[str, ...] = ()
    exact_dtype: bool = True
    explain: Callable[[Case, dict[str, Any]], str] | None = None


def case_rng(student: str, assignment: str, grade_id: str, key: str = "") -> np.random.Generator:
    """The generator of one student's cases of one check, the same in the kernel and the grader:
    seeded by the student's `key` (derived from the course's secret, autograder.secret) when
    there is one, else by the student's id."""
    return seeded_rng(key or student, assignment, "outputs", grade_id)


def checks(assignment: str) -> list[Check]:
    """The output checks of `assignment`: CHECKS of the module autograder.checks.<assignment>
    (empty when there is no such module)."""
    module = check_module(assignment)
    return [] if module is None else module.CHECKS


def curve_specs(assignment: str) -> tuple:
    """The CurveSpecs (autograder.curves) of an assignment graded on submitted training curves,
    one per submitted file; () for any other assignment."""
    return tuple(getattr(check_module(assignment), "CURVES", ()))


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


def harvest_cell(
    assignment: str,
    case_seconds: float = CASE_SECONDS,
    deadline: float | None = None,
    run_checks: bool = True,
) -> nbformat.NotebookNode:
    """The cell appended to the notebook the sandbox runs. It has no cell time limit of its own
    (`{"cnnkit": {"timeout": false}}`): each of its cases has `case_seconds`, and cases left
    at `deadline` (time.monotonic() seconds, a clock the sandbox shares) are not run.
    `run_checks`: False harvests the exports only (`cnnkit validate` runs no hidden checks)."""
    import nbformat

    cell = nbformat.v4.new_code_cell(
        f"from autograder.outputs import harvest as _cnnkit_harvest\n"
        f"_cnnkit_harvest(globals(), {assignment!r}, {float(case_seconds)!r}, {deadline!r}, "
        f"{run_checks!r})"
    )
    cell.metadata["cnnkit"] = {"role": HARVEST_ID, "timeout": False}
    return cell


def harvest(
    namespace: Mapping[str, Any],
    assignment: str,
    case_seconds: float = CASE_SECONDS,
    deadline: float | None = None,
    run_checks: bool = True,
) -> None:
    """Display the checks' `results` (unless not `run_checks`) and the module's `exports` as MIME
    data (kernel side)."""
    from IPython.display import display

    limit = Budget(case_seconds, deadline)
    payload = {
        "version": 1,
        "checks": results(namespace, assignment, student_id(), limit, case_key())
        if run_checks
        else {},
        "exports": exports(namespace, assignment, limit),
    }
    display({MIME: payload}, raw=True)


@dataclass(frozen=True)
class Budget:
    """The time the output checks have: `seconds` per case, and none past `deadline`
    (time.monotonic() seconds; None: no deadline)."""

    seconds: float = CASE_SECONDS
    deadline: float | None = None

    def left(self) -> float:
        """Seconds the next case may take (0 or less: none)."""
        if self.deadline is None:
            return self.seconds
        return min(self.seconds, self.deadline - time.monotonic())


def exports(
    namespace: Mapping[str, Any], assignment: str, budget: Budget = Budget()
) -> dict[str, dict]:
    """{name: {"outputs": ...} or {"error": ...}} for each function of the check module's
    EXPORTS ({name: f(namespace) -> {output name: array}}): data the grader inspects itself,
    such as the training history a4's curve is replayed into."""
    module = check_module(assignment)
    found = getattr(module, "EXPORTS", {})
    calls = [functools.partial(_run_export, export, _Names(namespace)) for export in found.values()]
    return dict(zip(found, run_isolated(calls, budget), strict=True))


def _run_export(export: Callable, names: Mapping[str, Any]) -> dict:
    try:
        return {"outputs": {k: _encode(v) for k, v in export(names).items()}}
    except BaseException as exc:  # the student's objects may raise anything
        return {"error": _describe(exc)}


def results(
    namespace: Mapping[str, Any],
    assignment: str,
    student: str,
    budget: Budget = Budget(),
    key: str = "",
) -> dict[str, list[dict]]:
    """{grade_id: one encoded result per case} of every check, calling the functions found in
    `namespace`, each case in a process of its own (`run_isolated`). Each case's exception is
    recorded, never raised, and a case that hangs or ends its process costs only itself."""
    names = _Names(namespace)
    plan = [
        (c.grade_id, functools.partial(_run_case, c, names, case))
        for c in checks(assignment)
        for case in c.cases(case_rng(student, assignment, c.grade_id, key))
    ]
    found: dict[str, list[dict]] = {c.grade_id: [] for c in checks(assignment)}
    for (grade_id, _), result in zip(plan, run_isolated([p[1] for p in plan], budget), strict=True):
        found[grade_id].append(result)
    return found


def _run_case(
    check: Check,
    namespace: Mapping[str, Any],
    case: Case,
    catch: type[BaseException] = BaseException,
) -> dict:
    """One case's encoded outputs or error, and the kit's forbidden ops it called, if any (the
    student's code may have caught the error and gone on). `catch`: the exceptions recorded as
    the case's error; in a fork every one is, SystemExit and KeyboardInterrupt included."""
    before = len(_guard.attempts())
    digest = case_digest(case)  # before the student's code, which may change its inputs in place
    try:
        with no_reference(*check.forbid):
            outputs = check.run(namespace, case)
        result = {"outputs": {name: _encode(value) for name, value in outputs.items()}}
    except catch as exc:
        result = {"error": _describe(exc)}
    tried = sorted(set(_guard.attempts()[before:]))
    return result | {"case": digest} | ({"reference_use": tried} if tried else {})


def case_digest(case: Case) -> str:
    """A short digest of a case's inputs, the same in the kernel and the grader: a result is
    judged only against the case it was computed on."""
    h = hashlib.sha256()
    for name in sorted(case.args):
        value = case.args[name]
        h.update(name.encode())
        if isinstance(value, np.ndarray):
            h.update(
                f"{value.dtype.str}{value.shape}".encode() + np.ascontiguousarray(value).tobytes()
            )
        else:
            h.update(repr(value).encode())
    return h.hexdigest()[:16]


def run_isolated(calls: Sequence[Callable[[], dict]], budget: Budget) -> list[dict]:
    """The JSON results of `calls`, each made in a fork of this process with `budget.left()`
    seconds to return: a call that runs past them (a loop in numba ignores interrupts) or ends
    its process instead gets {"stopped": why}, and the next call goes on in a new fork; calls
    left at the budget's deadline are not made. One fork serves every call that returns, in
    order; nothing a call prints reaches the notebook."""
    done: list[dict] = []
    while len(done) < len(calls):
        if budget.left() <= 0:
            late = {"stopped": "not run: the notebook's time limit was reached"}
            return done + [late] * (len(calls) - len(done))
        done += _run_in_fork(calls[len(done) :], budget)
    return done


def _run_in_fork(calls: Sequence[Callable[[], dict]], budget: Budget) -> list[dict]:
    """The results of the first calls of `calls` made in one fork, up to and including the
    first that did not return (at least one result)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the fork: make the calls, one JSON line each, then leave without clean-up
        try:
            os.close(read)
            _silence()
            with os.fdopen(write, "wb") as pipe:
                for call in calls:
                    pipe.write(json.dumps(call()).encode() + b"\n")
                    pipe.flush()
        finally:
            os._exit(0)  # whatever happened: a fork must never go on as its parent
    os.close(write)
    with os.fdopen(read, "rb", 0) as pipe:
        done, ending = _collect(pipe.fileno(), len(calls), budget)
    if ending == "timeout":
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    if ending == "timeout":
        done.append(
            {"stopped": f"ran past the {budget.seconds:g} s limit of one case and was stopped"}
        )
    elif ending == "ended":
        done.append({"stopped": f"ended its process ({_ending(status)})"})
    return done


def _collect(fd: int, count: int, budget: Budget) -> tuple[list[dict], str]:
    """Up to `count` results read from a fork's pipe `fd`, each within the budget's time left
    when the one before it came, and how the reading ended: "complete", "timeout" or "ended"
    (the fork exited early)."""
    done: list[dict] = []
    buffer = bytearray()
    deadline = time.monotonic() + budget.left()
    while len(done) < count:
        ready, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0))
        if not ready:
            return done, "timeout"
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return done, "ended"
        buffer += chunk
        while (end := buffer.find(b"\n")) >= 0 and len(done) < count:
            done.append(_result_line(bytes(buffer[:end])))
            del buffer[: end + 1]
            deadline = time.monotonic() + budget.left()
    return done, "complete"


def _result_line(line: bytes) -> dict:
    try:
        result = json.loads(line)
    except ValueError:
        result = None
    return result if isinstance(result, dict) else {"stopped": "returned an unreadable result"}


def _silence() -> None:
    """Send everything the fork prints to /dev/null: the kernel's output streams belong to its
    parent, whose threads the fork does not have."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - lives until os._exit


def _ending(status: int) -> str:
    """'killed by SIGSEGV' or 'exit status 3' for a wait status."""
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(number).name}"
        return f"killed by signal {number}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


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


def hidden_test(namespace: Mapping[str, Any], assignment: str, grade_id: str) -> None:
    """The hidden part of a notebook's test cell, where plain `nbgrader autograde` grades: the
    check `grade_id` of `assignment` run in this kernel on the graded student's cases (drawn as
    `cnnkit grade` draws them) and judged here as the grader judges them. Raises AssertionError
    with the grader's messages when a case fails or the code called a reference op the check
    forbids; prints nothing otherwise.

        from autograder.outputs import hidden_test
        hidden_test(globals(), "a1_convolution", "test_conv2d_backward")
    """
    check = find_check(assignment, grade_id)
    rng = functools.partial(case_rng, student_id(), assignment, grade_id, case_key())
    names = _Names(namespace)
    # the student's code may write into its inputs: judge each result on a fresh draw
    results = [_run_case(check, names, case, catch=Exception) for case in check.cases(rng())]
    problems = [_judge(check, case, r) for case, r in zip(check.cases(rng()), results, strict=True)]
    tried = sorted({op for r in results for op in r.get("reference_use", [])})
    messages = _messages(check, problems)
    if tried:
        messages.insert(
            0, f"{check.what}: called the kit's {', '.join(tried)}, which this test forbids"
        )
    if messages:
        raise AssertionError("\n".join(messages))


def find_check(assignment: str, grade_id: str) -> Check:
    """The check of `assignment` that scores the test cell `grade_id`; LookupError naming the
    ones there are when it has none."""
    found = {c.grade_id: c for c in checks(assignment)}
    if grade_id not in found:
        raise LookupError(
            f"{assignment} has no output check {grade_id!r}; its checks: "
            + (", ".join(found) or "none")
        )
    return found[grade_id]


# --------------------------------------------------------------------------- grader side


def displayed(nb: nbformat.NotebookNode | None) -> int:
    """How many payloads the harvest cell of the executed notebook `nb` displayed: `harvest`
    displays one; more means the notebook's code displayed results of its own there."""
    return len(_outputs(nb, _is_payload))


def harvest_failure(nb: nbformat.NotebookNode | None) -> str:
    """Why the executed notebook `nb` has no payload to score, from its harvest cell: the
    error it raised, or the results it showed besides its own; "" when neither."""
    errors = _outputs(nb, lambda o: o.get("output_type") == "error")
    if errors:
        error = f"{errors[0].get('ename', 'Error')}: {errors[0].get('evalue', '')}"[:ERROR_CHARS]
        return f"the output checks' cell raised {error}"
    if displayed(nb) > 1:
        return "the output checks' cell showed results besides its own"
    return ""


def _is_payload(output: dict) -> bool:
    return MIME in output.get("data", {})


def _outputs(nb: nbformat.NotebookNode | None, keep: Callable[[dict], bool]) -> list:
    """The outputs of the last harvest cell of `nb` that `keep` accepts ([] without one)."""
    cells = (
        [c for c in nb.cells if c.metadata.get("cnnkit", {}).get("role") == HARVEST_ID]
        if nb
        else []
    )
    return [o for o in cells[-1].get("outputs", []) if keep(o)] if cells else []


def harvested(nb: nbformat.NotebookNode | None) -> dict | None:
    """The payload `harvest` displayed in the executed notebook `nb`, or None when the cell did
    not run to the end or showed more than one (`displayed`). Read as JSON data only."""
    found = _outputs(nb, _is_payload)
    if len(found) != 1:
        return None
    payload = found[0]["data"][MIME]
    if isinstance(payload, str):
        payload = json.loads(payload)
    if not isinstance(payload, dict) or not isinstance(payload.get("checks"), dict):
        return None
    return payload


def reference_attempts(assignment: str, payload: dict | None) -> dict[str, list[str]]:
    """{grade_id: the kit's ops the student's code called during that check} from a harvested
    payload, for the checks where it tried any (caught or not)."""
    found = {}
    for grade_id, results in ((payload or {}).get("checks") or {}).items():
        if not isinstance(results, list):
            continue
        ops = {
            str(op)[:60]
            for r in results
            if isinstance(r, dict) and isinstance(r.get("reference_use"), list)
            for op in r["reference_use"]
        }
        if ops:
            found[str(grade_id)[:100]] = sorted(ops)
    known = {c.grade_id for c in checks(assignment)}
    return {gid: ops for gid, ops in found.items() if gid in known}


def exported(payload: dict | None, name: str) -> dict[str, np.ndarray] | str:
    """The arrays of export `name` in a harvested payload, or a string saying why there are none."""
    entry = ((payload or {}).get("exports") or {}).get(name)
    if not isinstance(entry, dict):
        return "the notebook did not run to its end"
    if "error" in entry:
        return f"raised {str(entry['error'])[:ERROR_CHARS]}"
    if "stopped" in entry:
        return str(entry["stopped"])[:ERROR_CHARS]
    values = {k: _decode(v) for k, v in (entry.get("outputs") or {}).items()}
    bad = [k for k, v in values.items() if isinstance(v, _Unreadable)]
    return f"{', '.join(bad)} could not be read" if bad else values


def score_outputs(
    assignment: str, student: str, payload: dict | None, failure: str, key: str = ""
) -> dict[str, tuple[float, list[str]]]:
    """{grade_id: (fraction of cases passed, messages)} for every check of `assignment`, on the
    cases of `student` (and of their `key`, as in the kernel). `payload` comes from
    `harvested` (None: the checks did not run, and `failure` says why)."""
    results = (payload or {}).get("checks")
    scores = {}
    for check in checks(assignment):
        cases = check.cases(case_rng(student, assignment, check.grade_id, key))
        got = (results or {}).get(check.grade_id)
        if not isinstance(got, list) or len(got) != len(cases):
            scores[check.grade_id] = (0.0, [f"{check.what}: not checked: {failure}"])
            continue
        problems = [_judge(check, case, result) for case, result in zip(cases, got, strict=True)]
        passed = sum(not p for p in problems) / len(cases)
        scores[check.grade_id] = (passed, _messages(check, problems))
    return scores


def _messages(check: Check, problems: list[str]) -> list[str]:
    """What the feedback says of a check whose cases gave `problems` ("" for a case that
    passed): the failures with a likely cause first, MAX_MESSAGES of them, and the count."""
    failed = sorted((p for p in problems if p), key=lambda p: HINT not in p)
    if not failed:
        return []
    messages = failed[:MAX_MESSAGES]
    if len(failed) > MAX_MESSAGES:
        messages.append(f"... and {len(failed) - MAX_MESSAGES} more failing cases")
    passed = len(problems) - len(failed)
    return messages + [f"{check.what}: {passed} of {len(problems)} cases passed"]


def _judge(check: Check, case: Case, result: Any) -> str:
    """Why the student's result for `case` is wrong ("" when right)."""
    if not isinstance(result, dict):
        return f"{check.what}: no result with {case.label}"
    if "case" in result and result["case"] != case_digest(case):
        return (
            f"{check.what}: not checked with {case.label}: the sandbox drew other cases than "
            "the grader (the kit or the course's secret changed while grading? grade again)"
        )
    if "error" in result:
        return f"{check.what} with {case.label}: raised {str(result['error'])[:ERROR_CHARS]}"
    if "stopped" in result:
        return f"{check.what} with {case.label}: {str(result['stopped'])[:ERROR_CHARS]}"
    outputs = result.get("outputs")
    if not isinstance(outputs, dict):
        return f"{check.what}: no result with {case.label}"
    for name, expected in check.expected(case).items():
        what = f"{check.what}: {name}"
        try:
            actual = _decode(outputs.get(name))
            _compare(what, actual, expected, case, check.exact_dtype)
        except AssertionError as exc:
            return str(exc) + _hint(check, case, outputs)
    return ""


def _hint(check: Check, case: Case, outputs: dict) -> str:
    """' (likely cause: ...)' from the check's `explain`, or '' when it has nothing to say."""
    if check.explain is None:
        return ""
    decoded = {name: _decode(value) for name, value in outputs.items()}
    arrays = {k: v for k, v in decoded.items() if isinstance(v, np.ndarray)}
    try:
        why = check.explain(case, arrays)
    except (ValueError, TypeError, KeyError, IndexError, ZeroDivisionError):
        return ""  # outputs of unexpected shapes: the failure message says enough
    return f" ({HINT} {why})" if why else ""


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
