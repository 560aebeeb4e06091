"""Amortized posteriors made richer by normalizing flows: the inverse
autoregressive flow (Kingma, Salimans, Jozefowicz, Chen, Sutskever & Welling
2016, "Improved variational inference with inverse autoregressive flow"),
from Pyro's own transforms.

:class:`IAFPosterior` is q(z | x) as the paper builds it: an encoder gives a
diagonal Gaussian and a context h(x); z_0 ~ N(mu(x), diag sigma(x)^2) then
passes T steps

    (m_t, s_t) = AR_t(z_{t-1}, h(x)),   g_t = sigmoid(s_t),
    z_t = g_t * z_{t-1} + (1 - g_t) * m_t

(Pyro's ``ConditionalAffineAutoregressive`` with ``stable=True``; AR_t is a
``ConditionalAutoRegressiveNN``, masked so that (m_t, s_t)_j depends on the
components before j in its own order, a fixed random permutation per step,
so each step's Jacobian is triangular), and

    log q(z_T | x) = log N(z_0; mu, sigma) - sum_t sum_j log g_{t,j}.

The distribution is Pyro's ``TransformedDistribution``: ``rsample`` is
reparameterized, and ``log_prob`` of a value it has just drawn reads the
inputs each step cached (a value not drawn by it needs the sequential
inverse, one pass per dimension). Its parameters cannot be cut from the
graph piece by piece, so doubly-reparameterized gradients refuse it.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro.distributions as dist
from pyro.distributions.transforms import ConditionalAffineAutoregressive
from pyro.nn import ConditionalAutoRegressiveNN
from torch import Tensor, nn
from torch.nn.functional import softplus


class IAFPosterior(nn.Module):
    """q(z | x[, context]) = a diagonal Gaussian pushed through
    ``num_flows`` inverse autoregressive steps (module doc).

    ``net`` maps ``(inputs, context)`` to ``2 * latent_dim + context_dim``
    features: mu, sigma's pre-softplus value and h(x).

    Args:
        net: the encoder network.
        latent_dim: dimension of z.
        context_dim: dimension of h(x), the context of every step.
        num_flows: T, the number of steps (0: the diagonal Gaussian itself).
        hidden: hidden widths of each step's autoregressive network (default
            two layers of ``max(4 * latent_dim, 32)``).
        min_scale: the smallest sigma of the base Gaussian.
    """

    def __init__(self, net: nn.Module, latent_dim: int, context_dim: int, num_flows: int = 2,
                 hidden: Sequence[int] | None = None, *, min_scale: float = 1e-5) -> None:
        super().__init__()
        if num_flows < 0 or context_dim < 1:
            raise ValueError(f"an IAF posterior takes num_flows >= 0 and context_dim >= 1, got "
                             f"{num_flows} and {context_dim}")
        if latent_dim < 2 and num_flows:
            raise ValueError("an autoregressive flow needs latent_dim >= 2")
        self.net, self.latent_dim, self.context_dim = net, latent_dim, context_dim
        self.min_scale = min_scale
        widths = list(hidden) if hidden is not None else [max(4 * latent_dim, 32)] * 2
        self.flows = nn.ModuleList(
            ConditionalAffineAutoregressive(
                ConditionalAutoRegressiveNN(latent_dim, context_dim, widths), stable=True)
            for _ in range(num_flows))

    def base(self, inputs: Tensor, context: Tensor | None = None
             ) -> tuple[dist.Distribution, Tensor]:
        """The base Gaussian N(mu, diag sigma^2) and the context h."""
        loc, raw_scale, h = self.net(inputs, context).split(
            [self.latent_dim, self.latent_dim, self.context_dim], dim=-1)
        return dist.Normal(loc, softplus(raw_scale) + self.min_scale).to_event(1), h

    def forward(self, inputs: Tensor, context: Tensor | None = None) -> dist.Distribution:
        base, h = self.base(inputs, context)
        if not self.flows:
            return base
        return dist.TransformedDistribution(base, [flow.condition(h) for flow in self.flows])

    def code(self, inputs: Tensor, context: Tensor | None = None) -> Tensor:
        """A deterministic code: the base mean mu pushed through the steps (the
        flow's image of the base's mean, not the mean of q, which has no
        closed form)."""
        base, h = self.base(inputs, context)
        z = base.mean
        for flow in self.flows:
            z = flow.condition(h)(z)
        return z
