"""Maximum mean discrepancy between two samples (Gretton, Borgwardt, Rasch,
Scholkopf & Smola 2012, "A kernel two-sample test", JMLR), for comparing the
aggregate posterior of an autoencoder's codes with its prior (Tolstikhin,
Bousquet, Gelly & Scholkopf 2018, "Wasserstein auto-encoders", ICLR).

For a kernel k, MMD^2(P, Q) = E k(x, x') + E k(y, y') - 2 E k(x, y) with x, x'
~ P and y, y' ~ Q independent. :func:`mmd2` is its unbiased U-statistic from
samples x_1..n ~ P and y_1..m ~ Q::

    1 / (n (n - 1)) sum_{i != j} k(x_i, x_j) + 1 / (m (m - 1)) sum_{i != j} k(y_i, y_j)
        - 2 / (n m) sum_{i, j} k(x_i, y_j)

(it may be negative when P = Q). Kernels, for d-dimensional points and a
scale s:

- ``"rbf"``: k(x, y) = exp(-|x - y|^2 / (2 s^2));
- ``"imq"``: the inverse multiquadratic k(x, y) = C / (C + |x - y|^2) with
  C = 2 d s^2, which WAE prefers for its heavier tails.

A sequence of scales sums the kernels (a characteristic kernel at several
widths at once, as the WAE authors' code does).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

KERNELS = ("rbf", "imq")


def kernel_matrix(x: Tensor, y: Tensor, kernel: str = "imq",
                  scales: float | Sequence[float] = 1.0) -> Tensor:
    """k(x_i, y_j) for points ``x`` ``(n, d)`` and ``y`` ``(m, d)``, summed over
    ``scales``; ``(n, m)``."""
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; choose one of {list(KERNELS)}")
    scales = [scales] if isinstance(scales, (int, float)) else list(scales)
    if not scales or any(not s > 0 for s in scales):
        raise ValueError(f"kernel scales must be positive, got {scales}")
    distances = torch.cdist(x, y).pow(2)
    d = x.shape[-1]
    if kernel == "rbf":
        return sum(torch.exp(-distances / (2 * s * s)) for s in scales)
    return sum((2 * d * s * s) / (2 * d * s * s + distances) for s in scales)


def mmd2(x: Tensor, y: Tensor, kernel: str = "imq",
         scales: float | Sequence[float] = 1.0) -> Tensor:
    """The unbiased estimate of MMD^2 between the samples ``x`` ``(n, d)`` and
    ``y`` ``(m, d)`` (module doc), differentiable; n, m >= 2."""
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must be (n, d) and (m, d) points, got {tuple(x.shape)} "
                         f"and {tuple(y.shape)}")
    n, m = len(x), len(y)
    if n < 2 or m < 2:
        raise ValueError(f"MMD needs at least 2 points on each side, got {n} and {m}")
    kxx = kernel_matrix(x, x, kernel, scales)
    kyy = kernel_matrix(y, y, kernel, scales)
    kxy = kernel_matrix(x, y, kernel, scales)
    within_x = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    within_y = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return within_x + within_y - 2 * kxy.mean()
