"""Priors p(z) over the latent code.

Each is called with an optional context (ignored here, so that it stands
wherever a conditional prior p(z | c) does) and returns a distribution with
empty batch shape and a ``latent_dim`` event; an enclosing
``pyro.plate("data", ...)`` broadcasts it over the batch.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from torch import Tensor, nn


class StandardNormalPrior(nn.Module):
    """p(z) = N(z; 0, I)."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.register_buffer("loc", torch.zeros(latent_dim))
        self.register_buffer("scale", torch.ones(latent_dim))

    def forward(self, context: Tensor | None = None) -> dist.Distribution:
        return dist.Normal(self.loc, self.scale).to_event(1)


class FlatPrior(nn.Module):
    """The improper flat prior p(z) = 1 on R^d (log density 0): with a
    point-mass guide, the negative ELBO is the reconstruction loss
    -log p(x | z = f(x)), a plain autoencoder's. It has no draws, and the
    importance-weighted estimator refuses it (no proper joint density)."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim

    def forward(self, context: Tensor | None = None) -> dist.Distribution:
        return dist.ImproperUniform(dist.constraints.real, (), (self.latent_dim,))


class LaplacePrior(nn.Module):
    """p(z) = prod_j Laplace(z_j; 0, 1 / ``weight``): -log p(z) =
    ``weight`` * |z|_1 + d log(2 / weight), so MAP inference of the code is
    L1-penalized reconstruction (sparse coding; Olshausen & Field 1996)."""

    def __init__(self, latent_dim: int, weight: float) -> None:
        super().__init__()
        if not weight > 0:
            raise ValueError(f"the L1 weight must be positive, got {weight}")
        self.latent_dim, self.weight = latent_dim, float(weight)
        self.register_buffer("loc", torch.zeros(latent_dim))
        self.register_buffer("scale", torch.full((latent_dim,), 1.0 / weight))

    def forward(self, context: Tensor | None = None) -> dist.Distribution:
        return dist.Laplace(self.loc, self.scale).to_event(1)
