"""Observation models p(x | z[, y]) over flattened images.

Each maps the decoder network's output to a stock Pyro distribution whose
event is the whole image (``event_dim = 1``), and knows which values it is a
density for:

- :class:`BernoulliLikelihood`: binary pixels, Bernoulli(sigmoid(logits)). It
  is a density for {0, 1} data only; grey-level images must be binarized first
  (statically or dynamically) for the result to be a log-likelihood.
- :class:`GaussianLikelihood`: real pixels, N(x; mu(z), sigma^2 I) with a learned
  scale sigma (shared by all pixels, or one per pixel).
- :class:`ContinuousBernoulliLikelihood`: pixels in [0, 1], the normalized
  continuous Bernoulli of Loaiza-Ganem & Cunningham (2019), "The continuous
  Bernoulli: fixing a pervasive error in variational autoencoders".
"""

from __future__ import annotations

import math

import pyro.distributions as dist
import torch
from torch import Tensor, nn
from torch.nn.functional import softplus

SUPPORTS = ("binary", "unit", "real")


class ObservationModel(nn.Module):
    """Base class: ``net(z, context)`` gives one parameter per pixel.

    Subclasses set :attr:`support` (``"binary"``, ``"unit"`` or ``"real"``) and
    implement :meth:`forward`, returning a distribution with event dim 1.
    """

    support: str = "real"

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, z: Tensor, context: Tensor | None = None) -> dist.Distribution:
        raise NotImplementedError

    def mean(self, z: Tensor, context: Tensor | None = None) -> Tensor:
        """E[x | z], the image shown as a reconstruction or sample."""
        return self(z, context).mean

    @torch.no_grad()
    def init_from_data(self, x: Tensor) -> None:
        """Set the decoder's output bias to the maximum-likelihood fit of the
        data's pixels taken one at a time, so that training starts from the
        best density that ignores z (Burda et al. 2016 initialize their
        Bernoulli decoder so): each output's bias b_d satisfies
        E[x_d | b_d] = mean_n x_nd over the rows of ``x`` (N, D) (for these
        exponential families, the mean-matching parameter is the maximum-
        likelihood one). For grey levels under dynamic binarization, the mean
        grey level is the mean of the binarized pixel.

        Raises ``ValueError``, before changing anything, for a decoder without
        one bias per output (an :class:`ppvae.nn.MLP` has one; a
        convolutional decoder has one per channel), for data of another
        width, or for data outside the density's range."""
        bias = getattr(self.net, "output_bias", None)
        if not isinstance(bias, Tensor):
            raise ValueError(f"the decoder {type(self.net).__name__} has no bias per output "
                             "(an MLP decoder has): its output bias cannot be set from data")
        check_support(x, "real" if self.support == "real" else "unit", "the data")
        mean = x.reshape(len(x), -1).double().mean(0)
        if mean.shape != bias.shape:
            raise ValueError(f"the data have {mean.numel()} values per point, the decoder "
                             f"{bias.numel()} outputs")
        bias.copy_(self.parameter_of_mean(mean))

    def parameter_of_mean(self, mean: Tensor) -> Tensor:
        """The decoder output whose distribution has mean ``mean`` (per pixel)."""
        raise NotImplementedError

    def check(self, x: Tensor, *, support: str | None = None, name: str = "x") -> None:
        """Raise ``ValueError`` if ``x`` lies outside this density's support
        (or outside ``support``, one of ``"binary"``, ``"unit"``, ``"real"``)."""
        check_support(x, support or self.support, name)


def check_support(x: Tensor, support: str, name: str = "x") -> None:
    """Raise ``ValueError`` naming the problem if ``x`` holds NaN or infinite
    values, or values outside ``support``: ``"binary"`` ({0, 1}), ``"unit"``
    ([0, 1]) or ``"real"``.

    NaN and infinite values show in the extremes (one reduction). Within
    [0, 1] the data are binary iff min |x - 1/2| = 1/2, found in blocks of
    :data:`CHECK_BLOCK` values whose temporary stays in cache (a training
    set's worth of fresh temporary memory would cost several times more)."""
    if support not in SUPPORTS:
        raise ValueError(f"unknown support {support!r}; choose one of {list(SUPPORTS)}")
    if x.numel() == 0:
        return
    lo, hi = (float(v) for v in torch.aminmax(x))
    if not (math.isfinite(lo) and math.isfinite(hi)):  # NaN propagates to both
        bad = (~torch.isfinite(x)).nonzero()
        raise ValueError(f"{name} contains {len(bad)} NaN or infinite values "
                         f"(first at index {tuple(bad[0].tolist())})")
    if support == "real":
        return
    if not (lo >= 0 and hi <= 1):
        bad = x[(x < 0) | (x > 1)].flatten()[0].item()
        if support == "unit":
            raise ValueError(f"{name} must lie in [0, 1] for this likelihood, but has a "
                             f"value {bad:.4g}")
        raise _not_binary(name, bad)
    if support == "binary":
        values = x.reshape(-1)
        buffer = torch.empty(min(CHECK_BLOCK, len(values)), dtype=x.dtype, device=x.device)
        for block in torch.split(values, CHECK_BLOCK):
            distance = torch.sub(block, 0.5, out=buffer[: len(block)]).abs_()
            if float(distance.amin()) < 0.5:
                raise _not_binary(name, block[distance < 0.5][0].item())


CHECK_BLOCK = 2**18  # values per block of the binary check: 1 MB of float32


def _not_binary(name: str, value: float) -> ValueError:
    return ValueError(
        f"the Bernoulli likelihood is a density for binary data only, but {name} has values "
        f"other than 0 and 1 (e.g. {value:.4g}). Binarize the data "
        "(load_dataset(..., binarize='dynamic' or 'static')) or use "
        "likelihood='continuous-bernoulli' or 'gaussian' for grey levels.")


class BernoulliLikelihood(ObservationModel):
    """p(x | z) = prod_d Bernoulli(x_d; sigmoid(logits_d(z)))."""

    support = "binary"

    def forward(self, z: Tensor, context: Tensor | None = None) -> dist.Distribution:
        return dist.Bernoulli(logits=self.net(z, context)).to_event(1)

    def parameter_of_mean(self, mean: Tensor) -> Tensor:
        """logit(mean), the mean clipped to [1e-3, 1 - 1e-3] (a pixel that is
        always 0 in the data gets logit(1e-3) = -6.9, not -inf)."""
        return torch.logit(mean.clamp(1e-3, 1 - 1e-3))


class ContinuousBernoulliLikelihood(ObservationModel):
    """p(x | z) = prod_d CB(x_d; lambda_d(z)), x_d in [0, 1]; the logits are
    clamped to [-15, 15], where the normalizing constant is still accurate in
    float32."""

    support = "unit"

    def forward(self, z: Tensor, context: Tensor | None = None) -> dist.Distribution:
        logits = self.net(z, context).clamp(-15.0, 15.0)
        return dist.ContinuousBernoulli(logits=logits).to_event(1)

    def parameter_of_mean(self, mean: Tensor) -> Tensor:
        """The logit in [-15, 15] whose continuous Bernoulli has mean
        ``mean`` (the mean rises with the logit; a mean beyond the reach of
        [-15, 15], below about 1/15 or above 14/15, gets the nearer end), by
        bisection to within 1e-12."""
        low, high = torch.full_like(mean, -15.0), torch.full_like(mean, 15.0)
        for _ in range(45):  # 30 / 2^45 < 1e-12
            mid = (low + high) / 2
            below = dist.ContinuousBernoulli(logits=mid).mean < mean
            low, high = torch.where(below, mid, low), torch.where(below, high, mid)
        return (low + high) / 2


class GaussianLikelihood(ObservationModel):
    """p(x | z) = N(x; mu(z), diag sigma^2) with sigma learned (>= ``min_scale``)
    or fixed (``learn_scale=False``: sigma = ``init_scale``).

    ``per_pixel=False`` uses one sigma for all pixels (the stable default: pixels
    that are constant in the data, such as MNIST's borders, would drive their own
    sigma to zero); ``per_pixel=True`` uses one per pixel.
    """

    support = "real"

    def __init__(
        self,
        net: nn.Module,
        event_size: int,
        *,
        per_pixel: bool = False,
        init_scale: float = 0.1,
        min_scale: float = 1e-3,
        learn_scale: bool = True,
    ) -> None:
        super().__init__(net)
        size = event_size if per_pixel else 1
        self.min_scale = min_scale if learn_scale else 0.0
        if learn_scale:
            raw = math.log(math.expm1(init_scale - min_scale))
            self.raw_scale = nn.Parameter(torch.full((size,), raw))
        else:
            self.register_buffer("fixed_scale", torch.full((size,), float(init_scale)))

    @property
    def scale(self) -> Tensor:
        """The current sigma (per pixel, or a single shared value)."""
        if hasattr(self, "fixed_scale"):
            return self.fixed_scale
        return softplus(self.raw_scale) + self.min_scale

    def forward(self, z: Tensor, context: Tensor | None = None) -> dist.Distribution:
        loc = self.net(z, context)
        return dist.Normal(loc, self.scale.expand_as(loc)).to_event(1)

    def parameter_of_mean(self, mean: Tensor) -> Tensor:
        """The mean itself (the scale is left as it is)."""
        return mean


LIKELIHOODS: dict[str, type[ObservationModel]] = {
    "bernoulli": BernoulliLikelihood,
    "gaussian": GaussianLikelihood,
    "continuous-bernoulli": ContinuousBernoulliLikelihood,
}


def make_likelihood(name: str, net: nn.Module, event_size: int,
                    gaussian_scale: float | None = None) -> ObservationModel:
    """Build the observation model ``name`` (one of :data:`LIKELIHOODS`) on
    ``net``; a ``"gaussian"`` one with a learned shared scale, or with the
    fixed ``gaussian_scale`` (1: -log p(x | z) is half the squared error plus
    a constant, an autoencoder's loss)."""
    if name not in LIKELIHOODS:
        raise ValueError(f"unknown likelihood {name!r}; choose one of {sorted(LIKELIHOODS)}")
    if name == "gaussian":
        if gaussian_scale is None:
            return GaussianLikelihood(net, event_size)
        return GaussianLikelihood(net, event_size, init_scale=gaussian_scale, learn_scale=False)
    return LIKELIHOODS[name](net)
