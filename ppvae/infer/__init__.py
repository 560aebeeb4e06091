"""Inference: objectives and estimators that work on any Pyro model/guide pair
whose data points sit in a ``pyro.plate("data")``."""

from ppvae.infer.arviz_bridge import to_inference_data
from ppvae.infer.elbo import evaluate_elbo
from ppvae.infer.iwae import IWAE
from ppvae.infer.loglik import LogLikelihood, log_likelihood
from ppvae.infer.mcmc import compare_posteriors, nuts_posterior
from ppvae.infer.objectives import OBJECTIVES, PairLoss, make_objective, training_loss
from ppvae.infer.semisupervised import SemiSupervisedELBO

__all__ = ["IWAE", "OBJECTIVES", "LogLikelihood", "PairLoss", "SemiSupervisedELBO",
           "compare_posteriors", "evaluate_elbo", "log_likelihood", "make_objective",
           "nuts_posterior", "to_inference_data", "training_loss"]
