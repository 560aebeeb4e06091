"""Predictive sparse decomposition (PSD) on MNIST: how close to the sparse
codes, and how much faster, the predictive encoder is.

Kavukcuoglu, Ranzato & LeCun (2008) train a feed-forward encoder
F(x) = G tanh(W x + b) to predict the sparse codes of 12x12 image patches,
z*(x) = argmin_z 1/2 |x - D z|^2 + lambda |z|_1, so that one pass of F can
stand in for the optimization. This benchmark trains ppvae's ``psd``
(:mod:`ppvae.models.psd`: unit-norm dictionary D, FISTA MAP codes, F trained
by the penalty alpha |z* - F(x)|^2) with ``ppvae.fit`` under a budget, with
early stopping on a validation split, then compares on test data:

- codes: F(x); FISTA after k iterations (default 1, 5, 10, 50) from zero
  (cold) and from F(x) (warm); and z*, FISTA from zero run to convergence
  (``--reference-iterations``; ``--check-iterations`` more show how far from
  converged it still is);
- for each: the mean sparse-coding energy 1/2 |x - D z|^2 + lambda |z|_1, its
  excess over z*'s, the relative error |z - z*| / |z*| (mean over the test
  points with z* != 0) and the fraction of codes exactly zero;
- time per image, all interleaved in one run in an order rotating from repeat
  to repeat, median over ``--repeats``: a batch of ``--time-batch`` images at
  once, and ``--time-single`` images one per call. F(x) is ``model.code``,
  FISTA is :func:`ppvae.models.psd.fista` (which computes L = |D|_2^2 and
  D^T D on every call; that set-up is timed alone too), both without
  gradients and without input checks.

Data (``--patch P``, P > 0): P x P patches at uniform random positions of
uniformly drawn images, grey values in [0, 1], not normalized: training
patches from the training split, validation patches from the validation split
(both from MNIST's training file, split by ``load_dataset``), test patches from
the test images. The training and validation draws follow ``--seed``; the test
draws are fixed. ``--patch 0``: whole images.

Writes into ``--out``: ``psd.json`` (settings, data, training history, every
row and timing), ``atoms.png`` (the dictionary, atoms sorted by how often z*
uses them), ``energy.png`` (mean energy above z*'s against k, cold and warm),
the model (``ppvae.save``, in ``model/``) and the training logs (``train/``).
Prints a Markdown table for benchmarks/README.md.

Usage: PPVAE_DATA=../shared/data python benchmarks/psd.py [--max-minutes 6] [--atoms 256]
       [--sparsity 0.5] [--patch 12] [--dataset mnist] [--repeats 7] [--threads 1] [--out DIR]
Quick check: python benchmarks/psd.py --dataset digits --epochs 2 --repeats 3
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import pyro
import torch
from common import machine
from matplotlib.figure import Figure
from torch import Tensor

import ppvae
from ppvae.data import load_dataset
from ppvae.models.psd import PredictiveSparseDecomposition, fista
from ppvae.plots import image_grid

#: the iteration counts of the energy-curve figure (with ``--k`` added)
CURVE_ITERATIONS = (1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 70, 100)
#: the generator seed of the test patches, the same for every --seed
TEST_SEED = 2**62


# ------------------------------------------------------------------ data
def sample_patches(images: Tensor, side: int, size: int, count: int,
                   generator: torch.Generator) -> Tensor:
    """``count`` patches ``(count, size * size)`` of the flattened ``side`` x
    ``side`` ``images``: uniform images, uniform positions."""
    pick = torch.randint(len(images), (count,), generator=generator)
    rows = torch.randint(side - size + 1, (count,), generator=generator)
    cols = torch.randint(side - size + 1, (count,), generator=generator)
    offsets = torch.arange(size)
    squares = images.view(-1, side, side)
    patches = squares[pick[:, None, None], (rows[:, None] + offsets)[:, :, None],
                      (cols[:, None] + offsets)[:, None, :]]
    return patches.reshape(count, size * size)


def make_data(args: argparse.Namespace) -> tuple[dict[str, Tensor], tuple[int, int, int], int]:
    """The train / val / test points, their image shape and the patch size
    (0: whole images)."""
    data = load_dataset(args.dataset, seed=args.seed)
    channels, side, width = data.image_shape
    patch = args.patch if args.patch is not None else (12 if side >= 24 else 0)
    splits = {"train": data.train.x, "val": data.val.x, "test": data.test.x}
    counts = {"train": args.train_points, "val": args.val_points, "test": args.test_points}
    if patch == 0:
        return {k: x[: counts[k]] for k, x in splits.items()}, data.image_shape, 0
    if channels != 1 or side != width or not 0 < patch < side:
        raise ValueError(f"--patch {patch} does not fit {data.image_shape} images: give a size "
                         f"below {side} (square grey images), or 0 for whole images")
    seeds = {"train": 2 * args.seed, "val": 2 * args.seed + 1, "test": TEST_SEED}
    points = {k: sample_patches(x, side, patch, counts[k], torch.Generator().manual_seed(seeds[k]))
              for k, x in splits.items()}
    return points, (1, patch, patch), patch


# ------------------------------------------------------------------ codes
def energy(x: Tensor, D: Tensor, lam: float, z: Tensor) -> Tensor:
    """1/2 |x - D z|^2 + lam |z|_1 per row, in float64."""
    x, D, z = x.double(), D.double(), z.double()
    return 0.5 * (x - z @ D.T).square().sum(-1) + lam * z.abs().sum(-1)


def code_row(name: str, start: str, k: int | None, z: Tensor, x: Tensor, D: Tensor,
             lam: float, z_star: Tensor, e_star: Tensor) -> dict:
    """Energy, excess over z*, relative error against z* and zero fraction of codes z."""
    e = energy(x, D, lam, z)
    norms = z_star.norm(dim=-1)
    nonzero = norms > 0
    relative = ((z - z_star).norm(dim=-1)[nonzero] / norms[nonzero]).double()
    return {"codes": name, "start": start, "iterations": k,
            "energy": float(e.mean()), "excess_energy": float((e - e_star).mean()),
            "relative_error_mean": float(relative.mean()),
            "relative_error_median": float(relative.median()),
            "relative_error_pooled": float((z - z_star).norm() / z_star.norm()),
            "zero_fraction": float((z == 0).double().mean())}


@torch.no_grad()
def quality(model: PredictiveSparseDecomposition, x: Tensor,
            args: argparse.Namespace) -> tuple[list[dict], dict, Tensor]:
    """The table's rows, the energy curves and z*."""
    D, lam = model.dictionary(), model.sparsity
    start = time.perf_counter()
    z_star = fista(x, D, lam, args.reference_iterations)
    z_more = fista(x, D, lam, args.check_iterations, z0=z_star)
    e_star = energy(x, D, lam, z_star)
    reference = {
        "iterations": args.reference_iterations, "check_iterations": args.check_iterations,
        "energy_drop": float((e_star - energy(x, D, lam, z_more)).mean()),
        "code_change": float((z_more - z_star).norm() / z_star.norm()),
        "points_with_zero_code": int((z_star.norm(dim=-1) == 0).sum()),
        "seconds": time.perf_counter() - start}
    f = model.code(x)
    against = (x, D, lam, z_star, e_star)
    rows = [code_row("F(x)", "", None, f, *against)]
    grid = sorted(set(CURVE_ITERATIONS) | set(args.k))
    curves: dict[str, list[float]] = {"iterations": grid, "cold": [], "warm": []}
    for start_name, z0 in (("cold", None), ("warm", f)):
        for k in grid:
            row = code_row("FISTA", start_name, k, fista(x, D, lam, k, z0=z0), *against)
            curves[start_name].append(row["excess_energy"])
            if k in args.k:
                rows.append(row)
    rows.append(code_row("z*", "cold", args.reference_iterations, z_star, *against))
    curves["F(x)"] = rows[0]["excess_energy"]
    return rows, {"reference": reference, "curves": curves}, z_star


# ------------------------------------------------------------------ speed
@torch.no_grad()
def timing(model: PredictiveSparseDecomposition, x: Tensor,
           args: argparse.Namespace) -> dict[str, dict[str, list[float]]]:
    """Seconds per image of each code, per repeat: ``batch`` and ``single``."""
    D, lam = model.dictionary(), model.sparsity
    runners: dict[str, Callable[[Tensor], object]] = {"F(x)": model.code}
    for k in args.k:
        runners[f"cold {k}"] = lambda xb, k=k: fista(xb, D, lam, k)
        runners[f"warm {k}"] = lambda xb, k=k: fista(xb, D, lam, k, z0=model.code(xb))
    runners["z*"] = lambda xb: fista(xb, D, lam, args.reference_iterations)
    runners["setup"] = lambda xb: (torch.linalg.matrix_norm(D, 2), D.T @ D)
    batch, single = x[: args.time_batch], x[: args.time_single]
    modes = {"batch": (batch, len(batch)), "single": (single, 1)}
    for run in runners.values():  # warm-up
        run(x[:2])
    times = {name: {"batch": [], "single": []} for name in runners}
    names = list(runners)
    for repeat in range(args.repeats):
        shift = repeat % len(names)
        for name in names[shift:] + names[:shift]:
            for mode, (points, chunk) in modes.items():
                if mode == "single" and name == "z*":
                    continue
                start = time.perf_counter()
                for xb in torch.split(points, chunk):
                    runners[name](xb)
                times[name][mode].append((time.perf_counter() - start) / len(points))
    return times


def speed_summary(times: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, dict]]:
    """Median and range per image (seconds), and the paired ratio to F(x)."""
    out: dict[str, dict[str, dict]] = {}
    for name, modes in times.items():
        out[name] = {}
        for mode, t in modes.items():
            if not t:
                continue
            ratios = [a / b for a, b in zip(t, times["F(x)"][mode])]
            out[name][mode] = {"median": statistics.median(t), "min": min(t), "max": max(t),
                               "ratio_to_F_median": statistics.median(ratios),
                               "ratio_to_F_min": min(ratios), "ratio_to_F_max": max(ratios)}
    return out


# ------------------------------------------------------------------ figures
def atoms_figure(model: PredictiveSparseDecomposition, shape: tuple[int, int, int],
                 usage: Tensor, path: Path) -> None:
    """The atoms as images (0.5 grey at zero, each scaled by its largest
    |value|), sorted by the share of test points whose z* uses them."""
    atoms = model.dictionary().T[usage.argsort(descending=True)]
    atoms = 0.5 + 0.5 * atoms / atoms.abs().amax(dim=1, keepdim=True)
    image_grid(atoms, shape, nrow=min(16, len(atoms)), path=path,
               title=f"PSD dictionary: {len(atoms)} atoms, most used first")


def energy_figure(curves: dict, reference_iterations: int, path: Path) -> None:
    """Mean energy above z*'s against FISTA iterations, cold and warm."""
    fig = Figure(figsize=(5.5, 4.0), layout="constrained")
    ax = fig.add_subplot()
    k = curves["iterations"]
    ax.plot(k, curves["cold"], "o-", label="FISTA from 0")
    ax.plot(k, curves["warm"], "s-", label="FISTA from F(x)")
    ax.axhline(curves["F(x)"], color="k", linestyle="--", label="F(x) alone")
    ax.set_xscale("log")
    ax.set_yscale("log")  # points at or below z*'s energy are left out
    ax.set_xlabel("FISTA iterations k")
    ax.set_ylabel(f"mean energy − energy of z* ({reference_iterations} iterations)")
    ax.set_title("Sparse-coding energy of FISTA's codes, cold and warm start")
    ax.legend()
    fig.savefig(path, dpi=120, format="png")


# ------------------------------------------------------------------ report
def microseconds(summary: dict, name: str, mode: str) -> str:
    if mode not in summary[name]:
        return "—"
    s = summary[name][mode]
    text = f"{1e6 * s['median']:.3g}"
    return text if name == "F(x)" else f"{text} ({s['ratio_to_F_median']:.3g}×)"


def print_report(record: dict) -> None:
    a, d, h, ref = record["args"], record["data"], record["training"], record["reference"]
    speed = record["speed"]
    what = f"{a['patch']}x{a['patch']} patches" if a["patch"] else "whole images"
    print(f"\nmachine: {record['machine']}")
    print(f"data: {a['dataset']} {what}: {d['train']} train / {d['val']} val / {d['test']} "
          f"test; PSD with {a['atoms']} atoms, lambda {a['sparsity']:g}, alpha "
          f"{a['prediction']:g}, {a['train_iterations']} FISTA iterations per training step")
    print(f"training: {h['epochs']} epochs in {h['seconds'] / 60:.1f} min (best epoch "
          f"{h['best_epoch']}{', stopped early' if h['stopped_early'] else ''}), batch "
          f"{a['batch_size']}, Adam lr {a['lr']:g}; best val loss {h['best_val_loss']:.4f} (the training "
          f"objective per point, constants included)")
    print(f"z*: FISTA from 0, {ref['iterations']} iterations; {ref['check_iterations']} more "
          f"lower the mean energy by {ref['energy_drop']:.2g} and move the codes by "
          f"{ref['code_change']:.2g} (relative); {ref['points_with_zero_code']} test points "
          f"have z* = 0 (left out of the relative error)")
    print(f"timing: median of {a['repeats']} repeats, interleaved; batch of "
          f"{a['time_batch']} images, and {a['time_single']} images one per call; "
          f"(×): time over F(x)'s within each repeat, median\n")
    print(f"| codes | energy | excess over z* | ‖z − z*‖ / ‖z*‖ | zero codes | "
          f"µs / image, batch of {a['time_batch']} | µs / image, one per call |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in record["rows"]:
        if row["codes"] == "F(x)":
            label, key = "F(x) = G tanh(Wx + b)", "F(x)"
        elif row["codes"] == "z*":
            label, key = f"z*: FISTA from 0, k = {row['iterations']}", "z*"
        else:
            origin = "0" if row["start"] == "cold" else "F(x)"
            label, key = f"FISTA from {origin}, k = {row['iterations']}", \
                f"{row['start']} {row['iterations']}"
        print(f"| {label} | {row['energy']:.4f} | {row['excess_energy']:.3g} | "
              f"{row['relative_error_mean']:.3f} | {100 * row['zero_fraction']:.1f}% | "
              f"{microseconds(speed, key, 'batch')} | {microseconds(speed, key, 'single')} |")
    setup = speed["setup"]
    print(f"\nEvery fista call first computes L = |D|_2^2 and DᵀD: "
          f"{1e6 * setup['single']['median']:.3g} µs alone, included above.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="mnist", help="mnist, or digits for a quick check")
    parser.add_argument("--patch", type=int, default=None,
                        help="patch size, 0 for whole images (default: 12 on MNIST, "
                             "whole images on 8x8 digits)")
    parser.add_argument("--train-points", type=int, default=60000,
                        help="training patches (for whole images: at most this many)")
    parser.add_argument("--val-points", type=int, default=5000)
    parser.add_argument("--test-points", type=int, default=10000)
    parser.add_argument("--atoms", type=int, default=256, help="dictionary size K")
    parser.add_argument("--sparsity", type=float, default=0.5, help="lambda, the L1 weight")
    parser.add_argument("--prediction", type=float, default=1.0,
                        help="alpha, the weight of |z* - F(x)|^2")
    parser.add_argument("--train-iterations", type=int, default=50,
                        help="FISTA iterations per training step (from F(x))")
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--max-minutes", type=float, default=6.0, help="training budget")
    parser.add_argument("--patience", type=int, default=10,
                        help="epochs without a better validation loss before stopping")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    parser.add_argument("--k", type=int, nargs="+", default=[1, 5, 10, 50],
                        help="FISTA iterations to compare")
    parser.add_argument("--reference-iterations", type=int, default=1000,
                        help="FISTA iterations from 0 for z*")
    parser.add_argument("--check-iterations", type=int, default=100,
                        help="further iterations from z* that check its convergence")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--time-batch", type=int, default=1000)
    parser.add_argument("--time-single", type=int, default=100)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: torch's own)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=f"runs/psd-{datetime.date.today().isoformat()}")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    out = Path(args.out)

    points, shape, args.patch = make_data(args)
    pyro.set_rng_seed(args.seed)
    model = PredictiveSparseDecomposition(
        shape, latent_dim=args.atoms, sparsity=args.sparsity, prediction=args.prediction,
        iterations=args.train_iterations)
    history = ppvae.fit(model, (points["train"], points["val"]), epochs=args.epochs,
                        max_minutes=args.max_minutes, batch_size=args.batch_size, lr=args.lr,
                        patience=args.patience, seed=args.seed, out_dir=out / "train")
    ppvae.save(model, out / "model")

    x = points["test"]
    rows, evaluation, z_star = quality(model, x, args)
    speed = speed_summary(timing(model, x, args))
    atoms_figure(model, shape, (z_star != 0).double().mean(0), out / "atoms.png")
    energy_figure(evaluation["curves"], args.reference_iterations, out / "energy.png")

    val_loss = history.metrics.get("val_loss", [math.nan])
    record = {
        "machine": machine(), "threads": torch.get_num_threads(),
        "args": vars(args),
        "data": {"shape": list(shape), **{k: len(v) for k, v in points.items()}},
        "training": {**history.as_dict(), "epochs": history.epochs,
                     "best_val_loss": min(val_loss)},
        "reference": evaluation["reference"], "curves": evaluation["curves"],
        "rows": rows, "speed": speed}
    record["args"]["time_batch"] = min(args.time_batch, len(x))
    record["args"]["time_single"] = min(args.time_single, len(x))
    (out / "psd.json").write_text(json.dumps(record, indent=2) + "\n")
    print_report(record)


if __name__ == "__main__":
    main()
