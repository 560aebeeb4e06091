"""ppvae: variational autoencoders as plain Pyro model/guide pairs.

Top-level conveniences: :func:`fit` (train with Lightning), :func:`save` and
:func:`load` (safetensors weights plus a JSON config). They are imported
lazily, so ``import ppvae.data`` stays light.
"""

from typing import Any

__version__ = "0.1.0"

__all__ = ["fit", "load", "save", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "fit":
        from ppvae.train import fit

        return fit
    if name in ("save", "load"):
        from ppvae import io

        return getattr(io, name)
    raise AttributeError(f"module 'ppvae' has no attribute {name!r}")
