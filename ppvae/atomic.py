"""Atomic file replacement, for every layer that writes files.

A file written by :func:`atomic_write` is first written in full to a temporary
file beside it, flushed to disk (fsync), renamed over the target (an atomic
operation on POSIX file systems) and the directory entry fsynced: a reader, or
a process resuming after a crash or power loss, sees the old file or the new
one, never a partial one. Standard library only, so any layer may import it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def atomic_write(path: str | os.PathLike, data: bytes | Callable[[BinaryIO], None]) -> None:
    """Replace ``path`` atomically by ``data``: bytes, or a function that
    writes the contents into the binary file object it is given (so large
    contents, e.g. ``torch.save``, stream to disk without a copy in memory).

    If anything fails before the rename (including inside ``data``), the
    temporary file is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
