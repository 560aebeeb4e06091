"""Mini-batches straight from tensors.

A per-item ``DataLoader`` collates every batch from single rows in Python;
slicing whole tensors is much cheaper. :class:`EpochBatches` yields tuples of
tensors, reshuffled every epoch by a generator seeded from ``(seed, epoch)``,
with optional dynamic binarization (each pixel re-drawn as Bernoulli(x) every
epoch; Salakhutdinov & Murray 2008, as used for MNIST by Burda et al. 2016).
Because the randomness depends only on the seed and the epoch, a run resumed
from a checkpoint sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor


def epoch_seed(seed: int, epoch: int, stream: int = 0) -> int:
    """A 63-bit seed for ``(seed, epoch, stream)``."""
    return hash((seed, epoch, stream)) & (2**63 - 1)


class EpochBatches:
    """Iterable over batches ``(x[idx], *others[idx])`` of one epoch.

    Args:
        tensors: tensors with the same first dimension; the first is the data x.
        batch_size: rows per batch (the last batch may be smaller).
        shuffle: reshuffle every epoch.
        dynamic_binarization: replace x by Bernoulli(x) draws each epoch.
        seed: base seed of the shuffling and binarization streams.
        epoch: a callable returning the current epoch (e.g. the trainer's).
    """

    def __init__(
        self,
        *tensors: Tensor,
        batch_size: int,
        shuffle: bool = False,
        dynamic_binarization: bool = False,
        seed: int = 0,
        epoch: Callable[[], int] = lambda: 0,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.tensors = tensors
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.dynamic_binarization = dynamic_binarization
        self.seed = seed
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.tensors[0]) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        n = len(self.tensors[0])
        epoch = self.epoch()
        order = None
        if self.shuffle:
            gen = torch.Generator().manual_seed(epoch_seed(self.seed, epoch, 0))
            order = torch.randperm(n, generator=gen)
        if self.dynamic_binarization:
            bin_gen = torch.Generator(device=self.tensors[0].device)
            bin_gen.manual_seed(epoch_seed(self.seed, epoch, 1))
        for start in range(0, n, self.batch_size):
            if order is None:
                batch = tuple(t[start : start + self.batch_size] for t in self.tensors)
            else:
                idx = order[start : start + self.batch_size]
                batch = tuple(t[idx] for t in self.tensors)
            if self.dynamic_binarization:
                batch = (torch.bernoulli(batch[0], generator=bin_gen), *batch[1:])
            yield batch


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
        dynamic_binarization, seed, epoch: as for :class:`EpochBatches`.
    """

    def __init__(
        self,
        labelled: tuple[Tensor, Tensor],
        unlabelled: Tensor,
        *,
        batch_size: int,
        labelled_per_batch: int,
        dynamic_binarization: bool = False,
        seed: int = 0,
        epoch: Callable[[], int] = lambda: 0,
    ) -> None:
        if labelled_per_batch < 1:
            raise ValueError(f"labelled_per_batch must be at least 1, got {labelled_per_batch}")
        self.unlabelled = EpochBatches(unlabelled, batch_size=batch_size, shuffle=True,
                                       dynamic_binarization=dynamic_binarization, seed=seed,
                                       epoch=epoch)
        self.labelled = labelled
        self.labelled_per_batch = labelled_per_batch
        self.dynamic_binarization = dynamic_binarization
        self.seed = seed
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.unlabelled)

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
        for (x_u,) in self.unlabelled:
            idx = torch.cat([next(indices) for _ in range(self.labelled_per_batch)])
            x_l, y_l = self.labelled[0][idx], self.labelled[1][idx]
            if self.dynamic_binarization:
                x_l = torch.bernoulli(x_l, generator=gen)
            yield x_l, y_l, x_u
