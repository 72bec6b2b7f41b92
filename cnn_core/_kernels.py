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


@njit(inline="always")
def _copy16(dst, d, src, s):
    """dst[d:d + 16] = src[s:s + 16] as all 16 loads, then all 16 stores: LLVM makes them one or two
    vector moves with no overlap test (a loop copying a short row would test it every row)."""
    v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15 = (
        src[s + uint64(0)],
        src[s + uint64(1)],
        src[s + uint64(2)],
        src[s + uint64(3)],
        src[s + uint64(4)],
        src[s + uint64(5)],
        src[s + uint64(6)],
        src[s + uint64(7)],
        src[s + uint64(8)],
        src[s + uint64(9)],
        src[s + uint64(10)],
        src[s + uint64(11)],
        src[s + uint64(12)],
        src[s + uint64(13)],
        src[s + uint64(14)],
        src[s + uint64(15)],
    )
    dst[d + uint64(0)] = v0
    dst[d + uint64(1)] = v1
    dst[d + uint64(2)] = v2
    dst[d + uint64(3)] = v3
    dst[d + uint64(4)] = v4
    dst[d + uint64(5)] = v5
    dst[d + uint64(6)] = v6
    dst[d + uint64(7)] = v7
    dst[d + uint64(8)] = v8
    dst[d + uint64(9)] = v9
    dst[d + uint64(10)] = v10
    dst[d + uint64(11)] = v11
    dst[d + uint64(12)] = v12
    dst[d + uint64(13)] = v13
    dst[d + uint64(14)] = v14
    dst[d + uint64(15)] = v15


@njit(**_JIT)
def im2col_padded(src, start, nb, c, hp, wp, kh, kw, sh, sw, oh, ow, dst):
    """Unfold a chunk of nb zero-padded images (C, Hp, Wp), laid out flat in src from index start,
    into dst, flat (B, C*KH*KW, OH*OW).

    Row (c, i, j) of image b holds xpad[b, c, y*sh + i, z*sw + j] at column y*OW + z. Padding
    beforehand leaves no bounds to test here, so each output row is one short copy: at stride 1 in
    blocks of 16 that may run past the row's end (the next row overwrites what they wrote there),
    which needs 15 elements of src and dst past the chunk's to be addressable.
    """
    dst_size = nb * c * kh * kw * oh * ow
    # unsigned flat indices: no negative-index wraparound test, so the copies vectorise
    o = uint64(0)
    uow, usw, sixteen = uint64(ow), uint64(sw), uint64(16)
    for b in range(nb):
        for ci in range(c):
            plane = uint64(start + (b * c + ci) * hp * wp)
            for i in range(kh):
                for j in range(kw):
                    for y in range(oh):
                        first = plane + uint64((y * sh + i) * wp + j)
                        if sw == 1:
                            for z in range(uint64(0), uow, sixteen):
                                _copy16(dst, o + z, src, first + z)
                        else:
                            for z in range(uow):
                                dst[o + z] = src[first + z * usw]
                        o += uow
    return dst[:dst_size]


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
def relu_forward(x, out):
    """out = max(x, 0) over C-contiguous arrays of one shape, bit for bit as numpy's maximum(x, 0)
    gives it (NaN stays NaN, -0.0 becomes 0.0), in a quarter of its time."""
    src = x.reshape(-1)
    dst = out.reshape(-1)
    zero = dst.dtype.type(0)
    for i in range(uint64(src.size)):
        v = src[i]
        dst[i] = v if v > zero or v != v else zero
    return out


@njit(**_JIT)
def relu_backward(dout, x, dx):
    """dx = dout where x > 0, else 0 (NaN x included), over C-contiguous arrays of one shape: one
    pass where numpy needs a mask array and a product."""
    g = dout.reshape(-1)
    src = x.reshape(-1)
    dst = dx.reshape(-1)
    zero = dst.dtype.type(0)
    for i in range(uint64(src.size)):
        dst[i] = g[i] if src[i] > zero else zero
    return dx


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


# Winograd F(2x2, 3x3): a 3x3 convolution at stride 1 computes each 2x2 block ("tile") of its
# output from the 4x4 input patch under it as Y = A^T [(G g G^T) * (B^T d B)] A, the product *
# taken elementwise over 16 components and summed over channels: 16 matrix products of (F, C) by
# (C, tiles), 2.25 times fewer multiplications than im2col's. The kernels below are the
# transforms on either side of those products and their adjoints for the backward pass:
#
#     B^T = [1  0 -1  0]     G = [ 1    0    0 ]     A^T = [1  1  1  0]
#           [0  1  1  0]         [1/2  1/2  1/2]           [0  1 -1 -1]
#           [0 -1  1  0]         [1/2 -1/2  1/2]
#           [0  1  0 -1]         [ 0    0    1 ]
#
# A transformed array holds component k = 4*i + j of tile t = (b*TH + ty)*TW + tx of channel c at
# flat index k*cs + c*ld + t: each (channel, tile) matrix of a component is a BLAS operand with
# leading dimension ld, and the components lie cs apart, cs chosen so that the 16 streams a tile
# touches do not share cache sets (`cnn_core.functional` picks ld and cs). Only additions and
# subtractions, no fastmath: `cnn_core.functional` repeats the forward ones with numpy, in the
# same order, before numba is loaded, and gets the same bits.


@njit(**_JIT)
def winograd_input(xpad, th, tw, v, cs, ld):
    """V = B^T d B for the 4x4 patch d at (2*ty, 2*tx) of each tile of xpad (B, C, Hp, Wp), into the
    flat array v (component k of channel c, tile t at k*cs + c*ld + t). Hp >= 2*TH + 2, Wp likewise."""
    nb, c, hp, wp = xpad.shape
    src = xpad.reshape(-1)
    ucs, uld, uwp = uint64(cs), uint64(ld), uint64(wp)
    two, three, four = uint64(2), uint64(3), uint64(4)
    for b in range(nb):
        for ci in range(c):
            plane = uint64((b * c + ci) * hp * wp)
            for ty in range(th):
                p0 = plane + uint64(2 * ty) * uwp
                o = uint64(ci) * uld + uint64((b * th + ty) * tw)
                for tx in range(uint64(tw)):
                    r0 = p0 + two * tx
                    r1 = r0 + uwp
                    r2 = r1 + uwp
                    r3 = r2 + uwp
                    d00, d01, d02, d03 = src[r0], src[r0 + 1], src[r0 + 2], src[r0 + 3]
                    d10, d11, d12, d13 = src[r1], src[r1 + 1], src[r1 + 2], src[r1 + 3]
                    d20, d21, d22, d23 = src[r2], src[r2 + 1], src[r2 + 2], src[r2 + 3]
                    d30, d31, d32, d33 = src[r3], src[r3 + 1], src[r3 + 2], src[r3 + 3]
                    # B^T d, one row of it per letter; then each row times B
                    a0, a1, a2, a3 = d00 - d20, d01 - d21, d02 - d22, d03 - d23
                    b0, b1, b2, b3 = d10 + d20, d11 + d21, d12 + d22, d13 + d23
                    c0, c1, c2, c3 = d20 - d10, d21 - d11, d22 - d12, d23 - d13
                    e0, e1, e2, e3 = d10 - d30, d11 - d31, d12 - d32, d13 - d33
                    q = o + tx
                    v[q] = a0 - a2
                    v[q + ucs] = a1 + a2
                    v[q + two * ucs] = a2 - a1
                    v[q + three * ucs] = a1 - a3
                    q += four * ucs
                    v[q] = b0 - b2
                    v[q + ucs] = b1 + b2
                    v[q + two * ucs] = b2 - b1
                    v[q + three * ucs] = b1 - b3
                    q += four * ucs
                    v[q] = c0 - c2
                    v[q + ucs] = c1 + c2
                    v[q + two * ucs] = c2 - c1
                    v[q + three * ucs] = c1 - c3
                    q += four * ucs
                    v[q] = e0 - e2
                    v[q + ucs] = e1 + e2
                    v[q + two * ucs] = e2 - e1
                    v[q + three * ucs] = e1 - e3
    return v


@njit(**_JIT)
def winograd_output(m, cs, ld, th, tw, bias, out):
    """out (B, F, OH, OW) = A^T M A + bias for each tile's 16 components in the flat array m (laid
    out as in `winograd_input`, F channels); a tile's entries past OH or OW are dropped."""
    nb, f, oh, ow = out.shape
    dst = out.reshape(-1)
    ucs, uld, uow = uint64(cs), uint64(ld), uint64(ow)
    one, two, three, four = uint64(1), uint64(2), uint64(3), uint64(4)
    for b in range(nb):
        for fi in range(f):
            bb = bias[fi]
            plane = uint64((b * f + fi) * oh * ow)
            for ty in range(th):
                o = uint64(fi) * uld + uint64((b * th + ty) * tw)
                row = plane + uint64(2 * ty) * uow
                second_row = 2 * ty + 1 < oh
                for tx in range(uint64(tw)):
                    q = o + tx
                    m00, m01, m02, m03 = m[q], m[q + ucs], m[q + two * ucs], m[q + three * ucs]
                    q += four * ucs
                    m10, m11, m12, m13 = m[q], m[q + ucs], m[q + two * ucs], m[q + three * ucs]
                    q += four * ucs
                    m20, m21, m22, m23 = m[q], m[q + ucs], m[q + two * ucs], m[q + three * ucs]
                    q += four * ucs
                    m30, m31, m32, m33 = m[q], m[q + ucs], m[q + two * ucs], m[q + three * ucs]
                    # A^T M, two rows; then each row times A
                    s0, s1 = m00 + m10 + m20, m01 + m11 + m21
                    s2, s3 = m02 + m12 + m22, m03 + m13 + m23
                    e0, e1 = m10 - m20 - m30, m11 - m21 - m31
                    e2, e3 = m12 - m22 - m32, m13 - m23 - m33
                    x = two * tx
                    second_column = x + one < uow
                    dst[row + x] = s0 + s1 + s2 + bb
                    if second_column:
                        dst[row + x + one] = s1 - s2 - s3 + bb
                    if second_row:
                        dst[row + uow + x] = e0 + e1 + e2 + bb
                        if second_column:
                            dst[row + uow + x + one] = e1 - e2 - e3 + bb
    return out


@njit(**_JIT)
def winograd_output_adjoint(dout, th, tw, dm, cs, ld):
    """dM = A dY A^T for each tile's 2x2 block dY of dout (B, F, OH, OW) (zero past OH or OW), into
    the flat array dm laid out as in `winograd_input`: the gradient of `winograd_output`'s M."""
    nb, f, oh, ow = dout.shape
    src = dout.reshape(-1)
    ucs, uld, uow = uint64(cs), uint64(ld), uint64(ow)
    one, two, three, four = uint64(1), uint64(2), uint64(3), uint64(4)
    zero = dout.dtype.type(0)
    for b in range(nb):
        for fi in range(f):
            plane = uint64((b * f + fi) * oh * ow)
            for ty in range(th):
                o = uint64(fi) * uld + uint64((b * th + ty) * tw)
                row = plane + uint64(2 * ty) * uow
                second_row = 2 * ty + 1 < oh
                for tx in range(uint64(tw)):
                    x = two * tx
                    second_column = x + one < uow
                    y00 = src[row + x]
                    y01 = src[row + x + one] if second_column else zero
                    y10 = src[row + uow + x] if second_row else zero
                    y11 = src[row + uow + x + one] if second_row and second_column else zero
                    # A dY, four rows; then each row times A^T
                    q = o + tx
                    dm[q] = y00
                    dm[q + ucs] = y00 + y01
                    dm[q + two * ucs] = y00 - y01
                    dm[q + three * ucs] = -y01
                    q += four * ucs
                    r0, r1 = y00 + y10, y01 + y11
                    dm[q] = r0
                    dm[q + ucs] = r0 + r1
                    dm[q + two * ucs] = r0 - r1
                    dm[q + three * ucs] = -r1
                    q += four * ucs
                    r0, r1 = y00 - y10, y01 - y11
                    dm[q] = r0
                    dm[q + ucs] = r0 + r1
                    dm[q + two * ucs] = r0 - r1
                    dm[q + three * ucs] = -r1
                    q += four * ucs
                    r0, r1 = -y10, -y11
                    dm[q] = r0
                    dm[q + ucs] = r0 + r1
                    dm[q + two * ucs] = r0 - r1
                    dm[q + three * ucs] = -r1
    return dm


@njit(**_JIT)
def winograd_input_adjoint(dv, cs, ld, th, tw, dxpad):
    """Fold dd = B dV B^T of each tile (16 components in the flat array dv, laid out as in
    `winograd_input`) into the 4x4 patch at (2*ty, 2*tx) of dxpad (B, C, Hp, Wp), summing where
    patches overlap; every entry of dxpad is overwritten first. The gradient of `winograd_input`."""
    nb, c, hp, wp = dxpad.shape
    dst = dxpad.reshape(-1)
    dst[:] = 0
    ucs, uld, uwp = uint64(cs), uint64(ld), uint64(wp)
    one, two, three, four = uint64(1), uint64(2), uint64(3), uint64(4)
    for b in range(nb):
        for ci in range(c):
            plane = uint64((b * c + ci) * hp * wp)
            for ty in range(th):
                p0 = plane + uint64(2 * ty) * uwp
                o = uint64(ci) * uld + uint64((b * th + ty) * tw)
                for tx in range(uint64(tw)):
                    q = o + tx
                    v00, v01, v02, v03 = dv[q], dv[q + ucs], dv[q + two * ucs], dv[q + three * ucs]
                    q += four * ucs
                    v10, v11, v12, v13 = dv[q], dv[q + ucs], dv[q + two * ucs], dv[q + three * ucs]
                    q += four * ucs
                    v20, v21, v22, v23 = dv[q], dv[q + ucs], dv[q + two * ucs], dv[q + three * ucs]
                    q += four * ucs
                    v30, v31, v32, v33 = dv[q], dv[q + ucs], dv[q + two * ucs], dv[q + three * ucs]
                    # B dV: rows v0, v1 - v2 + v3, v1 + v2 - v0, -v3; then each row times B^T:
                    # (w0, w1, w2, w3) -> (w0, w1 - w2 + w3, w1 + w2 - w0, -w3)
                    a0, a1, a2, a3 = v00, v01, v02, v03
                    b0, b1 = v10 - v20 + v30, v11 - v21 + v31
                    b2, b3 = v12 - v22 + v32, v13 - v23 + v33
                    c0, c1 = v10 + v20 - v00, v11 + v21 - v01
                    c2, c3 = v12 + v22 - v02, v13 + v23 - v03
                    e0, e1, e2, e3 = -v30, -v31, -v32, -v33
                    r = p0 + two * tx
                    dst[r] += a0
                    dst[r + one] += a1 - a2 + a3
                    dst[r + two] += a1 + a2 - a0
                    dst[r + three] -= a3
                    r += uwp
                    dst[r] += b0
                    dst[r + one] += b1 - b2 + b3
                    dst[r + two] += b1 + b2 - b0
                    dst[r + three] -= b3
                    r += uwp
                    dst[r] += c0
                    dst[r + one] += c1 - c2 + c3
                    dst[r + two] += c1 + c2 - c0
                    dst[r + three] -= c3
                    r += uwp
                    dst[r] += e0
                    dst[r + one] += e1 - e2 + e3
                    dst[r + two] += e1 + e2 - e0
                    dst[r + three] -= e3
    return dxpad
