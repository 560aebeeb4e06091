"""The inference gaps of Cremer, Li & Duvenaud (2018), "Inference Suboptimality
in Variational Autoencoders", per data point.

With q the amortized guide and q* the best Gaussian for the data point (a
mean-field Gaussian fitted to that point alone, :mod:`ppvae.infer.local_gaussian`):

    log p(x) - ELBO(q) = [log p(x) - ELBO(q*)] + [ELBO(q*) - ELBO(q)]
      inference gap    =  approximation gap    +   amortization gap

The approximation gap is what the Gaussian family costs (KL(q* || p(z | x))),
the amortization gap what sharing one encoder across data points costs. Both
are non-negative: ELBO(q*) <= log p(x), and q* is at least as good as q for
the point when the fit converges (it starts at q).

Estimates: log p(x) by importance sampling with K draws (Burda et al. 2016;
:func:`ppvae.infer.log_likelihood`), by default from the defensive mixture
1/2 q* + 1/2 q*-with-3-times-the-sd (:meth:`LocalGaussian.defensive`): q*
itself is narrower than p(z | x) along correlated directions (KL(q || p)
under-disperses), which gives heavy-tailed weights (on a 2-D linear-Gaussian
posterior with correlation -0.8, k-hat up to 0.94 and ESS 5 of 2000 with q*,
k-hat below 0.2 and ESS above 750 with the mixture). Its Monte Carlo error is
about sqrt(1/ESS - 1/K) nats by the delta method (trustworthy when
k-hat < 0.7). Each ELBO is the mean of M log weights, with Monte Carlo error
sd/sqrt(M).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ppvae.infer.importance import max_plate_nesting, per_datapoint_log_weights
from ppvae.infer.local_gaussian import fit_local_gaussian
from ppvae.infer.loglik import KHAT_THRESHOLD, log_likelihood
from ppvae.infer.sites import select_datapoints

QUANTITIES = ("log_likelihood", "elbo_local", "elbo_amortized", "approximation_gap",
              "amortization_gap", "inference_gap")
PROPOSALS = ("defensive", "local", "amortized")


@dataclass(frozen=True, eq=False)
class InferenceGaps:
    """Per-datapoint log p(x), ELBOs and gaps (nats), with Monte Carlo errors.

    Attributes:
        datapoints: indices of the data points, shape (n,).
        log_likelihood: importance-weighted log p(x_i) estimates.
        elbo_local: ELBO of the best local Gaussian q*_i.
        elbo_amortized: ELBO of the amortized guide q(z | x_i).
        log_likelihood_error, elbo_local_error, elbo_amortized_error: their
            Monte Carlo standard errors per data point.
        khat: Pareto k-hat of the log p(x) estimate's importance weights.
        num_samples: K, importance samples for log p(x).
        num_elbo_samples: M, draws per ELBO.
        proposal: the proposal for log p(x): ``"defensive"`` (the mixture of q*
            and a 3 times wider q*), ``"local"`` (q*) or ``"amortized"`` (q).

    The gaps are properties, as are their Monte Carlo errors (the terms' draws
    are independent, so errors add in quadrature).
    """

    datapoints: Tensor
    log_likelihood: Tensor
    elbo_local: Tensor
    elbo_amortized: Tensor
    log_likelihood_error: Tensor
    elbo_local_error: Tensor
    elbo_amortized_error: Tensor
    khat: Tensor
    num_samples: int
    num_elbo_samples: int
    proposal: str

    @property
    def approximation_gap(self) -> Tensor:
        """log p(x_i) - ELBO(q*_i): the cost of the Gaussian family."""
        return self.log_likelihood - self.elbo_local

    @property
    def amortization_gap(self) -> Tensor:
        """ELBO(q*_i) - ELBO(q_i): the cost of amortizing over data points."""
        return self.elbo_local - self.elbo_amortized

    @property
    def inference_gap(self) -> Tensor:
        """log p(x_i) - ELBO(q_i): the sum of the two gaps."""
        return self.log_likelihood - self.elbo_amortized

    @property
    def approximation_gap_error(self) -> Tensor:
        return torch.hypot(self.log_likelihood_error, self.elbo_local_error)

    @property
    def amortization_gap_error(self) -> Tensor:
        return torch.hypot(self.elbo_local_error, self.elbo_amortized_error)

    @property
    def inference_gap_error(self) -> Tensor:
        return torch.hypot(self.log_likelihood_error, self.elbo_amortized_error)

    def _values(self, quantity: str) -> Tensor:
        if quantity not in QUANTITIES:
            raise ValueError(f"quantity must be one of {QUANTITIES}, got {quantity!r}")
        return getattr(self, quantity)

    def mean(self, quantity: str) -> float:
        """Mean over data points of one of :data:`QUANTITIES`."""
        return float(self._values(quantity).mean())

    def stderr(self, quantity: str) -> float:
        """Standard error of :meth:`mean` over data points (what a different
        sample of data points would change; 0 for one point)."""
        values = self._values(quantity)
        return float(values.std() / math.sqrt(len(values))) if len(values) > 1 else 0.0

    def mc_error(self, quantity: str) -> float:
        """Monte Carlo standard error of :meth:`mean` (what other draws on the
        same data points would change)."""
        self._values(quantity)  # checks the name
        error = getattr(self, f"{quantity}_error")
        return float(error.pow(2).sum().sqrt() / len(error))

    def to_dict(self) -> dict[str, Any]:
        """Means, standard errors and Monte Carlo errors, JSON-able."""
        out: dict[str, Any] = {q: {"mean": self.mean(q), "stderr": self.stderr(q),
                                   "mc_error": self.mc_error(q)} for q in QUANTITIES}
        out.update(num_datapoints=len(self.datapoints), num_samples=self.num_samples,
                   num_elbo_samples=self.num_elbo_samples, proposal=self.proposal,
                   khat_max=float(self.khat.max()))
        return out

    def summary(self) -> str:
        """A few lines for humans."""
        n = len(self.datapoints)
        lines = [f"Inference gaps (Cremer et al. 2018), nats per data point, mean ± s.e. over "
                 f"{n} data points (Monte Carlo error of the mean in brackets):"]
        labels = {"log_likelihood": f"log p(x) (IW, K = {self.num_samples}, {self.proposal} "
                                    "proposal)",
                  "elbo_local": "ELBO, best local Gaussian",
                  "elbo_amortized": "ELBO, amortized guide",
                  "approximation_gap": "approximation gap", "amortization_gap": "amortization gap",
                  "inference_gap": "inference gap"}
        for q in QUANTITIES:
            lines.append(f"  {labels[q]:<42} {self.mean(q):10.3f} ± {self.stderr(q):.3f} "
                         f"[{self.mc_error(q):.3f}]")
        above = int((~(self.khat <= KHAT_THRESHOLD)).sum())
        if above:
            lines.append(f"  warning: k-hat > {KHAT_THRESHOLD} for {above} of {n} data points: "
                         "their log p(x) estimates are unreliable")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"InferenceGaps(n={len(self.datapoints)}, "
                f"approximation={self.mean('approximation_gap'):.4f}, "
                f"amortization={self.mean('amortization_gap'):.4f})")


@torch.no_grad()
def elbo_per_datapoint(
    model: Callable,
    guide: Callable,
    *args: Any,
    num_samples: int = 1000,
    data_plate: str = "data",
    **kwargs: Any,
) -> tuple[Tensor, Tensor]:
    """ELBO_i = E_q[log p(x_i, z) - log q(z | x_i)] for each data point, as the
    mean of ``num_samples`` log weights, and its Monte Carlo standard error
    (the log weights' sd / sqrt(num_samples)); float64 tensors of shape (N,).
    Scale factors are ignored; uses the current random state."""
    if num_samples < 2:
        raise ValueError(f"num_samples must be at least 2 for an error, got {num_samples}")
    nesting = max_plate_nesting(model, guide, *args, **kwargs)
    n = args[0].shape[0]
    chunk = max(1, 2**14 // n)
    total = torch.zeros(n, dtype=torch.float64)
    total2 = torch.zeros(n, dtype=torch.float64)
    for start in range(0, num_samples, chunk):
        log_w = per_datapoint_log_weights(
            model, guide, args, kwargs, num_particles=min(chunk, num_samples - start),
            plate_nesting=nesting, data_plate=data_plate).double().cpu()
        total += log_w.sum(0)
        total2 += log_w.pow(2).sum(0)
    mean = total / num_samples
    var = (total2 / num_samples - mean**2).clamp_min(0) * num_samples / (num_samples - 1)
    return mean, (var / num_samples).sqrt()


def inference_gaps(
    model: Callable,
    guide: Callable,
    *args: Any,
    datapoints: Sequence[int] | Tensor | None = None,
    num_samples: int = 5000,
    num_elbo_samples: int = 2000,
    num_steps: int = 500,
    num_particles: int = 64,
    lr: float = 0.05,
    proposal: str = "defensive",
    data_plate: str = "data",
    seed: int | None = 0,
    **kwargs: Any,
) -> InferenceGaps:
    """Approximation and amortization gaps per data point (see the module docstring).

    Works for any Pyro model/guide pair with data in a vectorized
    ``pyro.plate(data_plate, N)`` and real-valued latents local to it.

    Args:
        model, guide: called as ``fn(*args, **kwargs)``; the first argument is
            the data, and tensor arguments with N rows are indexed with it.
        datapoints: indices of the data points (default: all). The local fit
            is vectorized over them; tens to a few hundred are practical.
        num_samples: K, importance samples per data point for log p(x).
        num_elbo_samples: M, draws per data point for each ELBO.
        num_steps, num_particles, lr: the local Gaussian's fit
            (:func:`ppvae.infer.local_gaussian.fit_local_gaussian`).
        proposal: the proposal for log p(x): ``"defensive"`` (default; see
            the module docstring), ``"local"`` (q*) or ``"amortized"`` (q).
        seed: seeds every draw without touching the global random state;
            None uses the current random state.
    """
    if proposal not in PROPOSALS:
        raise ValueError(f"proposal must be one of {PROPOSALS}, got {proposal!r}")
    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}")
    idx, args, kwargs = select_datapoints(args, kwargs, datapoints)
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        local = fit_local_gaussian(model, guide, *args, num_steps=num_steps,
                                   num_particles=num_particles, lr=lr, data_plate=data_plate,
                                   **kwargs)
        elbo_amortized, amortized_error = elbo_per_datapoint(
            model, guide, *args, num_samples=num_elbo_samples, data_plate=data_plate, **kwargs)
        elbo_local, local_error = elbo_per_datapoint(
            model, local, *args, num_samples=num_elbo_samples, data_plate=data_plate, **kwargs)
        proposals = {"defensive": local.defensive(), "local": local, "amortized": guide}
        iw = log_likelihood(model, proposals[proposal], *args,
                            num_samples=num_samples, data_chunk=len(idx), data_plate=data_plate,
                            seed=None, **kwargs)
    iw_error = (1.0 / iw.ess - 1.0 / num_samples).clamp_min(0).sqrt()
    return InferenceGaps(idx, iw.per_datapoint, elbo_local, elbo_amortized, iw_error,
                         local_error, amortized_error, iw.khat, num_samples, num_elbo_samples,
                         proposal)
