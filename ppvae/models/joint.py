"""A semi-supervised autoencoder trained by a joint loss: the reconstruction
of all the data plus a classification loss on the labelled part, through one
encoder (Ranzato & Szummer 2008, "Semi-supervised learning of compact
document representations with deep networks"; the supervised cost plus a
reconstruction cost of Rasmus, Valpola, Honkala, Berglund & Raiko 2015,
"Semi-supervised learning with ladder networks", in its simplest form: one
reconstruction term, at the input, without noise or lateral connections).

The model and guide are the plain autoencoder's
(:class:`~ppvae.models.autoencoder.Autoencoder`: a flat prior, p(x | z), a
point mass at the code f(x); not a density of x). Beside them, a classifier
head h on the code gives class probabilities of y given x::

    p(y | x) = Categorical(softmax(h(f(x))))

a conditional model of the labels, not of x: its negative log-likelihood
(the cross-entropy of the labelled points), weighted by alpha, is added to
the reconstruction loss by the training plan (:class:`ppvae.train.JointPlan`),
and stays out of ``model``, so the pair remains the autoencoder's and is
evaluated by its reconstruction error.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ppvae.models.autoencoder import Autoencoder
from ppvae.models.base import check_num_classes
from ppvae.models.registry import register
from ppvae.models.ssvae import SSVAE
from ppvae.nn import MLP


class JointAutoencoder(Autoencoder):
    """An autoencoder with a classifier on its code, trained by
    reconstruction plus alpha times the labelled points' cross-entropy
    (``"joint"`` plan; ``fit(..., labels=N)``).

    Args:
        input_shape: ``(C, H, W)`` of the images, or ``D`` for flat vectors.
        num_classes: number of classes of y.
        latent_dim, hidden, likelihood, network, activation, code_activation:
            as for :class:`~ppvae.models.autoencoder.Autoencoder`.
        classifier_hidden: hidden widths of the classifier head on the code
            (empty: a linear layer, multinomial logistic regression on z).
    """

    default_plan = "joint"

    def __init__(
        self,
        input_shape: int | Sequence[int] = (1, 8, 8),
        num_classes: int = 10,
        latent_dim: int = 8,
        hidden: Sequence[int] = (256, 128),
        likelihood: str = "gaussian",
        network: str = "mlp",
        activation: str = "relu",
        code_activation: str | None = None,
        classifier_hidden: Sequence[int] = (),
    ) -> None:
        check_num_classes(num_classes)
        classifier_hidden = list(classifier_hidden)
        if any(isinstance(s, bool) or not isinstance(s, int) or s < 1
               for s in classifier_hidden):
            raise ValueError(f"classifier_hidden must be positive integer widths, got "
                             f"{classifier_hidden!r}")
        super().__init__(input_shape, latent_dim, hidden, likelihood, network, activation,
                         code_activation)
        self.config.update(num_classes=num_classes, classifier_hidden=classifier_hidden)
        self.num_classes = num_classes
        #: h: code -> class logits
        self.head = MLP(latent_dim, classifier_hidden, num_classes, activation_name=activation)

    def classifier(self, x: Tensor) -> Tensor:
        """Class logits h(f(x)) of a batch ``(batch, D)``, differentiable."""
        return self.head(self.code(x))

    #: validate class labels: integers in 0..C-1, one per data point (as M2's)
    prepare_labels = SSVAE.prepare_labels

    @torch.no_grad()
    def predict_proba(self, x: Tensor) -> Tensor:
        """p(y | x) for a batch: ``(batch, num_classes)`` probabilities."""
        return torch.softmax(self.classifier(self.prepare(x)), -1)

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        """The most probable class under p(y | x)."""
        return self.predict_proba(x).argmax(-1)


register("joint-ae", JointAutoencoder, summary="autoencoder with a classifier on its code: "
         "reconstruction plus labelled cross-entropy (train with labels=N); not a density",
         paper="Ranzato & Szummer 2008; Rasmus et al. 2015")
