"""Data for training: Fashion-MNIST, stratified splits, normalisation, mini-batches, augmentation.

Images are NCHW. A `Dataset` holds x (N, 1, 28, 28) uint8 pixel values 0-255 and y (N,) int64
labels 0-9 (names in `FASHION_MNIST_CLASSES`). `load_dataset` gives the full set (70,000 images,
read from the official IDX files) or the subset shipped inside the package (6,000 training and
1,000 test images, exactly 600 and 100 per class), which needs no download.

Every random step takes `rng`, a `numpy.random.Generator` or an int seed; the same seed gives the
same result. A training input pipeline, in order:

    data = load_dataset("fashion-mnist-subset")
    x_tr, y_tr, x_val, y_val = train_val_split(data.x_train, data.y_train, 0.1, rng=0)
    norm = Normalizer.fit(x_tr)                      # statistics of the training split only
    augment = Augmentation(crop_padding=2, flip=True)
    rng = np.random.default_rng(0)
    for xb, yb in batches(x_tr, y_tr, 64, rng=rng):
        xb = norm(augment(xb.astype(np.float32) / 255, rng))

Augmenting images scaled to [0, 1], before normalising, keeps the zero fill black and the jitter
amounts in units of full intensity.
"""

from __future__ import annotations

import gzip
import io
import math
import numbers
import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, fields
from importlib import resources
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from cnn_core import _checks
from cnn_core._args import integer, number

__all__ = [
    "FASHION_MNIST_CLASSES",
    "DATASET_NAMES",
    "DEFAULT_FASHION_MNIST_DIR",
    "FASHION_MNIST_FILES",
    "read_idx",
    "Dataset",
    "load_fashion_mnist",
    "load_builtin_subset",
    "load_dataset",
    "train_val_split",
    "Normalizer",
    "num_batches",
    "batches",
    "random_crop",
    "horizontal_flip",
    "intensity_jitter",
    "random_affine",
    "Augmentation",
]

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
DATASET_NAMES = ("fashion-mnist-subset", "fashion-mnist")
FASHION_MNIST_ENV = "FASHION_MNIST_DIR"
DEFAULT_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
# the official file names by role; each may also carry a .gz suffix
FASHION_MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
SUBSET_FILE = "fashion_mnist_subset.npz"
BUILTIN_SOURCE = "built-in subset"


# --------------------------------------------------------------------------- IDX files

IDX_TYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(np.int16),
    0x0C: np.dtype(np.int32),
    0x0D: np.dtype(np.float32),
    0x0E: np.dtype(np.float64),
}
_GZIP_MAGIC = b"\x1f\x8b"


def _idx_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed when they start with the gzip magic bytes."""
    raw = path.read_bytes()
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as err:
        raise ValueError(
            f"read_idx: {path} starts like a gzip file but does not decompress ({err}); "
            "it is truncated or corrupt"
        ) from None


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file, the format of the MNIST and Fashion-MNIST files, gzipped or not.

    The header is two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
    0x0D float32, 0x0E float64), the number of dimensions D and D big-endian uint32 sizes; the
    values follow, big-endian, in C order. Compression is recognised by the gzip magic bytes, not
    by the file name. Returns an array of shape (size_1, ..., size_D) in native byte order.
    Raises ValueError naming the file on a bad magic number, an unknown type code, or a file
    shorter or longer than its header says.
    """
    path = Path(path)
    data = _idx_bytes(path)
    if len(data) < 4:
        raise ValueError(f"read_idx: {path} is truncated: {len(data)} bytes, no IDX header")
    code, ndim = data[2], data[3]
    if data[:2] != b"\0\0":
        raise ValueError(
            f"read_idx: {path} has a bad magic number 0x{data[:4].hex()}: an IDX file starts with "
            "two zero bytes, a type code and the number of dimensions"
        )
    if code not in IDX_TYPES:
        known = ", ".join(f"0x{c:02x} ({t})" for c, t in IDX_TYPES.items())
        raise ValueError(f"read_idx: {path} has unknown type code 0x{code:02x}; known: {known}")
    start = 4 + 4 * ndim
    if len(data) < start:
        raise ValueError(
            f"read_idx: {path} is truncated: the header declares {ndim} dimensions "
            f"({start} bytes) but the file has {len(data)} bytes"
        )
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, 4))
    dtype = IDX_TYPES[code]
    need, have = math.prod(shape) * dtype.itemsize, len(data) - start
    if have != need:
        problem = "is truncated" if have < need else "has extra bytes"
        raise ValueError(
            f"read_idx: {path} {problem}: shape {shape} of {dtype} needs {need} bytes of data "
            f"but {have} follow the header"
        )
    values = np.frombuffer(data, dtype.newbyteorder(">"), math.prod(shape), start)
    return values.reshape(shape).astype(dtype)


# --------------------------------------------------------------------------- data sets


@dataclass(repr=False)
class Dataset:
    """An image classification data set with official training and test splits.

    x_train: (N, 1, 28, 28) uint8 pixel values 0-255; y_train: (N,) int64 labels;
    x_test: (M, 1, 28, 28) uint8; y_test: (M,) int64; name: one of DATASET_NAMES;
    source: the folder the files were read from, or "built-in subset"; classes: the class
    names in label order.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    name: str
    source: str
    classes: tuple[str, ...] = FASHION_MNIST_CLASSES

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if x.ndim != 4 or y.ndim != 1 or len(x) != len(y):
                raise ValueError(
                    f"Dataset {self.name!r}: x_{split} must be (N, C, H, W) and y_{split} (N,), "
                    f"got shapes {x.shape} and {y.shape}"
                )

    @property
    def sizes(self) -> dict[str, int]:
        """Number of images per split: {"train": N, "test": M}."""
        return {"train": len(self.y_train), "test": len(self.y_test)}

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}: {self.sizes['train']} training and {self.sizes['test']} "
            f"test images of shape {self.x_train.shape[1:]}, {len(self.classes)} classes, "
            f"from {self.source})"
        )


def _dataset(arrays: dict[str, np.ndarray], name: str, source: str) -> Dataset:
    """A Dataset from images (N, H, W) uint8 and labels (N,), keyed as in FASHION_MNIST_FILES."""
    return Dataset(
        x_train=arrays["x_train"][:, None],
        y_train=arrays["y_train"].astype(np.int64),
        x_test=arrays["x_test"][:, None],
        y_test=arrays["y_test"].astype(np.int64),
        name=name,
        source=source,
    )


def _files_in(folder: Path) -> tuple[dict[str, Path], list[str]]:
    """The Fashion-MNIST files in `folder` by role, and the names of those missing."""
    found, missing = {}, []
    for role, stem in FASHION_MNIST_FILES.items():
        hit = next((p for p in (folder / f"{stem}.gz", folder / stem) if p.is_file()), None)
        if hit is None:
            missing.append(f"{stem}[.gz]")
        else:
            found[role] = hit
    return found, missing


def _find_fashion_mnist(path: str | os.PathLike | None) -> tuple[Path, dict[str, Path]]:
    """The folder holding all four files: `path` when given (and only there: a folder the user
    named is never silently replaced by another), else $FASHION_MNIST_DIR, else the default."""
    env = os.environ.get(FASHION_MNIST_ENV) or None
    candidates = (
        (("path argument", path),)
        if path is not None
        else ((f"${FASHION_MNIST_ENV}", env), ("default folder", DEFAULT_FASHION_MNIST_DIR))
    )
    looked = []
    for label, folder in candidates:
        if folder is None:
            looked.append(f"  {label}: not set")
            continue
        folder = Path(folder).expanduser()
        if not folder.is_dir():
            looked.append(f"  {label} {folder}: no such folder")
            continue
        files, missing = _files_in(folder)
        if not missing:
            return folder, files
        looked.append(f"  {label} {folder}: missing {', '.join(missing)}")
    names = ", ".join(f"{stem}.gz" for stem in FASHION_MNIST_FILES.values())
    raise FileNotFoundError(
        "load_fashion_mnist: the Fashion-MNIST files were not found. Looked in:\n"
        + "\n".join(looked)
        + "\nInstall them with `apt-get install dataset-fashion-mnist` (into "
        f"{DEFAULT_FASHION_MNIST_DIR}), or download {names} from "
        "https://github.com/zalandoresearch/fashion-mnist into a folder and set "
        f"{FASHION_MNIST_ENV} to it (or pass path=). The built-in subset needs no download: "
        'load_dataset("fashion-mnist-subset").'
    )


def _check_fashion_mnist(files: dict[str, Path], arrays: dict[str, np.ndarray]) -> None:
    """Per split: images (N, H, W) uint8 and N uint8 labels 0-9, else ValueError naming the file."""
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        xfile, yfile = files[f"x_{split}"], files[f"y_{split}"]
        if x.dtype != np.uint8 or x.ndim != 3:
            raise ValueError(
                f"load_fashion_mnist: {xfile} should hold uint8 images (N, H, W), "
                f"got {x.dtype} of shape {x.shape}"
            )
        if y.dtype != np.uint8 or y.shape != (len(x),):
            raise ValueError(
                f"load_fashion_mnist: {yfile} should hold {len(x)} uint8 labels (one per image "
                f"of {xfile}), got {y.dtype} of shape {y.shape}"
            )
        if y.size and y.max() >= len(FASHION_MNIST_CLASSES):
            raise ValueError(f"load_fashion_mnist: {yfile} has label {y.max()}; labels must be 0-9")


def load_fashion_mnist(path: str | os.PathLike | None = None) -> Dataset:
    """The full Fashion-MNIST: 60,000 training and 10,000 test images, 28 x 28, 10 classes.

    Reads the four official IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte,
    t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, each with or without .gz) from the first
    folder `path` if given, else $FASHION_MNIST_DIR, else DEFAULT_FASHION_MNIST_DIR.
    Returns a Dataset with x (N, 1, 28, 28) uint8 and y (N,) int64; its `source` is the folder
    used. Raises FileNotFoundError saying where it looked and how to get the files.
    """
    folder, files = _find_fashion_mnist(path)
    arrays = {role: read_idx(p) for role, p in files.items()}
    _check_fashion_mnist(files, arrays)
    return _dataset(arrays, "fashion-mnist", str(folder))


def load_builtin_subset() -> Dataset:
    """The Fashion-MNIST subset shipped in the package: no download needed.

    6,000 training images (600 per class) drawn from the official training set and 1,000 test
    images (100 per class) from the official test set; `cnn_core/datasets/README.md` says how
    they were chosen. Returns a Dataset with x (N, 1, 28, 28) uint8 and y (N,) int64.
    """
    resource = resources.files("cnn_core").joinpath("datasets").joinpath(SUBSET_FILE)
    try:
        raw = resource.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(
            f"load_builtin_subset: {resource} is missing from the installed package; reinstall "
            "cnnkit, or use the full set with load_dataset('fashion-mnist')"
        ) from None
    with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
        arrays = {role: npz[role] for role in FASHION_MNIST_FILES}
    return _dataset(arrays, "fashion-mnist-subset", BUILTIN_SOURCE)


def load_dataset(
    name: str = "fashion-mnist-subset", path: str | os.PathLike | None = None
) -> Dataset:
    """Load a data set by name: "fashion-mnist-subset" (shipped) or "fashion-mnist" (full).

    `path` is where to look for the full set's files (see `load_fashion_mnist`); the shipped
    subset ignores it.
    """
    if name == "fashion-mnist-subset":
        return load_builtin_subset()
    if name == "fashion-mnist":
        return load_fashion_mnist(path)
    raise ValueError(
        f"load_dataset: unknown data set {name!r}; choose one of {', '.join(DATASET_NAMES)}"
    )


# --------------------------------------------------------------------------- splits and batches


def _examples(op: str, x, y, labels: bool) -> tuple[np.ndarray, np.ndarray]:
    """x (N, ...) and y (N,) as arrays; with `labels`, y must hold integers."""
    x, y = np.asarray(x), np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{op}: y must be 1-D (N,), got shape {y.shape}")
    if labels and y.dtype.kind not in "iu":
        raise TypeError(f"{op}: y must hold integer class labels, got dtype {y.dtype}")
    if x.ndim < 1 or len(x) != len(y):
        raise ValueError(
            f"{op}: x has shape {x.shape} but y has {len(y)} labels; x must be ({len(y)}, ...)"
        )
    return x, y


def train_val_split(x, y, val_fraction: float = 0.1, rng=0):
    """Split examples into training and validation parts, stratified and seeded.

    x: (N, ...); y: (N,) integer labels; val_fraction: in (0, 1), the share of every class that
    goes to validation, rounded per class to the nearest whole example; rng: Generator or int
    seed choosing which examples. Both parts keep the examples' original order.
    Returns copies (x_train, y_train, x_val, y_val).
    """
    op = "train_val_split"
    x, y = _examples(op, x, y, labels=True)
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, numbers.Real):
        raise TypeError(f"{op}: val_fraction must be a number in (0, 1), got {val_fraction!r}")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"{op}: val_fraction must be in (0, 1), got {val_fraction!r}")
    rng = _checks.as_rng(op, rng)
    val = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        k = math.floor(len(members) * val_fraction + 0.5)
        val[rng.choice(members, k, replace=False)] = True
    if val.all() or not val.any():
        part = "training" if val.all() else "validation"
        raise ValueError(
            f"{op}: the {part} part would be empty ({len(y)} examples, "
            f"val_fraction={val_fraction}); use more examples or another val_fraction"
        )
    return x[~val], y[~val], x[val], y[val]


def num_batches(n: int, batch_size: int, drop_last: bool = False) -> int:
    """Mini-batches in one epoch of n examples: ceil(n / batch_size), or floor with drop_last."""
    n = integer("num_batches", "n", n, minimum=0)
    batch_size = integer("num_batches", "batch_size", batch_size)
    return n // batch_size if drop_last else -(-n // batch_size)


def batches(
    x, y, batch_size: int, rng=None, shuffle: bool = True, drop_last: bool = False
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """One epoch of mini-batches (xb, yb): xb (B, ...) and yb (B,) copies, B = batch_size.

    x: (N, ...); y: (N,). With shuffle, examples come in the order rng.permutation(N), drawn
    when `batches` is called: rng is a Generator (its state advances, so successive epochs
    differ), an int seed (the same order every time) or None (fresh entropy). Without shuffle
    the order is 0..N-1 and rng is unused. Every example appears exactly once per epoch, the last
    batch holding the N % batch_size left over; drop_last leaves those out instead.
    """
    op = "batches"
    x, y = _examples(op, x, y, labels=False)
    batch_size = integer(op, "batch_size", batch_size)
    count = num_batches(len(y), batch_size, drop_last)
    order = _checks.as_rng(op, rng).permutation(len(y)) if shuffle else np.arange(len(y))
    return _batches(x, y, order, batch_size, count)


def _batches(x, y, order, batch_size, count):
    for i in range(count):
        idx = order[i * batch_size : (i + 1) * batch_size]
        yield x[idx], y[idx]


# --------------------------------------------------------------------------- normalisation


def _images(op: str, x) -> np.ndarray:
    """x as a 4-D (N, C, H, W) uint8 or float array, else TypeError / ValueError."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{op}: x must be a numpy array (N, C, H, W), got {type(x).__name__}")
    if x.dtype != np.uint8 and x.dtype.kind != "f":
        raise TypeError(
            f"{op}: x has dtype {x.dtype}; use uint8 pixel values (0-255) or a float array"
        )
    if x.ndim != 4:
        raise ValueError(f"{op}: x must be 4-D (N, C, H, W), got shape {x.shape} ({x.ndim}-D)")
    return x


_CHUNK = 4096  # images per step when summing squared deviations, to bound the memory used


@dataclass(eq=False)
class Normalizer:
    """Per-channel standardisation (x - mean) / std, statistics over N, H and W.

    mean, std: (C,) float64, in units of intensity scaled to [0, 1]: uint8 input (0-255) is
    divided by 255 first, in `fit` and in `__call__`; float input is taken as already scaled, so
    fit and call must see the same scale. Fit on the training split only, so that nothing about
    the validation or test images leaks into training. std is the population standard deviation;
    a channel without spread gets std 1.
    """

    mean: np.ndarray
    std: np.ndarray

    def __post_init__(self) -> None:
        self.mean = np.asarray(self.mean, dtype=np.float64)
        self.std = np.asarray(self.std, dtype=np.float64)
        if self.mean.ndim != 1 or self.std.shape != self.mean.shape:
            raise ValueError(
                f"Normalizer: mean and std must be (C,) of equal length, got shapes "
                f"{self.mean.shape} and {self.std.shape}"
            )
        if not np.all(self.std > 0):
            raise ValueError(f"Normalizer: std must be positive, got {self.std.tolist()}")

    @classmethod
    def fit(cls, x: np.ndarray) -> Normalizer:
        """Per-channel mean and std of x (N, C, H, W), uint8 or float."""
        x = _images("Normalizer.fit", x)
        n, _, h, w = x.shape
        if n * h * w == 0:
            raise ValueError(f"Normalizer.fit: x has no pixels (shape {x.shape})")
        mean = x.mean(axis=(0, 2, 3), dtype=np.float64)
        squares = np.zeros_like(mean)
        for start in range(0, n, _CHUNK):
            d = x[start : start + _CHUNK].astype(np.float64) - mean[:, None, None]
            squares += np.einsum("nchw,nchw->c", d, d)
        std = np.sqrt(squares / (n * h * w))
        scale = 1 / 255 if x.dtype == np.uint8 else 1.0
        return cls(mean * scale, np.where(std > 0, std * scale, 1.0))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Standardise x (N, C, H, W), uint8 or float. Returns a new float32 (N, C, H, W) array."""
        x = _images("Normalizer", x)
        if x.shape[1] != len(self.mean):
            raise ValueError(
                f"Normalizer: x has {x.shape[1]} channels (shape {x.shape}) but the normalizer "
                f"was fit on {len(self.mean)}"
            )
        out = x.astype(np.float32)
        if x.dtype == np.uint8:
            out /= 255
        out -= self.mean.astype(np.float32)[:, None, None]
        out /= self.std.astype(np.float32)[:, None, None]
        return out

    def to_dict(self) -> dict:
        """{"mean": [...], "std": [...]}, one float per channel, for a training history."""
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> Normalizer:
        """The Normalizer that `to_dict` described."""
        missing = [k for k in ("mean", "std") if k not in d]
        if missing:
            raise ValueError(f"Normalizer.from_dict: missing {', '.join(missing)} in {d!r}")
        return cls(d["mean"], d["std"])


# --------------------------------------------------------------------------- augmentation


def _augment_args(op: str, x, rng) -> tuple[np.ndarray, np.random.Generator]:
    x = _checks.as_float(op, "x", x, 4, "(N, C, H, W)")
    return x, _checks.as_rng(op, rng)


def _nonnegative(op: str, name: str, v) -> float:
    v = number(op, name, v)
    if v < 0:
        raise ValueError(f"{op}: {name} must be non-negative, got {v!r}")
    return v


def _interval(op: str, name: str, v, positive: bool = False) -> tuple[float, float]:
    """A pair (lo, hi) with lo <= hi (and lo > 0 if `positive`)."""
    if not isinstance(v, (tuple, list)) or len(v) != 2:
        raise ValueError(f"{op}: {name} must be a pair (low, high), got {v!r}")
    lo, hi = (_nonnegative(op, name, a) if positive else number(op, name, a) for a in v)
    if lo > hi or (positive and lo == 0):
        kind = "0 < low <= high" if positive else "low <= high"
        raise ValueError(f"{op}: {name} must have {kind}, got {v!r}")
    return lo, hi


def random_crop(x: np.ndarray, rng, padding: int = 2) -> np.ndarray:
    """Zero-pad each image by `padding` pixels on every side, then crop it back to H x W.

    x: (N, C, H, W) float; rng: Generator or int seed; padding: int >= 0. The crop's top-left
    corner (dy, dx) is drawn uniformly from 0..2*padding per image, so output[i, :, r, s] =
    padded[i, :, r + dy, s + dx]: each image shifts by up to `padding` pixels along each axis,
    all its channels together. Returns a new array of x's shape and dtype.
    """
    op = "random_crop"
    x, rng = _augment_args(op, x, rng)
    p = integer(op, "padding", padding, minimum=0)
    n, _, h, w = x.shape
    dy, dx = rng.integers(0, 2 * p + 1, size=(2, n))
    padded = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    windows = sliding_window_view(padded, (h, w), axis=(2, 3))  # (N, C, 2p+1, 2p+1, H, W)
    return np.ascontiguousarray(windows[np.arange(n), :, dy, dx])


def horizontal_flip(x: np.ndarray, rng, p: float = 0.5) -> np.ndarray:
    """Mirror each image left-right with probability p.

    x: (N, C, H, W) float; rng: Generator or int seed; p in [0, 1]. Returns a new array of x's
    shape and dtype.
    """
    op = "horizontal_flip"
    x, rng = _augment_args(op, x, rng)
    p = _nonnegative(op, "p", p)
    if p > 1:
        raise ValueError(f"{op}: p is a probability and must be in [0, 1], got {p!r}")
    flip = rng.random(len(x)) < p
    out = x.copy()
    out[flip] = x[flip, :, :, ::-1]
    return out


def intensity_jitter(
    x: np.ndarray, rng, brightness: float = 0.1, contrast: float = 0.1
) -> np.ndarray:
    """Per image x * (1 + c) + b, with c ~ U(-contrast, contrast) and b ~ U(-brightness, brightness).

    x: (N, C, H, W) float; rng: Generator or int seed; brightness in the units of x (full
    intensity when x is in [0, 1]); contrast a fraction. No clipping. Returns a new array of x's
    shape and dtype.
    """
    op = "intensity_jitter"
    x, rng = _augment_args(op, x, rng)
    brightness = _nonnegative(op, "brightness", brightness)
    contrast = _nonnegative(op, "contrast", contrast)
    n = len(x)
    c = rng.uniform(-contrast, contrast, n).astype(x.dtype)[:, None, None, None]
    b = rng.uniform(-brightness, brightness, n).astype(x.dtype)[:, None, None, None]
    return x * (1 + c) + b


def _bilinear(x: np.ndarray, sy: np.ndarray, sx: np.ndarray) -> np.ndarray:
    """Sample each image x[i] (C, H, W) at the points (sy[i], sx[i]), zero outside the image.

    sy, sx: (N, H', W') row and column coordinates. Returns (N, C, H', W') in x's dtype.
    """
    n, _, h, w = x.shape
    # a one-pixel zero border; every index outside the image is clipped onto it
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1))).transpose(0, 2, 3, 1)  # (N, H+2, W+2, C)
    y0, x0 = np.floor(sy), np.floor(sx)
    wy = (sy - y0).astype(x.dtype)[..., None]
    wx = (sx - x0).astype(x.dtype)[..., None]
    rows = [np.clip(y0 + k, 0, h + 1).astype(np.intp) for k in (1, 2)]
    cols = [np.clip(x0 + k, 0, w + 1).astype(np.intp) for k in (1, 2)]
    i = np.arange(n)[:, None, None]
    top = (1 - wx) * padded[i, rows[0], cols[0]] + wx * padded[i, rows[0], cols[1]]
    bottom = (1 - wx) * padded[i, rows[1], cols[0]] + wx * padded[i, rows[1], cols[1]]
    out = (1 - wy) * top + wy * bottom  # (N, H', W', C)
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def _rotate_scale(x: np.ndarray, degrees: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Rotate image i of x (N, C, H, W) by degrees[i] counter-clockwise (as displayed, row 0 at
    the top) and scale it by scales[i] about its centre, sampling bilinearly with zero fill."""
    _, _, h, w = x.shape
    cy, cx = (h - 1) / 2, (w - 1) / 2
    theta = np.deg2rad(degrees)
    cos = (np.cos(theta) / scales)[:, None, None]
    sin = (np.sin(theta) / scales)[:, None, None]
    dy = (np.arange(h) - cy)[None, :, None]
    dx = (np.arange(w) - cx)[None, None, :]
    # each output pixel reads the input at the inverse transform of its position
    return _bilinear(x, cy + dx * sin + dy * cos, cx + dx * cos - dy * sin)


def random_affine(
    x: np.ndarray,
    rng,
    degrees: float | tuple[float, float] = 10.0,
    scale: tuple[float, float] | None = (0.9, 1.1),
) -> np.ndarray:
    """Rotate and scale each image about its centre by a random angle and factor.

    x: (N, C, H, W) float; rng: Generator or int seed; degrees: d >= 0 for angles uniform in
    [-d, d], or a pair (low, high); positive angles turn counter-clockwise as displayed (row 0 at
    the top); scale: (low, high), factors drawn uniformly, > 1 enlarges, None for no scaling.
    Output pixels are sampled bilinearly from the input, zero outside it.
    Returns a new array of x's shape and dtype.
    """
    op = "random_affine"
    x, rng = _augment_args(op, x, rng)
    if isinstance(degrees, (tuple, list)):
        lo, hi = _interval(op, "degrees", degrees)
    else:
        hi = _nonnegative(op, "degrees", degrees)
        lo = -hi
    n = len(x)
    angles = rng.uniform(lo, hi, n)
    if scale is None:
        scales = np.ones(n)
    else:
        scales = rng.uniform(*_interval(op, "scale", scale, positive=True), n)
    return _rotate_scale(x, angles, scales)


@dataclass(frozen=True)
class Augmentation:
    """The augmentations above as one pipeline, described by its settings.

    crop_padding: random_crop's padding (0: off); flip: horizontal_flip with p = 0.5;
    jitter: intensity_jitter with brightness = contrast = jitter (0: off); degrees, scale:
    random_affine (off when degrees is 0 and scale is None; scale None means no scaling).
    `aug(x, rng)` runs the enabled steps in the order affine, crop, flip, jitter, all drawing
    from rng, on x (N, C, H, W) float, and returns a new array of x's shape and dtype. The
    default Augmentation() is the identity and draws no random numbers. to_dict / from_dict
    give the settings as a plain dict for a training history.
    """

    crop_padding: int = 0
    flip: bool = False
    jitter: float = 0.0
    degrees: float = 0.0
    scale: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        op = "Augmentation"
        padding = integer(op, "crop_padding", self.crop_padding, minimum=0)
        object.__setattr__(self, "crop_padding", padding)
        if not isinstance(self.flip, bool):
            raise TypeError(f"{op}: flip must be True or False, got {self.flip!r}")
        object.__setattr__(self, "jitter", _nonnegative(op, "jitter", self.jitter))
        object.__setattr__(self, "degrees", _nonnegative(op, "degrees", self.degrees))
        if self.scale is not None:
            object.__setattr__(self, "scale", _interval(op, "scale", self.scale, positive=True))

    def __call__(self, x: np.ndarray, rng) -> np.ndarray:
        x, rng = _augment_args("Augmentation", x, rng)
        out = x
        if self.degrees or self.scale is not None:
            out = random_affine(out, rng, self.degrees, self.scale)
        if self.crop_padding:
            out = random_crop(out, rng, self.crop_padding)
        if self.flip:
            out = horizontal_flip(out, rng)
        if self.jitter:
            out = intensity_jitter(out, rng, self.jitter, self.jitter)
        return x.copy() if out is x else out

    def to_dict(self) -> dict:
        """The settings {"crop_padding", "flip", "jitter", "degrees", "scale": [lo, hi] | None}."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["scale"] = None if self.scale is None else list(self.scale)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Augmentation:
        """The Augmentation that `to_dict` described; absent settings take their defaults."""
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            known = ", ".join(f.name for f in fields(cls))
            raise ValueError(
                f"Augmentation.from_dict: unknown settings {', '.join(unknown)}; known: {known}"
            )
        return cls(**d)
