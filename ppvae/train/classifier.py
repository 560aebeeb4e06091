"""The supervised-only baseline of semi-supervised experiments: a classifier
network trained by cross-entropy on the labelled points alone, with Lightning."""

from __future__ import annotations

import sys

import lightning as L
import torch
from torch import Tensor, nn
from torch.nn.functional import cross_entropy

from ppvae.data import Dataset, LabelSplit
from ppvae.train.batches import EpochBatches
from ppvae.train.fit import quiet_lightning
from ppvae.train.plans import adam


class ClassifierModule(L.LightningModule):
    """Cross-entropy training of ``net`` (inputs -> class logits) with Adam."""

    def __init__(self, net: nn.Module, lr: float = 1e-3) -> None:
        super().__init__()
        self.net = net
        self.lr = lr

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x, y = batch
        loss = cross_entropy(self.net(x), y)
        self.log("train_loss", loss.detach(), on_step=False, on_epoch=True, batch_size=len(x))
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        x, y = batch
        accuracy = (self.net(x).argmax(-1) == y).float().mean()
        self.log("val_accuracy", accuracy, on_epoch=True, batch_size=len(x))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return adam(self.net.parameters(), self.lr)


def fit_classifier(net: nn.Module, data: Dataset, labels: LabelSplit, *, epochs: int = 100,
                   batch_size: int = 64, lr: float = 1e-3, seed: int = 0,
                   progress: bool = False) -> nn.Module:
    """Train ``net`` on ``labels.labelled`` (dynamically binarized if the data
    set is), validating accuracy on ``data.val``; returns the trained ``net``.
    ``progress`` shows a bar on a terminal (none without one)."""
    L.seed_everything(seed, verbose=False)
    module = ClassifierModule(net, lr)
    with quiet_lightning():
        trainer = L.Trainer(max_epochs=epochs, accelerator="cpu", logger=False,
                            enable_checkpointing=False, enable_progress_bar=progress and sys.stderr.isatty(),
                            enable_model_summary=False, num_sanity_val_steps=0)
        train = EpochBatches(labels.labelled.x, labels.labelled.y, batch_size=batch_size,
                             shuffle=True, dynamic_binarization=data.binarize == "dynamic",
                             seed=seed, epoch=lambda: trainer.current_epoch)
        val = EpochBatches(data.val.x, data.val.y, batch_size=1024) if len(data.val) else None
        trainer.fit(module, train_dataloaders=train, val_dataloaders=val)
    return net.eval()
