"""A Lightning module around a Pyro loss.

The Pyro model/guide pair stays untouched: each training step evaluates
``loss.differentiable_loss(model.model, model.guide, *batch, beta=w)`` (a
differentiable negative ELBO, summed over the batch) and Lightning does the
rest (logging, checkpoints, progress bar, devices). Each Lightning step takes
a group of consecutive batches (:class:`ppvae.train.batches.Groups`) and makes
one Adam step per batch (Lightning's manual optimization), so that its
per-step work is paid once per group; one batch per group gives ordinary
one-batch steps. Steps inside a group skip Lightning's backward and
optimizer hooks (Lightning still counts every step); the group's last step
runs them.

Logged metrics, per data point in nats:
- ``train_elbo``: the training objective: the ELBO with the KL term weighted by
  beta times the warm-up factor (equal to the ELBO once warm-up is over and
  beta = 1), or the IWAE bound for ``objective="iwae"``;
- ``val_elbo``: the ELBO itself (beta = 1) on the validation data.

Under data parallelism (DDP) each process holds a slice of every global batch
(:mod:`ppvae.train.batches`). Process r's loss, the mean over its n_r points,
is scaled by W n_r / N (W processes, N = sum of the n_r, from one scalar
all-reduce per step); DDP averages the W gradients, so every step follows the
gradient of the loss per data point over the whole global batch, exactly as a
single process with the same batch would, whatever the slices' sizes. The
same all-reduce tells every process whether any loss was NaN/inf, so all stop
together. Each process draws z from its own stream, seeded by (seed, epoch,
rank). Validation metrics are weighted by points and summed over processes
(Lightning's ``sync_dist``), i.e. the ELBO per point over the whole
validation set.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import lightning as L
import pyro
import torch
from pyro.infer.util import is_validation_enabled
from torch import Tensor

from ppvae.infer import training_loss
from ppvae.models import LatentVariableModel
from ppvae.train.batches import epoch_seed


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; parameters were not updated with it."""


class SVIModule(L.LightningModule):
    """Train ``model`` by maximizing its (beta-)ELBO with Adam.

    Args:
        model: a ppvae model whose ``model``/``guide`` take ``(*batch, beta=...)``.
        objective: ``"elbo"``, ``"elbo-analytic"`` or ``"iwae"`` (see
            :func:`ppvae.infer.training_loss`); validation always reports the
            ELBO (and the classification accuracy for semi-supervised models).
        num_particles: samples of z per data point in each step.
        dreg: doubly-reparameterized guide gradients (``"iwae"`` only).
        alpha: weight of the classification term of semi-supervised models.
        labelled_weight: weight of a labelled point against an unlabelled one
            in semi-supervised batches
            (:class:`ppvae.infer.semisupervised.SemiSupervisedELBO`).
        lr: Adam learning rate.
        kl_warmup_epochs: linearly raise the KL weight from 0 to beta over this
            many epochs (Bowman et al. 2016; Sønderby et al. 2016); 0 disables.
        seed: base seed; the sampling stream is reseeded from (seed, epoch)
            each epoch so that resumed runs match uninterrupted ones.
    """

    def __init__(
        self,
        model: LatentVariableModel,
        *,
        objective: str = "elbo",
        num_particles: int = 1,
        dreg: bool = False,
        alpha: float = 50.0,
        labelled_weight: float = 1.0,
        lr: float = 1e-3,
        kl_warmup_epochs: float = 0.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False  # one Adam step per batch of a group
        self.model = model
        self.loss = training_loss(model, objective, num_particles, dreg=dreg, alpha=alpha,
                                  labelled_weight=labelled_weight)
        self.lr = lr
        self.kl_warmup_epochs = kl_warmup_epochs
        self.seed = seed

    def kl_weight(self, index: int = 0, total: int = 1) -> float:
        """beta times the warm-up factor min(1, fractional epoch / warm-up
        epochs), at batch ``index`` of the ``total`` batches of this epoch."""
        if self.kl_warmup_epochs <= 0:
            return self.model.beta
        progress = self.current_epoch + (index + 1) / max(1, total)
        return self.model.beta * min(1.0, progress / self.kl_warmup_epochs)

    def on_train_epoch_start(self) -> None:
        pyro.set_rng_seed(epoch_seed(self.seed, self.current_epoch, 2, self.global_rank) % 2**32)
        self._epoch_losses: list[float] = []  # per step: the loss per point, and
        self._epoch_points: list[int] = []  # the number of points
        self._epoch_mean: float | None = None

    def training_step(self, group: tuple[list, int, int], group_idx: int) -> None:
        """One Adam step per batch of the group ``(batches, first, total)``."""
        batches, first, total = group
        optimizer = self.optimizers()
        # Lightning's step bookkeeping (its step count), set by its manual loop
        count = (getattr(optimizer, "_on_before_step", None),
                 getattr(optimizer, "_on_after_step", None))
        plain = optimizer.optimizer
        for j, batch in enumerate(batches):
            loss = self.step_loss(batch, first + j, total)
            if j + 1 < len(batches) and None not in count:
                # inside a group: the same update without Lightning's backward
                # and optimizer hooks (none of ppvae's callbacks use them), which
                # cost about 0.15 ms a step; the step is counted all the same
                plain.zero_grad()
                loss.backward()
                count[0]()
                plain.step()
                count[1]()
            else:
                optimizer.zero_grad()
                self.manual_backward(loss)
                optimizer.step()

    def step_loss(self, batch: tuple[Tensor, ...], index: int, total: int) -> Tensor:
        """The loss to differentiate for batch ``index`` of the epoch's
        ``total``: the negative objective per data point, weighted for data
        parallelism (module doc). Raises :class:`TrainingDiverged` if it is not
        finite on any process."""
        # Pyro checks distribution arguments and values on the first step; the
        # data were validated before training, and later steps repeat the same
        # computation on new batches, so the checks are skipped there.
        with pyro.validation_enabled(is_validation_enabled() and self.global_step == 0):
            loss = self.loss(self.model, batch, self.kl_weight(index, total))
        points = self.loss.num_points(batch)
        value = loss.item()  # one host read (torch.isfinite costs three more operations)
        finite, weight = math.isfinite(value), 1.0
        if self.trainer.world_size > 1:
            stats = self.trainer.strategy.reduce(
                torch.tensor([points, not finite], dtype=torch.float64, device=self.device),
                reduce_op="sum")
            finite, weight = bool(stats[1] == 0), points * self.trainer.world_size / float(stats[0])
        if not finite:
            raise TrainingDiverged(
                f"the loss became {value} at epoch {self.current_epoch + 1}, "
                f"batch {index + 1}; no update was made with it. "
                "Try a smaller learning rate, KL warm-up, or check the data."
            )
        # kept here and logged once per epoch (a Lightning log call per step
        # costs about as much as a small network's forward pass)
        self._epoch_losses.append(value)
        self._epoch_points.append(points)
        return loss * weight if weight != 1.0 else loss

    def epoch_train_elbo(self) -> float:
        """The training objective per data point over this epoch's steps (all
        processes together under data parallelism)."""
        if self._epoch_mean is None:
            points = torch.tensor(self._epoch_points, dtype=torch.float64, device=self.device)
            losses = torch.tensor(self._epoch_losses, dtype=torch.float64, device=self.device)
            totals = torch.stack([-(losses * points).sum(), points.sum()])
            totals = self.trainer.strategy.reduce(totals, reduce_op="sum")
            self._epoch_mean = float(totals[0] / totals[1].clamp(min=1))
        return self._epoch_mean

    def on_train_epoch_end(self) -> None:
        # the same value on every process: syncing it (a mean) leaves it unchanged
        self.log("train_elbo", self.epoch_train_elbo(), on_epoch=True, sync_dist=True)

    def validation_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        for name, value in self.loss.validate(self.model, batch).items():
            self.log(name, value, on_epoch=True, batch_size=self.loss.num_points(batch),
                     sync_dist=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return adam(self.model.parameters(), self.lr)


def adam(params: Iterable[Tensor], lr: float) -> torch.optim.Adam:
    """Adam (Kingma & Ba 2015) with PyTorch's fused kernel where the parameters
    allow it (float tensors on CPU or CUDA): one pass over all parameters per
    step, about 5x faster than the per-tensor loop on this project's MLPs
    (benchmarks/throughput.py); the same update up to float rounding."""
    params = list(params)
    fused = bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda")
                                 for p in params)
    return torch.optim.Adam(params, lr=lr, fused=fused or None)
