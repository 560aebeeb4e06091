"""Active units: which dimensions of a guide's latents carry information
about the data (Burda, Grosse & Salakhutdinov 2016, Sec. 5.2).

Unit d of a latent site z is active when its posterior mean moves with the
data:

    A_d = Var_x( E_{q(z | x)}[z_d] ) > threshold     (10^-2 in the paper),

the variance taken over the given data points. A unit whose q(z_d | x) is
the same for every x (a collapsed unit, which the KL term pushes to the
prior) has A_d = 0.

For each data point x and each latent site in the data plate, S runs of the
guide give values v_s: the mean of the site's distribution given what the
guide drew upstream of it (Rao-Blackwellized), or, where the distribution
has no closed-form mean (a flow), the drawn value itself. For a site whose q
depends on x alone (q(z1 | x)) every v_s is E_q[z | x]; for q(z2 | z1) the
v_s are unbiased for E_q[z2 | x] = E_{q(z1 | x)}[mean q(z2 | z1)]. With m_x
and s_x^2 the mean and the unbiased variance of the v_s, and Var_x the
unbiased variance over the N data points,

    A_d = Var_x(m_x) - mean_x(s_x^2) / S,

which is unbiased for Var_x(E_q[z_d | x]) (the second term removes the
Monte Carlo noise of m_x; it is zero where every v_s is the exact mean).
Discrete latents and latents outside the data plate are left out (a guide
with none else, such as a Helmholtz machine's binary units, has no sites).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample
from torch import Tensor

from ppvae.infer.loglik import split_data_args


@dataclass(frozen=True)
class ActiveUnits:
    """Per-unit activity of a guide's latents.

    Attributes:
        variance: for each latent site, in the guide's order, A_d of each of
            its units (event dimensions flattened), shape (units,).
        threshold: the activity threshold.
    """

    variance: dict[str, Tensor]
    threshold: float

    @property
    def counts(self) -> dict[str, int]:
        """The number of active units (A_d > threshold) of each site."""
        return {name: int((v > self.threshold).sum()) for name, v in self.variance.items()}


def _unit_values(site: dict, data_plate: str) -> Tensor | None:
    """The site's mean given its parents (or its value), as (N, units); None
    for a site that is not a continuous latent in the data plate."""
    if (site["type"] != "sample" or site["is_observed"] or site_is_subsample(site)
            or site["fn"].support.is_discrete):
        return None
    frame = next((f for f in site["cond_indep_stack"] if f.name == data_plate), None)
    if frame is None:
        return None
    fn = site["fn"]
    try:
        value = fn.mean.expand_as(site["value"])
    except NotImplementedError:
        value = site["value"]
    axis = frame.dim - fn.event_dim
    return value.movedim(axis, 0).reshape(value.shape[axis], -1)


@torch.no_grad()
def active_units(
    guide: Callable[..., Any],
    x: Tensor,
    *args: Any,
    num_samples: int = 10,
    threshold: float = 1e-2,
    batch_size: int = 1000,
    data_plate: str = "data",
    seed: int | None = 0,
    **kwargs: Any,
) -> ActiveUnits:
    """A_d of every unit of ``guide``'s continuous latents over the data ``x``
    (module doc).

    ``guide(x_batch, *args, **kwargs)`` is run ``num_samples`` times on
    batches of ``batch_size`` points (every tensor argument whose first
    dimension is ``len(x)`` sliced with ``x``); its data points must sit in a
    vectorized ``pyro.plate(data_plate)``. Only the guide is needed. ``seed``
    seeds the draws without touching the global random state (None: draw
    from it).

    Raises:
        ValueError: fewer than 2 data points or samples, or a negative threshold.
    """
    n = len(x)
    if n < 2:
        raise ValueError(f"active units need at least 2 data points, got {n}")
    if num_samples < 2:
        raise ValueError(f"num_samples must be at least 2 (the Monte Carlo correction), "
                         f"got {num_samples}")
    if threshold < 0:
        raise ValueError(f"threshold must be non-negative, got {threshold}")
    means: dict[str, list[Tensor]] = {}
    noise: dict[str, list[Tensor]] = {}
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        for start in range(0, n, batch_size):
            batch_args, batch_kwargs = split_data_args((x, *args), kwargs, n, start,
                                                       start + batch_size)
            draws: dict[str, list[Tensor]] = {}
            for _ in range(num_samples):
                trace = poutine.trace(guide).get_trace(*batch_args, **batch_kwargs)
                for name, site in trace.nodes.items():
                    values = _unit_values(site, data_plate)
                    if values is not None:
                        draws.setdefault(name, []).append(values.double())
            for name, values in draws.items():
                stacked = torch.stack(values)
                means.setdefault(name, []).append(stacked.mean(0))
                noise.setdefault(name, []).append(stacked.var(0))
    variance = {name: (torch.cat(m).var(0) - torch.cat(noise[name]).mean(0) / num_samples).float()
                for name, m in means.items()}
    return ActiveUnits(variance, threshold)
