"""The contractive autoencoder (Rifai, Vincent, Muller, Glorot & Bengio 2011,
"Contractive auto-encoders: explicit invariance during feature extraction",
ICML).

The probabilistic program is the plain autoencoder's
(:mod:`ppvae.models.autoencoder`), for each data point i::

    z_i ~ p(z)                          flat (improper)
    x_i ~ p(x | z_i)                    N(g(z_i), I), continuous Bernoulli or Bernoulli
    q(z_i | x_i) = delta(z_i - f(x_i))  the code, by default f(x) = sigmoid(encoder(x))

so the negative ELBO is the reconstruction loss -log p(x_i | z = f(x_i)). The
contraction is no density of x or z: it is a penalty, declared by
:meth:`ContractiveAutoencoder.penalties` and added to the loss per data point
by the reconstruction plan (:class:`ppvae.train.ReconstructionPlan`), never
put in ``model``. The training loss per data point is (Rifai et al. Eq. 2)::

    -log p(x_i | z = f(x_i)) + lambda ||J_f(x_i)||_F^2,   J_f(x) = df(x) / dx,

the squared Frobenius norm of the Jacobian of the code with respect to the
clean input, which makes the code locally insensitive to moves of x off the
data. ||J_f(x)||_F^2 is computed in one of three ways, all differentiable in
the parameters:

- ``"closed-form"``, for one sigmoid layer h = sigmoid(W x + b)
  (``hidden=()``, ``network="mlp"``, ``code_activation="sigmoid"``): since
  dh_j / dx_i = h_j (1 - h_j) W_ji (Rifai et al. Eq. 5)::

      ||J_f(x)||_F^2 = sum_j (h_j (1 - h_j))^2 sum_i W_ji^2;

- ``"autograd"``: the exact Jacobian of any encoder (MLP or convolutional),
  one reverse-mode pass per code dimension (``torch.func.vmap`` of
  ``torch.func.jacrev`` over the data points);
- ``"estimate"``: the Hutchinson-type estimate with v ~ N(0, I) in input
  space, unbiased since E_v[v v^T] = I::

      E_v ||J v||^2 = E_v[v^T J^T J v] = tr(J^T J) = ||J||_F^2,

  with variance 2 ||J^T J||_F^2 per draw, averaged over ``projections``
  independent draws per data point; each J v is one forward-mode product
  (``torch.func.jvp``), cheap for deep encoders.

``"auto"`` takes the closed form where it applies and autograd otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor
from torch.func import jacrev, jvp, vmap

from ppvae.models.autoencoder import Autoencoder
from ppvae.models.registry import register

#: the ways :meth:`ContractiveAutoencoder.jacobian_norm` computes ||J_f(x)||_F^2
JACOBIANS = ("closed-form", "autograd", "estimate", "auto")


class ContractiveAutoencoder(Autoencoder):
    """A contractive autoencoder: reconstruction plus lambda ||J_f(x)||_F^2.

    Args:
        input_shape, latent_dim, hidden, likelihood, network, activation:
            as for :class:`ppvae.models.Autoencoder`.
        code_activation: activation of the code (the paper's sigmoid by
            default; None: linear).
        contraction: the penalty weight lambda (>= 0; 0 gives the plain
            autoencoder).
        jacobian: how the penalty computes ||J_f(x)||_F^2: ``"closed-form"``
            (one sigmoid layer only), ``"autograd"`` (exact, any encoder),
            ``"estimate"`` (unbiased random projections) or ``"auto"``
            (closed form where it applies, else autograd).
        projections: random projections per data point for ``"estimate"``.

    Raises:
        ValueError: a negative or non-finite ``contraction``, an unknown
            ``jacobian``, ``projections`` below 1, or ``"closed-form"`` for an
            encoder that is not one sigmoid layer.
    """

    def __init__(
        self,
        input_shape: int | Sequence[int] = (1, 8, 8),
        latent_dim: int = 8,
        hidden: Sequence[int] = (256, 128),
        likelihood: str = "gaussian",
        network: str = "mlp",
        activation: str = "relu",
        code_activation: str | None = "sigmoid",
        contraction: float = 0.1,
        jacobian: str = "auto",
        projections: int = 1,
    ) -> None:
        if isinstance(contraction, bool) or not isinstance(contraction, (int, float)) \
                or not (math.isfinite(contraction) and contraction >= 0):
            raise ValueError(f"contraction must be a finite number >= 0, got {contraction!r}")
        if jacobian not in JACOBIANS:
            raise ValueError(f"unknown jacobian {jacobian!r}; choose one of {list(JACOBIANS)}")
        if isinstance(projections, bool) or not isinstance(projections, int) or projections < 1:
            raise ValueError(f"projections must be an integer >= 1, got {projections!r}")
        super().__init__(input_shape, latent_dim, hidden, likelihood, network, activation,
                         code_activation)
        self.config.update(contraction=contraction, jacobian=jacobian, projections=projections)
        #: the encoder is h = sigmoid(W x + b), where the closed form holds
        self.one_sigmoid_layer = (network == "mlp" and not tuple(hidden)
                                  and code_activation == "sigmoid")
        if jacobian == "closed-form" and not self.one_sigmoid_layer:
            raise ValueError(self._closed_form_refusal())
        self.contraction = float(contraction)
        self.jacobian = jacobian
        self.projections = projections

    def _closed_form_refusal(self) -> str:
        c = self.config
        return ("jacobian='closed-form' needs one sigmoid layer (hidden=(), network='mlp', "
                f"code_activation='sigmoid'), got hidden={c['hidden']}, "
                f"network={c['network']!r}, code_activation={c['code_activation']!r}; "
                "use 'autograd' or 'estimate'")

    def penalties(self, x: Tensor) -> dict[str, Tensor]:
        """``{"contraction": lambda * mean over the batch of ||J_f(x_i)||_F^2}``,
        at the clean input, by the model's ``jacobian`` method (zero, not
        computed, when lambda = 0)."""
        if self.contraction == 0:
            return {"contraction": x.new_zeros(())}
        return {"contraction": self.contraction * self.jacobian_norm(x).mean()}

    def jacobian_norm(self, x: Tensor, method: str | None = None, *,
                      projections: int | None = None) -> Tensor:
        """||J_f(x_i)||_F^2 per data point of a batch ``(batch, D)``,
        differentiable in the parameters (module docstring).

        Args:
            x: the inputs, flattened.
            method: one of :data:`JACOBIANS` (None: the model's ``jacobian``).
            projections: draws per data point for ``"estimate"`` (None: the
                model's ``projections``).

        Returns:
            a tensor ``(batch,)``: exact, or for ``"estimate"`` an unbiased
            estimate from torch's random state.
        """
        self.check_shape(x)
        method = self.jacobian if method is None else method
        if method not in JACOBIANS:
            raise ValueError(f"unknown jacobian {method!r}; choose one of {list(JACOBIANS)}")
        if method == "auto":
            method = "closed-form" if self.one_sigmoid_layer else "autograd"
        if method == "closed-form":
            if not self.one_sigmoid_layer:
                raise ValueError(self._closed_form_refusal())
            h = self.code(x)
            weight = self.encoder.layers[0].weight  # W, (latent_dim, D)
            return (h * (1 - h)).pow(2) @ weight.pow(2).sum(1)
        if method == "autograd":
            jacobians = vmap(jacrev(lambda xi: self.code(xi.unsqueeze(0)).squeeze(0)))(x)
            return jacobians.pow(2).sum((-2, -1))
        draws = self.projections if projections is None else projections
        if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
            raise ValueError(f"projections must be an integer >= 1, got {draws!r}")
        points = x.repeat(draws, 1)  # draw k of point i in row k * batch + i
        _, jv = jvp(self.code, (points,), (torch.randn_like(points),))
        return jv.pow(2).sum(-1).reshape(draws, len(x)).mean(0)


register("cae", ContractiveAutoencoder, summary="contractive autoencoder: reconstruction plus "
         "lambda ||J_f(x)||_F^2 (closed form, exact autograd or random-projection estimate); "
         "not a density", paper="Rifai, Vincent, Muller, Glorot & Bengio 2011")
