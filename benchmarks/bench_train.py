"""One training epoch of the same small CNN with cnn_core and with PyTorch CPU, side by side.

The network: conv 5x5 8 ch pad 2 - ReLU - maxpool 2 - conv 5x5 16 ch pad 2 - ReLU - maxpool 2 -
linear 10; SGD with momentum 0.9, lr 0.01, batch 64, float32, 2 threads. Both see the same
normalised Fashion-MNIST training images in the same order (the full set when installed, else the
built-in subset). Prints seconds per epoch, the final mini-batch losses and the ratio.

With --repeat k the two alternate, k epochs each from the same initial weights, and the fastest
epoch of each counts (on a shared machine the slowest runs measure the neighbours).

    python benchmarks/bench_train.py [--data fashion-mnist-subset] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time

import _machine
import numpy as np
import torch

from cnn_core import _threads, nn, optim
from cnn_core.data import Normalizer, load_dataset
from cnn_core.functional import softmax_cross_entropy

THREADS = 2
BATCH = 64
LR = 0.01


def load(name: str | None):
    """Normalised float32 training images and labels of `name`, or the best available set."""
    if name is None:
        try:
            data = load_dataset("fashion-mnist")
        except FileNotFoundError:
            data = load_dataset("fashion-mnist-subset")
    else:
        data = load_dataset(name)
    return data.name, Normalizer.fit(data.x_train)(data.x_train), data.y_train


def epoch_cnn_core(x, y, order) -> tuple[float, float]:
    """Seconds for one epoch with cnn_core, and the last mini-batch loss."""
    model = nn.build("bench_cnn", rng=0)
    opt = optim.SGD(model.parameters(), lr=LR, momentum=0.9)
    model(x[:BATCH])  # load the numba kernels before the clock starts
    t0 = time.perf_counter()
    for start in range(0, len(order), BATCH):
        idx = order[start : start + BATCH]
        opt.zero_grad()
        loss, dscores = softmax_cross_entropy(model(x[idx]), y[idx])
        model.backward_params(dscores)  # as training does: the images need no gradient
        opt.step()
    return time.perf_counter() - t0, loss


def torch_model() -> torch.nn.Module:
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 5, padding=2),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(8, 16, 5, padding=2),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(16 * 7 * 7, 10),
    )


def epoch_torch(x, y, order) -> tuple[float, float]:
    """Seconds for one epoch with PyTorch, and the last mini-batch loss."""
    torch.manual_seed(0)
    model = torch_model()
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    tx, ty = torch.from_numpy(x), torch.from_numpy(y)
    t0 = time.perf_counter()
    for start in range(0, len(order), BATCH):
        idx = torch.from_numpy(order[start : start + BATCH])
        opt.zero_grad()
        loss = loss_fn(model(tx[idx]), ty[idx])
        loss.backward()
        opt.step()
    return time.perf_counter() - t0, loss.item()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="fashion-mnist or fashion-mnist-subset (default: best)")
    parser.add_argument("--repeat", type=int, default=1, help="epochs of each, alternating")
    args = parser.parse_args(argv)
    torch.set_num_threads(THREADS)
    name, x, y = load(args.data)
    print(_machine.describe(torch.get_num_threads(), _threads.chunk_threads()))
    order = np.random.default_rng(0).permutation(len(y))
    print(
        f"{name}: {len(y):,} images, batch {BATCH}, {-(-len(y) // BATCH)} iterations, "
        f"torch threads {torch.get_num_threads()}"
    )
    runs: dict[str, list[tuple[float, float]]] = {"cnn_core": [], "pytorch": []}
    for _ in range(args.repeat):
        runs["cnn_core"].append(epoch_cnn_core(x, y, order))
        time.sleep(0.5)  # let the previous contender's worker threads go idle
        runs["pytorch"].append(epoch_torch(x, y, order))
        time.sleep(0.5)
    for name, results in runs.items():
        seconds = ", ".join(f"{t:.2f}" for t, _ in results)
        best, loss = min(results)
        rounds = f"   (epochs: {seconds})" if len(results) > 1 else ""
        print(f"{name:<10} {best:7.2f} s/epoch   last batch loss {loss:.3f}{rounds}")
    ratio = min(runs["cnn_core"])[0] / min(runs["pytorch"])[0]
    verdict = "met" if ratio <= 1.0 else "MISS"
    print(f"cnn_core / pytorch = {ratio:.2f} (target <= 1.00: {verdict})")


if __name__ == "__main__":
    main()
