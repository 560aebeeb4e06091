"""Pareto k-hat of importance weights (Vehtari, Simpson, Gelman, Yao & Gabry
2024, "Pareto smoothed importance sampling"; Yao, Vehtari, Simpson & Gelman
2018, "Yes, but did it work?").

Of K log weights, only the M = ceil(min(K / 5, 3 sqrt(K))) largest and the
next one (the cutoff) enter: with the weights scaled by their largest, the
tail values above the cutoff, minus the cutoff, are fitted by a generalized
Pareto distribution (Pyro's :func:`pyro.ops.stats.fit_generalized_pareto`,
Zhang & Stephens 2009, with PSIS's weakly informative prior on k), as Pyro's
``psis_diagnostic`` does for a whole model. k-hat > 0.7 marks an estimate
whose variance may be infinite in practice.
"""

from __future__ import annotations

import math

import torch
from pyro.ops.stats import fit_generalized_pareto
from torch import Tensor

KHAT_THRESHOLD = 0.7
#: the fewest tail weights a fit uses (Pyro's psis_diagnostic warns below it)
MIN_TAIL = 10
#: the fewest weights per data point for a k-hat: a tail of MIN_TAIL
MIN_SAMPLES_FOR_KHAT = 5 * MIN_TAIL
_LOG_TINY = math.log(1e-15)  # weights below 1e-15 of the largest never count as tail


def tail_length(num_samples: int) -> int:
    """M = ceil(min(K / 5, 3 sqrt(K))), the weights fitted of K."""
    return int(math.ceil(min(0.2 * num_samples, 3.0 * math.sqrt(num_samples))))


def kept_size(num_samples: int) -> int:
    """How many of the largest log weights k-hat depends on: the tail and the cutoff."""
    return min(num_samples, tail_length(num_samples) + 1)


def pareto_khat(largest: Tensor, num_samples: int) -> Tensor:
    """k-hat of each row of ``largest``, the :func:`kept_size` largest of a
    data point's ``num_samples`` log weights (any order; all K will do).

    Returns float64 of shape (rows,): NaN where K < :data:`MIN_SAMPLES_FOR_KHAT`;
    -inf where no weight lies strictly above the cutoff (the largest weights
    are all equal: a bounded tail, for which importance sampling is exact or
    nearly so); +inf where fewer than :data:`MIN_TAIL` do (a few weights
    dwarf all others, by more than 10^15 from the cutoff on: as unreliable
    as an estimate gets), as Pyro's ``psis_diagnostic`` says.
    """
    if largest.dim() != 2:
        raise ValueError(f"largest must have shape (rows, weights), got {tuple(largest.shape)}")
    m = tail_length(num_samples)
    out = torch.full((largest.shape[0],), math.nan, dtype=torch.float64)
    if num_samples < MIN_SAMPLES_FOR_KHAT:
        return out
    if largest.shape[1] < m + 1:
        raise ValueError(f"k-hat of {num_samples} weights needs the {m + 1} largest, "
                         f"got {largest.shape[1]}")
    top = largest.detach().to(device="cpu", dtype=torch.float64).topk(m + 1, dim=1).values
    top = top - top[:, :1]
    for i, row in enumerate(top):
        cutoff = max(float(row[m]), _LOG_TINY)
        tail = row[:m][row[:m] > cutoff]
        if len(tail) == 0:
            out[i] = -math.inf
        elif len(tail) < MIN_TAIL:
            out[i] = math.inf
        else:
            out[i] = fit_generalized_pareto(tail.exp() - math.exp(cutoff))[0]
    return out
