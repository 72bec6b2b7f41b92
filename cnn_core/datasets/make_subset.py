"""Build `fashion_mnist_subset.npz`, the Fashion-MNIST subset shipped with cnn_core.

    python -m cnn_core.datasets.make_subset [--source DIR] [--out FILE]

Reads the official IDX files (from --source, else where `cnn_core.data.load_fashion_mnist` looks)
and keeps TRAIN_PER_CLASS images of every class from the official training set and TEST_PER_CLASS
from the official test set, drawn without replacement by a Generator seeded with SEED, in their
original order. The archive holds

    x_train (6000, 28, 28) uint8, y_train (6000,) uint8,
    x_test (1000, 28, 28) uint8, y_test (1000,) uint8,
    train_index (6000,) int32, test_index (1000,) int32: positions in the official files.

Its zip entries carry a fixed timestamp, so the same input gives the same bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np

from cnn_core.data import FASHION_MNIST_CLASSES, SUBSET_FILE, Dataset, load_fashion_mnist

SEED = 0
TRAIN_PER_CLASS = 600
TEST_PER_CLASS = 100
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


def select_balanced(y: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of `per_class` examples of each class in y (N,), drawn without replacement."""
    chosen = [
        rng.choice(np.flatnonzero(y == c), per_class, replace=False)
        for c in range(len(FASHION_MNIST_CLASSES))
    ]
    return np.sort(np.concatenate(chosen))


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """An .npz archive (deflate, level 9) whose bytes depend only on `arrays`."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, a in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(a), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, buf.getvalue(), compresslevel=9)


def build(full: Dataset) -> dict[str, np.ndarray]:
    """The subset's arrays, chosen from the full Fashion-MNIST."""
    rng = np.random.default_rng(SEED)
    train = select_balanced(full.y_train, TRAIN_PER_CLASS, rng)
    test = select_balanced(full.y_test, TEST_PER_CLASS, rng)
    return {
        "x_train": full.x_train[train, 0],
        "y_train": full.y_train[train].astype(np.uint8),
        "x_test": full.x_test[test, 0],
        "y_test": full.y_test[test].astype(np.uint8),
        "train_index": train.astype(np.int32),
        "test_index": test.astype(np.int32),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", help="folder with the four Fashion-MNIST IDX files")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name(SUBSET_FILE))
    args = parser.parse_args(argv)
    write_npz(args.out, build(load_fashion_mnist(args.source)))
    digest = hashlib.sha256(args.out.read_bytes()).hexdigest()
    print(f"wrote {args.out}: {args.out.stat().st_size} bytes, sha256 {digest}")


if __name__ == "__main__":
    main()
