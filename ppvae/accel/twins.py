"""Pure-torch twins of the objectives of a one-latent model.

For a batch of N data points with conditions c (if any), a one-latent model is

    z_i ~ p(z | c_i),   x_i ~ p(x | z_i, c_i),   guide q(z | x_i, c_i),

with the latent site weighted by beta (scaled by beta in both the model and
the guide, as a beta-VAE does). With draws z_{k,i} ~ q(z | x_i, c_i),
k = 1..K, and

    log w_{k,i} = log p(x_i | z_{k,i}, c_i) + log p(z_{k,i} | c_i) - log q(z_{k,i} | x_i, c_i),

the twins are

- :func:`elbo_loss`: -(1/K) sum_k sum_i [log p(x_i | z_{k,i}) + beta (log p(z_{k,i}) - log q(z_{k,i}))],
  Pyro's ``Trace_ELBO(num_particles=K, vectorize_particles=True)`` loss;
- :func:`analytic_elbo_loss`: -(1/K) sum_k sum_i log p(x_i | z_{k,i}) + beta sum_i KL(q_i || p_i),
  ``TraceMeanField_ELBO``'s;
- :func:`log_weights`: the (K, N) log weights above (beta does not enter: it
  weights an objective, it is not part of the density);
- :func:`iwae_loss`: -sum_i log (1/K) sum_k w_{k,i}, with the gradient of
  :class:`ppvae.infer.IWAE` (standard, or doubly reparameterized).

Each draws z with ``q.rsample()`` (K = 1) or ``q.rsample((K,))``, which take
the same numbers from torch's generator as Pyro's sample site inside its
particle plate, so on the same random state a twin returns the Pyro path's
value and gradients (``tests/test_accel.py``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from pyro.distributions import Distribution
from pyro.distributions.kl import kl_divergence
from pyro.poutine.runtime import am_i_wrapped
from torch import Tensor

from ppvae.pieces.detach import detach_distribution

#: the method a model declares to offer its twin
PARTS_METHOD = "accel_parts"


@dataclass(frozen=True)
class LatentParts:
    """One batch of a one-latent model, as its ``accel_parts`` returns it.

    Attributes:
        x: the observed data, shape (N, ...).
        prior: p(z | c), batch shape (N,) or () (broadcast over the batch).
        posterior: q(z | x, c), batch shape (N,), reparameterizable.
        likelihood: z -> p(x | z, c), for z of shape (..., N, L); its log
            density of ``x`` has shape (..., N).
        beta: the weight of the latent site in the training objectives.
    """

    x: Tensor
    prior: Distribution
    posterior: Distribution
    likelihood: Callable[[Tensor], Distribution]
    beta: float = 1.0


def twin_parts(model: Callable, guide: Callable, args: tuple, kwargs: dict
               ) -> LatentParts | None:
    """The parts of this call's batch if a twin may stand in for the pair
    ``model``/``guide``, else None.

    A twin stands in only where all of these hold: ``model`` and ``guide``
    are the ``model`` and ``guide`` methods of one object whose class
    declares ``accel_parts``, neither overridden below the class that
    declares it (a subclass that rewrites ``model`` gets the Pyro path, as
    does any other guide, e.g. ``LinearGaussian.exact_guide``); and no Pyro
    handler is active around the call (``poutine.scale``, ``condition``, ...
    act on the Pyro path only)."""
    owner = getattr(model, "__self__", None)
    if owner is None or getattr(guide, "__self__", None) is not owner or am_i_wrapped():
        return None
    cls = type(owner)
    declaring = next((c for c in cls.__mro__ if PARTS_METHOD in vars(c)), None)
    if declaring is None:
        return None
    if (getattr(model, "__func__", None) is not getattr(declaring, "model", None)
            or getattr(guide, "__func__", None) is not getattr(declaring, "guide", None)):
        return None
    return getattr(owner, PARTS_METHOD)(*args, **kwargs)


def _draw(q: Distribution, num_particles: int, particles_dim: bool) -> Tensor:
    """z ~ q: shape (N, L) for one particle without a particle dimension,
    (K, N, L) otherwise (the shapes of Pyro's site inside its particle plate)."""
    if num_particles == 1 and not particles_dim:
        return q.rsample()
    return q.rsample((num_particles,))


def elbo_loss(parts: LatentParts, num_particles: int = 1) -> Tensor:
    """-ELBO summed over the batch, averaged over ``num_particles`` draws (module doc)."""
    q = parts.posterior
    z = _draw(q, num_particles, particles_dim=False)
    log_px = parts.likelihood(z).log_prob(parts.x)
    latent = parts.prior.log_prob(z) - q.log_prob(z)
    if parts.beta != 1:
        latent = parts.beta * latent
    return -(log_px + latent).sum() / num_particles


def analytic_elbo_loss(parts: LatentParts, num_particles: int = 1) -> Tensor:
    """-ELBO with the closed-form KL(q || p), summed over the batch (module doc)."""
    q = parts.posterior
    z = _draw(q, num_particles, particles_dim=False)
    log_px = parts.likelihood(z).log_prob(parts.x).sum() / num_particles
    kl = kl_divergence(q, parts.prior).sum()
    return -log_px + (parts.beta * kl if parts.beta != 1 else kl)


def log_weights(parts: LatentParts, num_particles: int) -> Tensor:
    """log p(x_i, z_{k,i}) - log q(z_{k,i} | x_i), shape (K, N), unscaled."""
    q = parts.posterior
    z = _draw(q, num_particles, particles_dim=True)
    return parts.likelihood(z).log_prob(parts.x) + parts.prior.log_prob(z) - q.log_prob(z)


def iwae_loss(parts: LatentParts, num_particles: int, dreg: bool = False) -> Tensor:
    """-sum_i log (1/K) sum_k w_{k,i}. With ``dreg`` the guide's gradient is
    the doubly-reparameterized one (Tucker et al. 2019): log q is scored with
    its parameters held fixed, and the gradient reaching z_{k,i} is
    multiplied by the normalized weight wt_{k,i}, so that the guide gets
    sum_k wt^2 d log w / dz dz / dphi and the model sum_k wt grad log p."""
    q = parts.posterior
    z = _draw(q, num_particles, particles_dim=True)
    if dreg:
        weight: list[Tensor] = []
        z.register_hook(lambda grad: grad * weight[0].unsqueeze(-1))
        q = detach_distribution(q)
    log_w = parts.likelihood(z).log_prob(parts.x) + parts.prior.log_prob(z) - q.log_prob(z)
    loss = -(torch.logsumexp(log_w, 0) - math.log(num_particles)).sum()
    if not dreg:
        return loss
    wt = torch.softmax(log_w.detach(), 0)
    weight.append(wt)
    surrogate = -(wt * log_w).sum()
    return surrogate + (loss - surrogate).detach()

