"""Two models of ``mnist_nll.py`` compared on the same test images: each
one's test NLL and the paired difference with its standard error.

Two NLLs estimated on the same images are not independent: an image that is
hard for one model is hard for the other. The standard error of their
difference is sd_i(d_i) / sqrt(N) with d_i the per-image difference
(:meth:`ppvae.infer.LogLikelihood.difference`), usually far below
sqrt(se_A^2 + se_B^2), the error of independent estimates that the tables of
``mnist_nll.py`` allow.

Each argument is a run directory that ``mnist_nll.py`` wrote, ``OUT/MODEL``,
beside its record ``OUT/MODEL.json``; the model is rebuilt from the record's
settings and given the weights of the run's last checkpoint (the end of its
budget: the record's own estimate is of its best validation epoch, which
the run does not keep). Both are estimated with K = ``--eval-samples`` on the
first ``--eval-images`` test images, with the estimator's seed ``--seed``.

Usage: PPVAE_DATA=../shared/data python benchmarks/paired_nll.py runs/nll-bias/vae runs/nll-bias/vamp
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from common import machine
from mnist_nll import EARLIER, LABELS, load_last_checkpoint

from ppvae.data import load_dataset


def record_of(run: Path) -> dict:
    """The record ``mnist_nll.py`` wrote for the run directory ``run``."""
    path = run.parent / f"{run.name}.json"
    if not run.is_dir() or not path.is_file():
        raise SystemExit(f"{run} is not a run of mnist_nll.py: needs the directory and {path}")
    return json.loads(path.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs=2, type=Path, help="two run directories, OUT/MODEL")
    parser.add_argument("--eval-samples", type=int, default=5000)
    parser.add_argument("--eval-images", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0, help="the estimator's seed")
    args = parser.parse_args()
    records = [record_of(run) for run in args.runs]
    datasets = {r["settings"]["dataset"] for r in records}
    if len(datasets) > 1:
        raise SystemExit(f"the two runs are on different data sets: {sorted(datasets)}")
    if args.eval_samples < 1 or args.eval_images < 2:
        raise SystemExit("--eval-samples must be at least 1 and --eval-images at least 2")

    data = load_dataset(datasets.pop(), binarize="dynamic")  # its test set: the same for any seed
    x = data.test.x[: args.eval_images]
    results, rows = [], []
    for run, record in zip(args.runs, records):
        settings = argparse.Namespace(**{**EARLIER, **record["settings"]}, out=str(run.parent))
        model, epoch = load_last_checkpoint(record["model"], settings, data.image_shape)
        result = model.log_likelihood(x, num_samples=args.eval_samples, seed=args.seed,
                                      progress=True)
        results.append(result)
        rows.append(f"| {LABELS[record['model']]} | {run} | {epoch} | {-result.mean:.2f} ± "
                    f"{result.stderr:.2f} |")
    # NLL_A - NLL_B = -(log p_A - log p_B)
    difference, paired = results[1].difference(results[0])
    independent = math.hypot(results[0].stderr, results[1].stderr)

    print(f"\nmachine: {machine()}; the last checkpoint of each run, K = {args.eval_samples}, "
          f"the first {len(x)} test images, estimator seed {args.seed}\n")
    print("| model | run | epoch | test NLL |")
    print("| --- | --- | ---: | ---: |")
    print("\n".join(rows))
    print(f"\nNLL of the first minus the second: {difference:.2f} ± {paired:.2f} (paired standard "
          f"error; {independent:.2f} if the estimates were independent)")


if __name__ == "__main__":
    main()
