"""Importance-weighted estimates of log p(x), one per data point.

For each data point x_i and K draws z_{k,i} ~ q(z | x_i) the estimate is

    log p(x_i) ~= log (1/K) sum_k w_{k,i},   w_{k,i} = p(x_i, z_{k,i}) / q(z_{k,i} | x_i)

(Burda, Grosse & Salakhutdinov 2016, "Importance Weighted Autoencoders"). It is
a stochastic lower bound: E[estimate] <= log p(x_i), increasing in K and
consistent as K -> infinity; on the same draws, the mean log weight is the ELBO.

Diagnostics per data point:
- ESS = (sum_k w_k)^2 / sum_k w_k^2, the effective sample size of the weights;
- Pareto k-hat of the weights' right tail (:mod:`ppvae.infer.psis`; Vehtari,
  Simpson, Gelman, Yao & Gabry 2024); k-hat > 0.7 marks an estimate whose
  variance may be infinite in practice, i.e. unreliable (Yao, Vehtari,
  Simpson & Gelman 2018, "Yes, but did it work?").

The draws are processed in chunks of data points and of particles, so memory
does not grow with K: per data point only running sums and the largest
ceil(min(K/5, 3 sqrt(K))) + 1 log weights (all that k-hat depends on) are kept.
Each data chunk draws from its own random stream, seeded by (seed, chunk
index), so with ``distributed=True`` the processes of a ``torch.distributed``
group can share the chunks and still return exactly the single-process values.

The log weights of a pass come from Pyro's traces
(:func:`ppvae.infer.importance.per_datapoint_log_weights`), or, for a ppvae
model that declares a pure-torch twin (:mod:`ppvae.accel`), from the twin,
which draws the same numbers and returns the same weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import pyro
import torch
import torch.distributed as dist
from torch import Tensor

from ppvae import accel
from ppvae.infer.importance import max_plate_nesting, per_datapoint_log_weights
from ppvae.infer.psis import KHAT_THRESHOLD, MIN_SAMPLES_FOR_KHAT, kept_size, pareto_khat


@dataclass(frozen=True, eq=False)
class LogLikelihood:
    """Per-datapoint importance-weighted log-likelihood estimates (nats).

    Attributes:
        per_datapoint: log p(x_i) estimates, shape (N,).
        elbo: the ELBO of each data point on the same draws, shape (N,): the
            mean log weight (with an enumerated site such as M2's y summed out
            inside each weight, which makes it at least the usual M2 ELBO).
        ess: effective sample size of each point's weights, in [1, K].
        khat: Pareto k-hat of each point's weights (NaN if K < 50; -inf where
            a point's largest weights are all equal, a bounded tail: constant
            weights make the estimate exact).
        num_samples: K, the importance samples per data point.
        by_num_samples: {k: per-datapoint estimates from the first k draws}
            for k = 1, 10, 100, ... below K: how the estimate grows with k,
            on nested subsets of the same draws.
    """

    per_datapoint: Tensor
    elbo: Tensor
    ess: Tensor
    khat: Tensor
    num_samples: int
    by_num_samples: dict[int, Tensor]

    @property
    def mean(self) -> float:
        """Mean log p(x) estimate over data points."""
        return float(self.per_datapoint.mean())

    @property
    def stderr(self) -> float:
        """Standard error of :attr:`mean` over data points (0 for one point)."""
        n = len(self.per_datapoint)
        return float(self.per_datapoint.std() / math.sqrt(n)) if n > 1 else 0.0

    @property
    def elbo_mean(self) -> float:
        return float(self.elbo.mean())

    @property
    def khat_max(self) -> float:
        return float(self.khat.max())

    @property
    def frac_khat_above(self) -> float:
        """Fraction of data points with k-hat above 0.7 (NaN k-hats count as above)."""
        return float((~(self.khat <= KHAT_THRESHOLD)).double().mean())

    def curve(self) -> dict[int, tuple[float, float]]:
        """{k: (mean, stderr)} of the estimate from the first k draws, k up to K."""
        per_k = {**self.by_num_samples, self.num_samples: self.per_datapoint}
        n = len(self.per_datapoint)
        return {k: (float(v.mean()), float(v.std() / math.sqrt(n)) if n > 1 else 0.0)
                for k, v in sorted(per_k.items())}

    def difference(self, other: LogLikelihood) -> tuple[float, float]:
        """The paired comparison with ``other``, estimated on the same data
        points in the same order: the mean of d_i = log p_self(x_i) -
        log p_other(x_i) and its standard error sd(d) / sqrt(N).

        Where the two estimates move together over the data points (as two
        models' do: hard images are hard for both), the paired standard error
        is far below sqrt(stderr_self^2 + stderr_other^2), which treats them
        as independent. ``ValueError`` if the numbers of data points differ.
        """
        a, b = self.per_datapoint, other.per_datapoint
        if a.shape != b.shape:
            raise ValueError(f"a paired difference needs the same data points: {len(a)} "
                             f"estimates here, {len(b)} in the other")
        d = a.double() - b.double()
        n = len(d)
        return float(d.mean()), float(d.std() / math.sqrt(n)) if n > 1 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The summary written to ``loglik.json``."""
        return {"mean": self.mean, "stderr": self.stderr, "elbo": self.elbo_mean,
                "num_samples": self.num_samples, "num_datapoints": len(self.per_datapoint),
                "khat_max": self.khat_max if math.isfinite(self.khat_max) else None,
                "frac_khat_above_0.7": self.frac_khat_above,
                "ess_mean": float(self.ess.mean()),
                "by_num_samples": {str(k): v[0] for k, v in self.curve().items()}}

    def summary(self) -> str:
        """A few lines for humans."""
        lines = [
            f"log p(x) ~= {self.mean:.3f} +- {self.stderr:.3f} nats per data point "
            f"(IW estimate, K = {self.num_samples}, {len(self.per_datapoint)} data points)",
            f"ELBO on the same draws: {self.elbo_mean:.3f} (gap {self.mean - self.elbo_mean:.3f})",
            f"ESS per data point: mean {float(self.ess.mean()):.1f}, min {float(self.ess.min()):.1f}"
            f" of {self.num_samples}",
        ]
        if self.num_samples < MIN_SAMPLES_FOR_KHAT:
            lines.append(f"Pareto k-hat: not computed (needs K >= {MIN_SAMPLES_FOR_KHAT})")
        else:
            lines.append(
                f"Pareto k-hat: max {self.khat_max:.2f}; {100 * self.frac_khat_above:.1f}% of "
                f"data points above {KHAT_THRESHOLD} (estimate unreliable there)"
            )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"LogLikelihood(mean={self.mean:.4f}, stderr={self.stderr:.4f}, K={self.num_samples})"


class WeightAccumulator:
    """Running per-datapoint statistics of log weights arriving in particle chunks."""

    def __init__(self, num_data: int, num_samples: int) -> None:
        self.num_samples = num_samples
        self.lse = torch.full((num_data,), -math.inf, dtype=torch.float64)
        self.lse2 = self.lse.clone()
        self.total = torch.zeros(num_data, dtype=torch.float64)
        self.keep = kept_size(num_samples)
        self._tail = [torch.empty(num_data, 0, dtype=torch.float64)]  # holds the largest
        self._width = 0
        self.seen = 0
        self.checkpoints = [10**j for j in range(int(math.log10(num_samples)) + 1)
                            if 10**j < num_samples]
        self.partial: dict[int, Tensor] = {}

    def next_chunk(self, particle_chunk: int) -> int:
        """Particles to draw next: at most ``particle_chunk``, stopping at the
        next checkpoint so the running estimate can be recorded there."""
        stop = next((c for c in self.checkpoints if c > self.seen), self.num_samples)
        return min(particle_chunk, stop - self.seen)

    def add(self, log_w: Tensor) -> None:
        """Add a chunk of log weights of shape (particles, data points)."""
        log_w = log_w.detach().to(device="cpu", dtype=torch.float64)
        self.lse = torch.logaddexp(self.lse, torch.logsumexp(log_w, 0))
        self.lse2 = torch.logaddexp(self.lse2, torch.logsumexp(2 * log_w, 0))
        self.total += log_w.sum(0)
        self._tail.append(log_w.T)
        self._width += log_w.shape[0]
        if self._width > 4 * self.keep:  # merge now and then, not at every chunk
            self.top  # noqa: B018 (the property merges)
        self.seen += log_w.shape[0]
        if self.seen in self.checkpoints:
            self.partial[self.seen] = self.lse - math.log(self.seen)

    @property
    def top(self) -> Tensor:
        """The largest log weights seen so far (at most :func:`kept_size`
        of K per data point), shape (data points, kept)."""
        if len(self._tail) > 1:
            merged = torch.cat(self._tail, dim=1)
            self._tail = [merged.topk(min(self.keep, merged.shape[1]), dim=1).values]
            self._width = self._tail[0].shape[1]
        return self._tail[0]

    def result(self) -> tuple[Tensor, Tensor, Tensor, Tensor, dict[int, Tensor]]:
        """(log-mean-exp, mean log weight, ESS, k-hat, partial estimates) per data point."""
        k = self.num_samples
        return (self.lse - math.log(k), self.total / k, torch.exp(2 * self.lse - self.lse2),
                pareto_khat(self.top, k), self.partial)


def split_data_args(args: tuple, kwargs: dict, n: int, start: int, stop: int) -> tuple[tuple, dict]:
    """Slice every tensor argument whose first dimension is n (the data) to [start:stop]."""
    def cut(a: Any) -> Any:
        return a[start:stop] if isinstance(a, Tensor) and a.dim() > 0 and a.shape[0] == n else a
    return tuple(cut(a) for a in args), {k: cut(v) for k, v in kwargs.items()}


@torch.no_grad()
def log_likelihood(
    model: Callable,
    guide: Callable,
    *args: Any,
    num_samples: int = 1000,
    data_chunk: int | None = None,
    particle_chunk: int | None = None,
    data_plate: str = "data",
    seed: int | None = 0,
    progress: bool = False,
    distributed: bool = False,
    accel: bool = True,
    **kwargs: Any,
) -> LogLikelihood:
    """Importance-weighted estimate of log p(x_i) for every data point.

    Works for any Pyro ``model``/``guide`` pair whose data points sit in a
    vectorized ``pyro.plate(data_plate, N)`` and whose latents are all local to
    it (every sample site inside that plate), ppvae's or a user's own. Every
    latent of the model must be proposed by the guide and every latent of
    the guide must be a latent of the model; the guide's proposals must have
    densities (no point masses) and the model's latents proper priors.

    Args:
        model, guide: called as ``fn(*args, **kwargs)``.
        *args: the first is the data (N along its first dimension); every tensor
            argument, positional or keyword, whose first dimension is N is split
            with it into chunks.
        num_samples: K, importance samples per data point.
        data_chunk, particle_chunk: data points and particles per vectorized
            pass. Defaults: the data split into equal chunks of at most 32
            points, and about 2^12 (particle, data point) pairs per pass. The
            estimate does not depend on them beyond Monte Carlo noise.
        data_plate: name of the plate over data points.
        seed: seeds the draws, chunk by chunk from (seed, chunk index); the
            global random state is left as it was. None draws the seed from
            the global random state (which advances), so that repeated calls
            give independent estimates.
        progress: show a progress bar over data chunks (on a terminal only).
        distributed: share the data chunks among the processes of the default
            ``torch.distributed`` process group (e.g. set up by Lightning
            Fabric or torchrun), every one of which must call this with the
            same arguments; each evaluates every W-th chunk and all return the
            whole result, in data order. With a seed it equals the
            single-process result exactly (up to floating-point differences
            between devices); with ``seed=None`` each process draws its own.
        accel: use the pair's pure-torch twin where it has one (a ppvae model's
            own ``model``/``guide``, :func:`ppvae.accel.twin_parts`): the
            same draws and the same estimate, faster. False runs every pass
            through Pyro.
        **kwargs: passed to model and guide.

    Scale factors in the traces (``poutine.scale``, a beta-VAE's beta) are
    ignored: they weight objectives, they are not part of the density.
    """
    if not args or not isinstance(args[0], Tensor):
        raise ValueError("the first positional argument must be the data tensor")
    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}")
    if distributed and not (dist.is_available() and dist.is_initialized()):
        raise ValueError("distributed=True needs an initialized torch.distributed process group")
    rank, world_size = (dist.get_rank(), dist.get_world_size()) if distributed else (0, 1)
    n = args[0].shape[0]
    if n == 0:
        raise ValueError("no data points to evaluate")
    if seed is None:
        seed = int(torch.randint(2**62, ()).item())
    data_chunk = data_chunk or math.ceil(n / math.ceil(n / 32))  # equal chunks, none tiny
    particle_chunk = min(num_samples, particle_chunk or max(1, 2**12 // data_chunk))
    results = _estimate(model, guide, args, kwargs, num_samples, data_chunk, particle_chunk,
                        data_plate, seed, progress, rank, world_size, accel)
    if distributed:
        gathered: list[dict | None] = [None] * world_size
        dist.all_gather_object(gathered, results)
        results = {k: v for part in gathered for k, v in part.items()}
    results = [results[k] for k in sorted(results)]
    per_datapoint, elbo, ess, khat = (torch.cat(parts) for parts in list(zip(*results))[:4])
    partial = {k: torch.cat([r[4][k] for r in results]) for k in results[0][4]}
    return LogLikelihood(per_datapoint, elbo, ess, khat, num_samples, partial)


def _passes(model: Callable, guide: Callable, args: tuple, kwargs: dict, nesting: int,
            data_plate: str, use_twin: bool) -> Callable[[int], Tensor]:
    """A function of K giving one pass's log weights ``(K, data points)`` for
    the data of ``args``: from the pair's pure-torch twin if ``use_twin`` and it
    has one (:class:`ppvae.accel.LogWeights`), else through Pyro."""
    parts = accel.twin_parts(model, guide, args, kwargs) if use_twin else None
    if parts is not None:
        return accel.LogWeights(parts)
    return partial(per_datapoint_log_weights, model, guide, args, kwargs,
                   plate_nesting=nesting, data_plate=data_plate)


def _estimate(model: Callable, guide: Callable, args: tuple, kwargs: dict, num_samples: int,
              data_chunk: int, particle_chunk: int, data_plate: str, seed: int,
              progress: bool, rank: int, world_size: int, use_twin: bool) -> dict[int, tuple]:
    """The accumulated results of this process's data chunks, by chunk index."""
    n = args[0].shape[0]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        first_args, first_kwargs = split_data_args(args, kwargs, n, 0, data_chunk)
        # one pass through Pyro with its checks of the pair (and, while Pyro's
        # validation is on, of distribution arguments and values); the passes
        # after it repeat the same computation on new draws, unchecked
        nesting = max_plate_nesting(model, guide, *first_args, **first_kwargs)
        per_datapoint_log_weights(model, guide, first_args, first_kwargs, num_particles=1,
                                  plate_nesting=nesting, data_plate=data_plate)
        results = {}
        chunks = range(rank, math.ceil(n / data_chunk), world_size)
        if progress and rank == 0:
            from tqdm.auto import tqdm

            chunks = tqdm(chunks, desc=f"log p(x), K={num_samples}", unit="chunk",
                          disable=None)  # None: no bar without a terminal
        with pyro.validation_enabled(False):
            for chunk in chunks:
                torch.manual_seed(hash((seed, chunk)) & (2**63 - 1))
                start = chunk * data_chunk
                chunk_args, chunk_kwargs = split_data_args(args, kwargs, n, start,
                                                           start + data_chunk)
                acc = WeightAccumulator(min(data_chunk, n - start), num_samples)
                weights = _passes(model, guide, chunk_args, chunk_kwargs, nesting, data_plate,
                                  use_twin)
                while acc.seen < num_samples:
                    acc.add(weights(num_particles=acc.next_chunk(particle_chunk)))
                results[chunk] = acc.result()
    return results
