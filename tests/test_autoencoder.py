"""The plain and linear autoencoders: MAP inference with a point-mass guide
and a flat prior; the linear AE spans the PCA subspace."""

import math

import numpy as np
import pyro
import pytest
import torch
from scipy.linalg import subspace_angles
from sklearn.decomposition import PCA

import ppvae
from ppvae.data import load_dataset
from ppvae.infer import log_likelihood
from ppvae.models import REGISTRY, Autoencoder, LinearAutoencoder
from ppvae.train import ReconstructionPlan, make_plan


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def low_rank(n: int, seed: int = 0) -> torch.Tensor:
    """Points near a 3-d subspace of R^8 with distinct variances, and an offset."""
    gen = torch.Generator().manual_seed(seed)
    basis = torch.linalg.qr(torch.randn(8, 3, generator=gen))[0].T
    codes = torch.randn(n, 3, generator=gen) * torch.tensor([3.0, 2.0, 1.2])
    return codes @ basis + 0.05 * torch.randn(n, 8, generator=gen) + 0.5


def test_the_linear_autoencoder_spans_the_pca_subspace():
    x = low_rank(800)
    pyro.set_rng_seed(0)
    ae = LinearAutoencoder(8, latent_dim=3)
    ppvae.fit(ae, (x[:700], x[700:]), epochs=150, batch_size=50, lr=1e-2, patience=None,
              progress=False)
    pca = PCA(3).fit(x[:700].numpy())
    angles = np.degrees(subspace_angles(ae.decoder_weight().numpy(), pca.components_.T))
    assert angles.max() < 1.0, angles
    ours = (ae.reconstruct(x[700:]) - x[700:]).pow(2).sum(-1).mean()
    best = ((pca.inverse_transform(pca.transform(x[700:].numpy())) - x[700:].numpy()) ** 2
            ).sum(-1).mean()
    assert float(ours) < 1.1 * best  # the noise floor: 5 directions of variance 0.05^2


def test_the_negative_elbo_is_half_the_squared_error_plus_the_gaussian_constant():
    x = torch.rand(10, 64)
    ae = Autoencoder((1, 8, 8), latent_dim=3, hidden=(16,))
    plan = make_plan(ae)
    assert isinstance(plan, ReconstructionPlan)
    reconstruction, penalty = plan.terms((x,))
    error = (ae.reconstruct(x) - x).pow(2).sum(-1).mean()
    torch.testing.assert_close(reconstruction.detach(), 0.5 * error + 32 * math.log(2 * math.pi))
    assert float(penalty) == 0


def test_the_bernoulli_autoencoder_scores_the_cross_entropy():
    x = torch.bernoulli(torch.full((6, 64), 0.4), generator=torch.Generator().manual_seed(1))
    ae = Autoencoder((1, 8, 8), latent_dim=2, hidden=(16,), likelihood="bernoulli")
    p = ae.reconstruct(x)
    cross_entropy = -(x * p.log() + (1 - x) * (1 - p).log()).sum(-1).mean()
    torch.testing.assert_close(make_plan(ae).terms((x,))[0].detach(), cross_entropy,
                               rtol=1e-4, atol=1e-4)


def test_an_autoencoder_is_not_scored_as_a_density_and_has_no_samples(digits):
    ae = Autoencoder(digits.image_shape, latent_dim=2, hidden=(16,))
    with pytest.raises(ValueError, match="point mass"):
        log_likelihood(ae.model, ae.guide, digits.test.x[:5], num_samples=3)
    with pytest.raises(ValueError, match="not a generative density"):
        ae.sample(4)
    assert set(ae.figures(digits)) == {"reconstructions", "latent_map"}
    assert not ae.density and REGISTRY["ae"].plan == "reconstruction"


@pytest.mark.parametrize("network", ["mlp", "conv"])
def test_trains_saves_and_loads(digits, network, tmp_path):
    pyro.set_rng_seed(0)
    ae = Autoencoder(digits.image_shape, latent_dim=4, hidden=(32,), network=network,
                     code_activation="tanh")
    before = float(make_plan(ae).terms((digits.val.x,))[0].detach())
    history = ppvae.fit(ae, digits, epochs=5, progress=False)
    assert history.metrics["val_loss"][-1] < before
    loaded = ppvae.load(ppvae.save(ae, tmp_path / "ae"))
    torch.testing.assert_close(loaded.encode(digits.test.x), ae.encode(digits.test.x))
    assert loaded.encode(digits.test.x).abs().max() <= 1  # the tanh code


def test_bad_arguments_fail_at_construction():
    with pytest.raises(ValueError, match="latent_dim"):
        Autoencoder((1, 8, 8), latent_dim=0)
    with pytest.raises(ValueError, match="unknown activation"):
        Autoencoder((1, 8, 8), code_activation="cube")
    with pytest.raises(ValueError, match="unknown likelihood"):
        Autoencoder((1, 8, 8), likelihood="poisson")
