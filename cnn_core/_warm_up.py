"""Every numba kernel of the kit compiled, or loaded from numba's cache, for both dtypes before a
notebook needs it. The grader fills its numba cache with `compile_kernels`, one group per process
at once; its sandbox server then loads them all once and forks every run from there, with
`stop_caching` so that no run writes to a cache it may not touch.
"""

from __future__ import annotations

import numpy as np

from cnn_core import functional as f

DTYPES = (np.float32, np.float64)


def _convolutions(dt: type) -> None:
    x, w, b = np.ones((1, 2, 6, 6), dt), np.ones((2, 2, 3, 3), dt), np.zeros(2, dt)
    f.conv2d_backward(*f.conv2d_forward(x, w, b, padding=1))
    f.conv1d_backward(*f.conv1d_forward(x[:, :, 0], w[:, :, 0], b))


def _winograd(dt: type) -> None:
    """A 3x3 stride-1 layer with 16 channels: the Winograd transforms."""
    x, w = np.ones((1, 16, 4, 4), dt), np.ones((16, 16, 3, 3), dt)
    f.conv2d_backward(*f.conv2d_forward(x, w, np.zeros(16, dt), padding=1))


def _pooling(dt: type) -> None:
    """2x2/2 max pooling (its own kernel), 3x3/1 (the general one) and ReLU."""
    x = np.ones((1, 2, 6, 6), dt)
    f.maxpool2d_backward(*f.maxpool2d_forward(x, 2))
    f.maxpool2d_backward(*f.maxpool2d_forward(x, 3, 1))
    f.relu_backward(*f.relu_forward(x))


def _average(dt: type) -> None:
    f.avgpool2d_backward(*f.avgpool2d_forward(np.ones((1, 2, 6, 6), dt), 2))


# Groups that share no kernel (each kernel's cache index is written by one process only) and
# take about equal compile times, so that one process per group ends at about the same time.
GROUPS = (_convolutions, _winograd, _pooling, _average)


def compile_kernels(group: int | None = None) -> None:
    """Run group `group` of GROUPS (every group when None) on tiny inputs of both dtypes: each
    kernel it calls is compiled, or loaded from numba's cache, for that dtype."""
    for run in GROUPS if group is None else GROUPS[group : group + 1]:
        for dt in DTYPES:
            run(dt)


def stop_caching() -> None:
    """Detach every kernel of cnn_core._kernels from numba's cache, keeping what it has loaded:
    a signature compiled later stays in this process (and its forks) instead of being written
    into the cache folder the kernels came from, which a fork running as another user may not
    write. (numba has no public call for this; `_cache` is its dispatchers' cache.)"""
    from numba.core.caching import NullCache
    from numba.core.registry import CPUDispatcher

    from cnn_core import _kernels

    for kernel in vars(_kernels).values():
        if isinstance(kernel, CPUDispatcher):
            kernel._cache = NullCache()
