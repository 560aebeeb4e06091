"""Training objectives by name.

- ``"elbo"``: the ELBO, Monte Carlo estimate (Pyro's ``Trace_ELBO``, computed
  by :class:`ppvae.infer.lean_elbo.LeanTrace_ELBO` where that is the same);
- ``"elbo-analytic"``: the same bound with the closed-form KL(q || p) where the
  pair allows it (Pyro's ``TraceMeanField_ELBO``), a lower-variance estimate;
- ``"iwae"``: the per-datapoint importance-weighted bound with K =
  ``num_particles`` (:class:`ppvae.infer.iwae.IWAE`), optionally with DReG.
"""

from __future__ import annotations

from typing import Any

from pyro.infer import TraceMeanField_ELBO
from torch import Tensor

from ppvae.infer.iwae import IWAE
from ppvae.infer.lean_elbo import LeanTrace_ELBO
from ppvae.infer.semisupervised import SemiSupervisedELBO

OBJECTIVES = ("elbo", "elbo-analytic", "iwae")


def make_objective(name: str = "elbo", num_particles: int = 1, *, dreg: bool = False) -> Any:
    """The objective ``name`` (one of :data:`OBJECTIVES`) with ``num_particles``
    vectorized samples per data point; ``dreg`` applies to ``"iwae"`` only."""
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; choose one of {list(OBJECTIVES)}")
    if num_particles < 1:
        raise ValueError(f"num_particles must be at least 1, got {num_particles}")
    if dreg and name != "iwae":
        raise ValueError("dreg (doubly-reparameterized gradients) applies to objective='iwae' only")
    if name == "iwae":
        return IWAE(num_particles, dreg=dreg)
    cls = LeanTrace_ELBO if name == "elbo" else TraceMeanField_ELBO
    return cls(num_particles=num_particles, vectorize_particles=num_particles > 1,
               max_plate_nesting=1)


class PairLoss:
    """A Pyro objective applied to a model's ``model``/``guide`` on a batch
    ``(x, *others)``, per data point; validation reports the ELBO."""

    def __init__(self, objective: Any) -> None:
        self.objective = objective
        self.elbo = make_objective("elbo")

    def __call__(self, model: Any, batch: tuple[Tensor, ...], beta: float) -> Tensor:
        return self.objective.differentiable_loss(model.model, model.guide, *batch,
                                                  beta=beta) / len(batch[0])

    def validate(self, model: Any, batch: tuple[Tensor, ...]) -> dict[str, Tensor]:
        loss = self.elbo.differentiable_loss(model.model, model.guide, *batch, beta=1.0)
        return {"val_elbo": -loss / len(batch[0])}

    @staticmethod
    def num_points(batch: tuple[Tensor, ...]) -> int:
        """Data points in a batch ``(x, *others)``: the rows of x (a condition
        or label tensor beside it describes the same points)."""
        return len(batch[0])


def training_loss(model: Any, objective: str = "elbo", num_particles: int = 1, *,
                  dreg: bool = False, alpha: float = 50.0, labelled_weight: float = 1.0) -> Any:
    """The loss ppvae's trainer minimizes for ``model``: a callable
    ``(model, batch, beta) -> negative objective per data point`` with a
    ``validate(model, batch)`` method returning validation metrics.

    Semi-supervised models (``model.semi_supervised``) train on batches
    ``(x_l, y_l, x_u)`` with :class:`SemiSupervisedELBO` (objective "elbo"
    only; ``alpha`` and ``labelled_weight`` are its settings); the others on
    ``(x,)`` with the named objective.
    """
    if getattr(model, "semi_supervised", False):
        if objective != "elbo" or dreg:
            raise ValueError("semi-supervised models train with objective='elbo' only")
        return SemiSupervisedELBO(alpha, num_particles, labelled_weight)
    return PairLoss(make_objective(objective, num_particles, dreg=dreg))
