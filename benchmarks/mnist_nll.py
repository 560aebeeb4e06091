"""Test log-likelihood on MNIST with the IWAE paper's networks: VAE and IWAE
with one and two stochastic layers, learned priors, an IAF guide and a
Helmholtz machine trained by reweighted wake-sleep, at one CPU budget each.

Burda, Grosse & Salakhutdinov (2016): one stochastic layer, encoder
784-200-200-(50, 50) and decoder 50-200-200-784; two layers, x -> 200-200 ->
z1 (100) -> 100-100 -> z2 (50) and back; tanh, Bernoulli likelihood, MNIST
dynamically binarized, Adam. Models (``--models``):

- ``vae``, ``iwae``: one layer, trained on the ELBO / the IWAE bound with
  ``--iwae-k`` samples;
- ``vae-2l``, ``iwae-2l``: :class:`ppvae.models.TwoLayerVAE`, the same two ways;
- ``vamp``: the one-layer VAE with the VampPrior (``--pseudo-inputs``, 500 as
  in Tomczak & Welling 2018); ``mog``: with a learned mixture of
  ``--mog-components`` Gaussians;
- ``iaf``: the one-layer VAE with an IAF guide of ``--flows`` steps;
- ``rws``: :class:`ppvae.models.HelmholtzMachine`, binary layers 200-200
  (linear sigmoid belief network conditionals), reweighted wake-sleep with
  ``--rws-k`` samples and insomnia 0.5.

Each model trains for ``--minutes`` of wall-clock time or ``--max-epochs``
epochs, whichever ends first (0: no such limit; the paper trains 3280 epochs,
and ``--lr-schedule burda`` walks its learning-rate stages over whichever
share of the budget is the larger), keeping the best validation epoch, the
ELBO-trained ones with KL warm-up over ``--warmup-epochs`` (0: none; the
VampPrior paper warms up over 100 epochs), and with ``--init-output-bias``
the decoder's output bias set to the logits of the training pixels' means
before training, as Burda et al.'s code does
(``ppvae.fit(..., init_output_bias=True)``); then its test negative
log-likelihood is estimated with K = ``--eval-samples`` importance samples per
image on the first ``--eval-images`` test images (``ppvae.infer.log_likelihood``),
and the active units of each latent layer counted on the same images
(``ppvae.infer.active_units``: Var_x E_q[z_d | x] > 0.01, Burda et al.'s
criterion; none for the Helmholtz machine's binary units).
The validation split is 10% of MNIST's training file (seed ``--seed``).

With ``--units-of-last-checkpoint`` nothing trains: for each of ``--models``
with a record in ``--out`` the active units of the run's last checkpoint
(its final epoch; the record's estimates are of its best validation epoch)
are counted and added to the record as ``active_units_last_epoch``, for
records from before active units were counted.

Resumable: each finished model's record is ``--out/<model>.json`` (with the
settings; a record of other settings is refused), so two processes may run
disjoint ``--models`` into one ``--out``; the table is printed from every
record present. A model whose run directory ``--out/<model>`` exists without
a record was interrupted: it is refused, or with ``--resume`` continued from
its newest checkpoint (the clock, the schedule's progress and the best
epoch's weights travel with it), so a budget longer than one sitting can be
trained in several; the record then counts the training time of all of them.

Usage: PPVAE_DATA=../shared/data python benchmarks/mnist_nll.py --minutes 20
       [--models vae iwae vae-2l ...] [--eval-samples 5000] [--eval-images 10000] [--out DIR]
Quick check: python benchmarks/mnist_nll.py --dataset digits --minutes 0.1 --eval-samples 20
       --out /tmp/nll-check
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pyro
import torch
from common import iwae_paper_vae, machine

import ppvae
from ppvae.atomic import atomic_write
from ppvae.data import load_dataset
from ppvae.infer import active_units
from ppvae.models import HelmholtzMachine, TwoLayerVAE
from ppvae.train.schedules import SCHEDULES

MODELS = ("vae", "iwae", "vae-2l", "iwae-2l", "vamp", "mog", "iaf", "rws")
#: Burda et al. (2016), 3280 epochs; Tomczak & Welling (2018) on the fixed binarization
PAPER = {"vae": "86.76", "iwae": "84.78 (K = 50)", "vae-2l": "85.33",
         "iwae-2l": "82.90 (K = 50)", "vamp": "85.57 (fixed binarization)"}
PYTHAE = {"vae": "89.78", "iwae": "86.82"}
LABELS = {"vae": "VAE", "iwae": "IWAE", "vae-2l": "VAE, 2 layers", "iwae-2l": "IWAE, 2 layers",
          "vamp": "VAE, VampPrior", "mog": "VAE, mixture prior", "iaf": "VAE, IAF guide",
          "rws": "Helmholtz machine, RWS"}
#: settings that change a model's record (``--models``, ``--out`` do not)
SETTINGS = ("dataset", "minutes", "max_epochs", "iwae_k", "rws_k", "pseudo_inputs",
            "mog_components", "flows", "warmup_epochs", "batch_size", "lr", "lr_schedule",
            "patience", "eval_samples", "eval_images", "seed", "init_output_bias")
#: the values of settings added later, which older records ran with
EARLIER = {"warmup_epochs": 0.0, "lr_schedule": "constant", "patience": 30,
           "init_output_bias": False, "max_epochs": 0}


def build(name: str, args: argparse.Namespace, shape):
    """The model ``name`` and its fit options."""
    if name in ("vae-2l", "iwae-2l"):
        model = TwoLayerVAE(shape, latent_dim=100, top_latent_dim=50, hidden=(200, 200),
                            top_hidden=(100, 100))
    elif name == "rws":
        return HelmholtzMachine(shape, layers=(200, 200)), {"num_particles": args.rws_k}
    elif name == "vamp":
        model = iwae_paper_vae(input_shape=shape, prior="vamp", prior_components=args.pseudo_inputs)
    elif name == "mog":
        model = iwae_paper_vae(input_shape=shape, prior="mog",
                               prior_components=args.mog_components)
    elif name == "iaf":
        model = iwae_paper_vae(input_shape=shape, posterior="iaf", num_flows=args.flows)
    else:
        model = iwae_paper_vae(input_shape=shape)
    if name.startswith("iwae"):
        return model, {"objective": "iwae", "num_particles": args.iwae_k}
    return model, {"kl_warmup_epochs": args.warmup_epochs} if args.warmup_epochs else {}


def unfinished(name: str, args: argparse.Namespace, settings: dict) -> bool:
    """Whether model ``name`` has an interrupted run in ``--out`` to continue:
    refused (``SystemExit``) without ``--resume``, with no checkpoint yet, or
    when the run was started with other settings."""
    run_dir = Path(args.out) / name
    if not run_dir.exists():
        return False
    if not args.resume:
        raise SystemExit(f"{run_dir} holds an unfinished run: --resume continues it, or remove it "
                         f"to start over")
    started = run_dir / "settings.json"
    if not started.is_file() or json.loads(started.read_text()) != settings:
        raise SystemExit(f"{run_dir} was started with other settings (see {started}); use another "
                         f"--out")
    if not any((run_dir / "checkpoints").glob("*.ckpt")):
        raise SystemExit(f"{run_dir} stopped before its first checkpoint: remove it to start over")
    return True


def run(name: str, args: argparse.Namespace, data, settings: dict, resume: bool) -> dict:
    pyro.set_rng_seed(args.seed)
    model, options = build(name, args, data.image_shape)
    run_dir = Path(args.out) / name
    if not resume:
        run_dir.mkdir(parents=True)
        atomic_write(run_dir / "settings.json", (json.dumps(settings, indent=2) + "\n").encode())
    history = ppvae.fit(model, data, epochs=args.max_epochs or 1_000_000,
                        max_minutes=args.minutes or None, resume=resume,
                        batch_size=args.batch_size, lr=args.lr, lr_schedule=args.lr_schedule,
                        patience=args.patience or None, seed=args.seed, progress=False,
                        init_output_bias=args.init_output_bias,
                        out_dir=run_dir, keep_checkpoints=1, **options)
    x = data.test.x[: args.eval_images]
    start = time.perf_counter()
    result = model.log_likelihood(x, num_samples=args.eval_samples, progress=True)
    seconds = time.perf_counter() - start
    return {"model": name, "fit_options": options, "epochs": history.epochs,
            "train_minutes": history.seconds / 60, "test_nll": -result.mean,
            "test_nll_stderr": result.stderr, "test_elbo": result.elbo_mean,
            "eval_images": len(x), "eval_seconds": seconds,
            "khat_max": result.khat_max, "frac_khat_above_0.7": result.frac_khat_above,
            "active_units": active_units(model.guide, x).counts,
            "sittings": len(list((run_dir / "logs").glob("version_*"))),
            "machine": machine()}


def load_last_checkpoint(name: str, args: argparse.Namespace, shape) -> tuple[object, int]:
    """Model ``name`` of the run in ``args.out`` with the weights of its last
    checkpoint (its final epoch), and that epoch (from 1)."""
    path = Path(args.out) / name / "checkpoints" / "last.ckpt"
    if not path.is_file():
        raise SystemExit(f"{path} is missing: no checkpoint of that run")
    model, _ = build(name, args, shape)
    # a Lightning checkpoint this script's own run wrote (not only tensors)
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    model.load_state_dict({k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items()
                           if k.startswith("model.")})
    return model, checkpoint["epoch"] + 1


def last_epoch_units(name: str, args: argparse.Namespace, data) -> dict:
    """The active units of the last checkpoint of model ``name``'s run in ``--out``."""
    model, epoch = load_last_checkpoint(name, args, data.image_shape)
    units = active_units(model.guide, data.test.x[: args.eval_images]).counts
    return {"epoch": epoch, "units": units}


def units_cell(record: dict) -> str:
    """The table's active units: of the evaluated weights, else (marked †) of
    the last checkpoint, else a dash."""
    units, mark = record.get("active_units"), ""
    if units is None and "active_units_last_epoch" in record:
        units, mark = record["active_units_last_epoch"]["units"], " †"
    return " + ".join(str(n) for n in units.values()) + mark if units else "—"


def print_table(out: Path, args: argparse.Namespace) -> None:
    """The markdown table of every record in ``out``."""
    records = [json.loads((out / f"{n}.json").read_text()) for n in MODELS
               if (out / f"{n}.json").is_file()]
    print(f"| model | training | epochs | train min | test ELBO | test NLL (K = "
          f"{args.eval_samples}) | k-hat > 0.7 | active units | paper | pythae |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in records:
        n = r["model"]
        k = r["fit_options"].get("num_particles")
        training = {"iwae": f"IWAE, K = {k}", "rws": f"RWS, K = {k}"}.get(n.split("-")[0], "ELBO")
        print(f"| {LABELS[n]} | {training} | {r['epochs']} | {r['train_minutes']:.1f} | "
              f"{-r['test_elbo']:.2f} | {r['test_nll']:.2f} ± {r['test_nll_stderr']:.2f} | "
              f"{100 * r['frac_khat_above_0.7']:.1f}% | {units_cell(r)} | {PAPER.get(n, '—')} | "
              f"{PYTHAE.get(n, '—')} |")
    if any("active_units" not in r and "active_units_last_epoch" in r for r in records):
        print("\n† of the last epoch's checkpoint (--units-of-last-checkpoint)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="mnist", choices=["mnist", "digits"])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--minutes", type=float, default=20.0,
                        help="training budget per model in minutes (0: no time limit)")
    parser.add_argument("--max-epochs", type=int, default=0,
                        help="training budget per model in epochs (0: no epoch limit)")
    parser.add_argument("--iwae-k", type=int, default=50)
    parser.add_argument("--rws-k", type=int, default=5)
    parser.add_argument("--pseudo-inputs", type=int, default=500)
    parser.add_argument("--mog-components", type=int, default=10)
    parser.add_argument("--flows", type=int, default=2)
    parser.add_argument("--warmup-epochs", type=float, default=0.0,
                        help="KL warm-up of the ELBO-trained models (0: none)")
    parser.add_argument("--init-output-bias", action="store_true",
                        help="set the decoder's output bias to the logits of the training "
                             "pixels' means before training (Burda et al.'s code)")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--lr-schedule", default="constant", choices=list(SCHEDULES),
                        help="the learning rate over the budget (ppvae.train.schedules); "
                             "burda: Burda et al.'s 3280-epoch stages scaled to the budget")
    parser.add_argument("--patience", type=int, default=30,
                        help="early stopping after this many epochs without a better "
                             "validation ELBO (0: none)")
    parser.add_argument("--eval-samples", type=int, default=5000)
    parser.add_argument("--eval-images", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs/bench-mnist-nll")
    parser.add_argument("--resume", action="store_true",
                        help="continue each interrupted run in --out from its newest checkpoint")
    parser.add_argument("--units-of-last-checkpoint", action="store_true",
                        help="count the active units of each record's last checkpoint instead "
                             "of training (module doc)")
    args = parser.parse_args()
    if args.minutes < 0 or args.max_epochs < 0 or not (args.minutes or args.max_epochs):
        parser.error("the budget needs --minutes > 0 or --max-epochs > 0 (neither negative)")
    settings = {k: getattr(args, k) for k in SETTINGS}

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    resume = {}
    for name in MODELS:  # a record of other settings fails before any training
        path = out / f"{name}.json"
        if path.is_file() and {**EARLIER, **json.loads(path.read_text())["settings"]} != settings:
            raise SystemExit(f"{path} holds a run of other settings; use another --out")
        if (name in args.models and not path.is_file()
                and not args.units_of_last_checkpoint):  # so does an unfinished run's
            resume[name] = unfinished(name, args, settings)
    data = load_dataset(args.dataset, binarize="dynamic", seed=args.seed)
    for name in args.models:
        path = out / f"{name}.json"
        if args.units_of_last_checkpoint:
            if not path.is_file():
                raise SystemExit(f"{path} is missing: no run to count active units of")
            if name == "rws":
                raise SystemExit("the Helmholtz machine's units are binary: no active units")
            record = json.loads(path.read_text())
            record["active_units_last_epoch"] = last_epoch_units(name, args, data)
            atomic_write(path, (json.dumps(record, indent=2) + "\n").encode())
            print(f"{name}: active units of epoch {record['active_units_last_epoch']['epoch']}: "
                  f"{record['active_units_last_epoch']['units']}", flush=True)
            continue
        if path.is_file():
            print(f"{name}: done before", flush=True)
            continue
        record = {"settings": settings, **run(name, args, data, settings, resume[name])}
        atomic_write(path, (json.dumps(record, indent=2) + "\n").encode())
        print(f"{name}: {record['epochs']} epochs, test NLL {record['test_nll']:.2f} ± "
              f"{record['test_nll_stderr']:.2f}", flush=True)

    budget = " or ".join(b for b in (args.minutes and f"{args.minutes:g} min",
                                     args.max_epochs and f"{args.max_epochs} epochs") if b)
    print(f"\nmachine: {machine()}; budget {budget} of training per model, "
          f"batch {args.batch_size}, Adam lr {args.lr:g} ({args.lr_schedule} schedule), "
          f"patience {args.patience or 'none'}, KL warm-up {args.warmup_epochs:g} epochs, "
          f"output bias {'from the data' if args.init_output_bias else 'as initialized'}, "
          f"dynamic binarization "
          f"({len(data.train)} train / {len(data.val)} val images); test NLL on the first "
          f"{args.eval_images} test images\n")
    print_table(out, args)


if __name__ == "__main__":
    main()
