"""MCMC on the latents of a trained model: the exact posterior to hold the
amortized guide against.

For chosen data points x_1..x_n and a fixed decoder, the target is

    p(z_1..z_n | x_1..x_n) = prod_i p(z_i | x_i)  with  p(z_i | x_i) ∝ p(z_i) p(x_i | z_i),

sampled by the No-U-Turn Sampler (Hoffman & Gelman 2014) as Pyro implements it,
with several chains from dispersed starting points so that split R-hat and the
effective sample size (Vehtari, Gelman, Simpson, Carpenter & Bürkner 2021,
"Rank-normalization, folding, and localization") can tell whether the chains
agree. The network parameters are constants (gradients are taken with respect
to z only) and scale factors are removed: a beta-VAE's posterior is sampled
at beta = 1, the model's actual density.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from pyro.infer import MCMC, NUTS
from torch import Tensor

from ppvae.infer.arviz_bridge import import_arviz, make_dataset, observed_variables
from ppvae.infer.sites import (
    DATAPOINT,
    Unscaled,
    check_site_names,
    event_dim_names,
    latent_sites,
    named_array,
    observed_sites,
    require_latents,
    select_datapoints,
    trace_once,
)

if TYPE_CHECKING:
    import arviz as az
    import pandas as pd


def nuts_posterior(
    model: Callable,
    *args: Any,
    datapoints: Sequence[int] | Tensor | None = None,
    num_samples: int = 300,
    warmup_steps: int = 300,
    num_chains: int = 4,
    target_accept_prob: float = 0.8,
    max_tree_depth: int = 10,
    full_mass: bool = True,
    data_plate: str = "data",
    seed: int | None = 0,
    progress: bool = False,
    **kwargs: Any,
) -> az.InferenceData:
    """Sample p(z | x) for a few data points with NUTS; ArviZ data out.

    ``model(*args, **kwargs)`` is any Pyro model whose data points sit in a
    vectorized ``pyro.plate(data_plate, N)`` with continuous latents local to
    it (observe discrete ones, e.g. pass M2's labels). Chains run one after
    the other (no worker processes), each from its own random start (Pyro's
    ``init_to_uniform``) with its own warm-up adaptation; the draws are seeded
    without touching the global random state.

    Cost: each NUTS iteration takes a few to a few tens of gradient
    evaluations (more during warm-up), each a pass of the model through
    Pyro. The points are sampled jointly, which costs about as much per
    gradient as one point: fewer chains, not fewer points, save time.

    Args:
        model: the Pyro model, e.g. ``vae.model``.
        *args: the first is the data; tensor arguments with N rows are
            indexed with ``datapoints`` like it.
        datapoints: indices of the data points (default: all; keep it few).
        num_samples, warmup_steps: draws kept and warm-up draws per chain.
        num_chains: independent chains (at least 2 for R-hat).
        target_accept_prob, max_tree_depth: NUTS settings.
        full_mass: adapt a dense mass matrix during warm-up (over all the
            chosen points' latents jointly), which makes correlated posteriors
            cheap to sample; False adapts a diagonal one.
        data_plate: the name of the plate over data points.
        seed: seeds the chains; None uses the current random state.
        progress: show Pyro's progress bar.
        **kwargs: passed to the model.

    Returns:
        ``InferenceData`` with ``posterior`` (each latent site, dims ``(chain,
        draw, datapoint, latent)`` for a model with one latent vector site;
        named as in :func:`ppvae.infer.to_inference_data`), ``sample_stats``
        (``diverging``, ``(chain, draw)``) and ``observed_data``, so that
        ``arviz.summary`` gives R-hat and ESS per data point and latent
        dimension.
    """
    for name, value in (("num_samples", num_samples), ("num_chains", num_chains)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be non-negative, got {warmup_steps}")
    idx, args, kwargs = select_datapoints(args, kwargs, datapoints)

    @Unscaled()
    def target() -> None:
        model(*args, **kwargs)

    tr = trace_once(target)
    sites = latent_sites(tr)
    require_latents(sites, data_plate, "model")
    taken = {*sites, *observed_sites(tr), "diverging"}
    check_site_names(taken)
    for name, site in sites.items():
        if site["fn"].has_enumerate_support:
            raise ValueError(f"latent site {name!r} is discrete: NUTS needs continuous latents "
                             "(observe it, e.g. pass the labels)")
    nesting = max((-f.dim for site in tr.nodes.values() if site["type"] == "sample"
                   for f in site["cond_indep_stack"] if f.vectorized), default=0)
    chains, diverging = [], np.zeros((num_chains, num_samples), dtype=bool)
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        for chain in range(num_chains):
            kernel = NUTS(target, target_accept_prob=target_accept_prob,
                          max_tree_depth=max_tree_depth, full_mass=full_mass)
            mcmc = MCMC(kernel, num_samples=num_samples, warmup_steps=warmup_steps,
                        disable_progbar=not progress)
            mcmc.run()
            chains.append(mcmc.get_samples())
            diverging[chain, mcmc.diagnostics()["divergences"]["chain 0"]] = True
    names = event_dim_names({name: site["fn"].event_dim for name, site in sites.items()},
                            "latent", taken)
    posterior = {}
    for name, site in sites.items():
        value, dims = named_array(torch.stack([c[name] for c in chains]), site,
                                  lead=["chain", "draw"], event_names=names[name],
                                  plate_nesting=nesting, data_plate=data_plate)
        posterior[name] = (dims, value)
    coords = {"chain": np.arange(num_chains), "draw": np.arange(num_samples),
              DATAPOINT: idx.tolist()}
    return import_arviz().InferenceData(
        posterior=make_dataset(posterior, coords),
        sample_stats=make_dataset({"diverging": (["chain", "draw"], diverging)}, coords),
        observed_data=make_dataset(observed_variables(tr, nesting, data_plate, taken), coords),
    )


def compare_posteriors(
    guide_data: az.InferenceData, nuts_data: az.InferenceData, var_name: str | None = None
) -> pd.DataFrame:
    """The guide's and NUTS's posterior moments side by side.

    One row per data point and latent dimension (the data points of
    ``nuts_data``, which ``guide_data`` must contain), with columns
    ``guide_mean``, ``guide_sd``, ``nuts_mean``, ``nuts_sd``, ``ess_bulk`` and
    ``r_hat`` (of the NUTS draws), ``mean_shift`` = (guide mean − NUTS mean) /
    NUTS sd and ``sd_ratio`` = guide sd / NUTS sd. A guide that matches the
    posterior has shifts within about 1/sqrt(ESS) and ratios near 1; a ratio
    below 1 is the usual under-dispersion of KL(q || p).

    Args:
        guide_data: from :func:`ppvae.infer.to_inference_data`.
        nuts_data: from :func:`nuts_posterior`.
        var_name: the latent variable (default: the only one in ``nuts_data``).
    """
    if var_name is None:
        names = list(nuts_data.posterior.data_vars)
        if len(names) != 1:
            raise ValueError(f"nuts_data has several latent variables {names}; pass var_name")
        var_name = names[0]
    for label, data in (("guide_data", guide_data), ("nuts_data", nuts_data)):
        if var_name not in data.posterior:
            raise ValueError(f"{label} has no posterior variable {var_name!r}")
    nuts = nuts_data.posterior[var_name]
    guide = guide_data.posterior[var_name]
    missing = sorted(set(nuts[DATAPOINT].values.tolist()) - set(guide[DATAPOINT].values.tolist()))
    if missing:
        raise ValueError(f"guide_data lacks the data points {missing} that nuts_data holds")
    guide = guide.sel({DATAPOINT: nuts[DATAPOINT].values})
    if guide.dims[2:] != nuts.dims[2:]:
        raise ValueError(f"{var_name!r} has dims {guide.dims} in guide_data but {nuts.dims} "
                         "in nuts_data")
    import xarray as xr

    az = import_arviz()
    sample = ("chain", "draw")
    table = xr.Dataset({
        "guide_mean": guide.mean(sample), "guide_sd": guide.std(sample),
        "nuts_mean": nuts.mean(sample), "nuts_sd": nuts.std(sample),
        "ess_bulk": az.ess(nuts_data, var_names=[var_name], method="bulk")[var_name],
        "r_hat": az.rhat(nuts_data, var_names=[var_name])[var_name],
    })
    table["mean_shift"] = (table.guide_mean - table.nuts_mean) / table.nuts_sd
    table["sd_ratio"] = table.guide_sd / table.nuts_sd
    return table.to_dataframe()
