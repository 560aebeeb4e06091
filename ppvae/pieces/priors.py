"""Priors p(z) over the latent code.

Each is called with an optional context (ignored here, so that it stands
wherever a conditional prior p(z | c) does) and returns a distribution with
empty batch shape and a ``latent_dim`` event; an enclosing
``pyro.plate("data", ...)`` broadcasts it over the batch. ``sample(n)`` draws
n codes ``(n, latent_dim)`` (what an adversarial autoencoder's discriminator
sees as real); a prior known by its draws only (:class:`SwissRollPrior`)
has no density, and its distribution is the improper flat one.
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
from torch import Tensor, nn


class StandardNormalPrior(nn.Module):
    """p(z) = N(z; 0, I)."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.register_buffer("loc", torch.zeros(latent_dim))
        self.register_buffer("scale", torch.ones(latent_dim))

    def forward(self, context: Tensor | None = None) -> dist.Distribution:
        return dist.Normal(self.loc, self.scale).to_event(1)

    def sample(self, n: int) -> Tensor:
        """n draws ``(n, latent_dim)``."""
        return self().sample((n,))


class FlatPrior(nn.Module):
    """The improper flat prior p(z) = 1 on R^d (log density 0): with a
    point-mass guide, the negative ELBO is the reconstruction loss
    -log p(x | z = f(x)), a plain autoencoder's. It has no draws, and the
    importance-weighted estimator refuses it (no proper joint density)."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim

    def forward(self, context: Tensor | None = None) -> dist.Distribution:
        return dist.ImproperUniform(dist.constraints.real, (), (self.latent_dim,))


class LaplacePrior(nn.Module):
    """p(z) = prod_j Laplace(z_j; 0, 1 / ``weight``): -log p(z) =
    ``weight`` * |z|_1 + d log(2 / weight), so MAP inference of the code is
    L1-penalized reconstruction (sparse coding; Olshausen & Field 1996)."""

    def __init__(self, latent_dim: int, weight: float) -> None:
        super().__init__()
        if not weight > 0:
            raise ValueError(f"the L1 weight must be positive, got {weight}")
        self.latent_dim, self.weight = latent_dim, float(weight)
        self.register_buffer("loc", torch.zeros(latent_dim))
        self.register_buffer("scale", torch.full((latent_dim,), 1.0 / weight))

    def forward(self, context: Tensor | None = None) -> dist.Distribution:
        return dist.Laplace(self.loc, self.scale).to_event(1)

    def sample(self, n: int) -> Tensor:
        """n draws ``(n, latent_dim)``."""
        return self().sample((n,))


class GaussianMixturePrior(nn.Module):
    """A mixture of K equally weighted 2-d Gaussians whose means sit on a
    circle of ``radius`` at angles 2 pi k / K, each elongated along its radius
    (standard deviations ``radial_scale`` along it, ``tangential_scale``
    across): the "petals" prior of Makhzani et al. (2015, Fig. 4)::

        p(z) = (1 / K) sum_k N(z; R_k (radius, 0), R_k diag(radial^2, tangential^2) R_k^T)

    with R_k the rotation by 2 pi k / K. A proper density."""

    def __init__(self, components: int = 10, radius: float = 4.0, radial_scale: float = 1.0,
                 tangential_scale: float = 0.25) -> None:
        super().__init__()
        if components < 1 or not (radius >= 0 and radial_scale > 0 and tangential_scale > 0):
            raise ValueError("a Gaussian mixture prior needs components >= 1, radius >= 0 and "
                             f"positive scales, got {components}, {radius}, {radial_scale}, "
                             f"{tangential_scale}")
        self.latent_dim = 2
        angle = 2 * math.pi * torch.arange(components) / components
        rotation = torch.stack([torch.stack([angle.cos(), -angle.sin()], -1),
                                torch.stack([angle.sin(), angle.cos()], -1)], -2)  # (K, 2, 2)
        self.register_buffer("loc", radius * rotation[..., 0])
        self.register_buffer("scale_tril", torch.linalg.cholesky(
            rotation @ torch.diag(torch.tensor([radial_scale, tangential_scale]) ** 2)
            @ rotation.transpose(-1, -2)))

    def forward(self, context: Tensor | None = None) -> dist.Distribution:
        weights = dist.Categorical(logits=self.loc.new_zeros(len(self.loc)))
        return dist.MixtureSameFamily(weights, self.components())

    def sample(self, n: int) -> Tensor:
        """n draws ``(n, 2)``."""
        return self().sample((n,))

    def component_means(self) -> Tensor:
        """The K means ``(K, 2)``."""
        return self.loc

    def components(self) -> dist.Distribution:
        """The K Gaussians, batch shape ``(K,)``."""
        return dist.MultivariateNormal(self.loc, scale_tril=self.scale_tril)

    def sample_components(self, k: Tensor) -> Tensor:
        """One draw from component k_i for each entry of ``k`` ``(n,)``: ``(n, 2)``."""
        eps = torch.randn(len(k), 2, device=self.loc.device)
        return self.loc[k] + (self.scale_tril[k] @ eps.unsqueeze(-1)).squeeze(-1)


class SwissRollPrior(nn.Module):
    """Codes on a 2-d swiss roll, known by their draws only (Makhzani et al.
    2015, Fig. 4): u ~ U(0, 1), angle a = ``turns`` * 2 pi sqrt(u), z = (a cos a,
    a sin a) / (``turns`` * 2 pi) * ``radius`` + ``noise`` * eps. It has no
    density: as a distribution it is the improper flat prior (the
    adversarial autoencoder matches it through its draws), so a model with it
    is not a density of x."""

    def __init__(self, radius: float = 4.0, turns: float = 1.5, noise: float = 0.05) -> None:
        super().__init__()
        if not (radius > 0 and turns > 0 and noise >= 0):
            raise ValueError(f"a swiss roll needs positive radius and turns and noise >= 0, got "
                             f"{radius}, {turns}, {noise}")
        self.latent_dim, self.radius, self.turns, self.noise = 2, radius, turns, noise
        self.register_buffer("anchor", torch.zeros(()))  # the device of the draws

    def forward(self, context: Tensor | None = None) -> dist.Distribution:
        return dist.ImproperUniform(dist.constraints.real, (), (2,))

    def sample(self, n: int) -> Tensor:
        """n draws ``(n, 2)``, from torch's random state."""
        a = 2 * math.pi * self.turns * torch.rand(n, device=self.anchor.device).sqrt()
        z = torch.stack([a * a.cos(), a * a.sin()], -1) * (self.radius / (2 * math.pi * self.turns))
        return z + self.noise * torch.randn_like(z)


class DiagonalGaussianMixture(dist.TorchDistribution):
    """p(z) = sum_k pi_k N(z; m_k, diag s_k^2) over z in R^D (batch shape (),
    event (D,)), pi = softmax(``logits``); ``loc`` and ``scale`` are (K, D).

    The same density as Pyro's ``MixtureSameFamily`` of diagonal Normals,
    computed without its (..., K, D) intermediate: with precisions
    P_k = 1 / s_k^2, the quadratic forms sum_d P_kd (z_d - m_kd)^2 of all z
    against all components are z^2 P^T - 2 z (m P)^T + sum_d m_kd^2 P_kd, two
    matrix products, in float64 (the three terms can be large and nearly
    cancel when some s_k are small). Draws are not reparameterized."""

    arg_constraints = {"logits": dist.constraints.real_vector, "loc": dist.constraints.real,
                       "scale": dist.constraints.positive}
    support = dist.constraints.real_vector
    has_rsample = False

    def __init__(self, logits: Tensor, loc: Tensor, scale: Tensor,
                 validate_args: bool | None = None) -> None:
        if loc.dim() != 2 or scale.shape != loc.shape or logits.shape != loc.shape[:1]:
            raise ValueError(f"a mixture takes logits (K,), loc and scale (K, D), got "
                             f"{tuple(logits.shape)}, {tuple(loc.shape)}, {tuple(scale.shape)}")
        self.logits, self.loc, self.scale = logits, loc, scale
        super().__init__(torch.Size(), loc.shape[-1:], validate_args=validate_args)

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        z = value.double()
        precision = self.scale.double().pow(-2)
        loc = self.loc.double()
        quad = (z.square() @ precision.T - 2 * z @ (loc * precision).T
                + (loc.square() * precision).sum(-1)).clamp(min=0)
        log_norm = self.scale.double().log().sum(-1) + 0.5 * z.shape[-1] * math.log(2 * math.pi)
        weights = torch.log_softmax(self.logits.double(), -1)
        return torch.logsumexp(weights - log_norm - 0.5 * quad, -1).to(value.dtype)

    def sample(self, sample_shape: torch.Size = torch.Size()) -> Tensor:
        with torch.no_grad():
            k = dist.Categorical(logits=self.logits).sample(sample_shape)
            return self.loc[k] + self.scale[k] * torch.randn_like(self.loc[k])


class LearnedMixturePrior(nn.Module):
    """A mixture of K diagonal Gaussians whose weights, means and scales are
    learned with the model (a mixture-of-Gaussians prior)::

        p(z) = sum_k pi_k N(z; m_k, diag s_k^2),   pi = softmax(a),  s_k = softplus(r_k) + 1e-5

    Initialized with equal weights, unit scales and means drawn from N(0, I)
    (torch's random state), so that the components start apart."""

    def __init__(self, latent_dim: int, components: int = 10) -> None:
        super().__init__()
        if components < 1:
            raise ValueError(f"a mixture prior needs at least 1 component, got {components}")
        self.latent_dim, self.num_components = latent_dim, components
        self.logits = nn.Parameter(torch.zeros(components))
        self.loc = nn.Parameter(torch.randn(components, latent_dim))
        # softplus(0.5413) = 1: unit scales at the start
        self.raw_scale = nn.Parameter(torch.full((components, latent_dim), 0.5413))

    def forward(self, context: Tensor | None = None) -> dist.Distribution:
        return DiagonalGaussianMixture(self.logits, self.loc,
                                       nn.functional.softplus(self.raw_scale) + 1e-5)

    def sample(self, n: int) -> Tensor:
        """n draws ``(n, latent_dim)``."""
        return self().sample((n,))


class VampPrior(nn.Module):
    """The variational mixture of posteriors (Tomczak & Welling 2018,
    "VAE with a VampPrior"): the model's own amortized posterior at K learned
    pseudo-inputs u_k, equally weighted::

        p(z) = (1 / K) sum_k q(z | u_k),   u_k = hardtanh(v_k) in [0, 1]^D

    ``encoder`` is the model's q(z | x) (a :class:`ppvae.pieces.DiagonalGaussian`);
    the prior shares its parameters and keeps it as a plain attribute, not a
    submodule (the model owns it: saved once, moved with the model). The
    pseudo-inputs v start at N(0.05, 0.01^2) per pixel, the paper's MNIST
    setting, and are parameters of this prior. As a prior of the data set's
    inputs it holds only for inputs in [0, 1] (flattened, ``input_dim``
    values each).

    The collapsed state, q(z | x) the same for every x, costs no KL under this
    prior (it is then q itself). On MNIST with the IWAE paper's networks the
    encoder fell into it in the first epoch, under KL warm-up too, while the
    decoder was still learning the mean image; started from the data's mean
    image (``fit(..., init_output_bias=True)``) and warmed up over 30 epochs,
    it did not (``benchmarks/README.md``). Check the active units after
    training (:func:`ppvae.infer.active_units`): none means collapsed."""

    def __init__(self, encoder: nn.Module, input_dim: int, components: int = 500) -> None:
        super().__init__()
        if components < 1:
            raise ValueError(f"a VampPrior needs at least 1 pseudo-input, got {components}")
        object.__setattr__(self, "encoder", encoder)
        self.latent_dim, self.num_components = encoder.latent_dim, components
        self.pseudo_inputs = nn.Parameter(0.05 + 0.01 * torch.randn(components, input_dim))

    def forward(self, context: Tensor | None = None) -> dist.Distribution:
        u = nn.functional.hardtanh(self.pseudo_inputs, 0.0, 1.0)
        logits = u.new_zeros(self.num_components)
        if hasattr(self.encoder, "loc_scale"):  # a diagonal Gaussian q: the fast mixture
            return DiagonalGaussianMixture(logits, *self.encoder.loc_scale(u))
        # any other q(z | x): Pyro's mixture of its K distributions
        return dist.MixtureSameFamily(dist.Categorical(logits=logits), self.encoder(u))

    def sample(self, n: int) -> Tensor:
        """n draws ``(n, latent_dim)``."""
        with torch.no_grad():
            return self().sample((n,))


#: the priors :func:`make_prior` builds, by name
PRIORS = ("normal", "mixture", "swiss-roll")


def make_prior(name: str, latent_dim: int) -> nn.Module:
    """The prior ``name`` over ``latent_dim`` dimensions: ``"normal"``
    (:class:`StandardNormalPrior`), or one of the 2-d priors ``"mixture"``
    (:class:`GaussianMixturePrior`) and ``"swiss-roll"`` (:class:`SwissRollPrior`).
    ``ValueError`` for an unknown name or a 2-d prior of another dimension."""
    if name not in PRIORS:
        raise ValueError(f"unknown prior {name!r}; choose one of {list(PRIORS)}")
    if name != "normal" and latent_dim != 2:
        raise ValueError(f"the {name} prior is 2-d: latent_dim must be 2, got {latent_dim}")
    return {"normal": lambda: StandardNormalPrior(latent_dim), "mixture": GaussianMixturePrior,
            "swiss-roll": SwissRollPrior}[name]()
