"""The M2 training objective on mixed batches (Kingma et al. 2014, Eq. 9).

For labelled points (x, y) and unlabelled points x,

    J = w * sum_l [ELBO(x_l, y_l) + alpha * log q(y_l | x_l)] + sum_u ELBO(x_u),

where ELBO(x, y) = E_q(z|x,y)[log p(x, y, z) - log q(z | x, y)] and
ELBO(x) = sum_y q(y|x) [ELBO(x, y) - log q(y | x)] is computed by enumerating
y exactly (Pyro's ``TraceEnum_ELBO``); alpha weights the classification term
that gives q(y | x) a signal from the labels.

w weighs a labelled point of the batch against an unlabelled one. The
paper's objective is a sum over the training set, every image once; a batch
of n_l of the N_l labelled and n_u of the N_u unlabelled images estimates it
(up to the factor N_u / n_u) with w = (N_l / n_l) / (N_u / n_u), which is
much less than 1 when labels are few (``fit(..., labelled_weight="dataset")``).
With w = 1 every point of a batch counts alike, so the few labelled images,
cycled in every batch, count far more than their share. In the paper's
weighting, alpha = 0.1 N in front of the mean over labelled points (N
training images) is alpha = 0.1 N / N_l per labelled point, as here.
"""

from __future__ import annotations

import torch
from pyro.infer import Trace_ELBO, TraceEnum_ELBO
from torch import Tensor


class SemiSupervisedELBO:
    """Negative M2 objective per data point of a batch ``(x_l, y_l, x_u)``.

    Args:
        alpha: weight of the auxiliary classification term.
        num_particles: samples of z per data point (and value of y).
        labelled_weight: w, the weight of a labelled point's terms (module
            doc). The loss is divided by the batch's weighted size
            n_u + w n_l, so it is per data point whatever w.
    """

    def __init__(self, alpha: float = 50.0, num_particles: int = 1,
                 labelled_weight: float = 1.0) -> None:
        if alpha < 0:
            raise ValueError(f"alpha must be non-negative, got {alpha}")
        if not labelled_weight > 0:
            raise ValueError(f"labelled_weight must be positive, got {labelled_weight}")
        kw = dict(num_particles=num_particles, vectorize_particles=num_particles > 1,
                  max_plate_nesting=1)
        self.alpha = alpha
        self.labelled_weight = labelled_weight
        self.labelled = Trace_ELBO(**kw)
        self.unlabelled = TraceEnum_ELBO(**kw)

    def __call__(self, model, batch: tuple[Tensor, Tensor, Tensor], beta: float) -> Tensor:
        x_l, y_l, x_u = batch
        w = self.labelled_weight
        loss = self.unlabelled.differentiable_loss(model.model, model.guide, x_u, beta=beta)
        if len(x_l):
            labelled = self.labelled.differentiable_loss(model.model, model.guide, x_l, y_l,
                                                         beta=beta)
            labelled = labelled - self.alpha * model.classifier_log_prob(x_l, y_l).sum()
            loss = loss + (labelled if w == 1 else w * labelled)
        return loss / (len(x_u) + w * len(x_l))

    @staticmethod
    def num_points(batch: tuple[Tensor, ...]) -> int:
        """Data points in a training batch ``(x_l, y_l, x_u)`` (labelled plus
        unlabelled) or a validation batch ``(x, y)``."""
        return len(batch[0]) + (len(batch[2]) if len(batch) == 3 else 0)

    def validate(self, model, batch: tuple[Tensor, Tensor]) -> dict[str, Tensor]:
        """Validation ELBO of unlabelled x (y summed out) and accuracy of q(y | x)."""
        x, y = batch
        elbo = torch.tensor(-self.unlabelled.loss(model.model, model.guide, x, beta=1.0) / len(x))
        accuracy = (model.classifier(x).argmax(-1) == y).to(torch.float32).mean()
        return {"val_elbo": elbo, "val_accuracy": accuracy}
