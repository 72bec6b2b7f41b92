"""The layers of a CNN as plain functions: the fast path.

Every `*_forward` returns `(out, cache)` and every `*_backward(dout, cache)` returns the gradients
of its inputs. Layout is NCHW; convolution is cross-correlation with zero padding, as in deep-learning
frameworks; output size floor((n + 2p - k) / s) + 1. float32 and float64 both work and outputs keep
the input's dtype. Convolution is im2col + a BLAS matrix product (dW = dS . X_col^T,
dX = col2im(W^T . dS)), or for 3x3 windows at stride 1 between wide layers Winograd's F(2x2, 3x3),
done a cache-sized chunk of the batch at a time, the chunks on several threads; im2col, col2im,
the Winograd transforms, pooling and ReLU run in numba kernels, compiled on first use and cached
on disk. `cnn_core.naive` has the same functions as readable loops.
"""

from __future__ import annotations

import math
import sys
from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from cnn_core import _checks, _guard, _threads

__all__ = [
    "conv1d_forward",
    "conv1d_backward",
    "conv2d_forward",
    "conv2d_backward",
    "conv2d_backward_weights",
    "maxpool2d_forward",
    "maxpool2d_backward",
    "avgpool2d_forward",
    "avgpool2d_backward",
    "global_avgpool2d_forward",
    "global_avgpool2d_backward",
    "dropout_forward",
    "dropout_backward",
    "relu_forward",
    "relu_backward",
    "leaky_relu_forward",
    "leaky_relu_backward",
    "elu_forward",
    "elu_backward",
    "sigmoid_forward",
    "sigmoid_backward",
    "tanh_forward",
    "tanh_backward",
    "linear_forward",
    "linear_backward",
    "batchnorm_forward",
    "batchnorm_backward",
    "batchnorm2d_forward",
    "batchnorm2d_backward",
    "softmax_cross_entropy",
    "mse_loss",
    "sigmoid_binary_cross_entropy",
]


def _kernels():
    """The numba kernels, imported on first use so that `import cnn_core` stays quick."""
    from cnn_core import _kernels as k

    return k


# --------------------------------------------------------------------------- convolution


def _im2col(
    x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]
) -> np.ndarray:
    """Unfold x (N, C, H, W) into X_col (C*KH*KW, N*OH*OW), one column per output position.

    Row (c, i, j) holds x[n, c, y*sh + i - ph, z*sw + j - pw] at column (n, y, z), zero outside
    the input, so that a convolution is the single matrix product W.reshape(F, -1) @ X_col.
    """
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    n, c = x.shape[:2]
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    windows = sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]  # (N,C,OH,OW,KH,KW)
    oh, ow = windows.shape[2:4]
    return np.ascontiguousarray(windows.transpose(1, 4, 5, 0, 2, 3)).reshape(
        c * kh * kw, n * oh * ow
    )


class ConvCache(NamedTuple):
    xpad: np.ndarray  # (N, C, H + 2*ph, W + 2*pw) a zero-padded copy of the input; channels
    # last and padded to whole tiles, (N, Hp, Wp, C), for a Winograd layer
    w: np.ndarray  # (F, C, KH, KW)
    x_shape: tuple[int, ...]  # (N, C, H, W)
    stride: tuple[int, int]
    padding: tuple[int, int]
    out_shape: tuple[int, ...]  # (N, F, OH, OW)
    xflat: np.ndarray  # xpad's memory, flat, with _SLACK more elements past its end


# Elements addressable past the end of a padded input and of a chunk's columns: im2col copies rows
# in blocks of 16 that may run past them (`cnn_core._kernels.im2col_padded`).
_SLACK = 16


def _padded_zeros(shape: tuple[int, ...], dtype) -> tuple[np.ndarray, np.ndarray]:
    """A zero array of `shape` and the flat array it views, _SLACK elements longer."""
    size = math.prod(shape)
    flat = np.zeros(size + _SLACK, dtype)
    return flat[:size].reshape(shape), flat


# Bytes of a chunk's unfolded input; None: the cache one core has to itself, as the CPU reports
# it (`_threads.core_cache_bytes`, 1 MiB on a core with 1 MiB of L2), so that im2col, the
# products and col2im of a chunk work in that cache. Fixed by the shapes and the CPU alone, never
# by the thread count, so results do not depend on it. (Tests set it to 1: one image a chunk.)
_CHUNK_BYTES: int | None = None


def _chunk_images(cache: ConvCache) -> int:
    """Images per chunk for this convolution (at least one)."""
    _, c, kh, kw = cache.w.shape
    _, _, oh, ow = cache.out_shape
    return _images_within(cache, c * kh * kw * oh * ow * cache.xpad.itemsize)


def _images_within(cache: ConvCache, per_image: int) -> int:
    """Images per chunk when each takes `per_image` bytes of the chunk budget, evened out."""
    budget = _CHUNK_BYTES or _threads.core_cache_bytes()
    return _balanced(cache.x_shape[0], budget // max(1, per_image))


def _balanced(n: int, most: int) -> int:
    """Images per chunk, at most `most`, for the fewest chunks of a batch of n, evened out: 64
    images at most 9 a chunk run as 8 chunks of 8, not 7 of 9 and one of 1 (the threads then
    share them evenly). It does not depend on the thread count."""
    chunks = -(-n // max(1, most))
    return max(1, -(-n // max(1, chunks)))


def _unfold(cache: ConvCache, start: int, stop: int) -> np.ndarray:
    """X_col of images [start, stop): (B, C*KH*KW, OH*OW), in the calling thread's scratch memory
    (overwritten by its next chunk)."""
    _, c, kh, kw = cache.w.shape
    _, _, oh, ow = cache.out_shape
    xpad = cache.xpad[start:stop]
    shape = (stop - start, c * kh * kw, oh * ow)
    flat = _threads.scratch("cols", (math.prod(shape) + _SLACK,), xpad.dtype)
    cols = flat[: math.prod(shape)].reshape(shape)
    if "cnn_core._kernels" in sys.modules:
        _, _, hp, wp = xpad.shape
        _kernels().im2col_padded(
            cache.xflat,
            start * c * hp * wp,
            stop - start,
            c,
            hp,
            wp,
            kh,
            kw,
            *cache.stride,
            oh,
            ow,
            flat,
        )
        return cols
    # Until an op has loaded numba (about 0.4 s, once a process), copy with numpy: the same
    # columns, about 3x slower, so that a forward pass alone never waits for numba.
    sh, sw = cache.stride
    blocks = cols.reshape(stop - start, c, kh, kw, oh, ow)
    for i in range(kh):
        for j in range(kw):
            blocks[:, :, i, j] = xpad[
                :, :, i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw
            ]
    return cols


def _conv2d(op: str, x, w, b, stride, padding, spatial: int):
    x, w, b, stride, padding, out_size = _checks.conv_args(op, x, w, b, stride, padding, spatial)
    if spatial == 1:  # a 1D convolution is a 2D one over a height-1 image
        x, w = x[:, :, None, :], w[:, :, None, :]
        stride, padding, out_size = (1, *stride), (0, *padding), (1, *out_size)
    n, c, h, wd = x.shape
    f = w.shape[0]
    (ph, pw), (oh, ow) = padding, out_size
    winograd = _winograd(c, f, w.shape[2:], stride)
    if winograd:  # channels last, whole 4x4 patches under every 2x2 output tile
        xpad, xflat = _padded_zeros((n, oh + oh % 2 + 2, ow + ow % 2 + 2, c), x.dtype)
    else:
        xpad, xflat = _padded_zeros((n, c, h + 2 * ph, wd + 2 * pw), x.dtype)
    out = np.empty((n, f, oh, ow), dtype=x.dtype)
    cache = ConvCache(xpad, np.ascontiguousarray(w), x.shape, stride, padding, out.shape, xflat)
    w_row = cache.w.reshape(f, -1)
    ut = np.ascontiguousarray(_winograd_filter(cache.w).transpose(0, 2, 1)) if winograd else None

    def chunk(start: int, stop: int) -> None:
        part = out[start:stop]
        if winograd:
            xpad[start:stop, ph : ph + h, pw : pw + wd] = x[start:stop].transpose(0, 2, 3, 1)
            _winograd_forward(xpad[start:stop], ut, b, part)
            return
        xpad[start:stop, :, ph : ph + h, pw : pw + wd] = x[start:stop]
        np.matmul(w_row, _unfold(cache, start, stop), out=part.reshape(stop - start, f, oh * ow))
        part += b[:, None, None]

    _threads.map_chunks(chunk, n, _winograd_images(cache) if winograd else _chunk_images(cache))
    return out, cache


def _conv2d_backward(op: str, dout, cache: ConvCache, spatial: int, input_grad: bool = True):
    n, f, oh, ow = cache.out_shape
    dout = _checks.dout_like(
        op, dout, cache.out_shape if spatial == 2 else (n, f, ow), cache.xpad.dtype
    )
    dout = np.ascontiguousarray(dout).reshape(n, f, oh * ow)
    w_row = cache.w.reshape(f, -1)
    (ph, pw), (_, _, h, wd), (_, _, kh, kw) = cache.padding, cache.x_shape, cache.w.shape
    dx = np.empty(cache.x_shape, cache.xpad.dtype) if input_grad else None

    def chunk(start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        cols = _unfold(cache, start, stop)
        ds = dout[start:stop]  # (B, F, OH*OW)
        dw_t = np.matmul(cols, ds.transpose(0, 2, 1)).sum(axis=0)  # dW^T = X_col . dS^T
        db = ds.sum(axis=(0, 2))
        if dx is not None:
            dcols = np.matmul(w_row.T, ds, out=cols)  # W^T . dS, folded back below
            dxpad = _threads.scratch("dxpad", (stop - start, *cache.xpad.shape[1:]), cols.dtype)
            _kernels().col2im_padded(dcols, kh, kw, *cache.stride, oh, ow, dxpad)
            dx[start:stop] = dxpad[:, :, ph : ph + h, pw : pw + wd]
        return dw_t, db

    if _winograd(cache.w.shape[1], f, (kh, kw), cache.stride):
        dw, db = _winograd_backward(dout, cache, dx)
    else:
        dw_t, db = np.zeros((w_row.shape[1], f), dout.dtype), np.zeros(f, dout.dtype)
        for part_dw_t, part_db in _threads.map_chunks(chunk, n, _chunk_images(cache)):
            dw_t += part_dw_t  # in chunk order, whichever thread ran them: same bits every run
            db += part_db
        dw = dw_t.T.reshape(cache.w.shape)
    if spatial == 1:
        dw = dw[:, :, 0, :]
        dx = None if dx is None else dx[:, :, 0, :]
    return (dx, dw, db) if input_grad else (dw, db)


# --------------------------------------------------------------------------- Winograd F(2x2, 3x3)
#
# 3x3 windows at stride 1 between layers of at least 16 channels (VGG's and ResNet's bodies) run as
# Winograd's minimal filtering algorithm, the transforms in cnn_core._kernels (see there): 16
# products of (tiles, C) by (C, F) per chunk instead of one of (F, 9C) by (9C, 4 * tiles), 2.25
# times fewer multiplications. The layer keeps its padded input channels last, which the
# transforms read and write in vector loops; the chunk's input, output and gradients change layout
# on the way in and out. Its rounding differs from im2col's by about as much as im2col's from
# PyTorch's. Fewer channels leave the products too small to gain from it.

_WINOGRAD_CHANNELS = 16


def _winograd(c: int, f: int, kernel: tuple[int, ...], stride: tuple[int, int]) -> bool:
    """Whether a convolution takes the Winograd path (decided by its shapes alone)."""
    return tuple(kernel) == (3, 3) and stride == (1, 1) and min(c, f) >= _WINOGRAD_CHANNELS


def _tiles(oh: int, ow: int) -> tuple[int, int]:
    """Tile rows and columns: 2x2 output blocks covering (OH, OW)."""
    return (oh + 1) // 2, (ow + 1) // 2


def _winograd_images(cache: ConvCache) -> int:
    """Images per chunk: the larger of a chunk's transformed input and output (16 components of
    (tiles, C) or (tiles, F)) within the core's cache, as im2col's columns."""
    f, c = cache.w.shape[:2]
    th, tw = _tiles(*cache.out_shape[2:])
    return _images_within(cache, 16 * max(c, f) * th * tw * cache.xpad.itemsize)


def _components(name: str, tiles: int, cols: int, dtype) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Scratch for 16 components of a (tiles, cols) matrix each: the flat buffer, its (16, tiles,
    cols) view for the products, the leading dimension ld and the component stride cs. cs is
    16 elements past a multiple of 1024, so the 16 entries of one tile fall in different cache sets
    (a power-of-two stride made the transforms 2-4 times slower)."""
    ld = cols + (-cols) % 16
    cs = (tiles * ld + 1023) // 1024 * 1024 + 16
    flat = _threads.scratch(name, (16 * cs,), dtype)
    view = flat.reshape(16, cs)[:, : tiles * ld].reshape(16, tiles, ld)[:, :, :cols]
    return flat, view, ld, cs


def _winograd_filter(w: np.ndarray) -> np.ndarray:
    """U = G g G^T for each 3x3 filter g of w (F, C, 3, 3): (16, F, C), component 4*a + b."""
    half = w.dtype.type(0.5)

    def side(g0, g1, g2):  # G times a column (or a row times G^T)
        return g0, (g0 + g1 + g2) * half, (g0 - g1 + g2) * half, g2

    right = [side(w[:, :, i, 0], w[:, :, i, 1], w[:, :, i, 2]) for i in range(3)]  # g G^T
    u = np.empty((16, *w.shape[:2]), w.dtype)
    for bcol in range(4):
        for a, value in enumerate(side(right[0][bcol], right[1][bcol], right[2][bcol])):
            u[4 * a + bcol] = value
    return u


def _winograd_filter_adjoint(du: np.ndarray) -> np.ndarray:
    """dg = G^T dU G for du (16, F, C): the gradient of `_winograd_filter`, (F, C, 3, 3)."""
    half = du.dtype.type(0.5)

    def side(u0, u1, u2, u3):  # G^T times a column of four
        return u0 + (u1 + u2) * half, (u1 - u2) * half, (u1 + u2) * half + u3

    right = [side(*(du[4 * a + bcol] for bcol in range(4))) for a in range(4)]  # dU G
    dw = np.empty((*du.shape[1:], 3, 3), du.dtype)
    for j in range(3):
        for i, value in enumerate(side(*(right[a][j] for a in range(4)))):
            dw[:, :, i, j] = value
    return dw


def _winograd_forward(xh: np.ndarray, ut: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
    """out (B, F, OH, OW) of a chunk from its padded channels-last input xh (B, Hp, Wp, C) and
    U^T (16, C, F)."""
    nb, _, _, c = xh.shape
    f, oh, ow = out.shape[1:]
    th, tw = _tiles(oh, ow)
    tiles = nb * th * tw
    v, v3, ld_v, cs_v = _components("winograd_v", tiles, c, xh.dtype)
    m, m3, ld_m, cs_m = _components("winograd_m", tiles, f, xh.dtype)
    outh = _threads.scratch("winograd_out", (nb, 2 * th, 2 * tw, f), xh.dtype)
    if "cnn_core._kernels" in sys.modules:
        tmp = _threads.scratch("winograd_tmp", (16 * max(ld_v, ld_m),), xh.dtype)
        _kernels().winograd_input(xh, th, tw, v, cs_v, ld_v, tmp)
        np.matmul(v3, ut, out=m3)
        _kernels().winograd_output(m, cs_m, ld_m, th, tw, b, outh, tmp)
    else:  # until an op has loaded numba: the same sums with numpy, so the same bits
        d = [[xh[:, i : i + 2 * th : 2, j : j + 2 * tw : 2] for j in range(4)] for i in range(4)]
        rows = (
            [d[0][j] - d[2][j] for j in range(4)],
            [d[1][j] + d[2][j] for j in range(4)],
            [d[2][j] - d[1][j] for j in range(4)],
            [d[1][j] - d[3][j] for j in range(4)],
        )
        for i, (r0, r1, r2, r3) in enumerate(rows):
            for j, value in enumerate((r0 - r2, r1 + r2, r2 - r1, r1 - r3)):
                v3[4 * i + j] = value.reshape(tiles, c)
        np.matmul(v3, ut, out=m3)
        mm = [[m3[4 * i + j].reshape(nb, th, tw, f) for j in range(4)] for i in range(4)]
        s = [mm[0][j] + mm[1][j] + mm[2][j] for j in range(4)]
        e = [mm[1][j] - mm[2][j] - mm[3][j] for j in range(4)]
        outh[:, 0::2, 0::2] = s[0] + s[1] + s[2] + b
        outh[:, 0::2, 1::2] = s[1] - s[2] - s[3] + b
        outh[:, 1::2, 0::2] = e[0] + e[1] + e[2] + b
        outh[:, 1::2, 1::2] = e[1] - e[2] - e[3] + b
    out[...] = outh[:, :oh, :ow].transpose(0, 3, 1, 2)


def _winograd_backward(dout: np.ndarray, cache: ConvCache, dx: np.ndarray | None):
    """dw and db of a Winograd convolution, and dx into `dx` unless it is None.
    dout: (N, F, OH*OW), C-contiguous; cache.xpad is channels last."""
    n, f, oh, ow = cache.out_shape
    c = cache.w.shape[1]
    (ph, pw), (_, _, h, wd) = cache.padding, cache.x_shape
    th, tw = _tiles(oh, ow)
    u = _winograd_filter(cache.w)
    kernels = _kernels()

    def chunk(start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        nb = stop - start
        ds = dout[start:stop]
        tiles = nb * th * tw
        douth = _threads.scratch("winograd_out", (nb, 2 * th, 2 * tw, f), ds.dtype)
        douth[:, :oh, :ow] = ds.reshape(nb, f, oh, ow).transpose(0, 2, 3, 1)
        douth[:, oh:] = 0  # the missing row and column of partial tiles
        douth[:, :, ow:] = 0
        dm, dm3, ld_m, cs_m = _components("winograd_m", tiles, f, ds.dtype)
        v, v3, ld_v, cs_v = _components("winograd_v", tiles, c, ds.dtype)
        tmp = _threads.scratch("winograd_tmp", (16 * max(ld_v, ld_m),), ds.dtype)
        kernels.winograd_output_adjoint(douth, th, tw, dm, cs_m, ld_m, tmp)
        kernels.winograd_input(cache.xpad[start:stop], th, tw, v, cs_v, ld_v, tmp)
        du = np.matmul(dm3.transpose(0, 2, 1), v3)  # (16, F, C)
        db = ds.sum(axis=(0, 2))
        if dx is not None:
            dv, dv3, _, _ = _components("winograd_dv", tiles, c, ds.dtype)
            np.matmul(dm3, u, out=dv3)
            dxh = _threads.scratch("dxpad", (nb, *cache.xpad.shape[1:]), ds.dtype)
            kernels.winograd_input_adjoint(dv, cs_v, ld_v, th, tw, dxh, tmp)
            dx[start:stop] = dxh[:, ph : ph + h, pw : pw + wd].transpose(0, 3, 1, 2)
        return du, db

    du, db = np.zeros((16, f, c), dout.dtype), np.zeros(f, dout.dtype)
    for part_du, part_db in _threads.map_chunks(chunk, n, _winograd_images(cache)):
        du += part_du  # in chunk order, whichever thread ran them: same bits every run
        db += part_db
    return _winograd_filter_adjoint(du), db


def conv2d_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride=1, padding=0):
    """2D convolution (cross-correlation) with zero padding.

    x: (N, C, H, W); w: (F, C, KH, KW); b: (F,); stride, padding: int or (vertical, horizontal).
    Returns out (N, F, OH, OW) with OH = (H + 2*ph - KH) // sh + 1, OW likewise, and a cache.
    """
    return _conv2d("conv2d_forward", x, w, b, stride, padding, 2)


def conv2d_backward(dout: np.ndarray, cache: ConvCache):
    """Gradients of a 2D convolution. dout: (N, F, OH, OW). Returns dx (N, C, H, W), dw, db."""
    return _conv2d_backward("conv2d_backward", dout, cache, 2)


def conv2d_backward_weights(dout: np.ndarray, cache: ConvCache):
    """dw and db of a 2D convolution without dx: for a first layer, whose input needs no gradient
    (this skips the product W^T . dS and col2im, about half of the backward pass)."""
    return _conv2d_backward("conv2d_backward_weights", dout, cache, 2, input_grad=False)


def conv1d_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray, stride=1, padding=0):
    """1D convolution (cross-correlation) with zero padding.

    x: (N, C, L); w: (F, C, K); b: (F,); stride, padding: int.
    Returns out (N, F, OL) with OL = (L + 2*padding - K) // stride + 1, and a cache.
    """
    out, cache = _conv2d("conv1d_forward", x, w, b, stride, padding, 1)
    return out[:, :, 0, :], cache


def conv1d_backward(dout: np.ndarray, cache: ConvCache):
    """Gradients of a 1D convolution. dout: (N, F, OL). Returns dx (N, C, L), dw (F, C, K), db (F,)."""
    return _conv2d_backward("conv1d_backward", dout, cache, 1)


# --------------------------------------------------------------------------- pooling


class PoolCache(NamedTuple):
    x_shape: tuple[int, ...]  # (N, C, H, W)
    kernel: tuple[int, int]
    stride: tuple[int, int]
    out_shape: tuple[int, ...]  # (N, C, OH, OW)
    dtype: np.dtype
    # Max pooling only, (N, C, OH, OW): where each window's first maximum lies, as a flat index
    # into its H*W plane (int32), or for 2x2 windows at stride 2 as its offset 2*i + j (uint8).
    argmax: np.ndarray | None


def maxpool2d_forward(x: np.ndarray, kernel_size, stride=None):
    """Max pooling. x: (N, C, H, W); kernel_size, stride: int or pair, stride defaults to the kernel.

    Returns out (N, C, OH, OW), OH = (H - KH) // sh + 1, and a cache. Windows may overlap
    (AlexNet's 3x3 stride 2); the first maximum in row-major order receives the gradient. A NaN
    counts as its window's maximum, so the output is NaN as in PyTorch; the first NaN takes the
    gradient (PyTorch gives it to the last).
    """
    x, kernel, stride, (oh, ow) = _checks.pool_args("maxpool2d_forward", x, kernel_size, stride)
    x = np.ascontiguousarray(x)
    if _pairs(kernel, stride):
        out, arg = _kernels().maxpool2x2_forward(x, oh, ow)
    else:
        out, arg = _kernels().maxpool_forward(x, *kernel, *stride, oh, ow)
    return out, PoolCache(x.shape, kernel, stride, out.shape, x.dtype, arg)


def _pairs(kernel: tuple[int, int], stride: tuple[int, int]) -> bool:
    """Whether pooling takes the vectorised path of 2x2 windows at stride 2."""
    return kernel == (2, 2) and stride == (2, 2)


def maxpool2d_backward(dout: np.ndarray, cache: PoolCache) -> np.ndarray:
    """Gradient of max pooling. dout: (N, C, OH, OW). Returns dx (N, C, H, W)."""
    dout = np.ascontiguousarray(
        _checks.dout_like("maxpool2d_backward", dout, cache.out_shape, cache.dtype)
    )
    _, _, h, w = cache.x_shape
    if _pairs(cache.kernel, cache.stride):
        return _kernels().maxpool2x2_backward(dout, cache.argmax, h, w)
    return _kernels().maxpool_backward(dout, cache.argmax, h, w)


def avgpool2d_forward(x: np.ndarray, kernel_size, stride=None):
    """Average pooling. x: (N, C, H, W); kernel_size, stride: int or pair (stride defaults to kernel).

    Returns out (N, C, OH, OW), OH = (H - KH) // sh + 1, and a cache.
    """
    x, kernel, stride, (oh, ow) = _checks.pool_args("avgpool2d_forward", x, kernel_size, stride)
    out = _kernels().avgpool_forward(np.ascontiguousarray(x), *kernel, *stride, oh, ow)
    return out, PoolCache(x.shape, kernel, stride, out.shape, x.dtype, None)


def avgpool2d_backward(dout: np.ndarray, cache: PoolCache) -> np.ndarray:
    """Gradient of average pooling. dout: (N, C, OH, OW). Returns dx (N, C, H, W)."""
    dout = _checks.dout_like("avgpool2d_backward", dout, cache.out_shape, cache.dtype)
    _, _, h, w = cache.x_shape
    return _kernels().avgpool_backward(
        np.ascontiguousarray(dout), *cache.kernel, *cache.stride, h, w
    )


def global_avgpool2d_forward(x: np.ndarray):
    """Global average pooling: the mean of each channel's plane. x: (N, C, H, W).

    Returns out (N, C), in x's dtype, and a cache.
    """
    x = _checks.as_float("global_avgpool2d_forward", "x", x, 4, "(N, C, H, W)")
    return x.mean(axis=(2, 3)), PoolCache(x.shape, x.shape[2:], (1, 1), x.shape[:2], x.dtype, None)


def global_avgpool2d_backward(dout: np.ndarray, cache: PoolCache) -> np.ndarray:
    """Gradient of global average pooling: each of a plane's H*W inputs gets dout / (H*W).

    dout: (N, C). Returns dx (N, C, H, W) in x's dtype, whatever dout's dtype.
    """
    dout = _checks.dout_like("global_avgpool2d_backward", dout, cache.out_shape, cache.dtype)
    n, c, h, w = cache.x_shape
    share = dout[:, :, None, None] / cache.dtype.type(h * w)
    return np.ascontiguousarray(np.broadcast_to(share, (n, c, h, w)))


# --------------------------------------------------------------------------- dropout


class DropoutCache(NamedTuple):
    mask: np.ndarray | None  # keep-mask scaled by 1/(1-p), in x's dtype; None when not training
    shape: tuple[int, ...]
    dtype: np.dtype


def dropout_forward(x: np.ndarray, p: float, train: bool = True, rng=None):
    """Inverted dropout. x: any shape; p: probability of DROPPING a unit, in [0, 1).

    In training each unit is zeroed with probability p and kept units are scaled by 1 / (1 - p), so
    the expected output equals x and test time needs no rescaling; with train=False it is the
    identity. rng: a numpy.random.Generator, an int seed, or None for fresh entropy.
    Returns out (x's shape) and a cache.
    """
    x = _checks.as_float("dropout_forward", "x", x)
    p = _checks.dropout_p("dropout_forward", p)
    if not train:
        return x.copy(), DropoutCache(None, x.shape, x.dtype)
    keep = _checks.dropout_mask(x.shape, p, _checks.as_rng("dropout_forward", rng))
    mask = keep.astype(x.dtype) * x.dtype.type(1.0 / (1.0 - p))
    return x * mask, DropoutCache(mask, x.shape, x.dtype)


def dropout_backward(dout: np.ndarray, cache: DropoutCache) -> np.ndarray:
    """Gradient of dropout: dout through the same scaled mask (identity when not training)."""
    dout = _checks.dout_like("dropout_backward", dout, cache.shape, cache.dtype)
    return dout.copy() if cache.mask is None else dout * cache.mask


# --------------------------------------------------------------------------- activations


class ActCache(NamedTuple):
    x: np.ndarray  # the input
    out: np.ndarray  # the output (sigmoid, tanh and ELU derivatives reuse it)
    alpha: float


def _act_forward(op: str, x, fn, alpha: float = 0.0):
    x = _checks.as_float(op, "x", x)
    out = fn(x)
    return out, ActCache(x, out, alpha)


def _act_dout(op: str, dout, cache: ActCache) -> np.ndarray:
    return _checks.dout_like(op, dout, cache.x.shape, cache.x.dtype)


def _relu(v: np.ndarray) -> np.ndarray:
    """max(v, 0): one pass of a numba kernel once numba is loaded, numpy's two before (same bits)."""
    if "cnn_core._kernels" not in sys.modules:
        return np.maximum(v, 0)
    v, out = np.ascontiguousarray(v), np.empty_like(v)
    _kernels().relu_forward(v, out)
    return out


def relu_forward(x: np.ndarray):
    """ReLU: max(0, x), elementwise. Returns out (x's shape) and a cache."""
    return _act_forward("relu_forward", x, _relu)


def relu_backward(dout: np.ndarray, cache: ActCache) -> np.ndarray:
    """Gradient of ReLU: dout where x > 0, else 0 (the subgradient at 0 is taken as 0)."""
    dout = _act_dout("relu_backward", dout, cache)
    dx = np.empty(cache.x.shape, cache.x.dtype)
    contiguous = np.ascontiguousarray
    _kernels().relu_backward(contiguous(dout), contiguous(cache.x), dx)  # one pass, no mask array
    return dx


def _leaky_slope(x: np.ndarray, alpha: float) -> np.ndarray:
    """1 where x > 0, alpha elsewhere, in x's dtype (arithmetic on the mask beats np.where)."""
    a = x.dtype.type(alpha)
    return (x > 0) * (1 - a) + a


def leaky_relu_forward(x: np.ndarray, alpha: float = 0.01):
    """Leaky ReLU: x if x > 0 else alpha * x. Returns out (x's shape) and a cache."""
    return _act_forward("leaky_relu_forward", x, lambda v: v * _leaky_slope(v, alpha), alpha)


def leaky_relu_backward(dout: np.ndarray, cache: ActCache) -> np.ndarray:
    """Gradient of leaky ReLU: dout where x > 0, alpha * dout elsewhere."""
    dout = _act_dout("leaky_relu_backward", dout, cache)
    return dout * _leaky_slope(cache.x, cache.alpha)


def elu_forward(x: np.ndarray, alpha: float = 1.0):
    """ELU: x if x > 0 else alpha * (exp(x) - 1). Returns out (x's shape) and a cache."""

    def elu(v):
        return np.where(v > 0, v, v.dtype.type(alpha) * np.expm1(np.minimum(v, 0)))

    return _act_forward("elu_forward", x, elu, alpha)


def elu_backward(dout: np.ndarray, cache: ActCache) -> np.ndarray:
    """Gradient of ELU: dout where x > 0, dout * alpha * exp(x) elsewhere.

    Computed as dout * (out + alpha) from the forward output, which saves an exponential but
    cancels for very negative x (out is close to -alpha): in float32 it is off by about 0.04% at
    x = -10 and exactly 0 from about x = -17.4 on. alpha * exp(min(x, 0)) is the accurate form;
    the two agree within cnn_core.grading.TOLERANCES.
    """
    dout = _act_dout("elu_backward", dout, cache)
    slope = cache.out + dout.dtype.type(cache.alpha)
    return np.where(cache.x > 0, dout, dout * slope)


def _sigmoid(v: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(v))  # exp of a non-positive number never overflows
    return np.where(v >= 0, 1 / (1 + e), e / (1 + e))


def sigmoid_forward(x: np.ndarray):
    """Logistic sigmoid 1 / (1 + exp(-x)), computed without overflow. Returns out and a cache."""
    return _act_forward("sigmoid_forward", x, _sigmoid)


def sigmoid_backward(dout: np.ndarray, cache: ActCache) -> np.ndarray:
    """Gradient of the sigmoid: dout * s * (1 - s) with s the forward output."""
    dout = _act_dout("sigmoid_backward", dout, cache)
    s = cache.out
    return dout * s * (1 - s)


def tanh_forward(x: np.ndarray):
    """Hyperbolic tangent, elementwise. Returns out (x's shape) and a cache."""
    return _act_forward("tanh_forward", x, np.tanh)


def tanh_backward(dout: np.ndarray, cache: ActCache) -> np.ndarray:
    """Gradient of tanh: dout * (1 - out**2)."""
    dout = _act_dout("tanh_backward", dout, cache)
    return dout * (1 - cache.out * cache.out)


# --------------------------------------------------------------------------- fully connected


class LinearCache(NamedTuple):
    x: np.ndarray  # the input, in its own shape (N, ...)
    w: np.ndarray  # (D, M)


def linear_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray):
    """Fully connected layer. x: (N, d1, ..., dk) flattened to (N, D); w: (D, M); b: (M,).

    Returns out (N, M) = x.reshape(N, D) @ w + b, and a cache.
    """
    x, w, b = _checks.linear_args("linear_forward", x, w, b)
    out = x.reshape(x.shape[0], -1) @ w + b
    return out, LinearCache(x, w)


def linear_backward(dout: np.ndarray, cache: LinearCache):
    """Gradients of a fully connected layer. dout: (N, M). Returns dx (x's shape), dw (D, M), db (M,)."""
    x, w = cache
    dout = _checks.dout_like("linear_backward", dout, (x.shape[0], w.shape[1]), x.dtype)
    dx = (dout @ w.T).reshape(x.shape)
    dw = x.reshape(x.shape[0], -1).T @ dout
    return dx, dw, dout.sum(axis=0)


# --------------------------------------------------------------------------- batch normalisation


class BatchNormCache(NamedTuple):
    xhat: np.ndarray  # normalised input, the input's shape
    gamma: np.ndarray  # (D,) or (C,)
    inv_std: np.ndarray  # (D,) or (C,): 1 / sqrt(var + eps), batch or running variance
    train: bool
    shape: tuple[int, ...]  # the input's shape


def _feature_axes(x: np.ndarray) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The axes statistics run over (all but the feature axis 1) and the shape that broadcasts a
    per-feature vector against x: (0,) and (1, D) for (N, D); (0, 2, 3) and (1, C, 1, 1) for
    (N, C, H, W). Working in x's own layout avoids transposing it."""
    return (0, *range(2, x.ndim)), (1, x.shape[1]) + (1,) * (x.ndim - 2)


def _batchnorm(op, x, gamma, beta, running_mean, running_var, train, momentum, eps):
    """Batch norm with statistics per feature (axis 1) over every other axis."""
    axes, shape = _feature_axes(x)
    if train:
        m = _checks.batchnorm_train_count(op, x)
        mean = x.mean(axis=axes)
        centred = x - mean.reshape(shape)
        var = (centred * centred).mean(axis=axes)  # biased: the batch is normalised with it
        running_mean *= momentum
        running_mean += (1 - momentum) * mean
        running_var *= momentum
        running_var += (1 - momentum) * var * (m / (m - 1))  # unbiased, as an estimate
    else:
        mean, var = _checks.same_dtype(x.dtype, running_mean, running_var)
        centred = x - mean.reshape(shape)
    inv_std = (1 / np.sqrt(var + x.dtype.type(eps))).astype(x.dtype)
    xhat = centred * inv_std.reshape(shape)
    out = xhat * gamma.reshape(shape) + beta.reshape(shape)
    return out, BatchNormCache(xhat, gamma, inv_std, train, x.shape)


def _batchnorm_backward(dout: np.ndarray, cache: BatchNormCache):
    """Gradients for dout of the input's shape. Returns dx, dgamma, dbeta."""
    xhat, gamma, inv_std, train, _ = cache
    axes, shape = _feature_axes(xhat)
    dbeta = dout.sum(axis=axes)
    dgamma = (dout * xhat).sum(axis=axes)
    scale = (gamma * inv_std).reshape(shape)
    if not train:  # running statistics are constants: the layer is affine
        return dout * scale, dgamma, dbeta
    m = dout.size // dout.shape[1]
    dx = (scale / m) * (m * dout - dbeta.reshape(shape) - xhat * dgamma.reshape(shape))
    return dx, dgamma, dbeta


def batchnorm_forward(
    x: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    train: bool = True,
    momentum: float = 0.9,
    eps: float = 1e-5,
):
    """Batch normalisation of x (N, D) per feature; gamma, beta, running_mean, running_var: (D,).

    Training normalises with the batch mean and biased variance and updates the running statistics
    in place: running = momentum * running + (1 - momentum) * batch_stat, with the unbiased batch
    variance. Test mode (train=False) normalises with the running statistics and leaves them alone.
    Returns out (N, D) and a cache.
    """
    op = "batchnorm_forward"
    x, gamma, beta = _checks.batchnorm_args(
        op, x, gamma, beta, running_mean, running_var, momentum, eps, 2
    )
    return _batchnorm(op, x, gamma, beta, running_mean, running_var, train, momentum, eps)


def batchnorm_backward(dout: np.ndarray, cache: BatchNormCache):
    """Gradients of batch normalisation. dout: (N, D). Returns dx (N, D), dgamma (D,), dbeta (D,)."""
    dout = _checks.dout_like("batchnorm_backward", dout, cache.shape, cache.xhat.dtype)
    return _batchnorm_backward(dout, cache)


def batchnorm2d_forward(
    x: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    train: bool = True,
    momentum: float = 0.9,
    eps: float = 1e-5,
):
    """Spatial batch normalisation of x (N, C, H, W), per channel over N, H and W.

    gamma, beta, running_mean, running_var: (C,). Statistics and updates as in
    `batchnorm_forward`. Returns out (N, C, H, W) and a cache.
    """
    op = "batchnorm2d_forward"
    x, gamma, beta = _checks.batchnorm_args(
        op, x, gamma, beta, running_mean, running_var, momentum, eps, 4
    )
    return _batchnorm(op, x, gamma, beta, running_mean, running_var, train, momentum, eps)


def batchnorm2d_backward(dout: np.ndarray, cache: BatchNormCache):
    """Gradients of spatial batch norm. dout: (N, C, H, W). Returns dx (N, C, H, W), dgamma, dbeta."""
    dout = _checks.dout_like("batchnorm2d_backward", dout, cache.shape, cache.xhat.dtype)
    return _batchnorm_backward(dout, cache)


# --------------------------------------------------------------------------- losses


def softmax_cross_entropy(scores: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Softmax followed by cross-entropy, averaged over the batch.

    scores: (N, K) unnormalised class scores; y: (N,) integer labels in [0, K).
    Returns loss (float) and dscores (N, K) = (softmax(scores) - onehot(y)) / N.
    """
    scores, y = _checks.labels_args("softmax_cross_entropy", scores, y)
    n = scores.shape[0]
    shifted = scores - scores.max(axis=1, keepdims=True)  # exp never overflows
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    loss = -log_probs[np.arange(n), y].mean()
    dscores = np.exp(log_probs)
    dscores[np.arange(n), y] -= 1
    return float(loss), dscores / scores.dtype.type(n)


def mse_loss(pred: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean squared error over all elements. pred, target: same shape.

    Returns loss = mean((pred - target)**2) and dpred = 2 * (pred - target) / pred.size.
    """
    pred, target = _checks.paired_args("mse_loss", "pred", pred, "target", target)
    diff = pred - target
    return float(np.mean(diff * diff)), diff * pred.dtype.type(2.0 / pred.size)


def sigmoid_binary_cross_entropy(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Binary cross-entropy on sigmoid(logits), averaged over all elements.

    logits: any shape; y: the same shape, targets in [0, 1]. Computed as
    max(z, 0) - z*y + log(1 + exp(-|z|)), which never overflows. Returns loss and
    dlogits = (sigmoid(logits) - y) / logits.size.
    """
    z, y = _checks.paired_args("sigmoid_binary_cross_entropy", "logits", logits, "y", y)
    if y.size and (y.min() < 0 or y.max() > 1):
        raise ValueError("sigmoid_binary_cross_entropy: y must hold targets in [0, 1]")
    loss = np.mean(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z))))
    s = _sigmoid(z)
    return float(loss), (s - y) / z.dtype.type(z.size)


# Every op above, and im2col, refuses to run while a grader forbids it (cnn_core.grading). The
# ops call each other through the unguarded private names, so forbidding one blocks only it.
im2col = _guard.guarded(_im2col, "im2col")
_guard.guard_module(globals(), __all__)
