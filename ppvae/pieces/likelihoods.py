"""Observation models p(x | z[, y]) over flattened images.

Each maps the decoder network's output to a distribution whose event is the
whole image (``event_dim = 1``), and knows which values it is a density for:

- :class:`BernoulliLikelihood`: binary pixels (logits parameterization). It is a
  density for {0, 1} data only; grey-level images must be binarized first
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
from torch.nn.functional import hardtanh, linear, logsigmoid, softplus

from ppvae.pieces.expansion import KeepsOwnShape

LOGIT_CEILING = 20.0
_FLOAT_LOWEST = -3.0e38  # hardtanh's lower bound: no bound for float32 values


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

    def check(self, x: Tensor, *, support: str | None = None, name: str = "x",
              bounds: tuple[float, float] | None = None, binary: bool | None = None) -> None:
        """Raise ``ValueError`` if ``x`` lies outside this density's support
        (or outside ``support``, one of ``"binary"``, ``"unit"``, ``"real"``).
        ``bounds``: ``x``'s minimum and maximum, and ``binary``: whether all
        its values are 0 or 1, if already known (:func:`scan_values`), which
        saves passes over the data."""
        support = support or self.support
        if support == "binary" and not (_is_binary(x) if binary is None else binary):
            bad = x[(x != 0) & (x != 1)].flatten()[0].item()
            raise ValueError(
                f"the Bernoulli likelihood is a density for binary data only, but {name} has "
                f"values other than 0 and 1 (e.g. {bad:.4g}). Binarize the data "
                "(load_dataset(..., binarize='dynamic' or 'static')) or use "
                "likelihood='continuous-bernoulli' or 'gaussian' for grey levels."
            )
        if support == "unit" and not _in_unit_interval(x, bounds):
            bad = x[(x < 0) | (x > 1)].flatten()[0].item()
            raise ValueError(
                f"{name} must lie in [0, 1] for this likelihood, but has a value {bad:.4g}"
            )


_SCAN_CHUNK = 2**18  # values per chunk of a scan: 1 MB of float32, kept in cache


def scan_values(x: Tensor, binary: bool) -> tuple[float, float, bool | None]:
    """``x``'s minimum and maximum (NaN if it holds a NaN) and, if ``binary``,
    whether every value is 0 or 1 (else None), reading the data from memory
    once: chunk by chunk, the extremes and then, on the chunk still in cache,
    sum x (x - 1), which within [0, 1] is a sum of non-positive terms that are
    all exactly zero only for binary values. One pass instead of two over a
    training set that does not fit in cache (60,000 MNIST images: 188 MB);
    the chunks' results and the temporary x - 1 are written into tensors
    allocated once, so a chunk costs three kernels."""
    if x.numel() == 0:
        raise ValueError("scan_values needs at least one value")
    if not binary:
        lo, hi = torch.aminmax(x)
        return lo.item(), hi.item(), None
    chunks = torch.split(x.reshape(-1), _SCAN_CHUNK)
    lows, highs, mass = (x.new_empty(len(chunks)) for _ in range(3))
    shifted = x.new_empty(len(chunks[0]))
    for i, chunk in enumerate(chunks):
        torch.aminmax(chunk, out=(lows[i], highs[i]))
        below = shifted[: len(chunk)]
        torch.sub(chunk, 1, out=below)
        torch.dot(chunk, below, out=mass[i])
    lo, hi = lows.min().item(), highs.max().item()
    # NaN comparisons are False: data with a NaN are neither in [0, 1] nor binary
    binary_values = lo >= 0 and hi <= 1 and bool((mass == 0).all())
    return lo, hi, binary_values


def _in_unit_interval(x: Tensor, bounds: tuple[float, float] | None = None) -> bool:
    """All values in [0, 1] (NaN fails), in one pass (none if ``bounds``, the
    minimum and maximum, are given)."""
    if x.numel() == 0:
        return True
    lo, hi = torch.aminmax(x) if bounds is None else bounds
    return bool((lo >= 0) & (hi <= 1))


def _is_binary(x: Tensor) -> bool:
    """All values in {0, 1} (:func:`scan_values`; true of no values)."""
    return x.numel() == 0 or bool(scan_values(x, binary=True)[2])


class BinaryBernoulli(KeepsOwnShape, dist.Bernoulli):
    """Bernoulli(logits) with a faster log density for values in {0, 1}.

    With v = (2x - 1) * logits, log p(x) = logsigmoid(v) = -log1p(exp(-v)) for
    v >= 0. Pixels the decoder predicts confidently and correctly have v >> 0,
    where exp(-v) is tiny and the vectorized log1p takes a slow path (measured
    4x slower per pass at v up to 40 and 10x at v up to 60; a trained model's
    logits reach there within a few epochs). v is therefore capped at
    :data:`LOGIT_CEILING` = 20: logsigmoid(20) = -2.1e-9, so each pixel's log
    density changes by less than 2.1e-9 nats and a 784-pixel image's by less
    than 1.7e-6, below the float32 resolution of its log-likelihood (about
    7.6e-6 at 100 nats); the gradient with respect to v, sigmoid(-v), is below
    2.1e-9 where it is cut. Identical to ``Bernoulli.log_prob`` on binary values
    up to that bound. Without gradients the cap is applied in place; with
    them it is a one-sided ``hardtanh``, whose backward pass is one fused
    kernel (``clamp``'s compares and selects: about 130 microseconds more per
    784 x 128 batch). ``binary_cross_entropy_with_logits`` has no cap and slows
    down as training goes on (3.5x on logits up to 60).
    """

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        v = self.logits * (2 * value - 1)
        if v.requires_grad:
            v = hardtanh(v, _FLOAT_LOWEST, LOGIT_CEILING)
        else:
            v = v.clamp_(max=LOGIT_CEILING)
        return logsigmoid(v)


PRODUCT_BLOCK = 8  # pixels whose sigmoid(|logit|) are multiplied before one log


def binary_image_log_density(logits: Tensor, value: Tensor) -> Tensor:
    """sum_d log Bernoulli(x_d; sigmoid(l_d)) over the last dimension, for x in
    {0, 1}, in fewer transcendental passes than one log-sigmoid per pixel.

    With v_d = (2 x_d - 1) l_d, log p(x_d) = logsigmoid(v_d)
    = min(v_d, 0) + log sigmoid(|l_d|) (as |v_d| = |l_d|), so

        log p(x) = sum_d min(v_d, 0) + sum_blocks log prod_{d in block} sigmoid(|l_d|):

    one sigmoid per pixel and one log per block of :data:`PRODUCT_BLOCK`
    pixels instead of an exponential and a log1p per pixel (PyTorch's
    log-sigmoid computes both and is slowest where the decoder is confident).
    Each factor lies in [1/2, 1], so a block's product stays above 2^-8 and
    never underflows. Rounding: sigmoid(|l|) rounds to 1 once
    exp(-|l|) < 2^-24, which drops less than 6e-8 nats per pixel (4.7e-5 per
    784-pixel image, far below the Monte Carlo error of any estimate); the
    products add float32 rounding of the same order as summing the per-pixel
    terms. Fresh memory is costly here (each new block of a pass's size is
    paged in by the kernel again), so v's memory is reused for the sigmoids.
    No gradients: the training path is
    :meth:`BinaryBernoulli.log_prob`, summed.
    """
    scratch = logits * (2 * value - 1)  # v; its memory then holds sigmoid(|l|)
    total = scratch.clamp_(max=0.0).sum(-1)
    if scratch.shape == logits.shape:  # one fresh block of memory per call, not two
        sig = torch.abs(logits, out=scratch)
    else:  # the data had more batch dimensions than the logits
        sig = logits.abs()
    return total + _sum_log_sigmoid_(sig)


def _sum_log_sigmoid_(a: Tensor) -> Tensor:
    """sum_d log sigmoid(a_d) over the last dimension for a >= 0, by products
    over blocks of :data:`PRODUCT_BLOCK` (``a`` is overwritten)."""
    sig = a.sigmoid_()
    size = sig.shape[-1]
    whole = size - size % PRODUCT_BLOCK
    total = 0
    if whole:
        # block j holds pixels j, j + m, ..., j + 7m (m = whole / 8): the
        # product runs over rows of contiguous pixels, which vectorizes
        # (twice as fast as over 8 neighbouring pixels)
        blocks = sig[..., :whole].unflatten(-1, (PRODUCT_BLOCK, whole // PRODUCT_BLOCK))
        total = blocks.prod(-2).log_().sum(-1)
    if whole < size:
        total = total + sig[..., whole:].log().sum(-1)
    return total


def binary_linear_log_density(logits: Tensor, value: Tensor, hidden: Tensor, weight: Tensor,
                              bias: Tensor | None) -> Tensor:
    """:func:`binary_image_log_density` for logits made by a linear layer,
    l = W h + b, with the data's part of the sum taken through h.

    With s = 2x - 1 and softplus(l) = (l + |l|) / 2 - log sigmoid(|l|),

        log p(x) = sum_d [x_d l_d - softplus(l_d)]
                 = (s . l - sum_d |l_d|) / 2 + sum_d log sigmoid(|l_d|),
        s . l = h . (W^T s) + b . s,

    so the data enter through one product of h (H values per particle, not
    D) with W^T s, computed once per data point; the D values of a particle
    take four passes (|l|, its sum, the sigmoids and their block products)
    instead of the six of :func:`binary_image_log_density`, and the data are
    never broadcast over the particles. ``logits`` (from ``hidden``, ``weight`` of
    shape (D, H) and ``bias``) are not modified. Rounding: s . l and sum |l|
    cancel to the (non-positive) sum of min(s_d l_d, 0), so the float32
    rounding is about 1e-7 of sum_d |l_d| rather than of the result (up to
    2e-4 nats measured on a trained decoder's 784 logits; far below the
    Monte Carlo error of an estimate). No gradients."""
    signs = 2 * value - 1
    agreement = (hidden * (signs @ weight)).sum(-1)
    if bias is not None:
        agreement = agreement + signs @ bias
    magnitude = logits.abs()
    return (agreement - magnitude.sum(-1)) / 2 + _sum_log_sigmoid_(magnitude)


class BernoulliImage(KeepsOwnShape, dist.Independent):
    """A whole image of :class:`BinaryBernoulli` pixels (one event).

    Without gradients (evaluation), :meth:`log_prob` sums the pixels with
    :func:`binary_linear_log_density` if its maker set ``_linear_head`` to
    (h, W, b), the layer that made its logits W h + b, and
    with :func:`binary_image_log_density` otherwise; with gradients
    (training), it is the sum of :meth:`BinaryBernoulli.log_prob`.
    ``base_dist`` is the per-pixel distribution, as for ``.to_event(1)``
    (masking works on it). Expanded to its own shape (as Pyro's plates do)
    it stays itself; a copy of another shape forgets the head."""

    #: (h, W, b) of the layer that made the logits, set by the maker
    _linear_head: tuple[Tensor, Tensor, Tensor | None] | None = None

    def log_prob(self, value: Tensor) -> Tensor:
        base = self.base_dist
        if (self.reinterpreted_batch_ndims != 1 or not isinstance(base, BinaryBernoulli)
                or (torch.is_grad_enabled() and base.logits.requires_grad)):
            return super().log_prob(value)
        if self._validate_args:
            base._validate_sample(value)
        head = self._linear_head
        if head is not None and head[0].shape[:-1] == base.logits.shape[:-1]:
            return binary_linear_log_density(base.logits, value, *head)
        return binary_image_log_density(base.logits, value)


class BernoulliLikelihood(ObservationModel):
    """p(x | z) = prod_d Bernoulli(x_d; sigmoid(logits_d(z)))."""

    support = "binary"

    def forward(self, z: Tensor, context: Tensor | None = None) -> dist.Distribution:
        features = getattr(self.net, "features", None)
        if features is not None and not torch.is_grad_enabled():
            # evaluation: keep the last hidden layer for the density
            # (binary_linear_log_density); the network's own forward otherwise
            hidden = features(z, context)
            if hidden is not None:
                head = self.net.head
                logits = linear(hidden, head.weight, head.bias)
                image = BernoulliImage(BinaryBernoulli(logits=logits), 1)
                image._linear_head = (hidden, head.weight, head.bias)
                return image
        return BernoulliImage(BinaryBernoulli(logits=self.net(z, context)), 1)


class ContinuousBernoulliLikelihood(ObservationModel):
    """p(x | z) = prod_d CB(x_d; lambda_d(z)), x_d in [0, 1]."""

    support = "unit"

    def forward(self, z: Tensor, context: Tensor | None = None) -> dist.Distribution:
        logits = self.net(z, context).clamp(-15.0, 15.0)
        return dist.ContinuousBernoulli(logits=logits).to_event(1)


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


LIKELIHOODS: dict[str, type[ObservationModel]] = {
    "bernoulli": BernoulliLikelihood,
    "gaussian": GaussianLikelihood,
    "continuous-bernoulli": ContinuousBernoulliLikelihood,
}


def make_likelihood(name: str, net: nn.Module, event_size: int) -> ObservationModel:
    """Build the observation model ``name`` (one of :data:`LIKELIHOODS`) on ``net``."""
    if name not in LIKELIHOODS:
        raise ValueError(f"unknown likelihood {name!r}; choose one of {sorted(LIKELIHOODS)}")
    if name == "gaussian":
        return GaussianLikelihood(net, event_size)
    return LIKELIHOODS[name](net)
