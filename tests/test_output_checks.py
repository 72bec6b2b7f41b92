"""The output checks of every assignment (autograder.checks.*), run in this process on namespaces
built from the notebooks: the instructor's solutions score full marks on every check, the released
notebooks score nothing, wrong implementations lose exactly the right cases, and the messages name
cases without giving their values."""

from __future__ import annotations

import json
import math
import re
from functools import cache
from pathlib import Path

import nbformat
import numpy as np
import pytest

from autograder import outputs

ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENTS = ("a1_convolution", "a2_pooling_dropout", "a3_backprop", "a5_training_techniques")
A5 = "a5_training_techniques"
# Autograded test cells without an output check, and why: a5's experiments are graded on their
# submitted curve files (autograder.curves); every other test cell tests a function or answers.
NOT_COVERED: dict[str, dict[str, str]] = {a: {} for a in ASSIGNMENTS} | {
    A5: dict.fromkeys(
        (
            "test_overfit",
            "test_init_runs",
            "test_batchnorm_runs",
            "test_regularisation_runs",
            "test_schedule_runs",
        ),
        "a curve file",
    )
}


def _notebook(kind: str, assignment: str) -> nbformat.NotebookNode:
    return nbformat.read(ROOT / kind / assignment / f"{assignment}.ipynb", as_version=4)


def _meta(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


@cache
def _namespace(kind: str, assignment: str) -> dict:
    """The setup cell and every solution code cell of the notebook, executed in one dict (magic
    lines dropped). A released answer cell raises NotImplementedError: its names stay undefined,
    as in the kernel."""
    ns: dict = {"__name__": f"notebook_{assignment}"}
    for cell in _notebook(kind, assignment).cells:
        meta = _meta(cell)
        if cell.cell_type != "code" or not (
            meta.get("solution") or meta.get("grade_id") == "setup"
        ):
            continue
        lines = [line for line in cell.source.splitlines() if not line.lstrip().startswith("%")]
        try:
            exec(compile("\n".join(lines), meta["grade_id"], "exec"), ns)
        except NotImplementedError:
            assert kind == "assignments", f"{assignment}: solution cell {meta['grade_id']} raised"
    return ns


def _score(ns: dict, assignment: str, student: str = "alice") -> dict:
    """score_outputs of the results of `ns`, round-tripped through JSON as in the notebook."""
    payload = json.loads(json.dumps({"checks": outputs.results(ns, assignment, student)}))
    return outputs.score_outputs(assignment, student, payload, "")


def _test_cells(assignment: str) -> set[str]:
    """The grade_ids of the autograded test cells of the source notebook."""
    return {
        _meta(c)["grade_id"]
        for c in _notebook("solutions", assignment).cells
        if c.cell_type == "code" and _meta(c).get("grade") and not _meta(c).get("solution")
    }


def _checks(assignment: str) -> dict[str, outputs.Check]:
    return {c.grade_id: c for c in outputs.checks(assignment)}


def _cases(assignment: str, grade_id: str, student: str = "alice") -> list[outputs.Case]:
    check = _checks(assignment)[grade_id]
    return check.cases(outputs.case_rng(student, assignment, grade_id))


def _with(assignment: str, **replaced) -> dict:
    """The solution namespace with some names replaced (a student's wrong implementations)."""
    return {**_namespace("solutions", assignment), **replaced}


def _leaked_values(assignment: str, scores: dict) -> list[str]:
    """Array values of any case that appear in the messages (non-integral ones: an integer or 0
    could be part of a shape or a count)."""
    leaked = []
    for grade_id, (_, messages) in scores.items():
        text = "\n".join(messages)
        for case in _cases(assignment, grade_id):
            for value in case.args.values():
                if isinstance(value, np.ndarray) and value.dtype.kind == "f":
                    for v in value.flat[:20]:
                        if v != round(float(v)) and repr(float(v)) in text:
                            leaked.append(f"{grade_id}: {float(v)!r}")
    return leaked


# --------------------------------------------------------------------------- the solutions


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_solution_scores_full_marks_on_a_check_per_test_cell(assignment):
    scores = _score(_namespace("solutions", assignment), assignment)
    assert {gid: s for gid, s in scores.items() if s != (1.0, [])} == {}
    assert set(scores) == _test_cells(assignment) - set(NOT_COVERED[assignment])
    assert set(NOT_COVERED[assignment]) <= _test_cells(assignment)


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_results_stay_small(assignment):
    """The results are displayed in the executed notebook: a few hundred kB at most."""
    payload = json.dumps(outputs.results(_namespace("solutions", assignment), assignment, "alice"))
    assert len(payload) < 500_000


def _fingerprint(assignment: str, grade_id: str, student: str) -> list:
    """Every argument of every case of one check, comparable with ==."""
    return [
        (name, v.shape, v.dtype.str, v.tobytes()) if isinstance(v, np.ndarray) else (name, repr(v))
        for case in _cases(assignment, grade_id, student)
        for name, v in case.args.items()
    ]


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_cases_differ_between_students_and_repeat_for_one(assignment):
    for grade_id, check in _checks(assignment).items():
        alice = _fingerprint(assignment, grade_id, "alice")
        assert alice == _fingerprint(assignment, grade_id, "alice"), grade_id
        if check.what != "answers":  # the same questions for everyone
            assert alice != _fingerprint(assignment, grade_id, "bob"), grade_id


# --------------------------------------------------------------------------- the release


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_released_notebook_scores_zero_and_says_why(assignment):
    scores = _score(_namespace("assignments", assignment), assignment)
    released_tests = {
        _meta(c)["grade_id"]
        for c in _notebook("assignments", assignment).cells
        if c.cell_type == "code" and _meta(c).get("grade")
    }
    assert set(scores) == set(_checks(assignment)) and set(scores) <= released_tests
    for grade_id, (fraction, messages) in scores.items():
        assert fraction == 0.0, grade_id
        # a function raises NotImplementedError; an answer cell raised it before defining its
        # variables, so reading them is a NameError
        error = "NameError" if _checks(assignment)[grade_id].what == "answers" else "NotImplemented"
        assert any(f"raised {error}" in m for m in messages), (grade_id, messages)
        assert messages[-1].endswith(f"0 of {len(_cases(assignment, grade_id))} cases passed")
    assert _leaked_values(assignment, scores) == []


# --------------------------------------------------------------------------- wrong answers


def _losses(scores: dict) -> dict[str, float]:
    return {gid: fraction for gid, (fraction, _) in scores.items() if fraction < 1}


def _failing_labels(messages: list[str], cases: list[outputs.Case]) -> set[str]:
    """The labels of the cases the messages name (each message names one)."""
    named = set()
    for m in messages[:-1]:
        if m.startswith("... and"):
            continue
        labels = [c.label for c in cases if re.search(f"with {re.escape(c.label)}([;:]|$)", m)]
        assert labels, f"a message names no case: {m}"
        named.update(labels)
    return named


def test_maxpool_ignoring_the_stride_loses_the_strided_cases():
    a2 = "a2_pooling_dropout"
    solution = _namespace("solutions", a2)["maxpool_forward"]
    scores = _score(_with(a2, maxpool_forward=lambda x, k, stride=None: solution(x, k)), a2)
    losses = _losses(scores)
    assert set(losses) == {"test_maxpool_forward", "test_maxpool_backward"}
    for grade_id, fraction in losses.items():
        assert 0 < fraction < 1, grade_id  # the default-stride cases still pass
        named = _failing_labels(scores[grade_id][1], _cases(a2, grade_id))
        assert named and all("stride=" in label for label in named), named
    assert _leaked_values(a2, scores) == []


def test_dropout_backward_ignoring_the_mask_loses_the_training_cases():
    a2 = "a2_pooling_dropout"
    scores = _score(_with(a2, dropout_backward=lambda dout, cache: dout.copy()), a2)
    assert set(_losses(scores)) == {"test_dropout_backward"}
    cases = _cases(a2, "test_dropout_backward")
    fraction, messages = scores["test_dropout_backward"]
    assert fraction == pytest.approx(1 / len(cases))  # only the train=False case passes
    assert "train=False" not in "\n".join(messages)
    assert all("dropout_backward: dx wrong with" in m for m in messages[:3])


def test_dropout_without_rescaling_loses_every_case_that_drops():
    a2 = "a2_pooling_dropout"
    solution = _namespace("solutions", a2)["dropout_forward"]

    def unscaled(x, p, train=True, rng=None):
        out, cache = solution(x, p, train=train, rng=rng)
        return out * (1 - p), cache

    scores = _score(_with(a2, dropout_forward=unscaled), a2)
    fraction, _ = scores["test_dropout_forward"]
    cases = _cases(a2, "test_dropout_forward")
    assert fraction == pytest.approx(sum(c.args["p"] == 0 for c in cases) / len(cases))
    assert _leaked_values(a2, scores) == []


def other_mask(x, p, train=True, rng=None):
    """Inverted dropout that keeps a unit where rng.random() < 1 - p: as often as cnn_core's
    convention, but other units."""
    if not train:
        return x.copy(), None
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    mask = ((gen.random(x.shape) < 1 - p) / (1 - p)).astype(x.dtype)
    return x * mask, mask


def test_another_mask_convention_fails_the_seeded_cases_only():
    """keep = rng.random(shape) < 1 - p drops as often, but other units than cnn_core's: the
    statistics case and p = 0 pass, every seeded case with p > 0 fails."""
    a2 = "a2_pooling_dropout"
    scores = _score(_with(a2, dropout_forward=other_mask), a2)
    fraction, messages = scores["test_dropout_forward"]
    cases = _cases(a2, "test_dropout_forward")
    passing = [c for c in cases if c.args["p"] == 0 or "statistics" in c.label]
    assert len(passing) == 2 and fraction == pytest.approx(2 / len(cases))
    assert not _failing_labels(messages, cases) & {c.label for c in passing}


def test_block_backward_without_the_skip_gradient_loses_the_skip_cases():
    a3 = "a3_backprop"
    solution = _namespace("solutions", a3)["block_backward"]

    def no_skip(dout, cache):
        x, w, z, _ = cache
        return solution(dout, (x, w, z, False))

    scores = _score(_with(a3, block_backward=no_skip), a3)
    assert _losses(scores) == {"test_block_backward": 0.5}
    messages = scores["test_block_backward"][1]
    named = _failing_labels(messages, _cases(a3, "test_block_backward"))
    assert named and all("with skip" in label for label in named)
    assert all(m.startswith("block_backward: dx wrong with") for m in messages[:3])
    assert _leaked_values(a3, scores) == []


def test_a_backward_returning_too_few_gradients_says_what_it_should_return():
    a3 = "a3_backprop"
    solution = _namespace("solutions", a3)["two_layer_backward"]
    scores = _score(_with(a3, two_layer_backward=lambda d, c: solution(d, c)[:4]), a3)
    assert _losses(scores) == {"test_two_layer_backward": 0.0}
    messages = scores["test_two_layer_backward"][1]
    assert (
        "raised TypeError: two_layer_backward should return a tuple (dx, dw1, db1, dw2, db2)"
        in (messages[0])
    )
    assert "got a tuple of 4 items" in messages[0]


def test_wrong_hand_answers_lose_only_their_own_case():
    a3 = "a3_backprop"
    scores = _score(_with(a3, dL_dw_hand=0.6, L_hand=math.log(2) + 5e-4), a3)  # a sign error
    assert _losses(scores) == {"test_hand_answers": 0.8}
    assert scores["test_hand_answers"][1][0] == "answers: dL_dw_hand wrong with dL_dw_hand"


def test_a_reference_call_fails_the_check():
    from cnn_core import functional as ref

    a3 = "a3_backprop"
    scores = _score(_with(a3, softmax_cross_entropy=ref.softmax_cross_entropy), a3)
    fraction, messages = scores["test_softmax_cross_entropy"]
    assert fraction == 0.0 and "ReferenceUseError" in messages[0]


def _batchnorm_without_refusal(
    x, gamma, beta, running_mean, running_var, train=True, momentum=0.9, eps=1e-5
):
    """a3's batchnorm_forward that trains on a batch of one instead of raising ValueError."""
    if not train:
        mu, var = running_mean, running_var
    else:
        n = x.shape[0]
        mu, var = x.mean(axis=0), x.var(axis=0)
        running_mean[...] = momentum * running_mean + (1 - momentum) * mu
        running_var[...] = momentum * running_var + (1 - momentum) * var * (n / max(n - 1, 1))
    xhat = (x - mu) / np.sqrt(var + eps)
    return gamma * xhat + beta, (xhat, gamma, np.sqrt(var + eps), train)


def _batchnorm_dividing_by_zero(
    x, gamma, beta, running_mean, running_var, train=True, momentum=0.9, eps=1e-5
):
    """Another that does not refuse: its unbiased variance divides by N - 1 = 0."""
    if train:
        n = x.shape[0]
        _ = x.var(axis=0) * (n / (n - 1))
    return _batchnorm_without_refusal(
        x, gamma, beta, running_mean, running_var, train, momentum, eps
    )


@pytest.mark.parametrize("student", ["alice", "bob", "carol"])
def test_a3_batchnorm_that_trains_on_a_batch_of_one_loses_that_case_only(student, monkeypatch):
    """Part 5: training mode with N < 2 raises ValueError. The hidden check's one refusal case,
    in the grader and in the kernel, and the visible test all say so."""
    a3 = "a3_backprop"
    cases = _cases(a3, "test_batchnorm_forward", student)
    refusal = [c for c in cases if c.args.get("refuse")]
    assert len(refusal) == 1 and refusal[0].args["x"].shape[0] == 1
    assert "training mode, N=1" in refusal[0].label

    ns = _with(a3, batchnorm_forward=_batchnorm_without_refusal)
    scores = _score(ns, a3, student)
    assert _losses(scores) == {"test_batchnorm_forward": pytest.approx(1 - 1 / len(cases))}
    messages = scores["test_batchnorm_forward"][1]
    assert len(messages) == 2 and messages[0].startswith(
        f"batchnorm_forward: ValueError for a training batch of one wrong with {refusal[0].label} ("
    )
    assert "likely cause: it returned a result" in messages[0] and "(Part 5)" in messages[0]
    assert _leaked_values(a3, scores) == []
    monkeypatch.setenv("CNNKIT_STUDENT_ID", student)
    with pytest.raises(AssertionError) as raised:
        outputs.hidden_test(ns, a3, "test_batchnorm_forward")
    assert str(raised.value) == "\n".join(messages)

    # the visible test of the cell fails too, saying what the function did
    cell = next(
        c
        for c in _notebook("assignments", a3).cells
        if _meta(c).get("grade_id") == "test_batchnorm_forward"
    )
    with pytest.raises(AssertionError, match=r"N=1\) must raise a ValueError.*it returned instead"):
        exec(compile(cell.source, "test_batchnorm_forward", "exec"), dict(ns))

    ns = _with(a3, batchnorm_forward=_batchnorm_dividing_by_zero)
    fraction, messages = _score(ns, a3, student)["test_batchnorm_forward"]
    assert fraction == pytest.approx(1 - 1 / len(cases))
    assert f"with {refusal[0].label}: raised ZeroDivisionError" in messages[0]
    with pytest.raises(AssertionError, match="it raised ZeroDivisionError"):
        exec(compile(cell.source, "test_batchnorm_forward", "exec"), dict(ns))


def test_masks_and_scaling_both_wrong_lead_with_the_scaling():
    """A dropout that draws its own mask and forgets to rescale hears first about the scale,
    which decides every expected value; the hint gives no hidden value."""
    a2 = "a2_pooling_dropout"

    def both_wrong(x, p, train=True, rng=None):
        if not train:
            return x.copy(), None
        gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        mask = (gen.random(x.shape) < 1 - p).astype(x.dtype)
        return x * mask, mask

    scores = _score(_with(a2, dropout_forward=both_wrong), a2)
    _, messages = scores["test_dropout_forward"]
    assert "likely cause: kept units are multiplied by 1;" in messages[0]
    assert "inverted dropout multiplies them by 1 / (1 - p)" in messages[0]
    assert _leaked_values(a2, scores) == []


def test_another_mask_convention_hears_about_the_mask():
    a2 = "a2_pooling_dropout"
    _, messages = _score(_with(a2, dropout_forward=other_mask), a2)["test_dropout_forward"]
    assert "keep = rng.random(x.shape) >= p" in messages[0]


def test_a_numba_loop_on_one_kind_of_case_loses_only_those_cases():
    """A backward pass whose numba-compiled helper never returns for stride 3: each such case
    is stopped at its time limit in a fork of its own, and every other case still scores."""
    import numba

    a1 = "a1_convolution"
    solution = _namespace("solutions", a1)["conv2d_backward"]

    @numba.njit
    def spin(s):
        n = s
        while n > 2:
            n = (n * 3 + 1) % 1000003 + 3
        return n

    spin(1)  # compiled here, so that each fork has it at once

    def backward(dout, cache):
        spin(cache[3] if isinstance(cache, tuple) and len(cache) > 3 else 1)
        return solution(dout, cache)

    ns = _with(a1, conv2d_backward=backward)
    payload = json.loads(
        json.dumps({"checks": outputs.results(ns, a1, "alice", outputs.Budget(seconds=1.0))})
    )
    fraction, messages = outputs.score_outputs(a1, "alice", payload, "")["test_conv2d_backward"]
    cases = _cases(a1, "test_conv2d_backward")
    stride3 = [c for c in cases if c.args["S"] == 3]
    assert stride3 and fraction == pytest.approx(1 - len(stride3) / len(cases))
    assert all("ran past the 1 s limit of one case and was stopped" in m for m in messages[:1])
    assert "stride 3" in messages[0]


def test_run_isolated_records_what_stopped_each_call_and_goes_on():
    import os
    import time

    def hang():
        while True:
            pass

    calls = [
        lambda: {"n": 1},
        hang,
        lambda: os._exit(3),
        lambda: print("noise") or {"n": 2},
        lambda: {"n": 3},
    ]
    started = time.monotonic()
    got = outputs.run_isolated(calls, outputs.Budget(seconds=0.5))
    assert got == [
        {"n": 1},
        {"stopped": "ran past the 0.5 s limit of one case and was stopped"},
        {"stopped": "ended its process (exit status 3)"},
        {"n": 2},
        {"n": 3},
    ]
    assert time.monotonic() - started < 5
    late = outputs.Budget(seconds=5, deadline=time.monotonic() - 1)
    assert (
        outputs.run_isolated(calls[:2], late)
        == [{"stopped": "not run: the notebook's time limit was reached"}] * 2
    )


def test_a_reference_call_caught_by_the_student_is_still_recorded():
    import importlib

    a1 = "a1_convolution"
    own = _namespace("solutions", a1)["conv2d_forward"]

    def sneaky(x, w, b, stride=1, padding=0):
        try:
            kit = importlib.import_module("cnn_core")
            return kit.conv2d_forward(x, w, b, stride=stride, padding=padding)
        except Exception:
            return own(x, w, b, stride=stride, padding=padding)

    payload = json.loads(
        json.dumps({"checks": outputs.results(_with(a1, conv2d_forward=sneaky), a1, "alice")})
    )
    assert outputs.score_outputs(a1, "alice", payload, "")["test_conv2d_forward"] == (1.0, [])
    # conv2d_backward's check builds its cache with the student's forward pass: tried there too
    assert outputs.reference_attempts(a1, payload) == {
        "test_conv2d_forward": ["conv2d_forward"],
        "test_conv2d_backward": ["conv2d_forward"],
    }


CONV_CHECKS = [
    "test_conv2d_forward_naive",
    "test_im2col",
    "test_conv2d_forward",
    "test_col2im",
    "test_conv2d_backward",
]


def _conv_kinds(case: outputs.Case) -> set[str]:
    a = case.args
    N, _, H, W = a["x"].shape
    return {
        f"batch {'1' if N == 1 else '>1'}",
        f"stride {'1' if a['S'] == 1 else '>1'}",
        f"padding {'0' if a['P'] == 0 else '>0'}",
        *(["non-square input"] if H != W else []),
        *(["non-square filter"] if a["KH"] != a["KW"] else []),
        a["x"].dtype.name,
    }


@pytest.mark.parametrize("grade_id", CONV_CHECKS)
def test_every_student_draws_every_kind_of_convolution_case(grade_id):
    """No student can miss the padding-0 case where cropping with [pad:-pad] goes wrong, nor any
    other kind a correct convolution must handle."""
    every = {"batch 1", "batch >1", "stride 1", "stride >1", "padding 0", "padding >0"}
    every |= {"non-square input", "non-square filter", "float32", "float64"}
    for i in range(300):
        cases = _cases("a1_convolution", grade_id, f"student-{i}")
        kinds = set().union(*map(_conv_kinds, cases))
        assert every <= kinds, (f"student-{i}", every - kinds)


def test_every_student_draws_every_kind_of_1d_case():
    for i in range(300):
        cases = _cases("a1_convolution", "test_conv1d", f"student-{i}")
        pairs = {(c.args["S"] > 1, c.args["P"] > 0) for c in cases}
        assert {(False, False), (True, False), (True, True)} <= pairs
        assert {c.args["x"].dtype.name for c in cases} == {"float32", "float64"}


def test_a_gradient_cropped_with_pad_minus_pad_loses_points_for_every_student():
    """The most common real bug: dx = dx_padded[:, :, pad:-pad, pad:-pad], empty when pad = 0."""
    a1 = "a1_convolution"
    solution = _namespace("solutions", a1)["conv2d_backward"]

    def cropped(dout, cache):
        dx, dw, db = solution(dout, cache)
        pad = cache[4] if isinstance(cache, tuple) and len(cache) > 4 else 0
        if pad == 0:  # what [pad:-pad] of the padded gradient gives: nothing
            dx = dx[:, :, 0:0, 0:0]
        return dx, dw, db

    for student in ("alice", "bob", "carol", "dave", "erin"):
        fraction, _ = _score(_with(a1, conv2d_backward=cropped), a1, student)[
            "test_conv2d_backward"
        ]
        assert fraction < 1, student


def _pairs(v, default):
    v = default if v is None else v
    return (v, v) if isinstance(v, int) else tuple(v)


def test_every_student_draws_overlapping_windows_and_tied_maxima_for_max_pooling():
    """Where real max-pool backward passes go wrong: `=` instead of `+=` where windows overlap,
    and a gradient sent to every tied maximum."""
    for i in range(100):
        overlapping = tied = False
        for case in _cases("a2_pooling_dropout", "test_maxpool_backward", f"student-{i}"):
            (kh, kw), (sh, sw) = (
                _pairs(case.args["k"], None),
                _pairs(case.args["s"], case.args["k"]),
            )
            overlapping |= sh < kh or sw < kw
            x = case.args["x"]
            windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))
            windows = windows[:, :, ::sh, ::sw].reshape(*windows.shape[:2], -1, kh * kw)
            tied |= bool(np.any((windows == windows.max(axis=-1, keepdims=True)).sum(-1) > 1))
        assert overlapping and tied, f"student-{i}"


def test_a_lookup_table_precomputed_from_the_public_generators_earns_nothing():
    """A student computes their own cases with the public generators and the reference's
    answers at home, and hands in a table of them: with the course's secret, the graded cases
    are others, so the table scores what the function without it scores."""
    from cnn_core import functional as ref

    a1, student = "a1_convolution", "mallory"
    table = {}
    for case in _cases(a1, "test_conv2d_forward", student):  # no key: what anyone can draw
        a = case.args
        table[a["x"].tobytes()] = ref.conv2d_forward(a["x"], a["w"], a["b"], a["S"], a["P"])[0]

    def looked_up(x, w, b, stride=1, padding=0):
        if x.tobytes() in table:
            return table[x.tobytes()], None
        N, _, H, W = x.shape
        OH, OW = (
            (H + 2 * padding - w.shape[2]) // stride + 1,
            (W + 2 * padding - w.shape[3]) // stride + 1,
        )
        return np.zeros((N, w.shape[0], OH, OW), x.dtype), None

    def graded(key: str) -> float:
        ns = _with(a1, conv2d_forward=looked_up)
        payload = json.loads(json.dumps({"checks": outputs.results(ns, a1, student, key=key)}))
        return outputs.score_outputs(a1, student, payload, "", key)["test_conv2d_forward"][0]

    assert graded("") == 1.0  # without a secret the table would pass
    assert graded("a key derived from the course's secret") == 0.0


def test_a5_functions_with_classic_mistakes_lose_their_cases():
    """He with fan_out, batch norm per position, a loss taken in training mode, feature maps in
    training mode: each loses the cases it gets wrong, and only those."""
    sol = _namespace("solutions", A5)

    def he_fan_out(shape, rng, dtype=np.float32):
        return (rng.standard_normal(shape) * math.sqrt(2.0 / sol["fans"](shape)[1])).astype(dtype)

    def bn_per_position(x, gamma, beta, rm, rv, train=True, momentum=0.9, eps=1e-5):
        if not train:
            return sol["spatial_batchnorm_forward"](x, gamma, beta, rm, rv, False, momentum, eps)
        mean, var = x.mean(axis=0, keepdims=True), x.var(axis=0, keepdims=True)
        out = gamma.reshape(1, -1, 1, 1) * (x - mean) / np.sqrt(var + eps) + beta.reshape(
            1, -1, 1, 1
        )
        return out.astype(x.dtype), None

    def loss_in_train_mode(model, x, y):
        model.train()
        scores = np.asarray(model(x), dtype=np.float64)
        shifted = scores - scores.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        return float(-log_probs[np.arange(len(y)), y].mean())

    def maps_in_train_mode(model, x, n_layers):
        out = x
        for layer in list(model)[:n_layers]:
            out = layer(out)
        return out

    scores = _score(
        _with(
            A5,
            he_init=he_fan_out,
            spatial_batchnorm_forward=bn_per_position,
            initial_loss=loss_in_train_mode,
            feature_maps=maps_in_train_mode,
        ),
        A5,
    )
    losses = _losses(scores)
    assert set(losses) == {
        "test_initialisers",
        "test_spatial_batchnorm_forward",
        "test_spatial_batchnorm_backward",  # it calls the forward pass for its cache
        "test_initial_loss",
        "test_looking_inside",
    }
    _, messages = scores["test_initialisers"]
    assert all("he_init wrong" in m or m.startswith("... and") for m in messages[:-1]), messages
    loss_cases = _cases(A5, "test_initial_loss")
    named = _failing_labels(scores["test_initial_loss"][1], loss_cases)
    assert named and all("dropout" in label for label in named), named
    _, bn_messages = scores["test_spatial_batchnorm_forward"]
    assert "test mode" not in "\n".join(bn_messages[:-1])
    assert _leaked_values(A5, scores) == []


def test_a5_kit_initialisers_and_batch_norm_earn_nothing():
    """Wrapping cnn_core's initialisers or batch norm fails the checks."""
    from cnn_core import functional, init

    scores = _score(
        _with(
            A5,
            fans=init.fan_in_out,
            he_init=lambda shape, rng, dtype=np.float32: init.he_normal(shape, rng, dtype=dtype),
            spatial_batchnorm_forward=functional.batchnorm2d_forward,
        ),
        A5,
    )
    for grade_id in ("test_initialisers", "test_spatial_batchnorm_forward"):
        fraction, messages = scores[grade_id]
        assert fraction == 0 and "ReferenceUseError" in "\n".join(messages), (grade_id, messages)


def test_a_call_that_raises_in_its_fork_ends_that_fork_only():
    def broken():
        raise RuntimeError("not a dict")  # a grader bug, not the student's: it must not escape

    got = outputs.run_isolated([broken, lambda: {"n": 1}], outputs.Budget(seconds=5))
    assert got == [{"stopped": "ended its process (exit status 0)"}, {"n": 1}]


def test_a_function_that_changes_its_input_in_place_is_still_checked_on_its_case():
    a1 = "a1_convolution"
    own = _namespace("solutions", a1)["conv2d_forward"]

    def in_place(x, w, b, stride=1, padding=0):
        out = own(x, w, b, stride=stride, padding=padding)
        x[...] = 0  # careless, but not wrong: the output was computed first
        return out

    fraction, messages = _score(_with(a1, conv2d_forward=in_place), a1)["test_conv2d_forward"]
    assert (fraction, messages) == (1.0, [])


# --------------------------------------------------------------------------- one definition


HIDDEN_BLOCK = re.compile(r"### BEGIN HIDDEN TESTS\n(.*?)### END HIDDEN TESTS", re.DOTALL)


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_every_hidden_block_is_one_call_of_its_check(assignment):
    """A hidden test is written once, as a check: the notebook's hidden block only calls it, so
    the two cannot drift and nbgrader's feedback could reveal nothing but the call."""
    blocks = {
        _meta(c)["grade_id"]: HIDDEN_BLOCK.findall(c.source)
        for c in _notebook("solutions", assignment).cells
        if _meta(c).get("grade")
        and not _meta(c).get("solution")
        and _meta(c)["grade_id"] not in NOT_COVERED[assignment]
    }
    assert set(blocks) == set(_checks(assignment))
    for grade_id, found in blocks.items():
        call = f'hidden_test(globals(), "{assignment}", "{grade_id}")'
        assert found == [f"from autograder.outputs import hidden_test\n\n{call}\n"], grade_id


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_hidden_tests_pass_the_solution_in_the_kernel(assignment, monkeypatch):
    monkeypatch.setenv("CNNKIT_STUDENT_ID", "alice")
    ns = _namespace("solutions", assignment)
    for grade_id in _checks(assignment):
        outputs.hidden_test(ns, assignment, grade_id)


def test_a_hidden_test_in_the_kernel_fails_as_the_grader_scores(monkeypatch):
    """Plain nbgrader and cnnkit grade judge one student's cases alike, with the same messages."""
    a1 = "a1_convolution"
    solution = _namespace("solutions", a1)["conv2d_backward"]

    def cropped(dout, cache):
        dx, dw, db = solution(dout, cache)
        return (dx[:, :, 0:0, 0:0] if cache[4] == 0 else dx), dw, db

    monkeypatch.setenv("CNNKIT_STUDENT_ID", "bob")
    ns = _with(a1, conv2d_backward=cropped)
    _, messages = _score(ns, a1, "bob")["test_conv2d_backward"]
    with pytest.raises(AssertionError) as raised:
        outputs.hidden_test(ns, a1, "test_conv2d_backward")
    assert str(raised.value) == "\n".join(messages)
    assert "padding 0" in str(raised.value) and "cases passed" in messages[-1]


def test_a_hidden_test_in_the_kernel_fails_a_caught_reference_call():
    import importlib

    a1 = "a1_convolution"
    own = _namespace("solutions", a1)["conv2d_forward"]

    def sneaky(x, w, b, stride=1, padding=0):
        try:
            return importlib.import_module("cnn_core").conv2d_forward(x, w, b, stride, padding)
        except Exception:
            return own(x, w, b, stride=stride, padding=padding)

    with pytest.raises(AssertionError, match="called the kit's conv2d_forward"):
        outputs.hidden_test(_with(a1, conv2d_forward=sneaky), a1, "test_conv2d_forward")


def test_a_hidden_test_judges_each_result_on_the_case_as_drawn():
    a1 = "a1_convolution"
    own = _namespace("solutions", a1)["conv2d_forward"]

    def in_place(x, w, b, stride=1, padding=0):
        out = own(x, w, b, stride=stride, padding=padding)
        x[...] = 0
        return out

    outputs.hidden_test(_with(a1, conv2d_forward=in_place), a1, "test_conv2d_forward")


def test_a_hidden_test_of_an_unknown_check_names_the_known_ones():
    with pytest.raises(LookupError, match="no output check 'test_nope'.*test_conv2d_backward"):
        outputs.hidden_test({}, "a1_convolution", "test_nope")


def _ran_harvest(*cell_outputs: dict) -> nbformat.NotebookNode:
    """An executed notebook whose harvest cell has `cell_outputs`."""
    cell = outputs.harvest_cell("a1_convolution")
    cell.outputs = [nbformat.from_dict(o) for o in cell_outputs]
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"), cell])


def _shown(payload: dict) -> dict:
    return {"output_type": "display_data", "data": {outputs.MIME: payload}, "metadata": {}}


def test_only_one_set_of_results_in_the_harvest_cell_is_scored_and_failures_say_why():
    payload = {"version": 1, "checks": {}, "exports": {}}
    one = _ran_harvest(_shown(payload))
    assert (outputs.displayed(one), outputs.harvested(one), outputs.harvest_failure(one)) == (
        1,
        payload,
        "",
    )
    forged = _ran_harvest(_shown(payload), _shown({**payload, "checks": {"x": []}}))
    assert (outputs.displayed(forged), outputs.harvested(forged)) == (2, None)
    assert outputs.harvest_failure(forged) == (
        "the output checks' cell showed results besides its own"
    )
    raised = _ran_harvest(
        {"output_type": "error", "ename": "ImportError", "evalue": "no Case", "traceback": []}
    )
    assert outputs.harvested(raised) is None
    assert outputs.harvest_failure(raised) == "the output checks' cell raised ImportError: no Case"
    assert (outputs.displayed(None), outputs.harvested(None), outputs.harvest_failure(None)) == (
        0,
        None,
        "",
    )
