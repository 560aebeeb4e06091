"""Amortized diagonal-Gaussian distributions over the latent code.

:class:`DiagonalGaussian` is the amortized posterior q(z | x[, y]) of
Kingma & Welling (2014), "Auto-Encoding Variational Bayes", and, given a network
on the condition alone, the learned prior p(z | c) of a conditional VAE.
"""

from __future__ import annotations

import pyro.distributions as dist
from torch import Tensor, nn
from torch.nn.functional import softplus


class DiagonalGaussian(nn.Module):
    """N(z; mu(inputs, context), diag sigma(inputs, context)^2).

    ``net`` maps ``(inputs, context)`` to ``2 * latent_dim`` features: the first
    half is mu, the second is mapped to sigma = softplus(.) + ``min_scale``.
    """

    def __init__(self, net: nn.Module, latent_dim: int, *, min_scale: float = 1e-5) -> None:
        super().__init__()
        self.net = net
        self.latent_dim = latent_dim
        self.min_scale = min_scale

    def loc_scale(self, inputs: Tensor, context: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """mu and sigma, each of shape ``(..., latent_dim)``."""
        loc, raw_scale = self.net(inputs, context).chunk(2, dim=-1)
        return loc, softplus(raw_scale) + self.min_scale

    def forward(self, inputs: Tensor, context: Tensor | None = None) -> dist.Distribution:
        return dist.Normal(*self.loc_scale(inputs, context)).to_event(1)
