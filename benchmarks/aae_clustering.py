"""Unsupervised clustering of MNIST by an adversarial autoencoder with a
categorical code (Makhzani et al. 2015, Sec. 6: 16 clusters 9.55% error,
30 clusters 4.10%), beside k-means on the pixels.

Methods, one cell per (method, clusters K, seed):

- ``aae``: :class:`ppvae.models.CategoricalAdversarialAutoencoder`, no
  labels: a softmax code of K clusters (prior: one-hot draws, uniform) and a
  style code of ``--style-dim`` (prior N(0, I)), each matched by a
  discriminator; encoder, decoder and discriminators with ``--hidden``
  (1000-1000, ReLU), Bernoulli likelihood on MNIST binarized dynamically,
  Adam ``--lr``, batches of ``--batch-size``, ``--epochs`` or
  ``--max-minutes``, the last epoch kept (an adversarial loss does not rank
  epochs). These are this benchmark's choices, not the paper's (which
  trains in two phases with SGD, its architecture in its appendix).
- ``kmeans``: scikit-learn's k-means (k-means++, ``n_init=4``) on the grey
  pixels of the training images, for reference: q(k | x) is one-hot at the
  nearest centroid.

Scores: the clusters are named by the validation images (10% of MNIST's
training file, fixed), by the paper's rule (cluster k: the label of the
validation image of largest q(k | x)) and by majority vote
(:func:`ppvae.metrics.cluster_labels`); the test error is the share of test
images whose cluster's name is not their label. Also recorded: clusters
used by the test images (their most probable cluster), mean max_k q(k | x),
epochs and seconds.

Writes into ``--out``: ``clustering_results.{json,md,png}`` (a resumable
:class:`~ppvae.experiments.sweep.Sweep`; a rerun runs only the missing cells
and refuses a directory of other settings), ``clusters-<method>-K<k>-s<seed>.png``
(per cluster, one row: the decoded image of the one-hot code at style 0 for
the AAE, or the centroid for k-means, then the 8 test images of largest
q(k | x)).

Usage: PPVAE_DATA=../shared/data python benchmarks/aae_clustering.py [--clusters 16 30]
       [--seeds 0] [--max-minutes 20] [--out DIR]
Quick check: python benchmarks/aae_clustering.py --dataset digits --clusters 16 --epochs 5
       --hidden 64 --out /tmp/clustering-check
"""

from __future__ import annotations

import argparse
import datetime
import time

import numpy as np
import pyro
import torch
from common import machine
from sklearn.cluster import KMeans

import ppvae
from ppvae.data import load_dataset
from ppvae.experiments.sweep import Sweep
from ppvae.metrics import cluster_labels, clustering_error
from ppvae.models import CategoricalAdversarialAutoencoder
from ppvae.plots import image_grid

METHODS = ("aae", "kmeans")
#: the validation split's seed (and the fixed binarization of val and test)
DATA_SEED = 0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="mnist", choices=["mnist", "digits"])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--clusters", nargs="+", type=int, default=[16, 30])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--style-dim", type=int, default=5)
    parser.add_argument("--hidden", nargs="+", type=int, default=[1000, 1000])
    parser.add_argument("--adversarial-weight", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=500)
    parser.add_argument("--max-minutes", type=float, default=20.0,
                        help="training-time limit of each AAE")
    parser.add_argument("--out", default=f"runs/aae-clustering-{datetime.date.today()}")
    args = parser.parse_args()
    if min(args.clusters) < 2:
        parser.error(f"--clusters must be at least 2, got {args.clusters}")
    return args


def main() -> None:
    args = parse_args()
    data = load_dataset(args.dataset, seed=DATA_SEED, binarize="dynamic")
    grey = load_dataset(args.dataset, seed=DATA_SEED)
    settings = {k: v for k, v in vars(args).items()
                if k not in ("methods", "clusters", "seeds", "out")}
    try:
        sweep = Sweep(args.out, "clustering", settings, key=("method", "clusters", "seed"))
    except ValueError as e:  # a results file of other settings
        raise SystemExit(str(e)) from None

    def aae(k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        pyro.set_rng_seed(seed)
        model = CategoricalAdversarialAutoencoder(
            data.image_shape, num_clusters=k, style_dim=args.style_dim, hidden=args.hidden,
            likelihood="bernoulli", adversarial_weight=args.adversarial_weight,
            discriminator_hidden=args.hidden)
        history = ppvae.fit(model, data, epochs=args.epochs, lr=args.lr,
                            batch_size=args.batch_size, max_minutes=args.max_minutes,
                            seed=seed, progress=False)
        codes = torch.cat([torch.eye(k), torch.zeros(k, args.style_dim)], -1)
        return (model.cluster_probs(data.val.x), model.cluster_probs(data.test.x),
                model.decode(codes), {"epochs": history.epochs})

    def kmeans(k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict]:
        fitted = KMeans(k, n_init=4, random_state=seed).fit(grey.train.x.flatten(1).numpy())

        def probs(x: torch.Tensor) -> torch.Tensor:
            nearest = fitted.predict(x.flatten(1).numpy())
            return torch.nn.functional.one_hot(torch.as_tensor(nearest.astype(np.int64)), k
                                               ).float()

        return (probs(grey.val.x), probs(grey.test.x),
                torch.as_tensor(fitted.cluster_centers_, dtype=torch.float32),
                {"epochs": int(fitted.n_iter_)})

    def run(cell: dict) -> dict:
        method, k, seed = cell["method"], cell["clusters"], cell["seed"]
        start = time.perf_counter()
        val, test, prototypes, extra = (aae if method == "aae" else kmeans)(k, seed)
        seconds = time.perf_counter() - start
        errors = {f"test_error_{rule.replace('-', '_')}": clustering_error(
            test, data.test.y, cluster_labels(val, data.val.y, rule))
            for rule in ("max-prob", "majority")}
        top = test.topk(8, dim=0).indices.T  # (k, 8): the test images most probable per cluster
        rows = torch.cat([prototypes.unsqueeze(1), grey.test.x.flatten(1)[top]], 1)
        image_grid(rows.flatten(0, 1), data.image_shape, nrow=9,
                   title=f"{method}, {k} clusters: prototype, then the most probable test images",
                   path=f"{args.out}/clusters-{method}-K{k}-s{seed}.png")
        return {**errors, "clusters_used": len(test.argmax(1).unique()),
                "mean_max_prob": float(test.max(1).values.mean()), "seconds": seconds, **extra}

    sweep.run([{"method": m, "clusters": k, "seed": s}
               for s in args.seeds for k in args.clusters for m in args.methods], run,
              lambda r: (f"test error {100 * r['test_error_max_prob']:.2f}% (max-prob), "
                        f"{100 * r['test_error_majority']:.2f}% (majority); "
                        f"{r['clusters_used']} clusters used; {r['epochs']} epochs, "
                        f"{r['seconds']:.0f} s"))
    print(f"machine: {machine()}; {len(data.train)} train / {len(data.val)} val / "
          f"{len(data.test)} test images\n")
    for rule in ("max_prob", "majority"):
        print(sweep.report("method", "clusters", f"test_error_{rule}",
                           f"test error (%), clusters named by {rule.replace('_', '-')}",
                           " (mean ± sd over seeds)", scale=100, digits=2))


if __name__ == "__main__":
    main()
