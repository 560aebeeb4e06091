"""Generative pieces shared by all models: priors p(z) (fixed or learned),
observation models p(x | z[, y]), amortized posteriors q(z | x[, y])
(diagonal Gaussians, inverse autoregressive flows) and the corruption
processes of denoising models."""

from ppvae.pieces.corruption import NOISES, Corruption
from ppvae.pieces.detach import detach_distribution
from ppvae.pieces.flows import IAFPosterior
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
from ppvae.pieces.priors import (
    PRIORS,
    DiagonalGaussianMixture,
    FlatPrior,
    GaussianMixturePrior,
    LaplacePrior,
    LearnedMixturePrior,
    StandardNormalPrior,
    SwissRollPrior,
    VampPrior,
    make_prior,
)

__all__ = [
    "LIKELIHOODS",
    "NOISES",
    "PRIORS",
    "BernoulliLikelihood",
    "ContinuousBernoulliLikelihood",
    "Corruption",
    "DiagonalGaussian",
    "DiagonalGaussianMixture",
    "FlatPrior",
    "GaussianLikelihood",
    "GaussianMixturePrior",
    "IAFPosterior",
    "LaplacePrior",
    "LearnedMixturePrior",
    "ObservationModel",
    "StandardNormalPrior",
    "SwissRollPrior",
    "VampPrior",
    "check_support",
    "detach_distribution",
    "make_likelihood",
    "make_prior",
]
