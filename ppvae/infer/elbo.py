"""The evidence lower bound, evaluated over a data set.

For a model/guide pair with data in ``pyro.plate("data")`` the ELBO of data
point i is

    ELBO_i = E_{q(z|x_i)}[log p(x_i, z) - log q(z | x_i)] <= log p(x_i)

(Jordan et al. 1999; Kingma & Welling 2014). ``"elbo"`` estimates it by Monte
Carlo (Pyro's :class:`~pyro.infer.Trace_ELBO`); ``"elbo-analytic"`` uses the
closed-form KL(q || p) where the pair allows it (Pyro's
:class:`~pyro.infer.TraceMeanField_ELBO`), a lower-variance estimate of the
same bound.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ppvae.infer.importance import max_plate_nesting
from ppvae.infer.loglik import split_data_args
from ppvae.infer.objectives import make_objective

@torch.no_grad()
def evaluate_elbo(
    model: Callable[..., Any],
    guide: Callable[..., Any],
    x: Tensor,
    *args: Any,
    num_particles: int = 1,
    batch_size: int = 1024,
    objective: str = "elbo",
    **kwargs: Any,
) -> float:
    """Mean ELBO per data point (nats) of ``x`` under ``model``/``guide``.

    ``x`` is split into batches of ``batch_size`` along its first dimension,
    with every other tensor argument whose first dimension is ``len(x)`` (a
    condition, labels), and ``model(x_batch, *args, **kwargs)`` is called on
    each; the estimate averages ``num_particles`` samples per data point;
    ``objective`` may be
    ``"elbo"`` or ``"elbo-analytic"`` (see :mod:`ppvae.infer.objectives`).
    """
    first_args, first_kwargs = split_data_args((x, *args), kwargs, len(x), 0, batch_size)
    nesting = max_plate_nesting(model, guide, *first_args, **first_kwargs)
    elbo = make_objective(objective, num_particles, max_plate_nesting=nesting)
    total = 0.0
    for start in range(0, len(x), batch_size):
        batch_args, batch_kwargs = split_data_args((x, *args), kwargs, len(x), start,
                                               start + batch_size)
        total -= elbo.loss(model, guide, *batch_args, **batch_kwargs)
    return total / len(x)
