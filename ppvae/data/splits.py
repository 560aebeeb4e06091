"""Labelled/unlabelled splits for semi-supervised learning.

``label_split(train, num_labels, num_classes, seed)`` keeps the labels of
``num_labels`` training points, balanced over classes (num_labels / num_classes
each) and chosen by ``seed``; the rest of the training split becomes the
unlabelled set. The labelled points come from the training split only, never
from validation or test data (Kingma, Rezende, Mohamed & Welling 2014).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .datasets import Split
from .errors import DataError


@dataclass(frozen=True, eq=False)
class LabelSplit:
    """A training split divided into labelled and unlabelled points.

    Attributes:
        labelled: the points whose labels are used.
        unlabelled: the others; their ``y`` is kept for reference only
            (semi-supervised training must not read it).
        num_classes: number of classes.
    """

    labelled: Split
    unlabelled: Split
    num_classes: int

    def __repr__(self) -> str:
        return (f"LabelSplit(labelled={len(self.labelled)}, unlabelled={len(self.unlabelled)}, "
                f"num_classes={self.num_classes})")


def label_split(train: Split, num_labels: int, num_classes: int, seed: int = 0) -> LabelSplit:
    """Keep ``num_labels`` labels of ``train``, ``num_labels // num_classes`` per class.

    Raises:
        DataError: if the split has no labels, ``num_labels`` is not a positive
            multiple of ``num_classes``, or a class has too few points.
    """
    if num_classes < 2:
        raise DataError(f"semi-supervised learning needs at least 2 classes, got {num_classes}")
    if bool((train.y < 0).any()):
        raise DataError("the training split has unlabelled points (y = -1): no labels to keep")
    if bool((train.y >= num_classes).any()):
        raise DataError(f"labels must lie in 0..{num_classes - 1}, got {int(train.y.max())}")
    if num_labels < num_classes or num_labels % num_classes:
        raise DataError(
            f"num_labels must be a positive multiple of the {num_classes} classes (balanced "
            f"labels), got {num_labels}"
        )
    per_class = num_labels // num_classes
    gen = torch.Generator().manual_seed(seed)
    chosen = []
    for c in range(num_classes):
        members = (train.y == c).nonzero().flatten()
        if len(members) < per_class:
            raise DataError(f"class {c} has {len(members)} training points, fewer than the "
                            f"{per_class} labels asked for per class")
        chosen.append(members[torch.randperm(len(members), generator=gen)[:per_class]])
    labelled = torch.cat(chosen).sort().values
    mask = torch.ones(len(train), dtype=torch.bool)
    mask[labelled] = False
    return LabelSplit(train.subset(labelled), train.subset(mask), num_classes)
