"""Training objectives by name.

- ``"elbo"``: the ELBO, Monte Carlo estimate (Pyro's ``Trace_ELBO``);
- ``"elbo-analytic"``: the same bound with the closed-form KL(q || p) where the
  pair allows it (Pyro's ``TraceMeanField_ELBO``), a lower-variance estimate;
- ``"iwae"``: the per-datapoint importance-weighted bound with K =
  ``num_particles`` (:class:`ppvae.infer.iwae.IWAE`), optionally with DReG.

With several particles the ELBOs draw them vectorized, in one pass.
"""

from __future__ import annotations

import math
from typing import Any

from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

from ppvae.infer.iwae import IWAE

OBJECTIVES = ("elbo", "elbo-analytic", "iwae")


def make_objective(name: str = "elbo", num_particles: int = 1, *, dreg: bool = False,
                   max_plate_nesting: float = math.inf) -> Any:
    """The objective ``name`` (one of :data:`OBJECTIVES`) with ``num_particles``
    vectorized samples per data point; ``dreg`` applies to ``"iwae"`` only.
    ``max_plate_nesting`` is the pair's number of plate dimensions (by
    default Pyro finds it on the first call)."""
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; choose one of {list(OBJECTIVES)}")
    if num_particles < 1:
        raise ValueError(f"num_particles must be at least 1, got {num_particles}")
    if dreg and name != "iwae":
        raise ValueError("dreg (doubly-reparameterized gradients) applies to objective='iwae' only")
    if name == "iwae":
        return IWAE(num_particles, dreg=dreg)
    cls = Trace_ELBO if name == "elbo" else TraceMeanField_ELBO
    return cls(num_particles=num_particles, vectorize_particles=num_particles > 1,
               max_plate_nesting=max_plate_nesting)
