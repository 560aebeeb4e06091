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
path only if they agree; it also defers to ``Trace_ELBO`` (with all its
checks) while Pyro's validation is enabled, with more than one particle, and
for guides with non-reparameterized or enumerated sites.

Recorded replay. Even the lean passes spend most of a small network's step in
Python: Pyro's handler stack, distribution constructors and argument
broadcasting run again at every step although they produce the same tensor
operations each time. For a pair whose owner module declares
``static_structure = True`` (ppvae's VAE and CVAE: the operations depend only
on the shapes of the inputs, never on their values), :class:`LeanTrace_ELBO`
records the lean computation once per input signature with
:func:`torch.jit.trace` (parameters, buffers, data and float keyword
arguments such as the KL weight beta as inputs, so nothing is frozen in) and
replays the recording on later steps, in PyTorch's graph interpreter with its
optimizing passes off so that every operation, forward and backward, is the
same eager kernel (its symbolic differentiation was measured slower here).
Random draws are operations of the recording and come from the same global
generator in the same order. A signature is recorded on its second occurrence
(a one-off shape, such as an epoch's last short batch, stays eager), and the
recording is used only after it gave, on a copy of the random state, the
eager lean loss. ``torch.jit.trace`` is deprecated in PyTorch 2.13 in favour of
``torch.compile``, which on this project's CPU step compiled for seconds into
18 graphs broken at Pyro's handlers and ran slower than eager; if tracing is
unavailable or fails, the eager lean path runs.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable
from typing import Any

import torch
from pyro.distributions import Independent
from pyro.distributions.util import scale_and_mask
from pyro.infer import Trace_ELBO
from pyro.infer.util import is_validation_enabled
from pyro.poutine.messenger import Messenger
from pyro.poutine.subsample_messenger import _Subsample
from torch import Tensor
from torch.nn.modules.module import register_module_module_registration_hook


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
        self._recordings: dict[tuple, _Recording | None] = {}

    def __getstate__(self) -> dict:
        # recordings and checks are per process; a copy starts afresh
        return {**self.__dict__, "_agrees": {}, "_recordings": {}}

    def differentiable_loss(self, model: Callable, guide: Callable, *args: Any,
                            **kwargs: Any) -> Tensor:
        if self.num_particles != 1 or is_validation_enabled() or not self._lean_ok(
                model, guide, args, kwargs):
            return super().differentiable_loss(model, guide, *args, **kwargs)
        if self.replay and torch.is_grad_enabled():
            found = self._recording(model, guide, args, kwargs)
            if found is not None:
                recording, state = found
                return recording(args, kwargs, state)
        return lean_elbo_loss(model, guide, *args, **kwargs)

    def _lean_ok(self, model: Callable, guide: Callable, args: tuple, kwargs: dict) -> bool:
        """Whether the lean path gives Trace_ELBO's loss on this pair: checked
        once per pair, on one draw from a copy of the current random state."""
        key = (model, guide)
        if key not in self._agrees:
            devices = _cuda_devices(args)
            with torch.no_grad():
                with torch.random.fork_rng(devices=devices):
                    reference = super().differentiable_loss(model, guide, *args, **kwargs)
                with torch.random.fork_rng(devices=devices):
                    try:
                        lean = lean_elbo_loss(model, guide, *args, **kwargs)
                    except (_NotReparameterized, KeyError):
                        lean = None
            self._agrees[key] = lean is not None and bool(
                torch.allclose(lean, reference, rtol=1e-5, atol=1e-4))
        return self._agrees[key]

    def _recording(self, model: Callable, guide: Callable, args: tuple, kwargs: dict
                   ) -> tuple[_Recording, tuple[Tensor, ...]] | None:
        """The verified recording for this call's signature and the module
        state to call it with, or None (eager): made on the signature's second
        occurrence, None for good if that fails."""
        owner = getattr(model, "__self__", None)
        if (not isinstance(owner, torch.nn.Module) or getattr(guide, "__self__", None) is not owner
                or not getattr(owner, "static_structure", False)):
            return None
        state = _state(owner)
        signature = _signature(args, kwargs, state)
        if signature is None:
            return None
        key = (model, guide, signature)
        if key not in self._recordings:
            self._recordings[key] = None if _jit_trace is None else _Pending()
            return None
        recording = self._recordings[key]
        if isinstance(recording, _Pending):
            recording = _Recording.make(model, guide, args, kwargs, state)
            self._recordings[key] = recording
        return None if recording is None else (recording, state)


class _Pending:
    """A signature seen once: recorded if it comes again."""


def _cuda_devices(args: tuple) -> list[torch.device]:
    return [t.device for t in args if isinstance(t, Tensor) and t.is_cuda][:1]


def _signature(args: tuple, kwargs: dict, state: tuple[Tensor, ...]) -> tuple | None:
    """What a recording depends on: the shapes, dtypes and devices of the
    tensor arguments, the names of the float keyword arguments, the values of
    the others, and the identity of the module's parameters and buffers.
    None if an argument cannot be an input of a recording."""
    parts: list = []
    for a in args:
        if isinstance(a, Tensor):
            parts.append((a.shape, a.dtype, a.device, a.requires_grad))
        elif a is None:
            parts.append(None)
        else:
            return None
    for name, value in sorted(kwargs.items()):
        if isinstance(value, float):  # an input, except the common scale 1 (no multiplication)
            parts.append((name, float, value == 1.0))
        elif value is None or isinstance(value, (bool, int, str)):
            parts.append((name, value))
        else:
            return None
    parts.append(tuple(map(id, state)))
    return tuple(parts)


def _state(owner: torch.nn.Module) -> tuple[Tensor, ...]:
    """The module's parameters and buffers, the inputs of its recordings:
    read at every step (``Module.to`` replaces buffers), from a list of its
    submodules kept until a module is registered anywhere (a fresh
    ``owner.parameters()`` walk cost about 20 microseconds a step)."""
    cached = _submodules.get(owner)
    if cached is None or cached[0] != _module_registrations[0]:
        cached = (_module_registrations[0], tuple(owner.modules()))
        _submodules[owner] = cached
    modules = cached[1]
    return tuple(dict.fromkeys((*(p for m in modules for p in m._parameters.values() if p is not None),
                                *(b for m in modules for b in m._buffers.values() if b is not None))))


_submodules: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_module_registrations = [0]


def _count_module_registration(module: torch.nn.Module, name: str, child: Any) -> None:
    _module_registrations[0] += 1


register_module_module_registration_hook(_count_module_registration)


try:  # deprecated in PyTorch 2.13; without it, the eager lean path runs
    from torch.jit import trace as _jit_trace
except ImportError:  # pragma: no cover
    _jit_trace = None


class _Recording:
    """A :func:`torch.jit.trace` recording of :func:`lean_elbo_loss` on one
    signature: inputs are the tensor arguments, the float keyword arguments
    as 0-d tensors (those equal to 1 are constants of the signature), then the
    owner module's parameters and buffers."""

    def __init__(self, function: Callable, float_names: tuple[str, ...]) -> None:
        self.function = function
        self.float_names = float_names

    def inputs(self, args: tuple, kwargs: dict, state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        like = next(a for a in args if isinstance(a, Tensor))
        floats = tuple(torch.tensor(kwargs[n], dtype=torch.get_default_dtype(), device=like.device)
                       for n in self.float_names)
        return (*(a for a in args if a is not None), *floats, *state)

    def __call__(self, args: tuple, kwargs: dict, state: tuple[Tensor, ...]) -> Tensor:
        # eager kernels forward and backward (see the module doc)
        with torch.jit.optimized_execution(False):
            return self.function(*self.inputs(args, kwargs, state))

    @classmethod
    def make(cls, model: Callable, guide: Callable, args: tuple, kwargs: dict,
             state: tuple[Tensor, ...]) -> _Recording | None:
        """Record and check against the eager lean loss (both on copies of
        the random state, which is left as it was); None if either fails."""
        float_names = tuple(n for n, v in sorted(kwargs.items())
                            if isinstance(v, float) and v != 1.0)
        fixed = {n: v for n, v in kwargs.items() if n not in float_names}
        slots = [a is not None for a in args]
        n_args = sum(slots)

        def run(*inputs: Tensor) -> Tensor:
            given = iter(inputs[:n_args])
            call_args = [next(given) if present else None for present in slots]
            floats = dict(zip(float_names, inputs[n_args:n_args + len(float_names)]))
            return lean_elbo_loss(model, guide, *call_args, **fixed, **floats)

        recording = cls(run, float_names)
        devices = _cuda_devices(args)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the deprecation and tracer notes
                with torch.random.fork_rng(devices=devices):
                    recording.function = _jit_trace(run, recording.inputs(args, kwargs, state),
                                                    check_trace=False)
            with torch.random.fork_rng(devices=devices):
                expected = lean_elbo_loss(model, guide, *args, **kwargs)
            with torch.random.fork_rng(devices=devices):
                replayed = recording(args, kwargs, state)
        except Exception:  # anything the tracer cannot record: stay eager
            return None
        same = (replayed.shape == expected.shape
                and replayed.requires_grad == expected.requires_grad
                and bool(torch.allclose(replayed, expected, rtol=1e-5, atol=1e-4)))
        return recording if same else None
