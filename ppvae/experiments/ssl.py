"""Semi-supervised classification over label counts and seeds: M2, M1+M2, an
adversarial autoencoder and a supervised baseline (Kingma, Rezende, Mohamed &
Welling 2014, "Semi-supervised learning with deep generative models", NeurIPS;
Makhzani et al. 2015, "Adversarial autoencoders").

Every cell (method, n labels, seed s) keeps the labels of n training images,
n / C per class, chosen by s (:func:`ppvae.data.label_split`, from the training
split only), trains, and scores the test error of the predicted classes.

- ``m2``: :class:`ppvae.models.SSVAE` on the (dynamically binarized) images, or,
  with a likelihood for grey levels, on the grey images; classifies with q(y | x).
- ``m1m2``: M1, a VAE p(z1) p(x | z1), trained on all training images (labels
  unused; once per seed, kept in ``out_dir/m1/seed<s>/``), then M2 on its codes
  (:class:`ppvae.models.M1Codes`: the active dimensions, fresh draws
  z1 ~ q(z1 | x) in every batch, as in the paper's code) with a Gaussian
  p(z1 | y, z2); classifies the means of q(z1 | x) (and, as
  ``test_error_sampled``, q(y | z1) averaged over 32 draws of z1).
- ``aae``: :class:`ppvae.models.CategoricalAdversarialAutoencoder` (Makhzani
  et al. 2015, Sec. 5) on the images M2 sees: one encoder with a softmax
  code y (a cluster per class, its prior one-hot draws) and a style code z
  of ``latent_dim`` (its prior N(0, I)), each matched by a discriminator
  (``hidden``, weight ``adversarial_weight``), and ``alpha`` times the
  cross-entropy of the labelled images; classifies with argmax q(y | x).
- ``supervised``: the network of M2's q(y | x) trained on the n labelled images.

The train/validation division and the binarization of validation and test
images are fixed; a cell's seed chooses the labels, the initial weights, the
batch order and the draws. Files in ``out_dir``: the sweep's
``ssl_results.{json,md,png}`` (:class:`~ppvae.experiments.sweep.Sweep`; test
error in % by method and label count, mean ± std over seeds).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pyro
import torch

from ppvae.config import at_least, unique
from ppvae.data import binarize, label_split, load_dataset
from ppvae.experiments.sweep import Sweep
from ppvae.io import atomic_write, load, save
from ppvae.models import SSVAE, VAE, CategoricalAdversarialAutoencoder, M1Codes
from ppvae.nn import activation, make_encoder
from ppvae.pieces import LIKELIHOODS
from ppvae.train import fit
from ppvae.train.classifier import fit_classifier
from ppvae.train.plans import check_labelled_weight

METHODS: tuple[str, ...] = ("m2", "m1m2", "aae", "supervised")


@dataclass(frozen=True)
class SSLSettings:
    """Hyperparameters of a semi-supervised experiment.

    Attributes:
        epochs: epochs of M2 (in ``m2`` and ``m1m2``).
        m1_epochs: epochs of the M1 VAE.
        supervised_epochs: epochs of the supervised baseline.
        latent_dim: dimension of M2's z and of the AAE's style code.
        m1_latent_dim: dimension of M1's z1, the codes M2 sees in ``m1m2``.
        m1_hidden: hidden widths of M1's encoder (its decoder mirrors them;
            None: ``hidden``).
        m1_activation: M1's hidden activation (:data:`ppvae.nn.ACTIVATIONS`);
            the paper's code uses softplus.
        m1_lr: M1's Adam learning rate (None: ``lr``).
        hidden: hidden widths of every VAE's encoder and the AAE's (decoders
            mirror them; the AAE's discriminators have them too).
        classifier_hidden: hidden widths of q(y | x) and of the baseline
            (None: ``hidden``).
        alpha: weight of M2's classification term alpha * log q(y | x), per
            labelled image, and of the AAE's cross-entropy (the same term).
        adversarial_weight: the AAE's weight of its two adversarial terms.
        labelled_weight: weight of a labelled image against an unlabelled one
            in M2's batches: a number, or ``"dataset"`` for the paper's
            objective summed over the training set (:func:`ppvae.fit`).
        labelled_per_batch: labelled points in each M2 batch.
        batch_size: unlabelled points in each M2 batch; M1's batch size.
        lr: Adam learning rate of every model.
        max_minutes: training-time limit of each M2 and M1 fit, in minutes
            (None: no limit); the records keep the epochs each fit reached.
        likelihood: the observation model of M2 and M1: ``"bernoulli"`` on
            dynamically binarized images, or ``"continuous-bernoulli"`` /
            ``"gaussian"`` on the grey levels, which every method then sees.
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
    adversarial_weight: float = 1.0
    labelled_weight: float | str = 1.0
    labelled_per_batch: int = 16
    batch_size: int = 32
    lr: float = 1e-3
    max_minutes: float | None = None
    likelihood: str = "bernoulli"

    def __post_init__(self) -> None:
        unique([self.likelihood], "likelihood", LIKELIHOODS)
        at_least(self, 1, ("epochs", "m1_epochs", "supervised_epochs", "latent_dim",
                           "m1_latent_dim", "labelled_per_batch", "batch_size"))
        at_least(self, 0, ("alpha", "adversarial_weight"))
        at_least(self, 0, ("lr", "m1_lr", "max_minutes"), strictly=True)
        activation(self.m1_activation)  # an unknown name fails before any training
        object.__setattr__(self, "labelled_weight", check_labelled_weight(self.labelled_weight))
        for name in ("hidden", "classifier_hidden", "m1_hidden"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, tuple(getattr(self, name)))


def run_ssl(
    out_dir: str | os.PathLike,
    dataset: str = "digits",
    labels: Sequence[int] = (100,),
    seeds: Sequence[int] = (0,),
    methods: Sequence[str] = METHODS,
    data_root: str | os.PathLike | None = None,
    progress: bool = True,
    accelerator: str = "cpu",
    **hyper: Any,
) -> dict[str, Any]:
    """Run every (method, label count, seed) cell not yet in ``out_dir``
    (created, or resumed if it holds results of the same data set and
    settings), then write the table and figure (see the module doc); return
    the results file's content. Bad arguments, label counts or data fail
    before any training.

    Args:
        out_dir: the results directory.
        dataset: ``"digits"``, ``"mnist"`` or ``"fashion-mnist"``.
        labels: numbers of labelled training images, each a positive multiple
            of the number of classes.
        seeds: one cell per seed for each method and label count.
        methods: among :data:`METHODS`.
        data_root: where the data files are (default ``$PPVAE_DATA``).
        progress: show progress.
        accelerator: Lightning accelerator for M2 and M1 (cpu, gpu, auto); not
            a setting, so a sweep may resume on another machine.
        **hyper: the fields of :class:`SSLSettings`.
    """
    s = SSLSettings(**hyper)
    labels = unique([int(n) for n in labels], "labels")
    seeds = unique([int(x) for x in seeds], "seeds")
    methods = unique(methods, "methods", METHODS)
    data = load_dataset(dataset, data_root,
                        binarize="dynamic" if s.likelihood == "bernoulli" else None)
    for n in labels:
        label_split(data.train, n, data.num_classes)  # a bad count fails before any training
    sweep = Sweep(out_dir, "ssl", {"dataset": data.name, **asdict(s)},
                  key=("method", "labels", "seed"),
                  added={"labelled_weight": 1.0, "likelihood": "bernoulli", "m1_hidden": None,
                         "m1_activation": "relu", "m1_lr": None, "adversarial_weight": 1.0})
    options = {"progress": progress, "accelerator": accelerator, "patience": None,
               "max_minutes": s.max_minutes, "batch_size": s.batch_size}
    codes: dict[int, tuple[M1Codes, Any, dict[str, Any]]] = {}  # per seed: M1's codes

    def m2(data: Any, n: int, seed: int, likelihood: str) -> tuple[SSVAE, int]:
        pyro.set_rng_seed(seed)
        m2 = SSVAE(data.image_shape, data.num_classes, latent_dim=s.latent_dim, hidden=s.hidden,
                   likelihood=likelihood, classifier_hidden=s.classifier_hidden)
        history = fit(m2, data, labels=label_split(data.train, n, data.num_classes, seed),
                      epochs=s.epochs, lr=s.lr, alpha=s.alpha, labelled_weight=s.labelled_weight,
                      labelled_per_batch=s.labelled_per_batch, seed=seed, **options)
        return m2, history.epochs

    def stacked(seed: int) -> tuple[M1Codes, Any, dict[str, Any]]:
        """M1 of ``seed`` (trained on first use, kept in out_dir/m1/seed<seed>),
        its codes and the data set of codes."""
        if seed in codes:
            return codes[seed]
        path = Path(out_dir) / "m1" / f"seed{seed}"
        if (path / "training.json").is_file():
            m1, info = load(path), json.loads((path / "training.json").read_text())
        else:
            pyro.set_rng_seed(seed)
            m1 = VAE(data.image_shape, latent_dim=s.m1_latent_dim, hidden=s.m1_hidden or s.hidden,
                     activation=s.m1_activation, likelihood=s.likelihood)
            history = fit(m1, data, epochs=s.m1_epochs, lr=s.m1_lr or s.lr, seed=seed,
                          **options)
            info = {"m1_epochs": history.epochs, "m1_seconds": history.seconds}
            save(m1, path)
            atomic_write(path / "training.json", json.dumps(info).encode())  # last: M1 complete
        x_train = data.train.x  # M1's codes of one binarization
        if data.binarize == "dynamic":
            x_train = binarize(x_train, torch.Generator().manual_seed(seed))
        m1_codes = M1Codes(m1, x_train)
        # label_split picks points by their labels and the seed only, so the
        # codes get the same labelled images as the other methods
        codes[seed] = (m1_codes, m1_codes.dataset(data, x_train),
                       {**info, "m1_dims": int(m1_codes.active.sum())})
        return codes[seed]

    def run(cell: dict[str, Any]) -> dict[str, Any]:
        method, n, seed = cell["method"], cell["labels"], cell["seed"]
        start, extra = time.perf_counter(), {}
        if method == "m2":
            model, epochs = m2(data, n, seed, s.likelihood)
            predicted = model.predict(data.test.x)
        elif method == "m1m2":
            m1_codes, code_data, info = stacked(seed)
            model, epochs = m2(code_data, n, seed, "gaussian")
            predicted = m1_codes.predict(model, data.test.x)
            sampled = m1_codes.predict(model, data.test.x, draws=32, seed=seed)
            extra = {**info, "test_error_sampled": error(sampled)}
        elif method == "aae":
            pyro.set_rng_seed(seed)
            model = CategoricalAdversarialAutoencoder(
                data.image_shape, num_clusters=data.num_classes, style_dim=s.latent_dim,
                hidden=s.hidden, likelihood=s.likelihood, adversarial_weight=s.adversarial_weight,
                supervised_weight=s.alpha, discriminator_hidden=s.hidden)
            epochs = fit(model, data, labels=label_split(data.train, n, data.num_classes, seed),
                         epochs=s.epochs, lr=s.lr, labelled_per_batch=s.labelled_per_batch,
                         seed=seed, **options).epochs
            predicted = model.predict(data.test.x)
        else:
            pyro.set_rng_seed(seed)
            net = make_encoder("mlp", data.image_shape, data.num_classes,
                               s.classifier_hidden or s.hidden)
            fit_classifier(net, data, label_split(data.train, n, data.num_classes, seed),
                           epochs=s.supervised_epochs, lr=s.lr, seed=seed, progress=progress)
            with torch.no_grad():
                predicted, epochs = net(data.test.x).argmax(-1), s.supervised_epochs
        return {"test_error": error(predicted), "epochs": epochs,
                "seconds": time.perf_counter() - start, "dataset": data.name, **extra}

    def error(predicted: torch.Tensor) -> float:
        return (predicted != data.test.y).float().mean().item()

    sweep.run([{"method": m, "labels": n, "seed": x} for x in seeds for n in labels
               for m in methods], run,
              lambda r: f"test error {100 * r['test_error']:.1f}% ({r['seconds']:.0f} s)")
    sweep.report("method", "labels", "test_error", "test error (%)",
                 " (mean ± std over seeds)", scale=100, log_x=True)
    return {"config": sweep.config, "records": sweep.records, "summary": sweep.summary}
