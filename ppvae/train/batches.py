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
