"""Image completion from 1, 2 or 3 given quadrants: the conditional VAE against
a deterministic network (Sohn, Lee & Yan 2015, "Learning structured output
representation using deep conditional generative models", Sec. 5.1; the task
of Pyro's CVAE tutorial).

For every number of given quadrants q (:func:`ppvae.data.quadrant_mask`) and
method, a model of the hidden pixels given the partial image c is trained on
the dynamically binarized training images and scored on the test images
(binarized once, with a fixed seed) by the conditional negative
log-likelihood of the hidden pixels, in nats per image::

    NLL = -(1 / N_test) * sum_i log p(x_i,hidden | c_i)

Methods:

``baseline``
    :class:`ppvae.models.CompletionBaseline`, one Bernoulli per hidden pixel
    from a network of c. Its log-likelihood is exact; it is computed by the
    same estimator with K = 1 (its guide is empty).
``cvae``
    :class:`ppvae.models.CVAE` with ``condition="quadrants"``; log p(x_hidden
    | c) is estimated by importance sampling with K = ``num_samples`` draws
    from q(z | x, c) (:func:`ppvae.infer.log_likelihood`), a stochastic lower
    bound on it, so the NLL reported is an upper bound in expectation.

Both train with :func:`ppvae.fit` (Adam, the ELBO; for the baseline the
ELBO is the log-likelihood), keeping the weights of the epoch with the best
validation ELBO.

Files in ``out_dir``:

- ``cvae_results.json``: ``{"config", "records"}``, rewritten atomically
  after each cell, so an interrupted run resumes where it stopped. One record
  per cell: ``quadrants``, ``method``, ``nll``, ``nll_stderr`` (over test
  images), ``elbo`` (the mean ELBO on the same draws, nats), ``num_samples``
  (K), ``num_datapoints``, ``khat_max`` and ``frac_khat_above_0.7`` (PSIS
  k-hat of the weights; None where not finite or K < 10), ``epochs`` (trained), ``train_seconds``,
  ``eval_seconds``, ``seconds``, ``dataset``.
- ``cvae_results.md``: the NLLs as a Markdown table.
- ``models/<method>_q<q>/``: the trained models (:func:`ppvae.save`).
- ``completions_q<q>.png``: partial test images, the truth, the baseline's
  prediction and several CVAE samples E[x | z, c], z ~ p(z | c).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyro
import torch

from ppvae.data import QUADRANT_COUNTS, Dataset, load_dataset
from ppvae.experiments.records import read_records, unique
from ppvae.io import atomic_write, load, save
from ppvae.models import CVAE, CompletionBaseline
from ppvae.models.cvae import ConditionalModel
from ppvae.plots import image_rows
from ppvae.train import fit

METHODS: tuple[str, ...] = ("baseline", "cvae")
RESULTS_JSON = "cvae_results.json"
RESULTS_MD = "cvae_results.md"


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
            linearly from 0 to 1 (Bowman et al. 2016). Without it a quadrant
            CVAE on digits stops using z (KL 0, every completion alike, and an
            NLL no better than the baseline's; notebooks/04_conditional).
        latent_dim: dimension of the CVAE's z.
        hidden: hidden widths of every network (decoders mirror them).
        batch_size, lr: Adam's batch size and learning rate.
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
        for name in ("epochs", "baseline_epochs", "latent_dim", "batch_size", "num_samples",
                     "num_images", "num_completions"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.kl_warmup_epochs < 0:
            raise ValueError(f"kl_warmup_epochs must be >= 0, got {self.kl_warmup_epochs}")
        for name in ("max_minutes", "patience", "max_test"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
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
    """Run every (quadrants, method) cell not yet in ``out_dir``, then write
    the table and the completion figures (see the module doc).

    Args:
        out_dir: results directory; created if needed, resumed if it holds
            results of the same dataset and settings.
        dataset: ``"digits"``, ``"mnist"`` or ``"fashion-mnist"``.
        quadrants: numbers of given quadrants, among 1, 2, 3.
        methods: among :data:`METHODS`.
        data_root: where the data files are (default ``$PPVAE_DATA``).
        progress: show progress bars.
        **hyper: the fields of :class:`CVAESettings`.

    Returns:
        What ``cvae_results.json`` holds: ``{"config", "records"}``.

    Raises:
        ValueError: bad arguments or data, or an ``out_dir`` holding results
            of other settings; all before any training.
    """
    settings = CVAESettings(**hyper)
    quadrants = unique([int(q) for q in quadrants], "quadrants")
    methods = unique(methods, "methods")
    bad = [q for q in quadrants if q not in QUADRANT_COUNTS] + [
        m for m in methods if m not in METHODS]
    if bad:
        raise ValueError(f"unknown quadrant count(s) or method(s) {bad}; quadrants are "
                         f"{list(QUADRANT_COUNTS)}, methods {list(METHODS)}")
    data = load_dataset(dataset, data_root, binarize="dynamic")
    out_dir = Path(out_dir)
    config = json.loads(json.dumps({"dataset": data.name, **asdict(settings)}))
    records = read_records(out_dir / RESULTS_JSON, config, "cvae")
    _write_results(out_dir, config, records)
    runner = _Runner(data, settings, out_dir, progress)
    done = {(r["quadrants"], r["method"]) for r in records}
    cells = [(q, m) for q in quadrants for m in methods]
    print(f"image completion on {data.name}: {len(cells)} cells, "
          f"{sum(c in done for c in cells)} done before -> {out_dir}", file=sys.stderr)
    for i, (q, method) in enumerate(cells, 1):
        line = f"[{i}/{len(cells)}] {method}, {q} given quadrant{'s' * (q > 1)}"
        if (q, method) in done:
            print(f"{line}: already in {RESULTS_JSON}", file=sys.stderr)
            continue
        record = runner.run(q, method)
        records.append(record)
        _write_results(out_dir, config, records)
        print(f"{line}: NLL {record['nll']:.2f} nats (K = {record['num_samples']}; "
              f"{record['epochs']} epochs, {record['seconds']:.0f} s)", file=sys.stderr)
    atomic_write(out_dir / RESULTS_MD, markdown_table(records, data.name).encode())
    for q in quadrants:
        runner.figure(q, methods)
    return {"config": config, "records": records}


def markdown_table(records: Iterable[dict[str, Any]], dataset: str) -> str:
    """Test NLL of the hidden pixels (nats per image) by method and number of
    given quadrants, with the standard error over test images."""
    by_cell = {(r["method"], r["quadrants"]): r for r in records}
    counts = sorted({q for _, q in by_cell})
    lines = [f"Conditional NLL of the hidden pixels on {dataset} test images (nats per image, "
             "± s.e.; CVAE: importance-weighted estimate with K samples; baseline: exact)", "",
             "| method | " + " | ".join(f"{q} quadrant{'s' * (q > 1)}" for q in counts) + " |",
             "| --- |" + " ---: |" * len(counts)]
    for method in METHODS:
        cells = [by_cell.get((method, q)) for q in counts]
        if any(cells):
            lines.append(f"| {method} | " + " | ".join(
                f"{r['nll']:.2f} ± {r['nll_stderr']:.2f} (K={r['num_samples']}, "
                f"{r['epochs']} ep)" if r else "" for r in cells) + " |")
    return "\n".join(lines) + "\n"


class _Runner:
    """Trains, scores and draws the cells of one benchmark."""

    def __init__(self, data: Dataset, settings: CVAESettings, out_dir: Path,
                 progress: bool) -> None:
        self.data = data
        self.settings = settings
        self.out_dir = out_dir
        self.progress = progress
        n = len(data.test) if settings.max_test is None else min(settings.max_test, len(data.test))
        self.test_x, self.test_y = data.test.x[:n], data.test.y[:n]

    def _path(self, q: int, method: str) -> Path:
        return self.out_dir / "models" / f"{method}_q{q}"

    def _new_model(self, q: int, method: str) -> ConditionalModel:
        s = self.settings
        if method == "baseline":
            return CompletionBaseline(self.data.image_shape, quadrants=q, hidden=s.hidden)
        return CVAE(self.data.image_shape, condition="quadrants", quadrants=q,
                    latent_dim=s.latent_dim, hidden=s.hidden)

    def run(self, q: int, method: str) -> dict[str, Any]:
        """Train, save and score one cell; return its record."""
        s = self.settings
        start = time.perf_counter()
        pyro.set_rng_seed(s.seed)
        model = self._new_model(q, method)
        history = fit(model, self.data, epochs=s.baseline_epochs if method == "baseline" else
                      s.epochs, max_minutes=s.max_minutes, patience=s.patience,
                      batch_size=s.batch_size, lr=s.lr, seed=s.seed, progress=self.progress,
                      kl_warmup_epochs=0.0 if method == "baseline" else s.kl_warmup_epochs)
        save(model, self._path(q, method))
        trained = time.perf_counter()
        k = 1 if method == "baseline" else s.num_samples  # the baseline's estimate is exact
        result = model.log_likelihood(self.test_x, num_samples=k, seed=s.seed,
                                      progress=self.progress)
        end = time.perf_counter()
        return {"quadrants": q, "method": method, "nll": -result.mean,
                "nll_stderr": result.stderr, "elbo": result.elbo_mean, "num_samples": k,
                "num_datapoints": len(self.test_x),
                "khat_max": result.khat_max if math.isfinite(result.khat_max) else None,
                "frac_khat_above_0.7": None if k < 10 else result.frac_khat_above,
                "epochs": history.epochs,
                "train_seconds": trained - start, "eval_seconds": end - trained,
                "seconds": end - start, "dataset": self.data.name}

    def figure(self, q: int, methods: Sequence[str]) -> None:
        """``completions_q<q>.png`` from the saved models of ``methods``."""
        s = self.settings
        x = self.test_x[: s.num_images]
        rows: dict[str, torch.Tensor] = {}
        for method in methods:
            path = self._path(q, method)
            if not path.is_dir():
                continue
            model = load(path)
            c = model.condition_from(x)
            rows.setdefault("input", c)
            rows.setdefault("truth", x)
            if method == "baseline":
                rows["baseline"] = model.predict(c)
            else:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(s.seed)
                    samples = model.sample(c, s.num_completions)
                rows.update({f"CVAE {i + 1}": sample for i, sample in enumerate(samples)})
        if rows:
            image_rows(rows, self.data.image_shape, path=self.out_dir / f"completions_q{q}.png",
                       title=f"{self.data.name}: {q} given quadrant{'s' * (q > 1)}; grey = "
                             "hidden; CVAE rows: E[x | z, c], z ~ p(z | c)")


def _write_results(out_dir: Path, config: dict[str, Any], records: list[dict[str, Any]]) -> None:
    """Rewrite ``cvae_results.json`` atomically."""
    atomic_write(out_dir / RESULTS_JSON,
                 (json.dumps({"config": config, "records": records}, indent=2) + "\n").encode())
