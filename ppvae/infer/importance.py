"""Per-datapoint importance weights of a model/guide pair.

For data points x_i in ``pyro.plate("data")`` with latents z_i local to that
plate, and z_{k,i} ~ q(z | x_i), k = 1..K, the log importance weights are

    log w_{k,i} = log p(x_i, z_{k,i}) - log q(z_{k,i} | x_i).

They are computed from one vectorized trace of the guide and one of the model
replayed against it, with the K particles in an extra plate to the left of the
model's own plates. Every sample site's log density is reduced to the
``(particle, data point)`` grid by summing all its other dimensions.

A discrete latent that the guide marks for parallel enumeration
(``infer={"enumerate": "parallel"}``, e.g. the class y of an M2 model) is summed
out exactly: z is drawn for every value of y, and

    w_{k,i} = sum_y p(x_i, y, z_{k,i,y}) / q(z_{k,i,y} | x_i, y),

an unbiased estimate of p(x_i) stratified over y (q(y | x) cancels). One
enumerated site is supported.

Two things Pyro's own helpers do are deliberately avoided here:
:func:`pyro.infer.importance.vectorized_importance_weights` sums the whole
batch into one joint weight per particle (a bound on the batch's joint
likelihood, not per data point), and trace log densities include ``scale``
factors (``poutine.scale``, a beta-VAE's beta, plate subsampling), which are
weights of an objective, not part of the density. Here scales are ignored,
masks are honoured, and subsampled data plates are refused.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.poutine.trace_struct import Trace
from pyro.poutine.util import prune_subsample_sites
from torch import Tensor

from ppvae.pieces.detach import detach_distribution

PARTICLE_PLATE = "_ppvae_particles"


def max_plate_nesting(model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> int:
    """The number of vectorized plate dimensions used by ``model`` and ``guide``
    (found by tracing them once, leaving the random state as it was)."""
    with poutine.block(), torch.no_grad(), torch.random.fork_rng(devices=[]):
        guide_tr = poutine.trace(guide).get_trace(*args, **kwargs)
        model_tr = poutine.trace(poutine.replay(model, trace=guide_tr)).get_trace(*args, **kwargs)
    return max(
        (-frame.dim for tr in (guide_tr, model_tr) for site in tr.nodes.values()
         if site["type"] == "sample" for frame in site["cond_indep_stack"] if frame.vectorized),
        default=0,
    )


def _innermost(fn: dist.Distribution) -> dist.Distribution:
    """The distribution under Independent, masking and expansion wrappers."""
    while isinstance(fn, (dist.Independent, dist.MaskedDistribution, dist.ExpandedDistribution)):
        fn = fn.base_dist
    return fn


def check_densities(model_tr: Trace, guide_tr: Trace, enumerated: Sequence[str]) -> None:
    """Raise ``ValueError`` unless the guide proposes exactly the model's
    latents, each from a density, and every model latent has a proper
    distribution: what makes log p(x, z) - log q(z | x) an importance log
    weight.

    A guide site the model lacks would add -log q(z) to every weight and
    push the "estimate" above log p(x); a point mass (``Delta``) has no
    density to divide by; an improper prior (``ImproperUniform``, a plain
    autoencoder's flat code) leaves log p(x) undefined.
    """
    model_latents = {n for n, site in model_tr.nodes.items()
                     if site["type"] == "sample" and not site["is_observed"]}
    for name, site in guide_tr.nodes.items():
        if site["type"] != "sample" or site["is_observed"] or name in enumerated:
            continue
        if name not in model_latents:
            raise ValueError(
                f"guide site {name!r} is not a latent site of the model; importance weights "
                "p(x, z) / q(z | x) need the guide to propose the model's latents only")
        if isinstance(_innermost(site["fn"]), dist.Delta):
            raise ValueError(
                f"guide site {name!r} is a point mass (Delta): importance sampling needs a "
                "proposal with a density, so this pair's log p(x) cannot be estimated (a model "
                "with a deterministic encoder is not evaluated as a density)")
    for name in model_latents:
        if isinstance(_innermost(model_tr.nodes[name]["fn"]), dist.ImproperUniform):
            raise ValueError(
                f"model site {name!r} has an improper distribution (ImproperUniform): the model "
                "is not a normalized density of x, so log p(x) is not defined")


def _data_frame(name: str, site: dict, plate: str):
    for frame in site["cond_indep_stack"]:
        if frame.name == plate:
            if frame.dim is None:
                raise ValueError(f"the plate {plate!r} must be vectorized: with pyro.plate(...)")
            if frame.full_size is not None and frame.full_size != frame.size:
                raise ValueError(
                    f"the plate {plate!r} subsamples ({frame.size} of {frame.full_size}); "
                    "pass exactly the data points to evaluate and no subsample_size"
                )
            return frame
    raise ValueError(
        f"sample site {name!r} is not inside pyro.plate({plate!r}); per-datapoint "
        "importance weights need every sample site inside the data plate (latents local "
        "to each data point, no global latents)"
    )


def _reduce(log_prob: Tensor, name: str, rank: int, data_dim: int) -> Tensor:
    """Sum ``log_prob`` over every dimension but enumeration (leftmost), particles
    (next) and data (``data_dim``); returns shape ``(E or 1, K or 1, N or 1)``.
    ``rank`` counts the enumeration dimension."""
    if log_prob.dim() > rank:
        raise ValueError(
            f"sample site {name!r} has batch dimensions {tuple(log_prob.shape)} not declared "
            "by plates; declare them with pyro.plate or move them into the event with .to_event()"
        )
    log_prob = log_prob.reshape((1,) * (rank - log_prob.dim()) + log_prob.shape)
    other = [d for d in range(2, rank) if d != rank + data_dim]
    return log_prob.sum(other) if other else log_prob


def _traces(model: Callable, guide: Callable, args: tuple, kwargs: dict, num_particles: int,
            rank: int, guide_values: Callable[[Trace], None] | None,
            detach_values: bool = False) -> tuple[Trace, Trace, list[str]]:
    """The guide's trace with K particles (enumerated sites in parallel), the
    model's replayed against it, and the enumerated sites' names. With
    ``detach_values`` the draws are cut from the graph and the guide is run
    again on them (its later sites' distributions then see the cut draws)."""
    particles = pyro.plate(PARTICLE_PLATE, num_particles, dim=-(rank - 1))
    enumerated_guide = poutine.enum(particles(guide), first_available_dim=-rank)
    guide_tr = poutine.trace(enumerated_guide).get_trace(*args, **kwargs)
    if guide_values is not None:
        guide_values(guide_tr)
    if detach_values:
        for site in guide_tr.nodes.values():
            if site["type"] == "sample" and not site["is_observed"]:
                site["value"] = site["value"].detach()
        guide_tr = poutine.trace(poutine.replay(enumerated_guide, trace=guide_tr)).get_trace(
            *args, **kwargs)
    model_tr = poutine.trace(poutine.replay(particles(model), trace=guide_tr)).get_trace(*args, **kwargs)
    guide_tr, model_tr = prune_subsample_sites(guide_tr), prune_subsample_sites(model_tr)
    enumerated = [n for n, site in guide_tr.nodes.items()
                  if site["type"] == "sample" and site["infer"].get("_enumerate_dim") is not None]
    if len(enumerated) > 1:
        raise NotImplementedError(f"one enumerated site is supported, got {enumerated}")
    check_densities(model_tr, guide_tr, enumerated)
    return model_tr, guide_tr, enumerated


def _log_densities(model_tr: Trace, guide_tr: Trace, enumerated: Sequence[str], rank: int,
                   data_plate: str, detach_guide_params: bool) -> tuple[Tensor, Tensor]:
    """log p(x, z) and log q(z | x) (without enumerated sites, whose q(y | x)
    cancels), each ``(E or 1, K or 1, N or 1)``."""
    totals: list[Tensor | float] = [0.0, 0.0]
    for tr, side in ((model_tr, 0), (guide_tr, 1)):
        for name, site in tr.nodes.items():
            if site["type"] != "sample" or (side and name in enumerated):
                continue  # an enumerated site's q(y | x) cancels: it is summed over
            if not side and not site["is_observed"] and name not in guide_tr.nodes:
                raise ValueError(
                    f"latent site {name!r} of the model has no counterpart in the guide; "
                    "importance sampling needs the guide to propose every latent"
                )
            frame = _data_frame(name, site, data_plate)
            fn = detach_distribution(site["fn"]) if side and detach_guide_params else site["fn"]
            log_prob = fn.log_prob(site["value"])
            if site["mask"] is not None:
                log_prob = torch.where(site["mask"], log_prob, torch.zeros_like(log_prob))
            totals[side] = totals[side] + _reduce(log_prob, name, rank, frame.dim)
    if not isinstance(totals[0], Tensor):
        raise ValueError("the model and guide have no sample sites")
    log_p, log_q = totals
    return log_p, log_q if isinstance(log_q, Tensor) else torch.zeros_like(log_p)


def per_datapoint_log_weights(
    model: Callable,
    guide: Callable,
    args: tuple,
    kwargs: dict,
    *,
    num_particles: int,
    plate_nesting: int,
    data_plate: str = "data",
    guide_values: Callable[[Trace], None] | None = None,
    detach_guide_params: bool = False,
) -> Tensor:
    """Log weights ``(num_particles, num_data)`` for one batch of data.

    Args:
        model, guide: the Pyro pair, called as ``fn(*args, **kwargs)``.
        num_particles: K, drawn in one vectorized pass.
        plate_nesting: the model's :func:`max_plate_nesting`.
        data_plate: the name of the plate over data points.
        guide_values: optional hook that may replace latent values in the
            guide trace before the model is replayed (used by DReG).
        detach_guide_params: score log q with the guide's parameters detached
            (used by DReG).
    """
    rank = plate_nesting + 2  # data plates, particles, one enumeration dimension
    model_tr, guide_tr, enumerated = _traces(model, guide, args, kwargs, num_particles, rank,
                                             guide_values)
    log_p, log_q = _log_densities(model_tr, guide_tr, enumerated, rank, data_plate,
                                  detach_guide_params)
    return torch.logsumexp(log_p - log_q, 0)


def per_datapoint_log_densities(
    model: Callable,
    guide: Callable,
    args: tuple,
    kwargs: dict,
    *,
    num_particles: int,
    plate_nesting: int,
    data_plate: str = "data",
) -> tuple[Tensor, Tensor]:
    """log p(x_i, z_{k,i}) and log q(z_{k,i} | x_i), each ``(num_particles,
    num_data)``, at K draws z_{k,i} ~ q(z | x_i) cut from the graph (no
    reparameterization: the gradients are those of the log densities at
    fixed draws, as reweighted wake-sleep takes them). The guide may not
    enumerate a site. Arguments as for :func:`per_datapoint_log_weights`."""
    rank = plate_nesting + 2
    model_tr, guide_tr, enumerated = _traces(model, guide, args, kwargs, num_particles, rank,
                                             None, detach_values=True)
    if enumerated:
        raise NotImplementedError(f"the guide enumerates {enumerated}: log q of the draws is "
                                  "not defined per particle")
    log_p, log_q = _log_densities(model_tr, guide_tr, enumerated, rank, data_plate, False)
    return log_p[0], log_q[0]
