"""numba kernels behind the fast ops: im2col and col2im on chunks of a convolution's batch, and
pooling.

Each kernel is compiled on first call for the dtype it meets (float32 or float64) and cached on
disk, so a later process loads it instead of compiling. Inputs are C-contiguous (the callers in
`cnn_core.functional` see to it).

The kernels are single-threaded on purpose. A convolution runs its chunks on several threads
(`cnn_core._threads`), each calling these kernels and single-threaded BLAS on data that stays in its
core's cache; pooling is memory-bound and already faster than PyTorch on one thread (see
benchmarks/bench_layers.py).

Loops index flat arrays with unsigned integers, which spares numba's negative-index wraparound
tests and lets LLVM vectorise them for whatever SIMD the CPU has (numba compiles for the host),
and choose with selects rather than branches. No kernel uses fastmath: results are exact and the
same as the loops of `cnn_core.naive`.
"""

from __future__ import annotations

import numpy as np
from numba import njit, uint8, uint64

_JIT = dict(cache=True, nogil=True)


@njit(**_JIT)
def im2col_padded(xpad, kh, kw, sh, sw, oh, ow, cols):
    """Unfold a chunk of zero-padded images xpad (B, C, Hp, Wp) into cols (B, C*KH*KW, OH*OW).

    Row (c, i, j) of image b holds xpad[b, c, y*sh + i, z*sw + j] at column y*OW + z. Padding
    beforehand leaves no bounds to test here, so each output row is one short strided copy.
    """
    nb, c, hp, wp = xpad.shape
    src = xpad.reshape(-1)
    dst = cols.reshape(-1)
    # unsigned flat indices: no negative-index wraparound test, so the copies vectorise
    o = uint64(0)
    for b in range(nb):
        for ci in range(c):
            plane = uint64((b * c + ci) * hp * wp)
            for i in range(kh):
                for j in range(kw):
                    for y in range(oh):
                        start = plane + uint64((y * sh + i) * wp + j)
                        for z in range(uint64(ow)):
                            dst[o + z] = src[start + z * uint64(sw)]
                        o += uint64(ow)
    return cols


@njit(**_JIT)
def col2im_padded(cols, kh, kw, sh, sw, oh, ow, dxpad):
    """Fold cols (B, C*KH*KW, OH*OW) into dxpad (B, C, Hp, Wp), summing overlapping windows.

    The adjoint of `im2col_padded`: every entry of dxpad is overwritten (zero where no window
    reaches); the caller crops the padding off.
    """
    nb, c, hp, wp = dxpad.shape
    dst = dxpad.reshape(-1)
    src = cols.reshape(-1)
    dst[:] = 0
    o = uint64(0)
    for b in range(nb):
        for ci in range(c):
            plane = uint64((b * c + ci) * hp * wp)
            for i in range(kh):
                for j in range(kw):
                    for y in range(oh):
                        start = plane + uint64((y * sh + i) * wp + j)
                        for z in range(uint64(ow)):
                            dst[start + z * uint64(sw)] += src[o + z]
                        o += uint64(ow)
    return dxpad


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
def maxpool2x2_forward(x, oh, ow):
    """Max over the non-overlapping 2x2 windows at stride 2 of x (N, C, H, W), the usual pooling.

    Returns out (N, C, OH, OW) and where (N, C, OH, OW) uint8: the offset 2*i + j of the window's
    first maximum in row-major order, the same choice as `maxpool_forward` makes. A window's four
    values are two neighbours in each of two rows, so for each output row the loop over its
    windows reads both input rows at stride 2, which LLVM vectorises (its loads deinterleave the
    pairs) where the one-window-at-a-time loop of `maxpool_forward` cannot be; and the offsets
    take a byte each instead of an int32 index.
    """
    n, c, h, w = x.shape
    src = x.reshape(-1)
    out = np.empty(n * c * oh * ow, dtype=x.dtype)
    where = np.empty(n * c * oh * ow, dtype=np.uint8)
    uw, uow, two = uint64(w), uint64(ow), uint64(2)
    for plane in range(uint64(n * c)):
        base = plane * uint64(h * w)
        o = plane * uint64(oh * ow)
        for y in range(uint64(oh)):
            top = base + two * y * uw
            bottom = top + uw
            for z in range(uow):
                # the comparisons of maxpool_forward in the same order, as selects
                best = src[top + two * z]
                at = uint8(0)
                v = src[top + two * z + uint64(1)]
                better = v > best
                best, at = (v, uint8(1)) if better else (best, at)
                v = src[bottom + two * z]
                better = v > best
                best, at = (v, uint8(2)) if better else (best, at)
                v = src[bottom + two * z + uint64(1)]
                better = v > best
                best, at = (v, uint8(3)) if better else (best, at)
                out[o + z] = best
                where[o + z] = at
            o += uow
    return out.reshape((n, c, oh, ow)), where.reshape((n, c, oh, ow))


@njit(**_JIT)
def maxpool2x2_backward(dout, where, h, w):
    """Gradient of `maxpool2x2_forward`: dout (N, C, OH, OW) to the offsets `where` of dx (N, C, H, W).

    Each pair of input rows is zeroed and then takes its windows' gradients, one store a window,
    while it is in cache; rows and a column that no window covers (odd H or W) stay zero.
    """
    n, c, oh, ow = dout.shape
    g = dout.reshape(-1)
    at = where.reshape(-1)
    dx = np.empty(n * c * h * w, dtype=dout.dtype)
    zero = dx.dtype.type(0)
    uw, uow, two, one = uint64(w), uint64(ow), uint64(2), uint64(1)
    for plane in range(uint64(n * c)):
        base = plane * uint64(h * w)
        o = plane * uint64(oh * ow)
        for y in range(uint64(oh)):
            top = base + two * y * uw
            for j in range(two * uw):
                dx[top + j] = zero
            for z in range(uow):
                k = uint64(at[o + z])
                dx[top + (k >> one) * uw + two * z + (k & one)] = g[o + z]
            o += uow
        for j in range(base + two * uint64(oh) * uw, base + uint64(h * w)):
            dx[j] = zero
    return dx.reshape((n, c, h, w))


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
