"""Speed of the importance-weighted log-likelihood estimator.

K importance samples for each of N MNIST test images with the IWAE paper's
network, trained briefly first (a trained decoder's confident logits cost more
per pixel in the log density than an untrained one's), timed in one run against
- the machine's matmul peak (float32 GEMM, measured here), as the fraction of
  it that the estimator's matrix products reach, and
- a naive estimator: one data point at a time through Pyro's own
  ``vectorized_importance_weights`` (which sums a batch into one joint weight,
  so a per-datapoint estimate with it needs one call per data point).

With ``--profile`` it also profiles one estimate (PyTorch's profiler) and
prints where the time goes: the matrix products (and the rate they reach),
the transcendental elementwise kernels (tanh, the Bernoulli's log-sigmoid),
sampling, and the rest; from these, the fraction of the peak the estimator
could reach if everything but the matrix products and the transcendentals
took no time at all.

Usage: PPVAE_DATA=../shared/data python benchmarks/eval_speed.py [--num-samples 5000]
       [--num-images 100] [--naive-images 10] [--train-epochs 2] [--profile]
"""

from __future__ import annotations

import argparse
import math
import time

import pyro
import torch
from common import iwae_paper_vae, linear_flops, machine, matmul_peak_gflops
from pyro.infer.importance import vectorized_importance_weights

from ppvae import fit
from ppvae.data import load_dataset
from ppvae.infer import log_likelihood


def naive(vae, x: torch.Tensor, num_samples: int) -> torch.Tensor:
    out = []
    for row in x:
        log_w, _, _ = vectorized_importance_weights(vae.model, vae.guide, row[None],
                                                 num_samples=num_samples, max_plate_nesting=1)
        out.append(torch.logsumexp(log_w, 0) - math.log(num_samples))
    return torch.stack(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-samples", type=int, default=5000)
    parser.add_argument("--num-images", type=int, default=100)
    parser.add_argument("--naive-images", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-epochs", type=int, default=2,
                        help="epochs of VAE training on MNIST before timing (0: untrained)")
    parser.add_argument("--profile", action="store_true",
                        help="also print where the time of one estimate goes")
    args = parser.parse_args()

    data = load_dataset("mnist", binarize="dynamic")
    x = data.test.x[: args.num_images]
    pyro.set_rng_seed(0)
    vae = iwae_paper_vae()
    if args.train_epochs:
        fit(vae, data, epochs=args.train_epochs, batch_size=100, progress=False)
    flops = args.num_images * args.num_samples * linear_flops(vae.likelihood.net)
    flops += args.num_images * linear_flops(vae.encoder.net)

    log_likelihood(vae.model, vae.guide, x[:8], num_samples=64)  # warm-up
    peak, ours, slow = [], [], []
    with torch.no_grad():
        for _ in range(args.repeats):  # interleaved, so machine noise hits all alike
            peak.append(matmul_peak_gflops())
            start = time.perf_counter()
            log_likelihood(vae.model, vae.guide, x, num_samples=args.num_samples)
            ours.append(time.perf_counter() - start)
            start = time.perf_counter()
            naive(vae, x[: args.naive_images], args.num_samples)
            slow.append((time.perf_counter() - start) * args.num_images / args.naive_images)
    peak_gflops = max(peak)
    t_ours, t_naive = min(ours), min(slow)
    rate = flops / t_ours / 1e9
    print(f"machine: {machine()}")
    print(f"task: K = {args.num_samples} importance samples x {args.num_images} MNIST test "
          f"images, 784-200-200-50 tanh VAE trained for {args.train_epochs} epochs "
          f"({flops / 1e9:.1f} GFLOP in its matrix products)")
    print(f"matmul peak (float32 2048^3 GEMM, best of {args.repeats}): {peak_gflops:.1f} GFLOP/s")
    print(f"ppvae.infer.log_likelihood: {t_ours:.2f} s, {rate:.1f} GFLOP/s = "
          f"{100 * rate / peak_gflops:.0f}% of the measured peak")
    print(f"naive per-datapoint loop (Pyro vectorized_importance_weights, {args.naive_images} "
          f"images, scaled to {args.num_images}): {t_naive:.2f} s")
    print(f"speed-up over the naive loop: {t_naive / t_ours:.1f}x")
    if args.profile:
        profile_estimate(vae, x, args.num_samples, flops, peak_gflops)


#: profiler op names by group: matrix products, transcendental elementwise
#: kernels, sampling
GROUPS = {"matrix products": ("aten::addmm", "aten::mm", "aten::bmm"),
          "transcendentals": ("aten::tanh", "aten::log_sigmoid_forward", "aten::sigmoid_",
                              "aten::log_"),
          "sampling": ("aten::normal_",)}


def profile_estimate(vae, x: torch.Tensor, num_samples: int, flops: float,
                     peak_gflops: float) -> None:
    """Print the share of one estimate's operator time per group of
    :data:`GROUPS`, and the bound on the fraction of peak they imply."""
    from torch.profiler import ProfilerActivity, profile

    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        log_likelihood(vae.model, vae.guide, x, num_samples=num_samples)
        wall = time.perf_counter() - start
    self_us = {e.key: e.self_cpu_time_total for e in prof.key_averages()}
    total = sum(self_us.values())
    shares = {g: sum(self_us.get(n, 0) for n in names) for g, names in GROUPS.items()}
    shares["other operators"] = total - sum(shares.values())
    print(f"\nprofile of one estimate: {wall:.2f} s wall (under the profiler), "
          f"{total / 1e6:.2f} s in operators")
    for group, us in shares.items():
        print(f"  {group:22s} {us / 1e6:6.2f} s  {100 * us / total:4.0f}%")
    matmul_s = shares["matrix products"] / 1e6
    print(f"matrix products at {flops / matmul_s / 1e9:.0f} GFLOP/s = "
          f"{100 * flops / matmul_s / 1e9 / peak_gflops:.0f}% of the measured peak")
    floor = matmul_s + shares["transcendentals"] / 1e6
    print(f"with nothing but the matrix products and these transcendentals (each in one "
          f"pass), the estimator would reach {100 * flops / floor / 1e9 / peak_gflops:.0f}% "
          f"of the peak")


if __name__ == "__main__":
    main()
