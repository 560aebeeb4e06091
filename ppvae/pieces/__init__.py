"""Generative pieces shared by all models: priors p(z), observation models
p(x | z[, y]) and amortized diagonal-Gaussian posteriors q(z | x[, y])."""

from ppvae.pieces.detach import detach_distribution
from ppvae.pieces.likelihoods import (
    LIKELIHOODS,
    BernoulliLikelihood,
    ContinuousBernoulliLikelihood,
    GaussianLikelihood,
    ObservationModel,
    check_support,
    make_likelihood,
)
from ppvae.pieces.posteriors import DiagonalGaussian
from ppvae.pieces.priors import StandardNormalPrior

__all__ = [
    "LIKELIHOODS",
    "BernoulliLikelihood",
    "ContinuousBernoulliLikelihood",
    "DiagonalGaussian",
    "GaussianLikelihood",
    "ObservationModel",
    "StandardNormalPrior",
    "check_support",
    "detach_distribution",
    "make_likelihood",
]
