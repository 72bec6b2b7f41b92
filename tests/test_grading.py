"""Grading helpers: per-student cases, tolerant comparisons, and the reference guard."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest

import cnn_core
from cnn_core import functional, grading, naive
from cnn_core.grading import (
    ReferenceUseError,
    answer_digest,
    case_rng,
    check_answer,
    check_answers,
    check_close,
    no_reference,
    normal_answer,
)


def test_cases_differ_between_students_and_repeat_for_one(monkeypatch):
    monkeypatch.setenv(grading.STUDENT_ENV, "alice")
    a1 = case_rng("a1", "conv").integers(0, 2**32, 4)
    a2 = case_rng("a1", "conv").integers(0, 2**32, 4)
    other_test = case_rng("a1", "pool").integers(0, 2**32, 4)
    monkeypatch.setenv(grading.STUDENT_ENV, "bob")
    b = case_rng("a1", "conv").integers(0, 2**32, 4)
    monkeypatch.delenv(grading.STUDENT_ENV)
    assert grading.student_id() == "local"
    assert np.array_equal(a1, a2)
    assert not np.array_equal(a1, b) and not np.array_equal(a1, other_test)


def test_check_close_accepts_rounding_and_names_the_failure():
    expected = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
    check_close("op: out", expected * (1 + 1e-6), expected)
    wrong = expected.copy()
    wrong[1, 2] += 0.5
    with pytest.raises(AssertionError) as err:
        check_close("conv2d_backward: dw", wrong, expected, "stride 2, padding 1")
    msg = str(err.value)
    assert msg.startswith("conv2d_backward: dw wrong with stride 2, padding 1; max relative error")
    assert "0.5" not in msg.split("error")[0] and "[" not in msg  # no values leak


@pytest.mark.parametrize(
    "actual,match",
    [
        (np.zeros((3, 5), np.float32), r"shape \(3, 5\), expected \(3, 4\)"),
        (np.zeros((3, 4), np.float64), "dtype float64, expected float32"),
        (np.full((3, 4), np.nan, np.float32), "nan or inf"),
        ([[0.0] * 4] * 3, "expected a numpy array, got list"),
    ],
)
def test_check_close_reports_type_shape_dtype_and_nan(actual, match):
    with pytest.raises(AssertionError, match=match):
        check_close("f: out", actual, np.zeros((3, 4), np.float32))


def test_no_reference_blocks_every_path_to_the_reference():
    x, w, b = np.ones((1, 1, 4, 4)), np.ones((1, 1, 2, 2)), np.zeros(1)
    captured = cnn_core.conv2d_forward  # imported before grading started
    with no_reference("conv2d_forward", "conv2d_backward"):
        for fn in (captured, functional.conv2d_forward, naive.conv2d_forward):
            with pytest.raises(ReferenceUseError, match="conv2d_forward: this calls"):
                fn(x, w, b)
        out, _ = functional.maxpool2d_forward(x, 2)  # other ops stay usable
        assert out.shape == (1, 1, 2, 2)
    assert captured(x, w, b)[0].shape == (1, 1, 3, 3)  # restored afterwards


def test_no_reference_restores_after_an_error_and_nests():
    x = np.ones((2, 3))
    with pytest.raises(KeyError):
        with no_reference("relu_forward"):
            raise KeyError("student code failed")
    functional.relu_forward(x)
    with no_reference("relu_forward"):
        with no_reference("relu_forward", "tanh_forward"):
            pass
        with pytest.raises(ReferenceUseError):
            functional.relu_forward(x)  # the outer block still forbids it
    functional.tanh_forward(x)


def test_no_reference_silences_warnings():
    with no_reference():
        warnings.warn("a library warning", stacklevel=1)  # would zero an nbgrader test cell
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with no_reference():
            warnings.warn("hidden", stacklevel=1)
    assert caught == []


def test_guarded_ops_keep_their_names_and_docs_and_hide_the_original():
    op = functional.conv2d_forward
    assert op.__name__ == "conv2d_forward" and "cross-correlation" in op.__doc__
    assert not hasattr(op, "__wrapped__")


def test_check_close_takes_a_loss_as_a_plain_float():
    check_close("loss", 2.0404, np.float64(2.0404))
    with pytest.raises(AssertionError, match="loss wrong; max relative error"):
        check_close("loss", 2.5, np.float64(2.0404))
    with pytest.raises(AssertionError, match="expected a numpy array, got bool"):
        check_close("loss", True, np.float64(1.0))


# --------------------------------------------------------------------------- hand-computed answers


@pytest.mark.parametrize(
    "value,normal",
    [
        (2, "2"),
        (2.0, "2"),
        (np.int64(2), "2"),
        (np.float32(2.0), "2"),
        (np.array(2), "2"),
        (-0.0, "0"),
        (0.961706, "0.961706"),
        ((6, 28, 28), "[6,28,28]"),
        ([6, 28, 28.0], "[6,28,28]"),
        (np.array([6, 28, 28]), "[6,28,28]"),
        ((np.int32(6), np.float64(28.0), 28), "[6,28,28]"),
        ([[1, 2], (3, 4.5)], "[[1,2],[3,4.500000]]"),
        ([], "[]"),
    ],
)
def test_normal_answer(value, normal):
    assert normal_answer(value) == normal


def test_normal_answer_rounds_non_integral_floats_to_the_decimals():
    assert normal_answer(0.961706, decimals=3) == normal_answer(0.9617, 3) == "0.962"
    assert normal_answer(0.96149, 3) == "0.961"
    assert normal_answer(2.0000001) == "2.000000"  # not a whole number: not written as one
    assert normal_answer(2.0000001) != normal_answer(2)


@pytest.mark.parametrize("value", ["156", None, True, np.bool_(False), 1 + 2j, {"a": 1}])
def test_normal_answer_refuses_what_is_not_a_number(value):
    with pytest.raises(TypeError, match="a number, or a tuple or list of numbers"):
        normal_answer(value)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), [1.0, -np.inf]])
def test_normal_answer_refuses_nan_and_infinity(value):
    with pytest.raises(ValueError, match="finite"):
        normal_answer(value)


def test_equal_answers_pass_the_same_digest():
    digest = answer_digest("lenet_c1_shape", (6, 28, 28))
    for same in ((6, 28, 28), [6, 28, 28], (6.0, 28.0, 28.0), np.array([6, 28, 28])):
        check_answer("lenet_c1_shape", same, digest)
    count = answer_digest("lenet_c1_params", 156)
    for same in (156, 156.0, np.int64(156), np.float32(156)):
        check_answer("lenet_c1_params", same, count)


def test_digests_are_salted_by_the_answers_name():
    assert answer_digest("conv_params", 456) != answer_digest("dense_params", 456)
    assert answer_digest("a", 1) == answer_digest("a", 1)
    assert len(answer_digest("a", 1)) == 32 and int(answer_digest("a", 1), 16) >= 0


def test_a_wrong_answer_fails_naming_it_never_its_value():
    digest = answer_digest("lenet_c1_params", 156)
    with pytest.raises(AssertionError) as err:
        check_answer("lenet_c1_params", 150, digest, "recount: 6 filters of 1x5x5, plus biases")
    message = str(err.value)
    assert message == "lenet_c1_params is not right: recount: 6 filters of 1x5x5, plus biases"
    assert "156" not in message and "150" not in message and digest not in message
    with pytest.raises(AssertionError, match=r"^lenet_c1_params is not right: recount it"):
        check_answer("lenet_c1_params", 150, digest)
    with pytest.raises(AssertionError, match="got str"):
        check_answer("lenet_c1_params", "156", digest)
    with pytest.raises(AssertionError, match="is not right"):
        check_answer("lenet_c1_shape", (6, 28), answer_digest("lenet_c1_shape", (6, 28, 28)))


def test_a_float_answer_is_compared_rounded_and_says_so():
    digest = answer_digest("fraction", 0.961706, decimals=3)
    for right in (0.961706, 0.9617, 0.962, np.float64(0.96151)):
        check_answer("fraction", right, digest, decimals=3)
    with pytest.raises(AssertionError, match="rounded to 3 decimals") as err:
        check_answer("fraction", 0.961, digest, decimals=3)
    assert "0.962" not in str(err.value) and "0.9617" not in str(err.value)


def test_check_answers_names_every_wrong_answer_at_once():
    digests = {name: answer_digest(name, value) for name, value in (("a", 1), ("b", 2), ("c", 3))}
    check_answers(("a", 1, digests["a"]), ("b", 2.0, digests["b"], "hint"))
    with pytest.raises(AssertionError) as err:
        check_answers(
            ("a", 0, digests["a"], "count again"),
            ("b", 2, digests["b"]),
            ("c", None, digests["c"]),
        )
    lines = str(err.value).splitlines()
    assert lines[0] == "a is not right: count again"
    assert lines[1].startswith("c is not right: ") and len(lines) == 2


def test_a_digest_check_costs_milliseconds_not_seconds():
    start = time.perf_counter()
    for i in range(5):
        answer_digest("x", i)
    per_check = (time.perf_counter() - start) / 5
    assert per_check < 0.1  # about 10 ms here; a notebook checks some thirty answers
    assert grading.ANSWER_ITERATIONS >= 10_000  # trying a million counts costs hours
