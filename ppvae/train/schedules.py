"""Learning-rate schedules over a training budget.

A schedule is a factor ``f(p)`` of the fraction ``p`` in [0, 1] of the budget
spent: the learning rate of every parameter group in epoch e is its initial
rate times ``f(p)``, where p is the larger of e / epochs and, under a time
limit, the elapsed share of the time (:class:`lightning.pytorch.callbacks.Timer`,
which a resumed run restores). A time-limited run thus walks the whole
schedule whatever its speed, as a paper's epoch schedule would on its machine.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import lightning as L
from lightning.pytorch.callbacks import Timer

#: Burda et al. (2016): stage i = 0..7 lasts 3^i epochs of 3280 at 1e-3 * 10^(-i/7)
BURDA_STAGES = 8
BURDA_EPOCHS = (3**BURDA_STAGES - 1) // 2


def constant(progress: float) -> float:
    """f(p) = 1."""
    return 1.0


def burda(progress: float) -> float:
    """Burda, Grosse & Salakhutdinov (2016): f(p) = 10^(-i/7) in stage i = 0..7,
    stage i taking 3^i of the 3280 parts of the budget (1 + 3 + ... + 2187 =
    3280 epochs in the paper), so the last tenth-rate stage is its last 2/3."""
    spent = progress * BURDA_EPOCHS
    stage = 0
    while stage < BURDA_STAGES - 1 and spent >= (3 ** (stage + 1) - 1) / 2:
        stage += 1
    return 10 ** (-stage / (BURDA_STAGES - 1))


def cosine(progress: float) -> float:
    """f(p) = (1 + cos(pi p)) / 2 (Loshchilov & Hutter 2017, one cycle, no restart)."""
    return 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))


SCHEDULES: dict[str, Callable[[float], float]] = {
    "constant": constant, "burda": burda, "cosine": cosine}


def budget_progress(trainer: L.Trainer) -> float:
    """The fraction of the run's budget spent when its current epoch starts:
    the larger of the epoch share and, under ``max_time``, the time share."""
    progress = trainer.current_epoch / trainer.max_epochs
    for callback in trainer.callbacks:
        if isinstance(callback, Timer):
            remaining = callback.time_remaining()
            if remaining is not None:
                elapsed = callback.time_elapsed()
                progress = max(progress, elapsed / max(elapsed + remaining, 1e-9))
    return min(progress, 1.0)


class LRSchedule(L.Callback):
    """Set every optimizer's learning rates to ``initial * factor(p)`` at the
    start of each training epoch, p from :func:`budget_progress`. The initial
    rate is kept in each parameter group as ``"initial_lr"`` (as torch's
    schedulers do), so it travels with the optimizer's state into checkpoints.
    Under data parallelism every process takes the main process's p, whose
    clock may differ from its own by a little."""

    def __init__(self, factor: Callable[[float], float]) -> None:
        self.factor = factor

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        factor = self.factor(trainer.strategy.broadcast(budget_progress(trainer), src=0))
        for optimizer in trainer.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = group.setdefault("initial_lr", group["lr"]) * factor


def schedule(name: str | Callable[[float], float]) -> Callable[[float], float]:
    """The schedule named ``name`` in :data:`SCHEDULES`, or ``name`` itself if callable."""
    if callable(name):
        return name
    if name not in SCHEDULES:
        raise ValueError(f"unknown lr_schedule {name!r}; choose from {', '.join(SCHEDULES)}")
    return SCHEDULES[name]
