"""The latent and observed sites of a model/guide pair, read from Pyro traces,
for the diagnostics (:mod:`ppvae.infer.arviz_bridge`, :mod:`ppvae.infer.mcmc`,
:mod:`ppvae.infer.gaps`).

Everything here works on any pair whose data points sit in a vectorized
``pyro.plate("data", N)`` with latents local to it: data points are chosen by
index, sites are found in a trace, and a site's values are turned into a numpy
array with named dimensions (``datapoint`` for the data plate, the plate's own
name for other plates, ``latent`` / ``pixel`` or ``<site>_dim_<j>`` for event
dimensions), the layout ArviZ's ``InferenceData`` wants.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any

import numpy as np
import torch
from pyro import poutine
from pyro.poutine.messenger import Messenger
from pyro.poutine.trace_struct import Trace
from pyro.poutine.util import site_is_subsample
from torch import Tensor

DATAPOINT = "datapoint"
FIRST_DIMS = ("chain", "draw", DATAPOINT)  # ArviZ's order: sampling dims, then the data point


class Unscaled(Messenger):
    """Set every site's scale factor to 1: the model as a density.

    Scale factors (``poutine.scale``, a beta-VAE's beta) weight objectives;
    they are not part of p(x, z). Used as ``Unscaled()(model)``; it must be the
    outermost scaling handler (Pyro applies outer handlers last).
    """

    def _process_message(self, msg: dict) -> None:
        msg["scale"] = 1.0


def select_datapoints(
    args: tuple, kwargs: dict, datapoints: Sequence[int] | Tensor | None
) -> tuple[Tensor, tuple, dict]:
    """Pick data points by index from the call's arguments.

    The first positional argument is the data (N along its first dimension);
    every tensor argument, positional or keyword, whose first dimension is N is
    indexed with it. Returns ``(indices, args, kwargs)``; ``None`` selects all.
    Raises ``ValueError`` for indices that are not distinct integers in [0, N).
    """
    if not args or not isinstance(args[0], Tensor) or args[0].dim() == 0:
        raise ValueError("the first positional argument must be the data tensor (N, ...)")
    n = args[0].shape[0]
    if n == 0:
        raise ValueError("no data points: the data tensor is empty")
    if datapoints is None:
        return torch.arange(n), args, kwargs
    idx = torch.as_tensor(datapoints)
    if idx.dim() == 0:
        idx = idx.reshape(1)
    if (idx.dim() != 1 or idx.numel() == 0 or idx.dtype.is_floating_point
            or idx.dtype == torch.bool):
        raise ValueError("datapoints must be a non-empty sequence of integer indices, "
                         f"got {datapoints!r}")
    idx = idx.long().cpu()
    if int(idx.min()) < 0 or int(idx.max()) >= n:
        raise ValueError(
            f"datapoints must lie in 0..{n - 1} (the data have {n} points), got values from "
            f"{int(idx.min())} to {int(idx.max())}"
        )
    if len(idx.unique()) != len(idx):
        raise ValueError(f"datapoints must be distinct, got {idx.tolist()}")

    def pick(a: Any) -> Any:
        rows = isinstance(a, Tensor) and a.dim() > 0 and a.shape[0] == n
        return a[idx.to(a.device)] if rows else a

    return idx, tuple(pick(a) for a in args), {k: pick(v) for k, v in kwargs.items()}


def trace_once(fn: Callable, *args: Any, **kwargs: Any) -> Trace:
    """One trace of ``fn``, hidden from outer handlers, without gradients and
    leaving the random state as it was."""
    with poutine.block(), torch.no_grad(), torch.random.fork_rng(devices=[]):
        return poutine.trace(fn).get_trace(*args, **kwargs)


def latent_sites(tr: Trace) -> dict[str, dict]:
    """The latent sample sites of a trace: not observed, not auxiliary, not a
    plate's subsample site."""
    return {name: site for name, site in tr.nodes.items()
            if site["type"] == "sample" and not site["is_observed"]
            and not site["infer"].get("is_auxiliary") and not site_is_subsample(site)}


def observed_sites(tr: Trace) -> dict[str, dict]:
    """The observed sample sites of a trace."""
    return {name: site for name, site in tr.nodes.items()
            if site["type"] == "sample" and site["is_observed"]}


def require_latents(sites: dict[str, dict], data_plate: str, what: str) -> None:
    """Raise ``ValueError`` unless there is a latent site and every one sits in
    the data plate (latents local to each data point)."""
    if not sites:
        raise ValueError(f"the {what} has no latent sample site: nothing to diagnose")
    for name, site in sites.items():
        if not any(f.name == data_plate and f.vectorized for f in site["cond_indep_stack"]):
            raise ValueError(
                f"latent site {name!r} of the {what} is not inside a vectorized "
                f"pyro.plate({data_plate!r}); the diagnostics need latents local to each "
                "data point"
            )


def check_site_names(names: Collection[str]) -> None:
    """Raise ``ValueError`` if a site is named like one of the fixed
    dimensions of an export (``chain``, ``draw``, ``datapoint``)."""
    clash = sorted(set(names) & set(FIRST_DIMS))
    if clash:
        raise ValueError(f"site(s) {clash} share their name with a dimension of the ArviZ "
                         f"export ({', '.join(FIRST_DIMS)}); rename the site(s)")


def event_dim_names(event_dims: dict[str, int], default: str,
                    taken: Collection[str] = ()) -> dict[str, list[str]]:
    """Names of the event dimensions of each site: ``[default]`` when a single
    site has event dimensions and it has exactly one (``z`` -> ``latent``,
    ``x`` -> ``pixel``), otherwise ``<site>_dim_<j>``. No name is one of
    ``taken`` (the variables of the export: a dimension named like a
    variable would clash with it), so a site named ``latent`` gets
    ``latent_dim_0``."""
    taken = set(taken) | set(event_dims) | set(FIRST_DIMS)
    with_events = [name for name, k in event_dims.items() if k > 0]
    if (len(with_events) == 1 and event_dims[with_events[0]] == 1 and default not in taken):
        return {name: [default] if k else [] for name, k in event_dims.items()}
    out = {}
    for name, k in event_dims.items():
        dims = []
        for j in range(k):
            dim = f"{name}_dim_{j}"
            while dim in taken:
                dim += "_"
            dims.append(dim)
        out[name] = dims
    return out


def named_array(
    value: Tensor,
    site: dict,
    *,
    lead: Sequence[str | None],
    event_names: Sequence[str],
    plate_nesting: int,
    data_plate: str,
) -> tuple[np.ndarray, list[str]]:
    """A site's values as a numpy array with one name per dimension.

    ``value`` has shape ``lead + batch + event``: ``len(lead)`` leading
    dimensions named by ``lead`` (e.g. ``chain, draw``; a ``None`` name marks a
    dimension that must have size 1 and is dropped), then the site's batch
    dimensions, padded on the left to ``plate_nesting`` and named by the site's
    vectorized plates (``datapoint`` for ``data_plate``; a dimension no plate
    declares must have size 1 and is dropped), then the event dimensions. The
    result is ordered ``chain, draw, datapoint`` (those present), then the
    other dimensions in their original order.
    """
    num_lead, num_event = len(lead), len(event_names)
    batch = value.shape[num_lead : value.dim() - num_event]
    if len(batch) > plate_nesting:
        raise ValueError(f"site {site['name']!r} has batch dimensions {tuple(batch)} not "
                         "declared by plates")
    shape = value.shape[:num_lead] + (1,) * (plate_nesting - len(batch)) + value.shape[num_lead:]
    value = value.detach().reshape(shape)
    plates = {f.dim: (DATAPOINT if f.name == data_plate else f.name)
              for f in site["cond_indep_stack"] if f.vectorized}
    names = [*lead, *(plates.get(d - plate_nesting) for d in range(plate_nesting)), *event_names]
    for size, name in zip(value.shape, names):
        if name is None and size != 1:
            raise ValueError(f"site {site['name']!r} has a dimension of size {size} that no "
                             "plate declares")
    keep = [i for i, name in enumerate(names) if name is not None]
    value = value.reshape([value.shape[i] for i in keep])
    names = [names[i] for i in keep]
    first = [names.index(nm) for nm in FIRST_DIMS if nm in names]
    order = first + [i for i in range(len(names)) if i not in first]
    array = value.permute(order).cpu()
    if array.dtype in (torch.float16, torch.bfloat16):  # no (lossless) numpy twin
        array = array.float()
    return array.numpy(), [names[i] for i in order]
