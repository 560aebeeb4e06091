"""Inference: objectives and estimators that work on any Pyro model/guide pair
whose data points sit in a ``pyro.plate("data")``."""

from ppvae.infer.active_units import ActiveUnits, active_units
from ppvae.infer.arviz_bridge import to_inference_data
from ppvae.infer.elbo import evaluate_elbo
from ppvae.infer.gaps import InferenceGaps, elbo_per_datapoint, inference_gaps
from ppvae.infer.iwae import IWAE
from ppvae.infer.local_gaussian import LocalGaussian, fit_local_gaussian
from ppvae.infer.loglik import LogLikelihood, log_likelihood
from ppvae.infer.mcmc import compare_posteriors, nuts_posterior
from ppvae.infer.objectives import OBJECTIVES, make_objective
from ppvae.infer.psis import pareto_khat
from ppvae.infer.reconstruction import Reconstruction, reconstruction_error
from ppvae.infer.semisupervised import SemiSupervisedELBO

__all__ = ["IWAE", "OBJECTIVES", "ActiveUnits", "InferenceGaps", "LocalGaussian", "LogLikelihood",
           "Reconstruction", "SemiSupervisedELBO", "active_units", "compare_posteriors",
           "elbo_per_datapoint", "evaluate_elbo", "fit_local_gaussian", "inference_gaps",
           "log_likelihood", "make_objective", "nuts_posterior", "pareto_khat",
           "reconstruction_error", "to_inference_data"]
