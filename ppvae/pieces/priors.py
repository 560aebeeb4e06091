"""Priors p(z) over the latent code."""

from __future__ import annotations

import pyro.distributions as dist
import torch
from torch import Tensor, nn


class StandardNormalPrior(nn.Module):
    """p(z) = N(z; 0, I), a ``latent_dim``-dimensional event.

    Calling it returns the distribution with empty batch shape; an enclosing
    ``pyro.plate("data", ...)`` broadcasts it over the batch. The context is
    accepted and ignored, so that it stands wherever a conditional prior
    p(z | c) does.
    """

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.register_buffer("loc", torch.zeros(latent_dim))
        self.register_buffer("scale", torch.ones(latent_dim))

    def forward(self, context: Tensor | None = None) -> dist.Distribution:
        return dist.Normal(self.loc, self.scale).to_event(1)
