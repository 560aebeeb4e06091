"""Pure-torch twins of the objectives of a model built from ppvae's pieces
with one latent, or a chain of latents.

For a batch of N data points with conditions c (if any), a one-latent model is

    z_i ~ p(z | c_i),   x_i ~ p(x | z_i, c_i),   guide q(z | x_i, c_i),

with the latent site weighted by beta (scaled by beta in both the model and
the guide, as a beta-VAE does), and p(x | z, c) possibly scored on some
pixels only (a conditional model's hidden pixels). A chain of latents
z_1, ..., z_L (:class:`LatentLayer`; the two-layer VAE of Burda et al.) is

    z_L ~ p(z_L),   z_l ~ p(z_l | z_{l+1}),   x_i ~ p(x | z_1),
    guide q(z_1 | x_i) q(z_2 | z_1) ... q(z_L | z_{L-1}),

every latent site weighted by beta; below, z stands for (z_1, ..., z_L),
p(z) for the model's product and q(z) for the guide's. With draws
z_{k,i} ~ q(z | x_i, c_i), k = 1..K, and

    log w_{k,i} = log p(x_i | z_{k,i}, c_i) + log p(z_{k,i} | c_i) - log q(z_{k,i} | x_i, c_i),

the twins are

- :func:`elbo_loss`: -(1/K) sum_k sum_i [log p(x_i | z_{k,i}) + beta (log p(z_{k,i}) - log q(z_{k,i}))],
  Pyro's ``Trace_ELBO(num_particles=K, vectorize_particles=True)`` loss;
- :func:`analytic_elbo_loss`: -(1/K) sum_k sum_i log p(x_i | z_{k,i}) + beta sum_i KL(q_i || p_i),
  ``TraceMeanField_ELBO``'s (where the KL has no closed form, such as to a
  mixture prior, its estimate log q(z) - log p(z) at the same draws, as Pyro
  does; in a chain, one KL per latent between its q and p at the drawn
  values of their parents, as Pyro computes it, though the sum is then not
  KL(q(z) || p(z)): Pyro warns that the sites are not mean-field);
- :func:`log_weights`: the (K, N) log weights above (beta does not enter: it
  weights an objective, it is not part of the density);
- :func:`iwae_loss`: -sum_i log (1/K) sum_k w_{k,i}, with the gradient of
  :class:`ppvae.infer.IWAE` (standard, or doubly reparameterized; a chain
  refuses DReG, as that class does).

Each draws z as the pieces' distributions do (``rsample``, with the numbers
Pyro's sample site takes from torch's generator inside its particle plate, in
the guide's order z_1, ..., z_L), so on the same random state a twin returns
the Pyro path's value and gradients (``tests/test_accel.py``).

The twins read the pieces' parameters rather than build distributions where
the piece is one of ppvae's own (an exact type match; anything else goes
through the piece's distribution):

- a :class:`~ppvae.pieces.DiagonalGaussian` q: z = mu + sigma eps with
  eps ~ N(0, I), and log q(z) = -|eps|^2 / 2 - sum log sigma - (L / 2) log 2 pi,
  the general formula's value at its own draw and the same function of
  (eps, mu, sigma) (the quadratic term does not depend on mu and sigma once
  z is written through eps), hence the same reparameterization gradient;
- a :class:`~ppvae.pieces.StandardNormalPrior`: log p(z) = -|z|^2 / 2 - (L / 2) log 2 pi
  (the constants cancel in log p(z) - log q(z)); a
  :class:`~ppvae.pieces.DiagonalGaussian` prior: the Normal density of its mu, sigma;
- a :class:`~ppvae.pieces.BernoulliLikelihood`: log p(x | z) = sum_d -BCE(l_d, x_d)
  on its logits l, over the observed pixels.

DReG differentiates log q with respect to z itself and takes the general
density.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from pyro.distributions import Distribution
from pyro.distributions.kl import kl_divergence
from pyro.poutine.runtime import am_i_wrapped
from torch import Tensor, nn
from torch.nn.functional import binary_cross_entropy_with_logits, softplus

from ppvae.pieces.detach import detach_distribution
from ppvae.pieces.likelihoods import BernoulliLikelihood
from ppvae.pieces.masking import observe_where
from ppvae.pieces.posteriors import DiagonalGaussian
from ppvae.pieces.priors import StandardNormalPrior

#: the method a model declares to offer its twin
PARTS_METHOD = "accel_parts"
HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


@dataclass(frozen=True)
class LatentLayer:
    """A latent z' above the latent z beneath it in a chain (module doc).

    Attributes:
        posterior: ``posterior(z)`` is the guide's q(z' | z), reparameterizable.
        prior: ``prior(z')`` is the model's p(z | z').
    """

    posterior: nn.Module
    prior: nn.Module


@dataclass(frozen=True)
class LatentParts:
    """One batch of a model with one latent z, or a chain z_1, ..., z_L, as
    its ``accel_parts`` returns it: the pieces of its ``model``/``guide`` and
    what they are called with.

    Attributes:
        x: the observed data, shape (N, D).
        prior: the prior piece of the top latent (z, or z_L); ``prior(*prior_args)``
            is p(z | c), batch shape (N,) or () (broadcast over the batch).
        prior_args: its arguments (``()`` for an unconditional prior).
        posterior: the guide's piece of the latent beneath the data (z, or
            z_1); ``posterior(*posterior_args)`` is q(z | x, c), batch shape
            (N,), reparameterizable.
        posterior_args: its arguments, e.g. ``(x,)`` or ``(x, c)``.
        likelihood: the observation model; ``likelihood(z, context)`` is
            p(x | z, c) with one event dimension (z_1 in a chain).
        context: the condition c the likelihood takes (None: none).
        observed: where p(x | z, c) is scored (a boolean mask broadcasting
            against x, :func:`ppvae.pieces.masking.observe_where`), or None
            for every pixel.
        beta: the weight of the latent sites in the training objectives.
        layers: the latents z_2, ..., z_L above z_1, bottom up (``()``: one latent).
    """

    x: Tensor
    prior: nn.Module
    prior_args: tuple
    posterior: nn.Module
    posterior_args: tuple
    likelihood: nn.Module
    context: Tensor | None = None
    observed: Tensor | None = None
    beta: float = 1.0
    layers: tuple[LatentLayer, ...] = ()


def twin_parts(model: Callable, guide: Callable, args: tuple, kwargs: dict
               ) -> LatentParts | None:
    """The parts of this call's batch if a twin may stand in for the pair
    ``model``/``guide``, else None.

    A twin stands in only where all of these hold: ``model`` and ``guide``
    are the ``model`` and ``guide`` methods of one object whose own class
    declares ``accel_parts`` in its body (a subclass, which may change what
    ``model`` computes in any way, opts in only by declaring it again: until
    then it gets the Pyro path, as does any other guide, e.g.
    ``LinearGaussian.exact_guide``); and no Pyro handler is active around the
    call (``poutine.scale``, ``condition``, ... act on the Pyro path only)."""
    owner = getattr(model, "__self__", None)
    if owner is None or getattr(guide, "__self__", None) is not owner or am_i_wrapped():
        return None
    cls = type(owner)
    if (PARTS_METHOD not in vars(cls)
            or getattr(model, "__func__", None) is not getattr(cls, "model", None)
            or getattr(guide, "__func__", None) is not getattr(cls, "guide", None)):
        return None
    return getattr(owner, PARTS_METHOD)(*args, **kwargs)


def _prefix(num_particles: int, particles_dim: bool) -> tuple[int, ...]:
    """The sample shape of the draws: none for one particle without a
    particle dimension, (K,) otherwise (Pyro's particle plate)."""
    return () if num_particles == 1 and not particles_dim else (num_particles,)


Evaluated = tuple[Tensor, Tensor] | Distribution | None


def _evaluate(piece: nn.Module, args: tuple) -> Evaluated:
    """A Gaussian piece on its arguments: None for the standard normal prior,
    (mu, sigma) for a :class:`~ppvae.pieces.DiagonalGaussian`, else the
    piece's distribution."""
    if type(piece) is StandardNormalPrior:
        return None
    if type(piece) is DiagonalGaussian:
        return piece.loc_scale(*args)
    return piece(*args)


def _log_prior(prior: Evaluated, z: Tensor) -> Tensor:
    """log p(z | c) + (L / 2) log 2 pi, shape (..., N): the Gaussian
    normalizing constant is left out, for the caller to cancel or add."""
    if prior is None:
        return -0.5 * z.square().sum(-1)
    if isinstance(prior, tuple):
        loc, scale = prior
        return -(0.5 * ((z - loc) / scale).square() + scale.log()).sum(-1)
    return prior.log_prob(z) + z.shape[-1] * HALF_LOG_2PI


def _draw(q: Evaluated, prefix: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """z ~ q and -log q(z) - (L / 2) log 2 pi, shapes (..., N, L) and (..., N) (module doc)."""
    if isinstance(q, tuple):
        loc, scale = q
        eps = torch.randn(prefix + loc.shape, dtype=loc.dtype, device=loc.device)
        z = loc + eps * scale  # Normal.rsample's draw, from the same numbers
        return z, (0.5 * eps.square() + scale.log()).sum(-1)
    z = q.rsample(prefix)
    return z, -q.log_prob(z) - z.shape[-1] * HALF_LOG_2PI


def _latent_terms(parts: LatentParts, q: Evaluated, prior: Evaluated, prefix: tuple[int, ...]
                  ) -> tuple[Tensor, Tensor]:
    """z_1 ~ q, each latent above it from its q given the one beneath, and
    log p(z) - log q(z) summed over the latents, shapes (..., N, L) and
    (..., N) (module doc): ``q`` and ``prior`` are the evaluated q(z_1 | x, c)
    and top prior. The draws above z_1 take no ``prefix``: their q's batch
    shape holds the particles already."""
    z, latent = _draw(q, prefix)
    below = z
    for layer in parts.layers:
        above, neg_log_q = _draw(_evaluate(layer.posterior, (below,)), ())
        latent = latent + neg_log_q + _log_prior(_evaluate(layer.prior, (above,)), below)
        below = above
    return z, latent + _log_prior(prior, below)


def _log_likelihood(parts: LatentParts, z: Tensor) -> Tensor:
    """log p(x | z, c) over the observed pixels, shape (..., N)."""
    likelihood = parts.likelihood
    if type(likelihood) is BernoulliLikelihood:
        logits = likelihood.net(z, parts.context)
        neg_log_p = binary_cross_entropy_with_logits(logits, parts.x.expand_as(logits),
                                                     reduction="none")
        if parts.observed is not None:
            neg_log_p = torch.where(parts.observed, neg_log_p, neg_log_p.new_zeros(()))
        return -neg_log_p.sum(-1)  # negated after the sum: one pass over N values, not N D
    fn = likelihood(z, parts.context)
    if parts.observed is not None:
        fn = observe_where(fn, parts.observed)
    return fn.log_prob(parts.x)


def elbo_loss(parts: LatentParts, num_particles: int = 1) -> Tensor:
    """-ELBO summed over the batch, averaged over ``num_particles`` draws (module doc)."""
    q = _evaluate(parts.posterior, parts.posterior_args)
    z, latent = _latent_terms(parts, q, _evaluate(parts.prior, parts.prior_args),
                              _prefix(num_particles, False))
    log_px = _log_likelihood(parts, z)
    if parts.beta != 1:
        latent = parts.beta * latent
    loss = -(log_px + latent).sum()
    return loss if num_particles == 1 else loss / num_particles


def analytic_elbo_loss(parts: LatentParts, num_particles: int = 1) -> Tensor:
    """-ELBO with the closed-form KL(q || p) of each latent, summed over the
    batch (module doc)."""
    q = parts.posterior(*parts.posterior_args)
    z = q.rsample(_prefix(num_particles, False))
    log_px = _log_likelihood(parts, z).sum() / num_particles
    kl = z.new_zeros(())
    for layer in parts.layers:
        q_above = layer.posterior(z)
        above = q_above.rsample()
        kl = kl + _kl(q, layer.prior(above), z, num_particles)
        q, z = q_above, above
    kl = kl + _kl(q, parts.prior(*parts.prior_args), z, num_particles)
    return -log_px + (parts.beta * kl if parts.beta != 1 else kl)


def _kl(q: Distribution, prior: Distribution, z: Tensor, num_particles: int) -> Tensor:
    """KL(q || p) summed over the batch and averaged over the particles: in
    closed form, of shape (K, N) where q or p depends on a drawn latent and
    (N,) otherwise; else, as Pyro does, log q(z) - log p(z) at the draws z."""
    try:
        kl = kl_divergence(q, prior)
    except NotImplementedError:
        return (q.log_prob(z) - prior.log_prob(z)).sum() / num_particles
    return kl.sum() / num_particles if kl.dim() > 1 else kl.sum()


def log_weights(parts: LatentParts, num_particles: int) -> Tensor:
    """log p(x_i, z_{k,i}) - log q(z_{k,i} | x_i), shape (K, N), unscaled."""
    q = _evaluate(parts.posterior, parts.posterior_args)
    z, latent = _latent_terms(parts, q, _evaluate(parts.prior, parts.prior_args), (num_particles,))
    return _log_likelihood(parts, z) + latent


class LogWeights:
    """:func:`log_weights` of one batch, pass after pass, without gradients.

    The posterior and prior of the batch are evaluated once, not once per
    pass; each call draws new particles, the numbers the Pyro path's pass of
    the same size draws. A Bernoulli image of binary data is scored as
    log p(x | z) = -sum_d softplus((1 - 2 x_d) l_d), which is
    log sigmoid((2 x_d - 1) l_d) = -BCE(l_d, x_d) for x_d in {0, 1}, with
    1 - 2x computed once for the batch: fewer passes over the K N D logits
    than the cross-entropy takes. (softplus is linear above 20, where it
    differs from log(1 + e^v) by under 2.1e-9 nats a pixel.)"""

    @torch.no_grad()
    def __init__(self, parts: LatentParts) -> None:
        self.parts = parts
        self.q = _evaluate(parts.posterior, parts.posterior_args)
        self.prior = _evaluate(parts.prior, parts.prior_args)
        x = parts.x
        binary = type(parts.likelihood) is BernoulliLikelihood and bool(((x == 0) | (x == 1)).all())
        self.flip = 1 - 2 * x if binary else None

    @torch.no_grad()
    def __call__(self, num_particles: int) -> Tensor:
        z, latent = _latent_terms(self.parts, self.q, self.prior, (num_particles,))
        if self.flip is None:
            return _log_likelihood(self.parts, z) + latent
        neg_log_p = softplus(self.parts.likelihood.net(z, self.parts.context) * self.flip)
        if self.parts.observed is not None:
            neg_log_p = torch.where(self.parts.observed, neg_log_p, neg_log_p.new_zeros(()))
        return latent - neg_log_p.sum(-1)


def iwae_loss(parts: LatentParts, num_particles: int, dreg: bool = False) -> Tensor:
    """-sum_i log (1/K) sum_k w_{k,i}. With ``dreg`` the guide's gradient is
    the doubly-reparameterized one (Tucker et al. 2019): log q is scored with
    its parameters held fixed, and the gradient reaching z_{k,i} is
    multiplied by the normalized weight wt_{k,i}, so that the guide gets
    sum_k wt^2 d log w / dz dz / dphi and the model sum_k wt grad log p."""
    if not dreg:
        log_w = log_weights(parts, num_particles)
        return -(torch.logsumexp(log_w, 0) - math.log(num_particles)).sum()
    if parts.layers:
        raise ValueError("dreg=True needs guide latents whose distributions do not depend on "
                         "each other, but this guide draws a chain (q(z_2 | z_1), ...): the "
                         "doubly-reparameterized gradient would be biased here; use dreg=False")
    q = parts.posterior(*parts.posterior_args)
    z = q.rsample((num_particles,))
    weight: list[Tensor] = []
    z.register_hook(lambda grad: grad * weight[0].unsqueeze(-1))
    log_q = detach_distribution(q).log_prob(z)
    log_prior = parts.prior(*parts.prior_args).log_prob(z)
    log_w = _log_likelihood(parts, z) + log_prior - log_q
    loss = -(torch.logsumexp(log_w, 0) - math.log(num_particles)).sum()
    wt = torch.softmax(log_w.detach(), 0)
    weight.append(wt)
    surrogate = -(wt * log_w).sum()
    return surrogate + (loss - surrogate).detach()
