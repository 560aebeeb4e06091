"""The conditional VAE of Sohn, Lee & Yan (2015), "Learning structured output
representation using deep conditional generative models" (NeurIPS), and the
deterministic network it is compared with.

Generative model and amortized guide, for each data point i with condition c_i::

    z_i ~ p(z | c_i) = N(mu_p(c_i), diag sigma_p(c_i)^2)            (prior network)
    x_i ~ p(x | z_i, c_i)                                           (decoder)
    q(z_i | x_i, c_i) = N(mu_q(x_i, c_i), diag sigma_q(x_i, c_i)^2) (recognition network)

trained by maximizing the conditional ELBO (Sohn et al., Eq. 4)::

    log p(x | c) >= E_q[log p(x | z, c)] - KL(q(z | x, c) || p(z | c)),

whose KL term is beta-weighted as in :class:`ppvae.models.VAE`. The condition
``c`` is one of:

``"label"``
    a one-hot class label: class-conditional generation, p(x | y).
``"quadrants"``
    a partial image: the pixels of the given quadrants, and
    :data:`ppvae.data.HIDDEN` (-1) at the others (:func:`ppvae.data.mask_quadrants`).
    ``x`` is the whole image, and the likelihood scores the hidden pixels only
    (:func:`ppvae.pieces.masking.observe_where`), so the model is
    p(x_hidden | c): structured output prediction (Sohn et al., Sec. 4).

``model(x, c)`` / ``guide(x, c)`` put the batch in ``pyro.plate("data")``, so
:func:`ppvae.infer.log_likelihood` estimates log p(x_i | c_i) by importance
sampling with q(z | x, c) as the proposal (Burda et al. 2016): a stochastic
lower bound that tightens as K grows, not the ELBO that Sohn et al. and
Pyro's tutorial report.

:class:`CompletionBaseline` is the deterministic network of Sohn et al.'s
comparison: p(x_hidden | c) = prod_{d hidden} Bernoulli(x_d; sigmoid(f_d(c))),
with no latent variable, so its log-likelihood is exact (the same estimator
returns it for any K).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from torch import Tensor
from torch.nn.functional import one_hot

from ppvae.accel import LatentParts
from ppvae.data import HIDDEN, QUADRANT_COUNTS, hidden_pixels, mask_quadrants
from ppvae.models.base import FigureSpec, LatentVariableModel, as_shape, check_latent_settings
from ppvae.models.registry import register
from ppvae.nn import make_decoder, make_encoder
from ppvae.pieces import BernoulliLikelihood, DiagonalGaussian, make_likelihood
from ppvae.pieces.masking import observe_where

CONDITIONS = ("label", "quadrants")


class ConditionalModel(LatentVariableModel):
    """What conditional models share: conditions, their checks, and
    log p(x | c) through the one importance-weighted estimator.

    A condition tensor is ``(batch, context_dim)``: one-hot rows for
    ``"label"``, partial images for ``"quadrants"``. ``ppvae.fit`` trains a
    conditional model on batches ``condition_batch(x, y)`` of a Dataset.
    """

    conditional = True
    condition: str
    num_classes: int
    quadrants: int

    def _set_condition(self, condition: str, num_classes: int, quadrants: int,
                       likelihood: str) -> None:
        if condition not in CONDITIONS:
            raise ValueError(f"unknown condition {condition!r}; choose one of {list(CONDITIONS)}")
        if condition == "label" and num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        if condition == "quadrants":
            if quadrants not in QUADRANT_COUNTS:
                raise ValueError(f"quadrants (the number of given quadrants) must be 1, 2 or 3, "
                                 f"got {quadrants!r}")
            if len(self.input_shape) != 3:
                raise ValueError(f"condition='quadrants' needs an image shape (C, H, W), got "
                                 f"{self.input_shape}")
            if likelihood not in ("bernoulli", "continuous-bernoulli"):
                raise ValueError("condition='quadrants' marks hidden pixels with -1, which needs "
                                 "pixels in [0, 1]: use likelihood='bernoulli' or "
                                 f"'continuous-bernoulli', not {likelihood!r}")
        self.condition = condition
        self.num_classes = num_classes
        self.quadrants = quadrants
        self.context_dim = num_classes if condition == "label" else self.input_dim

    # ------------------------------------------------------------ conditions
    def condition_from(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """The condition of complete data: one-hot ``y`` (``"label"``) or ``x``
        with the pixels outside the given quadrants set to -1 (``"quadrants"``)."""
        if self.condition == "label":
            if y is None:
                raise ValueError("condition='label' needs the class labels y")
            return self._labels_to_one_hot(y, "y").to(x.device, x.dtype)
        return mask_quadrants(x, self.input_shape, self.quadrants)

    def model_args(self, split: Any, max_points: int | None = None) -> tuple[Tensor, ...]:
        """``(x, condition_from(x, y))`` of (the first ``max_points`` points of) a split."""
        x = self.prepare(split.x[:max_points], name="the data")
        return x, self.condition_from(x, split.y[:max_points].to(x.device))

    def condition_batch(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """``(x, condition_from(x, y))``: what the trainer passes to model and guide."""
        return x, self.condition_from(x, y)

    def prepare_condition(self, c: Tensor | np.ndarray | int, num: int | None = None, *,
                          name: str = "c") -> Tensor:
        """Validate a condition and return it as a float tensor ``(batch, context_dim)``.

        ``"label"``: integer class labels ``(batch,)`` (an int stands for one
        label) or one-hot rows ``(batch, num_classes)``. ``"quadrants"``:
        partial images ``(batch, D)`` or ``(batch, *input_shape)`` with -1 at
        hidden pixels and values in [0, 1] elsewhere. ``num``, if given, is the
        number of data points the condition must match.

        Raises:
            ValueError: naming the problem (shape, dtype, label out of range,
                values outside [0, 1], no hidden pixel to predict).
        """
        c = torch.as_tensor(c)
        if c.dtype.is_complex or c.dtype == torch.bool:
            raise ValueError(f"{name} must hold real numbers, got dtype {c.dtype}")
        if self.condition == "label":
            c = self._labels_to_one_hot(c, name)
        else:
            c = self._check_partial_images(c.to(torch.float32), name)
        if num is not None and len(c) != num:
            raise ValueError(f"{name} has {len(c)} conditions for {num} data points")
        return c.to(self.device)

    def _labels_to_one_hot(self, c: Tensor, name: str) -> Tensor:
        k = self.num_classes
        if c.dim() == 2 and c.shape[1] == k and c.is_floating_point():
            if not bool(((c == 0) | (c == 1)).all() and (c.sum(-1) == 1).all()):
                raise ValueError(f"{name} has rows that are not one-hot over {k} classes")
            return c.to(torch.float32)
        if c.dim() > 1 or c.is_floating_point():
            raise ValueError(f"{name} must be integer class labels of shape (batch,) or one-hot "
                             f"rows of shape (batch, {k}), got {c.dtype} of shape "
                             f"{tuple(c.shape)}")
        c = c.reshape(-1)
        if len(c) and (int(c.min()) < 0 or int(c.max()) >= k):
            raise ValueError(f"{name} must lie in 0..{k - 1}, got values from {int(c.min())} "
                             f"to {int(c.max())}")
        return one_hot(c.long(), k).to(torch.float32)

    def _check_partial_images(self, c: Tensor, name: str) -> Tensor:
        if c.dim() >= 2 and tuple(c.shape[1:]) == self.input_shape:
            c = c.reshape(len(c), -1)
        if c.dim() != 2 or c.shape[1] != self.input_dim:
            raise ValueError(f"{name} must be partial images of shape (batch, {self.input_dim}) "
                             f"or (batch, {', '.join(map(str, self.input_shape))}), got "
                             f"{tuple(c.shape)}")
        hidden = hidden_pixels(c)
        if not bool(((c >= 0) & (c <= 1) | hidden).all()):
            raise ValueError(f"{name} must hold pixel values in [0, 1] and {HIDDEN:g} at hidden "
                             "pixels (ppvae.data.mask_quadrants makes such partial images)")
        if not bool(hidden.any(-1).all()):
            row = int((~hidden.any(-1)).nonzero()[0])
            raise ValueError(f"{name} row {row} has no hidden pixel (-1): nothing to predict")
        return c

    def _check_pair(self, x: Tensor, c: Tensor) -> None:
        """Cheap check used inside ``model``/``guide``."""
        self.check_shape(x)
        if c.dim() != 2 or c.shape != (x.shape[0], self.context_dim):
            raise ValueError(f"{type(self).__name__} expects c of shape ({x.shape[0]}, "
                             f"{self.context_dim}), got {tuple(c.shape)}; "
                             "prepare_condition(c) builds it")

    def observed_pixels(self, c: Tensor) -> Tensor | None:
        """The pixels p(x | z, c) scores: all (None, ``"label"``) or the
        hidden ones (``"quadrants"``)."""
        return None if self.condition == "label" else hidden_pixels(c)

    def _observed(self, fn: dist.Distribution, c: Tensor) -> dist.Distribution:
        """The likelihood of the pixels to predict."""
        mask = self.observed_pixels(c)
        return fn if mask is None else observe_where(fn, mask)

    def _fill_given(self, images: Tensor, c: Tensor) -> Tensor:
        """Predicted images with the given pixels of ``c`` put back."""
        if self.condition == "label":
            return images
        return torch.where(hidden_pixels(c), images, c)

    def log_likelihood(self, x: Tensor | np.ndarray, c: Tensor | np.ndarray | None = None, *,
                       num_samples: int = 1000, **kwargs: Any):
        """Importance-weighted estimates of log p(x_i | c_i) (for
        ``"quadrants"``: of the hidden pixels) with :func:`ppvae.infer.log_likelihood`
        on ``model``/``guide``; ``c`` defaults to the quadrants of ``x``."""
        from ppvae.infer import log_likelihood  # the inference layer sits above the models

        x = self.prepare(x)
        if c is None:
            if self.condition == "label":
                raise ValueError("condition='label' needs the condition c (class labels)")
            c = self.condition_from(x)
        c = self.prepare_condition(c, len(x))
        return log_likelihood(self.model, self.guide, x, c, num_samples=num_samples, **kwargs)

    def completions(self, c: Tensor, num: int = 5) -> dict[str, Tensor]:
        """Completions of partial images ``c`` to show, by row label."""
        raise NotImplementedError

    @torch.no_grad()
    def figures(self, data: Any, num: int | None = None) -> dict[str, FigureSpec]:
        """``samples``: rows of ``num`` (10) class-conditional samples per class
        (``"label"``), or completions of the first ``num`` (10) partial test
        images, beside the input and the truth (``"quadrants"``)."""
        def rows() -> dict[str, Any]:
            if self.condition == "label":
                samples = self.sample(torch.arange(self.num_classes), num or 10)
                names = data.class_names or tuple(map(str, range(self.num_classes)))
                return dict(rows={str(names[k]): samples[:, k] for k in range(self.num_classes)},
                            image_shape=data.image_shape,
                            title="Class-conditional samples: E[x | z, y], z ~ p(z | y)")
            x = self.prepare(data.test.x[: num or 10], name="test data")
            c = self.condition_from(x)
            return dict(rows={"input": c, "truth": x, **self.completions(c)},
                        image_shape=data.image_shape, title="Completions; grey = hidden")

        return {"samples": FigureSpec("image_rows", rows)}


class CVAE(ConditionalModel):
    """Conditional VAE as a Pyro model/guide pair (see the module doc).

    Args:
        input_shape: ``(C, H, W)`` of the images (or ``D`` for flat vectors
            with ``condition="label"``); data are passed flattened.
        condition: ``"label"`` or ``"quadrants"``.
        num_classes: classes of a ``"label"`` condition.
        quadrants: given quadrants (1, 2 or 3) of a ``"quadrants"`` condition,
            used by :meth:`condition_from` (the model itself reads the hidden
            pixels from c, so it scores any partial image).
        latent_dim, hidden, likelihood, network, activation, beta: as for
            :class:`ppvae.models.VAE`; the prior, recognition and generation
            networks all have ``hidden`` widths (the decoder mirrored).

    ``model(x, c, beta=None)`` and ``guide(x, c, beta=None)``: ``c`` is a
    condition tensor (:meth:`prepare_condition`).
    """

    def __init__(
        self,
        input_shape: int | Sequence[int] = (1, 8, 8),
        condition: str = "label",
        num_classes: int = 10,
        quadrants: int = 1,
        latent_dim: int = 8,
        hidden: Sequence[int] = (256, 128),
        likelihood: str = "bernoulli",
        network: str = "mlp",
        activation: str = "relu",
        beta: float = 1.0,
    ) -> None:
        check_latent_settings(latent_dim, beta)
        super().__init__(
            dict(input_shape=list(as_shape(input_shape)), condition=condition,
                 num_classes=num_classes, quadrants=quadrants, latent_dim=latent_dim,
                 hidden=list(hidden), likelihood=likelihood, network=network,
                 activation=activation, beta=beta),
            input_shape,
        )
        self._set_condition(condition, num_classes, quadrants, likelihood)
        self.latent_dim = latent_dim
        self.beta = beta
        c_shape, c_network = ((num_classes,), "mlp") if condition == "label" else (
            self.input_shape, network)
        self.prior = DiagonalGaussian(
            make_encoder(c_network, c_shape, 2 * latent_dim, hidden, activation_name=activation),
            latent_dim)
        self.encoder = DiagonalGaussian(
            make_encoder(network, self.input_shape, 2 * latent_dim, hidden,
                         context_features=self.context_dim, activation_name=activation),
            latent_dim)
        self.likelihood = make_likelihood(
            likelihood,
            make_decoder(network, latent_dim, self.input_shape, hidden,
                         context_features=self.context_dim, activation_name=activation),
            self.input_dim)

    def model(self, x: Tensor, c: Tensor, beta: float | None = None) -> None:
        """p(x, z | c) = p(z | c) p(x | z, c), with the ``z`` site scaled by beta."""
        self.pyro_module()
        self._check_pair(x, c)
        with pyro.plate("data", len(x)):
            with poutine.scale(scale=self.beta if beta is None else beta):
                z = pyro.sample("z", self.prior(c))
            pyro.sample("x", self._observed(self.likelihood(z, c), c), obs=x)

    def guide(self, x: Tensor, c: Tensor, beta: float | None = None) -> None:
        """q(z | x, c), with the ``z`` site scaled by the same beta as the model."""
        self.pyro_module()
        self._check_pair(x, c)
        with pyro.plate("data", len(x)):
            with poutine.scale(scale=self.beta if beta is None else beta):
                pyro.sample("z", self.encoder(x, c))

    def accel_parts(self, x: Tensor, c: Tensor, beta: float | None = None) -> LatentParts:
        """The pieces of ``model``/``guide`` on this batch, for the pure-torch
        twins of their objectives (:mod:`ppvae.accel`)."""
        self._check_pair(x, c)
        return LatentParts(x, self.prior, (c,), self.encoder, (x, c), self.likelihood, c,
                           self.observed_pixels(c), self.beta if beta is None else beta)

    # ----------------------------------------------------------- conveniences
    @torch.no_grad()
    def sample(self, c: Tensor | np.ndarray | int, num_samples: int = 1, *,
               mean: bool = True) -> Tensor:
        """``num_samples`` draws for each condition: z ~ p(z | c), then
        E[x | z, c] (``mean=True``) or x ~ p(x | z, c); given pixels of a
        partial image are kept. Returns ``(num_samples, batch, D)``."""
        if num_samples < 1:
            raise ValueError(f"num_samples must be at least 1, got {num_samples}")
        c = self.prepare_condition(c)
        z = self.prior(c).sample((num_samples,))
        images = self.likelihood.mean(z, c) if mean else self.likelihood(z, c).sample()
        return self._fill_given(images, c)

    @torch.no_grad()
    def completions(self, c: Tensor, num: int = 5) -> dict[str, Tensor]:
        """``num`` completions E[x | z, c], z ~ p(z | c), as rows ``CVAE i``."""
        return {f"CVAE {i + 1}": sample for i, sample in enumerate(self.sample(c, num))}

    @torch.no_grad()
    def predict(self, c: Tensor | np.ndarray | int) -> Tensor:
        """The deterministic prediction of Sohn et al. (Sec. 4.1):
        E[x | z = mean of p(z | c), c], given pixels kept; ``(batch, D)``."""
        c = self.prepare_condition(c)
        return self._fill_given(self.likelihood.mean(self.prior(c).mean, c), c)

    @torch.no_grad()
    def encode(self, x: Tensor | np.ndarray, c: Tensor | np.ndarray, *,
               sample: bool = False) -> Tensor:
        """Latent codes from q(z | x, c): the mean, or a draw."""
        x = self.prepare(x)
        q = self.encoder(x, self.prepare_condition(c, len(x)))
        return q.sample() if sample else q.mean

    @torch.no_grad()
    def decode(self, z: Tensor, c: Tensor | np.ndarray | int) -> Tensor:
        """E[x | z, c] for codes ``(batch, latent_dim)``, given pixels kept."""
        z = torch.as_tensor(z, dtype=torch.float32, device=self.device)
        c = self.prepare_condition(c, len(z))
        if z.dim() != 2 or z.shape[-1] != self.latent_dim:
            raise ValueError(f"z must have shape (batch, {self.latent_dim}), got {tuple(z.shape)}")
        return self._fill_given(self.likelihood.mean(z, c), c)

    @torch.no_grad()
    def reconstruct(self, x: Tensor | np.ndarray, c: Tensor | np.ndarray) -> Tensor:
        """E[x | z = mean of q(z | x, c), c]: reconstructions of a batch."""
        return self.decode(self.encode(x, c), c)


class CompletionBaseline(ConditionalModel):
    """The deterministic baseline of image completion: a network f from the
    partial image c to one logit per pixel, p(x_hidden | c) =
    prod_{d hidden} Bernoulli(x_d; sigmoid(f_d(c))) (Sohn et al.'s "NN"). It
    has no latent variable: ``guide`` is empty, the ELBO is log p(x_hidden | c)
    itself and the importance-weighted estimate is exact for any K.

    Args:
        input_shape: ``(C, H, W)`` of the images.
        quadrants: given quadrants (1, 2 or 3) for :meth:`condition_from`.
        hidden, network, activation: the network f (:func:`ppvae.nn.make_encoder`).
    """

    def __init__(
        self,
        input_shape: Sequence[int] = (1, 8, 8),
        quadrants: int = 1,
        hidden: Sequence[int] = (256, 128),
        network: str = "mlp",
        activation: str = "relu",
    ) -> None:
        super().__init__(
            dict(input_shape=list(as_shape(input_shape)), quadrants=quadrants,
                 hidden=list(hidden), network=network, activation=activation),
            input_shape,
        )
        self._set_condition("quadrants", 0, quadrants, "bernoulli")
        self.beta = 1.0  # no latent: nothing for a KL weight to scale
        self.likelihood = BernoulliLikelihood(
            make_encoder(network, self.input_shape, self.input_dim, hidden,
                         activation_name=activation))

    def model(self, x: Tensor, c: Tensor, beta: float | None = None) -> None:
        """p(x_hidden | c), one Bernoulli per hidden pixel."""
        self.pyro_module()
        self._check_pair(x, c)
        with pyro.plate("data", len(x)):
            pyro.sample("x", self._observed(self.likelihood(c), c), obs=x)

    def guide(self, x: Tensor, c: Tensor, beta: float | None = None) -> None:
        """No latent variable to propose."""
        self.pyro_module()
        self._check_pair(x, c)

    @torch.no_grad()
    def completions(self, c: Tensor, num: int = 5) -> dict[str, Tensor]:
        """The prediction E[x | c], the one completion there is."""
        return {"baseline": self.predict(c)}

    @torch.no_grad()
    def predict(self, c: Tensor | np.ndarray) -> Tensor:
        """E[x | c]: the hidden pixels' probabilities, given pixels kept; ``(batch, D)``."""
        c = self.prepare_condition(c)
        return self._fill_given(self.likelihood.mean(c), c)


register("cvae", CVAE, summary="conditional VAE: p(x | y) or completion of hidden quadrants",
         paper="Sohn, Lee & Yan 2015")
register("completion-baseline", CompletionBaseline,
         summary="deterministic network predicting hidden quadrants (the CVAE's baseline)",
         paper="Sohn, Lee & Yan 2015")
