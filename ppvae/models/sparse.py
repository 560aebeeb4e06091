"""Sparse autoencoders: codes with few active units.

Two kinds, both on the plain autoencoder (:mod:`ppvae.models.autoencoder`):

- ``"l1"``: MAP inference under a Laplace prior, p(z) = prod_j
  Laplace(z_j; 0, 1 / weight), so that -log p(z) = weight * |z|_1 + const and
  the negative ELBO of the point-mass pair is the reconstruction loss plus
  the L1 penalty on the code. The prior is part of the model (a density);
  the pair is still not a density of x (point-mass guide).
- ``"kl"``: Ng's sparse autoencoder (CS294A lecture notes, 2011): sigmoid codes
  whose mean activation over the batch, rho_hat_j = mean_i z_ij, is pulled to
  a small ``target`` rho by the penalty weight * sum_j KL(rho || rho_hat_j),
  KL(rho || r) = rho log(rho / r) + (1 - rho) log((1 - rho) / (1 - r)). It is
  a statistic of the batch, not a density of any point, so the reconstruction
  plan adds it to the loss (``penalties``); the prior stays flat.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ppvae.models.autoencoder import Autoencoder
from ppvae.models.registry import register
from ppvae.pieces import LaplacePrior

SPARSITIES = ("l1", "kl")


class SparseAutoencoder(Autoencoder):
    """A sparse autoencoder (L1 / Laplace prior, or the KL penalty on mean
    activations).

    Args:
        input_shape, latent_dim, hidden, likelihood, network, activation: as
            for :class:`Autoencoder`.
        sparsity: ``"l1"`` or ``"kl"``.
        weight: the L1 weight (the Laplace prior's inverse scale) or the KL
            penalty's weight.
        target: the mean activation rho of the ``"kl"`` penalty, in (0, 1).
        code_activation: the code's activation for ``"l1"`` (None: linear;
            ``"relu"`` gives non-negative codes with exact zeros); ``"kl"``
            codes are sigmoid.
    """

    def __init__(
        self,
        input_shape: int | Sequence[int] = (1, 8, 8),
        latent_dim: int = 64,
        hidden: Sequence[int] = (256,),
        likelihood: str = "gaussian",
        network: str = "mlp",
        activation: str = "relu",
        sparsity: str = "l1",
        weight: float = 0.1,
        target: float = 0.05,
        code_activation: str | None = None,
    ) -> None:
        if sparsity not in SPARSITIES:
            raise ValueError(f"unknown sparsity {sparsity!r}; choose one of {list(SPARSITIES)}")
        if not weight > 0:
            raise ValueError(f"weight must be positive, got {weight}")
        if not 0 < target < 1:
            raise ValueError(f"target must lie in (0, 1), got {target}")
        if sparsity == "kl" and code_activation not in (None, "sigmoid"):
            raise ValueError(f"the KL penalty needs sigmoid codes, got {code_activation!r}")
        super().__init__(input_shape, latent_dim, hidden, likelihood, network, activation,
                         "sigmoid" if sparsity == "kl" else code_activation)
        self.config.update(sparsity=sparsity, weight=weight, target=target,
                           code_activation=code_activation)
        self.sparsity, self.weight, self.target = sparsity, float(weight), float(target)
        if sparsity == "l1":
            self.prior = LaplacePrior(latent_dim, weight)

    def penalties(self, x: Tensor) -> dict[str, Tensor]:
        """``{"kl_sparsity": weight * sum_j KL(rho || rho_hat_j)}`` for
        ``"kl"`` (on the codes of the guide's input); none for ``"l1"``,
        whose penalty is the prior's -log p(z)."""
        if self.sparsity != "kl":
            return {}
        rho = self.target
        r = self.code(self.corrupt(x)).mean(0).clamp(1e-6, 1 - 1e-6)
        kl = rho * torch.log(rho / r) + (1 - rho) * torch.log((1 - rho) / (1 - r))
        return {"kl_sparsity": self.weight * kl.sum()}


register("sparse-ae", SparseAutoencoder, summary="sparse autoencoder: L1 codes (MAP under a "
         "Laplace prior) or the KL penalty on mean activations; not a density",
         paper="Olshausen & Field 1996; Ng 2011")
