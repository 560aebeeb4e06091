"""The variational autoencoder (Kingma & Welling 2014; Rezende, Mohamed &
Wierstra 2014) with the beta-weighted objective of Higgins et al. (2017).

Generative model and amortized guide, for each data point i::

    z_i ~ p(z) = N(0, I)                  (prior)
    x_i ~ p(x | z_i)                      (Bernoulli / Gaussian / continuous Bernoulli)
    q(z_i | x_i) = N(mu(x_i), diag sigma(x_i)^2)

The prior may instead be learned with the model: a mixture of K diagonal
Gaussians (``prior="mog"``, :class:`ppvae.pieces.LearnedMixturePrior`) or the
VampPrior p(z) = (1/K) sum_k q(z | u_k) at K learned pseudo-inputs
(``prior="vamp"``, Tomczak & Welling 2018, :class:`ppvae.pieces.VampPrior`);
both are densities, so the pair is scored as before. The guide may be an
inverse autoregressive flow on the Gaussian (``posterior="iaf"``, Kingma et
al. 2016, :class:`ppvae.pieces.IAFPosterior`): ``num_flows`` steps
conditioned on a context h(x) of ``2 * latent_dim`` features that the encoder
also outputs.

The beta-VAE objective is E_q[log p(x|z)] - beta * KL(q(z|x) || p(z)). Since the
KL term is E_q[log q(z|x) - log p(z)], it is obtained by scaling the ``z`` site
by beta in *both* the model and the guide (scaling the model alone would weight
log p(z) but not the entropy of q, which is not a beta-VAE).
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from torch import Tensor

from ppvae.accel import LatentParts
from ppvae.models.base import LatentVariableModel, as_shape, check_latent_settings
from ppvae.models.registry import register
from ppvae.nn import make_decoder, make_encoder
from ppvae.pieces import (
    DiagonalGaussian,
    IAFPosterior,
    LearnedMixturePrior,
    StandardNormalPrior,
    VampPrior,
    make_likelihood,
)

#: the priors a :class:`VAE` takes, by name
VAE_PRIORS = ("normal", "mog", "vamp")
#: the guides a :class:`VAE` takes, by name
VAE_POSTERIORS = ("gaussian", "iaf")


class VAE(LatentVariableModel):
    """Variational autoencoder as a Pyro model/guide pair.

    Args:
        input_shape: ``(C, H, W)`` of the images (or ``D`` for flat vectors with
            an MLP); data are passed flattened, ``(batch, C*H*W)``.
        latent_dim: dimension of z.
        hidden: hidden layer widths of the encoder (the decoder mirrors them).
        likelihood: ``"bernoulli"`` (binary data), ``"gaussian"`` or
            ``"continuous-bernoulli"``.
        network: ``"mlp"`` or ``"conv"``.
        activation: hidden activation, e.g. ``"relu"`` or ``"tanh"``.
        beta: weight of the KL term (1 gives the ELBO).
        prior: ``"normal"`` (N(0, I)), ``"mog"`` or ``"vamp"`` (learned; see
            the module doc).
        prior_components: K of a learned prior (default 10 for ``"mog"``,
            500 for ``"vamp"``, the VampPrior paper's MNIST setting).
        posterior: ``"gaussian"`` (diagonal) or ``"iaf"``.
        num_flows: the IAF's steps (``posterior="iaf"`` only).

    ``model(x, beta=None)`` and ``guide(x, beta=None)`` put the batch in
    ``pyro.plate("data", len(x))``; ``beta`` overrides the model's weight for
    one call (the trainer uses it for KL warm-up, and 1 for evaluation).
    """

    def __init__(
        self,
        input_shape: int | Sequence[int] = (1, 8, 8),
        latent_dim: int = 8,
        hidden: Sequence[int] = (256, 128),
        likelihood: str = "bernoulli",
        network: str = "mlp",
        activation: str = "relu",
        beta: float = 1.0,
        prior: str = "normal",
        prior_components: int | None = None,
        posterior: str = "gaussian",
        num_flows: int = 2,
    ) -> None:
        check_latent_settings(latent_dim, beta)
        if posterior not in VAE_POSTERIORS:
            raise ValueError(f"unknown posterior {posterior!r}; choose one of "
                             f"{list(VAE_POSTERIORS)}")
        if posterior == "gaussian" and num_flows != 2:
            raise ValueError("num_flows goes with posterior='iaf'")
        if prior not in VAE_PRIORS:
            raise ValueError(f"unknown prior {prior!r}; choose one of {list(VAE_PRIORS)}")
        if prior_components is not None and (prior == "normal" or prior_components < 1):
            raise ValueError("prior_components takes a positive count, for a learned prior "
                             f"(mog or vamp); got {prior_components} with prior {prior!r}")
        config = dict(input_shape=list(as_shape(input_shape)), latent_dim=latent_dim,
                      hidden=list(hidden), likelihood=likelihood, network=network,
                      activation=activation, beta=beta)
        if prior != "normal":  # a standard VAE's config stays as it was
            config.update(prior=prior, prior_components=prior_components)
        if posterior != "gaussian":
            config.update(posterior=posterior, num_flows=num_flows)
        super().__init__(config, input_shape)
        self.latent_dim = latent_dim
        self.beta = beta
        if posterior == "iaf":
            self.encoder = IAFPosterior(
                make_encoder(network, self.input_shape, 4 * latent_dim, hidden,
                             activation_name=activation),
                latent_dim, 2 * latent_dim, num_flows)
        else:
            self.encoder = DiagonalGaussian(
                make_encoder(network, self.input_shape, 2 * latent_dim, hidden,
                             activation_name=activation),
                latent_dim,
            )
        if prior == "mog":
            self.prior = LearnedMixturePrior(latent_dim, prior_components or 10)
        elif prior == "vamp":
            self.prior = VampPrior(self.encoder, self.input_dim, prior_components or 500)
        else:
            self.prior = StandardNormalPrior(latent_dim)
        self.likelihood = make_likelihood(
            likelihood,
            make_decoder(network, latent_dim, self.input_shape, hidden,
                         activation_name=activation),
            self.input_dim,
        )

    def model(self, x: Tensor, beta: float | None = None) -> None:
        """p(x, z) = p(z) p(x | z), with the ``z`` site scaled by beta."""
        self.pyro_module()
        self.check_shape(x)
        with pyro.plate("data", len(x)):
            with poutine.scale(scale=self.beta if beta is None else beta):
                z = pyro.sample("z", self.prior())
            pyro.sample("x", self.likelihood(z), obs=x)

    def guide(self, x: Tensor, beta: float | None = None) -> None:
        """q(z | x), with the ``z`` site scaled by the same beta as the model."""
        self.pyro_module()
        self.check_shape(x)
        with pyro.plate("data", len(x)):
            with poutine.scale(scale=self.beta if beta is None else beta):
                pyro.sample("z", self.encoder(x))

    def accel_parts(self, x: Tensor, beta: float | None = None) -> LatentParts:
        """The pieces of ``model``/``guide`` on this batch, for the pure-torch
        twins of their objectives (:mod:`ppvae.accel`)."""
        self.check_shape(x)
        return LatentParts(x, self.prior, (), self.encoder, (x,), self.likelihood,
                           beta=self.beta if beta is None else beta)

    # ----------------------------------------------------------- conveniences
    @torch.no_grad()
    def posterior(self, x: Tensor) -> dist.Distribution:
        """The amortized posterior q(z | x) for a batch (validated input)."""
        return self.encoder(self.prepare(x))

    @torch.no_grad()
    def encode(self, x: Tensor, *, sample: bool = False) -> Tensor:
        """Latent codes ``(batch, latent_dim)``: the posterior mean (with an
        IAF, the flow's image of its base mean: :meth:`ppvae.pieces.IAFPosterior.code`),
        or a draw."""
        if sample:
            return self.posterior(x).sample()
        if isinstance(self.encoder, IAFPosterior):
            return self.encoder.code(self.prepare(x))
        return self.posterior(x).mean



register("vae", VAE, summary="variational autoencoder, beta-VAE (MLP or conv; Bernoulli, "
         "Gaussian or continuous-Bernoulli pixels)",
         paper="Kingma & Welling 2014; Rezende et al. 2014; Higgins et al. 2017")
