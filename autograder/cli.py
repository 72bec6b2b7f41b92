"""The `cnnkit` command line.

cnnkit demo          check every layer on built-in data and show what the kit computes
cnnkit zoo [NAME]    a classic architecture's per-layer table (no NAME: list them)
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def demo(args: argparse.Namespace) -> int:
    """Check every op (fast path against loops and numerical gradients), show a network's
    arithmetic and time a convolution. Returns the exit status: 1 if any op fails."""
    from cnn_core import functional, naive, selfcheck, zoo

    print(
        "Every layer: fast path against the naive loops, and its backward against numerical "
        "gradients (float64)\n"
    )
    results = selfcheck.run(seed=args.seed)
    print(selfcheck.format_results(results))
    print(f"\n{zoo.summary('lenet5')}\n")
    rng = np.random.default_rng(args.seed)
    x = rng.standard_normal((64, 3, 32, 32)).astype(np.float32)
    w = (0.1 * rng.standard_normal((32, 3, 3, 3))).astype(np.float32)
    b = np.zeros(32, np.float32)
    fast_ms = _time_conv(functional, x, w, b, repeat=5)
    loop_ms = _time_conv(naive, x[:1], w, b, repeat=1) * len(x)
    print(
        f"conv2d forward + backward, 64x3x32x32, 32 3x3 filters, padding 1, float32: "
        f"fast path {fast_ms:.1f} ms, naive loops {loop_ms / 1e3:.1f} s "
        f"({loop_ms / fast_ms:,.0f}x slower)"
    )
    failed = [r.op for r in results if not r.passed]
    if failed:
        print(f"\nFAILED: {', '.join(failed)}")
        return 1
    print(f"\nall {len(results)} ops pass")
    return 0


def _time_conv(module, x, w, b, repeat: int) -> float:
    """Best wall time of `module`'s conv2d forward + backward, in milliseconds."""
    best = float("inf")
    for _ in range(repeat + 1):  # the first call may compile kernels
        t0 = time.perf_counter()
        out, cache = module.conv2d_forward(x, w, b, padding=1)
        module.conv2d_backward(np.ones_like(out), cache)
        best = min(best, time.perf_counter() - t0)
    return 1e3 * best


def zoo_table(args: argparse.Namespace) -> int:
    """Print one architecture's summary, or the known names."""
    from cnn_core import zoo

    if args.name is None:
        print("\n".join(zoo.NAMES))
        return 0
    try:
        print(zoo.summary(args.name, expand=args.expand))
    except ValueError as err:
        print(f"cnnkit zoo: {err}", file=sys.stderr)
        return 2
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cnnkit", description="CNN course kit")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="check every layer on built-in data and time a convolution")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    p.set_defaults(func=demo)
    p = sub.add_parser("zoo", help="per-layer table of a classic architecture")
    p.add_argument("name", nargs="?", help="e.g. lenet5, alexnet, vgg16, resnet50")
    p.add_argument("--expand", action="store_true", help="list the layers inside each block")
    p.set_defaults(func=zoo_table)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
