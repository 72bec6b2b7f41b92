"""numba kernels behind the fast ops: col2im for the convolution backward pass, and pooling.

Each kernel is compiled on first call for the dtype it meets (float32 or float64) and cached on
disk, so a later process loads it instead of compiling. Inputs are C-contiguous (the callers in
`cnn_core.functional` see to it).

The kernels are single-threaded on purpose: the matrix products between them already use every
core through BLAS, and BLAS worker threads keep spinning for a while after each product. Parallel
numba regions interleaved with them fight those threads for the cores and ran about twice slower
end to end than serial kernels (see benchmarks/bench_layers.py).
"""

from __future__ import annotations

import numpy as np
from numba import njit, uint64

_JIT = dict(cache=True, nogil=True)


@njit(inline="always")
def _valid_range(n_out: int, size: int, offset: int, stride: int) -> tuple[int, int]:
    """Output indices o in [lo, hi) whose input index o * stride + offset lies in [0, size)."""
    lo = 0 if offset >= 0 else (-offset + stride - 1) // stride
    hi = 0 if size - offset <= 0 else (size - 1 - offset) // stride + 1
    return min(lo, n_out), max(min(hi, n_out), min(lo, n_out))


@njit(**_JIT)
def col2im(cols, n, c, h, w, kh, kw, sh, sw, ph, pw, oh, ow):
    """Fold cols (C*KH*KW, N*OH*OW) back into dx (N, C, H, W), summing overlapping windows.

    The adjoint of `cnn_core.functional.im2col`: row (c, i, j), column (n, y, z) adds into
    dx[n, c, y*sh + i - ph, z*sw + j - pw]; positions in the zero padding are dropped.
    """
    p = oh * ow
    dx = np.zeros(n * c * h * w, dtype=cols.dtype)
    flat = cols.reshape(-1)  # flat indices: no per-row views in the innermost loops
    for k in range(n * c):
        ci = k // n  # channel-major: each row of cols is read front to back, image by image
        ni = k % n
        plane = ni * c + ci
        for i in range(kh):
            y0, y1 = _valid_range(oh, h, i - ph, sh)
            for j in range(kw):
                z0, z1 = _valid_range(ow, w, j - pw, sw)
                src = ((ci * kh + i) * kw + j) * (n * p) + ni * p
                for y in range(y0, y1):
                    # unsigned indices: no negative-index wraparound test, so the loop vectorises
                    dst = uint64((plane * h + y * sh + i - ph) * w + j - pw)
                    row = uint64(src + y * ow)
                    for z in range(uint64(z0), uint64(z1)):
                        dx[dst + z * uint64(sw)] += flat[row + z]
    return dx.reshape((n, c, h, w))


@njit(**_JIT)
def maxpool_forward(x, kh, kw, sh, sw, oh, ow):
    """Max over each window of x (N, C, H, W); returns out (N, C, OH, OW) and the argmax.

    argmax (N, C, OH, OW) int32 holds the flat index iy * W + ix of the first maximum in
    row-major order within its window (strict comparison keeps the first of equal values).
    """
    n, c, h, w = x.shape
    src = x.reshape(-1)
    out = np.empty(n * c * oh * ow, dtype=x.dtype)
    arg = np.empty(n * c * oh * ow, dtype=np.int32)
    # Unsigned flat indices skip numba's negative-index wraparound tests, and selects instead of
    # branches avoid mispredictions (where a window's maximum lies is unpredictable): 1.8x faster.
    uw, ush, usw = uint64(w), uint64(sh), uint64(sw)
    o = uint64(0)
    for plane in range(uint64(n * c)):
        base = plane * uint64(h * w)
        for y in range(uint64(oh)):
            for z in range(uint64(ow)):
                first = y * ush * uw + z * usw  # the window's top-left, within the plane
                best = src[base + first]
                best_at = first
                for i in range(uint64(kh)):
                    for j in range(uint64(kw)):
                        at = first + i * uw + j
                        v = src[base + at]
                        better = v > best
                        best_at = at if better else best_at
                        best = v if better else best
                out[o] = best
                arg[o] = best_at
                o += uint64(1)
    return out.reshape((n, c, oh, ow)), arg.reshape((n, c, oh, ow))


@njit(**_JIT)
def maxpool_backward(dout, arg, h, w):
    """Route dout (N, C, OH, OW) to the argmax positions of dx (N, C, H, W), summing repeats."""
    n, c, oh, ow = dout.shape
    dx = np.empty((n, c, h * w), dtype=dout.dtype)
    for plane in range(n * c):
        ni = plane // c
        ci = plane % c
        dx[ni, ci, :] = 0
        for y in range(oh):
            for z in range(ow):
                dx[ni, ci, arg[ni, ci, y, z]] += dout[ni, ci, y, z]
    return dx.reshape((n, c, h, w))


@njit(**_JIT)
def avgpool_forward(x, kh, kw, sh, sw, oh, ow):
    """Mean over each KH x KW window of x (N, C, H, W) -> (N, C, OH, OW)."""
    n, c, h, w = x.shape
    out = np.empty((n, c, oh, ow), dtype=x.dtype)
    scale = 1.0 / (kh * kw)
    for plane in range(n * c):
        ni = plane // c
        ci = plane % c
        for y in range(oh):
            for z in range(ow):
                acc = 0.0
                for i in range(kh):
                    for j in range(kw):
                        acc += x[ni, ci, y * sh + i, z * sw + j]
                out[ni, ci, y, z] = acc * scale
    return out


@njit(**_JIT)
def avgpool_backward(dout, kh, kw, sh, sw, h, w):
    """Spread each dout (N, C, OH, OW) value evenly over its window of dx (N, C, H, W)."""
    n, c, oh, ow = dout.shape
    dx = np.zeros((n, c, h, w), dtype=dout.dtype)
    scale = 1.0 / (kh * kw)
    for plane in range(n * c):
        ni = plane // c
        ci = plane % c
        for y in range(oh):
            for z in range(ow):
                g = dout[ni, ci, y, z] * scale
                for i in range(kh):
                    for j in range(kw):
                        dx[ni, ci, y * sh + i, z * sw + j] += g
    return dx
