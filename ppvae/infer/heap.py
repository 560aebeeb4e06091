"""Keep freed memory in the process while the estimator runs (glibc only).

The importance-weighted estimator allocates the same few blocks of several
MB in every vectorized pass (the decoder's hidden layers and logits, the
densities) and frees them at the end of the pass. glibc's allocator hands
such blocks back to the kernel: blocks above its mmap threshold are
unmapped on free, and the top of the heap is trimmed once more than its trim
threshold is free. The next pass then touches fresh pages, which the kernel
maps and zeroes one 4 KB page at a time. In a fresh process (K = 5000, 40
images, an untrained 784-200-200-50 network, two threads) an estimate took
0.85-1.25 s with glibc's defaults against 0.59-0.62 s with the thresholds
below (``benchmarks/eval_ab.py``, 2026-12-01). In a process that has
already freed large blocks (loaded a data set, trained), glibc's own
dynamic thresholds may have risen enough that it makes little difference.

:func:`keep_freed_memory` sets, once per process, glibc's mmap threshold to
32 MiB (the ceiling of glibc's own dynamic threshold, which would climb
there after the first large frees) and its trim threshold to 256 MiB, so
that up to 256 MiB of freed memory stays with the process for reuse;
:func:`release_freed_memory` hands what is free back to the kernel at the
end of an estimate (``malloc_trim``). glibc applies these settings to the
whole process and, once set, no longer adapts its thresholds on its own.
On other C libraries both functions do nothing.
"""

from __future__ import annotations

import ctypes
import functools
import platform

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 2**20
TRIM_THRESHOLD = 256 * 2**20

@functools.cache
def _libc() -> ctypes.CDLL | None:
    """The process's glibc, or None elsewhere."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt, libc.malloc_trim  # noqa: B018 (both must exist)
    except (OSError, AttributeError):
        return None
    return libc


@functools.cache
def keep_freed_memory() -> bool:
    """Let the process keep freed blocks of up to 32 MiB, and up to 256 MiB
    of free memory at the top of its heap, for reuse (module doc). Returns
    whether the settings are in force (glibc only); set once per process."""
    libc = _libc()
    return libc is not None and bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                                     and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def release_freed_memory() -> None:
    """Hand the free memory at the top of the heap back to the kernel (glibc
    only)."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)
