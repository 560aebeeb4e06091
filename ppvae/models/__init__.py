"""ppvae's models, each a :class:`pyro.nn.PyroModule` with ``model`` and ``guide``."""

from ppvae.models.base import LatentVariableModel
from ppvae.models.linear_gaussian import LinearGaussian
from ppvae.models.ssvae import SSVAE
from ppvae.models.vae import VAE

MODELS: dict[str, type[LatentVariableModel]] = {
    "VAE": VAE, "LinearGaussian": LinearGaussian, "SSVAE": SSVAE,
}

__all__ = ["MODELS", "SSVAE", "VAE", "LatentVariableModel", "LinearGaussian"]
