"""``ppvae.fit``: train any ppvae model with Lightning."""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Iterator

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from torch import Tensor

from ppvae.data import Dataset, LabelSplit, label_split
from ppvae.models import LatentVariableModel
from ppvae.train.batches import EpochBatches, Groups, MixedBatches, Shard
from ppvae.train.distributed import AtomicCheckpointIO, ddp_strategy
from ppvae.train.history import History, HistoryCallback
from ppvae.train.module import SVIModule, TrainingDiverged

TrainData = Dataset | Tensor | np.ndarray | Sequence[Tensor | np.ndarray]

#: Batches per Lightning step in one process (:class:`ppvae.train.batches.Groups`,
#: lazy: each batch is made when its step starts); data-parallel runs take one.
BATCHES_PER_STEP = 32


def _split_data(
    model: LatentVariableModel, data: TrainData
) -> tuple[Tensor, Tensor | None, bool]:
    """Validated (train x, validation x or None, dynamic binarization?)."""
    if isinstance(data, Dataset):
        dynamic = data.binarize == "dynamic"
        train = model.prepare(data.train.x, name="training data",
                              support="unit" if dynamic else None)
        val = model.prepare(data.val.x, name="validation data") if len(data.val) else None
        return train, val, dynamic
    if isinstance(data, (list, tuple)):
        if len(data) != 2:
            raise ValueError("data must be a Dataset, a tensor x, or a pair (x_train, x_val)")
        return (model.prepare(data[0], name="training data"),
                model.prepare(data[1], name="validation data"), False)
    return model.prepare(data, name="training data"), None, False


def _batches(model: LatentVariableModel, data: TrainData, labels: LabelSplit | int | None,
             *, batch_size: int, labelled_per_batch: int | None, val_batch_size: int,
             seed: int, epoch: Callable[[], int], shard: Shard
             ) -> tuple[Iterable, Iterable | None]:
    """Validated training and validation batches for ``model`` (this
    process's slices of them under data parallelism)."""
    if getattr(model, "conditional", False):
        if labels is not None:
            raise ValueError(f"labels= is for semi-supervised models, not {type(model).__name__}")
        return _conditional_batches(model, data, batch_size=batch_size,
                                    val_batch_size=val_batch_size, seed=seed, epoch=epoch,
                                    shard=shard)
    if not getattr(model, "semi_supervised", False):
        if labels is not None:
            raise ValueError(f"labels= is for semi-supervised models, not {type(model).__name__}")
        train_x, val_x, dynamic = _split_data(model, data)
        scale = data.train.scale if isinstance(data, Dataset) else None
        train = EpochBatches(train_x, batch_size=batch_size, shuffle=True,
                             dynamic_binarization=dynamic, noise_scale=_on(scale, train_x),
                             seed=seed, epoch=epoch, shard=shard)
        if val_x is None:
            return train, None
        return train, EpochBatches(val_x, batch_size=val_batch_size, shard=shard)
    if not isinstance(data, Dataset) or labels is None:
        raise ValueError(f"{type(model).__name__} trains on a Dataset with labels=N (the number "
                         "of labelled training points) or labels=label_split(...)")
    if isinstance(labels, int):
        labels = label_split(data.train, labels, data.num_classes, seed)
    dynamic = data.binarize == "dynamic"
    support = "unit" if dynamic else None
    x_l = model.prepare(labels.labelled.x, name="labelled data", support=support)
    y_l = model.prepare_labels(labels.labelled.y, len(x_l), name="labels")
    x_u = model.prepare(labels.unlabelled.x, name="unlabelled data", support=support)
    noise_scale = (_on(labels.labelled.scale, x_l), _on(labels.unlabelled.scale, x_u))
    train = MixedBatches((x_l, y_l), x_u, batch_size=batch_size,
                         labelled_per_batch=labelled_per_batch or max(1, batch_size // 10),
                         dynamic_binarization=dynamic, noise_scale=noise_scale, seed=seed,
                         epoch=epoch, shard=shard)
    if not len(data.val):
        return train, None
    val_x = model.prepare(data.val.x, name="validation data")
    val_y = model.prepare_labels(data.val.y, len(val_x), name="validation labels")
    return train, EpochBatches(val_x, val_y, batch_size=val_batch_size, shard=shard)


def _on(scale: Tensor | None, x: Tensor) -> Tensor | None:
    """The noise scales of a split (:attr:`ppvae.data.Split.scale`) on x's device."""
    return None if scale is None else scale.to(device=x.device, dtype=x.dtype)


class _Conditioned:
    """Batches ``(x, y)`` turned into ``model.condition_batch(x, y)`` = ``(x, c)``."""

    def __init__(self, model: LatentVariableModel, batches: EpochBatches) -> None:
        self.model = model
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        return (self.model.condition_batch(x, y) for x, y in self.batches)


def _conditional_batches(model: LatentVariableModel, data: TrainData, *, batch_size: int,
                         val_batch_size: int, seed: int, epoch: Callable[[], int], shard: Shard
                         ) -> tuple[Iterable, Iterable | None]:
    """Batches ``(x, c)`` of a conditional model (``model.conditional``) from a
    Dataset: c is made from each batch after dynamic binarization, so a
    partial image shows the pixels of its own x."""
    if not isinstance(data, Dataset):
        raise ValueError(f"{type(model).__name__} trains on a Dataset: its labels or images "
                         "give the conditions")
    dynamic = data.binarize == "dynamic"
    train_x = model.prepare(data.train.x, name="training data", support="unit" if dynamic else None)
    train_y = data.train.y.to(train_x.device)
    model.condition_from(train_x, train_y)  # bad labels fail here, before training
    train = EpochBatches(train_x, train_y, batch_size=batch_size, shuffle=True,
                         dynamic_binarization=dynamic, noise_scale=_on(data.train.scale, train_x),
                         seed=seed, epoch=epoch, shard=shard)
    if not len(data.val):
        return _Conditioned(model, train), None
    val_x = model.prepare(data.val.x, name="validation data")
    val = EpochBatches(val_x, data.val.y.to(val_x.device), batch_size=val_batch_size, shard=shard)
    return _Conditioned(model, train), _Conditioned(model, val)


@contextmanager
def _quiet_lightning() -> Iterator[None]:
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
    model: LatentVariableModel,
    data: TrainData,
    *,
    epochs: int = 50,
    max_minutes: float | None = None,
    batch_size: int = 128,
    lr: float = 1e-3,
    objective: str = "elbo",
    num_particles: int = 1,
    dreg: bool = False,
    labels: LabelSplit | int | None = None,
    labelled_per_batch: int | None = None,
    alpha: float = 50.0,
    labelled_weight: float | str = 1.0,
    kl_warmup_epochs: float = 0.0,
    patience: int | None = None,
    seed: int = 0,
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
    restore_best: bool = True,
    progress: bool = True,
    accelerator: str = "cpu",
    devices: int | str = 1,
    num_nodes: int = 1,
    val_batch_size: int = 1024,
) -> History:
    """Train ``model`` by stochastic variational inference and return its history.

    Maximizes the ELBO (beta-weighted for a beta-VAE) with Adam on mini-batches;
    each epoch reports the training objective and the validation ELBO per data
    point (nats).

    Args:
        model: a ppvae model (e.g. :class:`ppvae.models.VAE`).
        data: a :class:`ppvae.data.Dataset` (its train/val splits; dynamic
            binarization re-draws the training pixels every epoch), a tensor of
            training data, or a pair ``(x_train, x_val)``. A conditional model
            (e.g. :class:`ppvae.models.CVAE`) takes a Dataset and trains on
            ``(x, c)`` with c = ``model.condition_from(x, y)``.
        epochs: maximum number of epochs.
        max_minutes: stop after this much training time (None: no limit).
        batch_size: data points per step, over all processes together: under
            data parallelism each of the W processes takes about
            batch_size / W of them, so a run gives the same steps (up to the
            Monte Carlo draws of z) on any number of processes.
        lr: Adam learning rate.
        objective: ``"elbo"`` (Monte Carlo KL), ``"elbo-analytic"`` (closed-form
            KL) or ``"iwae"`` (the per-datapoint importance-weighted bound of
            Burda et al. 2016 with K = ``num_particles``).
        num_particles: samples of z per data point per step.
        dreg: with ``"iwae"``, doubly-reparameterized gradients for the guide
            (Tucker et al. 2019).
        labels: for a semi-supervised model: how many training labels to keep
            (balanced over classes, chosen by ``seed``) or a
            :class:`ppvae.data.LabelSplit`; the other training points are
            unlabelled.
        labelled_per_batch: labelled points in each batch of a semi-supervised
            model, beside ``batch_size`` unlabelled ones (default batch_size // 10).
        alpha: weight of the classification term of a semi-supervised model,
            per labelled point.
        labelled_weight: weight of a labelled point against an unlabelled one
            in the batches of a semi-supervised model: a number, or
            ``"dataset"`` for (N_l / n_l) / (N_u / n_u) (N_l labelled and N_u
            unlabelled training points, n_l and n_u of them per batch), with
            which every training image counts once per epoch, as in the
            objective of Kingma et al. (2014) summed over the training set;
            with 1 the labelled points, seen in every batch, count more (see
            :mod:`ppvae.infer.semisupervised`).
        kl_warmup_epochs: epochs over which the KL weight rises linearly to beta.
        patience: stop after this many epochs without a better validation ELBO
            (None: no early stopping).
        seed: seeds initialization-independent randomness: batch order,
            binarization and the sampling of z.
        out_dir: where to write checkpoints (``checkpoints/``, one per epoch
            plus ``last.ckpt``) and CSV/TensorBoard logs (``logs/``); None keeps
            everything in memory.
        resume: continue from ``out_dir/checkpoints/last.ckpt`` if it exists.
        restore_best: end with the weights of the epoch with the best
            validation ELBO.
        progress: show a progress bar.
        accelerator, devices: passed to :class:`lightning.Trainer`.
        num_nodes: machines; with ``devices * num_nodes > 1`` training is
            data-parallel (Lightning's DDP; see :mod:`ppvae.train.distributed`
            for how the processes start). Every process returns the same
            history; ``history.rank`` tells the main process (0), which alone
            writes checkpoints and logs.
        val_batch_size: batch size for the validation ELBO (over all processes).

    Raises:
        ValueError: bad data (shape, NaN/inf, outside the likelihood's support).
        TrainingDiverged: the loss became NaN/inf (the last epoch's checkpoint,
            if any, is intact).
        RuntimeError: data-parallel training asked for from an interactive session.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    if objective == "iwae" and (model.beta != 1 or kl_warmup_epochs > 0):
        raise ValueError("objective='iwae' bounds log p(x): it takes no beta != 1 or KL warm-up")
    if resume and out_dir is None:
        raise ValueError("resume=True needs the out_dir of the run to resume")
    labelled_weight = check_labelled_weight(labelled_weight)
    trainer: L.Trainer | None = None
    train_batches, val_batches = _batches(
        model, data, labels, batch_size=batch_size, labelled_per_batch=labelled_per_batch,
        val_batch_size=val_batch_size, seed=seed, epoch=lambda: trainer.current_epoch,
        shard=lambda: (trainer.global_rank, trainer.world_size))
    L.seed_everything(seed, verbose=False)
    module = SVIModule(model, objective=objective, num_particles=num_particles, dreg=dreg,
                       alpha=alpha, labelled_weight=_labelled_weight(labelled_weight, train_batches),
                       lr=lr, kl_warmup_epochs=kl_warmup_epochs, seed=seed)
    history_cb = HistoryCallback()
    early = EarlyStopping(monitor="val_elbo", mode="max", patience=patience or 0)
    use_early = patience is not None and val_batches is not None
    callbacks: list[L.Callback] = [history_cb] + ([early] if use_early else [])
    out_dir = Path(out_dir) if out_dir is not None else None
    loggers = _writers(out_dir, callbacks) if out_dir is not None else []
    # "auto" leaves the strategy to Lightning (one device on a CPU)
    parallel = num_nodes != 1 or devices not in (1, "1", "auto")
    with _quiet_lightning():
        trainer = L.Trainer(  # the batches read its epoch and rank through the closures above
            max_epochs=epochs, max_time=None if max_minutes is None else timedelta(minutes=max_minutes),
            accelerator=accelerator, devices=devices, num_nodes=num_nodes,
            strategy=ddp_strategy() if parallel else "auto", plugins=[AtomicCheckpointIO()],
            callbacks=callbacks, logger=loggers or False,
            enable_checkpointing=out_dir is not None, enable_progress_bar=progress,
            enable_model_summary=False, num_sanity_val_steps=0,
            default_root_dir=out_dir, log_every_n_steps=50,
        )
        last = out_dir / "checkpoints" / "last.ckpt" if resume else None
        start = time.perf_counter()
        # DDP synchronizes gradients once per Lightning step: one batch each there
        groups = Groups(train_batches, lambda: BATCHES_PER_STEP if trainer.world_size == 1 else 1)
        trainer.fit(module, train_dataloaders=groups, val_dataloaders=val_batches,
                    ckpt_path=str(last) if last is not None and last.exists() else None)
    history = history_cb.history
    history.seconds += time.perf_counter() - start
    history.stopped_early = use_early and early.stopped_epoch > 0
    history.checkpoint_dir = str(out_dir / "checkpoints") if out_dir is not None else None
    history.rank, history.world_size = trainer.global_rank, trainer.world_size
    if restore_best and history_cb.best_state is not None:
        model.load_state_dict(history_cb.best_state)
    return history


def check_labelled_weight(setting: float | str) -> float | str:
    """``fit``'s ``labelled_weight``: ``"dataset"`` or a positive number (as a
    float); raises ``ValueError`` otherwise."""
    if setting == "dataset":
        return setting
    if isinstance(setting, str) or not setting > 0:
        raise ValueError(f"labelled_weight must be a positive number or 'dataset', "
                         f"got {setting!r}")
    return float(setting)


def _labelled_weight(setting: float | str, batches: Iterable) -> float:
    """The weight of a labelled point in semi-supervised batches (``fit``'s
    ``labelled_weight``)."""
    if setting == "dataset":
        if not isinstance(batches, MixedBatches):
            return 1.0  # not semi-supervised: no labelled points to weigh
        n_l, n_u = batches.labelled_per_batch, batches.unlabelled.batch_size
        return (len(batches.labelled[0]) / n_l) / (len(batches.unlabelled.tensors[0]) / n_u)
    return setting


def _writers(out_dir: Path, callbacks: list[L.Callback]) -> list:
    """Add a per-epoch checkpoint callback to ``callbacks``; return CSV and
    TensorBoard loggers under ``out_dir/logs/version_N``, a new N per session
    so that a resumed run never overwrites earlier logs."""
    callbacks.append(ModelCheckpoint(dirpath=out_dir / "checkpoints", filename="epoch{epoch:03d}",
                                     auto_insert_metric_name=False, save_last=True,
                                     save_top_k=-1, save_on_train_epoch_end=True))
    version = len(list((out_dir / "logs").glob("version_*")))
    return [CSVLogger(out_dir, name="logs", version=version),
            TensorBoardLogger(out_dir, name="logs", version=version, default_hp_metric=False)]


__all__ = ["History", "TrainingDiverged", "fit"]
