"""Paired A/B timings of two choices inside the importance-weighted estimator.

1. ``density``: the Bernoulli image density without gradients, from the
   logits alone (:func:`ppvae.pieces.likelihoods.binary_image_log_density`,
   the earlier path) against the data's part taken through the decoder's
   last hidden layer (:func:`~ppvae.pieces.likelihoods.binary_linear_log_density`,
   the default), alternated in one process on two copies of the IWAE paper's
   network trained for 2 epochs on MNIST, passes replayed; prints each
   pair's ratio, the median, and the largest difference between the two
   estimates.
2. ``replay``: every pass through Pyro against passes replayed from
   recordings (:mod:`ppvae.infer.replay`; ``ppvae.infer.loglik.REPLAY``),
   alternated in one process on the same trained network, the recordings
   made in an untimed first estimate; also the first estimate of a fresh
   copy of the network, recording included, against one through Pyro.
3. ``heap``: the estimator with and without keeping freed memory
   (:mod:`ppvae.infer.heap`), each in fresh processes (glibc's settings are
   process-wide), alternated, on an untrained network and random binary
   images, so that no earlier work has raised glibc's own thresholds.

Usage: ``PPVAE_DATA=../shared/data python benchmarks/eval_ab.py [--threads 2]
[--only density replay heap]``
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import pyro
import torch


def trained(images: int):
    """The IWAE paper's network trained for 2 epochs on MNIST, and test images."""
    from common import iwae_paper_vae

    from ppvae import fit
    from ppvae.data import load_dataset

    data = load_dataset("mnist", binarize="dynamic")
    pyro.set_rng_seed(0)
    vae = iwae_paper_vae()
    fit(vae, data, epochs=2, batch_size=100, progress=False)
    return vae, data.test.x[:images]


def density(vae, x: torch.Tensor, repeats: int) -> None:
    import types

    from common import iwae_paper_vae

    from ppvae.infer import log_likelihood
    from ppvae.pieces import likelihoods

    def pixels(self, z, context=None):  # the logits alone: binary_image_log_density
        return likelihoods.BernoulliImage(likelihoods.BinaryBernoulli(logits=self.net(z, context)), 1)

    # two copies of the network, each with its own recordings (replay on, as by default)
    plain = iwae_paper_vae()
    plain.load_state_dict(vae.state_dict())
    plain.likelihood.forward = types.MethodType(pixels, plain.likelihood)

    def timed(model):
        start = time.perf_counter()
        result = log_likelihood(model.model, model.guide, x, num_samples=5000, seed=1)
        return time.perf_counter() - start, result.per_datapoint

    timed(plain), timed(vae)  # warm-up: the recordings are made
    ratios = []
    for _ in range(repeats):
        (t_old, r_old), (t_new, r_new) = timed(plain), timed(vae)
        ratios.append(t_old / t_new)
        print(f"  pixels alone {t_old:.2f} s, through the head {t_new:.2f} s, ratio "
              f"{t_old / t_new:.2f}, largest difference {(r_old - r_new).abs().max().item():.1e} "
              "nats", flush=True)
    print(f"density: pixels-alone time / through-the-head time, median of {repeats}: "
          f"{statistics.median(ratios):.2f}")


def replay(vae, x: torch.Tensor, repeats: int) -> None:
    from common import iwae_paper_vae

    from ppvae.infer import loglik

    def timed(model, on: bool):
        loglik.REPLAY = on
        start = time.perf_counter()
        result = loglik.log_likelihood(model.model, model.guide, x, num_samples=5000, seed=1)
        return time.perf_counter() - start, result.per_datapoint

    timed(vae, True)  # records every signature of these chunks
    ratios = []
    for _ in range(repeats):
        (t_off, r_off), (t_on, r_on) = timed(vae, False), timed(vae, True)
        ratios.append(t_off / t_on)
        print(f"  through Pyro {t_off:.2f} s, replayed {t_on:.2f} s, ratio {t_off / t_on:.2f}, "
              f"largest difference {(r_off - r_on).abs().max().item():.1e} nats", flush=True)
    print(f"replay: through-Pyro time / replayed time, median of {repeats}: "
          f"{statistics.median(ratios):.2f}")
    fresh = iwae_paper_vae()  # new parameters: nothing recorded for them yet
    fresh.load_state_dict(vae.state_dict())
    t_first = timed(fresh, True)[0]
    print(f"  first estimate of a fresh copy, recording included: {t_first:.2f} s "
          f"(through Pyro: {timed(vae, False)[0]:.2f} s)")
    loglik.REPLAY = True


def heap_child(keep: bool) -> None:
    from ppvae.infer import loglik
    from ppvae.models import VAE

    if not keep:
        loglik.keep_freed_memory = lambda: False
        loglik.release_freed_memory = lambda: None
    pyro.set_rng_seed(0)
    vae = VAE(784, latent_dim=50, hidden=(200, 200), activation="tanh")
    x = torch.bernoulli(torch.full((40, 784), 0.2))
    times = []
    for _ in range(3):
        start = time.perf_counter()
        loglik.log_likelihood(vae.model, vae.guide, x, num_samples=5000)
        times.append(time.perf_counter() - start)
    print(min(times))


def heap(threads: int, repeats: int) -> None:
    pairs = []
    for _ in range(repeats):
        t = [float(subprocess.run([sys.executable, __file__, "--child", flag, "--threads",
                                   str(threads)], check=True, capture_output=True, text=True)
                   .stdout.split()[-1]) for flag in ("off", "on")]
        pairs.append(t[0] / t[1])
        print(f"  glibc defaults {t[0]:.2f} s, freed memory kept {t[1]:.2f} s, "
              f"ratio {t[0] / t[1]:.2f}", flush=True)
    print(f"heap: defaults / kept, median of {repeats}: {statistics.median(pairs):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--only", nargs="+", choices=["density", "replay", "heap"],
                        default=["density", "replay", "heap"], help="comparisons to run (all)")
    parser.add_argument("--child", choices=["on", "off"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        heap_child(args.child == "on")
        return
    print(f"K = 5000, {args.threads} threads")
    if "density" in args.only or "replay" in args.only:
        vae, x = trained(args.images)
        if "density" in args.only:
            density(vae, x, args.repeats)
        if "replay" in args.only:
            replay(vae, x, args.repeats)
    if "heap" in args.only:
        heap(args.threads, args.repeats)


if __name__ == "__main__":
    main()
