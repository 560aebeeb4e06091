"""VAE-GAN (Larsen, Sonderby, Larochelle & Winther 2016, "Autoencoding beyond
pixels using a learned similarity metric", ICML): a VAE whose reconstructions
are also judged by a discriminator, through the discriminator's features.

The Pyro pair is the VAE's (:class:`~ppvae.models.vae.VAE`), for each data
point::

    z ~ N(0, I),  x ~ p(x | z),  q(z | x) = N(mu(x), diag sigma(x)^2)

so the model is a density of x, scored by the importance-weighted estimator.
Beside it, a discriminator Dis(x) (a plain network outside the pair) with
hidden features Dis_l(x) (its last hidden layer) trains against the decoder
(:class:`ppvae.train.AdversarialPlan`, two optimizers)::

    discriminator:  min  BCE(Dis(x), 1) + BCE(Dis(x~), 0) + BCE(Dis(x_p), 0)
    the rest:       min  -ELBO(x)                                  the VAE's
                         + feature_weight * |Dis_l(x~) - Dis_l(x)|^2 / 2
                         + gan_weight * [BCE(Dis(x~'), 1) + BCE(Dis(x_p), 1)]

with x~ = E[x | z], z ~ q(z | x) (a reconstruction), x_p = E[x | z_p], z_p ~
p(z) (a sample), means over the batch. The feature term is the paper's
L_llike^{Dis_l}, -log N(Dis_l(x); Dis_l(x~), I) up to a constant; the pixel
likelihood stays in the ELBO, so the decoder remains a density of x. As in
the paper, the adversarial term does not reach the encoder: x~' is decoded
from the detached z, and in the discriminator's step the images are
detached. Unlike the paper, which weights the feature term by gamma for the
decoder and by 1 for the encoder with three optimizers, one weight serves both.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from pyro.infer import Trace_ELBO
from torch import Tensor
from torch.nn.functional import binary_cross_entropy_with_logits

from ppvae.models.registry import register
from ppvae.models.vae import VAE
from ppvae.nn import MLP


class VAEGAN(VAE):
    """A VAE with a discriminator on images.

    Args:
        input_shape, latent_dim, hidden, likelihood, network, activation,
            beta: as for :class:`~ppvae.models.vae.VAE`.
        discriminator_hidden: hidden widths of the MLP discriminator (its
            last hidden layer gives the features Dis_l).
        feature_weight: the weight of the feature-matching term.
        gan_weight: the weight of the decoder's adversarial term.
    """

    default_plan = "adversarial"

    def __init__(
        self,
        input_shape: int | Sequence[int] = (1, 8, 8),
        latent_dim: int = 8,
        hidden: Sequence[int] = (256, 128),
        likelihood: str = "bernoulli",
        network: str = "mlp",
        activation: str = "relu",
        beta: float = 1.0,
        discriminator_hidden: Sequence[int] = (256, 128),
        feature_weight: float = 1.0,
        gan_weight: float = 1.0,
    ) -> None:
        if not discriminator_hidden:
            raise ValueError("the discriminator needs a hidden layer: its features Dis_l")
        if not (feature_weight >= 0 and gan_weight >= 0):
            raise ValueError(f"feature_weight and gan_weight must be >= 0, got {feature_weight} "
                             f"and {gan_weight}")
        super().__init__(input_shape, latent_dim, hidden, likelihood, network, activation, beta)
        self.config.update(discriminator_hidden=list(discriminator_hidden),
                           feature_weight=feature_weight, gan_weight=gan_weight)
        self.feature_weight, self.gan_weight = float(feature_weight), float(gan_weight)
        #: Dis: an image -> the logit of "a data image"
        self.discriminator = MLP(self.input_dim, discriminator_hidden, 1,
                                 activation_name=activation)
        self.elbo = Trace_ELBO()

    def features(self, x: Tensor) -> Tensor:
        """Dis_l(x), the discriminator's last hidden layer."""
        return self.discriminator.layers[:-1](x)

    def discriminator_loss(self, x: Tensor) -> Tensor:
        """The discriminator's loss on data, reconstructions and samples (detached)."""
        with torch.no_grad():
            reconstructions = self.likelihood.mean(self.encoder(x).rsample())
            samples = self.likelihood.mean(self.prior().sample((len(x),)))
        logits = self.discriminator(torch.cat([x, reconstructions, samples]))
        labels = torch.cat([torch.ones(len(x), 1), torch.zeros(2 * len(x), 1)]).to(logits)
        return 3 * binary_cross_entropy_with_logits(logits, labels)

    def adversarial_loss(self, x: Tensor, z: Tensor) -> Tensor:
        """The decoder's adversarial term on reconstructions of the detached
        codes ``z`` and on samples: it reaches the decoder, not the encoder."""
        fakes = torch.cat([self.likelihood.mean(z.detach()),
                           self.likelihood.mean(self.prior().sample((len(x),)))])
        logits = self.discriminator(fakes)
        return 2 * binary_cross_entropy_with_logits(logits, torch.ones_like(logits))

    def generator_loss(self, x: Tensor) -> Tensor:
        """-ELBO + feature_weight * feature matching + gan_weight * adversarial
        term, per data point (module doc)."""
        negative_elbo = self.elbo.differentiable_loss(self.model, self.guide, x) / len(x)
        z = self.encoder(x).rsample()
        matching = 0.5 * (self.features(self.likelihood.mean(z)) - self.features(x)).pow(2).sum(-1)
        return (negative_elbo + self.feature_weight * matching.mean()
                + self.gan_weight * self.adversarial_loss(x, z))


register("vae-gan", VAEGAN, summary="VAE-GAN: a VAE whose reconstructions and samples are also "
         "judged by a discriminator, through its features; a density (the VAE's pair)",
         paper="Larsen, Sonderby, Larochelle & Winther 2016")
