"""Priors p(z) over the latent code."""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
from torch import Tensor, nn

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


class StandardNormal(dist.Normal):
    """N(0, 1) elementwise (``loc`` zeros, ``scale`` ones), with the log
    density written for it: log p(z) = -z^2 / 2 - log(2 pi) / 2, three
    elementwise operations instead of the general Normal's nine (which
    subtract the zero mean, divide by the unit variance and take the log of
    the unit scale). The same values up to float rounding."""

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        log_p = value.square().mul(-0.5).sub(HALF_LOG_2PI)
        shape = torch.broadcast_shapes(value.shape, self.loc.shape)
        return log_p if log_p.shape == shape else log_p.expand(shape)


class StandardNormalPrior(nn.Module):
    """p(z) = N(z; 0, I), a ``latent_dim``-dimensional event.

    Calling it returns the distribution with empty batch shape; an enclosing
    ``pyro.plate("data", ...)`` broadcasts it over the batch.
    """

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.register_buffer("loc", torch.zeros(latent_dim))

    def forward(self, context: Tensor | None = None) -> dist.Distribution:
        return StandardNormal(self.loc, torch.ones_like(self.loc)).to_event(1)
