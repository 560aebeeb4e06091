"""What every ppvae model shares: a unique Pyro name, a JSON-able config for
save/load, checks of its input data, and the optional extras of the model
contract declared with their defaults.

Models are plain :class:`torch.nn.Module` s whose ``model`` and ``guide``
register their parameters with Pyro's parameter store on every call
(``pyro.module``, as Pyro's own examples do), so ``model.model`` /
``model.guide`` can be handed to :class:`pyro.infer.SVI` with a ``pyro.optim``
optimizer. Each instance registers under its own name: two models of the same
class in one process never share parameters by accident.

The model contract (:mod:`ppvae.train.contract`) asks only for ``model`` and
``guide`` with the data in ``pyro.plate("data", N)``; the extras below are what
a ppvae model declares beyond it.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, NamedTuple

import numpy as np
import pyro
import torch
from torch import Tensor, nn


_instances = itertools.count()


def as_shape(input_shape: int | Sequence[int]) -> tuple[int, ...]:
    """Normalize an input shape given as ``D`` or ``(C, H, W)`` to a tuple."""
    shape = (input_shape,) if isinstance(input_shape, (int, np.integer)) else tuple(input_shape)
    if not shape or any(int(s) < 1 for s in shape):
        raise ValueError(f"input_shape must be positive sizes, got {input_shape!r}")
    return tuple(int(s) for s in shape)


def check_latent_settings(latent_dim: int, beta: float) -> None:
    """Raise ``ValueError`` for a latent dimension below 1 or a non-positive beta."""
    if latent_dim < 1:
        raise ValueError(f"latent_dim must be at least 1, got {latent_dim}")
    if beta <= 0:
        raise ValueError(f"beta must be positive, got {beta}")


def check_num_classes(num_classes: int) -> None:
    """Raise ``ValueError`` unless ``num_classes`` is an integer of at least 2."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer of at least 2, got {num_classes!r}")


class FigureSpec(NamedTuple):
    """A figure a model offers: the name of the :mod:`ppvae.plots` function
    that draws it, and a function making that function's arguments (called
    only when the figure is drawn)."""

    plot: str
    arguments: Callable[[], dict[str, Any]]


class LatentVariableModel(nn.Module):
    """Base class of ppvae's models.

    Subclasses call ``super().__init__(config, input_shape)`` with their
    constructor arguments as a JSON-able dict (what :func:`ppvae.save` stores
    and :func:`ppvae.load` passes back), build their pieces, and call
    :meth:`pyro_module` first thing in ``model`` and ``guide``.
    """

    #: the training plan :func:`ppvae.fit` uses unless told otherwise (a name
    #: in :data:`ppvae.train.PLANS`)
    default_plan: ClassVar[str] = "elbo"
    #: ``model``/``guide`` take ``(x, c)``, with c made from a labelled batch
    #: by ``condition_batch(x, y)``
    conditional: ClassVar[bool] = False
    #: whether ``model``/``guide`` make a density of x that the
    #: importance-weighted estimator scores (False for point-mass guides)
    density: ClassVar[bool] = True
    #: the weight of the latent sites' KL term (a beta-VAE's beta); the
    #: trainer's KL warm-up rises to it
    beta: float = 1.0

    def __init__(self, config: dict[str, Any], input_shape: int | Sequence[int]) -> None:
        super().__init__()
        #: this instance's name in Pyro's parameter store
        self.pyro_name = f"{type(self).__name__.lower()}{next(_instances)}"
        self.config = config
        self.input_shape = as_shape(input_shape)
        self.input_dim = int(np.prod(self.input_shape))

    def pyro_module(self) -> None:
        """Register the parameters with Pyro's parameter store under
        :attr:`pyro_name` (``pyro.module``), so that Pyro's optimizers see
        them; ``model`` and ``guide`` do it on every call."""
        pyro.module(self.pyro_name, self)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def check_shape(self, x: Tensor) -> None:
        """Cheap check used inside ``model``/``guide``: ``x`` is ``(batch, D)``."""
        if x.dim() != 2 or x.shape[-1] != self.input_dim:
            raise ValueError(
                f"{type(self).__name__} expects x of shape (batch, {self.input_dim}), "
                f"got {tuple(x.shape)}; flatten images with x.reshape(len(x), -1)"
            )

    def prepare(
        self, x: Tensor | np.ndarray, *, name: str = "x", support: str | None = None
    ) -> Tensor:
        """Validate user data and return it as a float tensor ``(batch, D)`` on
        the model's device.

        Accepts ``(batch, D)`` or ``(batch, *input_shape)``; raises ``ValueError``
        naming the problem for a wrong shape, empty data, NaN/inf, or values
        outside the likelihood's support (or ``support``, if given: ``"unit"``
        for grey data that will be binarized dynamically).
        """
        x = torch.as_tensor(x)
        if x.dtype.is_complex or x.dtype == torch.bool:
            raise ValueError(f"{name} must hold real numbers, got dtype {x.dtype}")
        x = x.to(dtype=torch.float32, device=self.device)
        if x.dim() >= 2 and tuple(x.shape[1:]) == self.input_shape:
            x = x.reshape(len(x), -1)
        if x.dim() != 2 or x.shape[-1] != self.input_dim:
            raise ValueError(
                f"{name} must have shape (batch, {self.input_dim}) or (batch, "
                f"{', '.join(map(str, self.input_shape))}), got {tuple(x.shape)}"
            )
        if len(x) == 0:
            raise ValueError(f"{name} is empty: no data points")
        self.likelihood.check(x, support=support, name=name)
        return x

    def model_args(self, split: Any, max_points: int | None = None) -> tuple[Tensor, ...]:
        """The arguments of ``model``/``guide`` for (the first ``max_points``
        points of) a data split: ``(x,)``."""
        return (self.prepare(split.x[:max_points], name="the data"),)

    def log_likelihood(self, x: Tensor | np.ndarray, *, num_samples: int = 1000, **kwargs: Any):
        """Importance-weighted estimates of log p(x_i) per data point, with
        standard error, ELBO, ESS and PSIS k-hat: :func:`ppvae.infer.log_likelihood`
        on this model's ``model``/``guide`` (keyword arguments are passed on)."""
        from ppvae.infer import log_likelihood  # the inference layer sits above the models

        return log_likelihood(self.model, self.guide, self.prepare(x), num_samples=num_samples,
                              **kwargs)

    @torch.no_grad()
    def decode(self, z: Tensor) -> Tensor:
        """E[x | z] for codes ``(batch, latent_dim)``: flattened images (for a
        model with one latent of ``latent_dim`` and a ``likelihood``)."""
        z = torch.as_tensor(z, dtype=torch.float32, device=self.device)
        if z.shape[-1] != self.latent_dim:
            raise ValueError(f"z must end in latent_dim={self.latent_dim}, got {tuple(z.shape)}")
        return self.likelihood.mean(z)

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """E[x | z = encode(x)] (the code, or the mean of q(z | x)):
        reconstructions of a batch."""
        return self.decode(self.encode(x))

    def prior_codes(self, num_samples: int) -> Tensor:
        """``num_samples`` draws from the model of the code its ``likelihood``
        takes: z ~ p(z) (``prior.sample``); a model with more latents draws
        them ancestrally and returns the likelihood's input."""
        return self.prior.sample(num_samples)

    @torch.no_grad()
    def sample(self, num_samples: int, *, mean: bool = True) -> Tensor:
        """Draw codes z (:meth:`prior_codes`) and return E[x | z] (``mean=True``)
        or x ~ p(x | z), for a model with a ``likelihood``."""
        if num_samples < 1:
            raise ValueError(f"num_samples must be at least 1, got {num_samples}")
        z = self.prior_codes(num_samples).to(self.device)
        return self.likelihood.mean(z) if mean else self.likelihood(z).sample()

    @torch.no_grad()
    def figures(self, data: Any, num: int | None = None) -> dict[str, FigureSpec]:
        """The figures this model offers for a data set (``ppvae train`` draws
        them all; ``ppvae sample``, ``reconstruct`` and ``latent-map`` one
        each), by name: for images, ``reconstructions`` and ``samples``; a
        ``latent_map`` of the test codes; for a 2-d latent, the decoded
        ``latent_manifold``. ``num``: images (or mapped points) in each."""
        x, y, shape = data.test.x, data.test.y, data.image_shape
        images = len(shape) == 3 and tuple(shape) == self.input_shape
        out = {}
        if images:
            def reconstructions() -> dict[str, Any]:
                originals = x[: num or 16]
                return dict(originals=originals, reconstructions=self.reconstruct(originals),
                            image_shape=shape)

            out["reconstructions"] = FigureSpec("plot_reconstructions", reconstructions)
            out["samples"] = FigureSpec("image_grid", lambda: dict(
                images=self.sample(num or 64), image_shape=shape,
                title="Samples: E[x | z], z ~ p(z)"))
        points = num or 5000
        out["latent_map"] = FigureSpec("plot_latent_map", lambda: dict(
            z=self.encode(x[:points]), labels=y[:points], class_names=data.class_names or None,
            title=f"Latent means of {min(len(x), points)} test images"))
        if images and getattr(self, "latent_dim", None) == 2:
            out["latent_manifold"] = FigureSpec("plot_latent_manifold", lambda: dict(
                decode=self.decode, image_shape=shape))
        return out
