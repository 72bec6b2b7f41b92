"""Layer speed, side by side in one process: cnn_core's fast path, the naive loops, a plain numpy
im2col (index arrays + np.add.at, as in most course starter code) and PyTorch CPU.

Forward + backward, float32 and float64, 2 threads. Prints milliseconds, GFLOP/s and the ratio to
PyTorch (above 1 means faster than PyTorch), numpy's float32 GEMM rate measured in the same run, and
the time a fresh process with a warm numba cache takes to reach its first convolution result. Each
time is the best of --repeat calls, taken in --rounds rounds that time every contender in turn.

    python benchmarks/bench_layers.py [--repeat 15] [--rounds 3]
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import textwrap
import time

import _machine
import numpy as np
import torch
import torch.nn.functional as tf

from cnn_core import _threads, naive
from cnn_core import functional as fast

THREADS = 2
CONV_SHAPES = [  # (N, C, H, W), F, K, padding
    ((64, 1, 28, 28), 6, 5, 2),
    ((64, 3, 32, 32), 32, 3, 1),
    ((64, 32, 16, 16), 64, 3, 1),
]
POOL_SHAPE = (64, 32, 32, 32)
NAIVE_BATCH = 1  # the loops run on one image; their time is scaled to the full batch


def best_ms(fn, repeat: int) -> float:
    """Fastest of `repeat` timed calls after two warm-up calls, in milliseconds.

    A pause first lets the previous contender's idle worker threads stop spinning, so that no
    implementation is timed against another's threads.
    """
    time.sleep(0.3)
    fn()
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * min(times)


def gemm_gflops(repeat: int) -> float:
    """numpy float32 matrix product rate on 2048 x 2048 operands, GFLOP/s."""
    a = np.random.default_rng(0).standard_normal((2048, 2048)).astype(np.float32)
    return 2 * 2048**3 / best_ms(lambda: a @ a, repeat) / 1e6


# --------------------------------------------------------------------------- the plain numpy peer


def _im2col_indices(x_shape, k, pad):
    """Index arrays (k, i, j) that gather a padded x into columns, stride 1."""
    n, c, h, w = x_shape
    oh, ow = h + 2 * pad - k + 1, w + 2 * pad - k + 1
    i0 = np.tile(np.repeat(np.arange(k), k), c)
    j0 = np.tile(np.arange(k), k * c)
    i = i0.reshape(-1, 1) + np.repeat(np.arange(oh), ow).reshape(1, -1)
    j = j0.reshape(-1, 1) + np.tile(np.arange(ow), oh).reshape(1, -1)
    ch = np.repeat(np.arange(c), k * k).reshape(-1, 1)
    return ch, i, j, oh, ow


def numpy_conv(x, w, b, pad):
    """Forward and backward of a stride-1 convolution with fancy-index im2col and np.add.at."""
    n, c, h, wd = x.shape
    f, _, k, _ = w.shape
    ch, i, j, oh, ow = _im2col_indices(x.shape, k, pad)
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    cols = xp[:, ch, i, j].transpose(1, 2, 0).reshape(c * k * k, -1)
    out = (w.reshape(f, -1) @ cols + b[:, None]).reshape(f, oh, ow, n).transpose(3, 0, 1, 2)
    dout = np.ones_like(out)
    ds = dout.transpose(1, 2, 3, 0).reshape(f, -1)
    dw = ds @ cols.T
    dcols = (w.reshape(f, -1).T @ ds).reshape(c * k * k, -1, n).transpose(2, 0, 1)
    dxp = np.zeros_like(xp)
    np.add.at(dxp, (slice(None), ch, i, j), dcols)
    return out, dxp[:, :, pad : pad + h, pad : pad + wd], dw


def numpy_maxpool(x):
    """2x2 stride-2 max pooling forward and backward with reshapes and a mask."""
    n, c, h, w = x.shape
    r = x.reshape(n, c, h // 2, 2, w // 2, 2)
    out = r.max(axis=(3, 5))
    mask = r == out[:, :, :, None, :, None]
    dx = (mask * np.ones_like(out)[:, :, :, None, :, None]).reshape(x.shape)
    return out, dx


# --------------------------------------------------------------------------- the runs


def conv_row(shape, f, k, pad, dtype, repeat):
    """Timings (ms) of one convolution, forward + backward, for every implementation."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape).astype(dtype)
    w = (rng.standard_normal((f, shape[1], k, k)) * 0.1).astype(dtype)
    b = np.zeros(f, dtype)
    dout = np.ones((shape[0], f, shape[2], shape[3]), dtype)

    def ours():
        _, cache = fast.conv2d_forward(x, w, b, padding=pad)
        fast.conv2d_backward(dout, cache)

    xs = x[:NAIVE_BATCH]

    def loops():
        out, cache = naive.conv2d_forward(xs, w, b, padding=pad)
        naive.conv2d_backward(np.ones_like(out), cache)

    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    tdout = torch.tensor(dout)

    def theirs():
        tf.conv2d(tx, tw, tb, padding=pad).backward(tdout)

    flop = 3 * 2 * shape[0] * f * shape[2] * shape[3] * shape[1] * k * k  # fwd, dW and dX products
    return rounds(
        {
            "cnn_core": (ours, repeat),
            "numpy": (lambda: numpy_conv(x, w, b, pad), max(3, repeat // 3)),
            "torch": (theirs, repeat),
        },
        best_ms(loops, 1) * shape[0] / NAIVE_BATCH,
    ), flop


def pool_row(dtype, repeat):
    """Timings (ms) of 2x2 stride-2 max pooling, forward + backward."""
    x = np.random.default_rng(2).standard_normal(POOL_SHAPE).astype(dtype)
    dout = np.ones((*POOL_SHAPE[:2], POOL_SHAPE[2] // 2, POOL_SHAPE[3] // 2), dtype)

    def ours():
        _, cache = fast.maxpool2d_forward(x, 2)
        fast.maxpool2d_backward(dout, cache)

    xs = x[:NAIVE_BATCH]

    def loops():
        out, cache = naive.maxpool2d_forward(xs, 2)
        naive.maxpool2d_backward(np.ones_like(out), cache)

    tx, tdout = torch.tensor(x, requires_grad=True), torch.tensor(dout)

    def theirs():
        tf.max_pool2d(tx, 2).backward(tdout)

    return rounds(
        {
            "cnn_core": (ours, repeat),
            "numpy": (lambda: numpy_maxpool(x), repeat),
            "torch": (theirs, repeat),
        },
        best_ms(loops, 1) * POOL_SHAPE[0] / NAIVE_BATCH,
    )


ROUNDS = 3  # set by --rounds


def rounds(contenders: dict, naive_ms: float) -> dict[str, float]:
    """The best time of each contender over ROUNDS rounds, each round timing every contender in
    turn (`best_ms`): on a shared machine a neighbour's burst then slows a round of every
    contender rather than all of one. The slow naive loops are timed once."""
    times = {name: math.inf for name in contenders}
    for _ in range(ROUNDS):
        for name, (fn, repeat) in contenders.items():
            times[name] = min(times[name], best_ms(fn, repeat))
    return {"naive": naive_ms, **times}


def first_result_seconds() -> tuple[float, float]:
    """Seconds for a fresh interpreter (warm numba cache) to import cnn_core and reach its first
    convolution output, and then its first gradients (the backward pass loads numba kernels)."""
    code = textwrap.dedent("""
        import time; t0 = time.perf_counter()
        import numpy as np, cnn_core
        x = np.ones((8, 3, 32, 32), np.float32); w = np.ones((16, 3, 3, 3), np.float32)
        out, cache = cnn_core.conv2d_forward(x, w, np.zeros(16, np.float32), padding=1)
        t1 = time.perf_counter()
        cnn_core.conv2d_backward(out, cache)
        print(t1 - t0, time.perf_counter() - t0)
    """)

    def run() -> tuple[float, float]:
        out = subprocess.check_output([sys.executable, "-c", code], text=True).split()
        return float(out[0]), float(out[1])

    run()  # fills the numba cache if it is cold
    return min(run() for _ in range(3))


def fmt_row(label, times, flop=None, torch_ms=None):
    cells = []
    for name in ("cnn_core", "naive", "numpy", "torch"):
        ms = times[name]
        rate = f" {flop / ms / 1e6:6.1f}GF/s" if flop else ""
        cells.append(f"{ms:10.2f}ms{rate}")
    ratio = times["torch"] / times["cnn_core"]
    return f"{label:<34}" + " ".join(cells) + f"   x{ratio:5.2f}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15, help="timed calls per measurement")
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of every contender in turn; best counts"
    )
    args = parser.parse_args(argv)
    global ROUNDS
    ROUNDS = max(1, args.rounds)
    torch.set_num_threads(THREADS)
    print(_machine.describe(torch.get_num_threads(), _threads.chunk_threads()))
    gemm = gemm_gflops(args.repeat)
    print(
        f"numpy float32 GEMM (2048^3): {gemm:.1f} GFLOP/s, torch threads {torch.get_num_threads()}"
    )
    print(
        f"naive loops timed on {NAIVE_BATCH} image(s) and scaled to the batch; "
        "'vs torch' = torch time / cnn_core time;\nGF/s counts a direct convolution's "
        "multiply-adds (an effective rate where Winograd does fewer)"
    )
    header = f"{'forward + backward':<34}" + "".join(
        f"{h:>{w}}"
        for h, w in (("cnn_core", 23), ("naive", 24), ("numpy im2col", 24), ("torch", 24))
    )
    print(header + "   vs torch")
    ratios, largest_rate, pool_ratio = [], 0.0, 0.0
    for dtype in (np.float32, np.float64):
        for shape, f, k, pad in CONV_SHAPES:
            times, flop = conv_row(shape, f, k, pad, dtype, args.repeat)
            label = f"conv {'x'.join(map(str, shape))} {f}@{k}x{k} p{pad} {np.dtype(dtype).name}"
            print(fmt_row(label, times, flop))
            if dtype is np.float32:
                ratios.append(times["torch"] / times["cnn_core"])
                largest_rate = flop / times["cnn_core"] / 1e6
        times = pool_row(dtype, args.repeat)
        print(
            fmt_row(f"maxpool 2x2/2 {'x'.join(map(str, POOL_SHAPE))} {np.dtype(dtype).name}", times)
        )
        if dtype is np.float32:
            pool_ratio = times["torch"] / times["cnn_core"]
    startup, first_grad = first_result_seconds()
    geo = math.exp(sum(map(math.log, ratios)) / len(ratios))
    print(
        "\ntargets (float32, forward + backward; x1.25 = 0.8 of torch's time, x2.00 = half of it):"
    )
    checks = [
        (f"convolution vs torch, geometric mean x{geo:.2f}", geo >= 1.25, ">= x1.25"),
        (f"slowest convolution vs torch x{min(ratios):.2f}", min(ratios) >= 1.0, ">= x1.00"),
        (
            f"largest convolution at {100 * largest_rate / gemm:.0f}% of GEMM rate",
            largest_rate >= 0.6 * gemm,
            ">= 60%",
        ),
        (f"max pooling vs torch x{pool_ratio:.2f}", pool_ratio >= 2.0, ">= x2.00"),
        (f"first convolution in a fresh process {startup:.2f} s", startup < 0.5, "< 0.5 s"),
    ]
    for text, ok, target in checks:
        print(f"  {'met ' if ok else 'MISS'}  {text:<50} target {target}")
    print(
        f"  (first gradients in a fresh process, numba kernels loaded from cache: {first_grad:.2f} s)"
    )


if __name__ == "__main__":
    main()
