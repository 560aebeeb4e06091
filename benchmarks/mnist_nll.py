"""Test log-likelihood on MNIST of a VAE and an IWAE, with the IWAE paper's setup.

Burda, Grosse & Salakhutdinov (2016), one stochastic layer: encoder
784-200-200-(50, 50) and decoder 50-200-200-784 with tanh, Bernoulli
likelihood, MNIST with dynamic binarization, Adam. Each model trains for a
stated wall-clock budget on this machine (the paper trains 3280 epochs), then
its test negative log-likelihood is estimated with K = 5000 importance samples
per test image (ppvae.infer.log_likelihood). The paper reports 86.76 (VAE) and
84.78 (IWAE, K = 50); pythae reproduces 89.78 and 86.82.

Prints a Markdown table (for benchmarks/README.md) and writes JSON records.

Usage: PPVAE_DATA=../shared/data python benchmarks/mnist_nll.py --minutes 20
       [--models vae iwae] [--eval-samples 5000] [--eval-images 10000] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pyro
from common import iwae_paper_vae, machine

import ppvae
from ppvae.data import load_dataset

PAPER = {"vae": 86.76, "iwae": 84.78}
PYTHAE = {"vae": 89.78, "iwae": 86.82}


def run(name: str, args: argparse.Namespace, data) -> dict:
    pyro.set_rng_seed(args.seed)
    vae = iwae_paper_vae()
    objective = {"vae": ("elbo", 1), "iwae": ("iwae", args.iwae_k)}[name]
    history = ppvae.fit(vae, data, epochs=100_000, max_minutes=args.minutes,
                        objective=objective[0], num_particles=objective[1], dreg=args.dreg,
                        batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                        progress=False, out_dir=Path(args.out) / name)
    x = data.test.x[: args.eval_images]
    start = time.perf_counter()
    result = vae.log_likelihood(x, num_samples=args.eval_samples, progress=True)
    return {"model": name, "objective": objective[0], "train_particles": objective[1],
            "dreg": args.dreg and name == "iwae", "epochs": history.epochs,
            "train_minutes": history.seconds / 60, "best_val_elbo": max(history.val_elbo),
            "test_nll": -result.mean, "test_nll_stderr": result.stderr,
            "test_elbo": result.elbo_mean, "eval_samples": args.eval_samples,
            "eval_images": len(x), "eval_seconds": time.perf_counter() - start,
            "khat_max": result.khat_max, "frac_khat_above_0.7": result.frac_khat_above}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", choices=["vae", "iwae"], default=["vae", "iwae"])
    parser.add_argument("--minutes", type=float, default=20.0, help="training budget per model")
    parser.add_argument("--iwae-k", type=int, default=50)
    parser.add_argument("--dreg", action="store_true", help="DReG gradients for the IWAE")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eval-samples", type=int, default=5000)
    parser.add_argument("--eval-images", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/bench-mnist-nll")
    args = parser.parse_args()

    data = load_dataset("mnist", binarize="dynamic", seed=args.seed)
    records = [run(name, args, data) for name in args.models]
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "mnist_nll.json").write_text(json.dumps(records, indent=2) + "\n")

    print(f"\nmachine: {machine()}; budget {args.minutes:g} min of training per model, "
          f"batch {args.batch_size}, Adam lr {args.lr:g}, dynamic binarization "
          f"({len(data.train)} train / {len(data.val)} val images)\n")
    print("| model | epochs | train min | test ELBO | test NLL (K=%d) | k-hat > 0.7 | "
          "paper (3280 epochs) | pythae |" % args.eval_samples)
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in records:
        label = "VAE" if r["model"] == "vae" else f"IWAE (K={r['train_particles']}" + (
            ", DReG)" if r["dreg"] else ")")
        print(f"| {label} | {r['epochs']} | {r['train_minutes']:.1f} | {-r['test_elbo']:.2f} | "
              f"{r['test_nll']:.2f} ± {r['test_nll_stderr']:.2f} | "
              f"{100 * r['frac_khat_above_0.7']:.1f}% | {PAPER[r['model']]} | "
              f"{PYTHAE[r['model']]} |")


if __name__ == "__main__":
    main()
