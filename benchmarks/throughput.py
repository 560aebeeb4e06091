"""Training throughput: ppvae.fit against the same VAE trained by hand.

The network of the performance issue: a 784-400-50 MLP VAE (ReLU, Bernoulli
likelihood, diagonal-Gaussian guide) on statically binarized MNIST, Adam with
learning rate 1e-3, trained three ways in one run, interleaved so that machine
noise hits all alike (in an order that rotates from repeat to repeat), median
of ``--repeats`` repeats (9):

- ``handwritten``: a plain PyTorch loop with the same networks, the same
  Monte Carlo ELBO estimate (one reparameterized z per image, KL term as
  log q(z|x) - log p(z) at that z) and the same optimizer as ppvae.fit (Adam
  with PyTorch's fused kernel);
- ``pyro_svi``: the ppvae model/guide pair with Pyro's ``SVI`` + ``Trace_ELBO``
  and ``pyro.optim.Adam`` (Pyro's default per-parameter Adam, not fused),
  batches sliced from tensors, Pyro's validation off (as ``ppvae.fit`` has it
  after its first step);
- ``ppvae_fit``: ``ppvae.fit(model, x, epochs=E, batch_size=B)`` on its
  default path (the VAE's pure-torch twin, :mod:`ppvae.accel`), timed end to
  end (data checks and trainer start-up included).

Before the timed runs each of the three runs once, untimed, on 8 batches: what
a process pays only once (imports: the first ``ppvae.fit`` imports Lightning,
2-3 s; first-call allocations) is printed apart as the first-call time
instead of landing in whichever repeat comes first.

Each prints images per second (training images processed per second of wall
time) and the ratios of the medians to the hand-written loop, the median
of the ratios within each repeat (robust to the machine's slow drifts), plus the limit the machine's
matmul peak (measured in the same run) puts on this network: 3 matrix products
per layer (forward, and the two of the backward pass), 2 FLOPs per
multiply-add. The final training ELBO of each run is printed so that equal
speed can be checked to mean equal work. Also measured: an M2 training step
(``SSVAE``, exact enumeration over 10 classes, through Pyro) in images per
second, and the peak memory (RSS) of training in a fresh process.
Evaluation speed and memory: ``eval_speed.py``.

With ``--two-layer`` it measures instead the IWAE paper's networks (tanh,
batch 100, as ``mnist_nll.py`` trains them) on the same images:
``ppvae.fit`` on the one-layer VAE (784-200-200-50) and on the two-layer
VAE (784-200-200-100, 100-100-50) through its pure-torch twin and through
Pyro (``accel=False``), interleaved in a rotating order, one epoch each per
repeat: images per second, and the two-layer twin over the Pyro path and
over the one-layer VAE as medians of the ratios within each repeat.

With ``--breakdown`` it prints instead where ``ppvae.fit``'s time goes
against the hand-written loop at the first batch size: the time of a
training step (ppvae's twin loss, its backward pass and the fused Adam step,
in a plain loop over the same batches as the hand-written loop, alternating
with it) and what a ``fit`` call costs beyond its steps (the data check over
all the images, and the trainer's start, the first step's checks and its
end, from ``fit`` and the hand-written loop on ``--breakdown-batches``
batches).

Usage: PPVAE_DATA=../shared/data python benchmarks/throughput.py [--batch-sizes 128 256]
       [--epochs 1] [--repeats 9] [--json] [--breakdown | --two-layer]
With --json it prints one JSON object whose keys include ``handwritten``,
``pyro_svi``, ``ppvae_fit`` (images/s at the first batch size) and
``ratio_ppvae_vs_handwritten``.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pyro
import torch
from common import iwae_paper_vae, machine, matmul_peak_gflops
from torch import nn
from torch.nn.functional import binary_cross_entropy_with_logits, softplus

import ppvae
from ppvae.data import binarize, label_split, load_dataset
from ppvae import accel
from ppvae.models import SSVAE, VAE, TwoLayerVAE
from ppvae.train.plans import adam

LATENT, HIDDEN = 50, 400
LOG_2PI = math.log(2 * math.pi)


def make_vae() -> VAE:
    return VAE(784, latent_dim=LATENT, hidden=(HIDDEN,))


def network_flops_per_image() -> int:
    """Forward + backward FLOPs of the matrix products for one image."""
    macs = 784 * HIDDEN + HIDDEN * 2 * LATENT + LATENT * HIDDEN + HIDDEN * 784
    return 3 * 2 * macs


def hand_networks(seed: int) -> tuple[nn.Module, nn.Module, torch.optim.Optimizer]:
    """The hand-written loop's encoder, decoder and Adam (fused, as ppvae.fit uses)."""
    torch.manual_seed(seed)
    encoder = nn.Sequential(nn.Linear(784, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 2 * LATENT))
    decoder = nn.Sequential(nn.Linear(LATENT, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 784))
    params = list(encoder.parameters()) + list(decoder.parameters())
    return encoder, decoder, torch.optim.Adam(params, lr=1e-3, fused=True)


def hand_step(encoder: nn.Module, decoder: nn.Module, optimizer: torch.optim.Optimizer,
              xb: torch.Tensor) -> torch.Tensor:
    """One hand-written training step on the batch ``xb``; returns the loss
    (the negative ELBO per image) it stepped on."""
    loc, raw = encoder(xb).chunk(2, -1)
    scale = softplus(raw)
    eps = torch.randn_like(loc)
    z = loc + scale * eps
    log_px = -binary_cross_entropy_with_logits(decoder(z), xb, reduction="none").sum(-1)
    log_pz = -0.5 * (z**2 + LOG_2PI).sum(-1)
    log_qz = (-0.5 * (eps**2 + LOG_2PI) - scale.log()).sum(-1)
    loss = -(log_px + log_pz - log_qz).sum() / len(xb)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss


def handwritten(x: torch.Tensor, batch_size: int, epochs: int, seed: int) -> tuple[float, float]:
    """A plain PyTorch VAE loop; returns (seconds, last epoch's mean ELBO)."""
    encoder, decoder, optimizer = hand_networks(seed)
    start = time.perf_counter()
    for epoch in range(epochs):
        total = 0.0
        order = torch.randperm(len(x))
        for i in range(0, len(x), batch_size):
            xb = x[order[i:i + batch_size]]
            loss = hand_step(encoder, decoder, optimizer, xb)
            total -= loss.item() * len(xb) if epoch == epochs - 1 else 0.0
    return time.perf_counter() - start, total / len(x)


def pyro_svi(x: torch.Tensor, batch_size: int, epochs: int, seed: int) -> tuple[float, float]:
    """Pyro's SVI + Trace_ELBO on the ppvae pair; (seconds, last epoch's ELBO)."""
    pyro.clear_param_store()
    pyro.set_rng_seed(seed)
    vae = make_vae()
    svi = pyro.infer.SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-3}),
                         pyro.infer.Trace_ELBO())
    start = time.perf_counter()
    with pyro.validation_enabled(False):
        for epoch in range(epochs):
            total = 0.0
            order = torch.randperm(len(x))
            for i in range(0, len(x), batch_size):
                loss = svi.step(x[order[i:i + batch_size]])
                total -= loss if epoch == epochs - 1 else 0.0
    return time.perf_counter() - start, total / len(x)


def ppvae_fit(x: torch.Tensor, batch_size: int, epochs: int, seed: int) -> tuple[float, float]:
    """``ppvae.fit``, end to end; (seconds, last epoch's training ELBO)."""
    pyro.set_rng_seed(seed)
    vae = make_vae()
    start = time.perf_counter()
    history = ppvae.fit(vae, x, epochs=epochs, batch_size=batch_size, seed=seed, progress=False)
    return time.perf_counter() - start, history.train_elbo[-1]


def m2_step_rate(data, batch_size: int, steps: int = 100) -> float:
    """Images per second of M2 training steps (labelled + unlabelled), via
    ppvae.fit on a slice of MNIST so that one epoch is ``steps`` steps."""
    pyro.set_rng_seed(0)
    m2 = SSVAE(784, 10, latent_dim=LATENT, hidden=(HIDDEN,))
    split = label_split(data.train, 100, 10, 0)
    n = steps * batch_size
    sub = type(split)(split.labelled, type(split.unlabelled)(split.unlabelled.x[:n],
                                                              split.unlabelled.y[:n]), 10)
    history = ppvae.fit(m2, data, labels=sub, epochs=1, batch_size=batch_size,
                        labelled_per_batch=batch_size // 4, progress=False)
    return steps * (batch_size + batch_size // 4) / history.seconds


def peak_rss_mb() -> float:
    """Peak resident memory (MB) of one epoch of training in a fresh process."""
    out = subprocess.run([sys.executable, __file__, "--child"], check=True,
                         capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def child() -> None:
    """One epoch of ppvae.fit on 20,000 random binary images (no data set is
    loaded, so the peak is training's own)."""
    ppvae_fit(torch.bernoulli(torch.full((20000, 784), 0.2)), 128, 1, 0)
    # VmHWM: this process's own peak (ru_maxrss would carry the parent's
    # peak across fork and exec)
    status = Path("/proc/self/status").read_text().splitlines()
    print(int(next(line for line in status if line.startswith("VmHWM:")).split()[1]) / 1024)


def step_times(x: torch.Tensor, batch_size: int, rounds: int) -> tuple[list[float], list[float]]:
    """Seconds per step of the hand-written step and of ppvae's (twin loss,
    backward pass, fused Adam) in plain loops over the same batches,
    alternating ``rounds`` times; the first round of each is a warm-up."""
    encoder, decoder, hand_opt = hand_networks(0)
    vae = make_vae()
    ours_opt = adam(vae.parameters(), 1e-3)
    batches = list(torch.split(x, batch_size))

    def hand() -> None:
        for xb in batches:
            hand_step(encoder, decoder, hand_opt, xb).item()

    def ours() -> None:
        for xb in batches:
            loss = accel.elbo_loss(vae.accel_parts(xb)) / len(xb)
            loss.item()
            ours_opt.zero_grad()
            loss.backward()
            ours_opt.step()

    times: dict = {hand: [], ours: []}
    with pyro.validation_enabled(False):  # as ppvae.fit after its first step
        for r in range(rounds + 1):
            for run in (hand, ours) if r % 2 == 0 else (ours, hand):
                start = time.perf_counter()
                run()
                times[run].append((time.perf_counter() - start) / len(batches))
    return times[hand][1:], times[ours][1:]


def breakdown(x: torch.Tensor, batch_size: int, repeats: int, batches: int) -> None:
    """Print where ``ppvae.fit``'s time goes against the hand-written loop."""
    hand_times, our_times = step_times(x[: 100 * batch_size], batch_size, 2 * repeats)
    paired = [h / o for h, o in zip(hand_times, our_times)]
    print(f"\nbatch {batch_size}: time of a training step, plain loops over the same 100 "
          f"batches, alternating, {2 * repeats} rounds each")
    print(f"  hand-written step      median {1e3 * statistics.median(hand_times):.3f} ms, "
          f"min {1e3 * min(hand_times):.3f} ms")
    print(f"  ppvae step (twin)      median {1e3 * statistics.median(our_times):.3f} ms, "
          f"min {1e3 * min(our_times):.3f} ms")
    print(f"  hand-written / ppvae within each round: median {statistics.median(paired):.3f} "
          f"(range {min(paired):.2f}-{max(paired):.2f})")
    vae = make_vae()
    check = []
    for _ in range(repeats):
        start = time.perf_counter()
        vae.prepare(x, name="training data")
        check.append(time.perf_counter() - start)
    small = x[: batches * batch_size]
    fit_small, hand_small = [], []
    for r in range(repeats):
        for name in ("fit", "hand") if r % 2 == 0 else ("hand", "fit"):
            if name == "fit":
                fit_small.append(ppvae_fit(small, batch_size, 1, r)[0])
            else:
                hand_small.append(handwritten(small, batch_size, 1, r)[0])
    start_cost = statistics.median(f - h for f, h in zip(fit_small, hand_small))
    print(f"\nwhat a ppvae.fit call costs beyond its steps (median of {repeats}):")
    print(f"  the data check over all {len(x)} images: {1e3 * statistics.median(check):.1f} ms")
    print(f"  the rest (trainer start and end, the first step's checks, "
          f"Lightning's steps): ppvae.fit on {batches} batches {1e3 * statistics.median(fit_small):.0f} ms"
          f" - the hand-written loop {1e3 * statistics.median(hand_small):.0f} ms = "
          f"{1e3 * start_cost:.0f} ms (paired)")
    epoch = len(x) / batch_size * statistics.median(hand_times)
    print(f"  together {1e3 * (statistics.median(check) + start_cost):.0f} ms, "
          f"{100 * (statistics.median(check) + start_cost) / epoch:.1f}% of a {len(x)}-image "
          f"epoch of hand-written steps ({epoch:.2f} s)")


def two_layer_rates(x: torch.Tensor, repeats: int, batch_size: int = 100) -> None:
    """Print the images per second of the IWAE paper's one- and two-layer
    VAEs under ``ppvae.fit`` (module doc)."""
    def two_layer() -> TwoLayerVAE:
        return TwoLayerVAE(784, latent_dim=100, top_latent_dim=50, hidden=(200, 200),
                           top_hidden=(100, 100))

    makers = {"one-layer VAE, twin": (lambda: iwae_paper_vae(input_shape=784), True),
              "two-layer VAE, twin": (two_layer, True),
              "two-layer VAE, Pyro": (two_layer, False)}

    def once(name: str, images: torch.Tensor, seed: int) -> float:
        make, use_twin = makers[name]
        pyro.set_rng_seed(seed)
        start = time.perf_counter()
        ppvae.fit(make(), images, epochs=1, batch_size=batch_size, seed=seed, progress=False,
                  accel=use_twin)
        return time.perf_counter() - start

    names = list(makers)
    for name in names:  # untimed: imports and first-call allocations
        once(name, x[: 8 * batch_size], 0)
    times: dict[str, list[float]] = {name: [] for name in names}
    for repeat in range(repeats):
        for name in names[repeat % len(names):] + names[: repeat % len(names)]:
            times[name].append(once(name, x, repeat))
    print(f"\nbatch {batch_size}, one epoch of {len(x)} images, median of {repeats}:")
    for name in names:
        print(f"  {name:22s} {len(x) / statistics.median(times[name]):9,.0f} images/s")
    for label, a, b in (("two-layer twin / Pyro path", names[2], names[1]),
                        ("two-layer twin / one-layer twin", names[0], names[1])):
        ratios = [s_a / s_b for s_a, s_b in zip(times[a], times[b])]
        print(f"  speed {label} within each repeat: median {statistics.median(ratios):.2f} "
              f"(range {min(ratios):.2f}-{max(ratios):.2f})")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child()
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--epochs", type=int, default=1, help="epochs per timed run")
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--num-images", type=int, default=60000,
                        help="training images per epoch")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--breakdown", action="store_true",
                        help="print where ppvae.fit's time goes instead (module doc)")
    parser.add_argument("--breakdown-batches", type=int, default=16,
                        help="batches of the short fits of --breakdown")
    parser.add_argument("--two-layer", action="store_true",
                        help="time the IWAE paper's one- and two-layer VAEs instead (module doc)")
    parser.add_argument("--training-only", action="store_true",
                        help="skip the M2, evaluation and memory measurements")
    args = parser.parse_args()

    data = load_dataset("mnist", binarize="static")
    x = torch.cat([data.train.x, data.val.x])[: args.num_images]
    if args.two_layer:
        print(f"machine: {machine()}", flush=True)
        two_layer_rates(x, args.repeats)
        return
    if not args.json:
        print(f"machine: {machine()}", flush=True)
    if args.breakdown:
        ppvae_fit(x[: 8 * args.batch_sizes[0]], args.batch_sizes[0], 1, 0)  # imports Lightning
        breakdown(x, args.batch_sizes[0], args.repeats, args.breakdown_batches)
        return
    runners = {"handwritten": handwritten, "pyro_svi": pyro_svi, "ppvae_fit": ppvae_fit}
    if not args.json:
        print("optimizers: handwritten and ppvae_fit torch.optim.Adam(fused=True); pyro_svi "
              "pyro.optim.Adam (per parameter), Pyro's validation off", flush=True)
    results: dict = {"machine": machine(), "batch_sizes": {}}
    # One untimed run of each on a slice of the data: what a process pays
    # once (imports, such as Lightning's on the first ppvae.fit, first-call
    # allocations) is reported here, not mixed into the first timed repeat.
    first_call = {}
    for name, run in runners.items():
        first_call[name] = run(x[: 8 * args.batch_sizes[0]], args.batch_sizes[0], 1, 0)[0]
    results["first_call_seconds"] = first_call
    if not args.json:
        print("first call in this process, 8 batches (untimed warm-up): "
              + ", ".join(f"{n} {s:.2f} s" for n, s in first_call.items()), flush=True)
    peaks = []
    for batch_size in args.batch_sizes:
        times = {name: [] for name in runners}
        elbos = {name: [] for name in runners}
        names = list(runners)
        for repeat in range(args.repeats):
            peaks.append(matmul_peak_gflops())
            # the order rotates from repeat to repeat, so that no runner
            # always follows the same one (a drift of the machine's speed
            # within a repeat then favours none of them)
            for name in names[repeat % len(names):] + names[: repeat % len(names)]:
                seconds, elbo = runners[name](x, batch_size, args.epochs, repeat)
                times[name].append(seconds)
                elbos[name].append(elbo)
        rate = {name: args.epochs * len(x) / statistics.median(t) for name, t in times.items()}
        limit = max(peaks) * 1e9 / network_flops_per_image()
        # the ratio within each repeat (the runs of one repeat follow each
        # other, so they share the machine's state): robust to slow drifts
        paired = statistics.median(h / f for h, f in zip(times["handwritten"], times["ppvae_fit"]))
        row = {**rate, "ratio_ppvae_vs_handwritten": rate["ppvae_fit"] / rate["handwritten"],
               "ratio_pyro_vs_handwritten": rate["pyro_svi"] / rate["handwritten"],
               "paired_ratio_ppvae_vs_handwritten": paired,
               "flop_limit": limit,
               "final_elbo": {n: statistics.median(e) for n, e in elbos.items()}}
        results["batch_sizes"][batch_size] = row
        if not args.json:
            print(f"\nbatch {batch_size}, {args.epochs} epoch(s) of {len(x)} images, median of "
                  f"{args.repeats}; matmul peak {max(peaks):.0f} GFLOP/s bounds this network "
                  f"at {limit:,.0f} images/s (forward + backward)")
            for name in runners:
                print(f"  {name:12s} {rate[name]:9,.0f} images/s  "
                      f"{rate[name] / rate['handwritten']:.2f}  "
                      f"{rate[name] / limit:.0%} of the limit  "
                      f"final training ELBO {row['final_elbo'][name]:.2f}")
            print(f"  ppvae_fit / handwritten within each repeat: median {paired:.2f} "
                  f"(range {min(h / f for h, f in zip(times['handwritten'], times['ppvae_fit'])):.2f}"
                  f"-{max(h / f for h, f in zip(times['handwritten'], times['ppvae_fit'])):.2f})")
    first = results["batch_sizes"][args.batch_sizes[0]]
    results.update({k: first[k] for k in ("handwritten", "pyro_svi", "ppvae_fit",
                                          "ratio_ppvae_vs_handwritten")})
    if args.training_only:
        if args.json:
            print(json.dumps(results))
        return
    results["m2_images_per_s"] = m2_step_rate(load_dataset("mnist", binarize="dynamic"), 128)
    results["peak_rss_mb_train"] = peak_rss_mb()
    if args.json:
        print(json.dumps(results))
        return
    print(f"\nM2 training (10 classes enumerated, batch 128 + 32 labelled): "
          f"{results['m2_images_per_s']:,.0f} images/s")
    print(f"peak RSS of one epoch of training on 20,000 images: "
          f"{results['peak_rss_mb_train']:.0f} MB")


if __name__ == "__main__":
    main()
