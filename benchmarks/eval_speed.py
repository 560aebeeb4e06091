"""Speed and memory of the importance-weighted log-likelihood estimator.

K importance samples for each of N MNIST test images with the IWAE paper's
network (784-200-200-50, tanh, Bernoulli), trained for a few epochs first (a
trained decoder's confident logits are what real evaluations see), timed in
one run, interleaved, against

- ``handwritten``: the vectorized estimator a competent PyTorch user would
  write for the same network: chunks of 32 images and 128 particles (what
  ppvae's defaults use), the encoder once per chunk, eps ~ N(0, I),
  z = mu + sigma eps, log w = log p(x | z) + log p(z) - log q(z) summed in
  closed form, and a running logsumexp over the particle chunks. It returns
  the estimate alone; ``ppvae.infer.log_likelihood`` also returns the ELBO,
  ESS and PSIS k-hat of every image and the estimate at K = 1, 10, 100, ...
- ``pyro_loop`` (``--pyro-images`` images, scaled): one image at a time
  through Pyro's ``vectorized_importance_weights`` (which sums a batch into
  one joint weight, so a per-image estimate needs one call per image), with
  Pyro's validation off.

It prints the median time of each and the paired ratio handwritten / ppvae
(median and range over the repeats), then the peak memory (RSS) of one
estimate at K = 500, 5000 and 50000, each in a fresh process: the estimator
keeps per image only running sums and the tail that k-hat needs, so memory
does not grow with K.

Usage: PPVAE_DATA=../shared/data python benchmarks/eval_speed.py [--num-samples 5000]
       [--num-images 100] [--repeats 7] [--pyro-images 5] [--train-epochs 2] [--no-memory]
"""

from __future__ import annotations

import argparse
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pyro
import torch
from common import iwae_paper_vae, machine
from pyro.infer.importance import vectorized_importance_weights
from torch.nn.functional import binary_cross_entropy_with_logits, softplus

from ppvae import fit
from ppvae.data import load_dataset
from ppvae.infer import log_likelihood

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


@torch.no_grad()
def handwritten(vae, x: torch.Tensor, num_samples: int, data_chunk: int = 32,
                particle_chunk: int = 128) -> torch.Tensor:
    """log (1/K) sum_k w_k for every row of x, vectorized by hand."""
    encoder, decoder = vae.encoder.net, vae.likelihood.net
    out = []
    for xb in torch.split(x, data_chunk):
        loc, raw = encoder(xb).chunk(2, -1)
        scale = softplus(raw) + vae.encoder.min_scale
        total = torch.full((len(xb),), -math.inf)
        for start in range(0, num_samples, particle_chunk):
            k = min(particle_chunk, num_samples - start)
            eps = torch.randn(k, *loc.shape)
            z = loc + scale * eps
            logits = decoder(z)
            log_px = -binary_cross_entropy_with_logits(
                logits, xb.expand_as(logits), reduction="none").sum(-1)
            log_w = log_px + (0.5 * (eps.square() - z.square()) + scale.log()).sum(-1)
            total = torch.logaddexp(total, torch.logsumexp(log_w, 0))
        out.append(total - math.log(num_samples))
    return torch.cat(out)


@torch.no_grad()
def pyro_loop(vae, x: torch.Tensor, num_samples: int) -> torch.Tensor:
    """One image at a time through Pyro's vectorized_importance_weights."""
    out = []
    with pyro.validation_enabled(False):
        for row in x:
            log_w, _, _ = vectorized_importance_weights(
                vae.model, vae.guide, row[None], num_samples=num_samples, max_plate_nesting=1)
            out.append(torch.logsumexp(log_w, 0) - math.log(num_samples))
    return torch.stack(out)


def peak_rss_mb(num_samples: int) -> float:
    """Peak resident memory (MB) of one estimate in a fresh process."""
    out = subprocess.run([sys.executable, __file__, "--child", str(num_samples)], check=True,
                         capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def child(num_samples: int) -> None:
    """One estimate of 100 random binary images with an untrained network (no
    data set is loaded, so the peak is the estimate's own)."""
    x = torch.bernoulli(torch.full((100, 784), 0.2))
    vae = iwae_paper_vae()
    log_likelihood(vae.model, vae.guide, x, num_samples=num_samples)
    # VmHWM: this process's own peak (ru_maxrss would carry the parent's peak)
    status = Path("/proc/self/status").read_text().splitlines()
    print(int(next(line for line in status if line.startswith("VmHWM:")).split()[1]) / 1024)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(int(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-samples", type=int, default=5000)
    parser.add_argument("--num-images", type=int, default=100)
    parser.add_argument("--pyro-images", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--train-epochs", type=int, default=2,
                        help="epochs of VAE training on MNIST before timing (0: untrained)")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory runs")
    args = parser.parse_args()

    data = load_dataset("mnist", binarize="dynamic")
    x = data.test.x[: args.num_images]
    pyro.set_rng_seed(0)
    vae = iwae_paper_vae()
    if args.train_epochs:
        fit(vae, data, epochs=args.train_epochs, batch_size=100, progress=False)
    k = args.num_samples
    print(f"machine: {machine()}")
    print(f"task: K = {k} importance samples x {args.num_images} MNIST test images, "
          f"784-200-200-50 tanh VAE trained for {args.train_epochs} epochs", flush=True)
    log_likelihood(vae.model, vae.guide, x[:8], num_samples=64)  # warm-up
    handwritten(vae, x[:8], 64)
    runners = {
        "ppvae": lambda: log_likelihood(vae.model, vae.guide, x, num_samples=k).per_datapoint,
        "handwritten": lambda: handwritten(vae, x, k),
        "pyro_loop": lambda: pyro_loop(vae, x[: args.pyro_images], k),
    }
    times: dict[str, list[float]] = {name: [] for name in runners}
    estimates = {}
    names = list(runners)
    for repeat in range(args.repeats):  # interleaved, in an order rotating by repeat
        for name in names[repeat % 3:] + names[: repeat % 3]:
            start = time.perf_counter()
            estimates[name] = runners[name]()
            seconds = time.perf_counter() - start
            if name == "pyro_loop":
                seconds *= args.num_images / args.pyro_images
            times[name].append(seconds)
    paired = [h / p for h, p in zip(times["handwritten"], times["ppvae"])]
    for name, t in times.items():
        scaled = f" ({args.pyro_images} images, scaled)" if name == "pyro_loop" else ""
        print(f"  {name:12s} median {statistics.median(t):6.2f} s, range "
              f"{min(t):.2f}-{max(t):.2f} s over {args.repeats} repeats{scaled}")
    print(f"handwritten / ppvae within each repeat: median {statistics.median(paired):.2f} "
          f"(range {min(paired):.2f}-{max(paired):.2f}); "
          f"pyro_loop / ppvae: {statistics.median(times['pyro_loop']) / statistics.median(times['ppvae']):.1f}")
    print(f"mean estimate: ppvae {float(estimates['ppvae'].mean()):.3f}, handwritten "
          f"{float(estimates['handwritten'].mean()):.3f} nats (different draws)")
    if not args.no_memory:
        rss = {n: peak_rss_mb(n) for n in (500, 5000, 50000)}
        print("peak RSS of one estimate (100 images, fresh process): "
              + ", ".join(f"K = {n}: {mb:.0f} MB" for n, mb in rss.items()))


if __name__ == "__main__":
    main()
