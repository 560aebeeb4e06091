"""Amortized diagonal-Gaussian distributions over the latent code.

:class:`DiagonalGaussian` is the amortized posterior q(z | x[, y]) of
Kingma & Welling (2014), "Auto-Encoding Variational Bayes", and, given a network
on the condition alone, the learned prior p(z | c) of a conditional VAE.
"""

from __future__ import annotations

import pyro.distributions as dist
import torch
from torch import Tensor, nn
from torch.nn.functional import softplus

from ppvae.pieces.expansion import KeepsOwnShape
from ppvae.pieces.priors import HALF_LOG_2PI


class ReparameterizedNormal(KeepsOwnShape, dist.Normal):
    """Normal(loc, scale) that scores its own reparameterized draws from the
    noise that made them.

    A draw z = loc + scale * eps (eps ~ N(0, 1), as :meth:`Normal.rsample`
    makes it, from the same generator) is kept with its eps. Scoring that same
    tensor, log q(z) = -eps^2 / 2 - log scale - log(2 pi) / 2, is the value of
    the general formula -((z - loc) / scale)^2 / 2 - log scale - log(2 pi) / 2
    (up to float rounding) with five elementwise operations instead of nine.
    As functions of (eps, loc, scale) the two are the same function: the
    quadratic term is -eps^2 / 2 whatever loc and scale are, so its total
    derivative is zero either way. Gradients with respect to loc, scale and
    everything upstream of them, hence the ELBO's reparameterization gradient
    (Kingma & Welling 2014), are unchanged.

    Any other value (including a copy of the draw, a detached draw, or a draw
    scored by another distribution object such as a detached-parameter copy
    for STL/DReG gradients) gets the general formula. Do not use this shortcut
    to differentiate log q with respect to the draw itself with the
    parameters held fixed: that partial derivative is not the total one.
    """

    _draw: tuple[Tensor, Tensor] | None = None

    def rsample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:
        shape = self._extended_shape(sample_shape)
        # torch.randn fills like Normal.rsample's _standard_normal (the same
        # draws from the same generator) but is one operation also while the
        # trainer records the step, where _standard_normal builds zeros and
        # ones tensors for torch.normal
        eps = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device)
        value = self.loc + eps * self.scale
        self._draw = (value, eps)
        return value

    def log_prob(self, value: Tensor) -> Tensor:
        draw = self._draw
        if draw is None or value is not draw[0]:
            return super().log_prob(value)
        if self._validate_args:
            self._validate_sample(value)
        return draw[1].square().mul(-0.5).sub(self.scale.log()).sub(HALF_LOG_2PI)


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

    def forward(self, inputs: Tensor, context: Tensor | None = None) -> dist.Distribution:
        loc, raw_scale = self.net(inputs, context).split(self.latent_dim, dim=-1)
        return ReparameterizedNormal(loc, softplus(raw_scale) + self.min_scale).to_event(1)
