"""The ``ppvae`` command line.

Every subcommand has ``--help``. ``ppvae train`` writes a run directory::

    RUN_DIR/
      config.json        the resolved configuration (defaults < --config file < flags)
      metrics.json       train/val ELBO per epoch, test_elbo (nats per data point), timing
      model/             the trained model (ppvae.save: model.json + model.safetensors)
      checkpoints/       Lightning checkpoints, one per epoch and last.ckpt
      logs/              CSV and TensorBoard logs
      elbo.png, reconstructions.png, samples.png, latent_map.png (+ latent_manifold.png for 2-D z)

``sample``, ``reconstruct`` and ``latent-map`` read a run directory and write
their figure into it (or where ``--out`` says). A conditional VAE
(``--model cvae``) writes ``samples.png`` as class-conditional samples
(``--condition label``) or completions of partial test images
(``--condition quadrants``), and no reconstructions or latent map.
"""

from __future__ import annotations

import os

# Idle OpenMP threads sleep instead of spinning: with spinning (the default),
# a run on a machine whose other cores are busy stalls at every parallel
# region. Set by the command, before torch loads its OpenMP runtime; an
# OMP_WAIT_POLICY already in the environment wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import math
import sys
import time
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from ppvae import __version__
from ppvae.data import DATASETS, load_dataset

DEFAULTS: dict[str, Any] = {
    "model": "vae",
    "condition": None,
    "quadrants": None,
    "dataset": "digits",
    "data_root": None,
    "val_fraction": 0.1,
    "binarize": "auto",
    "latent_dim": 8,
    "hidden": [256, 128],
    "likelihood": "bernoulli",
    "network": "mlp",
    "activation": "relu",
    "beta": 1.0,
    "objective": "elbo",
    "num_particles": 1,
    "dreg": False,
    "epochs": 400,
    "batch_size": 128,
    "lr": 1e-3,
    "kl_warmup": 0.0,
    "patience": 30,
    "seed": 0,
    "accelerator": "cpu",
    "devices": 1,
    "num_nodes": 1,
    "accel": True,
}
MODEL_NAMES = ("vae", "cvae")
CONDITION_NAMES = ("label", "quadrants")
LIKELIHOOD_NAMES = ("bernoulli", "gaussian", "continuous-bernoulli")


class CLIError(ValueError):
    """A user error reported as one line, without a traceback."""


# --------------------------------------------------------------------- config
def read_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON, YAML or TOML config file whose keys are ``train`` options
    (``latent_dim`` or ``latent-dim``)."""
    path = Path(path)
    if not path.is_file():
        raise CLIError(f"config file {path} does not exist")
    text = path.read_text()
    try:
        if path.suffix == ".json":
            config = json.loads(text)
        elif path.suffix == ".toml":
            config = tomllib.loads(text)
        else:
            config = yaml.safe_load(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError, yaml.YAMLError) as e:
        raise CLIError(f"cannot parse config file {path}: {e}") from None
    if not isinstance(config, dict):
        raise CLIError(f"config file {path} must hold a mapping of option names to values")
    config = {k.replace("-", "_"): v for k, v in config.items()}
    unknown = sorted(set(config) - set(DEFAULTS))
    if unknown:
        raise CLIError(f"unknown option(s) {unknown} in {path}; known: {sorted(DEFAULTS)}")
    return config


def resolve_config(args: argparse.Namespace) -> dict[str, Any]:
    """defaults < the run being resumed < --config file < flags given."""
    config = dict(DEFAULTS)
    if args.resume:
        config.update(json.loads((Path(args.resume) / "config.json").read_text()))
    if args.config:
        config.update(read_config_file(args.config))
    config.update({k: v for k, v in vars(args).items() if k in DEFAULTS and v is not None})
    if config["model"] not in MODEL_NAMES:
        raise CLIError(f"unknown model {config['model']!r}; choose one of {list(MODEL_NAMES)}")
    resolve_condition(config)
    if config["binarize"] == "auto":
        binary_data = config["dataset"].replace("_", "-") == "binarized-mnist"
        bernoulli = config["likelihood"] == "bernoulli"
        config["binarize"] = "dynamic" if bernoulli and not binary_data else None
    elif config["binarize"] == "none":
        config["binarize"] = None
    return config


def resolve_condition(config: dict[str, Any]) -> None:
    """Fill in a CVAE's condition (default ``"label"``; 1 given quadrant for
    ``"quadrants"``) and refuse condition options on other models."""
    if config["model"] != "cvae":
        if config["condition"] is not None or config["quadrants"] is not None:
            raise CLIError("--condition and --quadrants are options of --model cvae")
        return
    config["condition"] = config["condition"] or "label"
    if config["condition"] not in CONDITION_NAMES:
        raise CLIError(f"unknown condition {config['condition']!r}; choose one of "
                       f"{list(CONDITION_NAMES)}")
    if config["condition"] == "quadrants":
        config["quadrants"] = config["quadrants"] or 1
    elif config["quadrants"] is not None:
        raise CLIError("--quadrants goes with --condition quadrants")


def make_model(config: dict[str, Any], data):
    """The model ``config`` describes, for images of ``data``."""
    from ppvae.models import CVAE, VAE

    common = dict(latent_dim=config["latent_dim"], hidden=config["hidden"],
                  likelihood=config["likelihood"], network=config["network"],
                  activation=config["activation"], beta=config["beta"])
    if config["model"] == "vae":
        return VAE(data.image_shape, **common)
    if config["condition"] == "label" and data.num_classes < 2:
        raise CLIError(f"--condition label needs class labels; {data.name} has none")
    return CVAE(data.image_shape, condition=config["condition"], num_classes=data.num_classes,
                quadrants=config["quadrants"] or 1, **common)


def model_args(model, split, name: str, max_points: int | None = None) -> tuple:
    """The arguments of ``model.model``/``model.guide`` for a data split:
    ``(x,)``, or ``(x, c)`` for a conditional model."""
    x = model.prepare(split.x[:max_points], name=name)
    if getattr(model, "conditional", False):
        return x, model.condition_from(x, split.y[:max_points].to(x.device))
    return (x,)


# ------------------------------------------------------------------- run dirs
def new_run_dir(config: dict[str, Any]) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    base = Path("runs") / f"{stamp}-{config['model']}-{config['dataset']}"
    path, i = base, 1
    while path.exists():
        i += 1
        path = base.with_name(f"{base.name}-{i}")
    return path


def open_run_for_resume(run_dir: str) -> None:
    path = Path(run_dir)
    if not path.is_dir():
        raise CLIError(f"cannot resume: run directory {path} does not exist")
    if not (path / "config.json").is_file():
        raise CLIError(f"cannot resume: {path} has no config.json (not a ppvae run directory)")


def open_run(run_dir: str | Path) -> tuple[Path, dict[str, Any]]:
    """Check that ``run_dir`` is a finished ppvae run; return it and its config."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CLIError(f"run directory {run_dir} does not exist")
    if not (run_dir / "config.json").is_file() or not (run_dir / "model").is_dir():
        raise CLIError(
            f"{run_dir} is not a finished ppvae run (it needs config.json and model/, "
            "which `ppvae train` writes)"
        )
    return run_dir, json.loads((run_dir / "config.json").read_text())


def write_json(path: Path, obj: Any) -> None:
    from ppvae.io import atomic_write

    atomic_write(path, (json.dumps(obj, indent=2) + "\n").encode())


def dataset_for(config: dict[str, Any]):
    return load_dataset(config["dataset"], config["data_root"], seed=config["seed"],
                        val_fraction=config["val_fraction"], binarize=config["binarize"])


# ------------------------------------------------------------------- figures
def figure_reconstructions(model, data, path: Path, num: int = 16) -> None:
    from ppvae.plots import plot_reconstructions

    x = data.test.x[:num]
    plot_reconstructions(x, model.reconstruct(x), data.image_shape, path=path)


def figure_samples(model, image_shape, path: Path, num: int = 64) -> None:
    from ppvae.plots import image_grid

    image_grid(model.sample(num), image_shape, title="Samples: E[x | z], z ~ p(z)", path=path)


def figure_conditional(model, data, path: Path, num: int = 10, completions: int = 5) -> None:
    """A CVAE's ``num`` samples per class (rows), or ``completions`` samples
    for each of the first ``num`` partial test images."""
    import torch

    from ppvae.plots import image_rows

    if model.condition == "label":
        samples = model.sample(torch.arange(model.num_classes), num)  # (num, classes, D)
        names = data.class_names or tuple(map(str, range(model.num_classes)))
        rows = {str(names[k]): samples[:, k] for k in range(model.num_classes)}
        title = "Class-conditional samples: E[x | z, y], z ~ p(z | y)"
    else:
        x = model.prepare(data.test.x[:num], name="test data")
        c = model.condition_from(x)
        rows = {"input": c, "truth": x, **{f"CVAE {i + 1}": sample for i, sample in
                                           enumerate(model.sample(c, completions))}}
        title = "Completions: E[x | z, c], z ~ p(z | c); grey = hidden"
    image_rows(rows, data.image_shape, title=title, path=path)


def figure_latent_map(model, data, path: Path, max_points: int = 5000) -> None:
    from ppvae.plots import plot_latent_map

    split = data.test
    plot_latent_map(model.encode(split.x[:max_points]), split.y[:max_points],
                    class_names=data.class_names or None,
                    title=f"Latent means of {min(len(split), max_points)} test images", path=path)


def figure_manifold(model, image_shape, path: Path) -> None:
    from ppvae.plots import plot_latent_manifold

    plot_latent_manifold(model.decode, image_shape, path=path)


# --------------------------------------------------------------- subcommands
def cmd_train(args: argparse.Namespace) -> int:
    import pyro

    import ppvae
    from ppvae.infer import evaluate_elbo
    from ppvae.plots import plot_elbo_curves
    from ppvae.train.distributed import is_main_process

    if args.resume:
        open_run_for_resume(args.resume)
    config = resolve_config(args)
    data = dataset_for(config)  # fail on missing or bad data before writing anything
    pyro.set_rng_seed(config["seed"])
    model = make_model(config, data)  # and a bad model configuration
    run_dir = Path(args.resume or args.out or new_run_dir(config))
    # under data parallelism every process runs this command; only the main
    # one writes (the others never touch their run_dir: Lightning writes
    # checkpoints and logs from the main process only)
    if is_main_process():
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / "config.json", config)
        print(f"ppvae {__version__}: training a {config['model'].upper()} on {data.name} "
              f"({len(data.train)} train / {len(data.val)} val / {len(data.test)} test) "
              f"-> {run_dir}", file=sys.stderr)
    history = ppvae.fit(
        model, data, epochs=config["epochs"], batch_size=config["batch_size"], lr=config["lr"],
        objective=config["objective"], num_particles=config["num_particles"], dreg=config["dreg"],
        kl_warmup_epochs=config["kl_warmup"], patience=config["patience"], seed=config["seed"],
        out_dir=run_dir, resume=bool(args.resume), progress=not args.no_progress,
        accelerator=config["accelerator"], devices=config["devices"],
        num_nodes=config["num_nodes"], accel=config["accel"],
    )
    if history.rank != 0:
        return 0
    ppvae.save(model, run_dir / "model")
    pyro.set_rng_seed(config["seed"])
    test_args = model_args(model, data.test, "test data")
    test_elbo = evaluate_elbo(model.model, model.guide, *test_args, num_particles=10, beta=1.0)
    metrics = {**history.as_dict(), "epochs": history.epochs, "test_elbo": test_elbo,
               "beta": config["beta"]}
    write_json(run_dir / "metrics.json", metrics)
    plot_elbo_curves(metrics, path=run_dir / "elbo.png")
    if config["model"] == "cvae":
        figure_conditional(model, data, run_dir / "samples.png")
    else:
        figure_reconstructions(model, data, run_dir / "reconstructions.png")
        figure_samples(model, data.image_shape, run_dir / "samples.png")
        figure_latent_map(model, data, run_dir / "latent_map.png")
    if model.latent_dim == 2 and config["model"] == "vae":
        figure_manifold(model, data.image_shape, run_dir / "latent_manifold.png")
    best = history.val_elbo[history.best_epoch - 1] if history.val_elbo else float("nan")
    print(f"epochs: {history.epochs} ({history.seconds:.1f} s)"
          f"{', stopped early' if history.stopped_early else ''}; "
          f"best val ELBO {best:.2f} at epoch {history.best_epoch}; "
          f"test ELBO {test_elbo:.2f} nats per data point")
    print(f"run directory: {run_dir}")
    return 0


def _load_run(args: argparse.Namespace):
    import pyro

    import ppvae

    run_dir, config = open_run(args.run_dir)
    pyro.set_rng_seed(args.seed)
    return run_dir, config, ppvae.load(run_dir / "model")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ppvae.infer import evaluate_elbo, log_likelihood
    from ppvae.plots import plot_log_likelihood
    from ppvae.train.distributed import launch_processes

    if args.num_samples < 1:
        raise CLIError(f"--num-samples must be at least 1, got {args.num_samples}")
    open_run(args.run_dir)  # a bad run directory fails before any process starts
    fabric = None
    if args.devices * args.num_nodes > 1:  # every process runs the rest of this command
        fabric = launch_processes(args.accelerator, args.devices, args.num_nodes)
    run_dir, config, model = _load_run(args)
    if fabric is not None:
        model = model.to(fabric.device)
    split = getattr(dataset_for(config), args.split)
    data_args = model_args(model, split, f"{args.split} data", args.max_points)
    start = time.perf_counter()
    result = log_likelihood(model.model, model.guide, *data_args, num_samples=args.num_samples,
                            seed=args.seed, progress=not args.no_progress,
                            distributed=fabric is not None, accel=args.accel)
    seconds = time.perf_counter() - start
    if fabric is not None and not fabric.is_global_zero:
        return 0
    elbo = evaluate_elbo(model.model, model.guide, *data_args, num_particles=10)
    record = {**result.to_dict(), "split": args.split, "seconds": seconds,
              "elbo_10_particles": elbo, "processes": args.devices * args.num_nodes}
    write_json(run_dir / "loglik.json", record)
    plot_log_likelihood(result.curve(), result.khat, elbo=result.elbo_mean,
                        path=run_dir / "loglik.png",
                        title=f"{config['model'].upper()} on {config['dataset']} ({args.split})")
    print(result.summary())
    print(f"({seconds:.1f} s) wrote {run_dir / 'loglik.json'} and {run_dir / 'loglik.png'}")
    return 0


def cmd_sample(args: argparse.Namespace) -> int:
    run_dir, config, model = _load_run(args)
    out = Path(args.out or run_dir / "samples.png")
    if getattr(model, "conditional", False):
        figure_conditional(model, dataset_for(config), out, num=args.num or 10)
    else:
        figure_samples(model, tuple(model.input_shape), out, num=args.num or 64)
    print(out)
    return 0


def _unconditional(model, command: str) -> None:
    if getattr(model, "conditional", False):
        raise CLIError(f"`ppvae {command}` is for unconditional models; `ppvae sample` draws "
                       "a conditional model's samples")


def cmd_reconstruct(args: argparse.Namespace) -> int:
    run_dir, config, model = _load_run(args)
    _unconditional(model, "reconstruct")
    out = Path(args.out or run_dir / "reconstructions.png")
    figure_reconstructions(model, dataset_for(config), out, num=args.num)
    print(out)
    return 0


def cmd_latent_map(args: argparse.Namespace) -> int:
    run_dir, config, model = _load_run(args)
    _unconditional(model, "latent-map")
    out = Path(args.out or run_dir / "latent_map.png")
    figure_latent_map(model, dataset_for(config), out, max_points=args.max_points)
    print(out)
    return 0


def _labelled_weight(text: str) -> float | str:
    """``--labelled-weight``: "dataset" or a positive number."""
    if text == "dataset":
        return text
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number or 'dataset', got {text!r}")
    return value


def cmd_ssl(args: argparse.Namespace) -> int:
    from ppvae.experiments import markdown_table, run_ssl

    out = Path(args.out or new_run_dir({"model": "ssl", "dataset": args.dataset}))
    try:
        results = run_ssl(
            out, args.dataset, labels=args.labels, seeds=args.seeds, methods=args.methods,
            data_root=args.data_root, epochs=args.epochs, progress=not args.no_progress,
            m1_epochs=args.m1_epochs, supervised_epochs=args.supervised_epochs,
            latent_dim=args.latent_dim, m1_latent_dim=args.m1_latent_dim, hidden=args.hidden,
            m1_hidden=args.m1_hidden, m1_activation=args.m1_activation, m1_lr=args.m1_lr,
            classifier_hidden=args.classifier_hidden, alpha=args.alpha,
            labelled_weight=args.labelled_weight, labelled_per_batch=args.labelled_per_batch,
            batch_size=args.batch_size, lr=args.lr,
            max_minutes=args.max_minutes, likelihood=args.likelihood,
            accelerator=args.accelerator)
    except KeyboardInterrupt:
        print(f"ppvae: interrupted; the same command with --out {out} continues the experiment",
              file=sys.stderr)
        return 130
    print(markdown_table(results["summary"], results["config"]["dataset"]), end="")
    print(f"results in {out}: ssl_results.json, ssl_results.md, ssl_errors.png")
    return 0


def cmd_cvae(args: argparse.Namespace) -> int:
    from ppvae.experiments.cvae import markdown_table, run_cvae

    out = Path(args.out or new_run_dir({"model": "cvae", "dataset": args.dataset}))
    try:
        results = run_cvae(
            out, args.dataset, quadrants=args.quadrants, methods=args.methods,
            data_root=args.data_root, progress=not args.no_progress, epochs=args.epochs,
            baseline_epochs=args.baseline_epochs, max_minutes=args.max_minutes,
            patience=args.patience, kl_warmup_epochs=args.kl_warmup_epochs,
            latent_dim=args.latent_dim, hidden=args.hidden,
            batch_size=args.batch_size, lr=args.lr, num_samples=args.num_samples,
            max_test=args.max_test, seed=args.seed)
    except KeyboardInterrupt:
        print(f"ppvae: interrupted; the same command with --out {out} continues the benchmark",
              file=sys.stderr)
        return 130
    print(markdown_table(results["records"], results["config"]["dataset"]), end="")
    print(f"results in {out}: cvae_results.json, cvae_results.md, completions_q*.png")
    return 0


# -------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ppvae",
        description="Variational autoencoders as Pyro model/guide pairs.",
    )
    parser.add_argument("--version", action="version", version=f"ppvae {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    d = DEFAULTS
    train = sub.add_parser(
        "train", help="train a model and write a run directory",
        description="Train a model; write config, metrics, model, checkpoints, logs and "
                    "figures to a run directory. Precedence: defaults < --config < flags.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        argument_default=None,
    )
    g = train.add_argument_group("data")
    g.add_argument("--dataset", choices=DATASETS, help=f"data set (default {d['dataset']})")
    g.add_argument("--data-root", help="directory with the data files (default: $PPVAE_DATA)")
    g.add_argument("--val-fraction", type=float,
                   help=f"fraction of training data held out for validation ({d['val_fraction']})")
    g.add_argument("--binarize", choices=["auto", "none", "static", "dynamic"],
                   help="binarization of grey images; auto = dynamic for a Bernoulli "
                        "likelihood, none otherwise")
    g = train.add_argument_group("model")
    g.add_argument("--model", choices=MODEL_NAMES,
                   help="model: vae, or cvae, the conditional VAE (default vae)")
    g.add_argument("--condition", choices=CONDITION_NAMES,
                   help="the condition of a cvae: the class label, or the given quadrants of "
                        "the image (default label)")
    g.add_argument("--quadrants", type=int, choices=[1, 2, 3],
                   help="given quadrants with --condition quadrants (default 1)")
    g.add_argument("--latent-dim", type=int, help=f"dimension of z ({d['latent_dim']})")
    g.add_argument("--hidden", type=int, nargs="+",
                   help=f"hidden widths, encoder side ({' '.join(map(str, d['hidden']))})")
    g.add_argument("--likelihood", choices=LIKELIHOOD_NAMES,
                   help=f"observation model ({d['likelihood']})")
    g.add_argument("--network", choices=["mlp", "conv"], help=f"network kind ({d['network']})")
    g.add_argument("--activation", help=f"hidden activation ({d['activation']})")
    g.add_argument("--beta", type=float, help=f"KL weight of the beta-VAE ({d['beta']})")
    g = train.add_argument_group("training")
    g.add_argument("--objective", choices=["elbo", "elbo-analytic", "iwae"],
                   help="training objective: the ELBO, the ELBO with closed-form KL, or the "
                        f"per-datapoint IWAE bound with K = --num-particles ({d['objective']})")
    g.add_argument("--num-particles", type=int, help="samples of z per data point per step (1)")
    g.add_argument("--dreg", action="store_const", const=True,
                   help="doubly-reparameterized guide gradients (with --objective iwae)")
    g.add_argument("--epochs", type=int, help=f"maximum epochs ({d['epochs']})")
    g.add_argument("--batch-size", type=int, help=f"batch size ({d['batch_size']})")
    g.add_argument("--lr", type=float, help=f"Adam learning rate ({d['lr']})")
    g.add_argument("--kl-warmup", type=float, help="epochs of linear KL warm-up (0)")
    g.add_argument("--patience", type=int,
                   help=f"early-stopping patience in epochs ({d['patience']})")
    g.add_argument("--seed", type=int, help=f"random seed ({d['seed']})")
    g.add_argument("--accelerator", help="Lightning accelerator: cpu, gpu, auto (cpu)")
    g.add_argument("--devices", type=int,
                   help="devices (processes) per machine; more than one trains data-parallel "
                        "with DDP, --batch-size being the global batch (1)")
    g.add_argument("--num-nodes", type=int,
                   help="machines, each running --devices processes (see README) (1)")
    g.add_argument("--no-accel", dest="accel", action="store_const", const=False,
                   help="train through Pyro's traces instead of the model's pure-torch twin "
                        "(the same loss and gradients, slower)")
    g = train.add_argument_group("run")
    g.add_argument("--config", help="JSON, YAML or TOML file of options (keys as flags)")
    g.add_argument("--out", help="run directory (default: a new folder under runs/)")
    g.add_argument("--resume", metavar="RUN_DIR",
                   help="continue an interrupted run from its last checkpoint")
    g.add_argument("--no-progress", action="store_true", default=False,
                   help="no progress bar")
    train.set_defaults(func=cmd_train)

    ev = sub.add_parser(
        "evaluate", help="importance-weighted log-likelihood of a trained model",
        description="Estimate log p(x) per data point by importance sampling with the "
                    "model's guide (Burda et al. 2016), with ELBO, ESS and PSIS k-hat; writes "
                    "RUN_DIR/loglik.json and RUN_DIR/loglik.png.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ev.add_argument("run_dir", metavar="RUN_DIR", help="a run directory from `ppvae train`")
    ev.add_argument("--num-samples", "-k", type=int, default=1000,
                    help="importance samples K per data point")
    ev.add_argument("--split", choices=["test", "val"], default="test", help="data split")
    ev.add_argument("--max-points", type=int, default=None, help="evaluate the first N only")
    ev.add_argument("--seed", type=int, default=0, help="random seed of the draws")
    ev.add_argument("--no-progress", action="store_true", help="no progress bar")
    ev.add_argument("--no-accel", dest="accel", action="store_false",
                    help="score through Pyro's traces instead of the model's pure-torch twin "
                         "(the same draws and estimate, slower)")
    ev.add_argument("--accelerator", default="cpu", help="Lightning accelerator: cpu, gpu, auto")
    ev.add_argument("--devices", type=int, default=1,
                    help="devices (processes) per machine sharing the data points; the result "
                         "is the same as with one")
    ev.add_argument("--num-nodes", type=int, default=1, help="machines (see README)")
    ev.set_defaults(func=cmd_evaluate)

    for name, func, helptext in [
        ("sample", cmd_sample, "draw samples from a trained model (samples.png)"),
        ("reconstruct", cmd_reconstruct, "reconstruct test images (reconstructions.png)"),
        ("latent-map", cmd_latent_map, "map test images into the latent space (latent_map.png)"),
    ]:
        p = sub.add_parser(name, help=helptext, description=helptext[0].upper() + helptext[1:],
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory from `ppvae train`")
        p.add_argument("--out", help="output PNG (default: inside RUN_DIR)")
        p.add_argument("--seed", type=int, default=0, help="random seed")
        if name == "latent-map":
            p.add_argument("--max-points", type=int, default=5000, help="test images to map")
        elif name == "sample":
            p.add_argument("--num", type=int, default=None,
                           help="number of images (default 64); for a CVAE, images per row "
                                "(default 10)")
        else:
            p.add_argument("--num", type=int, default=16, help="number of images")
        p.set_defaults(func=func)

    ssl = sub.add_parser(
        "ssl", help="semi-supervised classification over label counts and seeds",
        description="Train M2, M1+M2 (Kingma et al. 2014) and a supervised baseline with N "
                    "labelled training images for every N in --labels and every seed; write "
                    "ssl_results.json, ssl_results.md and ssl_errors.png to --out. The same "
                    "command on an existing --out skips the cells already done.")
    g = ssl.add_argument_group("experiment")
    g.add_argument("--dataset", choices=["digits", "mnist", "fashion-mnist"], default="digits",
                   help="data set (%(default)s)")
    g.add_argument("--data-root", help="directory with the data files (default: $PPVAE_DATA)")
    g.add_argument("--labels", type=int, nargs="+", default=[100],
                   help="numbers of labelled training images, multiples of the class count (100)")
    g.add_argument("--seeds", type=int, nargs="+", default=[0], help="random seeds (0)")
    g.add_argument("--methods", nargs="+", choices=["m2", "m1m2", "supervised"],
                   default=["m2", "m1m2", "supervised"], help="methods to run (all)")
    g.add_argument("--out", help="results directory (default: a new folder under runs/)")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    g = ssl.add_argument_group("models and training")
    g.add_argument("--epochs", type=int, default=100, help="epochs of M2 (%(default)s)")
    g.add_argument("--m1-epochs", type=int, default=100,
                   help="epochs of M1, the VAE of M1+M2 (%(default)s)")
    g.add_argument("--supervised-epochs", type=int, default=100,
                   help="epochs of the supervised baseline (%(default)s)")
    g.add_argument("--latent-dim", type=int, default=8, help="dimension of M2's z (%(default)s)")
    g.add_argument("--m1-latent-dim", type=int, default=16,
                   help="dimension of M1's z (%(default)s)")
    g.add_argument("--hidden", type=int, nargs="+", default=[256, 128],
                   help="hidden widths of the encoders; decoders mirror them (256 128)")
    g.add_argument("--classifier-hidden", type=int, nargs="+",
                   help="hidden widths of q(y | x) and of the baseline (default: --hidden)")
    g.add_argument("--m1-hidden", type=int, nargs="+",
                   help="hidden widths of M1's encoder; its decoder mirrors them "
                        "(default: --hidden)")
    g.add_argument("--m1-activation", default="relu",
                   help="M1's hidden activation, e.g. relu, tanh, softplus (%(default)s; "
                        "the paper's code: softplus)")
    g.add_argument("--m1-lr", type=float,
                   help="M1's Adam learning rate (default: --lr)")
    g.add_argument("--alpha", type=float, default=50.0,
                   help="weight of M2's classification term alpha * log q(y | x) (%(default)s)")
    g.add_argument("--labelled-weight", type=_labelled_weight, default=1.0,
                   help="weight of a labelled image against an unlabelled one in M2's batches: "
                        "a number, or 'dataset' for the paper's objective summed over the "
                        "training set (every image once per epoch) (%(default)s)")
    g.add_argument("--labelled-per-batch", type=int, default=16,
                   help="labelled images in each M2 batch (%(default)s)")
    g.add_argument("--batch-size", type=int, default=32,
                   help="unlabelled images per batch (%(default)s)")
    g.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (%(default)s)")
    g.add_argument("--max-minutes", type=float,
                   help="training-time limit of each M2 and M1 fit, in minutes (none)")
    g.add_argument("--likelihood", choices=["bernoulli", "continuous-bernoulli", "gaussian"],
                   default="bernoulli",
                   help="observation model of M2 and M1: bernoulli on dynamically binarized "
                        "images, or one for the grey levels, which every method then sees "
                        "(%(default)s)")
    g.add_argument("--accelerator", default="cpu",
                   help="Lightning accelerator for M2 and M1: cpu, gpu, auto (%(default)s)")
    ssl.set_defaults(func=cmd_ssl)

    cv = sub.add_parser(
        "cvae", help="image completion from 1, 2, 3 quadrants: CVAE vs a deterministic network",
        description="Train a deterministic network and a conditional VAE (Sohn et al. 2015) to "
                    "predict the hidden pixels of a digit from 1, 2 or 3 given quadrants; score "
                    "the test NLL of the hidden pixels (baseline: exact; CVAE: importance "
                    "sampling with K samples); write cvae_results.json, cvae_results.md and "
                    "completions_q<N>.png to --out. The same command on an existing --out "
                    "skips the cells already done.")
    g = cv.add_argument_group("experiment")
    g.add_argument("--dataset", choices=["digits", "mnist", "fashion-mnist"], default="digits",
                   help="data set (%(default)s)")
    g.add_argument("--data-root", help="directory with the data files (default: $PPVAE_DATA)")
    g.add_argument("--quadrants", type=int, nargs="+", choices=[1, 2, 3], default=[1, 2, 3],
                   help="numbers of given quadrants (1 2 3)")
    g.add_argument("--methods", nargs="+", choices=["baseline", "cvae"],
                   default=["baseline", "cvae"], help="methods to run (both)")
    g.add_argument("--out", help="results directory (default: a new folder under runs/)")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")
    g = cv.add_argument_group("models, training and evaluation")
    g.add_argument("--epochs", type=int, default=50, help="maximum epochs of each CVAE "
                   "(%(default)s)")
    g.add_argument("--baseline-epochs", type=int, default=50,
                   help="maximum epochs of each baseline (%(default)s)")
    g.add_argument("--max-minutes", type=float,
                   help="training time limit of each model, in minutes (none)")
    g.add_argument("--patience", type=int, default=5,
                   help="early-stopping patience in epochs (%(default)s)")
    g.add_argument("--kl-warmup-epochs", type=float, default=10.0,
                   help="epochs of linear KL warm-up for each CVAE (%(default)s)")
    g.add_argument("--latent-dim", type=int, default=16, help="dimension of z (%(default)s)")
    g.add_argument("--hidden", type=int, nargs="+", default=[500, 500],
                   help="hidden widths of every network (500 500)")
    g.add_argument("--batch-size", type=int, default=128, help="batch size (%(default)s)")
    g.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (%(default)s)")
    g.add_argument("--num-samples", "-k", type=int, default=100,
                   help="importance samples K per test image for the CVAE (%(default)s)")
    g.add_argument("--max-test", type=int, help="score the first N test images (all)")
    g.add_argument("--seed", type=int, default=0, help="random seed (%(default)s)")
    cv.set_defaults(func=cmd_cvae)
    return parser


def _process_label() -> str:
    """Which process this is, in a run on several processes ("" in a single one)."""
    if "torch.distributed" not in sys.modules:
        return ""
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_world_size() == 1:
        return ""
    return f" in process {dist.get_rank()} of {dist.get_world_size()}"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ppvae`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except Exception as e:
        if _process_label():  # which process failed, above its traceback
            print(f"ppvae: error{_process_label()}: {type(e).__name__}: {e}; the other "
                  "processes stop with it", file=sys.stderr)
        raise


def _run(args: argparse.Namespace) -> int:
    """Run a subcommand; user errors become one line and an exit status."""
    try:
        return args.func(args)
    except ValueError as e:  # CLIError, DataError, ModelFileError, bad data
        print(f"ppvae: error{_process_label()}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ppvae: interrupted; `ppvae train --resume RUN_DIR` continues a training run",
              file=sys.stderr)
        return 130
    except RuntimeError as e:
        from ppvae.train import TrainingDiverged

        if not isinstance(e, TrainingDiverged):
            raise
        print(f"ppvae: training diverged: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
