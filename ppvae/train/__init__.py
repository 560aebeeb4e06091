"""Training: a Lightning module around a Pyro loss, and :func:`fit`."""

from ppvae.train.fit import fit
from ppvae.train.history import History
from ppvae.train.module import SVIModule, TrainingDiverged

__all__ = ["History", "SVIModule", "TrainingDiverged", "fit"]
