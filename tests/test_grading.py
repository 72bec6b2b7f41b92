"""Grading helpers: per-student cases, tolerant comparisons, and the reference guard."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import cnn_core
from cnn_core import functional, grading, naive
from cnn_core.grading import ReferenceUseError, case_rng, check_close, no_reference


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
