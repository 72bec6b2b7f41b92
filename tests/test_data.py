"""cnn_core.data: IDX files, the data sets, splits, normalisation, batches and augmentation."""

from __future__ import annotations

import gzip
import io
import json
import struct
from importlib import resources

import numpy as np
import pytest

from cnn_core import data
from cnn_core.data import Augmentation, Normalizer
from cnn_core.datasets import make_subset

IDX_CODES = {
    np.uint8: 0x08,
    np.int8: 0x09,
    np.int16: 0x0B,
    np.int32: 0x0C,
    np.float32: 0x0D,
    np.float64: 0x0E,
}


def idx_bytes(a: np.ndarray) -> bytes:
    """The IDX encoding of `a`, written from the format's definition."""
    header = struct.pack(">BBBB", 0, 0, IDX_CODES[a.dtype.type], a.ndim)
    dims = struct.pack(f">{a.ndim}I", *a.shape)
    return header + dims + a.astype(a.dtype.newbyteorder(">")).tobytes()


def write(path, payload: bytes, gz: bool = False):
    path.write_bytes(gzip.compress(payload, mtime=0) if gz else payload)
    return path


# --------------------------------------------------------------------------- read_idx

IDX_ARRAYS = {
    "uint8 images": np.arange(5 * 28 * 28, dtype=np.int64).astype(np.uint8).reshape(5, 28, 28),
    "uint8 labels": np.array([9, 0, 3, 3, 7], dtype=np.uint8),
    "int32": np.array([[-(2**31), -1, 0], [1, 2**20, 2**31 - 1]], dtype=np.int32),
    "float32": np.linspace(-3.5, 2.25, 12, dtype=np.float32).reshape(2, 3, 2),
    "float64": np.array([np.pi, -1e-300, 1e300]),
    "int16": np.array([-300, 300], dtype=np.int16),
    "int8": np.array([-128, 127], dtype=np.int8),
}


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("name", list(IDX_ARRAYS))
def test_read_idx_round_trip(tmp_path, name, gz):
    a = IDX_ARRAYS[name]
    # compression is recognised by content, so give each file the misleading suffix
    path = write(tmp_path / ("f.idx" if gz else "f.gz"), idx_bytes(a), gz)
    got = data.read_idx(path)
    assert got.dtype == a.dtype and got.dtype.isnative
    assert got.shape == a.shape
    np.testing.assert_array_equal(got, a)
    got[...] = 0  # a writable array of its own


def test_read_idx_accepts_str_paths(tmp_path):
    path = write(tmp_path / "labels", idx_bytes(IDX_ARRAYS["uint8 labels"]))
    np.testing.assert_array_equal(data.read_idx(str(path)), IDX_ARRAYS["uint8 labels"])


GOOD = idx_bytes(np.arange(24, dtype=np.uint8).reshape(2, 3, 4))
BAD_FILES = {
    "bad magic": (b"\x01\x02" + GOOD[2:], "bad magic number"),
    "unknown type": (GOOD[:2] + b"\x0a" + GOOD[3:], "unknown type code 0x0a"),
    "short header": (GOOD[:9], "truncated"),
    "short data": (GOOD[:-1], "truncated"),
    "extra data": (GOOD + b"\0", "extra bytes"),
    "empty": (b"", "truncated"),
}


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gzip"])
@pytest.mark.parametrize("case", list(BAD_FILES))
def test_read_idx_rejects_bad_files_naming_them(tmp_path, case, gz):
    payload, problem = BAD_FILES[case]
    path = write(tmp_path / "broken-file", payload, gz)
    with pytest.raises(ValueError, match=problem) as err:
        data.read_idx(path)
    assert str(path) in str(err.value)


def test_read_idx_rejects_a_cut_gzip_stream(tmp_path):
    path = tmp_path / "cut.gz"
    path.write_bytes(gzip.compress(GOOD, mtime=0)[:-10])
    with pytest.raises(ValueError, match="does not decompress") as err:
        data.read_idx(path)
    assert str(path) in str(err.value)


# --------------------------------------------------------------------------- load_fashion_mnist

TINY = {
    "x_train": np.random.default_rng(1).integers(0, 256, (20, 28, 28), dtype=np.uint8),
    "y_train": (np.arange(20) % 10).astype(np.uint8),
    "x_test": np.random.default_rng(2).integers(0, 256, (10, 28, 28), dtype=np.uint8),
    "y_test": np.arange(10)[::-1].astype(np.uint8),
}


def write_fashion_mnist(folder, arrays=TINY, skip=()):
    """The four files under their official names, two gzipped and two plain."""
    folder.mkdir(exist_ok=True)
    for i, (role, stem) in enumerate(data.FASHION_MNIST_FILES.items()):
        if role not in skip:
            gz = i % 2 == 0
            write(folder / (f"{stem}.gz" if gz else stem), idx_bytes(arrays[role]), gz)
    return folder


@pytest.fixture
def nowhere(tmp_path, monkeypatch):
    """No $FASHION_MNIST_DIR and no default folder: only what a test writes can be found."""
    monkeypatch.delenv("FASHION_MNIST_DIR", raising=False)
    monkeypatch.setattr(data, "DEFAULT_FASHION_MNIST_DIR", tmp_path / "no-default")


def assert_is_tiny(ds, folder):
    assert ds.name == "fashion-mnist" and ds.source == str(folder)
    assert ds.x_train.shape == (20, 1, 28, 28) and ds.x_test.shape == (10, 1, 28, 28)
    assert ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int64
    assert ds.sizes == {"train": 20, "test": 10}
    for role in data.FASHION_MNIST_FILES:
        got = getattr(ds, role)
        np.testing.assert_array_equal(got[:, 0] if role.startswith("x") else got, TINY[role])


def test_load_fashion_mnist_from_path(tmp_path, nowhere):
    folder = write_fashion_mnist(tmp_path / "fm")
    assert_is_tiny(data.load_fashion_mnist(folder), folder)
    assert_is_tiny(data.load_dataset("fashion-mnist", path=str(folder)), folder)


def test_load_fashion_mnist_from_env(tmp_path, nowhere, monkeypatch):
    folder = write_fashion_mnist(tmp_path / "fm")
    monkeypatch.setenv("FASHION_MNIST_DIR", str(folder))
    assert_is_tiny(data.load_fashion_mnist(), folder)


def test_load_fashion_mnist_from_the_default_folder(tmp_path, nowhere, monkeypatch):
    folder = write_fashion_mnist(tmp_path / "fm")
    monkeypatch.setattr(data, "DEFAULT_FASHION_MNIST_DIR", folder)
    assert_is_tiny(data.load_fashion_mnist(), folder)


def test_load_fashion_mnist_only_looks_where_it_is_told(tmp_path, nowhere, monkeypatch):
    """A folder the user names is not silently replaced by the default one."""
    monkeypatch.setattr(data, "DEFAULT_FASHION_MNIST_DIR", write_fashion_mnist(tmp_path / "fm"))
    with pytest.raises(FileNotFoundError, match="empty-or-absent: no such folder"):
        data.load_fashion_mnist(tmp_path / "empty-or-absent")


def test_load_fashion_mnist_not_found_says_where_and_how(tmp_path, nowhere):
    partial = write_fashion_mnist(tmp_path / "partial", skip=("y_test",))
    with pytest.raises(FileNotFoundError) as err:
        data.load_fashion_mnist(partial)
    msg = str(err.value)
    assert str(partial) in msg and "missing t10k-labels-idx1-ubyte" in msg
    with pytest.raises(FileNotFoundError) as err:
        data.load_fashion_mnist()
    msg = str(err.value)
    assert "$FASHION_MNIST_DIR: not set" in msg
    assert str(tmp_path / "no-default") in msg
    assert "apt-get install dataset-fashion-mnist" in msg
    assert "train-images-idx3-ubyte.gz" in msg and "set FASHION_MNIST_DIR" in msg


def test_load_fashion_mnist_rejects_inconsistent_files(tmp_path, nowhere):
    bad = dict(TINY, y_test=np.full(10, 10, dtype=np.uint8))
    folder = write_fashion_mnist(tmp_path / "labels", bad)
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.*label 10"):
        data.load_fashion_mnist(folder)
    short = dict(TINY, y_train=TINY["y_train"][:-1])
    folder = write_fashion_mnist(tmp_path / "short", short)
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte.* 20 uint8 labels"):
        data.load_fashion_mnist(folder)


def test_load_dataset_lists_the_names():
    with pytest.raises(ValueError, match="fashion-mnist-subset, fashion-mnist"):
        data.load_dataset("mnist")


# --------------------------------------------------------------------------- built-in subset


@pytest.fixture(scope="module")
def subset():
    return data.load_builtin_subset()


def test_builtin_subset(subset):
    assert subset.name == "fashion-mnist-subset" and subset.source == "built-in subset"
    assert subset.classes == data.FASHION_MNIST_CLASSES and len(subset.classes) == 10
    assert subset.x_train.shape == (6000, 1, 28, 28) and subset.x_test.shape == (1000, 1, 28, 28)
    assert subset.x_train.dtype == subset.x_test.dtype == np.uint8
    assert subset.y_train.dtype == subset.y_test.dtype == np.int64
    assert np.bincount(subset.y_train).tolist() == [600] * 10
    assert np.bincount(subset.y_test).tolist() == [100] * 10
    for x in (subset.x_train, subset.x_test):
        assert x.min() == 0 and x.max() == 255
        assert (x.reshape(len(x), -1).max(axis=1) > 0).all()  # no blank image
    train = {im.tobytes() for im in subset.x_train}
    assert len(train) > 0.99 * len(subset.x_train)  # distinct images, not repeats
    shared = sum(im.tobytes() in train for im in subset.x_test)
    assert shared < 10  # the official splits barely overlap


def test_load_dataset_default_is_the_subset(subset):
    ds = data.load_dataset()
    assert ds.name == subset.name
    np.testing.assert_array_equal(ds.y_test, subset.y_test)


FULL_SET = data.DEFAULT_FASHION_MNIST_DIR
has_full_set = all(
    (FULL_SET / f"{stem}.gz").is_file() for stem in data.FASHION_MNIST_FILES.values()
)


@pytest.mark.skipif(
    not has_full_set,
    reason=f"the full Fashion-MNIST is not in {FULL_SET} (apt-get install dataset-fashion-mnist)",
)
def test_subset_comes_from_the_full_set_and_rebuilds_exactly(subset):
    full = data.load_fashion_mnist(FULL_SET)
    assert full.sizes == {"train": 60000, "test": 10000}
    for split in ("train", "test"):
        x_full, y_full = getattr(full, f"x_{split}"), getattr(full, f"y_{split}")
        labels = {}
        for im, label in zip(x_full, y_full, strict=True):
            labels.setdefault(im.tobytes(), set()).add(int(label))
        x_sub, y_sub = getattr(subset, f"x_{split}"), getattr(subset, f"y_{split}")
        for im, label in zip(x_sub, y_sub, strict=True):
            assert int(label) in labels.get(im.tobytes(), ()), (
                f"a {split} image not in the full set"
            )
    shipped = resources.files("cnn_core").joinpath("datasets").joinpath(data.SUBSET_FILE)
    with np.load(io.BytesIO(shipped.read_bytes())) as npz:
        stored = dict(npz)
    rebuilt = make_subset.build(full)
    assert stored.keys() == rebuilt.keys()
    for key, a in rebuilt.items():
        assert stored[key].dtype == a.dtype, key
        np.testing.assert_array_equal(stored[key], a, err_msg=key)


# --------------------------------------------------------------------------- train_val_split


def labelled(counts):
    """x = 0..N-1 (so rows identify examples) and labels with the given count per class."""
    y = np.repeat(np.arange(len(counts)), counts)
    y = y[np.random.default_rng(3).permutation(len(y))]
    return np.arange(len(y))[:, None] * np.ones(3, dtype=np.int64), y


def test_split_is_stratified_complete_and_ordered():
    x, y = labelled([100, 50, 30, 7])
    x_tr, y_tr, x_val, y_val = data.train_val_split(x, y, 0.2, rng=0)
    assert np.bincount(y_val).tolist() == [20, 10, 6, 1]
    assert np.bincount(y_tr).tolist() == [80, 40, 24, 6]
    ids_tr, ids_val = x_tr[:, 0], x_val[:, 0]
    assert sorted([*ids_tr, *ids_val]) == list(range(len(y)))
    assert (np.diff(ids_tr) > 0).all() and (np.diff(ids_val) > 0).all()
    np.testing.assert_array_equal(y[ids_val], y_val)


def test_split_is_seeded():
    x, y = labelled([40, 40])
    a = data.train_val_split(x, y, 0.25, rng=5)
    b = data.train_val_split(x, y, 0.25, rng=np.random.default_rng(5))
    c = data.train_val_split(x, y, 0.25, rng=6)
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a[2], c[2])


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(val_fraction=0.0), ValueError, r"val_fraction must be in \(0, 1\)"),
        (dict(val_fraction=1.0), ValueError, r"val_fraction must be in \(0, 1\)"),
        (dict(val_fraction=True), TypeError, "val_fraction"),
        (dict(y=np.zeros(5)), TypeError, "integer class labels"),
        (dict(y=np.zeros(4, dtype=int)), ValueError, "x has shape .* 4 labels"),
        (dict(x=np.zeros((3, 2)), y=np.arange(3)), ValueError, "validation part would be empty"),
    ],
)
def test_split_errors(kwargs, error, match):
    args = dict(x=np.zeros((5, 2)), y=np.zeros(5, dtype=int), val_fraction=0.4)
    with pytest.raises(error, match=match):
        data.train_val_split(**{**args, **kwargs})


# --------------------------------------------------------------------------- Normalizer


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
def test_normalizer_statistics_and_result(dtype, monkeypatch):
    monkeypatch.setattr(data, "_CHUNK", 3)  # several chunks of squared deviations
    rng = np.random.default_rng(0)
    x = (rng.random((10, 3, 5, 4)) * np.array([50, 150, 250])[None, :, None, None]).astype(dtype)
    x_before = x.copy()
    norm = Normalizer.fit(x)
    scale = 255.0 if dtype == np.uint8 else 1.0
    x64 = x.astype(np.float64) / scale
    np.testing.assert_allclose(norm.mean, x64.mean(axis=(0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(norm.std, x64.std(axis=(0, 2, 3)), rtol=1e-12)
    out = norm(x)
    assert out.dtype == np.float32 and out.shape == x.shape
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(0, 2, 3)), 1, rtol=1e-5)
    np.testing.assert_array_equal(x, x_before)


def test_normalizer_uint8_and_scaled_float_agree():
    x = np.random.default_rng(1).integers(0, 256, (6, 1, 4, 4), dtype=np.uint8)
    norm = Normalizer.fit(x)
    np.testing.assert_allclose(norm(x), norm(x / 255.0), rtol=1e-5, atol=1e-6)


def test_normalizer_round_trips_through_json():
    norm = Normalizer.fit(np.random.default_rng(2).random((4, 2, 3, 3)))
    again = Normalizer.from_dict(json.loads(json.dumps(norm.to_dict())))
    np.testing.assert_array_equal(again.mean, norm.mean)
    np.testing.assert_array_equal(again.std, norm.std)
    assert set(norm.to_dict()) == {"mean", "std"}


def test_normalizer_constant_channel_and_errors():
    x = np.zeros((2, 2, 3, 3))
    x[:, 1] = np.arange(9).reshape(3, 3)
    norm = Normalizer.fit(x)
    assert norm.std[0] == 1.0 and norm.mean[0] == 0.0
    assert np.isfinite(norm(x)).all()
    with pytest.raises(ValueError, match="x has 3 channels .* fit on 2"):
        norm(np.zeros((1, 3, 3, 3)))
    with pytest.raises(TypeError, match="dtype int64; use uint8"):
        Normalizer.fit(np.zeros((1, 1, 2, 2), dtype=np.int64))
    with pytest.raises(ValueError, match="4-D"):
        Normalizer.fit(np.zeros((2, 3, 3)))
    with pytest.raises(ValueError, match="missing std"):
        Normalizer.from_dict({"mean": [0.5]})
    with pytest.raises(ValueError, match="std must be positive"):
        Normalizer(mean=[0.0], std=[0.0])


# --------------------------------------------------------------------------- batches


def epoch(n=23, batch_size=5, **kwargs):
    x = np.arange(n)[:, None] * [1, -1]  # row i is (i, -i): pairs stay together
    out = list(data.batches(x, np.arange(n), batch_size, **kwargs))
    for xb, yb in out:
        np.testing.assert_array_equal(xb[:, 0], yb)
    return [yb for _, yb in out]


def test_batches_cover_every_example_once():
    ys = epoch(rng=0)
    assert [len(b) for b in ys] == [5, 5, 5, 5, 3]
    assert sorted(np.concatenate(ys).tolist()) == list(range(23))
    assert np.concatenate(ys).tolist() != list(range(23))  # shuffled
    assert len(ys) == data.num_batches(23, 5)


def test_batches_are_seeded():
    same = [np.concatenate(epoch(rng=r)) for r in (7, np.random.default_rng(7))]
    np.testing.assert_array_equal(*same)
    assert not np.array_equal(same[0], np.concatenate(epoch(rng=8)))
    rng = np.random.default_rng(7)
    first, second = np.concatenate(epoch(rng=rng)), np.concatenate(epoch(rng=rng))
    np.testing.assert_array_equal(first, same[0])
    assert not np.array_equal(first, second)  # a Generator moves on: the next epoch differs


def test_batches_drop_last_and_no_shuffle():
    ys = epoch(rng=0, drop_last=True)
    assert [len(b) for b in ys] == [5, 5, 5, 5]
    assert len(set(np.concatenate(ys).tolist())) == 20
    assert len(ys) == data.num_batches(23, 5, drop_last=True)
    assert np.concatenate(epoch(shuffle=False)).tolist() == list(range(23))
    assert epoch(n=0) == []


def test_num_batches_and_batch_errors():
    assert [data.num_batches(n, 4) for n in (0, 1, 4, 5, 8)] == [0, 1, 1, 2, 2]
    assert [data.num_batches(n, 4, drop_last=True) for n in (3, 4, 9)] == [0, 1, 2]
    with pytest.raises(ValueError, match="batch_size must be positive"):
        data.batches(np.zeros((3, 2)), np.zeros(3), 0)  # raised at the call, not on iteration
    with pytest.raises(ValueError, match="x has shape"):
        data.batches(np.zeros((3, 2)), np.zeros(4), 2)
    with pytest.raises(TypeError, match="batch_size must be an int"):
        data.num_batches(10, 2.0)


# --------------------------------------------------------------------------- augmentation

AUGMENTATIONS = {
    "crop": lambda x, rng: data.random_crop(x, rng, padding=2),
    "flip": lambda x, rng: data.horizontal_flip(x, rng),
    "jitter": lambda x, rng: data.intensity_jitter(x, rng, 0.2, 0.3),
    "affine": lambda x, rng: data.random_affine(x, rng, 15.0, (0.8, 1.2)),
    "pipeline": Augmentation(crop_padding=2, flip=True, jitter=0.1, degrees=10, scale=(0.9, 1.1)),
}


def images(n=16, c=2, h=9, w=8, dtype=np.float64, seed=0):
    return np.random.default_rng(seed).random((n, c, h, w)).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list(AUGMENTATIONS))
def test_augmentation_contract(name, dtype):
    aug = AUGMENTATIONS[name]
    x = images(dtype=dtype)
    x_before = x.copy()
    out = aug(x, 3)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert not np.shares_memory(out, x)
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(aug(x, 3), out)
    np.testing.assert_array_equal(aug(x, np.random.default_rng(3)), out)
    assert not np.array_equal(aug(x, 4), out)


@pytest.mark.parametrize("name", list(AUGMENTATIONS))
def test_augmentation_rejects_integer_images(name):
    with pytest.raises(TypeError, match="dtype uint8; use float32 or float64"):
        AUGMENTATIONS[name](np.zeros((1, 1, 4, 4), dtype=np.uint8), 0)


def test_flip_known_answers():
    x = images()
    np.testing.assert_array_equal(data.horizontal_flip(x, 0, p=1.0), x[..., ::-1])
    np.testing.assert_array_equal(data.horizontal_flip(x, 0, p=0.0), x)
    out = data.horizontal_flip(images(n=64), 0)
    flipped = [np.array_equal(o, i[..., ::-1]) for o, i in zip(out, images(n=64), strict=True)]
    kept = [np.array_equal(o, i) for o, i in zip(out, images(n=64), strict=True)]
    assert all(f != k for f, k in zip(flipped, kept, strict=True))
    assert 10 < sum(flipped) < 54
    with pytest.raises(ValueError, match=r"p is a probability"):
        data.horizontal_flip(x, 0, p=1.5)


def test_crop_is_a_shift_of_the_zero_padded_image():
    x, p = images(n=60, c=2, h=6, w=7), 2
    out = data.random_crop(x, 0, padding=p)
    padded = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    seen = set()
    for o, pad in zip(out, padded, strict=True):
        hits = [
            (dy, dx)
            for dy in range(2 * p + 1)
            for dx in range(2 * p + 1)
            if np.array_equal(o, pad[:, dy : dy + 6, dx : dx + 7])  # both channels together
        ]
        assert len(hits) == 1
        seen.add(hits[0])
    assert len(seen) > 15  # offsets spread over the 25 possible
    np.testing.assert_array_equal(data.random_crop(x, 0, padding=0), x)


def test_crop_of_a_single_pixel_moves_it_by_at_most_the_padding():
    x = np.zeros((30, 1, 7, 7))
    x[:, 0, 3, 3] = 1.0
    for o in data.random_crop(x, 1, padding=2):
        (r,), (s,) = np.nonzero(o[0] == 1.0)
        assert abs(r - 3) <= 2 and abs(s - 3) <= 2 and o.sum() == 1.0


def test_jitter_is_an_affine_map_of_each_image_within_range():
    x = images(n=40, c=1)
    out = data.intensity_jitter(x, 0, brightness=0.2, contrast=0.3)
    for o, i in zip(out, x, strict=True):
        flat_o, flat_i = o.ravel(), i.ravel()
        gain, offset = np.polyfit(flat_i, flat_o, 1)
        np.testing.assert_allclose(flat_o, gain * flat_i + offset, atol=1e-12)
        assert abs(gain - 1) <= 0.3 + 1e-12 and abs(offset) <= 0.2 + 1e-12
    np.testing.assert_array_equal(data.intensity_jitter(x, 0, 0.0, 0.0), x)


def test_affine_identity():
    x = images()
    np.testing.assert_array_equal(data.random_affine(x, 0, degrees=0.0, scale=(1.0, 1.0)), x)
    np.testing.assert_array_equal(data.random_affine(x, 0, degrees=0.0, scale=None), x)


@pytest.mark.parametrize("size", [7, 8])
@pytest.mark.parametrize("angle, k", [(90, 1), (-90, -1), (180, 2)])
def test_affine_quarter_turns_match_rot90(size, angle, k):
    x = images(n=3, c=2, h=size, w=size)  # random, so no symmetry hides a wrong direction
    out = data.random_affine(x, 0, degrees=(angle, angle), scale=None)
    np.testing.assert_allclose(out, np.rot90(x, k, axes=(2, 3)), atol=1e-12)


def test_affine_scaling_about_the_centre():
    x = np.ones((1, 1, 9, 9))
    out = data.random_affine(x, 0, degrees=0.0, scale=(0.5, 0.5))
    expected = np.zeros((9, 9))
    expected[2:7, 2:7] = 1.0  # output pixel p reads the input at centre + 2 (p - centre)
    np.testing.assert_array_equal(out[0, 0], expected)
    zoomed = data.random_affine(np.arange(81.0).reshape(1, 1, 9, 9), 0, 0.0, (2.0, 2.0))
    assert zoomed[0, 0, 4, 4] == 40.0  # the centre stays put
    assert zoomed[0, 0, 4, 5] == 40.5  # half a pixel to its right, bilinearly


def test_affine_rotation_keeps_a_constant_interior_and_fills_zeros():
    out = data.random_affine(np.ones((5, 1, 15, 15)), 0, degrees=45.0, scale=None)
    np.testing.assert_allclose(out[:, :, 5:10, 5:10], 1.0, atol=1e-12)
    assert out.min() >= 0 and out.max() <= 1 + 1e-12


def test_affine_errors():
    x = images()
    with pytest.raises(ValueError, match="degrees must be non-negative"):
        data.random_affine(x, 0, degrees=-1.0)
    with pytest.raises(ValueError, match="scale must have 0 < low <= high"):
        data.random_affine(x, 0, scale=(1.2, 0.8))
    with pytest.raises(ValueError, match="scale must be a pair"):
        data.random_affine(x, 0, scale=1.1)


def test_default_augmentation_is_the_identity_and_draws_nothing():
    x = images()
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    out = Augmentation()(x, rng)
    np.testing.assert_array_equal(out, x)
    assert out is not x
    assert rng.bit_generator.state == state


def test_augmentation_runs_affine_crop_flip_jitter_in_order():
    aug = AUGMENTATIONS["pipeline"]
    x = images()
    rng = np.random.default_rng(9)
    expected = data.random_affine(x, rng, 10.0, (0.9, 1.1))
    expected = data.random_crop(expected, rng, 2)
    expected = data.horizontal_flip(expected, rng)
    expected = data.intensity_jitter(expected, rng, 0.1, 0.1)
    np.testing.assert_array_equal(aug(x, 9), expected)


def test_augmentation_round_trips_through_json():
    aug = AUGMENTATIONS["pipeline"]
    d = aug.to_dict()
    assert d == dict(crop_padding=2, flip=True, jitter=0.1, degrees=10.0, scale=[0.9, 1.1])
    assert Augmentation.from_dict(json.loads(json.dumps(d))) == aug
    assert Augmentation.from_dict(Augmentation().to_dict()) == Augmentation()
    assert Augmentation.from_dict({"flip": True}) == Augmentation(flip=True)


@pytest.mark.parametrize(
    "settings, error, match",
    [
        (dict(crop_padding=-1), ValueError, "crop_padding must be at least 0"),
        (dict(crop_padding=1.5), TypeError, "crop_padding must be an int"),
        (dict(flip=1), TypeError, "flip must be True or False"),
        (dict(jitter=-0.1), ValueError, "jitter must be non-negative"),
        (dict(scale=(0.0, 1.0)), ValueError, "scale must have 0 < low"),
    ],
)
def test_augmentation_settings_are_checked(settings, error, match):
    with pytest.raises(error, match=match):
        Augmentation(**settings)


def test_augmentation_from_dict_names_unknown_settings():
    with pytest.raises(ValueError, match="unknown settings rotate; known: crop_padding"):
        Augmentation.from_dict({"rotate": 10})
