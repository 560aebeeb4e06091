"""Sparse autoencoders: the L1 code is MAP under a Laplace prior; the KL
penalty pulls mean activations to the target."""

import math

import pyro
import pytest
import torch

import ppvae
from ppvae.data import load_dataset
from ppvae.models import SparseAutoencoder
from ppvae.train import make_plan


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_the_l1_loss_is_the_reconstruction_plus_the_laplace_prior():
    x = torch.rand(10, 64)
    ae = SparseAutoencoder((1, 8, 8), latent_dim=5, hidden=(16,), sparsity="l1", weight=0.3)
    z = ae.encode(x)
    expected = (0.5 * (ae.decode(z) - x).pow(2).sum(-1) + 32 * math.log(2 * math.pi)
                + 0.3 * z.abs().sum(-1) + 5 * math.log(2 / 0.3)).mean()
    reconstruction, penalty = make_plan(ae).terms((x,))
    torch.testing.assert_close(reconstruction.detach(), expected)
    assert float(penalty) == 0


def test_the_kl_penalty_is_the_bernoulli_kl_of_the_mean_activations():
    x = torch.rand(10, 64)
    ae = SparseAutoencoder((1, 8, 8), latent_dim=5, hidden=(16,), sparsity="kl", weight=2.0,
                           target=0.1)
    r = ae.encode(x).mean(0)
    kl = (0.1 * torch.log(0.1 / r) + 0.9 * torch.log(0.9 / (1 - r))).sum()
    _, penalty = make_plan(ae).terms((x,))
    torch.testing.assert_close(penalty.detach(), 2.0 * kl)


def test_training_makes_the_codes_sparse(digits):
    def trained(**kw):
        pyro.set_rng_seed(0)
        ae = SparseAutoencoder(digits.image_shape, latent_dim=32, hidden=(64,), **kw)
        ppvae.fit(ae, digits, epochs=15, progress=False)
        return ae.encode(digits.test.x)

    mild, strong = trained(weight=1e-3, code_activation="relu"), \
        trained(weight=0.5, code_activation="relu")
    assert (strong == 0).float().mean() > (mild == 0).float().mean() + 0.2
    kl = trained(sparsity="kl", weight=1.0, target=0.05)
    assert abs(float(kl.mean()) - 0.05) < 0.05
    free = trained(sparsity="kl", weight=1e-6, target=0.05)
    assert abs(float(kl.mean()) - 0.05) < abs(float(free.mean()) - 0.05)


def test_saves_and_loads(digits, tmp_path):
    ae = SparseAutoencoder(digits.image_shape, sparsity="kl", latent_dim=6, hidden=(16,))
    loaded = ppvae.load(ppvae.save(ae, tmp_path / "s"))
    assert loaded.sparsity == "kl" and loaded.penalties(digits.val.x)
    torch.testing.assert_close(loaded.encode(digits.test.x), ae.encode(digits.test.x))


@pytest.mark.parametrize("kw, message", [
    ({"sparsity": "l2"}, "unknown sparsity"), ({"weight": 0}, "weight must be positive"),
    ({"target": 1.0}, "target"), ({"sparsity": "kl", "code_activation": "relu"}, "sigmoid")])
def test_bad_arguments(kw, message):
    with pytest.raises(ValueError, match=message):
        SparseAutoencoder((1, 8, 8), **kw)
