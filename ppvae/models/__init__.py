"""ppvae's models, each a :class:`torch.nn.Module` with Pyro ``model`` and ``guide`` methods."""

from ppvae.models.base import LatentVariableModel
from ppvae.models.cvae import CVAE, CompletionBaseline
from ppvae.models.linear_gaussian import LinearGaussian
from ppvae.models.ssvae import SSVAE
from ppvae.models.vae import VAE

MODELS: dict[str, type[LatentVariableModel]] = {
    "VAE": VAE, "LinearGaussian": LinearGaussian, "SSVAE": SSVAE, "CVAE": CVAE,
    "CompletionBaseline": CompletionBaseline,
}

__all__ = ["CVAE", "MODELS", "SSVAE", "VAE", "CompletionBaseline", "LatentVariableModel",
           "LinearGaussian"]
