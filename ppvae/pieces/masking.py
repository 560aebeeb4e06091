"""Observing only part of an event.

A conditional model that predicts the hidden pixels of a partial image scores
log p(x_hidden | c) = sum_{d hidden} log p(x_d | ...): the per-pixel log
densities outside the hidden set are dropped *inside* the event, before the
sum over pixels, so the site's log density (what the ELBO, the IWAE bound and
the importance-weighted estimator read) is the density of the hidden pixels
alone. Pyro's ``poutine.mask`` cannot do this: it masks whole data points
(batch entries), not entries of an event.
"""

from __future__ import annotations

import pyro.distributions as dist
from torch import Tensor


def observe_where(fn: dist.Distribution, mask: Tensor) -> dist.Distribution:
    """``fn`` (a distribution with one event dimension, e.g. an observation
    model's output) restricted to the event entries where ``mask`` is True:
    its ``log_prob`` sums the per-entry log densities over those entries only.

    ``mask`` broadcasts against ``fn``'s batch and event shape, e.g. ``(N, D)``
    for a batch of images of D pixels, with particle dimensions on the left.
    """
    if not isinstance(fn, dist.Independent) or fn.reinterpreted_batch_ndims != 1:
        raise ValueError("observe_where needs a distribution with one event dimension "
                         f"made by .to_event(1), got {type(fn).__name__}")
    return fn.base_dist.mask(mask).to_event(1)
