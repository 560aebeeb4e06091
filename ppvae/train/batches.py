"""Mini-batches straight from tensors.

A per-item ``DataLoader`` collates every batch from single rows in Python;
slicing whole tensors is much cheaper. :class:`EpochBatches` yields tuples of
tensors, reshuffled every epoch by a generator seeded from ``(seed, epoch)``,
with optional dynamic binarization (each pixel re-drawn as Bernoulli(x) every
epoch; Salakhutdinov & Murray 2008, as used for MNIST by Burda et al. 2016).
Because the randomness depends only on the seed and the epoch, a run resumed
from a checkpoint sees exactly the batches an uninterrupted run would.

Data parallelism: with ``shard`` returning ``(rank, world_size)``, every
process draws the same permutation and binarization of the epoch, forms the
same global batches as a single process would, and keeps its own contiguous
slice of each (slices differ in size by at most one point). The data of a step,
summed over the processes, is then exactly the single-process batch. An epoch's
last batch with fewer points than processes is merged into the batch before it,
so that no process is left without data in a step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence, Sized
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ppvae.data import Dataset
from ppvae.train import contract


Shard = Callable[[], tuple[int, int]]


def single_process() -> tuple[int, int]:
    """The ``shard`` of a run in one process: rank 0 of 1."""
    return 0, 1


def epoch_seed(seed: int, epoch: int, stream: int = 0, rank: int = 0) -> int:
    """A 63-bit seed for ``(seed, epoch, stream)``, distinct for each process
    ``rank`` > 0 (rank 0 gets the single-process seed)."""
    key = (seed, epoch, stream) if rank == 0 else (seed, epoch, stream, rank)
    return hash(key) & (2**63 - 1)


def global_batch_starts(n: int, batch_size: int, world_size: int) -> list[int]:
    """Where each global batch of an epoch of ``n`` points starts; a last batch
    with fewer points than processes is merged into the one before it."""
    if n < world_size:
        raise ValueError(f"{n} data points cannot be shared among {world_size} processes")
    starts = list(range(0, n, batch_size))
    if len(starts) > 1 and n - starts[-1] < world_size:
        starts.pop()
    return starts


def noisy(x: Tensor, scale: Tensor, generator: torch.Generator) -> Tensor:
    """A draw of N(x, diag scale^2): ``x + scale * eps``, eps ~ N(0, I)."""
    eps = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return torch.addcmul(x, scale, eps)


def take_shard(batch: tuple[Tensor, ...], rank: int, world_size: int) -> tuple[Tensor, ...]:
    """Process ``rank``'s contiguous slice of every tensor of a global batch."""
    if world_size == 1:
        return batch
    return tuple(t.tensor_split(world_size)[rank] for t in batch)


class EpochBatches:
    """Iterable over batches ``(x[idx], *others[idx])`` of one epoch.

    Args:
        tensors: tensors with the same first dimension; the first is the data x.
        batch_size: rows per batch (the last batch may be smaller).
        shuffle: reshuffle every epoch.
        dynamic_binarization: replace x by Bernoulli(x) draws each epoch.
        noise_scale: ``None``, or standard deviations of the shape of x:
            replace x by draws of N(x, diag noise_scale^2) in every batch
            (:attr:`ppvae.data.Split.scale`).
        seed: base seed of the shuffling and binarization streams.
        epoch: a callable returning the current epoch (e.g. the trainer's).
        shard: a callable returning ``(rank, world_size)`` of this process
            (e.g. the trainer's) under data parallelism; each batch is then
            this process's slice of the global batch of ``batch_size`` points.
    """

    def __init__(
        self,
        *tensors: Tensor,
        batch_size: int,
        shuffle: bool = False,
        dynamic_binarization: bool = False,
        noise_scale: Tensor | None = None,
        seed: int = 0,
        epoch: Callable[[], int] = lambda: 0,
        shard: Shard = single_process,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if noise_scale is not None and noise_scale.shape != tensors[0].shape:
            raise ValueError(f"noise_scale of shape {tuple(noise_scale.shape)} for data of "
                             f"shape {tuple(tensors[0].shape)}")
        self.tensors = tensors
        self.noise_scale = noise_scale
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.dynamic_binarization = dynamic_binarization
        self.seed = seed
        self.epoch = epoch
        self.shard = shard

    def __len__(self) -> int:
        return len(global_batch_starts(len(self.tensors[0]), self.batch_size, self.shard()[1]))

    def inputs(self) -> Tensor:
        """All the data x, as given (before binarization or noise)."""
        return self.tensors[0]

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        n = len(self.tensors[0])
        rank, world_size = self.shard()
        starts = global_batch_starts(n, self.batch_size, world_size)
        epoch = self.epoch()
        order = None
        if self.shuffle:
            gen = torch.Generator().manual_seed(epoch_seed(self.seed, epoch, 0))
            order = torch.randperm(n, generator=gen)
        if self.dynamic_binarization or self.noise_scale is not None:
            draw_gen = torch.Generator(device=self.tensors[0].device)
            draw_gen.manual_seed(epoch_seed(self.seed, epoch, 1))
        tensors = self.tensors if self.noise_scale is None else (*self.tensors, self.noise_scale)
        for start, stop in zip(starts, starts[1:] + [n]):
            if order is None:
                batch = tuple(t[start:stop] for t in tensors)
            else:
                idx = order[start:stop]
                batch = tuple(t[idx] for t in tensors)
            # draws on the global batch: the single-process draws
            if self.noise_scale is not None:
                *batch, scale = batch
                batch = (noisy(batch[0], scale, draw_gen), *batch[1:])
            if self.dynamic_binarization:
                batch = (torch.bernoulli(batch[0], generator=draw_gen), *batch[1:])
            yield take_shard(tuple(batch), rank, world_size)


class MixedBatches:
    """Batches ``(x_l, y_l, x_u)`` mixing labelled and unlabelled data in a
    fixed ratio, so that training sees labels in every step however few there
    are (Kingma et al. 2014). An epoch is one pass over the unlabelled data;
    the labelled data are cycled, reshuffled on each pass.

    Args:
        labelled: ``(x_l, y_l)``.
        unlabelled: ``x_u``.
        batch_size: unlabelled points per batch.
        labelled_per_batch: labelled points per batch.
        noise_scale: ``None``, or ``(scale_l, scale_u)``: the standard
            deviations of x_l and of x_u (each may be ``None``), as for
            :class:`EpochBatches`.
        dynamic_binarization, seed, epoch, shard: as for :class:`EpochBatches`;
            under data parallelism the labelled and the unlabelled points of
            each global batch are both split among the processes (a process
            may get no labelled point in a step if ``labelled_per_batch`` is
            smaller than the number of processes).
    """

    def __init__(
        self,
        labelled: tuple[Tensor, Tensor],
        unlabelled: Tensor,
        *,
        batch_size: int,
        labelled_per_batch: int,
        dynamic_binarization: bool = False,
        noise_scale: tuple[Tensor | None, Tensor | None] | None = None,
        seed: int = 0,
        epoch: Callable[[], int] = lambda: 0,
        shard: Shard = single_process,
    ) -> None:
        if labelled_per_batch < 1:
            raise ValueError(f"labelled_per_batch must be at least 1, got {labelled_per_batch}")
        scale_l, scale_u = noise_scale or (None, None)
        if scale_l is not None and scale_l.shape != labelled[0].shape:
            raise ValueError(f"noise_scale of shape {tuple(scale_l.shape)} for labelled data "
                             f"of shape {tuple(labelled[0].shape)}")
        self.unlabelled = EpochBatches(unlabelled, batch_size=batch_size, shuffle=True,
                                       dynamic_binarization=dynamic_binarization,
                                       noise_scale=scale_u, seed=seed, epoch=epoch, shard=shard)
        self.labelled = labelled
        self.labelled_scale = scale_l
        self.labelled_per_batch = labelled_per_batch
        self.dynamic_binarization = dynamic_binarization
        self.seed = seed
        self.epoch = epoch
        self.shard = shard

    def __len__(self) -> int:
        return len(self.unlabelled)

    def inputs(self) -> Tensor:
        """All the data x, labelled then unlabelled, as given."""
        return torch.cat([self.labelled[0], self.unlabelled.inputs()])

    def _labelled_indices(self, epoch: int) -> Iterator[Tensor]:
        gen = torch.Generator().manual_seed(epoch_seed(self.seed, epoch, 3))
        n = len(self.labelled[0])
        while True:
            yield from torch.split(torch.randperm(n, generator=gen), 1)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        epoch = self.epoch()
        indices = self._labelled_indices(epoch)
        gen = torch.Generator(device=self.labelled[0].device)
        gen.manual_seed(epoch_seed(self.seed, epoch, 4))
        rank, world_size = self.shard()
        for (x_u,) in self.unlabelled:
            idx = torch.cat([next(indices) for _ in range(self.labelled_per_batch)])
            x_l, y_l = self.labelled[0][idx], self.labelled[1][idx]
            if self.labelled_scale is not None:
                x_l = noisy(x_l, self.labelled_scale[idx], gen)
            if self.dynamic_binarization:
                x_l = torch.bernoulli(x_l, generator=gen)
            yield (*take_shard((x_l, y_l), rank, world_size), x_u)


class Groups:
    """The batches of ``batches``, ``size`` consecutive ones at a time, as
    ``(group, first, total)``: the group's batches, the index of its first
    batch in the epoch and the epoch's number of batches.

    The trainer takes one group per Lightning step and makes one optimizer
    step per batch in it, so Lightning's per-step work (batch hooks, progress
    and logging bookkeeping) is paid once per group; the batches, their order
    and the updates are those of ungrouped training.
    A group is lazy (:class:`LazyGroup`): each batch is made when the step
    that uses it asks for it, as in a plain loop, so that it is still in
    cache when the step reads it and only one batch is held at a time,
    whatever the group's size. The groups must be consumed in order, each
    one entirely before the next (as the trainer does); Lightning may fetch
    the next group before the current one is consumed, since fetching a
    group makes none of its batches.
    """

    def __init__(self, batches: Iterable, size: int | Callable[[], int]) -> None:
        if not isinstance(batches, Sized):
            raise TypeError("Groups needs batches with a length")
        self.batches = batches
        self._size = size

    @property
    def size(self) -> int:
        """Batches per group: ``size`` (which may be a callable, read at each
        epoch, e.g. one under data parallelism)."""
        size = self._size() if callable(self._size) else self._size
        if size < 1:
            raise ValueError(f"size must be at least 1, got {size}")
        return size

    def __len__(self) -> int:
        return math.ceil(len(self.batches) / self.size)

    def __iter__(self) -> Iterator[tuple[LazyGroup, int, int]]:
        total, size = len(self.batches), self.size
        source = iter(self.batches)
        for first in range(0, total, size):
            yield LazyGroup(source, min(size, total - first)), first, total


class LazyGroup:
    """``length`` consecutive batches of an epoch, taken from the epoch's
    batch iterator only as they are iterated over (once)."""

    def __init__(self, source: Iterator, length: int) -> None:
        self._source = source
        self._length = length
        self._used = False

    def __len__(self) -> int:
        return self._length

    def __iter__(self) -> Iterator:
        if self._used:
            raise RuntimeError("a group's batches can be iterated over only once")
        self._used = True
        for _ in range(self._length):
            yield next(self._source)


TrainData = Dataset | Tensor | np.ndarray | Sequence[Tensor | np.ndarray]


def model_batches(model: Any, data: TrainData, *, batch_size: int, val_batch_size: int,
                  seed: int, epoch: Callable[[], int], shard: Shard
                  ) -> tuple[Iterable, Iterable | None]:
    """Validated training and validation batches of ``(x,)`` for ``model``
    (this process's slices of them under data parallelism), or of
    ``condition_batch(x, y) = (x, c)`` for a conditional model
    (:mod:`ppvae.train.contract`).

    ``data`` is a :class:`ppvae.data.Dataset` (its train/val splits; dynamic
    binarization re-draws the training pixels every epoch; noise scales of
    its training split draw x ~ N(x, scale^2) every batch), a tensor of
    training data, or a pair ``(x_train, x_val)``. Raises ``ValueError`` for
    bad data before any training.
    """
    if contract.is_conditional(model):
        return _conditional_batches(model, data, batch_size=batch_size,
                                    val_batch_size=val_batch_size, seed=seed, epoch=epoch,
                                    shard=shard)
    if isinstance(data, Dataset):
        dynamic = data.binarize == "dynamic"
        train_x = contract.prepare(model, data.train.x, name="training data",
                                   support="unit" if dynamic else None)
        val_x = (contract.prepare(model, data.val.x, name="validation data")
                 if len(data.val) else None)
        scale = _on(data.train.scale, train_x)
    elif isinstance(data, (list, tuple)):
        if len(data) != 2:
            raise ValueError("data must be a Dataset, a tensor x, or a pair (x_train, x_val)")
        dynamic, scale = False, None
        train_x = contract.prepare(model, data[0], name="training data")
        val_x = contract.prepare(model, data[1], name="validation data")
    else:
        dynamic, scale, val_x = False, None, None
        train_x = contract.prepare(model, data, name="training data")
    train = EpochBatches(train_x, batch_size=batch_size, shuffle=True, dynamic_binarization=dynamic,
                         noise_scale=scale, seed=seed, epoch=epoch, shard=shard)
    if val_x is None:
        return train, None
    return train, EpochBatches(val_x, batch_size=val_batch_size, shard=shard)


def _on(scale: Tensor | None, x: Tensor) -> Tensor | None:
    """The noise scales of a split (:attr:`ppvae.data.Split.scale`) on x's device."""
    return None if scale is None else scale.to(device=x.device, dtype=x.dtype)


class _Conditioned:
    """Batches ``(x, y)`` turned into ``model.condition_batch(x, y)`` = ``(x, c)``."""

    def __init__(self, model: Any, batches: EpochBatches) -> None:
        self.model = model
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def inputs(self) -> Tensor:
        """All the data x, as given."""
        return self.batches.inputs()

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        return (self.model.condition_batch(x, y) for x, y in self.batches)


def _conditional_batches(model: Any, data: TrainData, *, batch_size: int, val_batch_size: int,
                         seed: int, epoch: Callable[[], int], shard: Shard
                         ) -> tuple[Iterable, Iterable | None]:
    """Batches ``(x, c)`` of a conditional model from a Dataset: c is made
    from each batch after dynamic binarization, so a partial image shows the
    pixels of its own x."""
    if not isinstance(data, Dataset):
        raise ValueError(f"{type(model).__name__} trains on a Dataset: its labels or images "
                         "give the conditions")
    dynamic = data.binarize == "dynamic"
    train_x = contract.prepare(model, data.train.x, name="training data",
                               support="unit" if dynamic else None)
    train_y = data.train.y.to(train_x.device)
    model.condition_batch(train_x, train_y)  # bad labels fail here, before training
    train = EpochBatches(train_x, train_y, batch_size=batch_size, shuffle=True,
                         dynamic_binarization=dynamic, noise_scale=_on(data.train.scale, train_x),
                         seed=seed, epoch=epoch, shard=shard)
    if not len(data.val):
        return _Conditioned(model, train), None
    val_x = contract.prepare(model, data.val.x, name="validation data")
    val = EpochBatches(val_x, data.val.y.to(val_x.device), batch_size=val_batch_size, shard=shard)
    return _Conditioned(model, train), _Conditioned(model, val)
