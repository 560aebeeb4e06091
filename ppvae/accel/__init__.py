"""The speed seam: pure-torch twins of the objectives and log weights of
ppvae's models with one latent or a chain of latents, proven equal to the
Pyro path by tests.

A model whose ``model``/``guide`` draw one latent site ``z`` (the VAE family:
:class:`ppvae.models.VAE`, :class:`ppvae.models.CVAE`,
:class:`ppvae.models.LinearGaussian`) or a chain z1 -> z2 -> ...
(:class:`ppvae.models.TwoLayerVAE`) declares the pieces of a batch with
``accel_parts(*args, **kwargs) -> LatentParts``. The twins compute what Pyro
computes from the traces of that pair (the ELBO of ``Trace_ELBO``, the
closed-form-KL ELBO of ``TraceMeanField_ELBO``, the per-datapoint IWAE bound
with or without DReG, the importance log weights of
:func:`ppvae.infer.log_likelihood`) directly from the same distributions, with
the same random draws in the same order, without Pyro's handlers.

:func:`twin_parts` decides whether a twin may stand in for a pair; the
trainer and the estimator use it unless told not to (``accel=False``). A
user's own pair always takes the Pyro path.

This package imports torch and the pieces' distributions only; nothing in
ppvae needs it for correctness.
"""

from ppvae.accel.twins import (
    LatentLayer,
    LatentParts,
    LogWeights,
    analytic_elbo_loss,
    elbo_loss,
    iwae_loss,
    log_weights,
    twin_parts,
)

__all__ = ["LatentLayer", "LatentParts", "LogWeights", "analytic_elbo_loss", "elbo_loss", "iwae_loss", "log_weights",
           "twin_parts"]
