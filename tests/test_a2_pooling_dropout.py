"""a2_pooling_dropout: the independently written notebooks of the synthetic class are correct
against the current release, dx keeps x's dtype for a float64 dout (visible and hidden tests),
and a failed gradient check of a pooling backward pass says where and what to look at."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import numpy as np
import pytest

from autograder import outputs
from autograder.synthetic import independent
from cnn_core import functional as ref

ROOT = Path(__file__).resolve().parents[1]
A2 = "a2_pooling_dropout"


def _notebook(kind: str) -> nbformat.NotebookNode:
    return nbformat.read(ROOT / kind / A2 / f"{A2}.ipynb", as_version=4)


def _meta(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


def _code(cell) -> str:
    return "\n".join(ln for ln in cell.source.splitlines() if not ln.lstrip().startswith("%"))


def _namespace(nb: nbformat.NotebookNode, **replaced) -> dict:
    """The set-up cell and the answer cells of `nb` run in one dict, then `replaced` put in."""
    ns: dict = {"__name__": f"notebook_{A2}"}
    for cell in nb.cells:
        meta = _meta(cell)
        if cell.cell_type == "code" and (meta.get("solution") or meta.get("grade_id") == "setup"):
            exec(compile(_code(cell), meta["grade_id"], "exec"), ns)
    return ns | replaced


def _score(ns: dict, student: str = "alice") -> dict:
    payload = json.loads(json.dumps({"checks": outputs.results(ns, A2, student)}))
    return outputs.score_outputs(A2, student, payload, "")


def _run_visible_test(ns: dict, grade_id: str) -> None:
    """The released (visible) test cell `grade_id`, run in `ns`."""
    (cell,) = [c for c in _notebook("assignments").cells if _meta(c).get("grade_id") == grade_id]
    exec(compile(_code(cell), grade_id, "exec"), ns)


@pytest.mark.parametrize("style", sorted(independent(A2)))
def test_independent_notebooks_score_full_marks_and_match_the_release(style):
    nb = independent(A2)[style]
    release = _notebook("assignments")
    assert [c.get("id") for c in nb.cells] == [c.get("id") for c in release.cells]
    for mine, released in zip(nb.cells, release.cells, strict=True):
        if not _meta(released).get("solution"):
            assert mine.source == released.source, _meta(released).get("grade_id")
        assert not mine.get("outputs"), "a kept submission carries no outputs"
    ns = _namespace(nb)
    for student in ("alice", "bob", "carol"):
        scores = _score(ns, student)
        assert {gid: s for gid, s in scores.items() if s != (1.0, [])} == {}


def _global_backward_in_douts_dtype(dout, cache):
    (n, c, h, w), _ = cache
    return np.broadcast_to(dout[:, :, None, None] / (h * w), (n, c, h, w)).copy()


def _dropout_backward_in_douts_dtype(dout, cache):
    mask, _ = cache
    return dout.copy() if mask is None else dout * mask


@pytest.mark.parametrize(
    ("grade_id", "replaced"),
    [
        ("test_global_avgpool", {"global_avgpool_backward": _global_backward_in_douts_dtype}),
        ("test_dropout_backward", {"dropout_backward": _dropout_backward_in_douts_dtype}),
    ],
)
def test_dx_in_douts_dtype_fails_the_mixed_dtype_case_only(grade_id, replaced):
    ns = _namespace(_notebook("solutions"), **replaced)
    with pytest.raises(AssertionError, match="also when dout is float64"):
        _run_visible_test(ns, grade_id)
    fraction, messages = _score(ns)[grade_id]
    (check,) = [c for c in outputs.checks(A2) if c.grade_id == grade_id]
    n = len(check.cases(outputs.case_rng("alice", A2, grade_id)))
    assert fraction == pytest.approx((n - 1) / n)
    assert "float64 dout" in messages[0] and "dtype" in messages[0]


def test_cnn_core_keeps_xs_dtype_for_a_float64_dout():
    x = np.ones((2, 3, 4, 5), dtype=np.float32)
    _, cache = ref.global_avgpool2d_forward(x)
    assert ref.global_avgpool2d_backward(np.ones((2, 3)), cache).dtype == np.float32
    _, cache = ref.dropout_forward(x, 0.3, rng=0)
    assert ref.dropout_backward(np.ones(x.shape), cache).dtype == np.float32


def test_elu_derivative_from_exp_is_accepted_by_the_hidden_check():
    """alpha * exp(min(x, 0)), the accurate form, and cnn_core's out + alpha both pass."""

    def elu_backward(dout, cache):
        x, _, alpha = cache
        return np.where(x > 0, dout, dout * alpha * np.exp(np.minimum(x, 0))).astype(x.dtype)

    ns = _namespace(_notebook("solutions"), elu_backward=elu_backward)
    assert _score(ns)["test_elu"] == (1.0, [])
    x = np.array([-20.0, -17.5, -10.0], dtype=np.float32)
    out, cache = ref.elu_forward(x)
    assert ref.elu_backward(np.ones_like(x), cache)[0] == 0  # the cancellation the notebook names


def test_a_failed_pooling_gradient_check_says_where_and_what_to_look_at():
    """avgpool_backward dividing by KH*KH passes every square-window test, then fails the
    gradient check of the (2, 3) window with stride (1, 2): the message names the window, the
    entry that is furthest off and the usual mistakes of overlapping and strided windows."""
    ns = _namespace(_notebook("solutions"))
    solution = ns["avgpool_backward"]

    def avgpool_backward(dout, cache):
        shape, dtype, (kh, kw), stride = cache
        return solution(dout * (kw / kh), cache)  # divides by KH*KH

    ns["avgpool_backward"] = avgpool_backward
    with pytest.raises(AssertionError) as failed:
        _run_visible_test(ns, "test_avgpool_backward")
    message = str(failed.value)
    assert message.startswith(
        "avgpool_backward: the gradient check failed with kernel_size=(2, 3), stride=(1, 2)"
    )
    assert "the largest difference is at dx[" in message
    assert "add into dx (+=) rather than assign (=)" in message
    assert "the stride (1, 2) is not the window size (2, 3)" in message
