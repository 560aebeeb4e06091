"""Reconstruction error and code statistics of any model/guide pair: how
models that are not densities of x (autoencoders with point-mass guides) are
evaluated, and a reconstruction check for those that are.

For each data point x_i the guide runs once; its latent draws z_i (the code,
for a point mass) are replayed in the model, and the observed sites'
distributions p(x | z_i) give the reconstruction E[x | z_i]. Reported per
data point: the squared error |x_i - E[x | z_i]|^2 and -log p(x_i | z_i),
summed over the observed sites; and the codes z_i, for their statistics.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample
from torch import Tensor


@dataclass
class Reconstruction:
    """Reconstructions of N data points.

    Attributes:
        squared_error: |x_i - E[x | z_i]|^2 per data point, shape (N,).
        nll: -log p(x_i | z_i) per data point, shape (N,).
        codes: the guide's latents z_i, flattened and concatenated, (N, d).
    """

    squared_error: Tensor
    nll: Tensor
    codes: Tensor

    @property
    def mean(self) -> float:
        """Mean squared error per data point."""
        return float(self.squared_error.mean())

    @property
    def stderr(self) -> float:
        """Standard error of :attr:`mean` over data points."""
        n = len(self.squared_error)
        return float(self.squared_error.std() / math.sqrt(n)) if n > 1 else float("nan")

    def code_statistics(self, zero_tol: float = 1e-2, active_var: float = 1e-2
                        ) -> dict[str, float]:
        """``mean_abs_code`` (mean |z|), ``fraction_near_zero`` (share of code
        values with |z| < ``zero_tol``), ``active_units`` (code dimensions
        whose variance over the data points exceeds ``active_var``, as Burda
        et al. 2016 count them) and ``latent_dim``."""
        z = self.codes
        return {"mean_abs_code": float(z.abs().mean()),
                "fraction_near_zero": float((z.abs() < zero_tol).float().mean()),
                "active_units": int((z.var(0) > active_var).sum()) if len(z) > 1 else 0,
                "latent_dim": z.shape[-1]}

    def to_dict(self) -> dict[str, Any]:
        """The summary as JSON-able numbers."""
        return {"squared_error": self.mean, "squared_error_stderr": self.stderr,
                "nll": float(self.nll.mean()), "num_datapoints": len(self.squared_error),
                **self.code_statistics()}

    def summary(self) -> str:
        """One line: the mean squared error and the code statistics."""
        s = self.to_dict()
        return (f"squared error per point {s['squared_error']:.4g} +- "
                f"{s['squared_error_stderr']:.2g}; -log p(x | z) {s['nll']:.4g}; codes: mean "
                f"|z| {s['mean_abs_code']:.3g}, {100 * s['fraction_near_zero']:.1f}% near 0, "
                f"{s['active_units']} of {s['latent_dim']} active ({s['num_datapoints']} points)")


@torch.no_grad()
def reconstruction_error(model: Callable, guide: Callable, x: Tensor, *args: Any,
                         batch_size: int = 1024, **kwargs: Any) -> Reconstruction:
    """Reconstruct the data ``x`` (N along its first dimension) through
    ``guide`` then ``model``, in batches of ``batch_size`` points (every
    tensor argument whose first dimension is N is sliced with ``x``).

    Raises ``ValueError`` if the model observes nothing or the guide draws
    no latent.
    """
    n = len(x)
    if n == 0:
        raise ValueError("no data points: x is empty")
    parts: list[tuple[Tensor, Tensor, Tensor]] = []
    for start in range(0, n, batch_size):
        def rows(a: Any) -> Any:
            return a[start:start + batch_size] if isinstance(a, Tensor) and a.dim() and \
                len(a) == n else a

        b_args = (rows(x), *map(rows, args))
        b_kwargs = {k: rows(v) for k, v in kwargs.items()}
        guide_tr = poutine.trace(guide).get_trace(*b_args, **b_kwargs)
        model_tr = poutine.trace(poutine.replay(model, trace=guide_tr)).get_trace(
            *b_args, **b_kwargs)
        latents = [s["value"].reshape(len(b_args[0]), -1) for s in guide_tr.nodes.values()
                   if s["type"] == "sample" and not s["is_observed"]
                   and not site_is_subsample(s)]
        observed = [s for s in model_tr.nodes.values()
                    if s["type"] == "sample" and s["is_observed"]]
        if not latents or not observed:
            raise ValueError("reconstruction needs a guide with a latent site and a model "
                             "with an observed site")
        m = len(b_args[0])
        error = sum((s["value"] - s["fn"].mean).reshape(m, -1).pow(2).sum(-1) for s in observed)
        nll = -sum(s["fn"].log_prob(s["value"]).reshape(m, -1).sum(-1) for s in observed)
        parts.append((error, nll, torch.cat(latents, -1)))
    return Reconstruction(*(torch.cat(p).cpu() for p in zip(*parts)))
