"""M1+M2 (Kingma, Rezende, Mohamed & Welling 2014, "Semi-supervised learning
with deep generative models", Sec. 3.1.3): M2 (:class:`ppvae.models.SSVAE`)
learns from the codes z1 ~ q(z1 | x) of a VAE M1, p(z1) p(x | z1), trained on
all images, instead of from the images.

:class:`M1Codes` turns a trained M1 into those codes over its active
dimensions and classifies images through an M2 trained on them.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ppvae.data import Dataset, Split
from ppvae.models.ssvae import SSVAE
from ppvae.models.vae import VAE

#: a dimension of z1 is active when its posterior means vary over the training
#: images with a standard deviation above this; q(z1 | x) is the prior in the
#: others, which carry nothing about x
ACTIVE_CODE_STD = 0.1


class M1Codes:
    """The codes of a trained M1: q(z1 | x) = N(mean(x), diag scale(x)^2) over
    the dimensions active on ``x_train`` (``threshold``: :data:`ACTIVE_CODE_STD`).

    Raises:
        ValueError: M1 has no active dimension.
    """

    def __init__(self, m1: VAE, x_train: Tensor, threshold: float | None = None) -> None:
        self.m1 = m1
        threshold = ACTIVE_CODE_STD if threshold is None else threshold
        with torch.no_grad():
            self.active = m1.posterior(x_train).mean.std(0) > threshold
        if not bool(self.active.any()):
            raise ValueError(f"M1 has no active latent dimension (every posterior mean has a "
                             f"standard deviation <= {threshold} over the training images): "
                             "train it longer or with another latent dimension")

    @torch.no_grad()
    def __call__(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The mean and standard deviation of q(z1 | x) over the active dimensions."""
        q = self.m1.posterior(x)
        return q.mean[:, self.active], q.stddev[:, self.active]

    def dataset(self, data: Dataset, x_train: Tensor) -> Dataset:
        """``data`` with images replaced by codes and the same labels: training
        rows N(mean, scale^2) of ``x_train`` (drawn afresh in every batch:
        :class:`ppvae.data.Split`'s ``scale``), validation and test rows the means."""
        mean, scale = self(x_train)
        return Dataset(data.name, Split(mean, data.train.y, scale),
                       Split(self(data.val.x)[0], data.val.y),
                       Split(self(data.test.x)[0], data.test.y), (mean.shape[1],),
                       data.num_classes, data.class_names, None)

    @torch.no_grad()
    def predict(self, m2: SSVAE, x: Tensor, draws: int = 0, seed: int = 0) -> Tensor:
        """The classes of images ``x`` by an M2 trained on these codes: the
        argmax of q(y | mean(x)) (``draws=0``), or of (1/S) sum_s q(y | z1_s)
        with S = ``draws`` draws z1_s ~ q(z1 | x) (a Monte Carlo estimate of
        q(y | x) = E_q(z1 | x)[q(y | z1)] under the stacked model)."""
        mean, scale = self(x)
        if draws == 0:
            return m2.predict(mean)
        generator = torch.Generator(device=mean.device).manual_seed(seed)
        total = 0
        for _ in range(draws):
            eps = torch.randn(mean.shape, generator=generator, device=mean.device,
                              dtype=mean.dtype)
            total = total + m2.predict_proba(mean + scale * eps)
        return total.argmax(-1)
