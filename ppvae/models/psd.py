"""Sparse coding and predictive sparse decomposition (PSD; Kavukcuoglu,
Ranzato & LeCun 2008, "Fast inference in sparse coding algorithms with
applications to object recognition"), with the codes found by FISTA (Beck &
Teboulle 2009, "A fast iterative shrinkage-thresholding algorithm for linear
inverse problems").

Generative model and guide, for each data point i::

    z_i ~ prod_j Laplace(0, 1 / lambda)     the sparsity prior
    x_i ~ N(D z_i, I)                       D: the dictionary, unit-norm columns
    q(z_i | x_i) = delta(z_i - z*(x_i))     z*(x) = argmin_z 1/2 |x - D z|^2
                                                              + lambda |z|_1

The point mass sits at the MAP code z*(x): the negative ELBO of a data point is
1/2 |x - D z*|^2 + lambda |z*|_1 + (D_in / 2) log(2 pi) + K log(2 / lambda),
the sparse-coding energy plus constants (D_in pixels, K atoms). z* is found by
a fixed number of FISTA iterations, warm-started from the predictive encoder,
and detached: no gradient flows through the iterations, so the dictionary
learns from the reconstruction at fixed codes (Olshausen & Field 1996).

The predictive encoder F(x) = G * tanh(W x + b), with learned diagonal gains G
(the paper's Eq. 3), is trained to predict the codes by the penalty
alpha |z*(x) - F(x)|^2 per point, which the reconstruction plan adds to the
loss (:class:`ppvae.train.ReconstructionPlan`); it is not a density and stays
out of ``model``. Unlike the paper, whose inference minimizes the energy with
the prediction term included, z* here is the sparse-coding MAP alone, the
posterior mode of the model above; F only warm-starts it. With alpha = 0 the
model is plain sparse coding: F keeps its initial weights and serves only as
the warm start.

D = V / |V|_col is a parametrization of the unconstrained V: the columns have
unit norm by construction after every optimizer step, with no projection hook.

Not a density of x (``density = False``): the guide is a point mass, so the
importance-weighted estimator refuses it; :func:`ppvae.infer.reconstruction_error`
scores it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from torch import Tensor, nn
from torch.nn.functional import normalize

from ppvae.models.autoencoder import Autoencoder
from ppvae.models.registry import register
from ppvae.pieces import GaussianLikelihood, LaplacePrior

#: the codes :meth:`PredictiveSparseDecomposition.encode` offers
METHODS = ("ista", "predict")


def soft_threshold(v: Tensor, threshold: float) -> Tensor:
    """sign(v) max(|v| - threshold, 0), elementwise: the proximal map of
    ``threshold`` |.|_1."""
    return torch.sign(v) * (v.abs() - threshold).clamp_min(0.0)


@torch.no_grad()
def fista(x: Tensor, D: Tensor, lam: float, iterations: int,
          z0: Tensor | None = None) -> Tensor:
    """Codes argmin_z 1/2 |x - D z|^2 + ``lam`` |z|_1 of each row of ``x``
    ``(N, D_in)`` for a dictionary ``D`` ``(D_in, K)`` (nonzero), by
    ``iterations`` steps of FISTA with step 1 / L, L = |D|_2^2 the largest
    eigenvalue of D^T D, from ``z0`` ``(N, K)`` (default 0). Returns ``(N, K)``
    codes without gradient; the objective gap after k steps is at most
    2 L |z0 - z*|^2 / (k + 1)^2."""
    if iterations < 1:
        raise ValueError(f"FISTA needs at least 1 iteration, got {iterations}")
    if not lam >= 0:
        raise ValueError(f"the L1 weight must be non-negative, got {lam}")
    step = 1.0 / torch.linalg.matrix_norm(D, 2).square()
    gram, target = D.T @ D, x @ D  # the gradient at z is z D^T D - x D
    z = torch.zeros(len(x), D.shape[1], dtype=x.dtype, device=x.device) if z0 is None else z0
    y, t = z, 1.0
    for _ in range(iterations):
        z_next = soft_threshold(y - step * (y @ gram - target), lam * step)
        t_next = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
        y = z_next + ((t - 1.0) / t_next) * (z_next - z)
        z, t = z_next, t_next
    return z


class Dictionary(nn.Module):
    """The linear decoder z -> D z, no bias, with D = V / |V|_col: unit-norm
    columns (atoms) for any V. Called as ``net(z, context=None)``."""

    def __init__(self, input_dim: int, latent_dim: int) -> None:
        super().__init__()
        self.atoms = nn.Parameter(torch.randn(input_dim, latent_dim))

    @property
    def weight(self) -> Tensor:
        """D ``(input_dim, latent_dim)``, differentiable in V."""
        return normalize(self.atoms, dim=0)

    def forward(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        return z @ self.weight.T


class PredictiveSparseDecomposition(Autoencoder):
    """Sparse coding with a predictive encoder (PSD), as a Pyro model/guide pair.

    Args:
        input_shape: ``(C, H, W)`` of the images, or ``D``; data are passed
            flattened, ``(batch, D)``.
        latent_dim: K, the number of atoms (columns of D).
        sparsity: lambda > 0, the L1 weight (the Laplace prior's rate).
        prediction: alpha >= 0, the weight of the prediction penalty
            alpha |z* - F(x)|^2 (0: plain sparse coding, F untrained).
        iterations: FISTA iterations per inference of z*.

    ``model(x)`` and ``guide(x)`` put the batch in ``pyro.plate("data",
    len(x))``; the guide's site ``z`` is a point mass at z*(x). The base
    class's one-layer encoder with a tanh code activation makes tanh(W x + b);
    its decoder is replaced by the :class:`Dictionary`.
    """

    def __init__(
        self,
        input_shape: int | Sequence[int] = (1, 8, 8),
        latent_dim: int = 64,
        sparsity: float = 0.5,
        prediction: float = 1.0,
        iterations: int = 50,
    ) -> None:
        if not (sparsity > 0 and math.isfinite(sparsity)):
            raise ValueError(f"sparsity (lambda) must be positive and finite, got {sparsity}")
        if not (prediction >= 0 and math.isfinite(prediction)):
            raise ValueError(f"prediction (alpha) must be non-negative and finite, "
                             f"got {prediction}")
        check_iterations(iterations)
        super().__init__(input_shape, latent_dim, hidden=(), likelihood="gaussian",
                         code_activation="tanh")
        self.config = dict(input_shape=list(self.input_shape), latent_dim=latent_dim,
                           sparsity=sparsity, prediction=prediction, iterations=iterations)
        self.sparsity, self.prediction = float(sparsity), float(prediction)
        self.iterations = iterations
        self.prior = LaplacePrior(latent_dim, weight=sparsity)
        self.likelihood = GaussianLikelihood(Dictionary(self.input_dim, latent_dim),
                                             self.input_dim, init_scale=1.0, learn_scale=False)
        #: G, the predictive encoder's diagonal gains
        self.gains = nn.Parameter(torch.ones(latent_dim))

    def code(self, x: Tensor) -> Tensor:
        """F(x) = G * tanh(W x + b), differentiable, for a batch ``(batch, D)``."""
        return self.gains * super().code(x)

    def _map_codes(self, x: Tensor, iterations: int) -> Tensor:
        """z*(x) by FISTA from F(x), without gradient, for a checked batch."""
        return fista(x, self.likelihood.net.weight, self.sparsity, iterations, z0=self.code(x))

    def guide(self, x: Tensor) -> None:
        """The point mass at the MAP code z*(x)."""
        self.pyro_module()
        self.check_shape(x)
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Delta(self._map_codes(x, self.iterations), event_dim=1))

    def penalties(self, x: Tensor) -> dict[str, Tensor]:
        """``prediction``: alpha |z*(x) - F(x)|^2, the mean over the batch
        (none when alpha = 0)."""
        if self.prediction == 0:
            return {}
        error = self._map_codes(x, self.iterations) - self.code(x)
        return {"prediction": self.prediction * error.pow(2).sum(-1).mean()}

    # ----------------------------------------------------------- conveniences
    @torch.no_grad()
    def sparse_codes(self, x: Tensor, iterations: int | None = None) -> Tensor:
        """z*(x) ``(batch, latent_dim)`` by FISTA (``iterations``, default the
        model's), warm-started from F(x), of a batch (validated input)."""
        iterations = self.iterations if iterations is None else check_iterations(iterations)
        return self._map_codes(self.prepare(x), iterations)

    @torch.no_grad()
    def predict_codes(self, x: Tensor) -> Tensor:
        """F(x) ``(batch, latent_dim)``, the predictive encoder's codes."""
        return self.code(self.prepare(x))

    @torch.no_grad()
    def encode(self, x: Tensor, method: str = "predict") -> Tensor:
        """Codes of a batch: ``"predict"``, F(x); ``"ista"``, z*(x) by FISTA."""
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose one of {list(METHODS)}")
        return self.predict_codes(x) if method == "predict" else self.sparse_codes(x)

    @torch.no_grad()
    def reconstruct(self, x: Tensor, method: str = "ista") -> Tensor:
        """D z: reconstructions of a batch from its codes by ``method``
        (default z*(x), the guide's: what the model's reconstruction error is)."""
        return self.decode(self.encode(x, method=method))

    @torch.no_grad()
    def dictionary(self) -> Tensor:
        """D ``(input_dim, latent_dim)``: the atoms, unit-norm columns."""
        return self.likelihood.net.weight


def check_iterations(iterations: int) -> int:
    """``iterations`` if it is an integer >= 1; ``ValueError`` otherwise."""
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
        raise ValueError(f"iterations must be an integer >= 1, got {iterations!r}")
    return iterations


register("psd", PredictiveSparseDecomposition, summary="sparse coding (Laplace prior, "
         "Gaussian pixels, unit-norm dictionary) with FISTA MAP codes and a predictive "
         "encoder trained to predict them; not a density",
         paper="Olshausen & Field 1996; Kavukcuoglu, Ranzato & LeCun 2008; "
               "Beck & Teboulle 2009")
