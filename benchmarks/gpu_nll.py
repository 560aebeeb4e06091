"""The MNIST log-likelihood table of ``mnist_nll.py`` on one GPU, up to the
papers' 3280 epochs: one prepared run for a lent device.

Every model of ``mnist_nll.py`` that has a pure-torch twin (all but the
Helmholtz machine, whose reweighted wake-sleep runs through Pyro: its CPU
figure stands) trains with the networks, objective, KL warm-up, learning-rate
schedule, output-bias initialization and best-validation-epoch rule of
``ppvae.fit`` there, for ``--epochs`` epochs (3280, Burda et al.'s) or until
``--minutes`` of training are spent, whichever comes first; the schedule's
progress is the larger of the epoch share and the time share, as in
``ppvae.train.schedules.budget_progress``. Then, on the device, the test NLL
with K = ``--eval-samples`` importance samples on the first
``--eval-images`` test images and the active units, into
``--out/<model>.json`` (a record of other settings is refused), and the
table of ``mnist_nll.py``.

The loop keeps the host out of every step:

- the MNIST splits are copied to the device once; each epoch draws a fresh
  binarization of the training images and their order there, from a device
  generator seeded with ``--seed``;
- a step is the twin's loss of the batch (``ppvae.accel``, the twin that
  ``ppvae.train.plans.twin_objective`` gives ``fit`` for the same
  objective), its backward pass and a fused Adam step; the learning rate is
  set once per epoch, and the epoch's training loss is summed on the device
  and read at the epoch's end;
- after each epoch the validation ELBO (one particle, on the device) decides
  whether the epoch's weights, copied on the device, are the best so far;
  the best are evaluated. There is no early stopping.

What ``fit`` adds around this (Lightning's loop, checkpoints, the divergence
check) is left out. A step of these small networks at batch 100 is a few
hundred small kernels, so the time limit, not the 3280 epochs, may end a
run: each record says how many epochs ran and which limit stopped it.

Usage (on the device: 0.8 minutes of training and the evaluation per model,
seven models, under the device's 10 minutes a command; finished models'
records are kept, so a run cut short goes on where it stopped when run again):
    PPVAE_DATA=... python benchmarks/gpu_nll.py --out runs/gpu-nll
CPU check: python benchmarks/gpu_nll.py --device cpu --dataset digits --epochs 3
    --eval-samples 20 --out /tmp/gpu-nll-check
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import pyro
import torch
from common import machine
from mnist_nll import build, print_table
from pyro.infer import Trace_ELBO

from ppvae import accel
from ppvae.atomic import atomic_write
from ppvae.data import load_dataset
from ppvae.infer import active_units, make_objective
from ppvae.train import contract
from ppvae.train.plans import adam, twin_objective
from ppvae.train.schedules import SCHEDULES

#: the models of mnist_nll.py with a pure-torch twin
MODELS = ("vae", "iwae", "vae-2l", "iwae-2l", "vamp", "mog", "iaf")
#: settings that change a model's record (``--models``, ``--out`` do not)
SETTINGS = ("dataset", "device", "epochs", "minutes", "iwae_k", "pseudo_inputs",
            "mog_components", "flows", "warmup_epochs", "batch_size", "lr", "lr_schedule",
            "eval_samples", "eval_images", "seed", "init_output_bias")


def twin_loss(model, twin, x: torch.Tensor, kwargs: dict) -> torch.Tensor:
    """``twin``'s loss of the pair on the batch ``x``, summed over it."""
    parts = accel.twin_parts(model.model, model.guide, (x,), kwargs)
    if parts is None:
        raise SystemExit(f"{type(model).__name__} has no pure-torch twin")
    return twin(parts)


def train(name: str, args: argparse.Namespace, data, device: torch.device):
    """Train model ``name`` on the device (module doc); returns the model with
    its best validation epoch's weights, and what the record says of training."""
    pyro.set_rng_seed(args.seed)
    model, options = build(name, args, data.image_shape)
    if args.init_output_bias:
        contract.init_output_bias(model, data.train.x)
    model.to(device)
    twin = twin_objective(make_objective(options.get("objective", "elbo"),
                                         options.get("num_particles", 1)))
    validation = twin_objective(Trace_ELBO())
    warmup = options.get("kl_warmup_epochs", 0.0)
    beta = contract.kl_weight(model)
    val_kwargs = {"beta": 1.0} if contract.takes_kl_weight(model) else {}
    optimizer = adam(model.parameters(), args.lr)
    factor = SCHEDULES[args.lr_schedule]
    generator = torch.Generator(device=device).manual_seed(args.seed)
    grey, val = data.train.x.to(device), data.val.x.to(device)
    steps = math.ceil(len(grey) / args.batch_size)
    budget = 60 * args.minutes
    best, best_state, epoch, stopped_by = -math.inf, None, 0, "epochs"
    start = time.perf_counter()
    while epoch < args.epochs:
        elapsed = time.perf_counter() - start
        if elapsed >= budget:
            stopped_by = "time"
            break
        rate = args.lr * factor(min(1.0, max(epoch / args.epochs, elapsed / budget)))
        for group in optimizer.param_groups:
            group["lr"] = rate
        x = torch.bernoulli(grey, generator=generator)
        order = torch.randperm(len(x), device=device, generator=generator)
        model.train()
        for i, index in enumerate(order.split(args.batch_size)):
            kwargs = ({"beta": beta * min(1.0, (epoch + (i + 1) / steps) / warmup)}
                      if warmup > 0 else {})
            batch = x[index]
            loss = twin_loss(model, twin, batch, kwargs) / len(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            val_elbo = -sum(twin_loss(model, validation, v, val_kwargs)
                            for v in val.split(1000)) / len(val)
        epoch += 1
        val_elbo = float(val_elbo)  # the epoch's one wait for the device
        if not math.isfinite(val_elbo):
            raise SystemExit(f"{name}: the validation ELBO is {val_elbo} in epoch {epoch}")
        if val_elbo > best:
            best = val_elbo
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    seconds = time.perf_counter() - start
    model.load_state_dict(best_state)
    return model, options, {"epochs": epoch, "train_minutes": seconds / 60,
                            "stopped_by": stopped_by, "best_val_elbo": best}


def run(name: str, args: argparse.Namespace, data, device: torch.device) -> dict:
    model, options, trained = train(name, args, data, device)
    x = data.test.x[: args.eval_images].to(device)
    start = time.perf_counter()
    result = model.log_likelihood(x, num_samples=args.eval_samples)
    seconds = time.perf_counter() - start
    return {"model": name, "fit_options": options, **trained, "test_nll": -result.mean,
            "test_nll_stderr": result.stderr, "test_elbo": result.elbo_mean,
            "eval_images": len(x), "eval_seconds": seconds, "khat_max": result.khat_max,
            "frac_khat_above_0.7": result.frac_khat_above,
            "active_units": active_units(model.guide, x).counts,
            "device": (torch.cuda.get_device_name(device) if device.type == "cuda"
                       else machine())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="torch device (default cuda)")
    parser.add_argument("--dataset", default="mnist", choices=["mnist", "digits"])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--epochs", type=int, default=3280,
                        help="epochs per model at most (Burda et al.: 3280)")
    parser.add_argument("--minutes", type=float, default=0.8,
                        help="training time per model at most")
    parser.add_argument("--iwae-k", type=int, default=5)
    parser.add_argument("--pseudo-inputs", type=int, default=500)
    parser.add_argument("--mog-components", type=int, default=10)
    parser.add_argument("--flows", type=int, default=2)
    parser.add_argument("--warmup-epochs", type=float, default=30.0,
                        help="KL warm-up of the ELBO-trained models (0: none)")
    parser.add_argument("--init-output-bias", action=argparse.BooleanOptionalAction,
                        default=True, help="start the decoder's output bias at the logits of "
                                           "the training pixels' means (default on)")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--lr-schedule", default="burda", choices=list(SCHEDULES))
    parser.add_argument("--eval-samples", type=int, default=5000)
    parser.add_argument("--eval-images", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/gpu-nll")
    args = parser.parse_args()
    try:
        device = torch.device(args.device)
    except RuntimeError as error:
        raise SystemExit(f"--device {args.device!r}: {error}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here (torch.cuda.is_available() is "
                         "False); --device cpu runs the same loop on the CPU")
    if args.epochs < 1 or args.minutes <= 0:
        raise SystemExit("--epochs must be at least 1 and --minutes positive")
    settings = {k: getattr(args, k) for k in SETTINGS}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in MODELS:  # a record of other settings fails before any training
        path = out / f"{name}.json"
        if path.is_file() and json.loads(path.read_text())["settings"] != settings:
            raise SystemExit(f"{path} holds a run of other settings; use another --out")
    data = load_dataset(args.dataset, binarize="dynamic", seed=args.seed)
    for name in args.models:
        path = out / f"{name}.json"
        if path.is_file():
            print(f"{name}: done before", flush=True)
            continue
        record = {"settings": settings, **run(name, args, data, device)}
        atomic_write(path, (json.dumps(record, indent=2) + "\n").encode())
        print(f"{name}: {record['epochs']} epochs in {record['train_minutes']:.1f} min "
              f"(stopped by {record['stopped_by']}), test NLL {record['test_nll']:.2f} ± "
              f"{record['test_nll_stderr']:.2f}, evaluated in {record['eval_seconds']:.0f} s",
              flush=True)
    print(f"\ndevice: {args.device}; at most {args.epochs} epochs or {args.minutes:g} min of "
          f"training per model, batch {args.batch_size}, Adam lr {args.lr:g} "
          f"({args.lr_schedule} schedule), KL warm-up {args.warmup_epochs:g} epochs, "
          f"output bias {'from the data' if args.init_output_bias else 'as initialized'}, "
          f"dynamic binarization; test NLL on the first {args.eval_images} test images\n")
    print_table(out, args)


if __name__ == "__main__":
    main()
