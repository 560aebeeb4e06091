"""The autoencoder family on MNIST against PCA: reconstruction, codes as
features, robustness to corrupted inputs, and 2-d code maps, all from the
same trained models.

Models (``--models``; PCA always): ``linear-ae`` (no hidden layer), ``ae``,
``dae`` (masking noise, ``--dae-masking``), ``dae-gauss`` (Gaussian noise,
``--dae-sigma``; trained at ``--feature-code`` only), ``sparse-ae`` (L1: MAP
under a Laplace prior, ``--sparse-weight``, linear code), ``cae``
(contractive, sigmoid code, ``--contraction``, ||J||_F^2 by the unbiased
random-projection estimate: exact autograd costs one reverse pass per code
dimension), ``vae`` (``--vae-likelihood``: Gaussian with a learned shared
scale, or continuous Bernoulli; codes and reconstructions from the mean of
q(z | x)), and ``deep-ae`` (784-1000-500-250-30, Hinton & Salakhutdinov 2006,
its own ``--deep-epochs`` / ``--deep-minutes``). All but the linear and deep
AEs have the same MLP encoder (``--hidden``, decoder mirrored, ReLU); all but
the VAE the Gaussian likelihood N(g(z), I) (squared error); all train with
``ppvae.fit``: Adam, the same epoch and time budget per model (whichever ends
first), the best epoch on the validation split kept and early stopping on it
(``--patience``). Grey images in [0, 1]; the validation split is 10% of
MNIST's training file (fixed: seed 0); ``--max-train`` subsamples the rest.

1. Reconstruction: squared error per test image, sum over pixels of
   (x - x_hat)^2, mean over the test images (± its standard error over
   images with one seed, ± sd over seeds with several) at code sizes
   ``--codes``, for PCA (scikit-learn, fit on the training split) and every
   model; the deep AE and PCA at 30 against Hinton & Salakhutdinov's 3.00 and
   13.87 (same measure, pixels / 255).
2. Codes as features: scikit-learn logistic regression on the standardized
   codes (size ``--feature-code``) of the training images, with 100 labels per
   class chosen by the seed (``ppvae.data.label_split``) and with all labels;
   C chosen on the validation split from ``--c-grid``; test error, beside PCA
   codes, the deep AE's codes and the raw pixels.
3. Robustness: squared error against the clean test image of the
   reconstruction of a corrupted one, Gaussian noise x + sigma eps and masking
   (each pixel zeroed with probability p), the same draws for every model, for
   the models at ``--feature-code``.
4. Maps: the 2-d codes of the test images, PCA, AE and VAE side by side.

Resumable: trained models are kept in ``--out/models/<model>-z<code>-s<seed>``
(``ppvae.save``) and finished cells in ``--out/{reconstruction,features,
robustness}_results.json`` (records and settings); a rerun runs only new
cells and refuses a directory of other settings. Also written: ``tables.md``
(the tables printed at the end, for benchmarks/README.md),
``reconstruction.png``, ``robustness.png`` and ``maps.png``.

Usage: PPVAE_DATA=../shared/data python benchmarks/autoencoders.py [--epochs 20]
       [--max-minutes 4] [--deep-epochs 200] [--deep-minutes 15] [--codes 2 8 32]
       [--models ae vae ...] [--seeds 0 1 2] [--max-train N] [--out DIR]
Quick check: python benchmarks/autoencoders.py --dataset digits --epochs 3 --deep-epochs 3
       --out /tmp/ae-bench-check
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime
import math
import statistics
import warnings
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import pyro
import torch
from common import machine
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from torch import Tensor

import ppvae
from ppvae.atomic import atomic_write
from ppvae.data import DataError, label_split, load_dataset
from ppvae.experiments.sweep import Sweep, markdown_table, summarize
from ppvae.infer import reconstruction_error
from ppvae.models.autoencoder import Autoencoder, LinearAutoencoder
from ppvae.models.contractive import ContractiveAutoencoder
from ppvae.models.denoising import DenoisingAutoencoder
from ppvae.models.sparse import SparseAutoencoder
from ppvae.models.vae import VAE
from ppvae.pieces import Corruption
from ppvae.plots import plot_sweep

MODELS = ("linear-ae", "ae", "dae", "dae-gauss", "sparse-ae", "cae", "vae", "deep-ae")
#: row order of every table (PCA and the raw pixels are not trained)
ORDER = ("pca", *MODELS, "pixels")
DEEP_HIDDEN, DEEP_CODE = (1000, 500, 250), 30
#: Hinton & Salakhutdinov (2006), Fig. 2B: 30-d codes, MNIST test images
PAPER = {"deep-ae": 3.00, "pca": 13.87}
DATA_SEED = 0  # the validation split and the --max-train subsample
NOISE_SEED = 10_000  # the corruptions of the robustness benchmark
BATCH = 4096  # images per forward pass in evaluation


def label(name: str, args: argparse.Namespace) -> str:
    """The row name of a model in the tables."""
    return {
        "pca": "PCA", "pixels": "raw pixels", "linear-ae": "linear AE", "ae": "AE",
        "dae": f"DAE (masking {args.dae_masking:g})",
        "dae-gauss": f"DAE (Gaussian {args.dae_sigma:g})",
        "sparse-ae": f"sparse AE (L1 {args.sparse_weight:g})",
        "cae": f"CAE (lambda {args.contraction:g})",
        "vae": f"VAE ({args.vae_likelihood}, mean of q)",
        "deep-ae": "deep AE " + "-".join(map(str, DEEP_HIDDEN)) + f"-{DEEP_CODE}",
    }[name]


def build(name: str, code: int, shape: tuple[int, ...], args: argparse.Namespace) -> Any:
    """A fresh model of the benchmark's settings."""
    hidden = tuple(args.hidden)
    if name == "linear-ae":
        return LinearAutoencoder(shape, code)
    if name == "ae":
        return Autoencoder(shape, code, hidden)
    if name == "dae":
        return DenoisingAutoencoder(shape, code, hidden, noise="masking",
                                    noise_level=args.dae_masking)
    if name == "dae-gauss":
        return DenoisingAutoencoder(shape, code, hidden, noise="gaussian",
                                    noise_level=args.dae_sigma)
    if name == "sparse-ae":
        return SparseAutoencoder(shape, code, hidden, sparsity="l1", weight=args.sparse_weight)
    if name == "cae":
        return ContractiveAutoencoder(shape, code, hidden, contraction=args.contraction,
                                      jacobian="estimate")
    if name == "vae":
        return VAE(shape, code, hidden, likelihood=args.vae_likelihood)
    if name == "deep-ae":
        return Autoencoder(shape, code, DEEP_HIDDEN)
    raise ValueError(f"unknown model {name!r}")


class PCACodes:
    """The first ``k`` principal components of a fitted scikit-learn PCA:
    codes W (x - mean) and reconstructions W^T z + mean."""

    def __init__(self, pca: PCA, k: int) -> None:
        self.mean = torch.as_tensor(pca.mean_, dtype=torch.float32)
        self.components = torch.as_tensor(pca.components_[:k], dtype=torch.float32)

    def encode(self, x: Tensor) -> Tensor:
        return (x - self.mean) @ self.components.T

    def decode(self, z: Tensor) -> Tensor:
        return z @ self.components + self.mean


class Codes:
    """A trained ppvae model's codes (an autoencoder's f(x); the mean of a
    VAE's q(z | x)) and the likelihood's mean E[x | z], without the input
    checks (noisy images leave [0, 1])."""

    def __init__(self, model: Any) -> None:
        self.model = model.eval()

    def encode(self, x: Tensor) -> Tensor:
        if isinstance(self.model, VAE):
            return self.model.encoder(x).mean
        return self.model.code(x)

    def decode(self, z: Tensor) -> Tensor:
        return self.model.likelihood.mean(z)


@torch.no_grad()
def batched(fn: Any, x: Tensor) -> Tensor:
    return torch.cat([fn(x[i:i + BATCH]) for i in range(0, len(x), BATCH)])


def squared_errors(coder: Any, x: Tensor, clean: Tensor | None = None) -> Tensor:
    """|clean - decode(encode(x))|^2 per image (``clean``: x itself by default)."""
    recon = batched(lambda b: coder.decode(coder.encode(b)), x)
    return (recon - (x if clean is None else clean)).pow(2).sum(1)


def mean_se(values: Tensor) -> tuple[float, float]:
    return float(values.mean()), float(values.std() / math.sqrt(len(values)))


class Bench:
    """The data, the trained models (kept in memory and in ``out/models``) and
    the cells of the four benchmarks."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.out = args, Path(args.out)
        data = load_dataset(args.dataset, seed=DATA_SEED)
        if args.max_train and args.max_train < len(data.train):
            keep = torch.randperm(len(data.train), generator=torch.Generator().manual_seed(
                DATA_SEED))[:args.max_train].sort().values
            data = dataclasses.replace(data, train=data.train.subset(keep))
        self.data = data
        self._pca: PCA | None = None
        self._models: dict[tuple[str, int, int], Any] = {}
        self._corrupted: dict[tuple[str, float], Tensor] | None = None

    # ------------------------------------------------------------ models
    def pca(self, k: int) -> PCACodes:
        """PCA at k components, fit once (to the largest k) on the training split."""
        if self._pca is None:
            most = min(max([*self.args.codes, DEEP_CODE, self.args.feature_code]),
                       self.data.input_dim)
            self._pca = PCA(most, svd_solver="covariance_eigh").fit(self.data.train.x.numpy())
        return PCACodes(self._pca, k)

    def model_dir(self, name: str, code: int, seed: int) -> Path:
        return self.out / "models" / f"{name}-z{code}-s{seed}"

    def coder(self, name: str, code: int, seed: int) -> Any:
        """PCA, or a trained model (from memory or from disk)."""
        if name == "pca":
            return self.pca(code)
        key = (name, code, seed)
        if key not in self._models:
            self._models[key] = ppvae.load(self.model_dir(*key))
        return Codes(self._models[key])

    # ------------------------------------------------------------ 1. training
    def train_cell(self, cell: dict[str, Any]) -> dict[str, Any]:
        """Train one model (or fit PCA) and score its test reconstructions."""
        name, code, seed = cell["model"], cell["code"], cell["seed"]
        x = self.data.test.x
        if name == "pca":
            se, codes = squared_errors(self.pca(code), x), batched(self.pca(code).encode, x)
            return {**dict(zip(("squared_error", "squared_error_stderr"), mean_se(se))),
                    "active_units": int((codes.var(0) > 1e-2).sum())}
        deep = name == "deep-ae"
        pyro.set_rng_seed(seed)
        model = build(name, code, self.data.image_shape, self.args)
        history = ppvae.fit(
            model, self.data, epochs=self.args.deep_epochs if deep else self.args.epochs,
            max_minutes=self.args.deep_minutes if deep else self.args.max_minutes,
            patience=self.args.patience, batch_size=self.args.batch_size, lr=self.args.lr,
            seed=seed, progress=False)
        ppvae.save(model, self.model_dir(name, code, seed))
        self._models[(name, code, seed)] = model
        if isinstance(model, Autoencoder):  # the library's evaluator of non-densities
            result = reconstruction_error(model.model, model.guide, x)
            scores = {k: v for k, v in result.to_dict().items() if k != "num_datapoints"}
        else:  # the VAE: decode the mean of q(z | x)
            se = squared_errors(Codes(model), x)
            scores = dict(zip(("squared_error", "squared_error_stderr"), mean_se(se)))
            codes = batched(Codes(model).encode, x)
            scores["active_units"] = int((codes.var(0) > 1e-2).sum())
        monitor = "val_elbo" if "val_elbo" in history.metrics else "val_loss"
        return {**scores, "epochs": history.epochs, "best_epoch": history.best_epoch,
                "stopped_early": history.stopped_early, "train_seconds": history.seconds,
                "best_" + monitor: history.metrics[monitor][history.best_epoch - 1]}

    # ------------------------------------------------------------ 2. features
    def features(self, name: str, seed: int, split: Any) -> np.ndarray:
        if name == "pixels":
            return split.x.numpy()
        code = DEEP_CODE if name == "deep-ae" else self.args.feature_code
        return batched(self.coder(name, code, seed).encode, split.x).numpy()

    def feature_cell(self, cell: dict[str, Any]) -> dict[str, Any]:
        """Logistic regression on frozen, standardized codes; C chosen on the
        validation split; the test error of that C."""
        name, labels, seed = cell["model"], cell["labels"], cell["seed"]
        data = self.data
        train = data.train if labels == "all" else label_split(
            data.train, int(labels), data.num_classes, seed).labelled
        z = {k: self.features(name, seed, s) for k, s in
             (("train", train), ("val", data.val), ("test", data.test))}
        scaler = StandardScaler().fit(z["train"])
        z = {k: scaler.transform(v) for k, v in z.items()}
        clf = LogisticRegression(max_iter=self.args.lr_max_iter, warm_start=True)
        best, converged = None, True
        for c in sorted(self.args.c_grid):  # warm starts along increasing C
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ConvergenceWarning)
                clf.set_params(C=c).fit(z["train"], train.y.numpy())
            accuracy = clf.score(z["val"], data.val.y.numpy())
            if best is None or accuracy > best[0]:
                best = (accuracy, c, copy.deepcopy(clf))
                converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
        accuracy, c, chosen = best
        return {"test_error": 1 - chosen.score(z["test"], data.test.y.numpy()),
                "val_accuracy": accuracy, "C": c, "converged": converged,
                "train_points": len(train), "features": z["train"].shape[1]}

    # ------------------------------------------------------------ 3. robustness
    def corrupted(self) -> dict[tuple[str, float], Tensor]:
        """The corrupted test images, one fixed draw per (noise, level)."""
        if self._corrupted is None:
            x, self._corrupted = self.data.test.x, {}
            levels = [("gaussian", s) for s in self.args.sigmas] + \
                     [("masking", p) for p in self.args.masking]
            for i, (kind, level) in enumerate(levels):
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(NOISE_SEED + i)
                    self._corrupted[(kind, level)] = Corruption(kind, level)(x)
        return self._corrupted

    def robustness_cell(self, cell: dict[str, Any]) -> dict[str, Any]:
        coder = self.coder(cell["model"], self.args.feature_code, cell["seed"])
        rows = []
        for (kind, level), noisy in self.corrupted().items():
            mean, se = mean_se(squared_errors(coder, noisy, clean=self.data.test.x))
            rows.append({"noise": kind, "level": level, "squared_error": mean,
                         "squared_error_stderr": se})
        return {"rows": rows}


# ---------------------------------------------------------------- reports
def ordered(records: list[dict[str, Any]], *keys: str) -> list[dict[str, Any]]:
    return sorted(records, key=lambda r: (ORDER.index(r["model"]), *(r[k] for k in keys)))


def table(records: list[dict[str, Any]], column: Any, value: str, error: str | None,
          title: str, args: argparse.Namespace, scale: float = 1.0, digits: int = 2) -> str:
    """Rows of models, columns ``column(record)``: mean ± sd over seeds (or the
    record's ``error`` with one seed)."""
    rows = [{"model": label(r["model"], args), "column": column(r), "v": r[value],
             **({"e": r[error]} if error else {})} for r in records]
    summary = summarize(rows, ("model", "column"), "v", "e" if error else None)
    return markdown_table(summary, "model", "column", title, scale, digits)


def training_table(records: list[dict[str, Any]], args: argparse.Namespace) -> str:
    """Epochs run, the best (kept) epoch and minutes per model and code, first seed."""
    first = [r for r in records if r["model"] != "pca" and r["seed"] == args.seeds[0]]
    codes = sorted({r["code"] for r in first})
    cells = {(r["model"], r["code"]): r for r in first}
    lines = [f"Training (seed {args.seeds[0]}): epochs run (best epoch kept), minutes", "",
             "| model | " + " | ".join(f"code {c}" for c in codes) + " |",
             "| --- |" + " ---: |" * len(codes)]
    for name in dict.fromkeys(r["model"] for r in first):
        cell = [cells.get((name, c)) for c in codes]
        lines.append(f"| {label(name, args)} | " + " | ".join(
            "" if r is None else f"{r['epochs']} ({r['best_epoch']}), "
            f"{r['train_seconds'] / 60:.1f} min" for r in cell) + " |")
    return "\n".join(lines) + "\n"


def anchor_table(records: list[dict[str, Any]], args: argparse.Namespace) -> str:
    rows = [r for r in records if r["code"] == DEEP_CODE and r["model"] in PAPER]
    lines = [f"Anchor: {DEEP_CODE}-d codes against Hinton & Salakhutdinov (2006)", "",
             "| model | epochs | train min | test squared error per image | H&S 2006 |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for name in ("deep-ae", "pca"):
        rs = [r for r in rows if r["model"] == name]
        if not rs:
            continue
        values = [r["squared_error"] for r in rs]
        spread = (f" ± {statistics.stdev(values):.2f} (sd, {len(rs)} seeds)" if len(rs) > 1
                  else f" ± {rs[0]['squared_error_stderr']:.2f}")
        epochs = "" if name == "pca" else str(rs[0]["epochs"])
        minutes = "" if name == "pca" else f"{rs[0]['train_seconds'] / 60:.1f}"
        lines.append(f"| {label(name, args)} | {epochs} | {minutes} | "
                     f"{statistics.fmean(values):.2f}{spread} | {PAPER[name]:.2f} |")
    return "\n".join(lines) + "\n"


def robustness_figure(records: list[dict[str, Any]], args: argparse.Namespace,
                      path: Path) -> None:
    """Two panels: squared error against the clean image vs the noise level."""
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    for ax, kind, xlabel in ((axes[0], "gaussian", "Gaussian noise sigma"),
                             (axes[1], "masking", "masking fraction p")):
        for name in dict.fromkeys(r["model"] for r in records):
            per_seed = [[row for row in r["rows"] if row["noise"] == kind]
                        for r in records if r["model"] == name]
            levels = [row["level"] for row in per_seed[0]]
            values = np.array([[row["squared_error"] for row in rows] for rows in per_seed])
            errors = (values.std(0, ddof=1) if len(values) > 1 else
                      np.array([row["squared_error_stderr"] for row in per_seed[0]]))
            ax.errorbar(levels, values.mean(0), yerr=errors, marker="o", markersize=4,
                        capsize=2, label=label(name, args))
        ax.set_xlabel(xlabel)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("squared error vs the clean image, per test image")
    axes[1].legend(loc="upper left", fontsize=8)
    fig.suptitle(f"Reconstruction of corrupted test images, code size {args.feature_code} "
                 f"({args.dataset})")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")


def maps_figure(bench: Bench, seed: int, path: Path) -> None:
    """PCA, AE and VAE codes of size 2 of the test images, coloured by class."""
    data, args = bench.data, bench.args
    shown = [n for n in ("pca", "ae", "vae") if n == "pca" or n in args.models]
    fig = Figure(figsize=(4.6 * len(shown) + 1.2, 4.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(shown)))
    cmap = matplotlib.colormaps["tab10"]
    colours = cmap(data.test.y.numpy() % 10)
    for ax, name in zip(axes, shown):
        z = batched(bench.coder(name, 2, seed).encode, data.test.x).numpy()
        ax.scatter(z[:, 0], z[:, 1], c=colours, s=3 if len(z) > 2000 else 8, alpha=0.5,
                   linewidths=0)
        ax.set_title(label(name, args))
        ax.set_xlabel("z1")
        ax.set_ylabel("z2")
    handles = [Line2D([], [], linestyle="", marker="o", color=cmap(k % 10),
                      label=data.class_names[k]) for k in range(data.num_classes)]
    fig.legend(handles=handles, loc="outside right center", frameon=False, title="class")
    fig.suptitle(f"2-d codes of the {len(data.test)} test images ({args.dataset}, seed {seed})")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")


# ---------------------------------------------------------------- main
def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="mnist", choices=["mnist", "digits"])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--codes", nargs="+", type=int, default=[2, 8, 32])
    parser.add_argument("--feature-code", type=int, default=32,
                        help="code size of the features and robustness benchmarks")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--epochs", type=int, default=20, help="epoch budget per model")
    parser.add_argument("--max-minutes", type=float, default=4.0,
                        help="training time budget per model (whichever ends first)")
    parser.add_argument("--deep-epochs", type=int, default=200)
    parser.add_argument("--deep-minutes", type=float, default=15.0)
    parser.add_argument("--patience", type=int, default=10,
                        help="early stopping on the validation loss")
    parser.add_argument("--hidden", nargs="+", type=int, default=[512, 256])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--max-train", type=int, default=0,
                        help="subsample the training split to N images (0: all)")
    parser.add_argument("--dae-masking", type=float, default=0.25)
    parser.add_argument("--dae-sigma", type=float, default=0.3)
    parser.add_argument("--sparse-weight", type=float, default=0.1)
    parser.add_argument("--contraction", type=float, default=0.1)
    parser.add_argument("--vae-likelihood", default="gaussian",
                        choices=["gaussian", "continuous-bernoulli"])
    parser.add_argument("--labels", nargs="+", default=["1000", "all"],
                        help="labelled training images for the features benchmark ('all')")
    parser.add_argument("--c-grid", nargs="+", type=float,
                        default=[1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0])
    parser.add_argument("--lr-max-iter", type=int, default=1000,
                        help="iterations of the logistic regression's L-BFGS")
    parser.add_argument("--sigmas", nargs="+", type=float, default=[0.0, 0.1, 0.2, 0.3, 0.5])
    parser.add_argument("--masking", nargs="+", type=float,
                        default=[0.0, 0.1, 0.25, 0.5, 0.75])
    parser.add_argument("--out", default=f"runs/autoencoders-{datetime.date.today()}")
    args = parser.parse_args()
    for n in args.labels:
        if n != "all" and not (n.isdigit() and int(n) > 0):
            parser.error(f"--labels takes positive integers or 'all', got {n!r}")
    if min(args.codes) < 1 or args.feature_code < 1:
        parser.error("code sizes must be at least 1")
    return args


def open_sweep(out: str, kind: str, settings: dict[str, Any], key: tuple[str, ...]) -> Sweep:
    """The results file of one benchmark; exits with the reason if it holds
    results of other settings."""
    try:
        return Sweep(out, kind, settings, key)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None


def reconstruction(bench: Bench, settings: dict[str, Any], spread: str) -> list[str]:
    """Benchmark 1: train every model once and score its reconstructions;
    the tables and ``reconstruction.png``."""
    args, data = bench.args, bench.data
    codes, fc = sorted(set(args.codes)), args.feature_code
    trained = [m for m in args.models if m not in ("dae-gauss", "deep-ae")]
    cells = [{"model": m, "code": c, "seed": s} for s in args.seeds for c in codes
             for m in ("pca", *trained)]
    if "dae-gauss" in args.models and fc in codes:
        cells += [{"model": "dae-gauss", "code": fc, "seed": s} for s in args.seeds]
    if "deep-ae" in args.models:
        cells += [{"model": m, "code": DEEP_CODE, "seed": s} for s in args.seeds
                  for m in ("pca", "deep-ae")]
    cells = list({tuple(c.values()): c for c in cells}.values())
    sweep = open_sweep(args.out, "reconstruction", settings, ("model", "code", "seed"))

    def describe(r: dict[str, Any]) -> str:
        trained = "" if r["model"] == "pca" else (
            f"{r['epochs']} epochs (best {r['best_epoch']}), {r['train_seconds']:.0f} s, ")
        return (f"{label(r['model'], args)}: {trained}test squared error "
                f"{r['squared_error']:.3f} ± {r['squared_error_stderr']:.3f}")

    keys = {tuple(c.values()) for c in cells}  # of the stored records, this run's
    records = ordered([r for r in sweep.run(cells, bench.train_cell, describe)
                       if (r["model"], r["code"], r["seed"]) in keys], "code", "seed")
    main_records = [r for r in records if r["code"] in codes and r["model"] != "deep-ae"]
    tables = [table(main_records, lambda r: f"code {r['code']}", "squared_error",
                    "squared_error_stderr", f"Test squared error per image (sum over "
                    f"{data.input_dim} pixels in [0, 1]) on {args.dataset}, ± {spread}",
                    args)]
    if "deep-ae" in args.models:
        tables.append(anchor_table(records, args))
    tables.append(training_table(records, args))
    summary = summarize([{**r, "name": label(r["model"], args)} for r in main_records],
                        ("name", "code"), "squared_error")
    plot_sweep(summary, "code", group="name", ylabel="test squared error per image",
               log_x=True, title=f"Reconstruction ({args.dataset})",
               path=Path(args.out) / "reconstruction.png")
    return tables


def features(bench: Bench, settings: dict[str, Any]) -> list[str]:
    """Benchmark 2: logistic regression on the codes; its table."""
    args, fc = bench.args, bench.args.feature_code
    names = ["pixels", "pca", *(m for m in args.models if m != "deep-ae")] \
        if fc in args.codes else []
    names += ["deep-ae"] if "deep-ae" in args.models else []
    if not names:
        return []
    cells = [{"model": m, "labels": n, "seed": s} for s in args.seeds
             for m in names for n in args.labels]
    sweep = open_sweep(args.out, "features", {
        **settings, "feature_code": fc, "c_grid": args.c_grid,
        "lr_max_iter": args.lr_max_iter}, ("model", "labels", "seed"))

    def run(cell: dict[str, Any]) -> dict[str, Any]:
        try:
            return bench.feature_cell(cell)
        except DataError as e:  # too few training images of a class for the labels
            return {"skipped": str(e)}

    def describe(r: dict[str, Any]) -> str:
        if "skipped" in r:
            return f"skipped: {r['skipped']}"
        return (f"test error {100 * r['test_error']:.2f}% (C = {r['C']:g}, val accuracy "
                f"{100 * r['val_accuracy']:.2f}%"
                f"{'' if r['converged'] else ', L-BFGS not converged'})")

    keys = {tuple(c.values()) for c in cells}
    records = ordered([r for r in sweep.run(cells, run, describe) if "skipped" not in r
                       and (r["model"], r["labels"], r["seed"]) in keys], "seed")
    if not records:
        return []
    return [table(records, lambda r: f"{r['labels']} labels", "test_error", None,
                  f"Test error (%) of logistic regression on standardized codes of size {fc} "
                  f"(the deep AE: {DEEP_CODE}; raw pixels: {bench.data.input_dim}), C chosen "
                  f"on the validation split"
                  + (", mean ± sd over seeds" if len(args.seeds) > 1 else ""),
                  args, scale=100.0, digits=2)]


def robustness(bench: Bench, settings: dict[str, Any], spread: str) -> list[str]:
    """Benchmark 3: reconstructions of corrupted images; the tables and
    ``robustness.png``."""
    args, fc = bench.args, bench.args.feature_code
    if fc not in args.codes:
        return []
    cells = [{"model": m, "seed": s} for s in args.seeds
             for m in ("pca", *(m for m in args.models if m != "deep-ae"))]
    sweep = open_sweep(args.out, "robustness", {
        **settings, "feature_code": fc, "sigmas": args.sigmas, "masking": args.masking},
        ("model", "seed"))
    records = sweep.run(cells, bench.robustness_cell, lambda r: ", ".join(
        f"{row['noise'][0]}{row['level']:g} {row['squared_error']:.2f}" for row in r["rows"]))
    keys = {tuple(c.values()) for c in cells}
    records = ordered([r for r in records if (r["model"], r["seed"]) in keys], "seed")
    flat = [{"model": r["model"], "seed": r["seed"], **row}
            for r in records for row in r["rows"]]
    robustness_figure(records, args, Path(args.out) / "robustness.png")
    return [table([r for r in flat if r["noise"] == kind], lambda r: f"{r['level']:g}",
                  "squared_error", "squared_error_stderr",
                  f"Squared error against the clean test image, {name} (columns), code size "
                  f"{fc}, ± {spread}", args)
            for kind, name in (("gaussian", "Gaussian noise, sigma"), ("masking", "masking, p"))]


def main() -> None:
    args = parse_args()
    bench = Bench(args)
    data = bench.data
    settings = {k: getattr(args, k) for k in (
        "dataset", "max_train", "hidden", "epochs", "max_minutes", "deep_epochs",
        "deep_minutes", "patience", "batch_size", "lr", "dae_masking", "dae_sigma",
        "sparse_weight", "contraction", "vae_likelihood")}
    spread = "sd over seeds" if len(args.seeds) > 1 else "standard error over test images"
    print(f"{data!r}; machine: {machine()}")
    tables = [*reconstruction(bench, settings, spread), *features(bench, settings),
              *robustness(bench, settings, spread)]
    if 2 in args.codes:  # 4. maps
        maps_figure(bench, args.seeds[0], Path(args.out) / "maps.png")
    header = (f"{args.dataset}: {len(data.train)} train / {len(data.val)} val / "
              f"{len(data.test)} test images; machine: {machine()}; budget per model "
              f"{args.epochs} epochs or {args.max_minutes:g} min (deep AE {args.deep_epochs} "
              f"epochs or {args.deep_minutes:g} min), patience {args.patience}, Adam lr "
              f"{args.lr:g}, batch {args.batch_size}, hidden {tuple(args.hidden)}, "
              f"seeds {args.seeds}\n")
    text = "\n".join([header, *tables])
    atomic_write(Path(args.out) / "tables.md", text.encode())
    print("\n" + text)


if __name__ == "__main__":
    main()
