"""cnn_core.init: fans against PyTorch, the statistics of large draws, determinism, name lookup."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cnn_core import init

SCALED = ["xavier_uniform", "xavier_normal", "he_uniform", "he_normal"]
BIG = (512, 64, 3, 3)  # 294,912 draws: a sample std is within 0.4% of the true one (3 sigma)


@pytest.mark.parametrize(
    "shape",
    [(784, 10), (3, 7), (6, 1, 5, 5), (16, 6, 5, 5), (64, 32, 3, 3), (8, 3, 7), (4, 2, 3, 1)],
)
def test_fans_match_torch(shape):
    # PyTorch stores a Linear weight as (out, in): our (D, M) is its transpose.
    torch_shape = shape[::-1] if len(shape) == 2 else shape
    expected = torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(torch_shape))
    assert init.fan_in_out(shape) == expected


def test_fans_of_linear_and_conv_weights():
    assert init.fan_in_out((400, 120)) == (400, 120)
    assert init.fan_in_out((16, 6, 5, 5)) == (6 * 25, 16 * 25)


@pytest.mark.parametrize("shape", [(10,), (), 5])
def test_fans_need_two_axes(shape):
    with pytest.raises(ValueError, match="at least 2 axes"):
        init.fan_in_out(shape)


@pytest.mark.parametrize("shape", [(3, 0), (2, -1), (2.0, 3), "ab", (True, 2)])
def test_bad_shapes_are_named(shape):
    with pytest.raises(ValueError, match="he_normal: shape must be a tuple of positive ints"):
        init.he_normal(shape, 0)


def expected_std(name: str, shape) -> float:
    fan_in, fan_out = init.fan_in_out(shape)
    var = 2.0 / (fan_in + fan_out) if name.startswith("xavier") else 2.0 / fan_in
    return math.sqrt(var)


def assert_std(w: np.ndarray, std: float) -> None:
    assert abs(w.mean()) < 5 * std / math.sqrt(w.size)
    assert w.std() == pytest.approx(std, rel=0.01)


@pytest.mark.parametrize("name", SCALED)
@pytest.mark.parametrize("shape", [BIG, (1024, 288)])
def test_scaled_initialisers_have_the_papers_variance(name, shape):
    w = init.get(name)(shape, 0, dtype=np.float64)
    std = expected_std(name, shape)
    assert_std(w, std)
    if name.endswith("uniform"):
        bound = std * math.sqrt(3)  # U(-a, a) has std a / sqrt(3)
        assert np.abs(w).max() <= bound
        assert np.abs(w).max() > 0.999 * bound


TORCH_INIT = {
    "xavier_uniform": torch.nn.init.xavier_uniform_,
    "xavier_normal": torch.nn.init.xavier_normal_,
    "he_uniform": lambda t, generator: torch.nn.init.kaiming_uniform_(
        t, nonlinearity="relu", generator=generator
    ),
    "he_normal": lambda t, generator: torch.nn.init.kaiming_normal_(
        t, nonlinearity="relu", generator=generator
    ),
}


@pytest.mark.parametrize("name", SCALED)
@pytest.mark.parametrize("shape", [(64, 32, 5, 5), (2048, 100)])
def test_scaled_initialisers_agree_with_torch(name, shape):
    torch_shape = shape[::-1] if len(shape) == 2 else shape
    t = torch.empty(torch_shape, dtype=torch.float64)
    TORCH_INIT[name](t, generator=torch.Generator().manual_seed(0))
    ours = init.get(name)(shape, 1, dtype=np.float64)
    assert ours.std() == pytest.approx(t.std().item(), rel=0.02)
    assert np.abs(ours).max() == pytest.approx(t.abs().max().item(), rel=0.2)


def test_gaussian_std_is_the_standard_deviation():
    w = init.gaussian(BIG, 0, std=0.01, dtype=np.float64)
    assert_std(w, 0.01)  # N(0, 0.01): std 0.01, variance 1e-4
    assert_std(init.gaussian(BIG, 1), 0.01)  # the default std


def test_uniform_bounds():
    w = init.uniform(BIG, 0, a=0.2, dtype=np.float64)
    assert -0.2 <= w.min() < -0.1998 and 0.1998 < w.max() <= 0.2
    assert w.std() == pytest.approx(0.2 / math.sqrt(3), rel=0.01)
    assert np.abs(init.uniform((1000,), 0)).max() <= 0.05  # the default a


@pytest.mark.parametrize("name", ["gaussian", "uniform", *SCALED])
def test_same_seed_same_values(name):
    fn = init.get(name)
    a = fn((8, 3, 3, 3), 7)
    assert a.dtype == np.float32 and a.shape == (8, 3, 3, 3)
    np.testing.assert_array_equal(a, fn((8, 3, 3, 3), 7))
    np.testing.assert_array_equal(a, fn((8, 3, 3, 3), np.random.default_rng(7)))
    assert not np.array_equal(a, fn((8, 3, 3, 3), 8))


def test_a_shared_generator_advances():
    rng = np.random.default_rng(3)
    first, second = init.he_normal((4, 5), rng), init.he_normal((4, 5), rng)
    assert not np.array_equal(first, second)
    rng = np.random.default_rng(3)
    np.testing.assert_array_equal(first, init.he_normal((4, 5), rng))


def test_float32_and_float64_draws_agree_up_to_rounding():
    w32 = init.xavier_normal((30, 20), 5, dtype=np.float32)
    w64 = init.xavier_normal((30, 20), 5, dtype=np.float64)
    assert w32.dtype == np.float32 and w64.dtype == np.float64
    np.testing.assert_array_equal(w32, w64.astype(np.float32))


def test_zeros_and_ones():
    z, o = init.zeros((2, 3)), init.ones(4, dtype=np.float64)
    assert z.dtype == np.float32 and not z.any()
    assert o.dtype == np.float64 and o.shape == (4,) and (o == 1).all()


def test_bad_arguments():
    with pytest.raises(ValueError, match="gaussian: std must be a positive number, got 0"):
        init.gaussian((3, 3), 0, std=0)
    with pytest.raises(ValueError, match="uniform: a must be a positive number"):
        init.uniform((3, 3), 0, a=-1.0)
    with pytest.raises(TypeError, match="he_normal: dtype must be float32 or float64, got int64"):
        init.he_normal((3, 3), 0, dtype=np.int64)
    with pytest.raises(TypeError, match="rng must be a numpy.random.Generator"):
        init.he_normal((3, 3), "seed")


def test_get_resolves_names_and_passes_callables():
    for name in ["gaussian", "uniform", *SCALED, "zeros", "ones"]:
        assert init.get(name) is getattr(init, name)

    def custom(shape, rng, dtype=np.float32):
        return np.full(shape, 0.5, dtype)

    assert init.get(custom) is custom


@pytest.mark.parametrize("bad", ["kaiming", 3, None])
def test_get_lists_the_names(bad):
    with pytest.raises(ValueError, match="unknown initialiser.*gaussian, uniform, xavier_uniform"):
        init.get(bad)
