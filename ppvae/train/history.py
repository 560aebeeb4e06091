"""Per-epoch metrics and the best weights, kept by a Lightning callback whose
state travels in checkpoints (so a resumed run keeps its earlier epochs)."""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import lightning as L


@dataclass
class History:
    """What :func:`ppvae.fit` returns.

    Attributes:
        train_elbo: training objective per data point, per epoch (nats).
        val_elbo: validation ELBO per data point, per epoch (nats), if any.
        val_accuracy: validation accuracy of q(y | x) per epoch (semi-supervised
            models only).
        best_epoch: 1-based epoch of the best validation ELBO (or the last).
        stopped_early: whether early stopping ended the run.
        seconds: wall time of the training call.
        checkpoint_dir: where checkpoints were written, if anywhere.
        world_size: processes that trained together (data parallelism).
        rank: this process's global rank among them (0: the main process,
            which writes results); not part of :meth:`as_dict`.
    """

    train_elbo: list[float] = field(default_factory=list)
    val_elbo: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    best_epoch: int = 0
    stopped_early: bool = False
    seconds: float = 0.0
    checkpoint_dir: str | None = None
    world_size: int = 1
    rank: int = 0

    @property
    def epochs(self) -> int:
        return len(self.train_elbo)

    def as_dict(self) -> dict[str, Any]:
        record = asdict(self)
        del record["rank"]
        return record


class HistoryCallback(L.Callback):
    """Records ``train_elbo``/``val_elbo`` each epoch and a copy of the weights
    with the best validation ELBO."""

    def __init__(self) -> None:
        self.history = History()
        self.best_state: dict[str, Any] | None = None
        self._best = -math.inf

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = trainer.callback_metrics
        self.history.train_elbo.append(pl_module.epoch_train_elbo())
        for name in ("val_elbo", "val_accuracy"):
            if name in metrics:
                getattr(self.history, name).append(float(metrics[name]))
        score = self.history.val_elbo[-1] if self.history.val_elbo else self.history.train_elbo[-1]
        if score > self._best:
            self._best = score
            self.history.best_epoch = self.history.epochs
            self.best_state = copy.deepcopy(pl_module.model.state_dict())

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history.as_dict(), "best": self._best, "best_state": self.best_state}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = History(**state_dict["history"])
        self._best = state_dict["best"]
        self.best_state = state_dict["best_state"]
