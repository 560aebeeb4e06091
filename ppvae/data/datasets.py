"""Image data sets as tensors: loading, fixed splits and binarization.

:func:`load_dataset` returns a :class:`Dataset` of three :class:`Split` s (train,
val, test) of flattened images with values in [0, 1]. The splits depend only on
the data set and ``seed``; test splits do not depend on ``seed`` at all.

See :mod:`ppvae.data` for the data sets, their sources and where files are looked for.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal
from functools import partial
from pathlib import Path

import numpy as np
import torch

from .errors import DataError, MissingDataError
from .formats import gunzip, parse_idx, read_amat, read_bytes, read_packed_npz

__all__ = ["DATASETS", "DataOptions", "Dataset", "Split", "binarize", "load_dataset"]

DATASETS: tuple[str, ...] = ("digits", "mnist", "fashion-mnist", "binarized-mnist")

_DATA_ENV = "PPVAE_DATA"
_BINARIZE_MODES = ("static", "dynamic")
_ALIASES = {"fashionmnist": "fashion-mnist", "binarizedmnist": "binarized-mnist"}

_DIGITS_TEST_SIZE = 360  # 20 % of the 1797 scikit-learn digits, rounded up
_DIGITS_TEST_SEED = 1797  # fixed: the digits test split never depends on `seed`
_TEST_BINARIZATION_SEED = 10_000  # fixed: binarized test sets never depend on `seed`

_DIGIT_NAMES = tuple(str(d) for d in range(10))
_FASHION_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip

_MNIST_SIDE = 28
_IDX_IMAGES_MAGIC = 2051
_IDX_LABELS_MAGIC = 2049

# Raw data before conversion: pixels (N, D) as unsigned integers, labels (N,) as integers.
_Part = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True, eq=False)
class Split:
    """One split of a data set.

    Attributes:
        x: float32, shape (N, D) with D = C*H*W: images flattened row-major, values in [0, 1].
        y: int64, shape (N,): class labels, -1 where the data set has no labels.
        scale: ``None``, or float32 of the shape of x: standard deviations of
            noisy features. The trainer then treats a row of x as the mean of
            N(x, diag scale^2) and trains on a fresh draw x + scale * eps,
            eps ~ N(0, I), in every batch: the codes of M1's q(z1 | x) that M2
            learns from in M1+M2 (Kingma et al. 2014, sec. 3.1.2; values need
            not lie in [0, 1] there).
    """

    x: torch.Tensor
    y: torch.Tensor
    scale: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.x.dtype != torch.float32 or self.x.dim() != 2:
            raise DataError(
                "Split.x must be a 2-D float32 tensor, "
                f"got {self.x.dtype} of shape {tuple(self.x.shape)}"
            )
        if self.y.dtype != torch.int64 or self.y.shape != self.x.shape[:1]:
            raise DataError(
                f"Split.y must be an int64 tensor of shape ({self.x.shape[0]},), "
                f"got {self.y.dtype} of shape {tuple(self.y.shape)}"
            )
        if self.scale is not None:
            if self.scale.dtype != torch.float32 or self.scale.shape != self.x.shape:
                raise DataError(
                    f"Split.scale must be a float32 tensor of the shape of x "
                    f"{tuple(self.x.shape)}, got {self.scale.dtype} of shape "
                    f"{tuple(self.scale.shape)}"
                )
            if not bool(torch.isfinite(self.scale).all()) or bool((self.scale < 0).any()):
                raise DataError("Split.scale must be finite and non-negative")

    def subset(self, index: torch.Tensor) -> "Split":
        """The rows ``index`` (indices or a boolean mask), with their scales."""
        return Split(self.x[index], self.y[index],
                     None if self.scale is None else self.scale[index])

    def __len__(self) -> int:
        return self.x.shape[0]

    def __repr__(self) -> str:
        return f"Split(n={len(self)}, dim={self.x.shape[1]})"


@dataclass(frozen=True, eq=False)
class Dataset:
    """A data set split into train, validation and test sets.

    Attributes:
        name: canonical name, one of :data:`DATASETS`.
        train, val, test: the splits.
        image_shape: (C, H, W) of one image; a row of ``Split.x`` is one image, flattened.
        num_classes: number of classes, 0 for a data set without labels.
        class_names: one name per class label, () without labels.
        binarize: ``None`` (grey values), ``"static"`` (every split binary, fixed) or
            ``"dynamic"`` (train grey, for the trainer to re-sample every epoch; val and
            test fixed binary sets).
    """

    name: str
    train: Split
    val: Split
    test: Split
    image_shape: tuple[int, int, int]
    num_classes: int
    class_names: tuple[str, ...]
    binarize: str | None

    def __post_init__(self) -> None:
        if len(self.class_names) != self.num_classes:
            raise DataError(f"{len(self.class_names)} class names for {self.num_classes} classes")
        for split in (self.train, self.val, self.test):
            if split.x.shape[1] != self.input_dim:
                raise DataError(
                    f"a split of dimension {split.x.shape[1]} "
                    f"for images of shape {self.image_shape}"
                )

    @property
    def input_dim(self) -> int:
        """Number of values per image, C*H*W."""
        return math.prod(self.image_shape)

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, train={len(self.train)}, val={len(self.val)}, "
            f"test={len(self.test)}, image_shape={self.image_shape}, "
            f"num_classes={self.num_classes}, binarize={self.binarize!r})"
        )


def binarize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Stochastic binarization: each pixel becomes 1 with probability equal to its value.

    Args:
        x: grey values in [0, 1], any shape.
        generator: random number generator (on ``x``'s device); ``None`` uses torch's global one.

    Returns:
        float32 tensor of 0s and 1s with the shape of ``x``: each pixel ~ Bernoulli(x).
    """
    return torch.bernoulli(x.to(torch.float32), generator=generator)


def load_dataset(
    name: str,
    root: str | os.PathLike[str] | None = None,
    *,
    seed: int = 0,
    val_fraction: float = 0.1,
    binarize: str | None = None,
    verify: bool = True,
) -> Dataset:
    """Load a data set as float32 tensors with fixed train / validation / test splits.

    Args:
        name: one of :data:`DATASETS`, case-insensitive; ``_`` may stand for ``-`` and the
            dash may be left out ("fashion_mnist", "FashionMNIST").
        root: directory holding the data files; default: the ``PPVAE_DATA`` environment
            variable. Files are looked for in ``root/<name>/`` first, then in ``root/``.
            Ignored for "digits", which ships with scikit-learn.
        seed: seeds the validation split, drawn at random from the training data, and the
            binarization of train and val. Test splits never depend on it.
        val_fraction: share of the training data held out for validation (0 < val_fraction
            < 1). Not used for "binarized-mnist", which has an official validation set.
        binarize: ``None`` for grey values; ``"static"`` to binarize every split once (each
            pixel ~ Bernoulli(grey value)); ``"dynamic"`` to leave train grey, for the trainer
            to re-sample every epoch, and binarize val and test once. Must be ``None`` for
            "binarized-mnist", which is binary already (its ``Dataset.binarize`` is "static").
        verify: check the md5 sums of gzipped IDX and .npz files against the official ones.

    Returns:
        The :class:`Dataset`.

    Raises:
        MissingDataError: a data file is missing; the message says where it was looked for.
        DataError: a bad argument, a corrupt file or a wrong checksum.
    """
    key = _canonical_name(name)
    source = _SOURCES[key]
    _check_options(key, source, seed, val_fraction, binarize)
    seed = int(seed)
    parts = source.load(_resolve_root(root), verify)
    if "val" not in parts:
        parts["train"], parts["val"] = _split_off_val(parts["train"], val_fraction, seed)
    train, val, test = (_to_split(parts[k], source.max_value) for k in ("train", "val", "test"))
    train, val, test = _binarize_splits(train, val, test, binarize, seed)
    return Dataset(
        name=key,
        train=train,
        val=val,
        test=test,
        image_shape=source.image_shape,
        num_classes=len(source.class_names),
        class_names=source.class_names,
        binarize="static" if source.binary else binarize,
    )


# ---------------------------------------------------------------------------
# Arguments, splitting and binarization


def _canonical_name(name: str) -> str:
    key = name.strip().lower().replace("_", "-") if isinstance(name, str) else None
    key = _ALIASES.get(key, key)
    if key not in _SOURCES:
        raise DataError(f"unknown data set {name!r}; known data sets: {', '.join(DATASETS)}")
    return key


def _check_options(
    key: str, source: _Source, seed: int, val_fraction: float, mode: str | None
) -> None:
    if mode is not None and mode not in _BINARIZE_MODES:
        raise DataError(f"binarize must be None, 'static' or 'dynamic', not {mode!r}")
    if source.binary and mode is not None:
        raise DataError(
            f"{key} is already binary (a fixed binarization of MNIST): "
            f"pass binarize=None, not {mode!r}"
        )
    if not _is_real(val_fraction) or not 0 < val_fraction < 1:
        raise DataError(f"val_fraction must be a number in (0, 1), not {val_fraction!r}")
    if not _is_integer(seed) or not 0 <= seed < 2**64:
        raise DataError(f"seed must be an integer in [0, 2**64), not {seed!r}")


def _is_real(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _is_integer(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _permutation(n: int, seed: int) -> np.ndarray:
    return torch.randperm(n, generator=_generator(seed)).numpy()


def _split_off_val(part: _Part, val_fraction: float, seed: int) -> tuple[_Part, _Part]:
    """Hold out round(val_fraction * N) random rows of ``part``; return (train, val)."""
    pixels, labels = part
    n_val = round(val_fraction * len(pixels))
    if not 0 < n_val < len(pixels):
        raise DataError(
            f"val_fraction={val_fraction} gives {n_val} of the {len(pixels)} training "
            "images to validation; both splits must be non-empty"
        )
    perm = _permutation(len(pixels), seed)
    train, val = perm[n_val:], perm[:n_val]
    return (pixels[train], labels[train]), (pixels[val], labels[val])


def _to_split(part: _Part, max_value: int) -> Split:
    pixels, labels = part
    x = np.divide(pixels, max_value, dtype=np.float32)
    return Split(torch.from_numpy(x), torch.from_numpy(labels.astype(np.int64)))


def _binarize_splits(
    train: Split, val: Split, test: Split, mode: str | None, seed: int
) -> tuple[Split, Split, Split]:
    """Apply binarization mode ``mode`` (see :func:`load_dataset`) to the three splits."""
    if mode is None:
        return train, val, test
    generator = _generator(seed)
    val = _binarized(val, generator)  # val first: the same binary set under both modes
    if mode == "static":
        train = _binarized(train, generator)
    return train, val, _binarized(test, _generator(_TEST_BINARIZATION_SEED))


def _binarized(split: Split, generator: torch.Generator) -> Split:
    return Split(binarize(split.x, generator), split.y)


# ---------------------------------------------------------------------------
# Finding files


@dataclass(frozen=True)
class _Root:
    """Where data files are looked for, and where that came from (for error messages)."""

    path: Path | None
    origin: str


def _resolve_root(root: str | os.PathLike[str] | None) -> _Root:
    if root is not None:
        return _Root(Path(root).expanduser(), "the root= argument")
    env = os.environ.get(_DATA_ENV)
    if env:
        return _Root(Path(env).expanduser(), f"the {_DATA_ENV} environment variable")
    return _Root(None, f"neither root= nor the {_DATA_ENV} environment variable is set")


def _locate(
    root: _Root, subdirs: tuple[str, ...], wanted: dict[str, tuple[str, ...]], how_to_get: str
) -> dict[str, Path]:
    """Find each wanted file in ``root/<subdir>/`` for each subdir in turn, then in ``root/``.

    ``wanted`` maps a key to the accepted file names, preferred first. Returns key -> path.
    """
    dirs = [root.path / d for d in subdirs] + [root.path] if root.path is not None else []
    found = {key: _first_file(dirs, names) for key, names in wanted.items()}
    missing = [names for key, names in wanted.items() if found[key] is None]
    if missing:
        default_dir = dirs[0] if dirs else Path("<root>", subdirs[0])
        raise MissingDataError(_missing_message(missing, dirs, root, default_dir, how_to_get))
    return found  # type: ignore[return-value]  # no None left


def _first_file(dirs: list[Path], names: tuple[str, ...]) -> Path | None:
    return next((d / n for d in dirs for n in names if (d / n).is_file()), None)


def _missing_message(
    missing: list[tuple[str, ...]],
    dirs: list[Path],
    root: _Root,
    default_dir: Path,
    how_to_get: str,
) -> str:
    files = "; ".join(" or ".join(names) for names in missing)
    if dirs:
        looked = "\n".join(f"  {d}{'' if d.is_dir() else ' (no such directory)'}" for d in dirs)
        where = f"Looked in (root {root.path} came from {root.origin}):\n{looked}"
    else:
        where = f"Looked nowhere: {root.origin}."
    return (
        f"missing data file(s): {files}.\n{where}\n"
        f"Get them from {how_to_get}; put them in {default_dir} and pass root=<root> "
        f"to load_dataset, or set the {_DATA_ENV} environment variable to <root>."
    )


# ---------------------------------------------------------------------------
# The data sets


@dataclass(frozen=True)
class _Source:
    """How to load one data set: image shape, classes, pixel scale and a loader."""

    image_shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    max_value: int  # raw pixel values run 0..max_value
    load: Callable[[_Root, bool], dict[str, _Part]]  # (root, verify) -> train, test [, val]
    binary: bool = False  # already binarized


def _load_digits(root: _Root, verify: bool) -> dict[str, _Part]:
    """scikit-learn's digits (no files needed) with a fixed test split."""
    from sklearn.datasets import load_digits  # imported here: importing scikit-learn is slow

    bunch = load_digits()
    pixels, labels = bunch.data.astype(np.uint8), bunch.target
    perm = _permutation(len(pixels), _DIGITS_TEST_SEED)
    test, train = perm[:_DIGITS_TEST_SIZE], perm[_DIGITS_TEST_SIZE:]
    return {"train": (pixels[train], labels[train]), "test": (pixels[test], labels[test])}


@dataclass(frozen=True)
class _IdxFiles:
    """The IDX files of an MNIST-like data set: md5 by file stem, folders, where to get them."""

    md5: dict[str, str]
    subdirs: tuple[str, ...]
    how_to_get: str


_MNIST_FILES = _IdxFiles(
    md5={
        "train-images-idx3-ubyte": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    subdirs=("mnist", "MNIST/raw"),
    how_to_get="the MNIST database (http://yann.lecun.com/exdb/mnist/, or torchvision's "
    "mirror https://ossci-datasets.s3.amazonaws.com/mnist/)",
)

_FASHION_FILES = _IdxFiles(
    md5={
        "train-images-idx3-ubyte": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte": "bb300cfdad3c16e7a12a480ee83cd310",
    },
    subdirs=("fashion-mnist", "FashionMNIST/raw"),
    how_to_get="the Fashion-MNIST GitHub release, "
    "https://github.com/zalandoresearch/fashion-mnist (folder data/fashion/)",
)


def _load_idx_dataset(files: _IdxFiles, root: _Root, verify: bool) -> dict[str, _Part]:
    """MNIST or Fashion-MNIST from its four IDX files, gzipped or not."""
    wanted = {stem: (f"{stem}.gz", stem) for stem in files.md5}
    paths = _locate(root, files.subdirs, wanted, files.how_to_get)

    def read(stem: str, magic: int) -> np.ndarray:
        path = paths[stem]
        if path.suffix != ".gz":  # no published checksum for the uncompressed files
            return parse_idx(read_bytes(path), path, magic)
        data = read_bytes(path, files.md5[stem] if verify else None)
        return parse_idx(gunzip(data, path), path, magic)

    def part(prefix: str) -> _Part:
        images_stem, labels_stem = f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"
        images = read(images_stem, _IDX_IMAGES_MAGIC)
        labels = read(labels_stem, _IDX_LABELS_MAGIC)
        _check_idx_pair(images, labels, paths[images_stem], paths[labels_stem])
        return images.reshape(len(images), -1), labels

    return {"train": part("train"), "test": part("t10k")}


def _check_idx_pair(
    images: np.ndarray, labels: np.ndarray, images_path: Path, labels_path: Path
) -> None:
    if images.shape[1:] != (_MNIST_SIDE, _MNIST_SIDE):
        raise DataError(
            f"{images_path}: images are {images.shape[1]}x{images.shape[2]}, expected 28x28"
        )
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} holds {len(images)} images "
            f"but {labels_path} holds {len(labels)} labels"
        )
    if labels.max(initial=0) > 9:
        raise DataError(f"{labels_path}: labels outside 0..9 (largest {labels.max()})")


_BINARIZED_MD5 = {
    "train": "f7cdc53db1bc803d04bb2191e4940896",
    "valid": "3a6a32922c53a34f15de141cda5a2b3d",
    "test": "359f8d37b01f963a560c0fac80be1f4d",
}
_BINARIZED_HOW_TO_GET = (
    "the binarized MNIST of Larochelle & Murray (2011), the text files "
    "binarized_mnist_{train,valid,test}.amat at "
    "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/"
)


def _load_binarized_mnist(root: _Root, verify: bool) -> dict[str, _Part]:
    """Binarized MNIST from its official train / valid / test files, .npz or .amat; no labels."""
    stems = {"train": "train", "val": "valid", "test": "test"}
    wanted = {
        part: (f"binarized_mnist_{stem}.npz", f"binarized_mnist_{stem}.amat")
        for part, stem in stems.items()
    }
    paths = _locate(root, ("binarized-mnist",), wanted, _BINARIZED_HOW_TO_GET)
    parts = {}
    for part, path in paths.items():
        pixels = _read_binary_rows(path, _BINARIZED_MD5[stems[part]] if verify else None)
        parts[part] = (pixels, np.full(len(pixels), -1, dtype=np.int64))
    return parts


def _read_binary_rows(path: Path, md5: str | None) -> np.ndarray:
    width = _MNIST_SIDE * _MNIST_SIDE
    if path.suffix == ".npz":
        return read_packed_npz(read_bytes(path, md5), path, width)
    return read_amat(path, width)  # no published checksum for the text files


_SOURCES: dict[str, _Source] = {
    "digits": _Source((1, 8, 8), _DIGIT_NAMES, 16, _load_digits),
    "mnist": _Source((1, 28, 28), _DIGIT_NAMES, 255, partial(_load_idx_dataset, _MNIST_FILES)),
    "fashion-mnist": _Source(
        (1, 28, 28), _FASHION_NAMES, 255, partial(_load_idx_dataset, _FASHION_FILES)
    ),
    "binarized-mnist": _Source((1, 28, 28), (), 1, _load_binarized_mnist, binary=True),
}


@dataclass
class DataOptions:
    """Which data set, loaded how (the data options of a ``ppvae train`` run).

    Attributes:
        dataset: digits, mnist, fashion-mnist or binarized-mnist.
        data_root: the directory of the data files (default: $PPVAE_DATA).
        val_fraction: fraction of the training images held out for validation.
        binarize: auto (dynamic for a model whose likelihood option is bernoulli,
            else none), none, static or dynamic.
    """

    dataset: str = "digits"
    data_root: str | None = None
    val_fraction: float = 0.1
    binarize: Literal["auto", "none", "static", "dynamic"] = "auto"

    def load(self, seed: int = 0, likelihood: str | None = None) -> Dataset:
        """:func:`load_dataset` with these options; ``binarize="auto"`` is
        ``"dynamic"`` for ``likelihood="bernoulli"`` (except on binarized-mnist,
        binary already), else none."""
        binarize = self.binarize
        if binarize == "auto":
            binary = _SOURCES[_canonical_name(self.dataset)].binary
            binarize = "dynamic" if likelihood == "bernoulli" and not binary else "none"
        return load_dataset(self.dataset, self.data_root, seed=seed,
                            val_fraction=self.val_fraction,
                            binarize=None if binarize == "none" else binarize)
