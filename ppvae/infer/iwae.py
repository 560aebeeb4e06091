"""The importance-weighted autoencoder objective, per data point.

    IWAE_K = sum_i log (1/K) sum_k w_{k,i},   w_{k,i} = p(x_i, z_{k,i}) / q(z_{k,i} | x_i)

(Burda, Grosse & Salakhutdinov 2016). Each data point gets its own
log-mean-exp over its K particles, not one over the batch's joint weight (a far
looser bound on the batch's joint likelihood). Pyro's ``RenyiELBO(alpha=0)``
gives the same value when every site lies in the data plate (it keeps plates
shared by all sites), but it weights sites by their ``scale`` and has no DReG;
this class ignores scales, refuses sites outside the data plate, and offers
DReG.

With ``dreg=True`` the guide's gradient is the doubly-reparameterized
estimator of Tucker, Lawson, Gu & Maddison (2019), "Doubly reparameterized
gradient estimators for Monte Carlo objectives":

    grad_phi = sum_i sum_k wt_{k,i}^2 d log w_{k,i} / d z_{k,i} * d z_{k,i} / d phi,

with wt the normalized weights and log q scored with its parameters held fixed
(the path derivative only). Holding q's parameters fixed is right only where
no guide latent's distribution depends on another latent's value: for a
guide with q(z2 | z1), cutting z2's parameters from the graph would also cut
the path from z1 through them, and the gradient would be biased. Such guides
are refused with ``dreg=True``. It has lower variance than the standard IWAE
gradient, whose signal-to-noise ratio for the guide decays as K grows
(Rainforth et al. 2018). The model's gradient is the standard one,
sum_k wt_k grad_theta log p(x, z_k), in both cases.

Scale factors (beta, KL warm-up) do not apply: the bound is of log p(x).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from pyro.poutine.trace_struct import Trace
from pyro.poutine.util import site_is_subsample
from torch import Tensor

from ppvae.infer.importance import max_plate_nesting, per_datapoint_log_weights


class _ScaleGrad(torch.autograd.Function):
    """Identity whose backward multiplies the gradient by ``holder["weight"]``,
    which is filled in after the forward pass (the normalized weights)."""

    @staticmethod
    def forward(ctx: Any, value: Tensor, holder: dict, shape: tuple[int, ...]) -> Tensor:
        ctx.holder, ctx.shape = holder, shape
        return value.view_as(value)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None]:
        return grad * ctx.holder["weight"].reshape(ctx.shape), None, None


def _parameters(fn: Any) -> list[Tensor]:
    """The parameter tensors of a distribution (under its wrappers)."""
    while hasattr(fn, "base_dist"):
        fn = fn.base_dist
    return [getattr(fn, name) for name in getattr(fn, "arg_constraints", {})
            if name in vars(fn) and isinstance(getattr(fn, name), Tensor)]


def _refuse_dependent_latents(latents: list[tuple[str, Any, Tensor]]) -> None:
    """Raise ``ValueError`` if the distribution of a guide latent depends on
    the value of an earlier one: ``latents`` are (name, distribution, value)
    in the guide's order, and a dependence shows as a gradient of the
    distribution's parameters with respect to that value."""
    for j, (name, fn, _) in enumerate(latents):
        params = [p for p in _parameters(fn) if p.requires_grad]
        earlier = [(n, v) for n, _, v in latents[:j] if v.requires_grad]
        if not params or not earlier:
            continue
        grads = torch.autograd.grad([p.sum() for p in params], [v for _, v in earlier],
                                    retain_graph=True, allow_unused=True)
        for (other, _), grad in zip(earlier, grads):
            if grad is not None:
                raise ValueError(
                    f"dreg=True needs guide latents whose distributions do not depend on each "
                    f"other, but {name!r} depends on {other!r}: the doubly-reparameterized "
                    "gradient would be biased here; use dreg=False")


class IWAE:
    """Negative IWAE bound, summed over the data points of a batch.

    Offers what Pyro's ELBOs offer: ``loss(model, guide, *args)`` (a float),
    ``differentiable_loss(...)`` (a tensor to back-propagate),
    ``loss_and_grads(...)``; calling it is ``differentiable_loss``, so
    ``pyro.infer.SVI(model, guide, optim, IWAE(K))`` works, and so does ppvae's
    trainer (``fit(..., objective="iwae", num_particles=K)``).

    Args:
        num_particles: K, importance samples per data point.
        dreg: use the doubly-reparameterized gradient for the guide.
        data_plate: name of the plate over data points.
    """

    def __init__(self, num_particles: int = 5, *, dreg: bool = False, data_plate: str = "data") -> None:
        if num_particles < 1:
            raise ValueError(f"num_particles must be at least 1, got {num_particles}")
        self.num_particles = num_particles
        self.dreg = dreg
        self.data_plate = data_plate
        self._nesting: int | None = None

    def _log_weights(self, model: Callable, guide: Callable, args: tuple, kwargs: dict
                     ) -> tuple[Tensor, dict]:
        if self._nesting is None:
            self._nesting = max_plate_nesting(model, guide, *args, **kwargs)
        holder: dict = {}
        rank = self._nesting + 2  # as in per_datapoint_log_weights: plates, particles, enum
        latents: list[tuple[str, Any, Tensor]] = []

        def scale_latent_grads(guide_tr: Trace) -> None:
            for name, site in guide_tr.nodes.items():
                if site["type"] != "sample" or site["is_observed"] or site_is_subsample(site):
                    continue
                if site["infer"].get("_enumerate_dim") is not None:  # summed out exactly
                    if self.dreg:
                        raise NotImplementedError(
                            f"DReG with the enumerated site {name!r} is not supported")
                    continue
                if not site["fn"].has_rsample:
                    raise NotImplementedError(
                        f"guide site {name!r} is not reparameterizable; IWAE training here "
                        "needs reparameterized latents")
                if not self.dreg:
                    continue
                latents.append((name, site["fn"], site["value"]))
                data_dim = next(f.dim for f in site["cond_indep_stack"] if f.name == self.data_plate)
                shape = [1] * (rank - 1) + [1] * site["fn"].event_dim  # particles leftmost
                shape[0] = -1
                shape[rank - 1 + data_dim] = site["value"].shape[data_dim - site["fn"].event_dim]
                site["value"] = _ScaleGrad.apply(site["value"], holder, tuple(shape))
            if self.dreg:
                _refuse_dependent_latents(latents)

        log_w = per_datapoint_log_weights(
            model, guide, args, kwargs, num_particles=self.num_particles,
            plate_nesting=self._nesting, data_plate=self.data_plate,
            guide_values=scale_latent_grads, detach_guide_params=self.dreg,
        )
        return log_w, holder

    def differentiable_loss(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> Tensor:
        """-sum_i IWAE_K(x_i), with the gradient described in the module docstring."""
        log_w, holder = self._log_weights(model, guide, args, kwargs)
        loss = -(torch.logsumexp(log_w, 0) - math.log(self.num_particles)).sum()
        if not self.dreg:
            return loss
        weight = torch.softmax(log_w.detach(), 0)
        holder["weight"] = weight
        surrogate = -(weight * log_w).sum()
        return surrogate + (loss - surrogate).detach()

    __call__ = differentiable_loss

    def loss(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> float:
        with torch.no_grad():
            log_w, _ = self._log_weights(model, guide, args, kwargs)
        return -float((torch.logsumexp(log_w, 0) - math.log(self.num_particles)).sum())

    def loss_and_grads(self, model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> float:
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        loss.backward()
        return float(loss)
