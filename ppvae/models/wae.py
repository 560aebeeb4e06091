"""Wasserstein autoencoders (Tolstikhin, Bousquet, Gelly & Scholkopf 2018,
"Wasserstein auto-encoders", ICLR).

Generative model and guide, for each data point i::

    z_i ~ p(z)                            N(0, I), or a 2-d mixture or swiss roll
    x_i ~ p(x | z_i) = N(g(z_i), I)       the cost c(x, g(z)) = |x - g(z)|^2 / 2 + const
    q(z_i | x_i) = delta(z_i - f(x_i))    a deterministic encoder

WAE minimizes a relaxed optimal-transport cost between the data and the
model, E_x c(x, g(f(x))) + lambda D(q_Z, p_Z), where q_Z = E_x q(z | x) is the
aggregate posterior: unlike the VAE's KL, which pulls every q(z | x) to
p(z), only the codes as a whole must look like prior draws.

- :class:`WassersteinAutoencoder` (WAE-MMD; any prior that can be sampled,
  N(0, I) by default): D is the MMD^2 between the
  batch's codes and as many prior draws (:func:`ppvae.infer.mmd.mmd2`, the
  inverse multiquadratic kernel summed over several widths, as the authors'
  code does). It is a penalty declared by ``penalties``; the prior term
  -log p(f(x)) of the point-mass pair is left out of the training loss
  (``replaced_priors``), since D takes its place.
- :class:`WAEGAN`: D is estimated adversarially by a discriminator on the
  codes, which makes it the adversarial autoencoder
  (:class:`~ppvae.models.adversarial.AdversarialAutoencoder`) with a normal
  prior and the WAE's weight and discriminator.

Neither is a density of x (point-mass guide): they are evaluated by their
reconstruction error, their samples and the MMD of their codes to the prior.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ppvae.infer.mmd import mmd2
from ppvae.models.adversarial import AdversarialAutoencoder
from ppvae.models.autoencoder import Autoencoder
from ppvae.models.base import FigureSpec, LatentVariableModel
from ppvae.models.registry import register
from ppvae.pieces import make_prior

#: widths s of the IMQ kernels summed by the MMD penalty: C = 2 d s^2 for
#: s^2 in (0.1, ..., 10) times the prior's variance, as in the authors' code
IMQ_SCALES = tuple(math.sqrt(c) for c in (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0))


class WassersteinAutoencoder(Autoencoder):
    """WAE-MMD: reconstruction plus lambda MMD^2(codes, prior draws).

    Args:
        input_shape, latent_dim, hidden, likelihood, network, activation: as
            for :class:`~ppvae.models.autoencoder.Autoencoder`.
        mmd_weight: lambda, the weight of the MMD^2 penalty.
        kernel: ``"imq"`` (summed over :data:`IMQ_SCALES`) or ``"rbf"`` (width
            1, the prior's scale).
        prior: ``"normal"``, or a 2-d ``"mixture"`` or ``"swiss-roll"``
            (:func:`ppvae.pieces.make_prior`); the MMD needs its draws only.
    """

    replaced_priors = ("z",)

    def __init__(
        self,
        input_shape: int | Sequence[int] = (1, 8, 8),
        latent_dim: int = 8,
        hidden: Sequence[int] = (256, 128),
        likelihood: str = "gaussian",
        network: str = "mlp",
        activation: str = "relu",
        mmd_weight: float = 10.0,
        kernel: str = "imq",
        prior: str = "normal",
    ) -> None:
        if not mmd_weight >= 0:
            raise ValueError(f"mmd_weight must be >= 0, got {mmd_weight}")
        if kernel not in ("imq", "rbf"):
            raise ValueError(f"unknown kernel {kernel!r}; choose 'imq' or 'rbf'")
        prior_piece = make_prior(prior, latent_dim)
        super().__init__(input_shape, latent_dim, hidden, likelihood, network, activation)
        self.config = {k: v for k, v in self.config.items() if k != "code_activation"}
        self.config.update(mmd_weight=mmd_weight, kernel=kernel, prior=prior)
        self.mmd_weight, self.kernel = float(mmd_weight), kernel
        self.prior = prior_piece

    def penalties(self, x: Tensor) -> dict[str, Tensor]:
        """``{"mmd": lambda MMD^2(f(x_1..n), z_1..n)}`` with z_j ~ p(z), from
        torch's random state."""
        codes = self.code(self.corrupt(x))
        scales = IMQ_SCALES if self.kernel == "imq" else 1.0
        return {"mmd": self.mmd_weight * mmd2(codes, self.prior.sample(len(x)).to(codes),
                                              self.kernel, scales)}

    #: a generative model: its samples decode prior draws
    sample = LatentVariableModel.sample

    @torch.no_grad()
    def figures(self, data: Any, num: int | None = None) -> dict[str, FigureSpec]:
        """A generative model's figures (:meth:`LatentVariableModel.figures`):
        reconstructions, samples, the latent map, and for a 2-d normal prior
        the decoded grid of its quantiles."""
        out = LatentVariableModel.figures(self, data, num)
        if self.config["prior"] != "normal":
            out.pop("latent_manifold", None)
        return out


class WAEGAN(AdversarialAutoencoder):
    """WAE-GAN: the adversarial autoencoder with a deterministic encoder, the
    prior N(0, I) and the WAE's weight lambda of the adversarial term.

    Args:
        input_shape, latent_dim, hidden, likelihood, network, activation,
            discriminator_hidden: as for
            :class:`~ppvae.models.adversarial.AdversarialAutoencoder`.
        adversarial_weight: lambda.
    """

    def __init__(
        self,
        input_shape: int | Sequence[int] = (1, 8, 8),
        latent_dim: int = 8,
        hidden: Sequence[int] = (256, 128),
        likelihood: str = "gaussian",
        network: str = "mlp",
        activation: str = "relu",
        adversarial_weight: float = 1.0,
        discriminator_hidden: Sequence[int] = (512, 512, 512, 512),
    ) -> None:
        super().__init__(input_shape, latent_dim, hidden, likelihood, network, activation,
                         encoder="deterministic", prior="normal",
                         adversarial_weight=adversarial_weight,
                         discriminator_hidden=discriminator_hidden)
        for k in ("encoder", "prior"):
            del self.config[k]


register("wae", WassersteinAutoencoder, summary="Wasserstein autoencoder, WAE-MMD: "
         "reconstruction plus lambda MMD^2 between the codes and prior draws; not a density",
         paper="Tolstikhin, Bousquet, Gelly & Scholkopf 2018")
register("wae-gan", WAEGAN, summary="Wasserstein autoencoder, WAE-GAN: the codes matched to "
         "N(0, I) by a discriminator; not a density",
         paper="Tolstikhin, Bousquet, Gelly & Scholkopf 2018")
