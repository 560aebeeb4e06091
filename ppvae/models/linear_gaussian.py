"""The linear-Gaussian latent variable model (probabilistic PCA; Tipping &
Bishop 1999, "Probabilistic principal component analysis"), a VAE whose
log-likelihood and posterior are known in closed form:

    z ~ N(0, I_L),    x | z ~ N(W z + b, sigma^2 I_D)

    log p(x) = log N(x; b, W W^T + sigma^2 I)
    p(z | x) = N(M^{-1} W^T (x - b), sigma^2 M^{-1}),   M = W^T W + sigma^2 I

The guide is an amortized diagonal Gaussian with a linear encoder, as in a VAE
(the model/guide pair is the VAE's, built from the same pieces with linear
networks and a fixed-scale Gaussian likelihood);
:meth:`LinearGaussian.exact_guide` is the true posterior (full covariance),
with which the importance-weighted estimate is exact for any K, even K = 1.
Use it to check estimators and intuition against exact answers.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from torch import Tensor

from ppvae.models.base import LatentVariableModel
from ppvae.models.registry import register
from ppvae.models.vae import VAE
from ppvae.nn import MLP
from ppvae.pieces import DiagonalGaussian, GaussianLikelihood, StandardNormalPrior


class LinearGaussian(VAE):
    """Probabilistic PCA as a Pyro model/guide pair (a VAE with linear networks).

    Args:
        input_dim: D, the data dimension.
        latent_dim: L.
        sigma: the fixed observation noise standard deviation.
    """

    # the VAE's model and guide on linear pieces: the VAE's twin holds (ppvae.accel)
    accel_parts = VAE.accel_parts

    def __init__(self, input_dim: int, latent_dim: int = 2, sigma: float = 0.5) -> None:
        if sigma <= 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        # the VAE's model/guide and conveniences, with linear pieces built here
        LatentVariableModel.__init__(
            self, dict(input_dim=input_dim, latent_dim=latent_dim, sigma=sigma), input_dim)
        self.latent_dim = latent_dim
        self.beta = 1.0
        self.prior = StandardNormalPrior(latent_dim)
        self.encoder = DiagonalGaussian(MLP(input_dim, [], 2 * latent_dim), latent_dim)
        self.likelihood = GaussianLikelihood(MLP(latent_dim, [], input_dim), input_dim,
                                             init_scale=sigma, learn_scale=False)

    @property
    def weight(self) -> Tensor:
        """W, shape (D, L)."""
        return self.likelihood.net.layers[0].weight

    @property
    def bias(self) -> Tensor:
        """b, shape (D,)."""
        return self.likelihood.net.layers[0].bias

    @property
    def sigma(self) -> float:
        return float(self.likelihood.scale)

    def exact_posterior(self, x: Tensor) -> dist.MultivariateNormal:
        """p(z | x) for each row of x, a full-covariance Gaussian."""
        w, s2 = self.weight, self.sigma**2
        m = w.T @ w + s2 * torch.eye(self.latent_dim, dtype=w.dtype, device=w.device)
        loc = torch.linalg.solve(m, w.T @ (x - self.bias).T).T
        return dist.MultivariateNormal(loc, covariance_matrix=s2 * torch.linalg.inv(m))

    @torch.no_grad()
    def set_guide_to_posterior(self, inflate: float = 1.0) -> None:
        """Set the amortized guide to the best diagonal Gaussian for every x,
        the one minimizing KL(q || p(z | x)): the exact posterior mean and
        variances 1 / diag(posterior precision) (Bishop 2006, Sec. 10.1.2),
        with standard deviations multiplied by ``inflate``. The posterior mean is
        linear in x and its covariance does not depend on x, so the linear
        encoder represents this exactly: the amortization gap is zero and the
        ELBO falls short of log p(x) only by the KL to the correlated posterior."""
        zero = self.exact_posterior(torch.zeros(1, self.input_dim, device=self.device))
        eye = self.exact_posterior(torch.eye(self.input_dim, device=self.device))
        layer = self.encoder.net.layers[0]
        layer.weight.zero_()
        layer.weight[: self.latent_dim] = (eye.loc - zero.loc).T
        layer.bias[: self.latent_dim] = zero.loc[0]
        precision = torch.linalg.inv(zero.covariance_matrix[0])
        std = inflate * precision.diagonal().rsqrt() - self.encoder.min_scale
        layer.bias[self.latent_dim :] = torch.log(torch.expm1(std))

    def exact_guide(self, x: Tensor) -> None:
        """A guide that proposes from the exact posterior p(z | x)."""
        self.pyro_module()
        with pyro.plate("data", x.shape[0], dim=-1):
            pyro.sample("z", self.exact_posterior(x))

    def exact_log_likelihood(self, x: Tensor) -> Tensor:
        """log p(x_i) = log N(x_i; b, W W^T + sigma^2 I) for each row, shape (N,)."""
        w = self.weight
        cov = w @ w.T + self.sigma**2 * torch.eye(self.input_dim, dtype=w.dtype, device=w.device)
        return dist.MultivariateNormal(self.bias, covariance_matrix=cov).log_prob(x)


register("linear-gaussian", LinearGaussian,
         summary="probabilistic PCA as a VAE: exact log p(x) and posterior to check against",
         paper="Tipping & Bishop 1999")
