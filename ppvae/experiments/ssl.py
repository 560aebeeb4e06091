"""Semi-supervised classification over label counts and seeds: M2, M1+M2 and
a supervised baseline (Kingma, Rezende, Mohamed & Welling 2014, "Semi-supervised
learning with deep generative models", NeurIPS).

Every cell (method, n labels, seed s) keeps the labels of n training images,
n / C per class, chosen by s (:func:`ppvae.data.label_split`; never from the
validation or test split), trains, and scores the test error, the fraction of
test images whose predicted class is wrong::

    error = (1 / N_test) * sum_i [argmax_y q(y | x_i) != y_i]

Methods:

``m2``
    The M2 model :class:`ppvae.models.SSVAE`, p(y) p(z) p(x | y, z), on the
    dynamically binarized images (or, with a likelihood for grey levels,
    ``SSLSettings.likelihood``, on the grey images themselves), trained to
    maximize (Kingma et al., eq. 9)::

        sum_labelled [ELBO(x, y) + alpha * log q(y | x)] + sum_unlabelled U(x),
        U(x) = sum_y q(y | x) [ELBO(x, y) - log q(y | x)]

    and classifying with q(y | x).
``m1m2``
    The stacked model M1+M2, p(y) p(z2) p(z1 | y, z2) p(x | z1). M1 is a VAE,
    p(z1) p(x | z1), trained on all training images (its labels unused); each
    image becomes q(z1 | x) = N(mu(x), diag sigma(x)^2), restricted to its
    active dimensions (those whose means mu vary over the training images
    with a standard deviation above :data:`ACTIVE_CODE_STD`). M2 is then
    trained on these codes as its data, with a Gaussian p(z1 | y, z2) and the
    same labels: every batch holds fresh draws z1 ~ q(z1 | x), as in the
    paper's code, which is the stacked model's objective with z1 sampled
    (a :attr:`ppvae.data.Split.scale` on the codes of the training images).
    It classifies the means mu of the test images. With the Bernoulli likelihood
    M1 takes binary images, so the training images are binarized once
    (seeded) for their codes, as the validation and test images are. M1 is
    trained once per seed and kept in
    ``out_dir/m1/seed<s>/`` for every label count.
``supervised``
    The baseline: the network of M2's q(y | x) trained by cross-entropy on the
    n labelled images alone (:func:`ppvae.train.classifier.fit_classifier`).

The train/validation division and the binarization of validation and test
images are fixed (data seed 0); a cell's seed chooses the labels, the initial
weights, the batch order and the dynamic binarization.

Files in ``out_dir``:

- ``ssl_results.json``: ``{"config", "records", "summary"}``, rewritten
  atomically after each cell, so an interrupted run resumes where it
  stopped. One record per finished cell: ``method``, ``labels``, ``seed``,
  ``test_error``, ``epochs``, ``seconds`` (the cell's wall time; for the
  first ``m1m2`` cell of a seed it includes training M1), ``dataset``;
  ``m1m2`` adds ``m1_epochs``, ``m1_seconds``, ``m1_dims`` (the active
  dimensions kept) and ``test_error_sampled``: the test error when each
  image is classified by q(y | z1) averaged over 32 draws z1 ~ q(z1 | x)
  (a Monte Carlo estimate of the stacked model's q(y | x)) instead of at
  the mean of q(z1 | x). The summary holds the mean
  and standard deviation of the test error over seeds per method and label
  count.
- ``ssl_results.md``: the summary as a Markdown table, in %.
- ``ssl_errors.png``: test error against the number of labels.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyro
import torch
from torch import Tensor

from ppvae.data import Dataset, Split, binarize, label_split, load_dataset
from ppvae.experiments.records import read_records, unique
from ppvae.io import atomic_write, load, save
from ppvae.models import SSVAE, VAE
from ppvae.nn import activation, make_encoder
from ppvae.pieces import LIKELIHOODS
from ppvae.plots import plot_ssl_errors
from ppvae.train import fit
from ppvae.train.classifier import fit_classifier
from ppvae.train.plans import check_labelled_weight

METHODS: tuple[str, ...] = ("m2", "m1m2", "supervised")

#: M1+M2 keeps the dimensions of z1 whose posterior means vary over the
#: training images with a standard deviation above this; the others are
#: inactive (q(z1 | x) is the prior there) and carry nothing about x.
ACTIVE_CODE_STD = 0.1
RESULTS_JSON = "ssl_results.json"
RESULTS_MD = "ssl_results.md"
FIGURE = "ssl_errors.png"


@dataclass(frozen=True)
class SSLSettings:
    """Hyperparameters of a semi-supervised experiment.

    Attributes:
        epochs: epochs of M2 (in ``m2`` and ``m1m2``).
        m1_epochs: epochs of the M1 VAE.
        supervised_epochs: epochs of the supervised baseline.
        latent_dim: dimension of M2's z.
        m1_latent_dim: dimension of M1's z1, the codes M2 sees in ``m1m2``.
        m1_hidden: hidden widths of M1's encoder (its decoder mirrors them;
            None: ``hidden``). Kingma et al. use two layers of 600 for M1 and
            one of 500 for M2.
        m1_activation: M1's hidden activation (:data:`ppvae.nn.ACTIVATIONS`);
            the paper's code uses softplus.
        m1_lr: M1's Adam learning rate (None: ``lr``).
        hidden: hidden widths of every VAE's encoder (decoders mirror them).
        classifier_hidden: hidden widths of q(y | x) and of the baseline
            (None: ``hidden``).
        alpha: weight of M2's classification term alpha * log q(y | x), per
            labelled image.
        labelled_weight: weight of a labelled image against an unlabelled one
            in M2's batches: a number, or ``"dataset"`` for the paper's
            objective summed over the training set (:func:`ppvae.fit`).
        labelled_per_batch: labelled points in each M2 batch.
        batch_size: unlabelled points in each M2 batch; M1's batch size.
        lr: Adam learning rate of every model.
        max_minutes: training-time limit of each M2 and M1 fit, in minutes
            (None: no limit); the records keep the epochs each fit reached.
        likelihood: the observation model of M2 (and of M1) on the images:
            ``"bernoulli"`` on dynamically binarized images (the test images
            binarized once), or ``"continuous-bernoulli"`` / ``"gaussian"``
            on the grey levels themselves; every method, the baseline too,
            then sees the images in that form.
    """

    epochs: int = 100
    m1_epochs: int = 100
    supervised_epochs: int = 100
    latent_dim: int = 8
    m1_latent_dim: int = 16
    m1_hidden: tuple[int, ...] | None = None
    m1_activation: str = "relu"
    m1_lr: float | None = None
    hidden: tuple[int, ...] = (256, 128)
    classifier_hidden: tuple[int, ...] | None = None
    alpha: float = 50.0
    labelled_weight: float | str = 1.0
    labelled_per_batch: int = 16
    batch_size: int = 32
    lr: float = 1e-3
    max_minutes: float | None = None
    likelihood: str = "bernoulli"

    def __post_init__(self) -> None:
        if self.likelihood not in LIKELIHOODS:
            raise ValueError(f"unknown likelihood {self.likelihood!r}; choose one of "
                             f"{sorted(LIKELIHOODS)}")
        for name in ("epochs", "m1_epochs", "supervised_epochs", "latent_dim", "m1_latent_dim",
                     "labelled_per_batch", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_minutes is not None and self.max_minutes <= 0:
            raise ValueError(f"max_minutes must be positive, got {self.max_minutes}")
        if self.alpha < 0 or self.lr <= 0:
            raise ValueError(f"alpha must be >= 0 and lr > 0, got {self.alpha} and {self.lr}")
        if self.m1_lr is not None and self.m1_lr <= 0:
            raise ValueError(f"m1_lr must be positive, got {self.m1_lr}")
        activation(self.m1_activation)  # an unknown name fails before any training
        object.__setattr__(self, "labelled_weight", check_labelled_weight(self.labelled_weight))
        object.__setattr__(self, "hidden", tuple(self.hidden))
        for name in ("classifier_hidden", "m1_hidden"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, tuple(getattr(self, name)))


def run_ssl(
    out_dir: str | os.PathLike,
    dataset: str = "digits",
    labels: Sequence[int] = (100,),
    seeds: Sequence[int] = (0,),
    methods: Sequence[str] = METHODS,
    data_root: str | os.PathLike | None = None,
    epochs: int = 100,
    progress: bool = True,
    accelerator: str = "cpu",
    **hyper: Any,
) -> dict[str, Any]:
    """Run every (method, label count, seed) cell not yet in ``out_dir`` and
    write the results, the Markdown table and the figure (see the module doc).

    Args:
        out_dir: results directory; created if needed, resumed if it holds
            results of the same dataset and settings.
        dataset: ``"digits"``, ``"mnist"`` or ``"fashion-mnist"``.
        labels: numbers of labelled training images, each a positive multiple
            of the number of classes.
        seeds: one cell per seed for each method and label count.
        methods: among :data:`METHODS`.
        data_root: where the data files are (default ``$PPVAE_DATA``).
        epochs: epochs of M2.
        progress: show progress bars.
        accelerator: Lightning accelerator for M2 and M1 (``"cpu"``, ``"gpu"``,
            ``"auto"``); not part of the settings, so a sweep may resume on
            another machine.
        **hyper: the other fields of :class:`SSLSettings`.

    Returns:
        What ``ssl_results.json`` holds: ``{"config", "records", "summary"}``.

    Raises:
        ValueError: bad arguments, label counts or data, or an ``out_dir``
            holding results of other settings; all before any training.
    """
    settings = SSLSettings(epochs=epochs, **hyper)
    labels = unique([int(n) for n in labels], "labels")
    seeds = unique([int(s) for s in seeds], "seeds")
    methods = unique(methods, "methods")
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {list(METHODS)}")
    data = load_dataset(dataset, data_root,
                        binarize="dynamic" if settings.likelihood == "bernoulli" else None)
    for n in labels:
        label_split(data.train, n, data.num_classes)  # a bad count fails before any training
    out_dir = Path(out_dir)
    config = json.loads(json.dumps({"dataset": data.name, **asdict(settings)}))
    records = read_records(out_dir / RESULTS_JSON, config, "ssl",
                           added={"labelled_weight": 1.0, "likelihood": "bernoulli",
                                  "m1_hidden": None, "m1_activation": "relu", "m1_lr": None})
    _write_results(out_dir, config, records)
    runner = _Runner(data, settings, out_dir, progress, accelerator)
    done = {(r["method"], r["labels"], r["seed"]) for r in records}
    cells = [(m, n, s) for s in seeds for n in labels for m in methods]
    print(f"semi-supervised classification on {data.name}: {len(cells)} cells, "
          f"{sum(c in done for c in cells)} done before -> {out_dir}", file=sys.stderr)
    for i, (method, n, seed) in enumerate(cells, 1):
        line = f"[{i}/{len(cells)}] {method}, {n} labels, seed {seed}"
        if (method, n, seed) in done:
            print(f"{line}: already in {RESULTS_JSON}", file=sys.stderr)
            continue
        record = runner.run(method, n, seed)
        records.append(record)
        _write_results(out_dir, config, records)
        print(f"{line}: test error {100 * record['test_error']:.1f}% "
              f"({record['seconds']:.0f} s)", file=sys.stderr)
    summary = summarize(records)
    atomic_write(out_dir / RESULTS_MD, markdown_table(summary, data.name).encode())
    plot_ssl_errors(summary, path=out_dir / FIGURE,
                    title=f"Semi-supervised classification on {data.name}")
    return {"config": config, "records": records, "summary": summary}


def summarize(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and sample standard deviation (None for one seed) of the test
    error over seeds, per method (in :data:`METHODS` order) and label count."""
    errors: dict[tuple[str, int], list[float]] = {}
    for r in records:
        errors.setdefault((r["method"], r["labels"]), []).append(r["test_error"])
    keys = sorted(errors, key=lambda k: (METHODS.index(k[0]), k[1]))
    return [{"method": m, "labels": n, "mean_error": statistics.fmean(errors[m, n]),
             "std_error": statistics.stdev(errors[m, n]) if len(errors[m, n]) > 1 else None,
             "num_seeds": len(errors[m, n])} for m, n in keys]


def markdown_table(summary: Iterable[dict[str, Any]], dataset: str) -> str:
    """The summary as a Markdown table: test error in %, mean ± std over seeds."""
    lines = [f"Test error on {dataset} (%, mean ± std over seeds)", "",
             "| method | labels | test error (%) | seeds |", "| --- | ---: | ---: | ---: |"]
    for row in summary:
        error = f"{100 * row['mean_error']:.1f}"
        if row["std_error"] is not None:
            error += f" ± {100 * row['std_error']:.1f}"
        lines.append(f"| {row['method']} | {row['labels']} | {error} | {row['num_seeds']} |")
    return "\n".join(lines) + "\n"


class _Runner:
    """Trains and scores the cells of one experiment; keeps M1 per seed."""

    def __init__(self, data: Dataset, settings: SSLSettings, out_dir: Path,
                 progress: bool, accelerator: str = "cpu") -> None:
        self.accelerator = accelerator
        self.data = data
        self.settings = settings
        self.out_dir = out_dir
        self.progress = progress
        self._codes: dict[int, tuple[Dataset, dict[str, Any]]] = {}
        #: per seed, the test images' q(z1 | x) over the active dimensions: (means, scales)
        self._test_codes: dict[int, tuple[Tensor, Tensor]] = {}

    def run(self, method: str, num_labels: int, seed: int) -> dict[str, Any]:
        """Train and score one cell; return its record."""
        start = time.perf_counter()
        test_error, epochs, extra = getattr(self, method)(num_labels, seed)
        return {"method": method, "labels": num_labels, "seed": seed, "test_error": test_error,
                "epochs": epochs, "seconds": time.perf_counter() - start,
                "dataset": self.data.name, **extra}

    def m2(self, num_labels: int, seed: int) -> tuple[float, int, dict[str, Any]]:
        error, epochs, _ = self._fit_m2(self.data, num_labels, seed, self.data.image_shape,
                                        self.settings.likelihood)
        return error, epochs, {}

    def m1m2(self, num_labels: int, seed: int) -> tuple[float, int, dict[str, Any]]:
        codes, m1_info = self._m1_codes(seed)
        error, epochs, m2 = self._fit_m2(codes, num_labels, seed, codes.input_dim, "gaussian")
        sampled = _error(_averaged_over_codes(m2, self._test_codes[seed], seed), codes.test.y)
        return error, epochs, {**m1_info, "test_error_sampled": sampled}

    def supervised(self, num_labels: int, seed: int) -> tuple[float, int, dict[str, Any]]:
        s, data = self.settings, self.data
        pyro.set_rng_seed(seed)
        net = make_encoder("mlp", data.image_shape, data.num_classes,
                           s.classifier_hidden or s.hidden)
        fit_classifier(net, data, label_split(data.train, num_labels, data.num_classes, seed),
                       epochs=s.supervised_epochs, lr=s.lr, seed=seed, progress=self.progress)
        with torch.no_grad():
            predicted = net(data.test.x).argmax(-1)
        return _error(predicted, data.test.y), s.supervised_epochs, {}

    def _fit_m2(self, data: Dataset, num_labels: int, seed: int,
                input_shape: int | Sequence[int], likelihood: str) -> tuple[float, int, SSVAE]:
        """Train M2 on ``data`` with ``num_labels`` labels chosen by ``seed``;
        return its test error, epochs and the trained model."""
        s = self.settings
        pyro.set_rng_seed(seed)
        m2 = SSVAE(input_shape, data.num_classes, latent_dim=s.latent_dim, hidden=s.hidden,
                   likelihood=likelihood, classifier_hidden=s.classifier_hidden)
        history = fit(m2, data, labels=label_split(data.train, num_labels, data.num_classes, seed),
                      epochs=s.epochs, batch_size=s.batch_size, lr=s.lr, alpha=s.alpha,
                      labelled_weight=s.labelled_weight,
                      labelled_per_batch=s.labelled_per_batch, seed=seed, progress=self.progress,
                      max_minutes=s.max_minutes, accelerator=self.accelerator)
        return _error(m2.predict(data.test.x), data.test.y), history.epochs, m2

    def _m1_codes(self, seed: int) -> tuple[Dataset, dict[str, Any]]:
        """The data set of M1 codes for ``seed`` (same splits and labels), and
        M1's ``m1_epochs`` / ``m1_seconds``; M1 is trained on first use."""
        if seed not in self._codes:
            m1, info = self._m1(seed)
            x_train = self.data.train.x
            if self.data.binarize == "dynamic":  # M1's codes of one binarization
                x_train = binarize(x_train, torch.Generator().manual_seed(seed))
            with torch.no_grad():
                q = m1.posterior(x_train)
                mean, scale = q.mean, q.stddev
                keep = mean.std(0) > ACTIVE_CODE_STD
                if not bool(keep.any()):
                    raise RuntimeError(f"M1 of seed {seed} has no active latent dimension "
                                       f"(every posterior mean has a standard deviation "
                                       f"<= {ACTIVE_CODE_STD} over the training images): "
                                       "train it longer or with another --m1-latent-dim")
                q_test = m1.posterior(self.data.test.x)
                self._test_codes[seed] = (q_test.mean[:, keep], q_test.stddev[:, keep])
                splits = [Split(mean[:, keep], self.data.train.y, scale[:, keep]),
                          Split(m1.encode(self.data.val.x)[:, keep], self.data.val.y),
                          Split(self._test_codes[seed][0], self.data.test.y)]
            # label_split picks points by their labels and the seed only, so the
            # codes get the same labelled images as the other methods.
            dims = int(keep.sum())
            self._codes[seed] = (Dataset(self.data.name, *splits, (dims,), self.data.num_classes,
                                         self.data.class_names, None), {**info, "m1_dims": dims})
        return self._codes[seed]

    def _m1(self, seed: int) -> tuple[VAE, dict[str, Any]]:
        """M1 for ``seed``: loaded from ``out_dir/m1/seed<seed>`` or trained
        on all training images and saved there."""
        path = self.out_dir / "m1" / f"seed{seed}"
        if (path / "training.json").is_file():
            return load(path), json.loads((path / "training.json").read_text())
        s = self.settings
        pyro.set_rng_seed(seed)
        m1 = VAE(self.data.image_shape, latent_dim=s.m1_latent_dim,
                 hidden=s.m1_hidden or s.hidden, activation=s.m1_activation,
                 likelihood=s.likelihood)
        history = fit(m1, self.data, epochs=s.m1_epochs, batch_size=s.batch_size,
                      lr=s.lr if s.m1_lr is None else s.m1_lr,
                      seed=seed, progress=self.progress, max_minutes=s.max_minutes,
                      accelerator=self.accelerator)
        info = {"m1_epochs": history.epochs, "m1_seconds": history.seconds}
        save(m1, path)
        atomic_write(path / "training.json", json.dumps(info).encode())  # last: M1 complete
        return m1, info


#: draws of z1 ~ q(z1 | x) per test image for ``test_error_sampled``
CODE_DRAWS = 32


@torch.no_grad()
def _averaged_over_codes(m2: SSVAE, codes: tuple[Tensor, Tensor], seed: int) -> Tensor:
    """The class of largest (1/S) sum_s q(y | z1_s), z1_s ~ q(z1 | x) drawn
    S = :data:`CODE_DRAWS` times per test image (a Monte Carlo estimate of
    q(y | x) = E_q(z1 | x)[q(y | z1)] under the stacked model), where the
    test error of ``m1m2`` classifies the mean of q(z1 | x)."""
    mean, scale = codes
    generator = torch.Generator(device=mean.device).manual_seed(seed)
    total = 0
    for _ in range(CODE_DRAWS):
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        total = total + m2.predict_proba(mean + scale * eps)
    return total.argmax(-1)


def _error(predicted: Tensor, y: Tensor) -> float:
    """Fraction of wrong predictions."""
    return (predicted != y).float().mean().item()


def _write_results(out_dir: Path, config: dict[str, Any], records: list[dict[str, Any]]) -> None:
    """Rewrite ``ssl_results.json`` atomically."""
    results = {"config": config, "records": records, "summary": summarize(records)}
    atomic_write(out_dir / RESULTS_JSON, (json.dumps(results, indent=2) + "\n").encode())
