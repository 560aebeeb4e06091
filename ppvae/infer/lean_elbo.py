"""Pyro's ``Trace_ELBO`` for reparameterized pairs, without building traces.

For a guide whose latents are all reparameterized, Pyro's
:class:`~pyro.infer.Trace_ELBO` with one particle computes

    loss = -[sum_model_sites s * m * log p(site) - sum_guide_sites s * m * log q(site)]

at one draw z ~ q (s the site's scale, m its mask), the negative ELBO whose
gradient is the reparameterization gradient (Kingma & Welling 2014). It gets
there by recording two :class:`~pyro.poutine.Trace` graphs and post-processing
them (shape checks, score-function parts, pruning), which on a small network
costs as much Python time as the network's own forward pass.

:class:`LeanTrace_ELBO` computes the same number from two handler passes that
only accumulate the scaled, masked log densities: the guide is run once to
draw and score its latents, the model once with those values substituted.
Sampling happens in the same order as in ``Trace_ELBO``, so on the same random
state both give the same loss and gradients. The first time it meets a
model/guide pair it evaluates both on the same random state and keeps the lean
path only if they agree (on a trainer's first step, where Pyro's validation
is on and ``Trace_ELBO`` runs with all its checks, the comparison is made on
the way); it defers to ``Trace_ELBO`` while validation is enabled, with more
than one particle, and for guides with non-reparameterized or enumerated
sites.

Recorded replay. Even the lean passes spend most of a small network's step in
Python (Pyro's handlers, distribution constructors). For a pair whose owner
module declares ``static_structure = True`` (ppvae's VAE and CVAE: the
operations depend only on the shapes of the inputs), :class:`LeanTrace_ELBO`
records the lean computation once per input signature and replays it
(:mod:`ppvae.infer.replay`), with the KL weight beta an input of the
recording; the recording is used only after it gave the eager lean loss.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import pyro
import torch
from pyro.distributions import Independent
from pyro.distributions.util import scale_and_mask
from pyro.infer import Trace_ELBO
from pyro.infer.util import is_validation_enabled
from pyro.poutine.messenger import Messenger
from pyro.poutine.subsample_messenger import _Subsample
from torch import Tensor

from ppvae.infer.replay import cuda_devices, replayed, static_owner


class _NotReparameterized(Exception):
    """The guide has a site the lean path cannot score."""


class _Score(Messenger):
    """Accumulates sum_sites scale * mask * log_prob; in replay mode the latent
    sites take the values recorded by an earlier (guide) pass."""

    def __init__(self, values: dict[str, Tensor] | None = None) -> None:
        super().__init__()
        self.replay = values is not None
        self.values: dict[str, Tensor] = {} if values is None else values
        self.total: Tensor | float = 0.0  # a float until the first site

    def _pyro_sample(self, msg: dict) -> None:
        if isinstance(msg["fn"], _Subsample):  # a plate's index draw, not a density
            return
        if self.replay:
            if not msg["is_observed"]:
                msg["value"] = self.values[msg["name"]]
                msg["done"] = True
        elif msg["is_observed"] or not msg["fn"].has_rsample or msg["infer"].get("enumerate"):
            raise _NotReparameterized(msg["name"])

    def _pyro_post_sample(self, msg: dict) -> None:
        if isinstance(msg["fn"], _Subsample):
            return
        if not self.replay:
            self.values[msg["name"]] = msg["value"]
        fn, scale, mask = msg["fn"], msg["scale"], msg["mask"]
        if mask is None and isinstance(fn, Independent) and (
                not isinstance(scale, Tensor) or scale.dim() == 0):
            # one sum over batch and event together (the site's total either way)
            site = fn.base_dist.log_prob(msg["value"]).sum()
            site = site if isinstance(scale, (int, float)) and scale == 1 else site * scale
        else:
            site = scale_and_mask(fn.log_prob(msg["value"]), scale, mask).sum()
        self.total = site if isinstance(self.total, float) else self.total + site


def lean_elbo_loss(model: Callable, guide: Callable, *args: Any, **kwargs: Any) -> Tensor:
    """-ELBO at one reparameterized draw from the guide (see the module doc).

    Raises:
        KeyError: a model latent has no counterpart in the guide.
        _NotReparameterized: a guide site is observed, enumerated or not
            reparameterizable.
    """
    with _Score() as guide_pass:
        guide(*args, **kwargs)
    with _Score(guide_pass.values) as model_pass:
        model(*args, **kwargs)
    return torch.as_tensor(guide_pass.total - model_pass.total)


class LeanTrace_ELBO(Trace_ELBO):
    """:class:`~pyro.infer.Trace_ELBO` whose ``differentiable_loss`` takes the
    lean path of :func:`lean_elbo_loss` where that is the same computation,
    replayed from a recording for pairs of static structure (module doc).

    Args:
        replay: record and replay the lean computation where the pair allows
            it (``True``); ``False`` always runs it eagerly.
        Other args and methods are Trace_ELBO's.
    """

    def __init__(self, *args: Any, replay: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.replay = replay
        self._agrees: dict[tuple[Callable, Callable], bool] = {}
        self._recordings: dict = {}  # ppvae.infer.replay's, per signature

    def __getstate__(self) -> dict:
        # recordings and checks are per process; a copy starts afresh
        return {**self.__dict__, "_agrees": {}, "_recordings": {}}

    def differentiable_loss(self, model: Callable, guide: Callable, *args: Any,
                            **kwargs: Any) -> Tensor:
        if self.num_particles != 1:
            return super().differentiable_loss(model, guide, *args, **kwargs)
        if is_validation_enabled():
            return self._checked_reference(model, guide, args, kwargs)
        if not self._lean_ok(model, guide, args, kwargs):
            return super().differentiable_loss(model, guide, *args, **kwargs)
        owner = static_owner(model, guide) if self.replay and torch.is_grad_enabled() else None
        if owner is not None:
            loss = replayed(self._recordings, (model, guide), partial(lean_elbo_loss, model, guide),
                            owner, args, kwargs)
            if loss is not None:
                return loss
        return lean_elbo_loss(model, guide, *args, **kwargs)

    def _checked_reference(self, model: Callable, guide: Callable, args: tuple,
                           kwargs: dict) -> Tensor:
        """Trace_ELBO's loss, with all of Pyro's checks (validation is on);
        the first time for a pair, the lean path's loss on a copy of the same
        random state is compared with it on the way, so that the agreement
        check costs no Trace_ELBO evaluation of its own (a trainer's first,
        validated step does it)."""
        key = (model, guide)
        if key in self._agrees:
            return super().differentiable_loss(model, guide, *args, **kwargs)
        # Pyro's checks run once, in Trace_ELBO's pass below
        with torch.no_grad(), torch.random.fork_rng(devices=cuda_devices(args)), \
                pyro.validation_enabled(False):
            lean = self._lean_or_none(model, guide, args, kwargs, validated=True)
        reference = super().differentiable_loss(model, guide, *args, **kwargs)
        self._agrees[key] = self._agree(lean, reference)
        return reference

    def _lean_ok(self, model: Callable, guide: Callable, args: tuple, kwargs: dict) -> bool:
        """Whether the lean path gives Trace_ELBO's loss on this pair: checked
        once per pair, on one draw from a copy of the current random state."""
        key = (model, guide)
        if key not in self._agrees:
            devices = cuda_devices(args)
            with torch.no_grad():
                with torch.random.fork_rng(devices=devices):
                    reference = super().differentiable_loss(model, guide, *args, **kwargs)
                with torch.random.fork_rng(devices=devices):
                    lean = self._lean_or_none(model, guide, args, kwargs)
            self._agrees[key] = self._agree(lean, reference)
        return self._agrees[key]

    @staticmethod
    def _lean_or_none(model: Callable, guide: Callable, args: tuple, kwargs: dict,
                      validated: bool = False) -> Tensor | None:
        """The lean loss, or None where the lean path cannot score the pair
        (or, with ``validated``, where it raises ``ValueError`` or
        ``NotImplementedError``: Trace_ELBO, run next with Pyro's checks,
        then raises its own error if the pair is at fault)."""
        try:
            return lean_elbo_loss(model, guide, *args, **kwargs)
        except (_NotReparameterized, KeyError):
            return None
        except (ValueError, NotImplementedError):
            if validated:
                return None
            raise

    @staticmethod
    def _agree(lean: Tensor | None, reference: Tensor) -> bool:
        return lean is not None and bool(
            torch.allclose(lean.detach(), reference.detach(), rtol=1e-5, atol=1e-4))
