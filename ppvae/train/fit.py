"""``ppvae.fit``: train any model with its training plan on Lightning."""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterator, Literal

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from torch import nn

from ppvae.train import contract
from ppvae.train.batches import Groups, TrainData, single_process
from ppvae.train.distributed import AtomicCheckpointIO, ddp_strategy
from ppvae.train.history import History, HistoryCallback
from ppvae.train.plans import TrainingDiverged, TrainingPlan, make_plan
from ppvae.train.schedules import SCHEDULES, LRSchedule, schedule

#: Batches per Lightning step in one process (:class:`ppvae.train.batches.Groups`,
#: lazy: each batch is made when its step starts); data-parallel runs take one.
BATCHES_PER_STEP = 32


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Silence Lightning's start-up chatter (device summaries, tips)."""
    loggers = [logging.getLogger(n) for n in (
        "lightning.pytorch", "lightning.fabric", "lightning.pytorch.utilities.rank_zero",
        "lightning.fabric.utilities.rank_zero")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            for message in (".*does not have many workers", ".*LeafSpec", ".*no `val_dataloader`",
                            ".*exists and is not empty", ".*smaller than the logging interval",
                            ".*dirpath has changed"):
                warnings.filterwarnings("ignore", message=message)
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def fit(
    model: nn.Module,
    data: TrainData,
    *,
    plan: str | type[TrainingPlan] | None = None,
    epochs: int = 400,
    max_minutes: float | None = None,
    batch_size: int = 128,
    lr: float = 1e-3,
    lr_schedule: Literal["constant", "burda", "cosine"] | Callable[[float], float] = "constant",
    patience: int | None = 30,
    seed: int = 0,
    init_output_bias: bool = False,
    out_dir: str | os.PathLike | None = None,
    keep_checkpoints: int | None = None,
    resume: bool | str | os.PathLike = False,
    restore_best: bool = True,
    progress: bool = True,
    accelerator: str = "cpu",
    devices: int | str = 1,
    num_nodes: int = 1,
    val_batch_size: int = 1024,
    accel: bool = True,
    **plan_options: Any,
) -> History:
    """Train ``model`` with its training plan and return its history.

    The plan (:mod:`ppvae.train.plans`) decides the loss, the optimizers, what
    a batch holds and what validation reports; this loop is the same for all:
    epochs of mini-batches, per-epoch metrics, checkpoints, early stopping,
    the best weights, data parallelism. Training runs in train mode and
    validation in eval mode (``nn.Module.train`` / ``eval``: a denoising
    model corrupts its guide's input in train mode only); ``model`` is left
    in eval mode, as :func:`ppvae.load` returns one.

    Args:
        model: an ``nn.Module`` with ``model``/``guide`` (a ppvae model or a
            user's own pair: :mod:`ppvae.train.contract`).
        data: a :class:`ppvae.data.Dataset` (its train/val splits; dynamic
            binarization re-draws the training pixels every epoch), a tensor of
            training data, or a pair ``(x_train, x_val)``. A conditional model
            (e.g. :class:`ppvae.models.CVAE`) takes a Dataset and trains on
            ``(x, c)`` with c made from each batch's labels or images.
        plan: the training plan: a name in :data:`ppvae.train.PLANS`
            (``"elbo"``, ``"semi-supervised"``, ``"reconstruction"``,
            ``"adversarial"``), a :class:`~ppvae.train.plans.TrainingPlan`
            subclass, or None for the model's ``default_plan`` (``"elbo"`` if
            it declares none).
        epochs: maximum number of epochs.
        max_minutes: stop after this much training time (None: no limit).
        batch_size: data points per step, over all processes together: under
            data parallelism each of the W processes takes about
            batch_size / W of them, so a run gives the same steps (up to the
            Monte Carlo draws) on any number of processes.
        lr: Adam learning rate.
        lr_schedule: the learning rate over the budget
            (:mod:`ppvae.train.schedules`): ``lr * f(p)`` in an epoch that
            starts when the fraction p of ``epochs`` or of ``max_minutes`` is
            spent: ``"constant"``, ``"burda"`` (Burda et al. 2016: 10^(-i/7)
            in stage i = 0..7 of 3^i parts of 3280), ``"cosine"``, or a
            function f of p.
        patience: stop after this many epochs without a better monitored
            validation metric (None: no early stopping; there is none without
            validation data either).
        seed: seeds initialization-independent randomness: batch order,
            binarization and the sampling of latents.
        init_output_bias: before training, set the decoder's output bias to
            the maximum-likelihood fit of the training pixels taken one at a
            time (``model.likelihood.init_from_data``: Burda et al. 2016's
            initialization). The decoder then starts from the mean image
            instead of spending its first epoch on it, while the KL term,
            even under warm-up, can pull q(z | x) into ignoring x: with a
            VampPrior, or in the top layer of a two-layer VAE
            (``benchmarks/README.md``). Needs a ppvae likelihood on an MLP
            decoder; a resumed run takes its weights from the checkpoint.
        out_dir: where to write checkpoints (``checkpoints/``, one per epoch
            plus ``last.ckpt``) and CSV/TensorBoard logs (``logs/``); None keeps
            everything in memory.
        keep_checkpoints: keep only this many newest per-epoch checkpoints
            (``last.ckpt`` always; None keeps one per epoch).
        resume: True continues from the newest intact checkpoint in
            ``out_dir/checkpoints`` (``last.ckpt``, or, if that cannot be read,
            the latest ``epochNNN.ckpt`` that can, with a warning); a path
            continues from that checkpoint.
        restore_best: end with the weights of the epoch with the best
            monitored validation metric.
        progress: show progress: a bar on a terminal, else one line per
            epoch on standard error.
        accelerator, devices: passed to :class:`lightning.Trainer`.
        num_nodes: machines; with ``devices * num_nodes > 1`` training is
            data-parallel (Lightning's DDP; see :mod:`ppvae.train.distributed`
            for how the processes start). Every process returns the same
            history; ``history.rank`` tells the main process (0), which alone
            writes checkpoints and logs.
        val_batch_size: batch size for validation (over all processes).
        accel: train ppvae's models with one latent or a chain of latents
            through their pure-torch twins (:mod:`ppvae.accel`; the same loss
            and gradients as the Pyro path, faster); False takes the Pyro
            path. A user's own pair always does.
        **plan_options: the plan's own options, e.g. ``objective``,
            ``num_particles``, ``dreg``, ``kl_warmup_epochs`` for ``"elbo"``;
            ``labels``, ``labelled_per_batch``, ``alpha``, ``labelled_weight``
            for ``"semi-supervised"`` (see each plan's docstring).

    Raises:
        ValueError: bad data (shape, NaN/inf, outside the likelihood's support)
            or settings, before any training.
        TrainingDiverged: the loss became NaN/inf (the last epoch's checkpoint,
            if any, is intact).
        RuntimeError: data-parallel training asked for from an interactive session.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    if keep_checkpoints is not None and keep_checkpoints < 1:
        raise ValueError(f"keep_checkpoints must be at least 1 (or None), got {keep_checkpoints}")
    factor = schedule(lr_schedule)
    if resume is True and out_dir is None:
        raise ValueError("resume=True needs the out_dir of the run to resume")
    checkpoint = None
    if resume:
        if resume is True:
            checkpoint, skipped = latest_checkpoint(Path(out_dir) / "checkpoints")
            if skipped:
                warnings.warn(f"{'; '.join(skipped)}: resuming from {checkpoint.name} instead",
                              stacklevel=2)
        else:
            checkpoint = intact_checkpoint(Path(resume))
    module = make_plan(model, plan, lr=lr, seed=seed, accel=accel, **plan_options)
    trainer: L.Trainer | None = None
    train_batches, val_batches = module.batches(
        data, batch_size=batch_size, val_batch_size=val_batch_size, seed=seed,
        epoch=lambda: trainer.current_epoch, shard=lambda: (trainer.global_rank, trainer.world_size))
    if init_output_bias:
        if not callable(getattr(train_batches, "inputs", None)):
            raise ValueError(f"init_output_bias needs the training data: the batches of "
                             f"{type(module).__name__} do not offer inputs()")
        contract.init_output_bias(model, train_batches.inputs())
    L.seed_everything(seed, verbose=False)
    history_cb = HistoryCallback(module.monitor)
    use_early = patience is not None and val_batches is not None and module.monitor is not None
    callbacks: list[L.Callback] = [history_cb]
    if factor is not SCHEDULES["constant"]:
        callbacks.append(LRSchedule(factor))
    bar = progress and sys.stderr.isatty()
    if progress and not bar:
        callbacks.append(EpochLines())
    if use_early:
        early = EarlyStopping(monitor=module.monitor[0], mode=module.monitor[1],
                              patience=patience)
        callbacks.append(early)
    out_dir = Path(out_dir) if out_dir is not None else None
    loggers = _writers(out_dir, callbacks, keep_checkpoints) if out_dir is not None else []
    # "auto" leaves the strategy to Lightning (one device on a CPU)
    parallel = num_nodes != 1 or devices not in (1, "1", "auto")
    with quiet_lightning():
        trainer = L.Trainer(  # the batches read its epoch and rank through the closures above
            max_epochs=epochs, max_time=None if max_minutes is None else timedelta(minutes=max_minutes),
            accelerator=accelerator, devices=devices, num_nodes=num_nodes,
            strategy=ddp_strategy() if parallel else "auto", plugins=[AtomicCheckpointIO()],
            callbacks=callbacks, logger=loggers or False,
            enable_checkpointing=out_dir is not None, enable_progress_bar=bar,
            enable_model_summary=False, num_sanity_val_steps=0,
            default_root_dir=out_dir, log_every_n_steps=50,
        )
        start = time.perf_counter()
        # DDP synchronizes gradients once per Lightning step: one batch each there
        groups = Groups(train_batches, lambda: BATCHES_PER_STEP if trainer.world_size == 1 else 1)
        model.train()  # as a fresh module is; a model fit before was left in eval mode
        trainer.fit(module, train_dataloaders=groups, val_dataloaders=val_batches,
                    ckpt_path=None if checkpoint is None else str(checkpoint))
    history = history_cb.history
    history.seconds += time.perf_counter() - start
    history.stopped_early = use_early and early.stopped_epoch > 0
    history.checkpoint_dir = str(out_dir / "checkpoints") if out_dir is not None else None
    history.rank, history.world_size = trainer.global_rank, trainer.world_size
    if restore_best and history_cb.best_state is not None:
        model.load_state_dict(history_cb.best_state)
    model.eval()
    return history


@torch.no_grad()
def evaluate(model: nn.Module, data: Any, split: str = "test", *,
             plan: str | type[TrainingPlan] | None = None, batch_size: int = 1024,
             draws: int = 1, **plan_options: Any) -> dict[str, float]:
    """The validation metrics of ``model``'s training plan on a split of a
    :class:`ppvae.data.Dataset`, averaged over its data points and over
    ``draws`` passes (for Monte Carlo metrics, ``draws`` draws per point), named
    ``<split>_*`` (e.g. ``test_elbo``); ``plan_options`` as for :func:`fit`.
    Scores in eval mode, as validation does, and leaves ``model`` in it."""
    module = make_plan(model.eval(), plan, **plan_options)
    points = getattr(data, split)
    _, batches = module.batches(dataclasses.replace(data, val=points), batch_size=batch_size,
                                val_batch_size=batch_size, seed=0, epoch=lambda: 0,
                                shard=single_process)
    totals: dict[str, float] = {}
    for _ in range(draws):
        for batch in batches:
            for k, v in module.validate(batch).items():
                totals[k] = totals.get(k, 0.0) + float(v) * module.num_points(batch)
    return {f"{split}_{k.removeprefix('val_')}": v / (draws * len(points))
            for k, v in totals.items()}


def intact_checkpoint(path: Path) -> Path:
    """``path`` if it holds a readable Lightning checkpoint; ``ValueError``
    saying what is wrong otherwise."""
    if not path.is_file():
        raise ValueError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # a truncated or foreign file: whatever torch raises
        raise ValueError(f"checkpoint {path} cannot be read ({type(e).__name__}: "
                         f"{str(e).split('. ')[0].splitlines()[0] if str(e) else ''})") from None
    if not isinstance(state, dict) or "state_dict" not in state or "epoch" not in state:
        raise ValueError(f"{path} is not a Lightning checkpoint of a ppvae run")
    return path


def latest_checkpoint(directory: Path) -> tuple[Path, list[str]]:
    """The newest intact checkpoint of a run (``last.ckpt``, or the latest
    ``epochNNN.ckpt`` that can be read) and what is wrong with the newer ones
    skipped. ``ValueError`` if there is none."""
    candidates = [directory / "last.ckpt", *sorted(directory.glob("epoch*.ckpt"), reverse=True)]
    unreadable = []
    for path in candidates:
        if path.is_file():
            try:
                return intact_checkpoint(path), unreadable
            except ValueError as e:
                unreadable.append(str(e))
    if unreadable:
        raise ValueError(f"no intact checkpoint in {directory}: {'; '.join(unreadable)}")
    raise ValueError(f"{directory} holds no checkpoint to resume from (the run stopped before "
                     "its first epoch ended)")


class EpochLines(L.Callback):
    """Progress without a terminal: one line per epoch on standard error, with
    the epoch's training and validation metrics and its time."""

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_rank != 0:
            return
        metrics = {**pl_module.epoch_train_metrics(),
                   **{k: float(v) for k, v in trainer.callback_metrics.items()
                      if k.startswith("val_")}}
        values = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items())
        print(f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}: {values} "
              f"({time.perf_counter() - self._start:.1f} s)", file=sys.stderr, flush=True)


def _writers(out_dir: Path, callbacks: list[L.Callback], keep: int | None) -> list:
    """Add a per-epoch checkpoint callback to ``callbacks`` (the ``keep``
    newest epochs' files, all if None); return CSV and TensorBoard loggers
    under ``out_dir/logs/version_N``, a new N per session so that a resumed
    run never overwrites earlier logs."""
    newest = {} if keep is None else {"monitor": "step", "mode": "max"}
    callbacks.append(ModelCheckpoint(dirpath=out_dir / "checkpoints", filename="epoch{epoch:03d}",
                                     auto_insert_metric_name=False, save_last=True,
                                     save_top_k=-1 if keep is None else keep,
                                     save_on_train_epoch_end=True, **newest))
    version = len(list((out_dir / "logs").glob("version_*")))
    return [CSVLogger(out_dir, name="logs", version=version),
            TensorBoardLogger(out_dir, name="logs", version=version, default_hp_metric=False)]


__all__ = ["History", "TrainingDiverged", "evaluate", "fit"]
