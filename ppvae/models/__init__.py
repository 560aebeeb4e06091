"""ppvae's models, each a :class:`pyro.nn.PyroModule` with ``model`` and ``guide``."""

from ppvae.models.base import LatentVariableModel
from ppvae.models.vae import VAE

MODELS: dict[str, type[LatentVariableModel]] = {"VAE": VAE}

__all__ = ["MODELS", "VAE", "LatentVariableModel"]
