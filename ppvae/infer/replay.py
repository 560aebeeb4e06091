"""Record a computation on a Pyro model/guide pair once, replay it after.

Pyro's handler stack, distribution constructors and argument broadcasting
run in Python at every call although, for a pair whose operations depend only
on the shapes of its inputs, they produce the same tensor operations each
time. :func:`replayed` records such a computation once per input signature
with :func:`torch.jit.trace` (the tensor arguments, the float keyword
arguments and the owner module's parameters and buffers as inputs, so nothing
is frozen in) and replays the recording on later calls in PyTorch's graph
interpreter with its optimizing passes off, so that every operation, forward
and backward, is the same eager kernel (its symbolic differentiation was
measured slower here). Random draws are operations of the recording and come
from the same global generator in the same order.

Which pairs qualify: bound methods of one :class:`torch.nn.Module` that sets
``static_structure = True`` (ppvae's VAE and CVAE). A signature is recorded
on its second occurrence (a one-off shape stays eager), and the recording is
kept only if its replay gave the result of the eager run that the tracer
made while recording. The signature includes the shapes, dtypes and devices
of the arguments, whether gradients are on, and the identity of the module's
parameters and buffers.

Used by the trainer's ELBO (:class:`ppvae.infer.lean_elbo.LeanTrace_ELBO`)
and by the importance-weighted estimator's passes
(:func:`ppvae.infer.log_likelihood`), which keeps its recordings with the
module for later estimates. A recording holds no reference to the module
(the traced function's copy of the Python function it traced is dropped).

``torch.jit.trace`` is deprecated in PyTorch 2.13 in favour of
``torch.compile``, which on this project's CPU training step compiled for
seconds into 18 graphs broken at Pyro's handlers and ran slower than eager;
if tracing is unavailable or fails, the caller's eager path runs.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable, Hashable
from typing import Any

import torch
from torch import Tensor
from torch.nn.modules.module import register_module_module_registration_hook


def static_owner(model: Callable, guide: Callable) -> torch.nn.Module | None:
    """The module whose bound methods ``model`` and ``guide`` are, if it
    declares ``static_structure = True``; else None."""
    owner = getattr(model, "__self__", None)
    if (isinstance(owner, torch.nn.Module) and getattr(guide, "__self__", None) is owner
            and getattr(owner, "static_structure", False)):
        return owner
    return None


def replayed(recordings: dict, key: Hashable, function: Callable[..., Tensor],
             owner: torch.nn.Module, args: tuple, kwargs: dict) -> Tensor | None:
    """``function(*args, **kwargs)`` from the recording kept in
    ``recordings`` for ``key`` and this call's signature, or None if there is
    none (yet): the caller then runs ``function`` itself. A signature is
    recorded on its second occurrence, for good or (if that fails) never."""
    state = _state(owner)
    signature = _signature(args, kwargs, state)
    if signature is None:
        return None
    full_key = (key, signature)
    recording = recordings.get(full_key, _MISSING)
    if recording is _MISSING:
        recordings[full_key] = None if _jit_trace is None else _Pending()
        return None
    if isinstance(recording, _Pending):
        recording, result = _Recording.make(function, args, kwargs, state)
        recordings[full_key] = recording
        return result
    return None if recording is None else recording(args, kwargs, state)


_MISSING = object()


class _Pending:
    """A signature seen once: recorded if it comes again."""


def cuda_devices(args: tuple) -> list[torch.device]:
    """The CUDA device of the first CUDA tensor in ``args`` (as a list, for
    :func:`torch.random.fork_rng`), or none."""
    return [t.device for t in args if isinstance(t, Tensor) and t.is_cuda][:1]


def _signature(args: tuple, kwargs: dict, state: tuple[Tensor, ...]) -> tuple | None:
    """What a recording depends on: the shapes, dtypes and devices of the
    tensor arguments, the names of the float keyword arguments, the values of
    the others, whether gradients are on, and the identity of the module's
    parameters and buffers. None if an argument cannot be an input of a
    recording."""
    parts: list = [torch.is_grad_enabled()]
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
    ``owner.parameters()`` walk cost about 20 microseconds a step). The list
    leaves ``owner`` out, so that the weak cache does not keep it alive."""
    cached = _submodules.get(owner)
    if cached is None or cached[0] != _module_registrations[0]:
        cached = (_module_registrations[0], tuple(owner.modules())[1:])
        _submodules[owner] = cached
    modules = (owner, *cached[1])
    params = (p for m in modules for p in m._parameters.values() if p is not None)
    buffers = (b for m in modules for b in m._buffers.values() if b is not None)
    return tuple(dict.fromkeys((*params, *buffers)))  # shared tensors once


_submodules: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_module_registrations = [0]


def _count_module_registration(module: torch.nn.Module, name: str, child: Any) -> None:
    _module_registrations[0] += 1


register_module_module_registration_hook(_count_module_registration)


try:  # deprecated in PyTorch 2.13; without it, callers run eagerly
    from torch.jit import trace as _jit_trace
except ImportError:  # pragma: no cover
    _jit_trace = None


class _Recording:
    """A :func:`torch.jit.trace` recording of a function on one signature.
    Its inputs are the tensor arguments, the float keyword arguments as 0-d
    tensors (those equal to 1 are constants of the signature), then the owner
    module's parameters and buffers."""

    def __init__(self, function: Callable, float_names: tuple[str, ...]) -> None:
        self.function = function
        self.float_names = float_names

    def inputs(self, args: tuple, kwargs: dict, state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        like = next(a for a in args if isinstance(a, Tensor))
        floats = tuple(torch.tensor(kwargs[n], dtype=torch.get_default_dtype(), device=like.device)
                       for n in self.float_names)
        return (*(a for a in args if a is not None), *floats, *state)

    def __call__(self, args: tuple, kwargs: dict, state: tuple[Tensor, ...]) -> Tensor:
        # eager kernels, forward and backward (module doc)
        with torch.jit.optimized_execution(False):
            return self.function(*self.inputs(args, kwargs, state))

    @classmethod
    def make(cls, function: Callable[..., Tensor], args: tuple, kwargs: dict,
             state: tuple[Tensor, ...]) -> tuple[_Recording | None, Tensor | None]:
        """Record ``function`` and replay the recording on this call.

        The recording is made on a copy of the random state, and the tracer
        runs ``function`` eagerly while it records: that run's result is the
        reference. The replay then runs on the random state itself, so it
        draws what the eager call would have drawn. If it gives the
        reference, return the recording and the replay's result (this call's
        value); otherwise, or if either fails, (None, None), with the random
        state as it was before."""
        float_names = tuple(n for n, v in sorted(kwargs.items())
                            if isinstance(v, float) and v != 1.0)
        fixed = {n: v for n, v in kwargs.items() if n not in float_names}
        slots = [a is not None for a in args]
        n_args = sum(slots)
        eager: list[Tensor] = []

        def run(*inputs: Tensor) -> Tensor:
            given = iter(inputs[:n_args])
            call_args = [next(given) if present else None for present in slots]
            floats = dict(zip(float_names, inputs[n_args:n_args + len(float_names)]))
            result = function(*call_args, **fixed, **floats)
            eager.append(result)
            return result

        recording = cls(run, float_names)
        devices = cuda_devices(args)
        saved = _random_state(devices)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the deprecation and tracer notes
                with torch.random.fork_rng(devices=devices):
                    recording.function = _jit_trace(run, recording.inputs(args, kwargs, state),
                                                    check_trace=False)
            # the traced function keeps the Python function it traced (for
            # torch.compile), which holds the owner module: drop it, so that
            # a recording kept with the module never keeps the module alive
            if hasattr(recording.function, "_torchdynamo_inline"):
                del recording.function._torchdynamo_inline
            expected = eager[0]
            replayed = recording(args, kwargs, state)
            same = (replayed.shape == expected.shape
                    and replayed.requires_grad == expected.requires_grad
                    and bool(torch.allclose(replayed.detach(), expected.detach(),
                                            rtol=1e-5, atol=1e-4)))
        except Exception:  # anything the tracer cannot record: stay eager
            same = False
        if not same:
            _set_random_state(devices, saved)
            return None, None
        return recording, replayed


def _random_state(devices: list[torch.device]) -> tuple[Tensor, list[Tensor]]:
    """The CPU generator's state and that of each CUDA device in ``devices``."""
    return torch.get_rng_state(), [torch.cuda.get_rng_state(d) for d in devices]


def _set_random_state(devices: list[torch.device], saved: tuple[Tensor, list[Tensor]]) -> None:
    torch.set_rng_state(saved[0])
    for device, cuda_state in zip(devices, saved[1]):
        torch.cuda.set_rng_state(cuda_state, device)
