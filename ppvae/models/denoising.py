"""Denoising models: the guide sees a corrupted input x~ ~ C(x~ | x), the
model scores the clean x (:mod:`ppvae.pieces.corruption`: Gaussian noise or
masking).

- :class:`DenoisingAutoencoder` (Vincent, Larochelle, Bengio & Manzagol 2008;
  Vincent et al. 2010): the point-mass autoencoder of
  :mod:`ppvae.models.autoencoder` trained to reconstruct x from the code of
  x~, i.e. the loss E_C[-log p(x | z = f(x~))].
- :class:`DenoisingVAE` (Im, Ahn, Memisevic & Bengio 2017, "Denoising
  criterion for variational auto-encoding framework"): the VAE trained on
  the denoising ELBO E_{C(x~ | x)} E_{q(z | x~)}[log p(x, z) - log q(z | x~)],
  which is a lower bound on log p(x) for every x~, since q(z | x~) is a
  distribution over z like any other.

The corruption is drawn in train mode only (``model.train()``, as dropout);
in eval mode (after :func:`ppvae.fit`, :func:`ppvae.load`, ``model.eval()``)
the guide sees x itself, so the denoising VAE is scored on clean test data by
the same importance-weighted estimator as any VAE, with q(z | x) as proposal.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from torch import Tensor

from ppvae.accel import LatentParts
from ppvae.models.autoencoder import Autoencoder
from ppvae.models.registry import register
from ppvae.models.vae import VAE
from ppvae.pieces import Corruption


class DenoisingAutoencoder(Autoencoder):
    """A denoising autoencoder.

    Args:
        input_shape, latent_dim, hidden, likelihood, network, activation,
            code_activation: as for :class:`Autoencoder`.
        noise: ``"gaussian"`` (x + level * eps) or ``"masking"`` (each value
            zeroed with probability level).
        noise_level: the noise's standard deviation or masking fraction.
    """

    def __init__(
        self,
        input_shape: int | Sequence[int] = (1, 8, 8),
        latent_dim: int = 8,
        hidden: Sequence[int] = (256, 128),
        likelihood: str = "gaussian",
        network: str = "mlp",
        activation: str = "relu",
        code_activation: str | None = None,
        noise: str = "masking",
        noise_level: float = 0.25,
    ) -> None:
        corruption = Corruption(noise, noise_level)  # bad noise settings fail first
        super().__init__(input_shape, latent_dim, hidden, likelihood, network, activation,
                         code_activation)
        self.config.update(noise=noise, noise_level=noise_level)
        self.corruption = corruption


class DenoisingVAE(VAE):
    """A VAE whose guide q(z | x~) sees a corrupted input in train mode.

    Args:
        input_shape, latent_dim, hidden, likelihood, network, activation,
            beta: as for :class:`ppvae.models.VAE`.
        noise, noise_level: as for :class:`DenoisingAutoencoder`.
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
        noise: str = "gaussian",
        noise_level: float = 0.1,
    ) -> None:
        corruption = Corruption(noise, noise_level)
        super().__init__(input_shape, latent_dim, hidden, likelihood, network, activation, beta)
        self.config.update(noise=noise, noise_level=noise_level)
        self.corruption = corruption

    def corrupt(self, x: Tensor) -> Tensor:
        """A draw of x~ ~ C(x~ | x) in train mode, else ``x``."""
        return self.corruption(x) if self.training else x

    def guide(self, x: Tensor, beta: float | None = None) -> None:
        """q(z | x~), with the ``z`` site scaled by beta as in the model."""
        self.check_shape(x)
        super().guide(self.corrupt(x), beta)

    def accel_parts(self, x: Tensor, beta: float | None = None) -> LatentParts:
        """The VAE's pieces with the guide's input corrupted (in train mode)."""
        return dataclasses.replace(super().accel_parts(x, beta), posterior_args=(self.corrupt(x),))


register("dae", DenoisingAutoencoder, summary="denoising autoencoder (Gaussian or masking "
         "noise on the guide's input); not a density",
         paper="Vincent et al. 2008, 2010")
register("dvae", DenoisingVAE, summary="denoising VAE: q(z | x~) of a corrupted input, scored "
         "on clean data", paper="Im, Ahn, Memisevic & Bengio 2017")
