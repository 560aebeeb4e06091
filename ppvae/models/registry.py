"""The model registry: each model registers once, and is then trainable,
evaluable and listed from the command line (``ppvae models``), and saved and
loaded by :func:`ppvae.save` / :func:`ppvae.load`.

A registered class is a model/guide pair (:mod:`ppvae.train.contract`) with a
JSON-able ``config`` of its constructor arguments (what :func:`ppvae.save`
stores). It takes its data-dependent constructor arguments by the names in
:data:`DATA_ARGUMENTS`, filled from the data set; every other argument is a
command-line option of ``ppvae train --model NAME``. It trains with its
declared ``default_plan``. As a :class:`ppvae.models.LatentVariableModel` it
also offers its ``figures`` and the ``model_args`` of a data split, which
``ppvae train``, ``evaluate``, ``sample``, ``reconstruct`` and ``latent-map`` use.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

#: constructor arguments the command line fills from the data set
DATA_ARGUMENTS = ("input_shape", "input_dim", "num_classes")


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its command-line name, class, one line on what it
    is, and the paper it comes from."""

    name: str
    cls: type
    summary: str
    paper: str

    @property
    def plan(self) -> str:
        """The training plan the class declares (default ``"elbo"``)."""
        return getattr(self.cls, "default_plan", "elbo")

    @property
    def arguments(self) -> tuple[str, ...]:
        """The names of the class's constructor arguments."""
        return tuple(inspect.signature(self.cls).parameters)

    def build(self, data: Any, **options: Any) -> Any:
        """The model for a :class:`ppvae.data.Dataset`: its
        :data:`DATA_ARGUMENTS` from ``data``, the rest from ``options``."""
        values = {"input_shape": data.image_shape, "input_dim": data.input_dim,
                  "num_classes": data.num_classes}
        return self.cls(**{k: values[k] for k in DATA_ARGUMENTS if k in self.arguments},
                        **options)


REGISTRY: dict[str, ModelEntry] = {}


def register(name: str, cls: type, *, summary: str, paper: str = "") -> type:
    """Register ``cls`` under ``name``; returns ``cls``. Raises ``ValueError``
    for a name or class registered already."""
    if name in REGISTRY or any(e.cls is cls for e in REGISTRY.values()):
        raise ValueError(f"model {name!r} or class {cls.__name__} is registered already")
    REGISTRY[name] = ModelEntry(name, cls, summary, paper)
    return cls


def entry(name: str) -> ModelEntry:
    """The entry of a registered name; ``ValueError`` naming the choices otherwise."""
    if name not in REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(REGISTRY)} "
                         "(ppvae models lists them)")
    return REGISTRY[name]


def entry_of(cls: type) -> ModelEntry | None:
    """The entry of a registered class, or None."""
    return next((e for e in REGISTRY.values() if e.cls is cls), None)
