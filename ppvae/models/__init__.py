"""ppvae's models, each a :class:`torch.nn.Module` with Pyro ``model`` and
``guide`` methods, registered by name in :data:`REGISTRY`."""

# in the order `ppvae models` lists them
from ppvae.models.base import FigureSpec, LatentVariableModel
from ppvae.models.registry import REGISTRY, ModelEntry, register
from ppvae.models.vae import VAE  # isort: skip
from ppvae.models.linear_gaussian import LinearGaussian  # isort: skip
from ppvae.models.cvae import CVAE, CompletionBaseline  # isort: skip
from ppvae.models.ssvae import SSVAE  # isort: skip
from ppvae.models.m1m2 import M1Codes  # isort: skip

__all__ = ["CVAE", "REGISTRY", "SSVAE", "VAE", "CompletionBaseline", "FigureSpec",
           "LatentVariableModel", "LinearGaussian", "M1Codes", "ModelEntry", "register"]
