"""The adversarial autoencoder (Makhzani, Shlens, Jaitly, Goodfellow & Frey
2015, "Adversarial autoencoders").

Generative model and guide, for each data point i::

    z_i ~ p(z)                            any prior that can be sampled: N(0, I), a
                                          mixture of 2-d Gaussians, a swiss roll
    x_i ~ p(x | z_i)                      N(g(z_i), I), continuous Bernoulli or Bernoulli
    q(z_i | x_i) = delta(z_i - f(x_i))    deterministic encoder, or
                 = N(mu(x_i), diag sigma(x_i)^2)   Gaussian encoder

Instead of the KL term of a VAE, a discriminator D(z) (a plain network,
outside the pair) learns to tell prior draws from codes, and the encoder
learns to fool it, which matches the aggregate posterior q(z) = E_x q(z | x)
to p(z) (:class:`ppvae.train.AdversarialPlan`, two optimizers)::

    discriminator:  min_D  -log sigmoid(D(z_p)) - log(1 - sigmoid(D(z_q)))
    the rest:       min_{f, g}  -log p(x | z_q) - w log sigmoid(D(z_q))

with z_p ~ p(z) and z_q ~ q(z | x), means over the batch, w the
``adversarial_weight``. In the discriminator's step the codes are detached: its
gradient never reaches the encoder; in the other step the discriminator's
parameters are not updated. The prior's density is not used in training (a
swiss roll has none).

With a Gaussian encoder and a prior that has a density, the pair is a density
of x and the importance-weighted estimator scores it; with a deterministic
encoder (a point mass) or the swiss roll it is not (``density`` is False).

:class:`LabelledAdversarialAutoencoder` ties the components of a mixture prior
to classes (Makhzani et al., Sec. 4, "incorporating label information in the
adversarial regularization"): the discriminator also sees a one-hot label,
with an extra slot for unlabelled points; a labelled point's code must look
like a draw from its class's component, an unlabelled one's like a draw from
the whole mixture. Its code then classifies by the most probable component.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from torch import Tensor, nn
from torch.nn.functional import binary_cross_entropy_with_logits, cross_entropy, one_hot

from ppvae.models.base import (
    FigureSpec,
    LatentVariableModel,
    as_shape,
    check_latent_settings,
    check_num_classes,
)
from ppvae.models.registry import register
from ppvae.models.ssvae import SSVAE
from ppvae.nn import MLP, make_decoder, make_encoder
from ppvae.pieces import (
    DiagonalGaussian,
    GaussianMixturePrior,
    make_likelihood,
    make_prior,
)

ENCODERS = ("deterministic", "gaussian")


class AdversarialAutoencoder(LatentVariableModel):
    """An adversarial autoencoder as a Pyro pair with a discriminator.

    Args:
        input_shape: ``(C, H, W)`` of the images (or ``D``); data flattened.
        latent_dim: dimension of z (2 for the mixture and swiss-roll priors).
        hidden: hidden widths of the encoder (the decoder mirrors them).
        likelihood: ``"gaussian"`` (N(g(z), I)), ``"continuous-bernoulli"`` or
            ``"bernoulli"`` (binary data).
        network: ``"mlp"`` or ``"conv"``.
        activation: hidden activation of encoder, decoder and discriminator.
        encoder: ``"deterministic"`` (a point mass) or ``"gaussian"``.
        prior: ``"normal"``, ``"mixture"`` (10 Gaussians in 2-d,
            :class:`ppvae.pieces.GaussianMixturePrior`) or ``"swiss-roll"``.
        adversarial_weight: w, the weight of the encoder's adversarial term.
        discriminator_hidden: hidden widths of D.
    """

    default_plan = "adversarial"

    def __init__(
        self,
        input_shape: int | Sequence[int] = (1, 8, 8),
        latent_dim: int = 2,
        hidden: Sequence[int] = (256, 128),
        likelihood: str = "gaussian",
        network: str = "mlp",
        activation: str = "relu",
        encoder: str = "deterministic",
        prior: str = "mixture",
        adversarial_weight: float = 1.0,
        discriminator_hidden: Sequence[int] = (128, 128),
    ) -> None:
        check_latent_settings(latent_dim, 1.0)
        if encoder not in ENCODERS:
            raise ValueError(f"unknown encoder {encoder!r}; choose one of {list(ENCODERS)}")
        prior_piece = make_prior(prior, latent_dim)  # a bad prior fails first
        if not adversarial_weight >= 0:
            raise ValueError(f"adversarial_weight must be >= 0, got {adversarial_weight}")
        super().__init__(
            dict(input_shape=list(as_shape(input_shape)), latent_dim=latent_dim,
                 hidden=list(hidden), likelihood=likelihood, network=network,
                 activation=activation, encoder=encoder, prior=prior,
                 adversarial_weight=adversarial_weight,
                 discriminator_hidden=list(discriminator_hidden)),
            input_shape,
        )
        self.latent_dim, self.adversarial_weight = latent_dim, float(adversarial_weight)
        self.prior = prior_piece
        gaussian = encoder == "gaussian"
        net = make_encoder(network, self.input_shape, (2 if gaussian else 1) * latent_dim, hidden,
                           activation_name=activation)
        self.encoder = DiagonalGaussian(net, latent_dim) if gaussian else net
        self.gaussian_encoder = gaussian
        decoder = make_decoder(network, latent_dim, self.input_shape, hidden,
                               activation_name=activation)
        self.likelihood = make_likelihood(likelihood, decoder, self.input_dim, gaussian_scale=1.0)
        #: D: a code -> the logit of "a prior draw"
        self.discriminator = MLP(latent_dim, discriminator_hidden, 1, activation_name=activation)
        #: a density of x: a Gaussian encoder and a prior with a density
        self.density = gaussian and prior != "swiss-roll"

    def codes(self, x: Tensor) -> Tensor:
        """z ~ q(z | x) (reparameterized) or f(x), differentiable."""
        return self.encoder(x).rsample() if self.gaussian_encoder else self.encoder(x)

    def model(self, x: Tensor) -> None:
        """p(x, z) = p(z) p(x | z)."""
        self.pyro_module()
        self.check_shape(x)
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", self.prior())
            pyro.sample("x", self.likelihood(z), obs=x)

    def guide(self, x: Tensor) -> None:
        """q(z | x): the Gaussian encoder's, or the point mass at f(x)."""
        self.pyro_module()
        self.check_shape(x)
        with pyro.plate("data", len(x)):
            pyro.sample("z", self.encoder(x) if self.gaussian_encoder
                        else dist.Delta(self.encoder(x), event_dim=1))

    def discriminator_loss(self, x: Tensor) -> Tensor:
        """D's loss on prior draws (real) and detached codes (fake), per point."""
        fake = self.codes(x).detach()
        real = self.prior.sample(len(x)).to(fake)
        logits = self.discriminator(torch.cat([real, fake]))
        labels = torch.cat([torch.ones(len(x), 1), torch.zeros(len(x), 1)]).to(logits)
        return 2 * binary_cross_entropy_with_logits(logits, labels)

    def generator_loss(self, x: Tensor) -> Tensor:
        """-log p(x | z_q) - w log sigmoid(D(z_q)), the mean per point."""
        z = self.codes(x)
        reconstruction = -self.likelihood(z).log_prob(x).mean()
        fooled = binary_cross_entropy_with_logits(self.discriminator(z), torch.ones_like(z[:, :1]))
        return reconstruction + self.adversarial_weight * fooled

    # ----------------------------------------------------------- conveniences
    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """Codes ``(batch, latent_dim)``: f(x), or the mean of q(z | x)."""
        x = self.prepare(x)
        return self.encoder(x).mean if self.gaussian_encoder else self.encoder(x)

    @torch.no_grad()
    def figures(self, data: Any, num: int | None = None) -> dict[str, FigureSpec]:
        """As :meth:`LatentVariableModel.figures`, without the decoded grid of
        N(0, 1) quantiles (not this prior's)."""
        out = super().figures(data, num)
        out.pop("latent_manifold", None)
        return out


register("aae", AdversarialAutoencoder, summary="adversarial autoencoder: codes matched to a "
         "sampled prior (normal, 2-d Gaussian mixture, swiss roll) by a discriminator; a density "
         "only with a Gaussian encoder", paper="Makhzani, Shlens, Jaitly, Goodfellow & Frey 2015")


class LabelledAdversarialAutoencoder(AdversarialAutoencoder):
    """An adversarial autoencoder whose mixture prior's components are the
    classes (trained with ``labels=N``: the adversarial plan's labelled batches).

    Args:
        input_shape, latent_dim, hidden, likelihood, network, activation,
            encoder, adversarial_weight, discriminator_hidden: as for
            :class:`AdversarialAutoencoder`; the prior is a 2-d mixture of
            ``num_classes`` components (:class:`ppvae.pieces.GaussianMixturePrior`).
        num_classes: the number of classes, one component each.

    The losses take ``(x_l, y_l, x_u)`` (training) or ``(x, y)`` (validation):
    the discriminator sees ``[z, one_hot(y)]`` with y = ``num_classes`` for an
    unlabelled point; real pairs are draws of component y, or of the mixture.
    """

    def __init__(
        self,
        input_shape: int | Sequence[int] = (1, 8, 8),
        num_classes: int = 10,
        hidden: Sequence[int] = (256, 128),
        likelihood: str = "gaussian",
        network: str = "mlp",
        activation: str = "relu",
        encoder: str = "deterministic",
        adversarial_weight: float = 1.0,
        discriminator_hidden: Sequence[int] = (128, 128),
    ) -> None:
        check_num_classes(num_classes)
        super().__init__(input_shape, 2, hidden, likelihood, network, activation, encoder,
                         "mixture", adversarial_weight, discriminator_hidden)
        del self.config["prior"], self.config["latent_dim"]
        self.config["num_classes"] = num_classes
        self.num_classes = num_classes
        self.prior = GaussianMixturePrior(components=num_classes)
        self.discriminator = MLP(2 + num_classes + 1, discriminator_hidden, 1,
                                 activation_name=activation)

    #: validate class labels: integers in 0..C-1, one per data point (as M2's)
    prepare_labels = SSVAE.prepare_labels

    def _labelled(self, x: Tensor, y: Tensor | None, x_u: Tensor | None
                  ) -> tuple[Tensor, Tensor, Tensor]:
        """Every input (labelled first), its code, and its one-hot label slot
        (``num_classes`` for an unlabelled point)."""
        if y is None:
            raise ValueError(f"{type(self).__name__} trains with labels: fit(..., labels=N) "
                             "(--labels N)")
        inputs = x if x_u is None else torch.cat([x, x_u])
        slots = torch.cat([y, torch.full((len(inputs) - len(x),), self.num_classes,
                                         device=y.device)])
        codes = self.codes(inputs)
        return inputs, codes, one_hot(slots, self.num_classes + 1).to(codes)

    def discriminator_loss(self, x: Tensor, y: Tensor | None = None,
                           x_u: Tensor | None = None) -> Tensor:
        """D's loss on labelled prior draws (real: of component y, or of the
        mixture for an unlabelled slot) and labelled codes (fake, detached)."""
        _, codes, slots = self._labelled(x, y, x_u)
        n_u = len(codes) - len(x)
        real = self.prior.sample_components(y)
        if n_u:
            real = torch.cat([real, self.prior.sample(n_u)])
        logits = self.discriminator(torch.cat([torch.cat([real.to(codes), slots], -1),
                                               torch.cat([codes.detach(), slots], -1)]))
        targets = torch.cat([torch.ones(len(codes), 1), torch.zeros(len(codes), 1)]).to(logits)
        return 2 * binary_cross_entropy_with_logits(logits, targets)

    def generator_loss(self, x: Tensor, y: Tensor | None = None,
                       x_u: Tensor | None = None) -> Tensor:
        """Reconstruction of every point plus w times the encoder's
        adversarial term, the mean per point."""
        inputs, codes, slots = self._labelled(x, y, x_u)
        reconstruction = -self.likelihood(codes).log_prob(inputs).mean()
        logits = self.discriminator(torch.cat([codes, slots], -1))
        return reconstruction + self.adversarial_weight * binary_cross_entropy_with_logits(
            logits, torch.ones_like(logits))

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        """The class of the most probable mixture component at the code of x."""
        z = self.encode(x)
        return self.prior.components().log_prob(z.unsqueeze(-2)).argmax(-1)


register("aae-labels", LabelledAdversarialAutoencoder, summary="adversarial autoencoder with "
         "label information in the prior: mixture components tied to classes (train with "
         "labels=N); classifies by the nearest component", paper="Makhzani et al. 2015, Sec. 4")


class CategoricalAdversarialAutoencoder(LatentVariableModel):
    """An adversarial autoencoder with a categorical code and a style code
    (Makhzani et al. 2015, Sec. 5-6): unsupervised clustering, or, trained
    with ``labels=N``, semi-supervised classification.

    Generative model and guide, for each data point i::

        y_i ~ Categorical(1 / K)  as one-hot     z_i ~ N(0, I_s)
        x_i ~ p(x | [y_i, z_i])
        q(y_i | x_i) = delta(y_i - softmax(h_y(x_i)))    (a point on the simplex)
        q(z_i | x_i) = delta(z_i - h_z(x_i))

    One encoder network h outputs K logits and s style values. Two
    discriminators (in one ``nn.ModuleDict``, the adversarial plan's
    ``discriminator``) tell one-hot draws of y from softmax codes and N(0, I)
    draws from style codes; the encoder learns to fool both, which pushes
    q(y | x) towards one-hot vectors used equally often (clusters) and the
    style codes towards N(0, I)::

        discriminators:  sum over v in {y, z} of
                         -log sigmoid(D_v(v_p)) - log(1 - sigmoid(D_v(v_q)))
        the rest:        -log p(x | [y_q, z_q])
                         - w (log sigmoid(D_y(y_q)) + log sigmoid(D_z(z_q)))
                         + alpha CE(h_y(x_l), y_l)   (labelled points only)

    Means over the batch (the cross-entropy over its labelled points). The
    paper alternates three phases with SGD (reconstruction, regularization,
    classification); here the three terms of the rest share one Adam step.
    With labels, ``num_clusters`` must be the number of classes and cluster
    k is class k. A point mass on the simplex is no density (``density`` is
    False); ``sample`` draws one-hot y and N(0, I) style.

    Args:
        input_shape: ``(C, H, W)`` of the images (or ``D``); data flattened.
        num_clusters: K, the categories of y (with labels: the classes).
        style_dim: s, the dimension of the style code z.
        hidden: hidden widths of the encoder (the decoder mirrors them).
        likelihood: ``"gaussian"`` (N(g(y, z), I)), ``"continuous-bernoulli"``
            or ``"bernoulli"`` (binary data).
        network: ``"mlp"`` or ``"conv"``.
        activation: hidden activation of encoder, decoder and discriminators.
        adversarial_weight: w.
        supervised_weight: alpha, the weight of the labelled cross-entropy
            (mean over the labelled points, beside a reconstruction term of
            tens of nats per point: alpha = 1 leaves the labels unheard).
        discriminator_hidden: hidden widths of both discriminators.
    """

    default_plan = "adversarial"
    density = False

    def __init__(
        self,
        input_shape: int | Sequence[int] = (1, 8, 8),
        num_clusters: int = 10,
        style_dim: int = 5,
        hidden: Sequence[int] = (256, 128),
        likelihood: str = "gaussian",
        network: str = "mlp",
        activation: str = "relu",
        adversarial_weight: float = 1.0,
        supervised_weight: float = 10.0,
        discriminator_hidden: Sequence[int] = (128, 128),
    ) -> None:
        if isinstance(num_clusters, bool) or not isinstance(num_clusters, int) \
                or num_clusters < 2:
            raise ValueError(f"num_clusters must be an integer of at least 2, got "
                             f"{num_clusters!r}")
        if style_dim < 1:
            raise ValueError(f"style_dim must be at least 1, got {style_dim}")
        for name, weight in (("adversarial_weight", adversarial_weight),
                             ("supervised_weight", supervised_weight)):
            if not weight >= 0:
                raise ValueError(f"{name} must be >= 0, got {weight}")
        super().__init__(
            dict(input_shape=list(as_shape(input_shape)), num_clusters=num_clusters,
                 style_dim=style_dim, hidden=list(hidden), likelihood=likelihood,
                 network=network, activation=activation,
                 adversarial_weight=adversarial_weight, supervised_weight=supervised_weight,
                 discriminator_hidden=list(discriminator_hidden)),
            input_shape,
        )
        self.num_clusters, self.style_dim = num_clusters, style_dim
        #: the labels' range with ``labels=N`` (:meth:`prepare_labels`)
        self.num_classes = num_clusters
        self.latent_dim = num_clusters + style_dim
        self.adversarial_weight = float(adversarial_weight)
        self.supervised_weight = float(supervised_weight)
        self.encoder = make_encoder(network, self.input_shape, self.latent_dim, hidden,
                                    activation_name=activation)
        decoder = make_decoder(network, self.latent_dim, self.input_shape, hidden,
                               activation_name=activation)
        self.likelihood = make_likelihood(likelihood, decoder, self.input_dim, gaussian_scale=1.0)
        self.style_prior = make_prior("normal", style_dim)
        self.register_buffer("cluster_logits", torch.zeros(num_clusters))
        #: D_y on the simplex and D_z on style codes: logits of "a prior draw"
        self.discriminator = nn.ModuleDict({
            "y": MLP(num_clusters, discriminator_hidden, 1, activation_name=activation),
            "z": MLP(style_dim, discriminator_hidden, 1, activation_name=activation),
        })

    #: validate class labels: integers in 0..K-1, one per data point (as M2's)
    prepare_labels = SSVAE.prepare_labels

    def heads(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The cluster logits h_y(x) ``(batch, K)`` and style codes h_z(x)."""
        h = self.encoder(x)
        return h[..., :self.num_clusters], h[..., self.num_clusters:]

    def prior_sample(self, n: int) -> tuple[Tensor, Tensor]:
        """n one-hot draws of y and n N(0, I) draws of z (the discriminators' reals)."""
        y = dist.OneHotCategorical(logits=self.cluster_logits).sample((n,))
        return y, self.style_prior.sample(n).to(y)

    def model(self, x: Tensor) -> None:
        """p(x, y, z) = p(y) p(z) p(x | [y, z])."""
        self.pyro_module()
        self.check_shape(x)
        with pyro.plate("data", len(x)):
            y = pyro.sample("y", dist.OneHotCategorical(logits=self.cluster_logits))
            z = pyro.sample("z", self.style_prior())
            pyro.sample("x", self.likelihood(torch.cat([y, z], -1)), obs=x)

    def guide(self, x: Tensor) -> None:
        """Point masses at softmax(h_y(x)) and h_z(x)."""
        self.pyro_module()
        self.check_shape(x)
        logits, style = self.heads(x)
        with pyro.plate("data", len(x)):
            pyro.sample("y", dist.Delta(logits.softmax(-1), event_dim=1))
            pyro.sample("z", dist.Delta(style, event_dim=1))

    def _inputs(self, x: Tensor, y: Tensor | None, x_u: Tensor | None) -> Tensor:
        """Every input of a batch: ``x`` (labelled first) and ``x_u``."""
        if y is None and x_u is not None:
            raise ValueError("unlabelled points x_u come with labelled ones (x, y)")
        return x if x_u is None else torch.cat([x, x_u])

    def discriminator_loss(self, x: Tensor, y: Tensor | None = None,
                           x_u: Tensor | None = None) -> Tensor:
        """Both discriminators' losses on prior draws (real) and detached
        codes (fake), per point."""
        logits, style = (h.detach() for h in self.heads(self._inputs(x, y, x_u)))
        real_y, real_z = self.prior_sample(len(logits))
        targets = torch.cat([torch.ones(len(logits), 1), torch.zeros(len(logits), 1)]
                            ).to(logits)
        loss_y = binary_cross_entropy_with_logits(
            self.discriminator["y"](torch.cat([real_y, logits.softmax(-1)])), targets)
        loss_z = binary_cross_entropy_with_logits(
            self.discriminator["z"](torch.cat([real_z, style])), targets)
        return 2 * (loss_y + loss_z)

    def generator_loss(self, x: Tensor, y: Tensor | None = None,
                       x_u: Tensor | None = None) -> Tensor:
        """Reconstruction plus w times both adversarial terms, plus alpha
        times the labelled points' cross-entropy; means per point."""
        inputs = self._inputs(x, y, x_u)
        logits, style = self.heads(inputs)
        probs = logits.softmax(-1)
        reconstruction = -self.likelihood(torch.cat([probs, style], -1)).log_prob(inputs).mean()
        fooled = sum(binary_cross_entropy_with_logits(d, torch.ones_like(d)) for d in
                     (self.discriminator["y"](probs), self.discriminator["z"](style)))
        loss = reconstruction + self.adversarial_weight * fooled
        if y is not None:
            loss = loss + self.supervised_weight * cross_entropy(logits[:len(y)], y)
        return loss

    # ----------------------------------------------------------- conveniences
    @torch.no_grad()
    def cluster_probs(self, x: Tensor) -> Tensor:
        """q(y | x): softmax(h_y(x)), ``(batch, K)``."""
        return self.heads(self.prepare(x))[0].softmax(-1)

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        """The most probable cluster of each point (its class, with labels)."""
        return self.cluster_probs(x).argmax(-1)

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """Codes ``(batch, K + s)``: [softmax(h_y(x)), h_z(x)]."""
        logits, style = self.heads(self.prepare(x))
        return torch.cat([logits.softmax(-1), style], -1)

    def prior_codes(self, num_samples: int) -> Tensor:
        """[y, z]: one-hot y ~ p(y) and z ~ N(0, I) (what :meth:`sample` decodes)."""
        return torch.cat(self.prior_sample(num_samples), -1)

    @torch.no_grad()
    def figures(self, data: Any, num: int | None = None) -> dict[str, FigureSpec]:
        """As :meth:`LatentVariableModel.figures`, without the decoded grid of
        N(0, 1) quantiles (the code is not a 2-d Gaussian)."""
        out = super().figures(data, num)
        out.pop("latent_manifold", None)
        return out


register("aae-clusters", CategoricalAdversarialAutoencoder, summary="adversarial autoencoder "
         "with a categorical and a style code, each matched to its prior by a discriminator: "
         "unsupervised clustering, or semi-supervised with labels=N",
         paper="Makhzani et al. 2015, Sec. 5-6")
