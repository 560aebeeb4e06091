"""Deterministic autoencoders as probabilistic programs: MAP inference of
the code with an amortized point-mass guide.

Generative model and guide, for each data point i::

    z_i ~ p(z)                          flat (improper): a plain autoencoder
    x_i ~ p(x | z_i)                    N(g(z_i), I), continuous Bernoulli, or
                                        Bernoulli (binary data)
    q(z_i | x_i) = delta(z_i - f(x_i))  the encoder's code

With a point mass, the negative ELBO is -log p(x | z = f(x)) - log p(f(x)):
under the flat prior and ``likelihood="gaussian"``, half the squared
reconstruction error |x - g(f(x))|^2 plus a constant, the plain
autoencoder's loss; with a Bernoulli, the cross-entropy. Subclasses change
one piece: the prior (a Laplace prior makes the L1-sparse code,
:mod:`ppvae.models.sparse`), the guide's input (a corruption of x,
:mod:`ppvae.models.denoising`), or declare ``penalties`` that are not
densities (the KL sparsity and contraction penalties), which the
reconstruction plan adds to the loss (:class:`ppvae.train.ReconstructionPlan`).

These models are not densities of x (``density = False``): the
importance-weighted estimator refuses the point mass and the improper prior;
:func:`ppvae.infer.reconstruction_error` scores them, and ``ppvae evaluate``
reports it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from torch import Tensor, nn

from ppvae.models.base import FigureSpec, LatentVariableModel, as_shape, check_latent_settings
from ppvae.models.registry import register
from ppvae.nn import activation as make_activation
from ppvae.nn import make_decoder, make_encoder
from ppvae.pieces import Corruption, FlatPrior, make_likelihood


class Autoencoder(LatentVariableModel):
    """A plain autoencoder, MLP or convolutional, as a Pyro model/guide pair.

    Args:
        input_shape: ``(C, H, W)`` of the images (or ``D`` for flat vectors
            with an MLP); data are passed flattened, ``(batch, C*H*W)``.
        latent_dim: dimension of the code z.
        hidden: hidden layer widths of the encoder (the decoder mirrors them).
        likelihood: ``"gaussian"`` (N(g(z), I): squared error), 
            ``"continuous-bernoulli"`` (pixels in [0, 1]) or ``"bernoulli"``
            (binary data: cross-entropy).
        network: ``"mlp"`` or ``"conv"``.
        activation: hidden activation (:data:`ppvae.nn.ACTIVATIONS`).
        code_activation: activation of the code, e.g. ``"sigmoid"`` (None:
            linear).

    ``model(x)`` and ``guide(x)`` put the batch in ``pyro.plate("data",
    len(x))``; the guide's site ``z`` is a point mass at ``code(x)``.
    """

    default_plan = "reconstruction"
    density = False

    def __init__(
        self,
        input_shape: int | Sequence[int] = (1, 8, 8),
        latent_dim: int = 8,
        hidden: Sequence[int] = (256, 128),
        likelihood: str = "gaussian",
        network: str = "mlp",
        activation: str = "relu",
        code_activation: str | None = None,
    ) -> None:
        check_latent_settings(latent_dim, 1.0)
        super().__init__(
            dict(input_shape=list(as_shape(input_shape)), latent_dim=latent_dim,
                 hidden=list(hidden), likelihood=likelihood, network=network,
                 activation=activation, code_activation=code_activation),
            input_shape,
        )
        self.latent_dim = latent_dim
        #: p(z); subclasses may set another prior
        self.prior: nn.Module = FlatPrior(latent_dim)
        #: C(x~ | x) the guide sees in train mode; None: x itself
        self.corruption: Corruption | None = None
        self.encoder = make_encoder(network, self.input_shape, latent_dim, hidden,
                                    activation_name=activation)
        self.code_activation = (make_activation(code_activation) if code_activation
                                else nn.Identity())
        decoder = make_decoder(network, latent_dim, self.input_shape, hidden,
                               activation_name=activation)
        self.likelihood = make_likelihood(likelihood, decoder, self.input_dim, gaussian_scale=1.0)

    def code(self, x: Tensor) -> Tensor:
        """The encoder's code f(x), differentiable, for a batch ``(batch, D)``."""
        return self.code_activation(self.encoder(x))

    def corrupt(self, x: Tensor) -> Tensor:
        """The guide's input: a draw of :attr:`corruption` in train mode
        (``model.train()``, as dropout), else ``x``."""
        return self.corruption(x) if self.corruption is not None and self.training else x

    def model(self, x: Tensor) -> None:
        """p(x, z) = p(z) p(x | z)."""
        self.pyro_module()
        self.check_shape(x)
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", self.prior())
            pyro.sample("x", self.likelihood(z), obs=x)

    def guide(self, x: Tensor) -> None:
        """The point mass at the code of the (corrupted) input."""
        self.pyro_module()
        self.check_shape(x)
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Delta(self.code(self.corrupt(x)), event_dim=1))

    def penalties(self, x: Tensor) -> dict[str, Tensor]:
        """Penalties per data point added to the loss by the reconstruction
        plan, by name (none for a plain autoencoder)."""
        return {}

    # ----------------------------------------------------------- conveniences
    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """Codes f(x) ``(batch, latent_dim)`` of a batch (validated input)."""
        return self.code(self.prepare(x))

    def sample(self, num_samples: int, **kwargs: Any) -> Tensor:
        """Not offered: an autoencoder's prior is not a distribution to draw
        codes from (use a VAE or an adversarial autoencoder)."""
        raise ValueError(f"{type(self).__name__} is not a generative density: its prior has "
                         "no draws, so it has no samples (a VAE has)")

    @torch.no_grad()
    def figures(self, data: Any, num: int | None = None) -> dict[str, FigureSpec]:
        """``reconstructions`` (for images) and the ``latent_map`` of the test
        codes; no samples."""
        return {k: v for k, v in super().figures(data, num).items()
                if k in ("reconstructions", "latent_map")}


class LinearAutoencoder(Autoencoder):
    """The linear autoencoder x -> W_e x + b_e -> W_d z + b_d with squared
    error: its optimal codes span the same subspace as the first
    ``latent_dim`` principal components (Baldi & Hornik 1989), though the
    weights need not be orthogonal.

    Args:
        input_shape, latent_dim: as for :class:`Autoencoder`.
    """

    def __init__(self, input_shape: int | Sequence[int] = (1, 8, 8),
                 latent_dim: int = 8) -> None:
        super().__init__(input_shape, latent_dim, hidden=(), likelihood="gaussian")
        self.config = dict(input_shape=list(self.input_shape), latent_dim=latent_dim)

    def decoder_weight(self) -> Tensor:
        """W_d, ``(D, latent_dim)``: its columns span the decoded subspace."""
        return self.likelihood.net.layers[-1].weight.detach()


register("ae", Autoencoder, summary="autoencoder (MLP or conv) as MAP inference with a "
         "point-mass guide and a flat prior; not a density",
         paper="Rumelhart, Hinton & Williams 1986; Hinton & Salakhutdinov 2006")
register("linear-ae", LinearAutoencoder, summary="linear autoencoder with squared error: "
         "spans the PCA subspace", paper="Baldi & Hornik 1989")
