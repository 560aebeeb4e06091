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
from ppvae.models.autoencoder import Autoencoder, LinearAutoencoder  # isort: skip
from ppvae.models.denoising import DenoisingAutoencoder, DenoisingVAE  # isort: skip
from ppvae.models.sparse import SparseAutoencoder  # isort: skip
from ppvae.models.contractive import ContractiveAutoencoder  # isort: skip
from ppvae.models.psd import PredictiveSparseDecomposition  # isort: skip
from ppvae.models.stacked import StackedAutoencoder  # isort: skip
from ppvae.models.joint import JointAutoencoder  # isort: skip
from ppvae.models.adversarial import (  # isort: skip
    AdversarialAutoencoder,
    CategoricalAdversarialAutoencoder,
    LabelledAdversarialAutoencoder,
)
from ppvae.models.wae import WAEGAN, WassersteinAutoencoder  # isort: skip
from ppvae.models.vaegan import VAEGAN  # isort: skip
from ppvae.models.two_layer import TwoLayerVAE  # isort: skip
from ppvae.models.helmholtz import HelmholtzMachine  # isort: skip

__all__ = ["CVAE", "REGISTRY", "SSVAE", "VAE", "AdversarialAutoencoder", "Autoencoder",
           "CategoricalAdversarialAutoencoder", "CompletionBaseline", "ContractiveAutoencoder",
           "DenoisingAutoencoder", "DenoisingVAE", "FigureSpec", "HelmholtzMachine",
           "JointAutoencoder", "LabelledAdversarialAutoencoder", "LatentVariableModel",
           "LinearAutoencoder", "LinearGaussian", "M1Codes", "ModelEntry",
           "PredictiveSparseDecomposition", "SparseAutoencoder", "StackedAutoencoder",
           "TwoLayerVAE", "VAEGAN", "WAEGAN", "WassersteinAutoencoder", "register"]
