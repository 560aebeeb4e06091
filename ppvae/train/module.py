"""A Lightning module around a Pyro loss.

The Pyro model/guide pair stays untouched: each training step evaluates
``loss.differentiable_loss(model.model, model.guide, *batch, beta=w)`` (a
differentiable negative ELBO, summed over the batch) and Lightning does the
rest (optimizer step, logging, checkpoints, progress bar, devices).

Logged metrics, per data point in nats:
- ``train_elbo``: the training objective: the ELBO with the KL term weighted by
  beta times the warm-up factor (equal to the ELBO once warm-up is over and
  beta = 1), or the IWAE bound for ``objective="iwae"``;
- ``val_elbo``: the ELBO itself (beta = 1) on the validation data.
"""

from __future__ import annotations

import lightning as L
import pyro
import torch
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
        lr: float = 1e-3,
        kl_warmup_epochs: float = 0.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.model = model
        self.loss = training_loss(model, objective, num_particles, dreg=dreg, alpha=alpha)
        self.lr = lr
        self.kl_warmup_epochs = kl_warmup_epochs
        self.seed = seed

    def kl_weight(self) -> float:
        """beta times the warm-up factor min(1, fractional epoch / warm-up epochs)."""
        if self.kl_warmup_epochs <= 0:
            return self.model.beta
        batches = max(1, self.trainer.num_training_batches)
        progress = self.current_epoch + self.trainer.fit_loop.epoch_loop.batch_progress.current.ready / batches
        return self.model.beta * min(1.0, progress / self.kl_warmup_epochs)

    def on_train_epoch_start(self) -> None:
        pyro.set_rng_seed(epoch_seed(self.seed, self.current_epoch, 2) % 2**32)

    def training_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> Tensor:
        loss = self.loss(self.model, batch, self.kl_weight())
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"the loss became {loss.item()} at epoch {self.current_epoch + 1}, "
                f"batch {batch_idx + 1}; no update was made with it. "
                "Try a smaller learning rate, KL warm-up, or check the data."
            )
        self.log("train_elbo", -loss.detach(), on_step=False, on_epoch=True,
                 batch_size=_num_points(batch))
        return loss

    def validation_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        for name, value in self.loss.validate(self.model, batch).items():
            self.log(name, value, on_epoch=True, batch_size=_num_points(batch))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.model.parameters(), lr=self.lr)


def _num_points(batch: tuple[Tensor, ...]) -> int:
    """Data points in a batch: the rows of its data tensors (floating point;
    labels are integer tensors)."""
    return sum(len(t) for t in batch if t.is_floating_point())
