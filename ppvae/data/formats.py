"""Readers for the on-disk formats of the image data sets.

Every reader turns a malformed file into a :class:`~ppvae.data.errors.DataError`
that names the file and what is wrong with it, never a raw ``struct``, ``zlib``
or ``numpy`` traceback. The readers check structure only; what the content must
be (image size, label range, ...) is checked by the caller.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import struct
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
from numpy.lib.npyio import NpzFile

from .errors import DataError

__all__ = ["read_bytes", "gunzip", "parse_idx", "read_packed_npz", "read_amat"]


def read_bytes(path: Path, md5: str | None = None) -> bytes:
    """Return the contents of ``path``; if ``md5`` is given, check the file's md5 sum first."""
    data = path.read_bytes()
    if md5 is not None:
        actual = hashlib.md5(data).hexdigest()
        if actual != md5:
            raise DataError(
                f"{path}: md5 mismatch, expected {md5} but the file has {actual}. "
                "The file is corrupt (e.g. an interrupted download) or not the official "
                "release; download it again, or pass verify=False to skip the check."
            )
    return data


def gunzip(data: bytes, source: Path) -> bytes:
    """Decompress gzip ``data`` read from ``source``."""
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(
            f"{source}: not a readable gzip file ({err}); the file is corrupt or truncated."
        ) from None


def parse_idx(data: bytes, source: Path, magic: int) -> np.ndarray:
    """Parse an IDX file of unsigned bytes (the MNIST format) into an array.

    The header is big-endian uint32: ``magic`` (0x08 << 8 | number of dimensions),
    then one size per dimension; the uint8 payload follows, row-major.
    """
    ndim = magic & 0xFF
    header = struct.Struct(f">{1 + ndim}I")
    if len(data) < header.size:
        raise DataError(
            f"{source}: {len(data)} bytes is too short for an IDX header ({header.size} bytes)."
        )
    found, *shape = header.unpack_from(data)
    if found != magic:
        raise DataError(
            f"{source}: bad IDX magic number {found} (expected {magic}); wrong or corrupt file."
        )
    expected = header.size + math.prod(shape)
    if len(data) != expected:
        raise DataError(
            f"{source}: the header promises {expected} bytes (shape {tuple(shape)}) "
            f"but the file holds {len(data)}; the file is truncated or corrupt."
        )
    return np.frombuffer(data, np.uint8, offset=header.size).reshape(shape)


def read_packed_npz(data: bytes, source: Path, width: int) -> np.ndarray:
    """Read a numpy archive holding ``x = np.packbits(rows, axis=1)``.

    Returns the unpacked (N, width) rows of 0s and 1s as uint8.
    """
    try:
        archive = np.load(io.BytesIO(data), allow_pickle=False)
        packed = archive["x"] if isinstance(archive, NpzFile) else None
    except KeyError:
        raise DataError(f"{source}: the archive holds no array named 'x'.") from None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        raise DataError(
            f"{source}: not a readable .npz archive ({err}); the file is corrupt or truncated."
        ) from None
    if packed is None:
        raise DataError(f"{source}: a bare .npy array, not an .npz archive.")
    packed_width = -(-width // 8)
    if packed.dtype != np.uint8 or packed.ndim != 2 or packed.shape[1] != packed_width:
        raise DataError(
            f"{source}: 'x' has dtype {packed.dtype} and shape {packed.shape}; "
            f"expected uint8 of shape (N, {packed_width}) (packed bits of {width} pixels)."
        )
    return np.unpackbits(packed, axis=1)[:, :width]


def read_amat(path: Path, width: int) -> np.ndarray:
    """Read a text file of 0/1 values, ``width`` per line, as a uint8 (N, width) array."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # loadtxt warns on an empty file
            rows = np.loadtxt(path, dtype=np.uint8, ndmin=2)
    except ValueError as err:
        raise DataError(f"{path}: not a table of 0/1 values ({err}).") from None
    if rows.shape[0] == 0 or rows.shape[1] != width:
        raise DataError(
            f"{path}: {rows.shape[0]} rows of {rows.shape[1]} values; expected rows of {width}."
        )
    if rows.max() > 1:
        raise DataError(f"{path}: holds values other than 0 and 1.")
    return rows
