"""Image completion from 1, 2 or 3 given quadrants: the conditional VAE against
a deterministic network (Sohn, Lee & Yan 2015, "Learning structured output
representation using deep conditional generative models", Sec. 5.1; the task
of Pyro's CVAE tutorial).

For every number of given quadrants q and method, a model of the hidden
pixels given the partial image c trains on the dynamically binarized training
images (:func:`ppvae.fit`, the best validation epoch kept) and is scored on the
test images (binarized once) by NLL = -(1 / N) sum_i log p(x_i,hidden | c_i),
in nats per image: exactly for ``baseline``
(:class:`ppvae.models.CompletionBaseline`, no latent variable: K = 1), by
importance sampling with K = ``num_samples`` for ``cvae``
(:class:`ppvae.models.CVAE`: an upper bound on the NLL in expectation).

Files in ``out_dir``: the sweep's ``cvae_results.{json,md,png}``
(:class:`~ppvae.experiments.sweep.Sweep`; NLL ± standard error by method and
number of quadrants), the models in ``models/<method>_q<q>/``, and
``completions_q<q>.png`` (partial test images, the truth, the baseline's
prediction and CVAE samples E[x | z, c], z ~ p(z | c)).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyro

from ppvae.config import at_least, unique
from ppvae.data import QUADRANT_COUNTS, load_dataset
from ppvae.experiments.sweep import Sweep
from ppvae.io import load, save
from ppvae.models import CVAE, CompletionBaseline
from ppvae.plots import plot_completions
from ppvae.train import fit

METHODS: tuple[str, ...] = ("baseline", "cvae")


@dataclass(frozen=True)
class CVAESettings:
    """Hyperparameters of the quadrant benchmark.

    Attributes:
        epochs: maximum epochs of each CVAE.
        baseline_epochs: maximum epochs of each baseline.
        max_minutes: training time limit of each model (None: none).
        patience: early stopping after this many epochs without a better
            validation ELBO (None: none).
        kl_warmup_epochs: epochs over which the CVAE's KL weight rises
            linearly from 0 to 1 (without it a quadrant CVAE on digits stops
            using z: notebooks/04_conditional).
        latent_dim: dimension of the CVAE's z.
        hidden: hidden widths of every network (decoders mirror them).
        batch_size: Adam's batch size.
        lr: Adam's learning rate.
        num_samples: K, importance samples per test image for the CVAE.
        max_test: score the first ``max_test`` test images (None: all).
        num_images: test images in the completion figures.
        num_completions: CVAE samples per image in the figures.
        seed: initial weights, batch order, binarization and draws.
    """

    epochs: int = 50
    baseline_epochs: int = 50
    max_minutes: float | None = None
    patience: int | None = 5
    kl_warmup_epochs: float = 10.0
    latent_dim: int = 16
    hidden: tuple[int, ...] = (500, 500)
    batch_size: int = 128
    lr: float = 1e-3
    num_samples: int = 100
    max_test: int | None = None
    num_images: int = 10
    num_completions: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        at_least(self, 1, ("epochs", "baseline_epochs", "latent_dim", "batch_size", "num_samples",
                           "num_images", "num_completions", "patience", "max_test"))
        at_least(self, 0, ("kl_warmup_epochs",))
        at_least(self, 0, ("lr", "max_minutes"), strictly=True)
        object.__setattr__(self, "hidden", tuple(self.hidden))


def run_cvae(
    out_dir: str | os.PathLike,
    dataset: str = "digits",
    quadrants: Sequence[int] = QUADRANT_COUNTS,
    methods: Sequence[str] = METHODS,
    data_root: str | os.PathLike | None = None,
    progress: bool = True,
    **hyper: Any,
) -> dict[str, Any]:
    """Run every (quadrants, method) cell not yet in ``out_dir`` (created, or
    resumed if it holds results of the same data set and settings), then write
    the table and figures (see the module doc); return the results file's
    content. Bad arguments fail before any training.

    Args:
        out_dir: the results directory.
        dataset: ``"digits"``, ``"mnist"`` or ``"fashion-mnist"``.
        quadrants: numbers of given quadrants, among 1, 2, 3.
        methods: among :data:`METHODS`.
        data_root: where the data files are (default ``$PPVAE_DATA``).
        progress: show progress.
        **hyper: the fields of :class:`CVAESettings`.
    """
    s = CVAESettings(**hyper)
    quadrants = unique([int(q) for q in quadrants], "quadrants", QUADRANT_COUNTS)
    methods = unique(methods, "methods", METHODS)
    data = load_dataset(dataset, data_root, binarize="dynamic")
    out_dir = Path(out_dir)
    sweep = Sweep(out_dir, "cvae", {"dataset": data.name, **asdict(s)}, key=("quadrants", "method"))
    test_x = data.test.x[: s.max_test]

    def run(cell: dict[str, Any]) -> dict[str, Any]:
        q, method = cell["quadrants"], cell["method"]
        start = time.perf_counter()
        pyro.set_rng_seed(s.seed)
        baseline = method == "baseline"
        model = (CompletionBaseline(data.image_shape, quadrants=q, hidden=s.hidden) if baseline
                 else CVAE(data.image_shape, condition="quadrants", quadrants=q,
                           latent_dim=s.latent_dim, hidden=s.hidden))
        history = fit(model, data, epochs=s.baseline_epochs if baseline else s.epochs,
                      max_minutes=s.max_minutes, patience=s.patience, batch_size=s.batch_size,
                      lr=s.lr, seed=s.seed, progress=progress,
                      kl_warmup_epochs=0.0 if baseline else s.kl_warmup_epochs)
        save(model, out_dir / "models" / f"{method}_q{q}")
        trained = time.perf_counter()
        k = 1 if baseline else s.num_samples  # the baseline's estimate is exact
        result = model.log_likelihood(test_x, num_samples=k, seed=s.seed, progress=progress)
        end = time.perf_counter()
        return {"nll": -result.mean, "nll_stderr": result.stderr, "elbo": result.elbo_mean,
                "num_samples": k, "num_datapoints": len(test_x),
                "khat_max": result.khat_max if math.isfinite(result.khat_max) else None,
                "frac_khat_above_0.7": None if k < 10 else result.frac_khat_above,
                "epochs": history.epochs, "train_seconds": trained - start,
                "eval_seconds": end - trained, "seconds": end - start, "dataset": data.name}

    records = sweep.run([{"quadrants": q, "method": m} for q in quadrants for m in methods], run,
                        lambda r: f"NLL {r['nll']:.2f} nats (K = {r['num_samples']}; "
                                  f"{r['epochs']} epochs, {r['seconds']:.0f} s)")
    sweep.report("method", "quadrants", "nll", "NLL of the hidden pixels (nats per image)",
                 f" (± standard error over test images; CVAE: K = {s.num_samples} importance "
                 "samples, an upper bound in expectation; baseline: exact)", error="nll_stderr",
                 digits=2)
    for q in quadrants:
        models = [load(p) for m in methods if (p := out_dir / "models" / f"{m}_q{q}").is_dir()]
        plot_completions(models, test_x[: s.num_images], s.num_completions, seed=s.seed,
                         path=out_dir / f"completions_q{q}.png",
                         title=f"{data.name}: {q} given quadrant{'s' * (q > 1)}; grey = hidden; "
                               "CVAE rows: E[x | z, c], z ~ p(z | c)")
    return {"config": sweep.config, "records": records, "summary": sweep.summary}

