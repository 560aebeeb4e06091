"""Distributions with their parameters cut from the autograd graph."""

from __future__ import annotations

import pyro.distributions as dist
from torch import Tensor


def detach_distribution(fn: dist.Distribution) -> dist.Distribution:
    """A copy of ``fn`` whose parameters are cut from the autograd graph (its
    log density then carries only the path derivative through the value, as
    doubly-reparameterized gradients need). Supports ``Independent`` wrappers
    and distributions that declare their parameters in ``arg_constraints``."""
    if isinstance(fn, dist.Independent):
        return dist.Independent(detach_distribution(fn.base_dist), fn.reinterpreted_batch_ndims)
    params = {name: getattr(fn, name).detach() for name in fn.arg_constraints
              if name in vars(fn) and isinstance(getattr(fn, name), Tensor)}
    if not params:
        raise NotImplementedError(f"cannot detach the parameters of {type(fn).__name__}")
    return type(fn)(**params)
