"""Tests for cnn_core.gradcheck: the gradient checkers students run in every notebook."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cnn_core.gradcheck import (
    DEFAULT_TOL,
    GradientReport,
    GradientRow,
    assert_gradients,
    check_gradients,
    numerical_gradient,
    rel_error,
)


# Local ops, so these tests do not depend on cnn_core.functional.
def linear_forward(x, w, b):
    """x: (N, D), w: (D, M), b: (M,) -> out (N, M)."""
    return x @ w + b, (x, w)


def linear_backward(dout, cache):
    x, w = cache
    return dout @ w.T, x.T @ dout, dout.sum(axis=0)


def linear_backward_bad_db(dout, cache):
    """A classic slip: the bias gradient averaged over the batch instead of summed."""
    dx, dw, db = linear_backward(dout, cache)
    return dx, dw, db / len(dx)


def relu_forward(x):
    return np.maximum(x, 0), x


def relu_backward(dout, cache):
    return dout * (cache > 0)


def square_loss_forward(x):
    """A scalar output: 0.5 * sum(x**2)."""
    return float(0.5 * np.sum(x**2)), x


def square_loss_backward(dout, cache):
    return dout * cache


@pytest.fixture
def linear_inputs():
    rng = np.random.default_rng(1)
    return {
        "x": rng.standard_normal((4, 5)),
        "w": rng.standard_normal((5, 3)),
        "b": rng.standard_normal(3),
    }


# --- rel_error -------------------------------------------------------------------------------


def test_rel_error_hand_computed_values():
    assert rel_error(1.0, 1.0) == 0.0
    assert rel_error(1.0, 3.0) == pytest.approx(2 / 4)
    assert rel_error(-1.0, 1.0) == pytest.approx(1.0)
    assert rel_error(np.array([1.0, 2.0]), np.array([1.0, 2.2])) == pytest.approx(0.2 / 4.2)
    # The 1e-8 floor: both entries tiny, so the denominator is 1e-8, not 1e-9.
    assert rel_error(0.0, 1e-9) == pytest.approx(0.1)
    assert rel_error(np.zeros((2, 3)), np.zeros((2, 3))) == 0.0
    assert rel_error(np.zeros(0), np.zeros(0)) == 0.0
    assert isinstance(rel_error(np.ones(2), np.ones(2)), float)


def test_rel_error_takes_the_worst_entry_and_propagates_nan():
    a = np.array([[1.0, 10.0], [100.0, 0.0]])
    b = np.array([[1.0, 11.0], [100.0, 0.0]])
    assert rel_error(a, b) == pytest.approx(1 / 21)
    assert np.isnan(rel_error(np.array([1.0, np.nan]), np.array([1.0, 1.0])))


def test_rel_error_names_both_shapes_on_mismatch():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3, 2\)"):
        rel_error(np.zeros((2, 3)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"\(\).*\(1,\)"):
        rel_error(1.0, np.ones(1))


finite = st.floats(min_value=-1e300, max_value=1e300, allow_nan=False)


@given(finite, finite)
def test_rel_error_is_symmetric_and_bounded(a, b):
    e = rel_error(a, b)
    assert e == rel_error(b, a)
    assert 0.0 <= e <= 1.0


# --- numerical_gradient ----------------------------------------------------------------------


def test_numerical_gradient_of_a_scalar_function():
    x = np.random.default_rng(0).standard_normal((3, 4))
    grad = numerical_gradient(lambda v: np.sum(v**3), x)
    assert grad.shape == x.shape and grad.dtype == np.float64
    assert rel_error(grad, 3 * x**2) < 1e-7  # truncation error h**2 * f''' / 6 = 1e-10


def test_numerical_gradient_of_an_array_function_uses_dout():
    rng = np.random.default_rng(0)
    x, dout = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    grad = numerical_gradient(lambda v: v**2, x, dout)
    assert rel_error(grad, 2 * x * dout) < 1e-8


def test_numerical_gradient_matches_torch_autograd():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((4, 5)), rng.standard_normal((5, 3))
    dout = rng.standard_normal((4, 3))

    xt = torch.tensor(x, requires_grad=True)
    wt = torch.tensor(w, requires_grad=True)
    (torch.tanh(xt @ wt) * torch.tensor(dout)).sum().backward()

    dx = numerical_gradient(lambda v: np.tanh(v @ w), x, dout)
    dw = numerical_gradient(lambda v: np.tanh(x @ v), w, dout)
    assert rel_error(dx, xt.grad.numpy()) < 1e-7
    assert rel_error(dw, wt.grad.numpy()) < 1e-7


def test_numerical_gradient_sees_x_through_a_closure():
    """CS231n style: f ignores its argument and reads the weight array it closes over."""
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((4, 5)), rng.standard_normal((5, 3))
    grad = numerical_gradient(lambda _: float(np.sum(x @ w)), w)
    assert rel_error(grad, np.repeat(x.sum(axis=0)[:, None], 3, axis=1)) < 1e-8


def test_numerical_gradient_restores_x_exactly():
    x = np.random.default_rng(4).standard_normal((3, 3)) * 1e3
    before = x.copy()
    numerical_gradient(lambda v: np.sum(np.sin(v)), x)
    assert np.array_equal(x, before)


def test_numerical_gradient_restores_x_when_f_raises():
    x = np.random.default_rng(5).standard_normal((2, 3))
    before = x.copy()
    calls = []

    def f(v):
        calls.append(1)
        if len(calls) == 4:  # fails half way through the second element
            raise RuntimeError("boom")
        return float(np.sum(v))

    with pytest.raises(RuntimeError, match="boom"):
        numerical_gradient(f, x)
    assert np.array_equal(x, before)


def test_numerical_gradient_on_a_non_contiguous_view_writes_through_and_restores():
    base = np.random.default_rng(6).standard_normal((4, 6))
    before = base.copy()
    view = base[::2, 1::2].T  # strided and transposed
    assert not view.flags.c_contiguous
    seen = []

    def f(v):
        seen.append(v is view)
        return np.sum(v**2)

    grad = numerical_gradient(f, view)
    assert all(seen)
    assert rel_error(grad, 2 * view) < 1e-8
    assert np.array_equal(base, before)


def test_numerical_gradient_of_a_0d_array():
    x = np.array(0.5)
    assert rel_error(numerical_gradient(lambda v: v**2, x), 1.0) < 1e-8


def test_numerical_gradient_scales_a_scalar_f_by_dout():
    x = np.array([1.0, 2.0])
    grad = numerical_gradient(lambda v: np.sum(v**2), x, dout=3.0)
    assert rel_error(grad, 6 * x) < 1e-8


def test_numerical_gradient_requires_dout_for_array_f():
    with pytest.raises(ValueError, match=r"dout.*\(2, 3\)|\(2, 3\).*dout"):
        numerical_gradient(lambda v: v * 2, np.zeros((2, 3)))


def test_numerical_gradient_names_both_shapes_for_a_wrong_dout():
    with pytest.raises(ValueError, match=r"dout has shape \(3, 2\).*\(2, 3\)"):
        numerical_gradient(lambda v: v * 2, np.zeros((2, 3)), dout=np.ones((3, 2)))


def test_numerical_gradient_refuses_float32_and_integer_x():
    with pytest.raises(TypeError, match="float64"):
        numerical_gradient(np.sum, np.ones(3, dtype=np.float32))
    with pytest.raises(TypeError, match="float64"):
        numerical_gradient(np.sum, np.ones(3, dtype=np.int64))
    with pytest.raises(TypeError, match="numpy array"):
        numerical_gradient(np.sum, [1.0, 2.0])


def test_numerical_gradient_refuses_float32_output():
    with pytest.raises(TypeError, match="float32"):
        numerical_gradient(lambda v: np.sum(v).astype(np.float32), np.ones(3))


def test_numerical_gradient_refuses_read_only_x():
    x = np.ones(3)
    x.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        numerical_gradient(np.sum, x)


@pytest.mark.parametrize("h", [0.0, -1e-5, np.inf, np.nan, True])
def test_numerical_gradient_refuses_a_bad_step(h):
    with pytest.raises(ValueError, match="h must be"):
        numerical_gradient(np.sum, np.ones(3), h=h)


# --- check_gradients -------------------------------------------------------------------------


def test_correct_backward_passes_with_small_error(linear_inputs):
    report = check_gradients(linear_forward, linear_backward, linear_inputs)
    assert isinstance(report, GradientReport)
    assert report.passed and report.tol == DEFAULT_TOL
    assert [r.name for r in report.rows] == ["x", "w", "b"]
    assert [r.shape for r in report.rows] == [(4, 5), (5, 3), (3,)]
    assert all(r.passed and r.max_rel_error < 1e-8 for r in report.rows)


def test_wrong_backward_fails_with_large_error_on_the_faulty_input(linear_inputs):
    report = check_gradients(linear_forward, linear_backward_bad_db, linear_inputs)
    assert not report.passed
    x, w, b = report.rows
    assert x.passed and w.passed
    assert not b.passed and b.max_rel_error > 0.1
    assert rel_error(b.numeric, 4 * b.analytic) < 1e-8  # db was divided by N = 4


def test_rows_keep_both_gradients_for_inspection(linear_inputs):
    row = check_gradients(linear_forward, linear_backward, linear_inputs).rows[1]
    x, w = linear_inputs["x"], linear_inputs["w"]
    dout = np.random.default_rng(0).standard_normal((4, 3))  # the default, seed=0
    assert np.allclose(row.analytic, x.T @ dout)
    assert rel_error(row.numeric, row.analytic) == row.max_rel_error
    assert row.analytic.shape == row.numeric.shape == w.shape


def test_tol_decides_pass_or_fail():
    def nearly_right(dout, cache):
        return dout * (cache > 0) * (1 + 1e-4)

    x = np.random.default_rng(7).standard_normal((3, 4))
    x[np.abs(x) < 1e-2] = 0.5  # keep inputs away from relu's kink
    assert not check_gradients(relu_forward, nearly_right, [x]).passed
    loose = check_gradients(relu_forward, nearly_right, [x], tol=1e-3)
    assert loose.passed and loose.tol == 1e-3


def test_kinked_op_passes_away_from_the_kink():
    x = np.random.default_rng(8).standard_normal((5, 6))
    x[np.abs(x) < 1e-2] = -0.5
    assert check_gradients(relu_forward, relu_backward, x).passed


def test_float32_inputs_are_checked_as_float64_copies(linear_inputs):
    inputs = {k: v.astype(np.float32) for k, v in linear_inputs.items()}
    before = {k: v.copy() for k, v in inputs.items()}
    seen = set()

    def forward(x, w, b):
        seen.update(a.dtype for a in (x, w, b))
        return linear_forward(x, w, b)

    assert check_gradients(forward, linear_backward, inputs).passed
    assert seen == {np.dtype(np.float64)}
    for k, v in inputs.items():
        assert v.dtype == np.float32 and np.array_equal(v, before[k])


def test_caller_arrays_are_never_modified(linear_inputs):
    before = {k: v.copy() for k, v in linear_inputs.items()}

    def forward_that_raises_late(x, w, b):
        if x[0, 0] != before["x"][0, 0]:
            raise RuntimeError("perturbed")
        return linear_forward(x, w, b)

    with pytest.raises(RuntimeError):
        check_gradients(forward_that_raises_late, linear_backward, linear_inputs)
    for k, v in linear_inputs.items():
        assert np.array_equal(v, before[k])


def test_forward_rejecting_float32_output(linear_inputs):
    def forward(x, w, b):
        out, cache = linear_forward(x, w, b)
        return out.astype(np.float32), cache

    with pytest.raises(TypeError, match="float32"):
        check_gradients(forward, linear_backward, linear_inputs)


def test_sequence_inputs_are_named_in_order(linear_inputs):
    arrays = list(linear_inputs.values())
    report = check_gradients(linear_forward, linear_backward, arrays)
    assert [r.name for r in report.rows] == ["x0", "x1", "x2"]
    assert report.passed
    assert check_gradients(linear_forward, linear_backward, tuple(arrays)).passed


def test_single_input_accepts_a_bare_gradient_or_a_1_tuple():
    x = np.random.default_rng(9).standard_normal((2, 3))

    def tanh_forward(v):
        out = np.tanh(v)
        return out, out

    def tanh_backward(dout, out):
        return dout * (1 - out**2)

    report = check_gradients(tanh_forward, tanh_backward, x)
    assert report.passed and [r.name for r in report.rows] == ["x"]
    one_tuple = check_gradients(tanh_forward, lambda d, c: (tanh_backward(d, c),), {"z": x})
    assert one_tuple.passed and one_tuple.rows[0].name == "z"


def test_scalar_output_gets_dout_one():
    received = []

    def backward(dout, cache):
        received.append(dout)
        return square_loss_backward(dout, cache)

    x = np.random.default_rng(10).standard_normal((3, 2))
    assert check_gradients(square_loss_forward, backward, {"x": x}).passed
    assert np.shape(received[0]) == () and float(received[0]) == 1.0


def test_default_dout_is_seeded_normal(linear_inputs):
    received = []

    def backward(dout, cache):
        received.append(dout.copy())
        return linear_backward(dout, cache)

    for seed in (0, 0, 1):
        check_gradients(linear_forward, backward, linear_inputs, seed=seed)
    check_gradients(linear_forward, backward, linear_inputs, seed=np.random.default_rng(0))
    assert received[0].shape == (4, 3)
    assert np.array_equal(received[0], np.random.default_rng(0).standard_normal((4, 3)))
    assert np.array_equal(received[0], received[1])
    assert not np.array_equal(received[0], received[2])
    assert np.array_equal(received[0], received[3])


def test_explicit_dout_reaches_backward_and_numerics(linear_inputs):
    dout = np.arange(12.0).reshape(4, 3)
    received = []

    def backward(dout, cache):
        received.append(dout.copy())
        dout *= 0  # a backward that scribbles on dout must not corrupt the numerical side
        return linear_backward(received[-1], cache)

    report = check_gradients(linear_forward, backward, linear_inputs, dout=dout)
    assert report.passed
    assert np.array_equal(received[0], np.arange(12.0).reshape(4, 3))
    assert np.array_equal(dout, np.arange(12.0).reshape(4, 3))
    assert rel_error(report.rows[2].numeric, dout.sum(axis=0)) < 1e-8


def test_wrong_dout_shape_is_an_error(linear_inputs):
    with pytest.raises(ValueError, match=r"dout has shape \(3, 4\).*\(4, 3\)"):
        check_gradients(linear_forward, linear_backward, linear_inputs, dout=np.ones((3, 4)))


def test_backward_returning_too_few_gradients_is_an_error(linear_inputs):
    with pytest.raises(ValueError, match=r"returned 2 gradients.*3 inputs \(x, w, b\)"):
        check_gradients(linear_forward, lambda d, c: linear_backward(d, c)[:2], linear_inputs)
    with pytest.raises(ValueError, match=r"3 inputs \(x, w, b\)"):
        check_gradients(linear_forward, lambda d, c: linear_backward(d, c)[0], linear_inputs)


def test_backward_returning_a_wrong_shape_names_the_input(linear_inputs):
    def transposed_dw(dout, cache):
        dx, dw, db = linear_backward(dout, cache)
        return dx, dw.T, db

    with pytest.raises(ValueError, match=r"'w' has shape \(3, 5\) but w has shape \(5, 3\)"):
        check_gradients(linear_forward, transposed_dw, linear_inputs)


def test_backward_returning_none_names_the_input(linear_inputs):
    with pytest.raises(ValueError, match="None.*'b'"):
        check_gradients(
            linear_forward, lambda d, c: (*linear_backward(d, c)[:2], None), linear_inputs
        )


def test_forward_must_return_out_and_cache(linear_inputs):
    with pytest.raises(TypeError, match=r"\(out, cache\)"):
        check_gradients(lambda x, w, b: x @ w + b, linear_backward, linear_inputs)


@pytest.mark.parametrize("inputs", [{}, [], "x"])
def test_bad_inputs_container(inputs):
    with pytest.raises((TypeError, ValueError), match="inputs"):
        check_gradients(linear_forward, linear_backward, inputs)


def test_non_numeric_input_is_an_error():
    with pytest.raises(TypeError, match="'x'"):
        check_gradients(relu_forward, relu_backward, {"x": np.array(["a", "b"])})


# --- the report ------------------------------------------------------------------------------


def mixed_report() -> GradientReport:
    return GradientReport(
        (
            GradientRow("x", (4, 5), 3.2e-10, True),
            GradientRow("weights", (5, 3), 0.75, False),
        ),
        tol=1e-5,
    )


def test_report_text_is_an_aligned_table():
    text = str(mixed_report())
    lines = text.splitlines()
    assert "tolerance 1e-05" in lines[0] and "1 of 2 FAILED" in lines[0]
    header, rows = lines[1], lines[3:]
    assert header.split()[:2] == ["input", "shape"]
    assert "x" in rows[0] and "PASS" in rows[0] and "3.20e-10" in rows[0]
    assert "weights" in rows[1] and "FAIL" in rows[1] and "7.50e-01" in rows[1]
    # every column starts at the same offset on every line
    col = header.index("result")
    assert rows[0].index("PASS") == rows[1].index("FAIL") == col
    assert rows[0].index("(4, 5)") == rows[1].index("(5, 3)") == header.index("shape")


def test_report_repr_is_the_table_in_a_terminal_too():
    report = mixed_report()
    # what a Python or IPython prompt shows for `report`, and a list of reports
    assert repr(report) == str(report) and len(repr(report).splitlines()) == 5
    assert "GradientReport(" not in repr(report) and "GradientRow(" not in repr(report)
    assert str(report) in repr([report])
    assert report._repr_html_().startswith("<table>")  # Jupyter keeps its HTML table


def test_report_summary_when_all_pass(linear_inputs):
    report = check_gradients(linear_forward, linear_backward, linear_inputs)
    assert "all passed" in str(report) and "FAIL" not in str(report)


def test_report_passed_needs_every_row():
    assert not mixed_report().passed
    assert GradientReport((GradientRow("x", (1,), 0.0, True),), tol=1e-5).passed


def test_report_html_is_an_escaped_coloured_table():
    report = GradientReport(
        (GradientRow("<w>&", (2,), 1e-9, True), GradientRow("b", (2,), 0.5, False)), tol=1e-5
    )
    page = report._repr_html_()
    assert page.startswith("<table") and page.endswith("</table>")
    assert "&lt;w&gt;&amp;" in page and "<w>" not in page
    assert page.count("<tr>") == 3
    passed_cell = page.split("PASS")[0].rsplit("<td", 1)[1]
    failed_cell = page.split("FAIL")[-2].rsplit("<td", 1)[1]
    assert "color" in passed_cell and "color" in failed_cell and passed_cell != failed_cell


# --- assert_gradients ------------------------------------------------------------------------


def test_assert_gradients_returns_the_report_when_all_pass(linear_inputs):
    report = assert_gradients(linear_forward, linear_backward, linear_inputs)
    assert report.passed


def test_assert_gradients_raises_with_the_table(linear_inputs):
    with pytest.raises(AssertionError) as info:
        assert_gradients(linear_forward, linear_backward_bad_db, linear_inputs)
    message = str(info.value)
    assert "FAIL" in message and "PASS" in message and "max rel error" in message
