"""Quadrant masks for structured output prediction (image completion).

Sohn, Lee & Yan (2015), "Learning structured output representation using
deep conditional generative models" (NeurIPS), split each digit image into
four quadrants, give one, two or three of them as the input and ask for the
rest. As in their experiment and in Pyro's CVAE tutorial, the given quadrants
are, for ``num_given`` =

- 1: the bottom-left quadrant;
- 2: the left half (top-left and bottom-left);
- 3: all but the bottom-right quadrant.

For an image of height H and width W, the top half is the first H // 2 rows
and the left half the first W // 2 columns.

A partial image (the *condition* of a conditional model) holds the given
pixels and :data:`HIDDEN` (-1, outside any pixel range) at the hidden ones, so
the mask travels with the data: ``hidden = (c == HIDDEN)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .errors import DataError

HIDDEN: float = -1.0
QUADRANT_COUNTS: tuple[int, ...] = (1, 2, 3)


def quadrant_mask(image_shape: Sequence[int], num_given: int) -> Tensor:
    """The given pixels of a flattened ``(C, H, W)`` image: a bool tensor of
    shape ``(C*H*W,)``, True where a pixel lies in one of the ``num_given``
    given quadrants (the same for every channel).

    Raises:
        DataError: ``num_given`` not in 1..3, or ``image_shape`` not (C, H, W)
            with H, W >= 2.
    """
    if num_given not in QUADRANT_COUNTS:
        raise DataError(f"the number of given quadrants must be 1, 2 or 3, got {num_given!r}")
    if len(image_shape) != 3 or image_shape[1] < 2 or image_shape[2] < 2 or image_shape[0] < 1:
        raise DataError(f"quadrants need an image shape (C, H, W) with H, W >= 2, "
                        f"got {tuple(image_shape)}")
    channels, height, width = (int(s) for s in image_shape)
    given = torch.zeros(height, width, dtype=torch.bool)
    given[height // 2 :, : width // 2] = True  # bottom-left
    if num_given >= 2:
        given[:, : width // 2] = True  # the left half
    if num_given == 3:
        given[: height // 2, :] = True  # and the top half
    return given.expand(channels, height, width).reshape(-1)


def mask_quadrants(x: Tensor, image_shape: Sequence[int], num_given: int) -> Tensor:
    """Partial images: ``x`` (flattened, ``(N, C*H*W)``) with every pixel
    outside the ``num_given`` given quadrants set to :data:`HIDDEN`."""
    given = quadrant_mask(image_shape, num_given).to(x.device)
    if x.shape[-1] != given.numel():
        raise DataError(f"images of {x.shape[-1]} values for image_shape {tuple(image_shape)}")
    return torch.where(given, x, torch.full_like(x, HIDDEN))


def hidden_pixels(c: Tensor) -> Tensor:
    """The hidden pixels of partial images ``c``: a bool tensor, True where
    ``c`` is :data:`HIDDEN`."""
    return c == HIDDEN
