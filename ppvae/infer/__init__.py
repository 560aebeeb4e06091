"""Inference: objectives and estimators that work on any model/guide pair with
a ``"data"`` plate."""

from ppvae.infer.elbo import LOSSES, evaluate_elbo, make_loss

__all__ = ["LOSSES", "evaluate_elbo", "make_loss"]
