"""A VAE with two stochastic layers, the architecture of Burda, Grosse &
Salakhutdinov (2016, "Importance weighted autoencoders", Sec. 5: x -> 100-d
z1 -> 50-d z2 on MNIST).

Generative model and guide, for each data point i::

    z2_i ~ N(0, I)
    z1_i ~ p(z1 | z2_i) = N(mu_p(z2_i), diag sigma_p(z2_i)^2)
    x_i  ~ p(x | z1_i)                       (Bernoulli / Gaussian / continuous Bernoulli)
    q(z1_i, z2_i | x_i) = q(z1_i | x_i) q(z2_i | z1_i), both diagonal Gaussians

so log w = log p(x | z1) + log p(z1 | z2) + log p(z2) - log q(z1 | x) - log q(z2 | z1),
which the ELBO, IWAE and the importance-weighted estimator read off the
traces as for any pair, or compute through the pure-torch twins of
:mod:`ppvae.accel` (the chain z1 -> z2 of :meth:`TwoLayerVAE.accel_parts`;
the same draws and values, without Pyro's handlers). The guide's
factorization is the true posterior's (z2 and x are independent given z1),
so the pair can be exact: with linear-Gaussian pieces chosen so that the
exact conditionals are diagonal, every importance weight equals p(x)
(``tests/test_two_layer.py``). The beta-VAE weight scales both latent sites
in the model and the guide.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from torch import Tensor

from ppvae.accel import LatentLayer, LatentParts
from ppvae.models.base import LatentVariableModel, as_shape, check_latent_settings
from ppvae.models.registry import register
from ppvae.nn import MLP, make_decoder, make_encoder
from ppvae.pieces import DiagonalGaussian, StandardNormalPrior, make_likelihood


class TwoLayerVAE(LatentVariableModel):
    """A VAE with latents z1 (near the data) and z2 (on top).

    Args:
        input_shape: ``(C, H, W)`` of the images (or ``D``); data flattened.
        latent_dim: dimension of z1 (100 in the IWAE paper).
        top_latent_dim: dimension of z2 (50).
        hidden: hidden widths between x and z1 (both ways; 200-200 in the paper).
        top_hidden: hidden widths between z1 and z2 (both ways; 100-100).
        likelihood: ``"bernoulli"``, ``"gaussian"`` or ``"continuous-bernoulli"``.
        network: ``"mlp"`` or ``"conv"`` (between x and z1).
        activation: hidden activation (``"tanh"`` in the paper).
        beta: weight of the latent terms (1 gives the ELBO).
    """

    def __init__(
        self,
        input_shape: int | Sequence[int] = (1, 8, 8),
        latent_dim: int = 100,
        top_latent_dim: int = 50,
        hidden: Sequence[int] = (200, 200),
        top_hidden: Sequence[int] = (100, 100),
        likelihood: str = "bernoulli",
        network: str = "mlp",
        activation: str = "tanh",
        beta: float = 1.0,
    ) -> None:
        check_latent_settings(latent_dim, beta)
        if top_latent_dim < 1:
            raise ValueError(f"top_latent_dim must be at least 1, got {top_latent_dim}")
        super().__init__(
            dict(input_shape=list(as_shape(input_shape)), latent_dim=latent_dim,
                 top_latent_dim=top_latent_dim, hidden=list(hidden), top_hidden=list(top_hidden),
                 likelihood=likelihood, network=network, activation=activation, beta=beta),
            input_shape,
        )
        self.latent_dim, self.top_latent_dim, self.beta = latent_dim, top_latent_dim, beta
        self.prior = StandardNormalPrior(top_latent_dim)
        #: p(z1 | z2)
        self.conditional_prior = DiagonalGaussian(
            MLP(top_latent_dim, top_hidden, 2 * latent_dim, activation_name=activation),
            latent_dim)
        self.likelihood = make_likelihood(
            likelihood, make_decoder(network, latent_dim, self.input_shape, hidden,
                                     activation_name=activation), self.input_dim)
        #: q(z1 | x)
        self.encoder = DiagonalGaussian(
            make_encoder(network, self.input_shape, 2 * latent_dim, hidden,
                         activation_name=activation), latent_dim)
        #: q(z2 | z1)
        self.top_encoder = DiagonalGaussian(
            MLP(latent_dim, top_hidden, 2 * top_latent_dim, activation_name=activation),
            top_latent_dim)

    def model(self, x: Tensor, beta: float | None = None) -> None:
        """p(x, z1, z2) = p(z2) p(z1 | z2) p(x | z1), latent sites scaled by beta."""
        self.pyro_module()
        self.check_shape(x)
        with pyro.plate("data", len(x)):
            with poutine.scale(scale=self.beta if beta is None else beta):
                z2 = pyro.sample("z2", self.prior())
                z1 = pyro.sample("z1", self.conditional_prior(z2))
            pyro.sample("x", self.likelihood(z1), obs=x)

    def guide(self, x: Tensor, beta: float | None = None) -> None:
        """q(z1 | x) q(z2 | z1), scaled by the same beta as the model."""
        self.pyro_module()
        self.check_shape(x)
        with pyro.plate("data", len(x)):
            with poutine.scale(scale=self.beta if beta is None else beta):
                z1 = pyro.sample("z1", self.encoder(x))
                pyro.sample("z2", self.top_encoder(z1))

    def accel_parts(self, x: Tensor, beta: float | None = None) -> LatentParts:
        """The pieces of ``model``/``guide`` on this batch, for the pure-torch
        twins of their objectives (:mod:`ppvae.accel`): z1 beneath, z2 above."""
        self.check_shape(x)
        return LatentParts(x, self.prior, (), self.encoder, (x,), self.likelihood,
                           beta=self.beta if beta is None else beta,
                           layers=(LatentLayer(self.top_encoder, self.conditional_prior),))

    # ----------------------------------------------------------- conveniences
    @torch.no_grad()
    def encode(self, x: Tensor, *, sample: bool = False) -> Tensor:
        """Codes z1 ``(batch, latent_dim)``: the mean of q(z1 | x), or a draw."""
        q = self.encoder(self.prepare(x))
        return q.sample() if sample else q.mean

    def prior_codes(self, num_samples: int) -> Tensor:
        """z1 ~ p(z1 | z2) at z2 ~ p(z2) (what :meth:`sample` decodes)."""
        return self.conditional_prior(self.prior.sample(num_samples).to(self.device)).sample()


register("two-layer-vae", TwoLayerVAE, summary="VAE with two stochastic layers "
         "x -> z1 -> z2 (the IWAE paper's architecture), trained as a VAE or IWAE-K",
         paper="Burda, Grosse & Salakhutdinov 2016")
