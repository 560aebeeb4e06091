"""Training plans: one Lightning module per training style.

A plan holds a model and says how it trains: what a batch holds (and how
it is made from the data), the loss of a batch, the optimizers, and what
validation reports. :func:`ppvae.fit` runs any plan with the same loop,
checkpoints, early stopping and data parallelism; a new training style is a
new plan here, registered in :data:`PLANS`, never an edit of ``fit``.

- :class:`ELBOPlan` (``"elbo"``): any Pyro loss with ``differentiable_loss``
  (``Trace_ELBO``, ``TraceMeanField_ELBO``, ``TraceEnum_ELBO``,
  :class:`ppvae.infer.IWAE` with or without DReG, ...) on ``model``/``guide``;
  KL warm-up through the model's ``beta`` keyword. ppvae's models with one
  latent or a chain of latents train through their pure-torch twins
  (:mod:`ppvae.accel`), equal to the Pyro path; ``accel=False`` takes the
  Pyro path.
- :class:`SemiSupervisedPlan` (``"semi-supervised"``): M2's objective on mixed
  labelled/unlabelled batches (:class:`ppvae.infer.SemiSupervisedELBO`).
- :class:`ReconstructionPlan` (``"reconstruction"``): deterministic
  autoencoders, reconstruction plus the penalties the model declares.
- :class:`AdversarialPlan` (``"adversarial"``): two optimizers, a
  discriminator's and the rest's.
- :class:`LayerwisePlan` (``"layerwise"``): stacked autoencoders, greedy
  layer-wise pretraining then fine-tuning of the whole stack.
- :class:`JointPlan` (``"joint"``): reconstruction of all points plus
  classification of the labelled ones, on mixed labelled/unlabelled batches.
- :class:`RWSPlan` (``"rws"``): reweighted wake-sleep, per data point, for
  pairs with discrete (or any non-reparameterized) latents.

Each Lightning step takes a group of consecutive batches
(:class:`ppvae.train.batches.Groups`) and makes one optimizer step per batch
(Lightning's manual optimization, public API only), so that Lightning's
per-step work is paid once per group; the updates are those of one batch
per step, and Lightning counts one optimizer step per group.

Data parallelism (DDP): each process holds a slice of every global batch.
Process r's loss, the mean over its n_r points, is scaled by W n_r / N (W
processes, N = sum of the n_r, from one scalar all-reduce per step); DDP
averages the W gradients, so every step follows the gradient of the loss per
data point over the whole global batch, whatever the slices' sizes. The same
all-reduce tells every process whether any loss was NaN/inf, so all stop
together. Each process draws from its own stream, seeded by (seed, epoch,
rank). Validation metrics are weighted by points and summed over processes.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, ClassVar

import lightning as L
import pyro
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from pyro.infer.util import is_validation_enabled
from torch import Tensor, nn
from torch.nn.functional import cross_entropy

from ppvae import accel
from ppvae.data import Dataset, LabelSplit, label_split
from ppvae.infer import IWAE, SemiSupervisedELBO, make_objective
from ppvae.infer.importance import max_plate_nesting, per_datapoint_log_densities
from ppvae.train import contract
from ppvae.train.batches import EpochBatches, MixedBatches, epoch_seed, model_batches


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; parameters were not updated with it."""


def adam(params: Iterable[Tensor], lr: float) -> torch.optim.Adam:
    """Adam (Kingma & Ba 2015), with PyTorch's fused kernel where every
    parameter allows it (floating point, on CPU or CUDA): the same update, in
    one pass over the parameters."""
    params = list(params)
    fused = bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda")
                                 for p in params)
    return torch.optim.Adam(params, lr=lr, fused=fused or None)


class TrainingPlan(L.LightningModule):
    """What every training style shares: the model, the learning rate and
    seed, per-epoch training metrics, the divergence check, data-parallel
    loss weights and the grouped optimizer steps.

    Subclasses set :attr:`name`, :attr:`train_metric` and :attr:`monitor`,
    and implement :meth:`loss` (or :meth:`train_batch`) and :meth:`validate`;
    :meth:`batches` makes the batches from ``fit``'s data (by default
    ``(x,)``, or ``(x, c)`` for a conditional model).

    Args:
        model: the model (:mod:`ppvae.train.contract`).
        lr: Adam's learning rate.
        seed: the base seed of the per-epoch sampling streams.
        accel: train through the model's pure-torch twin where it has one.
    """

    #: the name ``fit(plan=...)`` takes
    name: ClassVar[str] = ""
    #: the training metric: the loss per data point, or its negative (an ELBO)
    train_metric: ClassVar[str] = "train_loss"
    #: +1 if the train metric is the loss, -1 if it is its negative
    metric_sign: ClassVar[float] = 1.0
    #: (validation metric, "min" or "max") for early stopping and the best
    #: weights; None: the last epoch is the best
    monitor: ClassVar[tuple[str, str] | None] = ("val_loss", "min")

    def __init__(self, model: nn.Module, *, lr: float = 1e-3, seed: int = 0,
                 accel: bool = True) -> None:
        super().__init__()
        if not lr > 0:
            raise ValueError(f"lr must be positive, got {lr}")
        self.automatic_optimization = False
        self.model = contract.check_model(model)
        self.lr = lr
        self.seed = seed
        self.accel = accel
        #: Pyro's checks on the first step (as set globally when the plan is made)
        self.pyro_checks = is_validation_enabled()
        self._checked = False
        self._sums: dict[str, list[float]] = {}

    # ------------------------------------------------------------------ data
    def batches(self, data: Any, *, batch_size: int, val_batch_size: int, seed: int,
                epoch: Callable[[], int], shard: Callable[[], tuple[int, int]]
                ) -> tuple[Iterable, Iterable | None]:
        """Validated training and validation batches (this process's slices
        under data parallelism)."""
        return model_batches(self.model, data, batch_size=batch_size,
                             val_batch_size=val_batch_size, seed=seed, epoch=epoch, shard=shard)

    def num_points(self, batch: tuple[Tensor, ...]) -> int:
        """Data points in a batch: the rows of its first tensor."""
        return len(batch[0])

    # ---------------------------------------------------------------- losses
    def loss(self, batch: tuple[Tensor, ...], index: int, total: int) -> Tensor:
        """The loss per data point of batch ``index`` of the epoch's ``total``."""
        raise NotImplementedError

    def validate(self, batch: tuple[Tensor, ...]) -> dict[str, Tensor]:
        """Validation metrics of a batch (per data point)."""
        raise NotImplementedError

    def check_first(self, batch: tuple[Tensor, ...], compute: Callable[[], Any]) -> None:
        """On the first step of a run: ``compute()`` (the loss through Pyro)
        with Pyro's checks as they were set when the plan was made, on a copy
        of the random state (the
        step itself is then what it would be without the check; its result
        is dropped); and a check that every Pyro parameter the pair uses is a
        parameter of the module (the optimizers see the module's alone)."""
        devices = [t.device for t in batch if isinstance(t, Tensor) and t.is_cuda][:1]
        with torch.random.fork_rng(devices=devices), pyro.validation_enabled(self.pyro_checks), \
                poutine.trace(param_only=True) as params:
            compute()
        contract.check_parameters(self.model, params.trace)
        self._checked = True

    # --------------------------------------------------------------- stepping
    def on_train_epoch_start(self) -> None:
        pyro.set_rng_seed(epoch_seed(self.seed, self.current_epoch, 2, self.global_rank) % 2**32)
        self._sums = {}
        self._epoch_metrics: dict[str, float] | None = None

    def training_step(self, group: tuple[Iterable, int, int], group_idx: int) -> None:
        """One optimizer step per batch of the group ``(batches, first, total)``,
        with Pyro's checks off (the run's first step is checked, with them as
        set when the plan was made: :meth:`check_first`)."""
        batches, first, total = group
        with pyro.validation_enabled(False):
            for j, batch in enumerate(batches):
                self.train_batch(batch, first + j, total, last=j == len(batches) - 1)

    def train_batch(self, batch: tuple[Tensor, ...], index: int, total: int,
                    last: bool = True) -> None:
        """Compute the loss of one batch and step the optimizer on it. The
        last batch of a group steps through Lightning (its backward and
        optimizer hooks, its step count); the others step the wrapped torch
        optimizer directly, the same update without Lightning's per-step
        work (one batch per group under data parallelism, where Lightning's
        backward synchronizes the gradients)."""
        if not self._checked:
            self.check_first(batch, lambda: self.loss(batch, index, total))
        loss = self.loss(batch, index, total)
        loss = self.checked(loss, batch, index, **self.train_metrics(loss))
        optimizer = self.step_optimizer()
        if last:
            optimizer.zero_grad()
            self.manual_backward(loss)
            optimizer.step()
        else:
            optimizer.optimizer.zero_grad()
            loss.backward()
            optimizer.optimizer.step()

    def train_metrics(self, loss: Tensor) -> dict[str, Tensor]:
        """The per-point metrics :meth:`train_batch` logs for the batch whose
        loss is ``loss``, each given as a loss (:meth:`checked`): by default
        the train metric is the loss itself."""
        return {self.train_metric: loss}

    def step_optimizer(self) -> Any:
        """The (Lightning) optimizer :meth:`train_batch` steps: the plan's
        one optimizer (a plan with several chooses)."""
        return self.optimizers()

    def checked(self, loss: Tensor, batch: tuple[Tensor, ...], index: int,
                **metrics: Tensor) -> Tensor:
        """``loss`` weighted for data parallelism (module doc), after checking
        that it is finite on every process; ``metrics`` (per-point values) are
        kept for the epoch's means, the train metric given as a loss and kept
        times :attr:`metric_sign`.

        Raises:
            TrainingDiverged: the loss is NaN or infinite on some process.
        """
        points = self.num_points(batch)
        value = loss.item()
        finite, weight = math.isfinite(value), 1.0
        if self.trainer.world_size > 1:
            stats = self.trainer.strategy.reduce(
                torch.tensor([points, not finite], dtype=torch.float64, device=self.device),
                reduce_op="sum")
            finite, weight = bool(stats[1] == 0), points * self.trainer.world_size / float(stats[0])
        if not finite:
            raise TrainingDiverged(
                f"the loss became {value} at epoch {self.current_epoch + 1}, batch {index + 1}; "
                "no update was made with it. Try a smaller learning rate, KL warm-up, or check "
                "the data.")
        for name, metric in metrics.items():
            sign = self.metric_sign if name == self.train_metric else 1.0
            metric_value = value if metric is loss else metric.item()
            self._sums.setdefault(name, []).extend((sign * metric_value * points, points))
        return loss * weight if weight != 1.0 else loss

    def epoch_train_metrics(self) -> dict[str, float]:
        """This epoch's training metrics per data point (over all processes)."""
        if self._epoch_metrics is None:
            names = sorted(self._sums)
            totals = torch.tensor([[sum(self._sums[n][0::2]), sum(self._sums[n][1::2])]
                                   for n in names], dtype=torch.float64, device=self.device)
            totals = self.trainer.strategy.reduce(totals, reduce_op="sum") if names else totals
            self._epoch_metrics = {n: float(t[0] / t[1].clamp(min=1))
                                   for n, t in zip(names, totals)}
        return self._epoch_metrics

    def on_train_epoch_end(self) -> None:
        # the same values on every process: syncing them (a mean) leaves them unchanged
        for name, value in self.epoch_train_metrics().items():
            self.log(name, value, on_epoch=True, sync_dist=True)

    def validation_step(self, batch: tuple[Tensor, ...], batch_idx: int) -> None:
        for name, value in self.validate(batch).items():
            self.log(name, value, on_epoch=True, batch_size=self.num_points(batch),
                     sync_dist=True)

    def configure_optimizers(self) -> Any:
        return adam(self.model.parameters(), self.lr)


def twin_objective(objective: Any) -> Callable[[accel.LatentParts], Tensor] | None:
    """The pure-torch twin of a Pyro objective, for pairs that have one: of
    ``Trace_ELBO`` and ``TraceMeanField_ELBO`` (one particle, or vectorized
    particles) and of :class:`ppvae.infer.IWAE`; None for any other loss
    (including subclasses, which may compute something else)."""
    k = getattr(objective, "num_particles", 1)
    if type(objective) in (Trace_ELBO, TraceMeanField_ELBO):
        if k > 1 and not objective.vectorize_particles:
            return None
        twin = accel.elbo_loss if type(objective) is Trace_ELBO else accel.analytic_elbo_loss
        return partial(twin, num_particles=k)
    if type(objective) is IWAE:
        return partial(accel.iwae_loss, num_particles=k, dreg=objective.dreg)
    return None


class ELBOPlan(TrainingPlan):
    """Maximize an ELBO-type objective of ``model``/``guide`` with Adam.

    Logged per data point, in nats: ``train_elbo``, the training objective
    (the ELBO with the KL term weighted by the warm-up factor times beta, or
    the IWAE bound), and ``val_elbo``, the ELBO itself (at beta = 1 where
    the pair takes ``beta``) on the validation data.

    Args:
        model: any pair (:mod:`ppvae.train.contract`).
        objective: ``"elbo"``, ``"elbo-analytic"`` or ``"iwae"``
            (:func:`ppvae.infer.make_objective`), or any Pyro loss object with
            ``differentiable_loss(model, guide, *args, **kwargs)``.
        num_particles: samples of z per data point per step (named
            objectives only).
        dreg: doubly-reparameterized guide gradients (``"iwae"`` only).
        kl_warmup_epochs: raise the KL weight linearly from 0 to the model's
            beta over this many epochs (Bowman et al. 2016; Sønderby et al.
            2016), through the pair's ``beta`` keyword; 0 disables.
        lr, seed, accel: as for :class:`TrainingPlan`.
    """

    name = "elbo"
    train_metric = "train_elbo"
    metric_sign = -1.0
    monitor = ("val_elbo", "max")

    def __init__(self, model: nn.Module, *, objective: str | Any = "elbo",
                 num_particles: int = 1, dreg: bool = False, kl_warmup_epochs: float = 0.0,
                 lr: float = 1e-3, seed: int = 0, accel: bool = True) -> None:
        super().__init__(model, lr=lr, seed=seed, accel=accel)
        self.named = objective if isinstance(objective, str) else None
        if isinstance(objective, str):
            self.objective = make_objective(objective, num_particles, dreg=dreg)
        elif num_particles != 1 or dreg:
            raise ValueError("num_particles and dreg go with a named objective; set them on "
                             f"the {type(objective).__name__} object itself")
        elif not callable(getattr(objective, "differentiable_loss", None)):
            raise ValueError(f"objective must be one of 'elbo', 'elbo-analytic', 'iwae' or a "
                             f"Pyro loss with differentiable_loss, got {objective!r}")
        else:
            self.objective = objective
        if kl_warmup_epochs < 0:
            raise ValueError(f"kl_warmup_epochs must be non-negative, got {kl_warmup_epochs}")
        self.takes_beta = contract.takes_kl_weight(self.model)
        if kl_warmup_epochs > 0 and not self.takes_beta:
            raise ValueError(f"KL warm-up passes the KL weight as beta=..., which "
                             f"{type(self.model).__name__}.model/guide do not take")
        if isinstance(self.objective, IWAE) and (contract.kl_weight(self.model) != 1
                                                 or kl_warmup_epochs > 0):
            raise ValueError("objective='iwae' bounds log p(x): it takes no beta != 1 or "
                             "KL warm-up")
        self.kl_warmup_epochs = kl_warmup_epochs
        self.twin = twin_objective(self.objective) if accel else None
        self.validation_elbo = Trace_ELBO()
        self.validation_twin = twin_objective(self.validation_elbo) if accel else None

    def check_first(self, batch: tuple[Tensor, ...], compute: Callable[[], Any]) -> None:
        """:meth:`TrainingPlan.check_first`, after giving a named objective with
        vectorized particles the pair's plate nesting (which Pyro would
        otherwise guess, and announce, on its first call)."""
        if self.named is not None and getattr(self.objective, "vectorize_particles", False):
            kwargs = {"beta": 1.0} if self.takes_beta else {}
            nesting = max_plate_nesting(self.model.model, self.model.guide, *batch, **kwargs)
            self.objective = make_objective(self.named, self.objective.num_particles,
                                            max_plate_nesting=nesting)
        super().check_first(batch, compute)

    def kl_weight(self, index: int = 0, total: int = 1) -> float:
        """beta times the warm-up factor min(1, fractional epoch / warm-up
        epochs), at batch ``index`` of the ``total`` batches of this epoch."""
        beta = contract.kl_weight(self.model)
        if self.kl_warmup_epochs <= 0:
            return beta
        progress = self.current_epoch + (index + 1) / max(1, total)
        return beta * min(1.0, progress / self.kl_warmup_epochs)

    def pair_loss(self, objective: Any, twin: Callable | None, batch: tuple[Tensor, ...],
                  kwargs: dict[str, Any]) -> Tensor:
        """``objective``'s loss of the pair on ``batch``, summed over it:
        through ``twin`` where the pair has one, through Pyro otherwise."""
        model = self.model
        parts = accel.twin_parts(model.model, model.guide, batch, kwargs) if twin else None
        if parts is not None:
            return twin(parts)
        return objective.differentiable_loss(model.model, model.guide, *batch, **kwargs)

    def loss(self, batch: tuple[Tensor, ...], index: int, total: int) -> Tensor:
        kwargs = {"beta": self.kl_weight(index, total)} if self.kl_warmup_epochs > 0 else {}
        twin = self.twin if self._checked else None  # the check runs through Pyro
        return self.pair_loss(self.objective, twin, batch, kwargs) / len(batch[0])

    def validate(self, batch: tuple[Tensor, ...]) -> dict[str, Tensor]:
        kwargs = {"beta": 1.0} if self.takes_beta else {}
        with pyro.validation_enabled(False):
            loss = self.pair_loss(self.validation_elbo, self.validation_twin, batch, kwargs)
        return {"val_elbo": -loss.detach() / self.num_points(batch)}


class SemiSupervisedPlan(ELBOPlan):
    """M2's objective (Kingma et al. 2014, Eq. 9) on batches ``(x_l, y_l,
    x_u)`` mixing labelled and unlabelled points
    (:class:`ppvae.infer.SemiSupervisedELBO`: y enumerated exactly for the
    unlabelled points, alpha log q(y | x) on the labelled ones).

    The model takes ``model(x, y=None, beta=...)``/``guide(...)`` (y observed
    when given, enumerated otherwise) and offers ``classifier(x)`` (class
    logits), ``classifier_log_prob(x, y)`` and ``prepare_labels(y, n,
    name=...)``. Logged: ``train_elbo`` (the objective per point), and on the
    validation data ``val_elbo`` (y summed out) and ``val_accuracy`` of
    q(y | x).

    Args:
        labels: how many training labels to keep (balanced over classes,
            chosen by ``seed``) or a :class:`ppvae.data.LabelSplit`; the other
            training points are unlabelled. Required.
        labelled_per_batch: labelled points per batch, beside ``batch_size``
            unlabelled ones (default batch_size // 10).
        alpha: weight of the classification term, per labelled point.
        labelled_weight: weight of a labelled point against an unlabelled
            one: a number, or ``"dataset"`` for (N_l / n_l) / (N_u / n_u), with
            which every training image counts once per epoch, as in the
            paper's objective summed over the training set.
        num_particles, kl_warmup_epochs, lr, seed, accel: as for :class:`ELBOPlan`.
    """

    name = "semi-supervised"

    def __init__(self, model: nn.Module, *, labels: LabelSplit | int | None = None,
                 labelled_per_batch: int | None = None, alpha: float = 50.0,
                 labelled_weight: float | str = 1.0, num_particles: int = 1,
                 kl_warmup_epochs: float = 0.0, lr: float = 1e-3, seed: int = 0,
                 accel: bool = True) -> None:
        super().__init__(model, num_particles=num_particles, kl_warmup_epochs=kl_warmup_epochs,
                         lr=lr, seed=seed, accel=accel)
        self.labels = required_labels(model, labels)
        self.labelled_per_batch = labelled_per_batch
        self.setting = check_labelled_weight(labelled_weight)
        self.objective = SemiSupervisedELBO(alpha, num_particles)  # weight set with the batches

    def batches(self, data: Any, *, batch_size: int, val_batch_size: int, seed: int,
                epoch: Callable[[], int], shard: Callable[[], tuple[int, int]]
                ) -> tuple[Iterable, Iterable | None]:
        train, val = labelled_batches(self.model, data, self.labels, self.labelled_per_batch,
                                      batch_size=batch_size, val_batch_size=val_batch_size,
                                      seed=seed, epoch=epoch, shard=shard)
        self.objective.labelled_weight = labelled_weight(self.setting, train)
        return train, val

    def num_points(self, batch: tuple[Tensor, ...]) -> int:
        """Labelled plus unlabelled points of ``(x_l, y_l, x_u)``, or the
        points of a validation batch ``(x, y)``."""
        return mixed_points(batch)

    def loss(self, batch: tuple[Tensor, ...], index: int, total: int) -> Tensor:
        return self.objective(self.model, batch, self.kl_weight(index, total))

    def validate(self, batch: tuple[Tensor, ...]) -> dict[str, Tensor]:
        return self.objective.validate(self.model, batch)


def check_labelled_weight(setting: float | str) -> float | str:
    """A labelled point's weight setting: ``"dataset"`` or a positive number
    (as a float); raises ``ValueError`` otherwise."""
    if setting == "dataset":
        return setting
    if isinstance(setting, str) or not setting > 0:
        raise ValueError(f"labelled_weight must be a positive number or 'dataset', "
                         f"got {setting!r}")
    return float(setting)


def labelled_weight(setting: float | str, batches: MixedBatches) -> float:
    """The weight of a labelled point in semi-supervised batches."""
    if setting == "dataset":
        n_l, n_u = batches.labelled_per_batch, batches.unlabelled.batch_size
        return (len(batches.labelled[0]) / n_l) / (len(batches.unlabelled.tensors[0]) / n_u)
    return setting


def required_labels(model: nn.Module, labels: LabelSplit | int | None) -> LabelSplit | int:
    """``labels`` of a semi-supervised plan; ``ValueError`` if none are given."""
    if labels is None:
        raise ValueError(f"{type(model).__name__} trains on a Dataset with labels=N (the "
                         "number of labelled training points) or labels=label_split(...)")
    return labels


def labelled_batches(model: nn.Module, data: Any, labels: LabelSplit | int,
                     labelled_per_batch: int | None, *, batch_size: int, val_batch_size: int,
                     seed: int, epoch: Callable[[], int], shard: Callable[[], tuple[int, int]]
                     ) -> tuple[MixedBatches, Iterable | None]:
    """The batches of the semi-supervised plans: training batches ``(x_l, y_l,
    x_u)`` (:class:`~ppvae.train.batches.MixedBatches`, ``labelled_per_batch``
    labelled points, default batch_size // 10, beside ``batch_size``
    unlabelled ones) and validation batches ``(x, y)``, checked by the
    model's ``prepare`` and ``prepare_labels(y, n, name=...)``.

    ``labels``: how many training labels to keep (balanced over classes,
    chosen by ``seed``) or a :class:`ppvae.data.LabelSplit`."""
    if not isinstance(data, Dataset):
        raise ValueError(f"{type(model).__name__} trains on a Dataset with labels=N")
    if isinstance(labels, int):
        labels = label_split(data.train, labels, data.num_classes, seed)
    dynamic = data.binarize == "dynamic"
    support = "unit" if dynamic else None
    x_l = contract.prepare(model, labels.labelled.x, name="labelled data", support=support)
    y_l = model.prepare_labels(labels.labelled.y, len(x_l), name="labels")
    x_u = contract.prepare(model, labels.unlabelled.x, name="unlabelled data", support=support)
    scales = tuple(None if s is None else s.to(device=x.device, dtype=x.dtype)
                   for s, x in ((labels.labelled.scale, x_l), (labels.unlabelled.scale, x_u)))
    train = MixedBatches((x_l, y_l), x_u, batch_size=batch_size,
                         labelled_per_batch=labelled_per_batch or max(1, batch_size // 10),
                         dynamic_binarization=dynamic, noise_scale=scales, seed=seed,
                         epoch=epoch, shard=shard)
    if not len(data.val):
        return train, None
    val_x = contract.prepare(model, data.val.x, name="validation data")
    val_y = model.prepare_labels(data.val.y, len(val_x), name="validation labels")
    return train, EpochBatches(val_x, val_y, batch_size=val_batch_size, shard=shard)


def mixed_points(batch: tuple[Tensor, ...]) -> int:
    """Labelled plus unlabelled points of a training batch ``(x_l, y_l,
    x_u)``, or the points of a validation batch ``(x, y)``."""
    return len(batch[0]) + (len(batch[2]) if len(batch) == 3 else 0)


class ReconstructionPlan(TrainingPlan):
    """Reconstruction plus penalties: deterministic autoencoders.

    The loss per data point is the negative ELBO of the pair (with a
    point-mass guide, -log p(x | z = f(x)) - log p(z): MAP inference of the
    code, which is the reconstruction error under a flat prior) plus the
    penalties the model declares with ``penalties(*batch) -> {name: value
    per data point}`` (sparsity, contraction, ...), which are not densities
    and so stay out of ``model`` (:mod:`ppvae.train.contract`). The prior
    terms of the latent sites a model declares in ``replaced_priors`` are left
    out of the negative ELBO (their penalty, such as a Wasserstein
    autoencoder's MMD, takes their place): one draw of the guide, replayed in
    the model, every other site's log density.

    Logged: ``train_loss``, and on the validation data ``val_loss`` and
    ``val_reconstruction`` (the loss without the penalties).
    """

    name = "reconstruction"

    def __init__(self, model: nn.Module, *, lr: float = 1e-3, seed: int = 0,
                 accel: bool = True) -> None:
        super().__init__(model, lr=lr, seed=seed, accel=accel)
        self.objective = Trace_ELBO()

    def terms(self, batch: tuple[Tensor, ...]) -> tuple[Tensor, Tensor]:
        """(reconstruction loss, sum of the penalties), per data point."""
        model, replaced = self.model, contract.replaced_priors(self.model)
        if replaced:
            guide = poutine.trace(model.guide).get_trace(*batch)
            joint = poutine.trace(poutine.replay(model.model, trace=guide)).get_trace(*batch)
            reconstruction = (guide.log_prob_sum(lambda name, _: name not in replaced)
                              - joint.log_prob_sum(lambda name, _: name not in replaced))
        else:
            reconstruction = self.objective.differentiable_loss(model.model, model.guide, *batch)
        reconstruction = reconstruction / self.num_points(batch)
        penalties = getattr(model, "penalties", None)
        penalty = sum(penalties(*batch).values()) if callable(penalties) else 0.0
        return reconstruction, torch.as_tensor(penalty, dtype=reconstruction.dtype)

    def loss(self, batch: tuple[Tensor, ...], index: int, total: int) -> Tensor:
        return sum(self.terms(batch))

    def validate(self, batch: tuple[Tensor, ...]) -> dict[str, Tensor]:
        with pyro.validation_enabled(False):
            reconstruction, penalty = self.terms(batch)
        return {"val_loss": reconstruction + penalty, "val_reconstruction": reconstruction}


class LayerwisePlan(ReconstructionPlan):
    """Greedy layer-wise pretraining, then fine-tuning of the whole stack:
    stacked (denoising) autoencoders (Bengio, Lamblin, Popovici & Larochelle
    2007; Vincent et al. 2010; fine-tuning as Hinton & Salakhutdinov 2006).

    The model declares ``num_layers`` (L), ``layer_loss(k, *batch)``, the
    loss per data point of layer k (k = 0, ..., L - 1) trained alone (a
    one-layer autoencoder of that layer's input: the data for k = 0, the
    codes of the layers below, held fixed, above), and
    ``layer_parameters(k)``, the parameters that loss trains. Epoch e (from
    0) minimizes:

    - ``layer_loss(e // layer_epochs)`` while e < L * ``layer_epochs``
      (pretraining, one layer after the other, bottom up), over that layer's
      parameters alone;
    - afterwards the :class:`ReconstructionPlan` loss of the whole model over
      all its parameters (fine-tuning of the unrolled autoencoder).

    Each phase has its own Adam optimizer, which starts with fresh moments.
    In pretraining the other parameters enter the loss with weight 0, so
    that every step's graph holds all parameters, as data parallelism (DDP)
    asks; their optimizers do not step.

    Logged: ``train_loss`` (the loss of the epoch's phase: layer k's, then
    the whole model's) and, every epoch, the whole model's ``val_loss`` and
    ``val_reconstruction`` on the validation data. With pretraining
    (``layer_epochs > 0``) the plan monitors nothing: there is no early
    stopping (``fit``'s ``patience`` has no effect, so it cannot stop a run
    in pretraining, whose whole-model losses, with the upper layers still
    untrained, do not rank the epochs) and the last epoch's weights are kept.
    With ``layer_epochs = 0`` it is the :class:`ReconstructionPlan`, early
    stopping included.

    Args:
        layer_epochs: epochs of pretraining per layer (0: none).
        lr, seed, accel: as for :class:`TrainingPlan`.
    """

    name = "layerwise"

    def __init__(self, model: nn.Module, *, layer_epochs: int = 10, lr: float = 1e-3,
                 seed: int = 0, accel: bool = True) -> None:
        super().__init__(model, lr=lr, seed=seed, accel=accel)
        if not isinstance(getattr(model, "num_layers", None), int) or not all(
                callable(getattr(model, name, None)) for name in ("layer_loss",
                                                                  "layer_parameters")):
            raise ValueError(f"the layerwise plan needs {type(model).__name__}.num_layers, "
                             ".layer_loss(k, ...) and .layer_parameters(k)")
        if isinstance(layer_epochs, bool) or not isinstance(layer_epochs, int) or \
                layer_epochs < 0:
            raise ValueError(f"layer_epochs must be a whole number >= 0, got {layer_epochs!r}")
        self.layer_epochs = layer_epochs
        self.num_layers = model.num_layers
        if layer_epochs > 0:
            self.monitor = None

    def layer(self, epoch: int) -> int | None:
        """The layer trained alone in (0-based) ``epoch``; None in fine-tuning."""
        k = epoch // self.layer_epochs if self.layer_epochs else self.num_layers
        return k if k < self.num_layers else None

    def check_first(self, batch: tuple[Tensor, ...], compute: Callable[[], Any]) -> None:
        """The first step's check (:meth:`TrainingPlan.check_first`) runs the
        whole model's loss through Pyro, whatever the phase."""
        super().check_first(batch, lambda: self.terms(batch))

    def loss(self, batch: tuple[Tensor, ...], index: int, total: int) -> Tensor:
        k = self.layer(self.current_epoch)
        if k is None:
            return super().loss(batch, index, total)
        unused = sum(p.sum() for p in self.model.parameters())
        return self.model.layer_loss(k, *batch) + 0.0 * unused

    def step_optimizer(self) -> Any:
        """The optimizer of this epoch's phase: layer k's, or the whole model's."""
        k = self.layer(self.current_epoch)
        return self.optimizers()[self.num_layers if k is None else k]

    def configure_optimizers(self) -> Any:
        model = self.model
        return [*(adam(model.layer_parameters(k), self.lr) for k in range(self.num_layers)),
                adam(model.parameters(), self.lr)]


class JointPlan(ReconstructionPlan):
    """Reconstruction of all the data plus classification of the labelled
    part, through one encoder: the semi-supervised autoencoder of Ranzato &
    Szummer (2008), and the supervised cost plus reconstruction cost of
    Rasmus et al. (2015) in its simplest form (one reconstruction term, at
    the input).

    Batches ``(x_l, y_l, x_u)`` are made as for :class:`SemiSupervisedPlan`.
    The loss per data point of a batch minimized is

        [sum_u r(x_u) + w sum_l r(x_l)] / (n_u + w n_l)
            + alpha * (1 / n_l) sum_l -log softmax(classifier(x_l))[y_l]

    with r(x) the :class:`ReconstructionPlan` loss of a point (the negative
    ELBO of the point-mass pair plus the declared penalties) and w the
    weight of a labelled point in the reconstruction term; the
    classification term is a mean over the labelled points whatever w.

    The model declares ``classifier(x)`` (class logits, computed from the
    encoder's code) and ``prepare_labels(y, n, name=...)``. Logged:
    ``train_loss``, and on the validation data ``val_loss`` (the
    reconstruction loss with penalties, which early stopping and the best
    weights follow: the validation labels are reported, never used to
    choose), ``val_reconstruction`` and ``val_accuracy`` of the classifier.

    Args:
        labels, labelled_per_batch, labelled_weight: as for
            :class:`SemiSupervisedPlan` (``labels`` is required).
        alpha: weight of the mean cross-entropy of the labelled points
            (0: a plain autoencoder's loss).
        lr, seed, accel: as for :class:`TrainingPlan`.
    """

    name = "joint"

    def __init__(self, model: nn.Module, *, labels: LabelSplit | int | None = None,
                 labelled_per_batch: int | None = None, alpha: float = 1.0,
                 labelled_weight: float | str = 1.0, lr: float = 1e-3, seed: int = 0,
                 accel: bool = True) -> None:
        super().__init__(model, lr=lr, seed=seed, accel=accel)
        for name in ("classifier", "prepare_labels"):
            if not callable(getattr(model, name, None)):
                raise ValueError(f"the joint plan needs {type(model).__name__}.{name}(...)")
        if not alpha >= 0:
            raise ValueError(f"alpha must be non-negative, got {alpha}")
        self.labels = required_labels(model, labels)
        self.labelled_per_batch = labelled_per_batch
        self.setting = check_labelled_weight(labelled_weight)
        self.alpha = float(alpha)
        #: w, the weight of a labelled point in the reconstruction term (set
        #: with the batches)
        self.weight = self.setting if isinstance(self.setting, float) else 1.0

    def batches(self, data: Any, *, batch_size: int, val_batch_size: int, seed: int,
                epoch: Callable[[], int], shard: Callable[[], tuple[int, int]]
                ) -> tuple[Iterable, Iterable | None]:
        train, val = labelled_batches(self.model, data, self.labels, self.labelled_per_batch,
                                      batch_size=batch_size, val_batch_size=val_batch_size,
                                      seed=seed, epoch=epoch, shard=shard)
        self.weight = labelled_weight(self.setting, train)
        return train, val

    def num_points(self, batch: tuple[Tensor, ...]) -> int:
        """Labelled plus unlabelled points of ``(x_l, y_l, x_u)``, or the
        points of a validation batch ``(x, y)``."""
        return mixed_points(batch)

    def loss(self, batch: tuple[Tensor, ...], index: int, total: int) -> Tensor:
        x_l, y_l, x_u = batch
        n_u, n_l, w = len(x_u), len(x_l), self.weight
        loss = n_u * sum(self.terms((x_u,))) if n_u else 0.0
        if n_l:
            loss = loss + w * n_l * sum(self.terms((x_l,)))
        # a sum over no labelled point (a data-parallel slice) is 0, its graph
        # still holding the classifier's parameters, as DDP asks
        classification = cross_entropy(self.model.classifier(x_l), y_l, reduction="sum")
        return loss / (n_u + w * n_l) + self.alpha * classification / max(n_l, 1)

    def validate(self, batch: tuple[Tensor, ...]) -> dict[str, Tensor]:
        x, y = batch
        metrics = super().validate((x,))
        accuracy = (self.model.classifier(x).argmax(-1) == y).to(torch.float32).mean()
        return {**metrics, "val_accuracy": accuracy}


class AdversarialPlan(TrainingPlan):
    """Two players, two Adam optimizers: a discriminator and the rest.

    The model declares ``discriminator`` (an ``nn.Module``, outside Pyro's
    parameter store), ``discriminator_loss(*batch)`` (minimized over the
    discriminator's parameters) and ``generator_loss(*batch)`` (minimized
    over all other parameters), each a mean per data point. Every batch
    takes one discriminator step, then one step of the rest on a fresh
    generator loss; the generator's backward pass leaves gradients on the
    discriminator that its own step never uses (each step zeroes its
    gradients first).

    With ``labels`` (for a model that uses some class labels, such as an
    adversarial autoencoder whose prior's components are tied to classes),
    the batches are :class:`SemiSupervisedPlan`'s: ``(x_l, y_l, x_u)`` in
    training and ``(x, y)`` in validation, passed to both losses as they are.

    Logged: ``train_loss`` (the generator loss), ``train_discriminator_loss``,
    and ``val_loss`` (the generator loss on the validation data); the last
    epoch's weights are kept (an adversarial loss does not rank epochs).

    Args:
        discriminator_lr: the discriminator's learning rate (default ``lr``).
        labels: None, or how many training labels to keep (balanced over
            classes, chosen by ``seed``) or a :class:`ppvae.data.LabelSplit`.
        labelled_per_batch: labelled points per batch, with ``labels``
            (default batch_size // 10).
        lr, seed, accel: as for :class:`TrainingPlan`.
    """

    name = "adversarial"
    monitor = None

    def __init__(self, model: nn.Module, *, discriminator_lr: float | None = None,
                 labels: LabelSplit | int | None = None, labelled_per_batch: int | None = None,
                 lr: float = 1e-3, seed: int = 0, accel: bool = True) -> None:
        super().__init__(model, lr=lr, seed=seed, accel=accel)
        self.labels, self.labelled_per_batch = labels, labelled_per_batch
        for name in ("discriminator_loss", "generator_loss"):
            if not callable(getattr(model, name, None)):
                raise ValueError(f"the adversarial plan needs {type(model).__name__}.{name}(...)")
        if not isinstance(getattr(model, "discriminator", None), nn.Module):
            raise ValueError(f"the adversarial plan needs {type(model).__name__}.discriminator, "
                             "an nn.Module")
        self.discriminator_lr = discriminator_lr or lr

    def batches(self, data: Any, *, batch_size: int, val_batch_size: int, seed: int,
                epoch: Callable[[], int], shard: Callable[[], tuple[int, int]]
                ) -> tuple[Iterable, Iterable | None]:
        if self.labels is None:
            return super().batches(data, batch_size=batch_size, val_batch_size=val_batch_size,
                                   seed=seed, epoch=epoch, shard=shard)
        return labelled_batches(self.model, data, self.labels, self.labelled_per_batch,
                                batch_size=batch_size, val_batch_size=val_batch_size,
                                seed=seed, epoch=epoch, shard=shard)

    def num_points(self, batch: tuple[Tensor, ...]) -> int:
        """Points of a batch: of ``(x_l, y_l, x_u)`` or ``(x, y)`` with labels."""
        return mixed_points(batch) if self.labels is not None else len(batch[0])

    def train_batch(self, batch: tuple[Tensor, ...], index: int, total: int,
                    last: bool = True) -> None:
        generator_opt, discriminator_opt = self.optimizers()
        model = self.model
        if not self._checked:
            self.check_first(batch, lambda: (model.discriminator_loss(*batch),
                                             model.generator_loss(*batch)))
        d_loss = model.discriminator_loss(*batch)
        d_loss = self.checked(d_loss, batch, index, train_discriminator_loss=d_loss)
        discriminator_opt.zero_grad()
        self.manual_backward(d_loss)
        discriminator_opt.step()
        g_loss = model.generator_loss(*batch)
        g_loss = self.checked(g_loss, batch, index, train_loss=g_loss)
        generator_opt.zero_grad()
        self.manual_backward(g_loss)
        generator_opt.step()

    def validate(self, batch: tuple[Tensor, ...]) -> dict[str, Tensor]:
        return {"val_loss": self.model.generator_loss(*batch).detach()}

    def configure_optimizers(self) -> Any:
        discriminator = list(self.model.discriminator.parameters())
        ids = {id(p) for p in discriminator}
        rest = [p for p in self.model.parameters() if id(p) not in ids]
        return adam(rest, self.lr), adam(discriminator, self.discriminator_lr)


class RWSPlan(TrainingPlan):
    """Reweighted wake-sleep (Bornschein & Bengio 2015), per data point.

    For each x_i of a batch, K draws h_{k,i} ~ q(h | x_i), held fixed (no
    reparameterization: discrete latents are welcome), log weights
    log w_{k,i} = log p(x_i, h_{k,i}) - log q(h_{k,i} | x_i) and their
    normalized values w~_{k,i} = w_{k,i} / sum_j w_{j,i}
    (:func:`ppvae.infer.importance.per_datapoint_log_densities`). The
    gradients, w~ held fixed::

        wake, p:   sum_k w~_{k,i} grad log p(x_i, h_{k,i})    = grad log (1/K) sum_k w_{k,i}
        wake, q:   sum_k w~_{k,i} grad log q(h_{k,i} | x_i)
        sleep, q:  grad log q(h' | x'),   (x', h') ~ p(x, h), as many as the batch

    The model's parameters follow the wake-p gradient; the guide's follow
    ``insomnia`` x wake-q + (1 - insomnia) x sleep-q (the paper found both
    phases together best: 0.5). One Adam step on the sum of the three
    surrogate losses, means per point: each reaches only its own side's
    parameters (log p the model's, log q the guide's; a parameter used by
    both sides gets both). The sleep phase needs the model's
    ``dream(n) -> (x, {latent site: value})``; ``insomnia=1`` needs none.
    Pyro's ``ReweightedWakeSleep`` weighs the whole batch as one data point
    (one weight per particle for the batch's joint density), which is why
    this plan exists.

    Logged: ``train_bound`` and ``val_bound``, the mean per point of
    log (1/K) sum_k w_{k,i} (the IWAE bound at the draws; its validation
    value picks the best epoch).

    Args:
        num_particles: K (at least 2: one draw has weight 1).
        insomnia: the wake share of the guide's gradient, in [0, 1].
        lr, seed, accel: as for :class:`TrainingPlan` (no twin: ``accel`` unused).
    """

    name = "rws"
    train_metric = "train_bound"
    metric_sign = -1.0
    monitor = ("val_bound", "max")

    def __init__(self, model: nn.Module, *, num_particles: int = 5, insomnia: float = 0.5,
                 lr: float = 1e-3, seed: int = 0, accel: bool = True) -> None:
        super().__init__(model, lr=lr, seed=seed, accel=accel)
        if num_particles < 2:
            raise ValueError(f"reweighted wake-sleep needs num_particles >= 2, got {num_particles}")
        if not 0 <= insomnia <= 1:
            raise ValueError(f"insomnia must lie in [0, 1], got {insomnia}")
        if insomnia < 1 and not callable(getattr(model, "dream", None)):
            raise ValueError(f"the sleep phase (insomnia < 1) draws from the model: "
                             f"{type(model).__name__} has no dream(n); use insomnia=1")
        self.num_particles, self.insomnia = num_particles, float(insomnia)
        self._nesting: int | None = None

    def wake(self, batch: tuple[Tensor, ...]) -> tuple[Tensor, Tensor, Tensor]:
        """Per point: the wake-p and wake-q surrogate losses and the bound."""
        model = self.model
        if self._nesting is None:
            self._nesting = max_plate_nesting(model.model, model.guide, *batch)
        log_p, log_q = per_datapoint_log_densities(
            model.model, model.guide, batch, {}, num_particles=self.num_particles,
            plate_nesting=self._nesting)
        log_w = (log_p - log_q).detach()
        weights = torch.softmax(log_w, 0)
        bound = torch.logsumexp(log_w, 0) - math.log(self.num_particles)
        return -(weights * log_p).sum(0), -(weights * log_q).sum(0), bound

    def sleep(self, n: int) -> Tensor:
        """The sleep-q surrogate loss, mean over n dreams: -log q(h' | x')."""
        x, latents = self.model.dream(n)
        trace = poutine.trace(poutine.condition(self.model.guide, data=latents)).get_trace(x)
        log_q = sum(site["fn"].log_prob(site["value"]).sum() for name, site in trace.nodes.items()
                    if site["type"] == "sample" and name in latents)
        return -log_q / n

    def loss(self, batch: tuple[Tensor, ...], index: int, total: int) -> Tensor:
        wake_p, wake_q, bound = self.wake(batch)
        loss = wake_p.mean() + self.insomnia * wake_q.mean()
        if self.insomnia < 1:
            loss = loss + (1 - self.insomnia) * self.sleep(len(batch[0]))
        self._bound = bound.mean().detach()
        return loss

    def train_metrics(self, loss: Tensor) -> dict[str, Tensor]:
        """The bound of the batch just scored, not the surrogate loss (given as a
        loss, its negative: :attr:`metric_sign` turns it back)."""
        return {self.train_metric: -self._bound}

    def validate(self, batch: tuple[Tensor, ...]) -> dict[str, Tensor]:
        return {"val_bound": self.wake(batch)[2].mean()}


#: the plans ``fit(plan=NAME)`` and a model's ``default_plan`` name
PLANS: dict[str, type[TrainingPlan]] = {
    plan.name: plan for plan in (ELBOPlan, SemiSupervisedPlan, ReconstructionPlan, AdversarialPlan,
                                 LayerwisePlan, JointPlan, RWSPlan)
}


def make_plan(model: nn.Module, plan: str | type[TrainingPlan] | None = None,
              **options: Any) -> TrainingPlan:
    """The plan ``plan`` (a name in :data:`PLANS`, a :class:`TrainingPlan`
    subclass, or None for the model's declared default) around ``model``
    with ``options``. Raises ``ValueError`` for an unknown plan or an option
    the plan does not take."""
    contract.check_model(model)
    plan = contract.default_plan(model) if plan is None else plan
    if isinstance(plan, str):
        if plan not in PLANS:
            raise ValueError(f"unknown training plan {plan!r}; choose one of {sorted(PLANS)}")
        plan = PLANS[plan]
    if not (isinstance(plan, type) and issubclass(plan, TrainingPlan)):
        raise ValueError(f"plan must be a name in {sorted(PLANS)} or a TrainingPlan subclass, "
                         f"got {plan!r}")
    accepted = {name for name, p in inspect.signature(plan.__init__).parameters.items()
                if p.kind is p.KEYWORD_ONLY}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ValueError(f"the {plan.name or plan.__name__!r} training plan takes no option(s) "
                         f"{unknown}; its options: {sorted(accepted)}")
    return plan(model, **options)
