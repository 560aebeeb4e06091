"""Safe save and load of trained models, and of run directories.

A saved model is a directory with two files:

- ``model.safetensors``: the weights (and buffers) in the safetensors format,
  which holds raw tensors only, so loading never unpickles anything;
- ``model.json``: ``{"format": "ppvae-model", "format_version": 1,
  "ppvae_version": ..., "class": "VAE", "model": "vae" (its registry name,
  :mod:`ppvae.models.registry`), "config": {...constructor arguments...},
  "weights_sha256": ...}``.

Both are written atomically (temporary file, fsync, rename), so a crash while
saving leaves the previous files intact. Loading checks the format, the
version, the checksum and every tensor's name and shape, and says what is wrong.

A run directory (``ppvae train``) holds ``config.json`` (the model's registry
name and every setting), ``model/`` (a saved model), ``metrics.json``,
``checkpoints/`` and ``logs/``. :func:`prepare_run` never lets a new run land
on an existing one by accident.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Literal

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from ppvae import __version__
from ppvae.atomic import atomic_write
from ppvae.data import DataOptions
from ppvae.models import REGISTRY, LatentVariableModel
from ppvae.models.registry import entry, entry_of

FORMAT = "ppvae-model"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "model.json"


class ModelFileError(ValueError):
    """A saved model is missing, corrupt, or does not match its config."""


def save(model: LatentVariableModel, path: str | os.PathLike) -> Path:
    """Save ``model`` into the directory ``path`` (created if needed).

    Returns the directory. Load it back with :func:`load`.
    """
    registered = entry_of(type(model))
    if registered is None:
        raise TypeError(f"can only save registered models ({sorted(REGISTRY)}), got "
                        f"{type(model).__name__}: ppvae.models.register it first")
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    weights = save_safetensors(state, metadata={"format": FORMAT})
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "ppvae_version": __version__,
        "class": type(model).__name__,
        "model": registered.name,
        "config": model.config,
        "weights_sha256": hashlib.sha256(weights).hexdigest(),
    }
    atomic_write(path / WEIGHTS_FILE, weights)
    atomic_write(path / CONFIG_FILE, (json.dumps(meta, indent=2) + "\n").encode())
    return path


def _read_meta(path: Path) -> dict[str, Any]:
    config_path = path / CONFIG_FILE
    if not config_path.is_file():
        raise ModelFileError(
            f"no saved model at {path}: {CONFIG_FILE} is missing "
            "(ppvae.save(model, path) writes a directory with model.json and model.safetensors)"
        )
    try:
        meta = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelFileError(f"{config_path} is not valid JSON ({e}); the file is corrupt") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"{config_path} is not a ppvae model file")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFileError(
            f"{config_path} has format version {version!r}; this ppvae ({__version__}) reads "
            f"versions up to {FORMAT_VERSION}: upgrade ppvae to load it"
        )
    if _class(meta) is None:
        raise ModelFileError(f"{config_path} names an unknown model {meta.get('model')!r} of "
                             f"class {meta.get('class')!r} (registered: {sorted(REGISTRY)})")
    return meta


def _class(meta: dict[str, Any]) -> type | None:
    """The registered class a model file names: by its registry name and class
    (or by class alone, in files written before the registry)."""
    if "model" in meta:
        found = REGISTRY.get(meta["model"])
        return found.cls if found is not None and found.cls.__name__ == meta.get("class") else None
    return next((e.cls for e in REGISTRY.values() if e.cls.__name__ == meta.get("class")), None)


def _read_weights(path: Path, meta: dict[str, Any]) -> dict[str, torch.Tensor]:
    weights_path = path / WEIGHTS_FILE
    if not weights_path.is_file():
        raise ModelFileError(f"{weights_path} is missing")
    data = weights_path.read_bytes()
    if hashlib.sha256(data).hexdigest() != meta.get("weights_sha256"):
        raise ModelFileError(
            f"{weights_path} does not match the checksum in {CONFIG_FILE}: "
            "the file is corrupt or was replaced"
        )
    try:
        return load_safetensors(data)
    except SafetensorError as e:
        raise ModelFileError(f"{weights_path} is not a valid safetensors file ({e})") from None


def load(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> LatentVariableModel:
    """Load a model saved with :func:`save` (weights only; nothing is unpickled)."""
    path = Path(path)
    meta = _read_meta(path)
    state = _read_weights(path, meta)
    try:
        model = _class(meta)(**meta["config"])
    except (TypeError, ValueError) as e:
        raise ModelFileError(f"{path / CONFIG_FILE} has an invalid config: {e}") from None
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    if expected != found:
        missing = sorted(set(expected) - set(found))
        extra = sorted(set(found) - set(expected))
        shapes = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
        raise ModelFileError(
            f"the weights in {path} do not fit the {meta['class']} described by its config: "
            f"missing {missing[:5]}, unexpected {extra[:5]}, wrong shapes "
            f"{[(k, found[k], expected[k]) for k in shapes[:5]]}"
        )
    model.load_state_dict(state)
    return model.to(map_location).eval()


# ------------------------------------------------------------- run directories
RUN_CONFIG = "config.json"
#: the keys of a run's config that choose its data set (with ``seed``)
DATA_KEYS = tuple(f.name for f in dataclasses.fields(DataOptions))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    atomic_write(Path(path), (json.dumps(obj, indent=2) + "\n").encode())


def new_run_dir(name: str, root: str | os.PathLike = "runs") -> Path:
    """A fresh path ``root/<date-time>-<name>`` (with ``-2``, ``-3``, ...
    appended if taken); nothing is created."""
    base = Path(root) / f"{time.strftime('%Y%m%d-%H%M%S')}-{name}"
    path, i = base, 1
    while path.exists():
        i += 1
        path = base.with_name(f"{base.name}-{i}")
    return path


def open_run(run_dir: str | os.PathLike, need_model: bool = True) -> Path:
    """``run_dir`` if it is a ppvae run (with its saved model when
    ``need_model``); ``ValueError`` saying what is missing otherwise."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"run directory {run_dir} does not exist")
    if not (run_dir / RUN_CONFIG).is_file():
        raise ValueError(f"{run_dir} is not a ppvae run directory (no {RUN_CONFIG})")
    if need_model and not (run_dir / "model").is_dir():
        raise ValueError(f"{run_dir} is not a finished ppvae run (no model/: its training "
                         f"did not end; `ppvae train --resume {run_dir}` continues it)")
    return run_dir


def run_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The settings a run was trained with (its ``config.json``)."""
    path = Path(run_dir) / RUN_CONFIG
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} cannot be read ({e})") from None
    if not isinstance(config, dict) or "model" not in config:
        raise ValueError(f"{path} is not the config of a ppvae run")
    return config


def run_data(config: dict[str, Any]) -> Any:
    """The data set of a run's config: the same splits and binarization."""
    options = DataOptions(**{k: config[k] for k in DATA_KEYS if k in config})
    return options.load(config.get("seed", 0), config.get("likelihood"))


def train_run(run_dir: str | os.PathLike, config: dict[str, Any], *, resume: bool = False,
              overwrite: bool = False, progress: bool = True) -> tuple[Any, Any, dict[str, float]]:
    """Train the registered model ``config["model"]`` into ``run_dir``.

    ``config`` holds the keys of :data:`DATA_KEYS`, the model's constructor
    arguments, and the options of :func:`ppvae.fit` and of the model's
    training plan; it is written as ``run_dir/config.json``. The run
    directory also gets the model (``model/``), ``metrics.json`` (the
    history and the plan's metrics on the test split, e.g. the test ELBO with
    10 draws of z per image), checkpoints, logs,
    ``elbo.png`` and the model's figures. ``resume`` continues the run from
    its newest intact checkpoint; ``overwrite`` replaces the run in ``run_dir``
    (check both first with :func:`prepare_run`). Nothing is written before
    the data and the model are built.

    Returns:
        The trained model, its :class:`ppvae.train.History` and the test
        metrics (empty in the processes other than the main one of a
        data-parallel run).
    """
    import inspect

    import pyro

    from ppvae.plots import draw, plot_elbo_curves
    from ppvae.train import evaluate, fit, make_plan
    from ppvae.train.distributed import is_main_process

    run_dir, model = Path(run_dir), entry(config["model"])
    checkpoint = resume_checkpoint(run_dir) if resume else False
    data = run_data(config)
    pyro.set_rng_seed(config.get("seed", 0))
    net = model.build(data, **{k: v for k, v in config.items() if k in model.arguments})
    options = {k: v for k, v in config.items()
               if k not in {"model", *DATA_KEYS, *model.arguments}}
    plan_options = {k: v for k, v in options.items() if k not in inspect.signature(fit).parameters}
    make_plan(net, **plan_options)  # a bad option of the plan fails before anything is written
    if is_main_process():  # under data parallelism every process runs this
        if overwrite:
            clear_run(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / RUN_CONFIG, config)
        print(f"ppvae {__version__}: training {model.name} on {data.name} ({len(data.train)} "
              f"train / {len(data.val)} val / {len(data.test)} test) -> {run_dir}",
              file=sys.stderr)
    history = fit(net, data, out_dir=run_dir, resume=checkpoint, progress=progress, **options)
    if history.rank != 0:
        return net, history, {}
    save(net, run_dir / "model")
    pyro.set_rng_seed(config.get("seed", 0))
    tested = evaluate(net, data, "test", draws=10, **plan_options)
    metrics = {**history.as_dict(), "epochs": history.epochs, **tested}
    write_json(run_dir / "metrics.json", metrics)
    plot_elbo_curves({**metrics, "beta": config.get("beta", 1.0)}, path=run_dir / "elbo.png")
    for name, spec in (net.figures(data) if hasattr(net, "figures") else {}).items():
        draw(spec, path=run_dir / f"{name}.png")
    return net, history, tested


def evaluate_run(run_dir: str | os.PathLike, num_samples: int = 1000,
                 split: Literal["test", "val"] = "test", max_points: int | None = None,
                 seed: int = 0, progress: bool = True, accelerator: str = "cpu",
                 devices: int = 1, num_nodes: int = 1, accel: bool = True
                 ) -> tuple[Any, float]:
    """The log-likelihood of a finished run, or its reconstruction error.

    For a density, estimates log p(x) per data point by importance sampling
    with the model's guide (:func:`ppvae.infer.log_likelihood`: the IW
    estimate with ELBO, ESS and PSIS k-hat) and writes ``loglik.json`` (with
    the split, seconds, processes and the active units of each continuous
    latent on the same points, :func:`ppvae.infer.active_units`, as
    ``{site: {"active": n, "units": d}}``) and ``loglik.png`` into the run. For a
    model that is not a density (``density = False``: a point-mass guide),
    reports the reconstruction error and code statistics instead
    (:func:`ppvae.infer.reconstruction_error`, in one process; ``num_samples``
    and the process options do not apply) in ``reconstruction.json``.

    Args:
        run_dir: a run directory from ppvae train.
        num_samples: importance samples K per data point.
        split: the data split.
        max_points: evaluate the first N points only.
        seed: random seed of the draws.
        progress: show a progress bar.
        accelerator: Lightning accelerator: cpu, gpu, auto.
        devices: processes per machine sharing the data points (the same result).
        num_nodes: machines (see README).
        accel: score through the model's pure-torch twin (False: through Pyro).

    Returns:
        The :class:`ppvae.infer.LogLikelihood` or
        :class:`ppvae.infer.Reconstruction` (None in the processes other than
        the main one) and the seconds it took.
    """
    from ppvae.infer import active_units, log_likelihood, reconstruction_error
    from ppvae.plots import plot_log_likelihood
    from ppvae.train.contract import is_density
    from ppvae.train.distributed import launch_processes

    if num_samples < 1:
        raise ValueError(f"num_samples must be at least 1, got {num_samples}")
    run_dir, fabric = open_run(run_dir), None  # a bad run fails before any process starts
    model, data = load_run(run_dir, seed)
    if not is_density(model):
        start = time.perf_counter()
        result = reconstruction_error(model.model, model.guide,
                                      *model.model_args(getattr(data, split), max_points))
        seconds = time.perf_counter() - start
        write_json(run_dir / "reconstruction.json", {**result.to_dict(), "split": split,
                                                     "seconds": seconds})
        return result, seconds
    if devices * num_nodes > 1:  # every process runs the rest of this function
        fabric = launch_processes(accelerator, devices, num_nodes)
        model = model.to(fabric.device)
    args = model.model_args(getattr(data, split), max_points)
    start = time.perf_counter()
    result = log_likelihood(model.model, model.guide, *args, num_samples=num_samples, seed=seed,
                            progress=progress, accel=accel, distributed=fabric is not None)
    seconds = time.perf_counter() - start
    if fabric is not None and not fabric.is_global_zero:
        return None, seconds
    found = active_units(model.guide, *args, seed=seed) if len(args[0]) > 1 else None
    units = None if found is None else {name: {"active": found.counts[name], "units": len(v)}
                                        for name, v in found.variance.items()}
    write_json(run_dir / "loglik.json", {**result.to_dict(), "split": split, "seconds": seconds,
                                         "processes": devices * num_nodes, "active_units": units})
    plot_log_likelihood(result.curve(), result.khat, elbo=result.elbo_mean,
                        path=run_dir / "loglik.png", title=f"{run_dir.name} ({split})")
    return result, seconds


def load_run(run_dir: str | os.PathLike, seed: int = 0) -> tuple[LatentVariableModel, Any]:
    """A finished run's model and data set, with Pyro's random state seeded by ``seed``."""
    import pyro

    run_dir = open_run(run_dir)
    data = run_data(run_config(run_dir))
    pyro.set_rng_seed(seed)
    return load(run_dir / "model"), data


def figure_run(run_dir: str | os.PathLike, figure: str, out: str | os.PathLike | None = None,
               num: int | None = None, seed: int = 0) -> Path:
    """A figure of a finished run: one the model offers (its ``figures``:
    ``samples``, ``reconstructions``, ``latent_map``, ...), drawn as a PNG.

    Args:
        run_dir: a run directory from ppvae train.
        figure: the figure's name.
        out: the PNG to write (default: inside RUN_DIR).
        num: images (or mapped test points) in the figure (default: the model's).
        seed: random seed of the draws.

    Returns:
        The PNG's path.
    """
    from ppvae.plots import draw

    model, data = load_run(run_dir, seed)
    figures = model.figures(data, num)
    if figure not in figures:
        raise ValueError(f"{type(model).__name__} offers no {figure} figure; it offers "
                         f"{sorted(figures)}")
    out = Path(out or Path(run_dir) / f"{figure}.png")
    draw(figures[figure], path=out)
    return out


def prepare_run(out: str | os.PathLike | None, resume: str | os.PathLike | None = None,
                overwrite: bool = False, name: str = "run") -> Path:
    """The directory of a new or resumed run, checked before any work:

    - ``resume``: that run (an ``out`` naming another directory is refused);
    - ``out`` that does not exist or is empty: it;
    - ``out`` holding a ppvae run: refused unless ``overwrite`` (then
      :func:`train_run` clears it once its own checks passed), or unless the
      run holds no work (no checkpoint, no model: it failed as it started);
    - ``out`` holding anything else: refused, ``overwrite`` or not;
    - None: :func:`new_run_dir` ``(name)``.
    """
    if resume is not None:
        resume = open_run(resume, need_model=False)
        if out is not None and Path(out).resolve() != resume.resolve():
            raise ValueError(f"--out {out} and --resume {resume} name different runs: "
                             "a resumed run stays in its directory")
        if overwrite:
            raise ValueError("--resume continues a run and --overwrite replaces it: choose one")
        return resume
    if out is None:
        return new_run_dir(name)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not (out / RUN_CONFIG).is_file():
            raise ValueError(f"--out {out} exists and is not a ppvae run directory: "
                             "choose another --out")
        work = (out / "model").exists() or any((out / "checkpoints").glob("*.ckpt"))
        if work and not overwrite:
            raise ValueError(f"--out {out} holds a run already: --resume {out} continues it, "
                             "--overwrite replaces it, or choose another --out")
    return out


def clear_run(run_dir: Path) -> None:
    """Delete the ppvae run in ``run_dir`` (checked by :func:`prepare_run`)."""
    if (run_dir / RUN_CONFIG).is_file():
        shutil.rmtree(run_dir)


def resume_checkpoint(run_dir: Path) -> Path:
    """The newest intact checkpoint of a run (:func:`ppvae.train.fit.latest_checkpoint`);
    a fallback from an unreadable newer one is said in one line on standard error."""
    from ppvae.train.fit import latest_checkpoint

    found, skipped = latest_checkpoint(run_dir / "checkpoints")
    if skipped:
        print(f"ppvae: {'; '.join(skipped)}: resuming from {found.name} instead", file=sys.stderr)
    return found
