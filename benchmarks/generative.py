"""Generative autoencoders on MNIST, same networks and budget: VAE, AAE,
WAE-MMD, WAE-GAN and VAE-GAN, scored by classifier FID, prior MMD and IW NLL.

Networks (all five): encoder MLP 784-512-256-z (``--hidden``, ``--latent``,
z = 8 as in the WAE paper's MNIST runs; a Gaussian encoder outputs 2z: mean
and scale), decoder z-256-512-784 (mirrored), ReLU. Models:

- ``vae``: :class:`~ppvae.models.vae.VAE`, N(0, I) prior, Gaussian q(z | x).
- ``aae``: :class:`~ppvae.models.adversarial.AdversarialAutoencoder`
  (Makhzani et al. 2015) with its Gaussian encoder and the N(0, I) prior,
  which makes it a density that the IW estimator scores; adversarial weight
  ``--aae-weight`` (1; 10 was not clearly better on the validation split),
  discriminator on codes 8-512-512-1 (``--aae-disc``).
  These are this benchmark's choices, not the paper's (which trains in two
  alternating phases with SGD, the adversarial phase with a step of its own;
  here both terms share one Adam step of the encoder).
- ``wae``: :class:`~ppvae.models.wae.WassersteinAutoencoder` (WAE-MMD,
  Tolstikhin et al. 2018): deterministic encoder, MMD^2 with the IMQ kernel
  summed over the authors' seven widths, weight ``--wae-lambda``.
- ``wae-gan``: :class:`~ppvae.models.wae.WAEGAN`: weight ``--wae-gan-lambda``,
  the paper's discriminator on codes (four hidden layers of 512) with the
  authors' MNIST learning rate for it, 5e-4 (``--wae-gan-disc-lr``).

  The paper's lambda = 10 (MMD) and 1 (GAN) weigh the authors' cost 0.05
  |x - g(z)|^2 (their code's ``l2sq`` cost, as in their MNIST config); ppvae's
  cost is |x - g(z)|^2 / 2, ten times that, so the paper's objectives are
  lambda = 100 and 10 here. Without the rest of the authors' recipe (Adam
  beta1 = 0.5 where ppvae's plans use 0.9, batch norm, their learning-rate
  schedule, the pretraining of the encoder to the prior's moments) the
  tenfold smaller weights, numerically the paper's, did better on the
  validation split in short probes (3 epochs, ``--split val``; the commands
  and figures are in benchmarks/README.md), the WAE-GAN's by far: they are
  the defaults.
- ``vae-gan``: :class:`~ppvae.models.vaegan.VAEGAN` (Larsen et al. 2016):
  the VAE plus a discriminator on images 784-512-256-1 (``--vae-gan-disc``;
  features: its 256-unit layer), feature and GAN weights 1 (the class's
  defaults; the paper's networks are convolutional, on faces).

Likelihoods, chosen per model:

- VAE and AAE (``--density-likelihood``): ``bernoulli`` (default) trains on
  MNIST dynamically binarized (pixels re-drawn every epoch) and scores the
  IW NLL of the test images binarized once (fixed seed), in nats,
  comparable with ``mnist_nll.py`` and the literature; the decoder means are
  pixel probabilities, grey images like the data, for the FID.
  ``continuous-bernoulli`` trains and scores them on the grey images (a
  density on [0, 1]^784, whose means keep a grey background).
- VAE-GAN (``--vae-gan-likelihood``): ``gaussian`` (default), N(g(z),
  sigma^2 I) with a learned shared sigma on the grey images. Its
  discriminator compares data images with the decoder's means and must see
  images of one kind: with binarized data it tells them apart by their grey
  levels and drives the means to 0 or 1 (seen on ``digits``: saturated
  samples, codes far from the prior). Its NLL is a
  density of grey pixel values: not comparable with the binarized rows.
- WAE-MMD and WAE-GAN: squared error on grey images, as in the WAE paper
  (p(x | z) = N(g(z), I)); not densities of x.

Training: ``ppvae.fit``, Adam (``--lr``), batch ``--batch-size``, the same
budget per model: ``--epochs`` or ``--max-minutes`` of training, whichever
ends first. VAE and WAE-MMD keep their best epoch on the validation split
(early stopping, ``--patience``); the adversarial models (AAE, WAE-GAN,
VAE-GAN) keep their last epoch (an adversarial loss does not rank epochs).
The validation split is 10% of MNIST's training file (fixed: seed 0);
``--max-train`` subsamples the rest.

Scores, on the test split (``--split val`` scores on the validation split
instead: hyperparameters are chosen there, never on the test split):

1. FID: classifier FID (:mod:`ppvae.metrics.fid`, the shipped MNIST
   classifier's 128 features) of ``--num-samples`` (10,000) samples against
   the grey test images (10,000), for every model whatever data it saw. A
   sample is the decoder mean E[x | z] of z ~ p(z), clamped to [0, 1] (the
   Gaussian decoders' means are unbounded). Reference row: 10,000 training
   images against the test images. MNIST only: skipped on ``digits``.
2. Prior MMD: the unbiased MMD^2 (:func:`ppvae.infer.mmd.mmd2`, IMQ kernel
   summed over :data:`ppvae.models.wae.IMQ_SCALES`) between the codes of the
   test images, each model fed the images as it was trained (binarized or
   grey), and as many N(0, I) draws, the same draws for every model. Codes
   as the encoder's means (f(x), or the mean of q(z | x)), and as one draw
   z ~ q(z | x) per image: the aggregate posterior itself, which the VAE's
   KL and the AAE's discriminator match to the prior (the means of a
   Gaussian encoder are less spread than its draws). Reference row: two
   independent sets of prior draws (the estimator's noise floor).
3. IW NLL (density models only): ``ppvae.infer.log_likelihood`` with K =
   ``--nll-k`` (1000) importance samples per test image, mean ± standard
   error over images, and the share of images whose PSIS k-hat exceeds 0.7
   (unreliable estimates); over the first ``--nll-points`` images (0: all).

Peer library: ``--export-split FILE`` writes this benchmark's MNIST split
(.npz: grey images as uint8, and the fixed binarized validation and test
images) and exits; ``benchmarks/pythae_generative.py`` (in its own virtual
environment, instructions in its docstring) trains pythae's counterparts on
it and writes samples and test codes; ``--score-pythae DIR`` scores those
with the same metrics into the same table (refused if that run's split,
networks or budget differ from this one's).

Resumable: trained models are kept in ``--out/models/<model>-s<seed>``
(``ppvae.save``, with ``<model>-s<seed>.json`` holding the training record),
finished cells in ``--out/generative_results.json`` (records and settings);
a rerun trains and scores only what is missing and refuses a directory of
other settings. Also written: ``tables.md`` (for benchmarks/README.md),
``samples-<model>.png`` (a 10 x 10 grid of samples per model, seed
``--seeds[0]``), ``samples.png`` (16 samples per model, one row each) and
``samples/<model>-s<seed>.npy`` (the first 100 samples).

Usage: PPVAE_DATA=../shared/data python benchmarks/generative.py [--epochs 100]
       [--max-minutes 8] [--models vae aae ...] [--seeds 0] [--nll-k 1000] [--out DIR]
       [--score-pythae DIR]
Quick check: python benchmarks/generative.py --dataset digits --epochs 3 --nll-k 50
       --out /tmp/generative-check
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyro
import torch
from common import machine
from torch import Tensor

import ppvae
from ppvae.atomic import atomic_write
from ppvae.data import Dataset, load_dataset
from ppvae.experiments.sweep import Sweep
from ppvae.infer.mmd import mmd2
from ppvae.infer.psis import MIN_SAMPLES_FOR_KHAT
from ppvae.metrics.fid import feature_statistics, frechet_distance, load_classifier
from ppvae.models.adversarial import AdversarialAutoencoder
from ppvae.models.vae import VAE
from ppvae.models.vaegan import VAEGAN
from ppvae.models.wae import IMQ_SCALES, WAEGAN, WassersteinAutoencoder
from ppvae.plots import image_grid, image_rows
from ppvae.train import TrainingDiverged

MODELS = ("vae", "aae", "wae", "wae-gan", "vae-gan")
#: the models that are densities of x, scored by the IW estimator
DENSITIES = ("vae", "aae", "vae-gan")
NAMES = {"vae": "VAE", "aae": "AAE (Gaussian encoder)", "wae": "WAE-MMD", "wae-gan": "WAE-GAN",
         "vae-gan": "VAE-GAN"}
DATA_SEED = 0  # the validation split and the --max-train subsample
SAMPLE_SEED = 20_000  # + the training seed: the latents of the samples
PRIOR_SEED = 30_000  # the prior draws of the MMD, the same for every model
NLL_SEED = 40_000
DRAW_SEED = 60_000  # + the seed: the draws z ~ q(z | x) of the MMD of the aggregate posterior
GRID = 100  # samples kept per model for the figures
#: p(x | z) in the table (the WAEs' N(g(z), I) is named by its cost)
LIKELIHOODS = {"bernoulli": "Bernoulli", "continuous-bernoulli": "continuous Bernoulli",
               "gaussian": "Gaussian, learned sigma"}
#: what tells pythae's two uses of Adversarial_AE apart in the table
PYTHAE_VARIANT = {"aae": " (Gaussian posterior)", "wae-gan": " (deterministic)"}


# ---------------------------------------------------------------- data
def subsample(data: Dataset, n: int) -> Dataset:
    """The first ``n`` of a fixed permutation of the training split (all if 0)."""
    if not n or n >= len(data.train):
        return data
    keep = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(
        DATA_SEED))[:n].sort().values
    return dataclasses.replace(data, train=data.train.subset(keep))


class Data:
    """The grey data set and, for Bernoulli density models, the same split
    binarized (training pixels re-drawn every epoch, val and test fixed)."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.grey = subsample(load_dataset(args.dataset, seed=DATA_SEED), args.max_train)
        self._binary: Dataset | None = None

    @property
    def binary(self) -> Dataset:
        if self._binary is None:
            self._binary = subsample(load_dataset(self.args.dataset, seed=DATA_SEED,
                                                  binarize="dynamic"), self.args.max_train)
        return self._binary

    def binarized(self, model: str) -> bool:
        """Whether ``model`` trains and is scored on binarized images."""
        return likelihood(model, self.args) == "bernoulli"

    def of(self, model: str) -> Dataset:
        return self.binary if self.binarized(model) else self.grey

    def scored(self, model: str) -> Tensor:
        """The images ``model``'s codes and NLL are scored on (its view of the split)."""
        return getattr(self.of(model), self.args.split).x

    def reference(self) -> Tensor:
        """The grey images of the scored split: FID's reference set."""
        return getattr(self.grey, self.args.split).x

    def split_arrays(self) -> dict[str, np.ndarray]:
        """The split as uint8 arrays, for the peer library's run (MNIST's grey
        levels k / 255 exactly; digits' k / 16 rounded to the nearest k / 255)."""
        grey = {k: getattr(self.grey, k).x for k in ("train", "val", "test")}
        arrays = {f"{k}_grey": (255 * x).round().to(torch.uint8).numpy() for k, x in grey.items()}
        for k in ("val", "test"):
            arrays[f"{k}_binary"] = getattr(self.binary, k).x.to(torch.uint8).numpy()
        return arrays


def split_digest(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over the split's arrays (names, shapes and bytes), in name order:
    the same value ``pythae_generative.py`` computes from the exported file."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}{a.shape}{a.dtype}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


# ---------------------------------------------------------------- models
def likelihood(name: str, args: argparse.Namespace) -> str:
    """p(x | z) of model ``name`` (the WAEs: N(g(z), I))."""
    return {"vae": args.density_likelihood, "aae": args.density_likelihood,
            "vae-gan": args.vae_gan_likelihood}.get(name, "gaussian")


def build(name: str, shape: tuple[int, ...], args: argparse.Namespace) -> Any:
    """A fresh model of the benchmark's settings."""
    common = dict(latent_dim=args.latent, hidden=tuple(args.hidden), activation="relu",
                  likelihood=likelihood(name, args))
    if name == "vae":
        return VAE(shape, **common)
    if name == "aae":
        return AdversarialAutoencoder(shape, encoder="gaussian",
                                      prior="normal", adversarial_weight=args.aae_weight,
                                      discriminator_hidden=tuple(args.aae_disc), **common)
    if name == "wae":
        return WassersteinAutoencoder(shape, mmd_weight=args.wae_lambda, kernel="imq", **common)
    if name == "wae-gan":
        return WAEGAN(shape, adversarial_weight=args.wae_gan_lambda, **common)
    if name == "vae-gan":
        return VAEGAN(shape, discriminator_hidden=tuple(args.vae_gan_disc), **common)
    raise ValueError(f"unknown model {name!r}")


def plan_options(name: str, args: argparse.Namespace) -> dict[str, Any]:
    return {"discriminator_lr": args.wae_gan_disc_lr} if name == "wae-gan" else {}


@torch.no_grad()
def samples(model: Any, n: int, seed: int) -> Tensor:
    """n decoder means E[x | z], z ~ p(z), clamped to [0, 1]."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SAMPLE_SEED + seed)
        return torch.cat([model.sample(min(5000, n - i)) for i in range(0, n, 5000)]).clamp(0, 1)


@torch.no_grad()
def codes(model: Any, x: Tensor) -> Tensor:
    """The encoder's mean code of every row of x."""
    return torch.cat([model.encode(x[i:i + 5000]) for i in range(0, len(x), 5000)])


@torch.no_grad()
def code_draws(model: Any, x: Tensor, seed: int) -> Tensor:
    """One draw z ~ q(z | x) per row of x for a Gaussian encoder (the
    aggregate posterior's sample); the codes f(x) of a deterministic one."""
    if not getattr(model, "gaussian_encoder", isinstance(model, VAE)):
        return codes(model, x)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(DRAW_SEED + seed)
        return torch.cat([model.encoder(model.prepare(x[i:i + 5000])).sample()
                          for i in range(0, len(x), 5000)])


def prior_draws(n: int, latent: int, offset: int = 0) -> Tensor:
    return torch.randn(n, latent, generator=torch.Generator().manual_seed(PRIOR_SEED + offset))


def prior_mmd(z: Tensor, args: argparse.Namespace) -> float:
    """MMD^2 (IMQ, the WAE widths) between codes and as many prior draws."""
    return float(mmd2(z.float(), prior_draws(len(z), args.latent), "imq", IMQ_SCALES))


class Scorer:
    """FID against the reference images (their features computed once)."""

    def __init__(self, data: Data, args: argparse.Namespace) -> None:
        self.enabled = args.dataset == "mnist"
        self.classifier = load_classifier() if self.enabled else None
        self._reference: tuple[Tensor, Tensor] | None = None
        self.data = data

    def fid(self, images: Tensor) -> float | None:
        if not self.enabled:
            return None
        if self._reference is None:
            self._reference = feature_statistics(self.data.reference(), self.classifier)
        return frechet_distance(*feature_statistics(images, self.classifier), *self._reference)


# ---------------------------------------------------------------- cells
class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.out = args, Path(args.out)
        self.data = Data(args)
        self.scorer = Scorer(self.data, args)

    def model_dir(self, name: str, seed: int) -> Path:
        return self.out / "models" / f"{name}-s{seed}"

    def trained(self, name: str, seed: int) -> tuple[Any, dict[str, Any]]:
        """The trained model and its training record: from disk if a run
        saved them before, else trained now and saved."""
        path, record_path = self.model_dir(name, seed), self.model_dir(name, seed).with_suffix(
            ".json")
        if record_path.is_file():
            return ppvae.load(path), json.loads(record_path.read_text())
        args, data = self.args, self.data.of(name)
        pyro.set_rng_seed(seed)
        model = build(name, data.image_shape, args)
        history = ppvae.fit(model, data, epochs=args.epochs, max_minutes=args.max_minutes,
                            patience=args.patience, batch_size=args.batch_size, lr=args.lr,
                            seed=seed, progress=False, **plan_options(name, args))
        monitor = next((m for m in ("val_elbo", "val_loss") if m in history.metrics), None)
        record = {"epochs": history.epochs, "best_epoch": history.best_epoch,
                  "stopped_early": history.stopped_early, "train_seconds": history.seconds,
                  "monitor": monitor,
                  "best_monitor": history.metrics[monitor][history.best_epoch - 1]
                  if monitor else None}
        ppvae.save(model, path)
        atomic_write(record_path, json.dumps(record, indent=2).encode())
        return model, record

    def cell(self, cell: dict[str, Any]) -> dict[str, Any]:
        """Train (or load) one model and score it; a diverged training is
        recorded as such (a rerun would diverge again)."""
        name, seed, args = cell["model"], cell["seed"], self.args
        try:
            model, record = self.trained(name, seed)
        except TrainingDiverged as e:
            return {"diverged": str(e)}
        model.eval()
        x = self.data.scored(name)
        drawn = samples(model, args.num_samples, seed)
        grid = self.out / "samples" / f"{name}-s{seed}.npy"
        grid.parent.mkdir(parents=True, exist_ok=True)
        np.save(grid, drawn[:GRID].numpy())
        scores = {**record, "binarized": self.data.binarized(name),
                  "likelihood": "squared error" if name in ("wae", "wae-gan")
                  else LIKELIHOODS[likelihood(name, args)],
                  "fid": self.scorer.fid(drawn), "prior_mmd2": prior_mmd(codes(model, x), args),
                  "prior_mmd2_draws": prior_mmd(code_draws(model, x, seed), args)}
        if name in DENSITIES:
            points = x[:args.nll_points] if args.nll_points else x
            result = model.log_likelihood(points, num_samples=args.nll_k, seed=NLL_SEED + seed)
            scores.update(nll=-result.mean, nll_stderr=result.stderr, elbo=result.elbo_mean,
                          frac_khat_above=result.frac_khat_above, nll_points=len(points))
        return scores

    def reference(self) -> dict[str, Any]:
        """The metrics' floors: FID of training images, MMD of prior draws."""
        n, grey = self.args.num_samples, self.data.grey
        train = grey.train.x[torch.randperm(len(grey.train), generator=torch.Generator()
                                            .manual_seed(DATA_SEED))[:n]]
        z = prior_draws(len(self.data.reference()), self.args.latent, offset=1)
        return {"fid": self.scorer.fid(train), "prior_mmd2": prior_mmd(z, self.args),
                "fid_images": len(train)}


# ---------------------------------------------------------------- pythae
#: settings a pythae run must share with this one to land in its table
SHARED = ("dataset", "max_train", "hidden", "latent", "epochs", "max_minutes", "batch_size", "lr",
          "density_likelihood", "vae_gan_likelihood", "split", "num_samples", "aae_weight",
          "aae_disc", "wae_lambda", "wae_gan_lambda", "wae_gan_disc_lr", "vae_gan_disc")


def pythae_run(bench: Bench, directory: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """The settings of a ``pythae_generative.py`` run; exits if they, or its
    split, differ from this run's."""
    path = directory / "settings.json"
    if not path.is_file():
        raise SystemExit(f"error: {path} is missing: is {directory} a pythae_generative.py run?")
    theirs = json.loads(path.read_text())
    differ = [k for k in SHARED if theirs.get(k) != settings[k]]
    digest = split_digest(bench.data.split_arrays())
    if theirs.get("split_sha256") != digest:
        differ.append("split_sha256")
    if differ:
        raise SystemExit(f"error: {directory} was run with other settings: " + ", ".join(
            f"{k}={theirs.get(k)!r} (here {settings.get(k, digest)!r})" for k in differ))
    return theirs


def score_pythae(bench: Bench, directory: Path, theirs: dict[str, Any]) -> list[dict[str, Any]]:
    """Score the samples and codes a ``pythae_generative.py`` run wrote
    (those of ``--models``)."""
    split = bench.args.split
    records = []
    for name in bench.args.models:
        for seed in theirs["seeds"]:
            run = directory / f"{name}-s{seed}"
            if not (run / "info.json").is_file():
                continue
            info = json.loads((run / "info.json").read_text())
            drawn = torch.from_numpy(np.load(run / "samples.npy")).float().reshape(
                -1, bench.data.grey.input_dim).clamp(0, 1)
            z = torch.from_numpy(np.load(run / f"{split}_codes.npy")).float()
            z_drawn = torch.from_numpy(np.load(run / f"{split}_draws.npy")).float()
            if len(z) != len(bench.data.reference()):
                raise SystemExit(f"error: {run} holds {len(z)} codes, the split "
                                 f"{len(bench.data.reference())} images")
            records.append({"model": name, "seed": seed, "library": "pythae",
                            "pythae_class": info["pythae_class"], "epochs": info["epochs"],
                            "train_seconds": info["train_seconds"],
                            "binarized": info["binarized"], "likelihood": info["loss"],
                            "fid": bench.scorer.fid(drawn),
                            "prior_mmd2": prior_mmd(z, bench.args),
                            "prior_mmd2_draws": prior_mmd(z_drawn, bench.args),
                            "grid": drawn[:GRID]})
            fid = records[-1]["fid"]
            print(f"pythae {info['pythae_class']} ({name}, seed {seed}): "
                  + (f"FID {fid:.2f}, " if fid is not None else "")
                  + f"prior MMD^2 {records[-1]['prior_mmd2']:.4f}", file=sys.stderr)
    return records


# ---------------------------------------------------------------- tables
def mean_spread(values: list[float]) -> tuple[float, float | None]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def fmt(values: list[Any], digits: int, stderr: list[float] | None = None) -> str:
    """mean (± sd over seeds, or ± a single record's standard error)."""
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    mean, sd = mean_spread(values)
    spread = sd if sd is not None else (stderr[0] if stderr else None)
    return f"{mean:.{digits}f}" + (f" ± {spread:.{digits}f}" if spread is not None else "")


def table(records: list[dict[str, Any]], pythae: list[dict[str, Any]], ref: dict[str, Any],
          args: argparse.Namespace, data: Data) -> str:
    split = args.split
    n_ref = len(data.reference())
    fid_note = (f"FID of {args.num_samples:,} samples (decoder means E[x | z], z ~ p(z), "
                f"clamped to [0, 1]) against the {n_ref:,} grey {split} images"
                if args.dataset == "mnist" else "FID: MNIST only, skipped on " + args.dataset)
    lines = [
        f"Generative autoencoders on {args.dataset} ({split} split): {fid_note}; prior MMD^2 "
        f"(IMQ, x 10^3) between the codes of the {n_ref:,} {split} images and as many N(0, I) "
        "draws, codes as the encoder's means (f(x), or the mean of q(z | x)) and as one draw "
        "z ~ q(z | x) each (the aggregate posterior; the same for deterministic encoders); IW "
        f"NLL in nats with K = {args.nll_k} over {args.nll_points or n_ref} images (± "
        "standard error" + (", or ± sd over seeds" if len(args.seeds) > 1 else "")
        + "), and the share of images with k-hat > 0.7. data: the training images a model "
        "saw (binary: dynamically "
        f"binarized; its codes and NLL on the fixed binarized {split} images) and its p(x | z) "
        "or loss; an NLL of grey images is a density of grey values, comparable only with "
        "rows of the same data and likelihood.", "",
        "| library | model | data, p(x given z) | epochs | train min | FID | prior MMD^2 x 10^3 "
        "(means) | (draws) | IW NLL | k-hat > 0.7 |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]

    def row(library: str, label: str, rs: list[dict[str, Any]]) -> str:
        data_kind = f"{'binary' if rs[0]['binarized'] else 'grey'}, {rs[0]['likelihood']}"
        epochs = "/".join(str(r["epochs"]) for r in rs)
        minutes = statistics.fmean(r["train_seconds"] / 60 for r in rs)
        nll = fmt([r.get("nll") for r in rs], 2, [r.get("nll_stderr") for r in rs])
        khat = (f"{100 * statistics.fmean(r['frac_khat_above'] for r in rs):.1f}%"
                if "frac_khat_above" in rs[0] and args.nll_k >= MIN_SAMPLES_FOR_KHAT else "–")
        return (f"| {library} | {label} | {data_kind} | {epochs} | {minutes:.1f} | "
                f"{fmt([r['fid'] for r in rs], 2)} | "
                f"{fmt([1e3 * r['prior_mmd2'] for r in rs], 2)} | "
                f"{fmt([1e3 * r['prior_mmd2_draws'] for r in rs], 2)} | {nll} | {khat} |")

    for name in MODELS:
        rs = [r for r in records if r["model"] == name and "diverged" not in r]
        if rs:
            lines.append(row("ppvae", NAMES[name], rs))
        diverged = [r["seed"] for r in records if r["model"] == name and "diverged" in r]
        if diverged:
            lines.append(f"| ppvae | {NAMES[name]} | training diverged (seeds {diverged}) "
                         "| | | | | | | |")
        ps = [r for r in pythae if r["model"] == name]
        if ps:
            lines.append(row("pythae", ps[0]["pythae_class"] + PYTHAE_VARIANT.get(name, ""), ps))
    fid_ref = f"{ref['fid']:.2f}" if ref["fid"] is not None else "–"
    lines.append(f"| reference | {ref['fid_images']:,} training images; prior vs prior draws "
                 f"| grey | | | {fid_ref} | {1e3 * ref['prior_mmd2']:.2f} | "
                 f"{1e3 * ref['prior_mmd2']:.2f} | | |")
    sizes = "-".join(map(str, [data.grey.input_dim, *args.hidden, args.latent]))
    notes = [f"Networks: encoder {sizes}, decoder mirrored, ReLU; Adam lr {args.lr:g}, batch "
             f"{args.batch_size}, budget {args.epochs} epochs or {args.max_minutes:g} min per "
             "model; VAE and WAE-MMD: best validation epoch "
             f"(patience {args.patience}); AAE, WAE-GAN, VAE-GAN: last epoch."]
    if args.vae_gan_likelihood == "bernoulli" and any(r["model"] == "vae-gan" for r in records):
        notes.append("VAE-GAN (binary data): its discriminator compares binarized data images "
                     "with grey decoder means.")
    if pythae:
        notes.append("pythae (benchmarks/pythae_generative.py): the same networks, data and "
                     "budget; each model keeps its best epoch on pythae's validation loss.")
    return "\n".join(lines) + "\n\n" + " ".join(notes) + "\n"


def figures(records: list[dict[str, Any]], pythae: list[dict[str, Any]], bench: Bench) -> None:
    """``samples-<model>.png`` (10 x 10) and ``samples.png`` (16 per model)."""
    args, out = bench.args, bench.out
    seed, shape = args.seeds[0], bench.data.grey.image_shape
    rows: dict[str, np.ndarray] = {}
    for r in records:
        if r["seed"] == seed and "diverged" not in r:
            grid = np.load(out / "samples" / f"{r['model']}-s{seed}.npy")
            image_grid(grid, shape, nrow=10, title=f"ppvae {NAMES[r['model']]} ({args.dataset}, "
                       f"seed {seed})", path=out / f"samples-{r['model']}.png")
            rows[f"ppvae {r['model']}"] = grid[:16]
    for r in pythae:
        if r["seed"] == seed:
            grid = r["grid"].numpy()
            image_grid(grid, shape, nrow=10, title=f"pythae {r['pythae_class']} "
                       f"({args.dataset}, seed {seed})",
                       path=out / f"samples-pythae-{r['model']}.png")
            rows[f"pythae {r['model']}"] = grid[:16]
    if rows:
        image_rows(rows, shape, title=f"Samples E[x | z], z ~ N(0, I) ({args.dataset})",
                   path=out / "samples.png")


# ---------------------------------------------------------------- main
def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="mnist", choices=["mnist", "digits"])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--split", default="test", choices=["test", "val"],
                        help="the split scored (val: for choosing hyperparameters)")
    parser.add_argument("--hidden", nargs="+", type=int, default=[512, 256])
    parser.add_argument("--latent", type=int, default=8)
    parser.add_argument("--density-likelihood", default="bernoulli",
                        choices=["bernoulli", "continuous-bernoulli"],
                        help="p(x | z) of the VAE and the AAE")
    parser.add_argument("--vae-gan-likelihood", default="gaussian",
                        choices=["gaussian", "bernoulli", "continuous-bernoulli"],
                        help="p(x | z) of the VAE-GAN (gaussian: a learned shared scale)")
    parser.add_argument("--epochs", type=int, default=100, help="epoch budget per model")
    parser.add_argument("--max-minutes", type=float, default=8.0,
                        help="training time budget per model (whichever ends first)")
    parser.add_argument("--patience", type=int, default=10,
                        help="early stopping on the validation loss (VAE, WAE-MMD)")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--max-train", type=int, default=0,
                        help="subsample the training split to N images (0: all)")
    parser.add_argument("--aae-weight", type=float, default=1.0)
    parser.add_argument("--aae-disc", nargs="+", type=int, default=[512, 512])
    parser.add_argument("--wae-lambda", type=float, default=10.0,
                        help="MMD weight against |x - g(z)|^2 / 2 (the paper's objective: 100)")
    parser.add_argument("--wae-gan-lambda", type=float, default=1.0,
                        help="adversarial weight against |x - g(z)|^2 / 2 (the paper's: 10)")
    parser.add_argument("--wae-gan-disc-lr", type=float, default=5e-4)
    parser.add_argument("--vae-gan-disc", nargs="+", type=int, default=[512, 256])
    parser.add_argument("--num-samples", type=int, default=10_000,
                        help="samples per model for the FID")
    parser.add_argument("--nll-k", type=int, default=1000, help="importance samples per image")
    parser.add_argument("--nll-points", type=int, default=0,
                        help="score the NLL on the first N images of the split (0: all)")
    parser.add_argument("--out", default=f"runs/generative-{datetime.date.today()}")
    parser.add_argument("--score-pythae", metavar="DIR",
                        help="a pythae_generative.py run to score into the table")
    parser.add_argument("--export-split", metavar="FILE",
                        help="write the split for pythae_generative.py (.npz) and exit")
    args = parser.parse_args()
    if args.latent < 1 or args.num_samples < 2 or args.nll_k < 1 or args.nll_points < 0:
        parser.error("--latent, --nll-k must be >= 1, --num-samples >= 2, --nll-points >= 0")
    return args


def main() -> None:
    args = parse_args()
    bench = Bench(args)
    data = bench.data
    settings = {k: getattr(args, k) for k in (
        "dataset", "max_train", "split", "hidden", "latent", "density_likelihood",
        "vae_gan_likelihood", "epochs",
        "max_minutes", "patience", "batch_size", "lr", "aae_weight", "aae_disc", "wae_lambda",
        "wae_gan_lambda", "wae_gan_disc_lr", "vae_gan_disc", "num_samples", "nll_k",
        "nll_points")}
    if args.export_split:
        arrays = data.split_arrays()
        path = Path(args.export_split)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            np.savez_compressed(f, **arrays)
        meta = {**{k: settings[k] for k in SHARED}, "split_sha256": split_digest(arrays)}
        atomic_write(path.with_suffix(".json"), json.dumps(meta, indent=2).encode())
        print(f"wrote {path} and {path.with_suffix('.json')}")
        return
    print(f"{data.grey!r}; machine: {machine()}")
    theirs = pythae_run(bench, Path(args.score_pythae), settings) if args.score_pythae else None
    try:
        sweep = Sweep(args.out, "generative", settings, ("model", "seed"))
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None

    def describe(r: dict[str, Any]) -> str:
        if "diverged" in r:
            return f"diverged: {r['diverged']}"
        nll = f", NLL {r['nll']:.2f} ± {r['nll_stderr']:.2f}" if "nll" in r else ""
        fid = f"FID {r['fid']:.2f}, " if r["fid"] is not None else ""
        return (f"{r['epochs']} epochs, {r['train_seconds']:.0f} s; {fid}prior MMD^2 "
                f"{r['prior_mmd2']:.4f}{nll}")

    cells = [{"model": m, "seed": s} for s in args.seeds for m in args.models]
    keys = {(c["model"], c["seed"]) for c in cells}
    records = [r for r in sweep.run(cells, bench.cell, describe)
               if (r["model"], r["seed"]) in keys]
    pythae = score_pythae(bench, Path(args.score_pythae), theirs) if theirs else []
    ref = bench.reference()
    figures(records, pythae, bench)
    header = (f"{args.dataset}: {len(data.grey.train)} train / {len(data.grey.val)} val / "
              f"{len(data.grey.test)} test images; machine: {machine()}; seeds {args.seeds}\n")
    text = header + "\n" + table(records, pythae, ref, args, data)
    atomic_write(Path(args.out) / "tables.md", text.encode())
    print("\n" + text)


if __name__ == "__main__":
    main()
