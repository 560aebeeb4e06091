"""Corruption processes x~ ~ C(x~ | x) of denoising models (Vincent et al.
2008, 2010, "Extracting and composing robust features with denoising
autoencoders", "Stacked denoising autoencoders"; Im et al. 2017, "Denoising
criterion for variational auto-encoding framework").

A denoising model's guide sees x~ while its model scores the clean x; the
corruption is an auxiliary draw outside Pyro's sample sites, like dropout.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

#: the corruption kinds :class:`Corruption` knows
NOISES = ("gaussian", "masking")


class Corruption(nn.Module):
    """C(x~ | x): ``"gaussian"``, x~ = x + ``level`` * eps with eps ~ N(0, I);
    or ``"masking"``, each value of x set to 0 with probability ``level``
    (independently), the others kept.

    Calling it draws x~ from torch's random state; ``level = 0`` returns x.
    """

    def __init__(self, kind: str = "gaussian", level: float = 0.1) -> None:
        super().__init__()
        if kind not in NOISES:
            raise ValueError(f"unknown noise {kind!r}; choose one of {list(NOISES)}")
        if not level >= 0 or (kind == "masking" and level >= 1):
            raise ValueError(f"noise_level must be in [0, {'1)' if kind == 'masking' else 'inf)'}"
                             f" for {kind} noise, got {level}")
        self.kind, self.level = kind, float(level)

    def forward(self, x: Tensor) -> Tensor:
        if self.level == 0:
            return x
        if self.kind == "gaussian":
            return x + self.level * torch.randn_like(x)
        return x * (torch.rand_like(x) >= self.level).to(x.dtype)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, level={self.level}"
