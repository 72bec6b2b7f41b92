"""CNN arithmetic: output sizes, parameter and multiply-add counts, activation memory, receptive fields."""

from __future__ import annotations


def conv_output_size(n: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Output length of a convolution or pooling window along one axis: floor((n + 2p - k) / s) + 1."""
    return (n + 2 * padding - kernel) // stride + 1
