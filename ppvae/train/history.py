"""Per-epoch metrics and the best weights, kept by a Lightning callback whose
state travels in checkpoints (so a resumed run keeps its earlier epochs)."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import lightning as L


@dataclass
class History:
    """What :func:`ppvae.fit` returns.

    Attributes:
        metrics: per-epoch series by name: the plan's training metrics
            (``train_elbo`` for the ELBO plans: the training objective per
            data point, in nats) and its validation metrics (``val_elbo``,
            ``val_accuracy``, ``val_loss``, ...), where there are validation
            data.
        best_epoch: 1-based epoch of the best validation metric the plan
            monitors (or of the last epoch).
        stopped_early: whether early stopping ended the run.
        seconds: wall time of the training call.
        checkpoint_dir: where checkpoints were written, if anywhere.
        world_size: processes that trained together (data parallelism).
        rank: this process's global rank among them (0: the main process,
            which writes results); not part of :meth:`as_dict`.
    """

    metrics: dict[str, list[float]] = field(default_factory=dict)
    best_epoch: int = 0
    stopped_early: bool = False
    seconds: float = 0.0
    checkpoint_dir: str | None = None
    world_size: int = 1
    rank: int = 0

    @property
    def train_elbo(self) -> list[float]:
        """The ELBO plans' training objective per epoch (empty for other plans)."""
        return self.metrics.get("train_elbo", [])

    @property
    def val_elbo(self) -> list[float]:
        """Validation ELBO per data point per epoch, if any."""
        return self.metrics.get("val_elbo", [])

    @property
    def val_accuracy(self) -> list[float]:
        """Validation accuracy of q(y | x) per epoch (semi-supervised plans)."""
        return self.metrics.get("val_accuracy", [])

    @property
    def epochs(self) -> int:
        return max((len(v) for k, v in self.metrics.items() if k.startswith("train_")), default=0)

    def as_dict(self) -> dict[str, Any]:
        """The series by name beside the scalars (``rank`` left out)."""
        return {**self.metrics, "best_epoch": self.best_epoch,
                "stopped_early": self.stopped_early, "seconds": self.seconds,
                "checkpoint_dir": self.checkpoint_dir, "world_size": self.world_size}

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> History:
        """The inverse of :meth:`as_dict` (lists are series)."""
        record = dict(record)
        metrics = {k: list(v) for k, v in record.items() if isinstance(v, list)}
        scalars = {k: v for k, v in record.items()
                   if k not in metrics and k in ("best_epoch", "stopped_early", "seconds",
                                                 "checkpoint_dir", "world_size")}
        return cls(metrics={k: v for k, v in metrics.items() if v}, **scalars)


class HistoryCallback(L.Callback):
    """Records the plan's training metrics and validation metrics each epoch,
    and a copy of the weights with the best monitored metric (``monitor``:
    (name, "min" or "max"), or None for the last epoch)."""

    def __init__(self, monitor: tuple[str, str] | None) -> None:
        self.monitor = monitor
        self.history = History()
        self.best_state: dict[str, Any] | None = None
        self._best = -math.inf

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = self.history.metrics
        for name, value in pl_module.epoch_train_metrics().items():
            metrics.setdefault(name, []).append(value)
        for name, value in trainer.callback_metrics.items():
            if name.startswith("val_"):
                metrics.setdefault(name, []).append(float(value))
        score = float(self.history.epochs)  # no monitor: the last epoch is the best
        if self.monitor is not None:
            name, mode = self.monitor
            series = metrics.get(name) or metrics.get(pl_module.train_metric)
            sign = (1.0 if mode == "max" else -1.0) if name in metrics else -pl_module.metric_sign
            score = sign * series[-1]
        if score > self._best:
            self._best = score
            self.history.best_epoch = self.history.epochs
            self.best_state = copy.deepcopy(pl_module.model.state_dict())

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history.as_dict(), "best": self._best, "best_state": self.best_state}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = History.from_dict(state_dict["history"])
        self._best = state_dict["best"]
        self.best_state = state_dict["best_state"]
