"""Export a model/guide pair's guide draws, data, importance weights and
training history to ArviZ's :class:`arviz.InferenceData` (Kumar, Carroll,
Hartikainen & Martin 2019, "ArviZ a unified library for exploratory analysis
of Bayesian models in Python").

For chosen data points x_i the guide's draws z_{k,i} ~ q(z | x_i), k = 1..K,
become the ``posterior`` group (one chain: ArviZ's layout needs a chain
dimension), and their log importance weights

    log w_{k,i} = log p(x_i, z_{k,i}) - log q(z_{k,i} | x_i)

(on the same draws) go to ``sample_stats`` with the Pareto k-hat of each data
point's weights (:mod:`ppvae.infer.psis`; Vehtari, Simpson, Gelman, Yao & Gabry 2024).
``log_weight`` lets one reweight the guide draws towards p(z | x_i)
(``arviz.psislw``) and recompute the importance-weighted estimate
log (1/K) sum_k w_{k,i} of :func:`ppvae.infer.log_likelihood`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyro
import torch
from pyro import poutine
from pyro.poutine.trace_struct import Trace
from torch import Tensor

from ppvae.infer.importance import max_plate_nesting, per_datapoint_log_weights
from ppvae.infer.psis import pareto_khat
from ppvae.infer.sites import (
    DATAPOINT,
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
    import xarray as xr

TRAINING_GROUP = "training"


def import_arviz():
    """ArviZ, imported on first use (it adds a second to ``import ppvae``)."""
    with warnings.catch_warnings():  # ArviZ announces its refactor on import
        warnings.simplefilter("ignore", FutureWarning)
        import arviz

    return arviz


def to_inference_data(
    model: Callable,
    guide: Callable,
    *args: Any,
    datapoints: Sequence[int] | Tensor | None = None,
    num_samples: int = 500,
    history: Any = None,
    data_plate: str = "data",
    seed: int | None = 0,
    **kwargs: Any,
) -> az.InferenceData:
    """Guide draws, observed data, log importance weights with PSIS k-hat, and
    (optionally) the training history of a model/guide pair, as ArviZ data.

    Works for any Pyro pair whose data points sit in a vectorized
    ``pyro.plate(data_plate, N)`` with every latent local to it; sites are
    read from Pyro traces. The draws are seeded (``seed``) without touching the
    global random state.

    Args:
        model, guide: called as ``fn(*args, **kwargs)``.
        *args: the first is the data (N along its first dimension); every
            tensor argument whose first dimension is N is indexed with it.
        datapoints: indices of the data points to export (default: all).
        num_samples: K, guide draws per data point.
        history: the :class:`~ppvae.train.history.History` of
            :func:`ppvae.fit`, or a mapping of per-epoch lists.
        data_plate: the name of the plate over data points.
        seed: seeds the draws; None uses the current random state.
        **kwargs: passed to model and guide.

    Returns:
        ``InferenceData`` with the groups

        - ``posterior``: one variable per latent site of the guide, dims
          ``(chain, draw, datapoint, latent)`` for a guide with one latent
          vector site (``chain`` has size 1). Other layouts: event dims are
          named ``<site>_dim_<j>``, plates other than the data plate by their
          name, and an enumerated discrete site (M2's y) is not a variable but
          a dimension named after it: the draws of z given each of its values.
        - ``observed_data``: each observed site, dims ``(datapoint, pixel)``
          for a model with one observed vector site (an observed label:
          ``(datapoint,)``).
        - ``sample_stats``: ``log_weight`` ``(chain, draw, datapoint)``, the
          log importance weights of the posterior draws (scale factors such as
          a beta-VAE's beta ignored; an enumerated site summed out inside each
          weight); ``khat`` ``(datapoint)``, their Pareto k-hat (NaN for
          K < 50; above 0.7 the guide is too narrow for reliable importance
          sampling there).
        - ``training`` (with ``history``): each non-empty per-epoch series
          (``train_elbo``, ``val_elbo``, ...) over dim ``epoch`` (coordinates
          1, 2, ...; a series of another length gets ``<name>_epoch``), and the
          scalars (``best_epoch``, ``stopped_early`` as 0/1, ``seconds``, ...)
          as the group's attrs.

        ``datapoint`` coordinates are the indices into the data.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}")
    idx, args, kwargs = select_datapoints(args, kwargs, datapoints)
    guide_tr = trace_once(guide, *args, **kwargs)
    model_tr = trace_once(poutine.replay(model, trace=guide_tr), *args, **kwargs)
    require_latents(latent_sites(guide_tr), data_plate, "guide")
    taken = {*latent_sites(guide_tr), *observed_sites(model_tr), "log_weight", "khat"}
    check_site_names(taken)
    nesting = max_plate_nesting(model, guide, *args, **kwargs)
    draws, log_w = _draws_and_log_weights(model, guide, args, kwargs, num_samples, nesting,
                                          data_plate, seed, taken)
    coords = {"chain": [0], "draw": np.arange(num_samples), DATAPOINT: idx.tolist()}
    khat = pareto_khat(torch.from_numpy(log_w.T), num_samples).numpy()
    az = import_arviz()
    groups = {
        "posterior": make_dataset({name: (["chain", *dims], value[None])
                                   for name, (value, dims) in draws.items()}, coords),
        "sample_stats": make_dataset({"log_weight": (["chain", "draw", DATAPOINT], log_w[None]),
                                      "khat": ([DATAPOINT], khat)}, coords),
        "observed_data": make_dataset(observed_variables(model_tr, nesting, data_plate, taken),
                                      coords),
    }
    if history is not None:
        groups[TRAINING_GROUP] = history_dataset(history)
    return az.InferenceData(**groups)


def make_dataset(variables: dict[str, tuple[list[str], np.ndarray]], coords: dict) -> xr.Dataset:
    """A dataset with coordinates for every dimension (``coords``, else 0, 1, ...)."""
    import xarray as xr

    sizes = {d: n for dims, value in variables.values() for d, n in zip(dims, value.shape)}
    return xr.Dataset({name: (dims, value) for name, (dims, value) in variables.items()},
                      coords={d: coords.get(d, np.arange(n)) for d, n in sizes.items()},
                      attrs={"inference_library": "pyro",
                             "inference_library_version": pyro.__version__})


@torch.no_grad()
def _draws_and_log_weights(
    model: Callable, guide: Callable, args: tuple, kwargs: dict, num_samples: int,
    nesting: int, data_plate: str, seed: int | None, taken: set[str],
) -> tuple[dict[str, tuple[np.ndarray, list[str]]], np.ndarray]:
    """Guide draws of every latent site (named arrays with dims ``draw,
    datapoint, ...``) and their log weights ``(draw, datapoint)``, computed
    in chunks of data points."""
    n = args[0].shape[0]
    chunk = max(1, 2**14 // num_samples)
    parts: dict[str, list[np.ndarray]] = {}
    dims: dict[str, list[str]] = {}
    log_w = []
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        for start in range(0, n, chunk):
            _, chunk_args, chunk_kwargs = select_datapoints(
                args, kwargs, range(start, min(n, start + chunk)))
            traces = []
            log_w.append(per_datapoint_log_weights(
                model, guide, chunk_args, chunk_kwargs, num_particles=num_samples,
                plate_nesting=nesting, data_plate=data_plate, guide_values=traces.append,
            ).cpu().double().numpy())
            for name, (value, value_dims) in _named_draws(traces[0], nesting, data_plate,
                                                                taken).items():
                parts.setdefault(name, []).append(value)
                dims[name] = value_dims
    draws = {name: (np.concatenate(values, axis=dims[name].index(DATAPOINT)), dims[name])
             for name, values in parts.items()}
    return draws, np.concatenate(log_w, axis=1)


def _named_draws(tr: Trace, nesting: int, data_plate: str,
                 taken: set[str]) -> dict[str, tuple[np.ndarray, list[str]]]:
    """The latent values of a guide trace drawn with particles (dim ``-(nesting
    + 1)``) and possibly one enumerated site (dim ``-(nesting + 2)``)."""
    sites = latent_sites(tr)
    enumerated = [name for name, site in sites.items()
                  if site["infer"].get("_enumerate_dim") is not None]
    lead = [enumerated[0] if enumerated else None, "draw"]
    sites = {name: site for name, site in sites.items() if name not in enumerated}
    names = event_dim_names({name: site["fn"].event_dim for name, site in sites.items()},
                            "latent", taken)
    out = {}
    for name, site in sites.items():
        value = site["value"]
        full = nesting + 2 + len(names[name])  # enumeration, particles, plates, event
        value = value.reshape((1,) * (full - value.dim()) + value.shape)
        out[name] = named_array(value, site, lead=lead, event_names=names[name],
                                plate_nesting=nesting, data_plate=data_plate)
    return out


def observed_variables(model_tr: Trace, nesting: int, data_plate: str, taken: set[str]
                       ) -> dict[str, tuple[list[str], np.ndarray]]:
    """The observed sites of a model trace as ``{name: (dims, values)}``; no
    dimension is named like one of ``taken`` (the export's variables)."""
    sites = observed_sites(model_tr)
    names = event_dim_names({name: site["fn"].event_dim for name, site in sites.items()},
                            "pixel", taken)
    out = {}
    for name, site in sites.items():
        value, dims = named_array(torch.as_tensor(site["value"]), site, lead=[],
                                  event_names=names[name], plate_nesting=nesting,
                                  data_plate=data_plate)
        out[name] = (dims, value)
    return out


def history_dataset(history: Any) -> xr.Dataset:
    """A training history as an ``xarray.Dataset`` (the ``training`` group of
    :func:`to_inference_data`).

    ``history`` is a :class:`~ppvae.train.history.History` (anything with an
    ``as_dict()``) or a mapping. Non-empty sequences become variables over dim
    ``epoch`` (coordinates from 1; the length of ``train_elbo``, or of the
    first series), or ``<name>_epoch`` when their length differs; scalars
    (numbers, strings, booleans as 0/1) become attrs; None and empty series
    are left out.
    """
    import xarray as xr

    items = history.as_dict() if hasattr(history, "as_dict") else history
    if not isinstance(items, Mapping):
        raise TypeError(f"history must be a History or a mapping of per-epoch lists, "
                        f"got {type(history).__name__}")
    series = {k: np.asarray(v, dtype=float) for k, v in items.items()
              if isinstance(v, (Sequence, np.ndarray, Tensor)) and not isinstance(v, str)
              and len(v) > 0}
    if not series:
        raise ValueError("history has no per-epoch values")
    epochs = len(series.get("train_elbo", next(iter(series.values()))))
    variables, coords = {}, {}
    for name, values in series.items():
        dim = "epoch" if len(values) == epochs else f"{name}_epoch"
        variables[name] = ([dim], values)
        coords[dim] = np.arange(1, len(values) + 1)
    attrs = {k: int(v) if isinstance(v, bool) else v for k, v in items.items()
             if isinstance(v, (bool, int, float, str)) and k not in series}
    return xr.Dataset(variables, coords=coords, attrs=attrs)
