"""Reconstruction error and code statistics of any pair, against hand computations."""

import pyro
import pyro.distributions as dist
import pytest
import torch

from ppvae.infer import Reconstruction, reconstruction_error
from ppvae.models import VAE, Autoencoder


def test_a_point_mass_pair_is_reconstructed_through_its_code():
    x = torch.rand(10, 64)
    ae = Autoencoder((1, 8, 8), latent_dim=3, hidden=(16,))
    r = reconstruction_error(ae.model, ae.guide, x, batch_size=4)  # batches of 4, 4 and 2
    with torch.no_grad():
        z = ae.code(x)
        mean = ae.likelihood.mean(z)
        nll = -ae.likelihood(z).log_prob(x)
    torch.testing.assert_close(r.codes, z)
    torch.testing.assert_close(r.squared_error, (x - mean).pow(2).sum(-1))
    torch.testing.assert_close(r.nll, nll)


def test_a_stochastic_guide_is_reconstructed_through_its_draw():
    x = torch.bernoulli(torch.full((6, 64), 0.5), generator=torch.Generator().manual_seed(0))
    vae = VAE((1, 8, 8), latent_dim=2, hidden=(16,))
    pyro.set_rng_seed(3)
    r = reconstruction_error(vae.model, vae.guide, x)
    pyro.set_rng_seed(3)
    with torch.no_grad():
        z = vae.encoder(x).sample()
    torch.testing.assert_close(r.codes, z)
    torch.testing.assert_close(r.squared_error, (x - vae.likelihood.mean(z)).pow(2).sum(-1))


def test_a_users_pair_with_extra_arguments_and_two_observed_sites():
    def model(x, c):
        with pyro.plate("data", len(x)):
            z = pyro.sample("code", dist.Normal(torch.zeros(2), 1.0).to_event(1))
            pyro.sample("a", dist.Normal(z + c, 1.0).to_event(1), obs=x[:, :2])
            pyro.sample("b", dist.Normal(2 * z, 1.0).to_event(1), obs=x[:, 2:])

    def guide(x, c):
        with pyro.plate("data", len(x)):
            pyro.sample("code", dist.Delta(x[:, :2] - c, event_dim=1))

    x, c = torch.randn(5, 4), torch.randn(5, 2)
    r = reconstruction_error(model, guide, x, c, batch_size=2)
    z = x[:, :2] - c
    torch.testing.assert_close(r.squared_error, (x[:, 2:] - 2 * z).pow(2).sum(-1))


def test_code_statistics():
    codes = torch.tensor([[0.0, 1.0, 0.001], [0.0, -1.0, 0.5], [0.0, 3.0, -0.5]])
    r = Reconstruction(torch.tensor([1.0, 2.0, 3.0]), torch.zeros(3), codes)
    stats = r.code_statistics()
    assert stats["active_units"] == 2 and stats["latent_dim"] == 3
    assert stats["fraction_near_zero"] == pytest.approx(4 / 9)
    assert stats["mean_abs_code"] == pytest.approx(float(codes.abs().mean()))
    assert r.mean == 2.0 and r.stderr == pytest.approx(1 / 3 ** 0.5)
    assert "squared error per point 2" in r.summary()


def test_a_pair_without_latent_or_observation_is_refused():
    def model(x):
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Normal(0.0, 1.0).expand([2]).to_event(1), obs=x)

    def guide(x):
        pass

    with pytest.raises(ValueError, match="latent site"):
        reconstruction_error(model, guide, torch.zeros(3, 2))
    with pytest.raises(ValueError, match="empty"):
        reconstruction_error(model, guide, torch.zeros(0, 2))
