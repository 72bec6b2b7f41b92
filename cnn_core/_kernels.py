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
    row-major order within its window (strict comparison keeps the first of equal values). A NaN
    is a window's maximum, as in numpy's max and PyTorch: the first NaN is taken.
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
                        better = (v > best) | ((v != v) & (best == best))
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
    uw, uow, two, one = uint64(w), uint64(ow), uint64(2), uint64(1)
    for plane in range(uint64(n * c)):
        base = plane * uint64(h * w)
        o = plane * uint64(oh * ow)
        for y in range(uint64(oh)):
            top = base + two * y * uw
            bottom = top + uw
            nans = False
            for z in range(uow):
                # the comparisons of maxpool_forward in the same order, as selects
                v0, v1 = src[top + two * z], src[top + two * z + one]
                v2, v3 = src[bottom + two * z], src[bottom + two * z + one]
                best, at = v0, uint8(0)
                best, at = (v1, uint8(1)) if v1 > best else (best, at)
                best, at = (v2, uint8(2)) if v2 > best else (best, at)
                best, at = (v3, uint8(3)) if v3 > best else (best, at)
                out[o + z] = best
                where[o + z] = at
                nans |= (v0 != v0) | (v1 != v1) | (v2 != v2) | (v3 != v3)
            if nans:  # rare: a window holding a NaN gives its first NaN instead (a NaN test
                # in each comparison above kept LLVM from vectorising the loop on AVX2)
                for z in range(uow):
                    for k in range(4):
                        v = src[(top if k < 2 else bottom) + two * z + uint64(k & 1)]
                        if v != v:
                            out[o + z] = v
                            where[o + z] = uint8(k)
                            break
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
# taken elementwise over 16 components and summed over channels: 16 matrix products of (tiles, C)
# by (C, F), 2.25 times fewer multiplications than im2col's. The kernels below are the transforms
# on either side of those products and their adjoints for the backward pass:
#
#     B^T = [1  0 -1  0]     G = [ 1    0    0 ]     A^T = [1  1  1  0]
#           [0  1  1  0]         [1/2  1/2  1/2]           [0  1 -1 -1]
#           [0 -1  1  0]         [1/2 -1/2  1/2]
#           [0  1  0 -1]         [ 0    0    1 ]
#
# Images are channels last here, (B, H, W, C): a row of a patch is then 4C contiguous numbers and
# every loop below runs over channels, which LLVM vectorises. A transformed array holds component
# k = 4*i + j of tile t = (b*TH + ty)*TW + tx, channel c at flat index k*cs + t*ld + c: each
# (tiles, channel) matrix of a component is a BLAS operand with leading dimension ld, and the
# components lie cs apart, cs chosen so that the 16 streams a tile touches do not share cache sets
# (`cnn_core.functional` picks ld and cs). Each loop stores one stream and loads at most four: more
# would exceed the overlap tests LLVM makes before it vectorises a loop. `tmp` is scratch of at
# least 16*C elements for the input transforms and 8*F for the output ones. Only additions and
# subtractions, no fastmath: `cnn_core.functional` repeats the forward ones with numpy, in the same
# order, before numba is loaded, and gets the same bits.


@njit(inline="always")
def _column(t, j, cs):
    """Flat indices of components j, 4 + j, 8 + j and 12 + j (column j of the 4x4) of the tile
    whose first entry is at t, components lying cs apart."""
    q0 = uint64(j) * cs + t
    return q0, q0 + uint64(4) * cs, q0 + uint64(8) * cs, q0 + uint64(12) * cs


@njit(**_JIT)
def winograd_input(xh, th, tw, v, cs, ld, tmp):
    """V = B^T d B for the 4x4 patch d at (2*ty, 2*tx) of each tile of xh (B, Hp, Wp, C), into the
    flat array v (component k of tile t, channel c at k*cs + t*ld + c). Hp >= 2*TH + 2, Wp likewise."""
    nb, hp, wp, c = xh.shape
    src = xh.reshape(-1)
    uc, ucs, uld = uint64(c), uint64(cs), uint64(ld)
    row, quad = uint64(wp * c), uint64(4 * c)
    two, three = uint64(2), uint64(3)
    for b in range(nb):
        for ty in range(th):
            for tx in range(tw):
                p0 = uint64(((b * hp + 2 * ty) * wp + 2 * tx) * c)
                p1, p2 = p0 + row, p0 + two * row
                p3 = p2 + row
                # B^T d: the four rows of the patch (4C numbers each) combined
                for e in range(quad):
                    tmp[e] = src[p0 + e] - src[p2 + e]
                for e in range(quad):
                    tmp[quad + e] = src[p1 + e] + src[p2 + e]
                for e in range(quad):
                    tmp[two * quad + e] = src[p2 + e] - src[p1 + e]
                for e in range(quad):
                    tmp[three * quad + e] = src[p1 + e] - src[p3 + e]
                # each row times B, into components 4i .. 4i + 3
                t = uint64((b * th + ty) * tw + tx) * uld
                for i in range(4):
                    r0 = uint64(i) * quad
                    r1, r2 = r0 + uc, r0 + two * uc
                    r3 = r2 + uc
                    q = uint64(4 * i) * ucs + t
                    for ci in range(uc):
                        v[q + ci] = tmp[r0 + ci] - tmp[r2 + ci]
                    q += ucs
                    for ci in range(uc):
                        v[q + ci] = tmp[r1 + ci] + tmp[r2 + ci]
                    q += ucs
                    for ci in range(uc):
                        v[q + ci] = tmp[r2 + ci] - tmp[r1 + ci]
                    q += ucs
                    for ci in range(uc):
                        v[q + ci] = tmp[r1 + ci] - tmp[r3 + ci]
    return v


@njit(**_JIT)
def winograd_output(m, cs, ld, th, tw, bias, outh, tmp):
    """outh (B, 2*TH, 2*TW, F) = A^T M A + bias for each tile's 16 components in the flat array m
    (laid out as in `winograd_input`, F channels)."""
    nb, _, _, f = outh.shape
    dst = outh.reshape(-1)
    uf, ucs, uld = uint64(f), uint64(cs), uint64(ld)
    row = uint64(2 * tw * f)
    two = uint64(2)
    for b in range(nb):
        for ty in range(th):
            for tx in range(tw):
                t = uint64((b * th + ty) * tw + tx) * uld
                # A^T M: sums s_j = M_0j + M_1j + M_2j and differences e_j = M_1j - M_2j - M_3j
                for j in range(4):
                    q0, q1, q2, q3 = _column(t, j, ucs)
                    s, e = uint64(j) * uf, uint64(4 + j) * uf
                    for fi in range(uf):
                        tmp[s + fi] = m[q0 + fi] + m[q1 + fi] + m[q2 + fi]
                    for fi in range(uf):
                        tmp[e + fi] = m[q1 + fi] - m[q2 + fi] - m[q3 + fi]
                # each row times A, plus the bias: the tile's 2x2 outputs
                o = uint64((b * th + ty) * 4 * tw + 2 * tx) * uf
                for r in range(2):
                    a0 = uint64(4 * r) * uf
                    a1, a2 = a0 + uf, a0 + two * uf
                    a3 = a2 + uf
                    for fi in range(uf):
                        dst[o + fi] = tmp[a0 + fi] + tmp[a1 + fi] + tmp[a2 + fi] + bias[fi]
                    for fi in range(uf):
                        dst[o + uf + fi] = tmp[a1 + fi] - tmp[a2 + fi] - tmp[a3 + fi] + bias[fi]
                    o += row
    return outh


@njit(**_JIT)
def winograd_output_adjoint(douth, th, tw, dm, cs, ld, tmp):
    """dM = A dY A^T for each tile's 2x2 block dY of douth (B, 2*TH, 2*TW, F), into the flat array
    dm laid out as in `winograd_input`: the gradient of `winograd_output`'s M."""
    nb, _, _, f = douth.shape
    src = douth.reshape(-1)
    uf, ucs, uld = uint64(f), uint64(cs), uint64(ld)
    row, pair = uint64(2 * tw * f), uint64(2 * f)
    two, three = uint64(2), uint64(3)
    for b in range(nb):
        for ty in range(th):
            for tx in range(tw):
                y0 = uint64((b * th + ty) * 4 * tw + 2 * tx) * uf
                y1 = y0 + row
                # A dY: rows Y0, Y0 + Y1, Y0 - Y1, -Y1 (2F numbers each)
                for e in range(pair):
                    tmp[e] = src[y0 + e]
                for e in range(pair):
                    tmp[pair + e] = src[y0 + e] + src[y1 + e]
                for e in range(pair):
                    tmp[two * pair + e] = src[y0 + e] - src[y1 + e]
                for e in range(pair):
                    tmp[three * pair + e] = -src[y1 + e]
                # each row (p0, p1) times A^T: p0, p0 + p1, p0 - p1, -p1
                t = uint64((b * th + ty) * tw + tx) * uld
                for i in range(4):
                    p0 = uint64(i) * pair
                    p1 = p0 + uf
                    q = uint64(4 * i) * ucs + t
                    for fi in range(uf):
                        dm[q + fi] = tmp[p0 + fi]
                    q += ucs
                    for fi in range(uf):
                        dm[q + fi] = tmp[p0 + fi] + tmp[p1 + fi]
                    q += ucs
                    for fi in range(uf):
                        dm[q + fi] = tmp[p0 + fi] - tmp[p1 + fi]
                    q += ucs
                    for fi in range(uf):
                        dm[q + fi] = -tmp[p1 + fi]
    return dm


@njit(**_JIT)
def winograd_input_adjoint(dv, cs, ld, th, tw, dxh, tmp):
    """Fold dd = B dV B^T of each tile (16 components in the flat array dv, laid out as in
    `winograd_input`) into the 4x4 patch at (2*ty, 2*tx) of dxh (B, Hp, Wp, C), summing where
    patches overlap; every entry of dxh is overwritten first. The gradient of `winograd_input`."""
    nb, hp, wp, c = dxh.shape
    dst = dxh.reshape(-1)
    dst[:] = 0
    uc, ucs, uld = uint64(c), uint64(cs), uint64(ld)
    row, quad = uint64(wp * c), uint64(4 * c)
    two, three = uint64(2), uint64(3)
    for b in range(nb):
        for ty in range(th):
            for tx in range(tw):
                # B dV: rows V_0, V_1 - V_2 + V_3, V_1 + V_2 - V_0, -V_3, stored as 4 rows of 4C
                t = uint64((b * th + ty) * tw + tx) * uld
                for j in range(4):
                    q0, q1, q2, q3 = _column(t, j, ucs)
                    a = uint64(j) * uc
                    for ci in range(uc):
                        tmp[a + ci] = dv[q0 + ci]
                    a += quad
                    for ci in range(uc):
                        tmp[a + ci] = dv[q1 + ci] - dv[q2 + ci] + dv[q3 + ci]
                    a += quad
                    for ci in range(uc):
                        tmp[a + ci] = dv[q1 + ci] + dv[q2 + ci] - dv[q0 + ci]
                    a += quad
                    for ci in range(uc):
                        tmp[a + ci] = -dv[q3 + ci]
                # each row (w0, w1, w2, w3) times B^T: w0, w1 - w2 + w3, w1 + w2 - w0, -w3
                r = uint64(((b * hp + 2 * ty) * wp + 2 * tx) * c)
                for i in range(4):
                    w0 = uint64(i) * quad
                    w1, w2 = w0 + uc, w0 + two * uc
                    w3 = w2 + uc
                    for ci in range(uc):
                        dst[r + ci] += tmp[w0 + ci]
                    for ci in range(uc):
                        dst[r + uc + ci] += tmp[w1 + ci] - tmp[w2 + ci] + tmp[w3 + ci]
                    for ci in range(uc):
                        dst[r + two * uc + ci] += tmp[w1 + ci] + tmp[w2 + ci] - tmp[w0 + ci]
                    for ci in range(uc):
                        dst[r + three * uc + ci] -= tmp[w3 + ci]
                    r += row
    return dxh
