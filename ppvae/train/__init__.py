"""Training: :func:`fit` runs a model's training plan (:mod:`ppvae.train.plans`)
on Lightning; :mod:`ppvae.train.contract` says what it asks of a model."""

from ppvae.train.fit import evaluate, fit
from ppvae.train.history import History
from ppvae.train.plans import (
    PLANS,
    AdversarialPlan,
    ELBOPlan,
    JointPlan,
    LayerwisePlan,
    ReconstructionPlan,
    RWSPlan,
    SemiSupervisedPlan,
    TrainingDiverged,
    TrainingPlan,
    make_plan,
)

__all__ = ["PLANS", "AdversarialPlan", "ELBOPlan", "History", "JointPlan", "LayerwisePlan",
           "RWSPlan", "ReconstructionPlan", "SemiSupervisedPlan", "TrainingDiverged",
           "TrainingPlan", "evaluate", "fit", "make_plan"]
