"""The model contract: what ``ppvae.fit`` and its training plans ask of a model.

Required: an object with ``model(*batch, **kw)`` and ``guide(*batch, **kw)``
whose data points sit in ``pyro.plate("data", N)``; ``fit`` trains the
parameters of a :class:`torch.nn.Module` (a :class:`pyro.nn.PyroModule`, or
a plain module whose ``model``/``guide`` register their networks with
``pyro.module``, as Pyro's own VAE example does).

Optional extras, each read in this module alone and used only where the
model declares it:

- a KL weight keyword: where ``model`` and ``guide`` both take ``beta``,
  the ELBO plans pass the KL weight (warm-up) as ``beta=`` and validate at
  ``beta=1``; otherwise they pass nothing;
- ``beta``: the KL weight the warm-up rises to (default 1);
- ``prepare(x, name=..., support=...)``: the model's own data check,
  returning the data as the model takes it (else: a float tensor, checked
  for NaN/inf and, for dynamically binarized data, for values in [0, 1]);
- ``default_plan``: the name of the plan ``fit`` uses (default ``"elbo"``);
- ``density``: False for a pair that is not a density of x (a point-mass
  guide): evaluated by its reconstruction error, not by log p(x);
- ``replaced_priors``: names of latent sites whose prior term the
  reconstruction plan leaves out of its loss, because a declared penalty
  takes its place (a Wasserstein autoencoder's MMD between the codes and
  the prior); the model keeps its prior, so evaluators see the density;
- ``conditional`` with ``condition_batch(x, y) -> (x, c)``: a model of x
  given a condition made from each labelled batch;
- ``likelihood``: the model's :class:`ppvae.pieces.ObservationModel`
  p(x | ...), whose decoder's output bias ``fit(..., init_output_bias=True)``
  sets from the training data (:func:`init_output_bias`).

Plans add their own requirements (e.g. the semi-supervised plan's
``classifier``), stated in their docstrings.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ppvae.pieces import ObservationModel, check_support


def check_model(model: Any) -> nn.Module:
    """Raise ``TypeError`` unless ``model`` is an ``nn.Module`` with callable
    ``model`` and ``guide``; return it."""
    for name in ("model", "guide"):
        if not callable(getattr(model, name, None)):
            raise TypeError(f"ppvae.fit trains an object with model(...) and guide(...) "
                            f"methods; {type(model).__name__} has no {name}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"ppvae.fit trains the parameters of a torch.nn.Module; "
                        f"{type(model).__name__} is not one (put its networks on an nn.Module "
                        "or a pyro.nn.PyroModule)")
    return model


def takes_keyword(fn: Callable, name: str) -> bool:
    """Whether ``fn`` accepts the keyword argument ``name``."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def takes_kl_weight(model: Any) -> bool:
    """Whether ``model.model`` and ``model.guide`` both take ``beta=``."""
    return takes_keyword(model.model, "beta") and takes_keyword(model.guide, "beta")


def kl_weight(model: Any) -> float:
    """The model's KL weight (its ``beta``, default 1)."""
    return float(getattr(model, "beta", 1.0))


def default_plan(model: Any) -> str:
    """The name of the plan ``fit`` uses for ``model`` (default ``"elbo"``)."""
    return getattr(model, "default_plan", "elbo")


def is_density(model: Any) -> bool:
    """Whether ``model`` is a density of x (default True)."""
    return bool(getattr(model, "density", True))


def replaced_priors(model: Any) -> frozenset[str]:
    """The latent sites whose prior term a penalty replaces in training (default none)."""
    return frozenset(getattr(model, "replaced_priors", ()))


def is_conditional(model: Any) -> bool:
    """Whether ``model`` trains on ``condition_batch(x, y)`` of labelled data."""
    return bool(getattr(model, "conditional", False))


def init_output_bias(model: Any, x: Tensor) -> None:
    """Set the output bias of ``model.likelihood``'s decoder from the
    training inputs ``x`` (:meth:`ppvae.pieces.ObservationModel.init_from_data`);
    ``ValueError`` for a model without such a likelihood."""
    likelihood = getattr(model, "likelihood", None)
    if not isinstance(likelihood, ObservationModel):
        raise ValueError(f"init_output_bias sets the output bias of the model's likelihood, a "
                         f"ppvae.pieces.ObservationModel; {type(model).__name__} has none")
    likelihood.init_from_data(x)


def device_of(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU if none)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def prepare(model: Any, x: Tensor | np.ndarray, *, name: str = "x",
            support: str | None = None) -> Tensor:
    """The data as the model takes it: the model's own ``prepare`` where it
    declares one; otherwise a float32 tensor on the model's device, checked to
    be non-empty and finite (and within ``support``, e.g. ``"unit"`` for
    images binarized dynamically). Raises ``ValueError`` naming the problem."""
    own = getattr(model, "prepare", None)
    if callable(own):
        return own(x, name=name, support=support)
    x = torch.as_tensor(x)
    if x.dtype.is_complex or x.dtype == torch.bool:
        raise ValueError(f"{name} must hold real numbers, got dtype {x.dtype}")
    x = x.to(dtype=torch.float32, device=device_of(model))
    if x.dim() == 0 or len(x) == 0:
        raise ValueError(f"{name} is empty: no data points")
    check_support(x, support or "real", name)
    return x


def check_parameters(model: nn.Module, params: Any) -> None:
    """Raise ``ValueError`` if the trace ``params`` (of ``pyro.param`` sites,
    from ``poutine.trace(param_only=True)``) holds a Pyro parameter that is
    not a parameter of ``model``: the trainer's optimizers step the module's
    parameters, so such a parameter would silently stay at its initial value."""
    own = {p.data_ptr() for p in model.parameters()}
    outside = []
    for name, site in params.nodes.items():
        value = site["value"]
        value = getattr(value, "unconstrained", lambda: value)()
        if isinstance(value, Tensor) and value.requires_grad and value.data_ptr() not in own:
            outside.append(name)
    if outside:
        raise ValueError(
            f"{type(model).__name__}'s model/guide use Pyro parameters that are not parameters of "
            f"the module: {sorted(outside)}; ppvae.fit trains the module's parameters, so make "
            "them nn.Parameter or pyro.nn.PyroParam attributes of the module")
