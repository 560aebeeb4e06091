"""Distributions that keep themselves when expanded to their own shape."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.distributions import Distribution


class KeepsOwnShape:
    """Mixin for a :class:`torch.distributions.Distribution` subclass:
    ``expand`` to the batch shape the distribution already has returns the
    distribution itself.

    Pyro's plates expand every sample site's distribution to the plate's
    shape, even when it already has it; torch's ``expand`` then copies the
    distribution with an ``expand`` view of every parameter, and each view is
    one more node for autograd to walk in the backward pass (about 5
    microseconds a step each on the trainer's small networks). Any other
    shape is expanded as before.
    """

    def expand(self, batch_shape: Sequence[int], _instance: Distribution | None = None
               ) -> Distribution:
        if _instance is None and torch.Size(batch_shape) == self.batch_shape:
            return self
        return super().expand(batch_shape, _instance)
