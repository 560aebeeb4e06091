"""The ``ppvae`` command line. Its options come from the code: the registered
models' constructors (:mod:`ppvae.models.registry`), their training plans,
:func:`ppvae.fit`, the run functions of :mod:`ppvae.io`, the experiment
runners and :func:`run_options`, read by :class:`ppvae.config.Options`.
"""

from __future__ import annotations

import os

# Idle OpenMP threads sleep instead of spinning, which stalls a run on a busy
# machine at every parallel region; set before torch loads its OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from ppvae import __version__, io
from ppvae.config import OptionError, Options, read_config
from ppvae.data import DataOptions
from ppvae.infer import LogLikelihood
from ppvae.models import REGISTRY
from ppvae.models.registry import DATA_ARGUMENTS, entry


def run_options(out: Path | None = None, resume: Path | None = None, overwrite: bool = False,
                progress: bool = True) -> None:
    """The run directory.

    Args:
        out: the run directory (default: a new folder under runs/).
        resume: continue this run from its newest intact checkpoint.
        overwrite: replace the run in --out.
        progress: show progress (a bar on a terminal, else a line per epoch).
    """


def first_pass(argv: Sequence[str]) -> argparse.Namespace:
    """The --model, --config and --resume of a ``train`` command, which choose its options."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    for flag in ("--model", "--config", "--resume"):
        parser.add_argument(flag)
    return parser.parse_known_args(argv)[0]


def cmd_train(argv: list[str]) -> int:
    from ppvae.train import PLANS, fit

    first = first_pass(argv)
    if first.resume:  # the run's settings, which flags may override
        first.config = io.open_run(first.resume, need_model=False) / io.RUN_CONFIG
        argv = ["--config", str(first.config), *argv]
    model = entry(first.model or (read_config(first.config).get("model", "vae")
                                  if first.config else "vae"))
    parser = Options("ppvae train", f"Train a model ({model.name}: {model.summary}) and write "
                                    "its run directory. Other models: ppvae models.")
    parser.parser.add_argument("--model", default="vae", help="a registered model (ppvae models)")
    run_keys = parser.add(run_options)
    parser.add(DataOptions)
    parser.add(model.cls, skip=set(DATA_ARGUMENTS))
    parser.add(fit, skip={"model", "data", "plan", "out_dir", "resume", "progress"})
    parser.add(PLANS[model.plan], skip={"model", "lr", "seed", "accel"})
    config = parser.parse(argv, {"kl_warmup": "kl_warmup_epochs"})
    run = {k: config.pop(k) for k in run_keys}
    run_dir = io.prepare_run(run["out"], run["resume"], run["overwrite"],
                             name=f"{model.name}-{config['dataset']}")
    _, history, tested = io.train_run(run_dir, config, resume=bool(run["resume"]),
                                      overwrite=run["overwrite"], progress=run["progress"])
    if history.rank == 0:
        print(f"epochs: {history.epochs} ({history.seconds:.1f} s)"
              f"{', stopped early' if history.stopped_early else ''}; best epoch "
              f"{history.best_epoch}; " + ", ".join(f"{k} {v:.2f}" for k, v in tested.items()))
        print(f"run directory: {run_dir}")
    return 0


def cmd_evaluate(argv: list[str]) -> int:
    parser = Options("ppvae evaluate", "Estimate log p(x) per data point by importance "
                     "sampling with the model's guide (Burda et al. 2016), with ELBO, ESS and "
                     "PSIS k-hat, into RUN_DIR/loglik.{json,png}; for a model that is not a "
                     "density, its reconstruction error, into RUN_DIR/reconstruction.json.")
    parser.add(io.evaluate_run)
    options = parser.parse(argv, {"k": "num_samples"})
    result, seconds = io.evaluate_run(**options)
    if result is not None:
        print(result.summary())
        record = (json.loads((Path(options["run_dir"]) / "loglik.json").read_text())
                  if isinstance(result, LogLikelihood) else {})
        if record.get("active_units"):
            print("active units (Var_x E_q[z_d | x] > 0.01): " + ", ".join(
                f"{name} {u['active']} of {u['units']}"
                for name, u in record["active_units"].items()))
        print(f"({seconds:.1f} s; files in the run directory)")
    return 0


def cmd_figure(name: str, argv: list[str]) -> int:
    parser = Options(f"ppvae {name}", f"Draw the {FIGURES[name]} figure of a trained model.")
    parser.add(io.figure_run, skip={"figure"})
    print(io.figure_run(figure=FIGURES[name], **parser.parse(argv, {"max_points": "num"})))
    return 0


def cmd_models(argv: list[str]) -> int:
    if argv:
        raise OptionError("ppvae models takes no options")
    print("| model | class | training plan | what it is | paper |\n| --- | --- | --- | --- | --- |")
    for e in REGISTRY.values():
        cells = (e.name, e.cls.__name__, e.plan, e.summary, e.paper)
        print("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return 0


def cmd_experiment(name: str, argv: list[str]) -> int:
    from ppvae import experiments

    run, settings = {"ssl": (experiments.run_ssl, experiments.SSLSettings),
                     "cvae": (experiments.run_cvae, experiments.CVAESettings)}[name]
    doc = sys.modules[run.__module__].__doc__.split("\n\n")[0]
    parser = Options(f"ppvae {name}", f"{COMMANDS[name][0]}: {doc}")
    parser.parser.add_argument("--out", type=Path, help="results directory; a directory of "
                               "the same settings is resumed (default: new under runs/)")
    parser.add(run, skip={"out_dir"}, kwargs=settings)
    o = parser.parse(argv, {"k": "num_samples"})
    out = o.pop("out") or io.new_run_dir(f"{name}-{o['dataset']}")
    try:
        run(out, **o)
    except KeyboardInterrupt:
        print(f"ppvae: interrupted; the same command with --out {out} continues it",
              file=sys.stderr)
        return 130
    print((Path(out) / f"{name}_results.md").read_text(), end="")
    print(f"results in {out}")
    return 0


FIGURES = {"sample": "samples", "reconstruct": "reconstructions", "latent-map": "latent_map"}
COMMANDS: dict[str, tuple[str, Callable[[list[str]], int] | None]] = {
    "train": ("train a model and write a run directory", cmd_train),
    "evaluate": ("importance-weighted log-likelihood of a trained model", cmd_evaluate),
    "sample": ("draw samples of a trained model (samples.png)", None),
    "reconstruct": ("reconstruct test images (reconstructions.png)", None),
    "latent-map": ("map test images into the latent space (latent_map.png)", None),
    "models": ("list the registered models", cmd_models),
    "ssl": ("semi-supervised classification over label counts and seeds", None),
    "cvae": ("image completion: CVAE against a deterministic network", None)}


def usage() -> str:
    return ("usage: ppvae [--version] COMMAND [options]   (ppvae COMMAND --help)\n\n"
            "Variational autoencoders as Pyro model/guide pairs.\n\ncommands:\n"
            + "".join(f"  {k:12s} {v[0]}\n" for k, v in COMMANDS.items()))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ppvae`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "--version"):
        print(f"ppvae {__version__}" if argv[:1] == ["--version"] else usage())
        return 2 if not argv else 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"ppvae: error: unknown command {command!r}\n{usage()}", file=sys.stderr)
        return 2
    handler = COMMANDS[command][1] or (
        (lambda a: cmd_figure(command, a)) if command in FIGURES
        else (lambda a: cmd_experiment(command, a)))
    try:
        return _run(handler, rest)
    except Exception as e:
        if _process_label():  # which process failed, above its traceback
            print(f"ppvae: error{_process_label()}: {type(e).__name__}: {e}; the other "
                  "processes stop with it", file=sys.stderr)
        raise


def _process_label() -> str:
    """Which process this is, in a run on several processes ("" in a single one)."""
    if "torch.distributed" not in sys.modules:
        return ""
    import torch.distributed as dist

    if not dist.is_initialized() or dist.get_world_size() == 1:
        return ""
    return f" in process {dist.get_rank()} of {dist.get_world_size()}"


def _run(handler: Callable[[list[str]], int], argv: list[str]) -> int:
    """Run a command; user errors become one line and an exit status."""
    try:
        return handler(argv)
    except SystemExit as e:  # --help and --print_config end the command here
        return e.code if isinstance(e.code, int) else 0
    except ValueError as e:  # OptionError, DataError, ModelFileError, bad data
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
