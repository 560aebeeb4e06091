"""Tests for ppvae.data: splits, binarization, file formats and error messages.

The MNIST-family tests need the real files and find them only through the
PPVAE_DATA environment variable (skipped when it is unset); every other test
runs on scikit-learn's digits or on tiny files written into tmp_path.
"""

import gzip
import hashlib
import io
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from ppvae.data import (DATASETS, DataError, DataOptions, Dataset, MissingDataError, Split,
                        binarize, label_split, load_dataset)

IDX_STEMS = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
MNIST_TRAIN_LABEL_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def assert_same_split(a: Split, b: Split) -> None:
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)


def is_binary(x: torch.Tensor) -> bool:
    return bool(((x == 0) | (x == 1)).all())


def sorted_rows(a: np.ndarray) -> np.ndarray:
    """The rows of ``a`` in lexicographic order, to compare two arrays as multisets of rows."""
    return a[np.lexsort(a.T[::-1])].astype(np.float64)


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    header = struct.pack(f">{1 + array.ndim}I", magic, *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_file(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def write_tiny_idx(directory: Path, *, compress: bool = True, n_train=20, n_test=6) -> dict:
    """Write a tiny MNIST-like set of IDX files (random 28x28 images); return the arrays by stem."""
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.arange(n_train, dtype=np.uint8) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.arange(n_test, dtype=np.uint8)[::-1] % 10,
    }
    for stem, array in arrays.items():
        data = idx_bytes(array, 2051 if array.ndim == 3 else 2049)
        if compress:
            write_file(directory / f"{stem}.gz", gzip.compress(data))
        else:
            write_file(directory / stem, data)
    return arrays


def write_tiny_amat(directory: Path, sizes=(("train", 8), ("valid", 3), ("test", 4))) -> dict:
    rng = np.random.default_rng(1)
    rows = {}
    for split, n in sizes:
        rows[split] = rng.integers(0, 2, (n, 784), dtype=np.uint8)
        np.savetxt(directory / f"binarized_mnist_{split}.amat", rows[split], fmt="%d")
    return rows


# ---------------------------------------------------------------------------
# digits (always available)


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_dataset("digits")


def test_digits_shapes_and_values(digits):
    assert digits.name == "digits" and digits.image_shape == (1, 8, 8) and digits.input_dim == 64
    assert (len(digits.train), len(digits.val), len(digits.test)) == (1293, 144, 360)
    assert digits.num_classes == 10 and digits.class_names == tuple("0123456789")
    assert digits.binarize is None
    for split in (digits.train, digits.val, digits.test):
        assert split.x.dtype == torch.float32 and split.x.shape == (len(split), 64)
        assert split.y.dtype == torch.int64 and split.y.shape == (len(split),)
        assert split.x.min() >= 0 and split.x.max() <= 1
        assert set(split.y.tolist()) == set(range(10))


def test_digits_splits_partition_the_data(digits):
    from sklearn.datasets import load_digits

    full = load_digits()
    x = torch.cat([digits.train.x, digits.val.x, digits.test.x]).numpy() * 16
    y = torch.cat([digits.train.y, digits.val.y, digits.test.y]).numpy()
    np.testing.assert_array_equal(
        sorted_rows(np.column_stack([x, y])), sorted_rows(np.column_stack([full.data, full.target]))
    )


def test_digits_test_split_fixed_val_split_seeded(digits):
    other = load_dataset("digits", seed=1)
    assert_same_split(digits.test, other.test)
    assert not torch.equal(digits.val.x, other.val.x)
    again = load_dataset("digits", seed=0)
    for a, b in zip((digits.train, digits.val, digits.test), (again.train, again.val, again.test)):
        assert_same_split(a, b)


def test_val_fraction_sets_val_size():
    data = load_dataset("digits", val_fraction=0.25)
    assert (len(data.train), len(data.val), len(data.test)) == (1078, 359, 360)


@pytest.mark.parametrize("name", ["DIGITS", " Digits"])
def test_names_are_case_insensitive(name):
    assert load_dataset(name).name == "digits"


@pytest.mark.parametrize(
    ("name", "subdir"),
    [
        ("fashion_mnist", "fashion-mnist"),
        ("FashionMNIST", "fashion-mnist"),
        ("Binarized_MNIST", "binarized-mnist"),
    ],
)
def test_name_aliases(name, subdir, tmp_path):
    with pytest.raises(MissingDataError, match=subdir):
        load_dataset(name, tmp_path)


def test_datasets_constant():
    assert DATASETS == ("digits", "mnist", "fashion-mnist", "binarized-mnist")


# ---------------------------------------------------------------------------
# binarization


def test_binarize_function():
    x = torch.rand(500, 64, generator=torch.Generator().manual_seed(0))
    b = binarize(x, torch.Generator().manual_seed(3))
    assert b.dtype == torch.float32 and b.shape == x.shape and is_binary(b)
    assert torch.equal(b, binarize(x, torch.Generator().manual_seed(3)))
    assert abs(b.mean().item() - x.mean().item()) < 0.01
    ends = torch.tensor([0.0, 1.0, 1.0, 0.0])
    assert torch.equal(binarize(ends), ends)
    assert binarize(torch.full((3,), 0.5, dtype=torch.float64)).dtype == torch.float32


def test_static_binarization(digits):
    static0 = load_dataset("digits", binarize="static", seed=0)
    static1 = load_dataset("digits", binarize="static", seed=1)
    assert static0.binarize == "static"
    assert all(is_binary(s.x) for s in (static0.train, static0.val, static0.test))
    assert_same_split(static0.test, static1.test)
    assert not torch.equal(static0.train.x, static1.train.x)
    assert torch.equal(static0.train.y, digits.train.y)
    assert torch.equal(static0.test.y, digits.test.y)
    # Bernoulli(x): ink where the grey image is dark enough, roughly the grey mean
    assert abs(static0.train.x.mean().item() - digits.train.x.mean().item()) < 0.01
    assert not bool(static0.train.x[digits.train.x == 0].any())


def test_dynamic_binarization(digits):
    dynamic = load_dataset("digits", binarize="dynamic", seed=0)
    static = load_dataset("digits", binarize="static", seed=0)
    assert dynamic.binarize == "dynamic"
    assert torch.equal(dynamic.train.x, digits.train.x)  # grey, re-sampled by the trainer
    assert is_binary(dynamic.val.x) and is_binary(dynamic.test.x)
    assert_same_split(dynamic.test, static.test)
    assert_same_split(dynamic.val, static.val)
    assert_same_split(dynamic.test, load_dataset("digits", binarize="dynamic", seed=5).test)


# ---------------------------------------------------------------------------
# bad arguments


def test_unknown_name_lists_known_names():
    with pytest.raises(DataError, match="unknown data set 'cifar10'") as info:
        load_dataset("cifar10")
    assert all(name in str(info.value) for name in DATASETS)


@pytest.mark.parametrize("mode", ["Static", "yes", True, "none"])
def test_bad_binarize_value(mode):
    with pytest.raises(DataError, match="binarize must be None, 'static' or 'dynamic'"):
        load_dataset("digits", binarize=mode)


@pytest.mark.parametrize("mode", ["static", "dynamic"])
def test_binarized_mnist_refuses_binarization(mode):
    with pytest.raises(DataError, match="already binary"):
        load_dataset("binarized-mnist", binarize=mode)


@pytest.mark.parametrize("options, likelihood, mode", [
    (DataOptions(), "bernoulli", "dynamic"),  # auto: binary data for a Bernoulli likelihood
    (DataOptions(), "gaussian", None),
    (DataOptions(), None, None),
    (DataOptions(binarize="static"), "gaussian", "static"),
    (DataOptions(binarize="none"), "bernoulli", None),
])
def test_data_options_binarize_for_the_likelihood(options, likelihood, mode):
    data = options.load(seed=3, likelihood=likelihood)
    assert data.binarize == mode
    assert torch.equal(data.val.x, load_dataset("digits", seed=3, binarize=mode).val.x)


def test_data_options_leave_binarized_mnist_as_it_is(real_root):
    assert DataOptions("binarized-mnist").load(likelihood="bernoulli").binarize == "static"


@pytest.mark.parametrize("fraction", [0, 1, 1.5, -0.1, 0.0001, "0.1"])
def test_bad_val_fraction(fraction):
    with pytest.raises(DataError, match="val_fraction"):
        load_dataset("digits", val_fraction=fraction)


def test_bad_seed():
    with pytest.raises(DataError, match="seed"):
        load_dataset("digits", seed=-1)


def test_split_checks_dtypes():
    with pytest.raises(DataError, match="float32"):
        Split(torch.zeros(3, 4, dtype=torch.float64), torch.zeros(3, dtype=torch.int64))
    with pytest.raises(DataError, match="int64"):
        Split(torch.zeros(3, 4), torch.zeros(2, dtype=torch.int64))


def test_split_scales_are_checked_and_follow_their_rows():
    x, y = torch.arange(12.0).reshape(6, 2), torch.tensor([0, 1, 0, 1, 0, 1])
    with pytest.raises(DataError, match="shape of x"):
        Split(x, y, torch.ones(6, 3))
    with pytest.raises(DataError, match="non-negative"):
        Split(x, y, -torch.ones(6, 2))
    with pytest.raises(DataError, match="finite"):
        Split(x, y, torch.full((6, 2), float("nan")))
    split = Split(x, y, x / 10)
    labels = label_split(split, 2, 2, seed=0)
    for part in (labels.labelled, labels.unlabelled):
        assert torch.equal(part.scale, part.x / 10)
    assert label_split(Split(x, y), 2, 2).labelled.scale is None


# ---------------------------------------------------------------------------
# IDX files (tiny fakes)


@pytest.mark.parametrize(
    ("compress", "subdir"), [(True, "mnist"), (False, "mnist"), (True, "MNIST/raw"), (True, "")]
)
def test_tiny_idx_set_loads(tmp_path, compress, subdir):
    arrays = write_tiny_idx(tmp_path / subdir, compress=compress)
    data = load_dataset("mnist", tmp_path, verify=False, val_fraction=0.25)
    assert (len(data.train), len(data.val), len(data.test)) == (15, 5, 6)
    assert data.image_shape == (1, 28, 28) and data.input_dim == 784 and data.num_classes == 10
    images = arrays["t10k-images-idx3-ubyte"].reshape(6, 784)
    assert torch.equal(data.test.x, torch.from_numpy(images / np.float32(255)))
    assert data.test.y.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    # train + val are the training file, permuted
    train_x = torch.cat([data.train.x, data.val.x]).numpy() * 255
    train_y = torch.cat([data.train.y, data.val.y]).numpy()
    expected_x = arrays["train-images-idx3-ubyte"].reshape(20, 784)
    np.testing.assert_array_equal(
        sorted_rows(np.column_stack([train_x.round(), train_y])),
        sorted_rows(np.column_stack([expected_x, arrays["train-labels-idx1-ubyte"]])),
    )


def test_fashion_mnist_class_names(tmp_path):
    write_tiny_idx(tmp_path / "fashion-mnist")
    data = load_dataset("fashion-mnist", tmp_path, verify=False)
    assert data.class_names[0] == "T-shirt/top" and data.class_names[-1] == "Ankle boot"
    assert len(data.class_names) == 10


def test_root_from_environment(tmp_path, monkeypatch):
    write_tiny_idx(tmp_path / "mnist")
    monkeypatch.setenv("PPVAE_DATA", str(tmp_path))
    assert len(load_dataset("mnist", verify=False).test) == 6


def test_idx_md5_mismatch(tmp_path):
    write_tiny_idx(tmp_path / "mnist")
    path = tmp_path / "mnist" / "train-images-idx3-ubyte.gz"
    actual = hashlib.md5(path.read_bytes()).hexdigest()
    with pytest.raises(DataError, match="md5") as info:
        load_dataset("mnist", tmp_path)
    message = str(info.value)
    assert str(path) in message and actual in message
    assert "f68b3c2dcbeaaa9fbdd348bbdeb94873" in message
    assert "corrupt" in message and "official release" in message


def corrupt_wrong_magic(tmp_path: Path) -> Path:
    data = idx_bytes(np.zeros((2, 28, 28), np.uint8), 2049)
    return write_file(tmp_path / "mnist" / "train-images-idx3-ubyte.gz", gzip.compress(data))


def corrupt_truncated(tmp_path: Path) -> Path:
    data = idx_bytes(np.zeros((20, 28, 28), np.uint8), 2051)[:-100]
    return write_file(tmp_path / "mnist" / "train-images-idx3-ubyte.gz", gzip.compress(data))


def corrupt_short_header(tmp_path: Path) -> Path:
    path = tmp_path / "mnist" / "train-labels-idx1-ubyte.gz"
    return write_file(path, gzip.compress(b"\x00\x00\x08"))


def corrupt_not_gzip(tmp_path: Path) -> Path:
    return write_file(tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz", b"this is not gzip data")


def corrupt_truncated_gzip(tmp_path: Path) -> Path:
    path = tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz"
    return write_file(path, path.read_bytes()[: len(path.read_bytes()) // 2])


def corrupt_label_count(tmp_path: Path) -> Path:
    data = idx_bytes(np.zeros(7, np.uint8), 2049)
    return write_file(tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz", gzip.compress(data))


def corrupt_label_range(tmp_path: Path) -> Path:
    data = idx_bytes(np.full(6, 10, np.uint8), 2049)
    return write_file(tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz", gzip.compress(data))


def corrupt_image_size(tmp_path: Path) -> Path:
    data = idx_bytes(np.zeros((6, 5, 5), np.uint8), 2051)
    return write_file(tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz", gzip.compress(data))


@pytest.mark.parametrize(
    ("corrupt", "pattern"),
    [
        (corrupt_wrong_magic, "bad IDX magic number 2049 \\(expected 2051\\)"),
        (corrupt_truncated, "truncated"),
        (corrupt_short_header, "too short for an IDX header"),
        (corrupt_not_gzip, "not a readable gzip file"),
        (corrupt_truncated_gzip, "not a readable gzip file"),
        (corrupt_label_count, "6 images but .* 7 labels"),
        (corrupt_label_range, "labels outside 0..9"),
        (corrupt_image_size, "5x5, expected 28x28"),
    ],
)
def test_corrupt_idx_files(tmp_path, corrupt, pattern):
    write_tiny_idx(tmp_path / "mnist")
    path = corrupt(tmp_path)
    with pytest.raises(DataError, match=pattern) as info:
        load_dataset("mnist", tmp_path, verify=False)
    assert path.name in str(info.value)


def test_corrupt_uncompressed_idx(tmp_path):
    write_tiny_idx(tmp_path / "mnist", compress=False)
    path = tmp_path / "mnist" / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte: the header promises"):
        load_dataset("mnist", tmp_path)  # no md5 for uncompressed files; structure is checked


# ---------------------------------------------------------------------------
# missing files


def test_missing_file_names_file_and_directories(tmp_path):
    write_tiny_idx(tmp_path / "mnist")
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(MissingDataError) as info:
        load_dataset("mnist", tmp_path, verify=False)
    message = str(info.value)
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, DataError)
    assert "t10k-labels-idx1-ubyte.gz" in message and "train-images" not in message
    for directory in (tmp_path / "mnist", tmp_path / "MNIST" / "raw", tmp_path):
        assert f"  {directory}" in message
    assert "root= argument" in message and "MNIST database" in message and "PPVAE_DATA" in message


def test_missing_file_with_root_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PPVAE_DATA", str(tmp_path))
    with pytest.raises(MissingDataError, match="PPVAE_DATA environment variable") as info:
        load_dataset("fashion-mnist")
    assert str(tmp_path / "fashion-mnist") in str(info.value)
    assert "zalandoresearch/fashion-mnist" in str(info.value)


def test_missing_root(monkeypatch):
    monkeypatch.delenv("PPVAE_DATA", raising=False)
    pattern = "neither root= nor the PPVAE_DATA environment variable"
    with pytest.raises(MissingDataError, match=pattern) as info:
        load_dataset("binarized-mnist")
    assert "binarized_mnist_train" in str(info.value) and "Larochelle" in str(info.value)


def test_digits_ignores_root(tmp_path, monkeypatch):
    monkeypatch.delenv("PPVAE_DATA", raising=False)
    assert len(load_dataset("digits", tmp_path / "nowhere").test) == 360


# ---------------------------------------------------------------------------
# binarized MNIST files (tiny fakes)


def test_tiny_amat_set_loads(tmp_path):
    (tmp_path / "binarized-mnist").mkdir()
    rows = write_tiny_amat(tmp_path / "binarized-mnist")
    data = load_dataset("binarized-mnist", tmp_path, val_fraction=0.5)  # val_fraction unused
    assert (len(data.train), len(data.val), len(data.test)) == (8, 3, 4)
    assert data.num_classes == 0 and data.class_names == () and data.binarize == "static"
    assert torch.equal(data.val.x, torch.from_numpy(rows["valid"].astype(np.float32)))
    for split in (data.train, data.val, data.test):
        assert split.y.dtype == torch.int64 and bool((split.y == -1).all())


def test_tiny_npz_set_loads_and_is_md5_checked(tmp_path):
    rows = write_tiny_amat(tmp_path)
    np.savez_compressed(tmp_path / "binarized_mnist_test.npz", x=np.packbits(rows["test"], axis=1))
    (tmp_path / "binarized_mnist_test.amat").unlink()
    data = load_dataset("binarized-mnist", tmp_path, verify=False)
    assert torch.equal(data.test.x, torch.from_numpy(rows["test"].astype(np.float32)))
    pattern = "binarized_mnist_test.npz: md5 mismatch, expected 359f8d37"
    with pytest.raises(DataError, match=pattern):
        load_dataset("binarized-mnist", tmp_path)


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        (b"0 1 2\n", "rows of 784"),
        (b"0.5 " * 783 + b"0.5\n", "not a table of 0/1 values"),
        (b"2 " * 783 + b"2\n", "values other than 0 and 1"),
        (b"", "0 rows"),
        (b"0 " * 784 + b"\n" + b"1 " * 700 + b"\n", "not a table of 0/1 values"),
    ],
)
def test_corrupt_amat(tmp_path, content, pattern):
    write_tiny_amat(tmp_path)
    path = write_file(tmp_path / "binarized_mnist_train.amat", content)
    with pytest.raises(DataError, match=pattern) as info:
        load_dataset("binarized-mnist", tmp_path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("make", "pattern"),
    [
        (lambda p: p.write_bytes(b"PK\x03\x04 broken zip"), "not a readable .npz archive"),
        (lambda p: p.write_bytes(b"garbage"), "not a readable .npz archive"),
        (lambda p: np.savez(p, y=np.zeros((2, 98), np.uint8)), "no array named 'x'"),
        (lambda p: np.savez(p, x=np.zeros((2, 784), np.uint8)), "uint8 of shape \\(N, 98\\)"),
        (lambda p: p.write_bytes(npy_bytes(np.zeros(3))), "bare .npy"),
    ],
)
def test_corrupt_npz(tmp_path, make, pattern):
    write_tiny_amat(tmp_path)
    path = tmp_path / "binarized_mnist_valid.npz"
    make(path)
    with pytest.raises(DataError, match=pattern) as info:
        load_dataset("binarized-mnist", tmp_path, verify=False)
    assert str(path) in str(info.value)


# ---------------------------------------------------------------------------
# the real files, through $PPVAE_DATA


@pytest.fixture(scope="module")
def real_root() -> str:
    root = os.environ.get("PPVAE_DATA")
    if not root:
        pytest.skip("PPVAE_DATA is not set: it must point to the MNIST-family files (CI sets it)")
    return root


def test_mnist(real_root):
    data = load_dataset("mnist")
    assert (len(data.train), len(data.val), len(data.test)) == (54000, 6000, 10000)
    assert data.image_shape == (1, 28, 28) and data.class_names == tuple("0123456789")
    assert data.train.x.dtype == torch.float32 and data.train.x.shape == (54000, 784)
    assert data.train.x.min() == 0 and data.train.x.max() == 1 and data.test.x.max() == 1
    train_counts = torch.cat([data.train.y, data.val.y]).bincount(minlength=10)
    assert train_counts.tolist() == MNIST_TRAIN_LABEL_COUNTS
    assert data.test.y.bincount(minlength=10).sum() == 10000 and data.test.y.max() == 9


def test_fashion_mnist(real_root):
    data = load_dataset("Fashion_MNIST", real_root, seed=3, val_fraction=0.2)
    assert data.name == "fashion-mnist"
    assert (len(data.train), len(data.val), len(data.test)) == (48000, 12000, 10000)
    assert data.class_names[0] == "T-shirt/top" and data.class_names[9] == "Ankle boot"
    assert torch.cat([data.train.y, data.val.y]).bincount(minlength=10).tolist() == [6000] * 10
    assert data.test.y.bincount(minlength=10).tolist() == [1000] * 10
    assert data.train.x.min() == 0 and data.train.x.max() == 1


def test_binarized_mnist(real_root):
    data = load_dataset("binarized-mnist", real_root)
    assert (len(data.train), len(data.val), len(data.test)) == (50000, 10000, 10000)
    assert data.num_classes == 0 and data.class_names == () and data.binarize == "static"
    for split in (data.train, data.val, data.test):
        assert split.x.dtype == torch.float32 and split.x.shape[1] == 784 and is_binary(split.x)
        assert bool((split.y == -1).all())
    assert 0.1 < data.train.x.mean().item() < 0.2  # about 13 % ink


def test_real_torchvision_layout(real_root, tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for stem in IDX_STEMS:  # links, not copies
        (raw / f"{stem}.gz").symlink_to(Path(real_root, "mnist", f"{stem}.gz").resolve())
    data = load_dataset("mnist", tmp_path, binarize="dynamic")
    assert len(data.test) == 10000 and is_binary(data.test.x) and not is_binary(data.train.x)
