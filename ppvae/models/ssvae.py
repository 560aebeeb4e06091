"""The semi-supervised VAE "M2" of Kingma, Rezende, Mohamed & Welling (2014),
"Semi-supervised learning with deep generative models".

Generative model and guide, for each data point::

    y ~ p(y) = Categorical(1/C)          z ~ p(z) = N(0, I)
    x ~ p(x | y, z)                      (the VAE's observation models, y as context)
    q(y | x) = Categorical(classifier(x))
    q(z | x, y) = N(mu(x, y), diag sigma(x, y)^2)

A labelled point observes y; for an unlabelled point the guide marks y for
parallel enumeration, so ``TraceEnum_ELBO`` sums over its C values exactly
(sampling y instead is known to train poorly). Training adds the auxiliary
classification term alpha * log q(y | x) on labelled points, as in the paper
(see :class:`ppvae.infer.SemiSupervisedELBO`). ``predict`` / ``predict_proba``
classify with q(y | x).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from torch import Tensor
from torch.nn.functional import one_hot

from ppvae.models.base import LatentVariableModel, as_shape, check_latent_settings
from ppvae.models.registry import register
from ppvae.nn import make_decoder, make_encoder
from ppvae.pieces import DiagonalGaussian, StandardNormalPrior, make_likelihood


class SSVAE(LatentVariableModel):
    """M2 as a Pyro model/guide pair.

    Args:
        input_shape: ``(C, H, W)`` of the images, or ``D`` for flat vectors
            (e.g. the latent means of a VAE, for M1+M2).
        num_classes: number of classes of y.
        latent_dim, hidden, likelihood, network, activation, beta: as for
            :class:`ppvae.models.VAE`; the encoder and decoder also take y.
        classifier_hidden: hidden widths of q(y | x) (default: ``hidden``).

    ``model(x, y=None, beta=None)`` and ``guide(x, y=None, beta=None)``: with
    ``y`` the batch is labelled, without it y is enumerated.
    """

    default_plan = "semi-supervised"

    def __init__(
        self,
        input_shape: int | Sequence[int] = (1, 8, 8),
        num_classes: int = 10,
        latent_dim: int = 8,
        hidden: Sequence[int] = (256, 128),
        likelihood: str = "bernoulli",
        network: str = "mlp",
        activation: str = "relu",
        beta: float = 1.0,
        classifier_hidden: Sequence[int] | None = None,
    ) -> None:
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        check_latent_settings(latent_dim, beta)
        classifier_hidden = list(hidden if classifier_hidden is None else classifier_hidden)
        super().__init__(
            dict(input_shape=list(as_shape(input_shape)), num_classes=num_classes,
                 latent_dim=latent_dim, hidden=list(hidden), likelihood=likelihood,
                 network=network, activation=activation, beta=beta,
                 classifier_hidden=classifier_hidden),
            input_shape,
        )
        self.num_classes = num_classes
        self.latent_dim = latent_dim
        self.beta = beta
        self.prior = StandardNormalPrior(latent_dim)
        self.register_buffer("class_logits", torch.zeros(num_classes))
        self.classifier = make_encoder(network, self.input_shape, num_classes, classifier_hidden,
                                       activation_name=activation)
        self.encoder = DiagonalGaussian(
            make_encoder(network, self.input_shape, 2 * latent_dim, hidden,
                         context_features=num_classes, activation_name=activation),
            latent_dim,
        )
        self.likelihood = make_likelihood(
            likelihood,
            make_decoder(network, latent_dim, self.input_shape, hidden,
                         context_features=num_classes, activation_name=activation),
            self.input_dim,
        )

    def _one_hot(self, y: Tensor) -> Tensor:
        return one_hot(y, self.num_classes).to(self.class_logits.dtype)

    def model(self, x: Tensor, y: Tensor | None = None, beta: float | None = None) -> None:
        """p(x, y, z) = p(y) p(z) p(x | y, z); y observed when given."""
        self.pyro_module()
        self.check_shape(x)
        with pyro.plate("data", x.shape[0], dim=-1):
            y = pyro.sample("y", dist.Categorical(logits=self.class_logits), obs=y)
            with poutine.scale(scale=self.beta if beta is None else beta):
                z = pyro.sample("z", self.prior())
            pyro.sample("x", self.likelihood(z, self._one_hot(y)), obs=x)

    def guide(self, x: Tensor, y: Tensor | None = None, beta: float | None = None) -> None:
        """q(y | x) q(z | x, y); y is enumerated (not sampled) when not given."""
        self.pyro_module()
        self.check_shape(x)
        with pyro.plate("data", x.shape[0], dim=-1):
            if y is None:
                y = pyro.sample("y", dist.Categorical(logits=self.classifier(x)),
                                infer={"enumerate": "parallel"})
            with poutine.scale(scale=self.beta if beta is None else beta):
                pyro.sample("z", self.encoder(x, self._one_hot(y)))

    # ----------------------------------------------------------------- labels
    def prepare_labels(self, y: Tensor | np.ndarray, num: int, *, name: str = "y") -> Tensor:
        """Validate class labels: integers in 0..C-1, one per data point."""
        y = torch.as_tensor(y)
        if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
            raise ValueError(f"{name} must hold integer class labels, got dtype {y.dtype}")
        if y.shape != (num,):
            raise ValueError(f"{name} must have shape ({num},), one label per data point, "
                             f"got {tuple(y.shape)}")
        if num and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
            raise ValueError(f"{name} must lie in 0..{self.num_classes - 1}, got values from "
                             f"{int(y.min())} to {int(y.max())}")
        return y.to(device=self.device, dtype=torch.long)

    # ----------------------------------------------------------- classifier
    def classifier_log_prob(self, x: Tensor, y: Tensor) -> Tensor:
        """log q(y | x) per data point (the auxiliary term's summand)."""
        return dist.Categorical(logits=self.classifier(x)).log_prob(y)

    @torch.no_grad()
    def predict_proba(self, x: Tensor) -> Tensor:
        """q(y | x) for a batch: ``(batch, num_classes)`` probabilities."""
        return torch.softmax(self.classifier(self.prepare(x)), -1)

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        """The most probable class under q(y | x)."""
        return self.predict_proba(x).argmax(-1)

    # ----------------------------------------------------------- conveniences
    def _labels_or_predicted(self, x: Tensor, y: Tensor | None) -> Tensor:
        return self.predict(x) if y is None else self.prepare_labels(y, len(x))

    @torch.no_grad()
    def encode(self, x: Tensor, y: Tensor | None = None, *, sample: bool = False) -> Tensor:
        """Latent codes from q(z | x, y), with y predicted by q(y | x) if not given."""
        x = self.prepare(x)
        q = self.encoder(x, self._one_hot(self._labels_or_predicted(x, y)))
        return q.sample() if sample else q.mean

    @torch.no_grad()
    def decode(self, z: Tensor, y: Tensor) -> Tensor:
        """E[x | y, z]: flattened images."""
        z = torch.as_tensor(z, dtype=torch.float32, device=self.device)
        return self.likelihood.mean(z, self._one_hot(self.prepare_labels(y, len(z))))

    @torch.no_grad()
    def reconstruct(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """E[x | y, z = mean of q(z | x, y)], y predicted if not given."""
        x = self.prepare(x)
        y = self._labels_or_predicted(x, y)
        return self.decode(self.encode(x, y), y)

    @torch.no_grad()
    def sample(self, num_samples: int, y: Tensor | int | None = None, *, mean: bool = True
               ) -> Tensor:
        """Class-conditional samples: z ~ p(z), y given (an int for one class)
        or drawn from p(y); returns E[x | y, z] or a draw of x."""
        if num_samples < 1:
            raise ValueError(f"num_samples must be at least 1, got {num_samples}")
        if y is None:
            y = dist.Categorical(logits=self.class_logits).sample((num_samples,))
        elif isinstance(y, int):
            y = torch.full((num_samples,), y)
        y = self._one_hot(self.prepare_labels(y, num_samples))
        z = self.prior().sample((num_samples,))
        return self.likelihood.mean(z, y) if mean else self.likelihood(z, y).sample()


register("ssvae", SSVAE, summary="M2: semi-supervised VAE, y enumerated for unlabelled data "
         "(train with --labels N)", paper="Kingma, Rezende, Mohamed & Welling 2014")
