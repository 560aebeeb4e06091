"""Wasserstein autoencoders: the WAE-MMD loss is reconstruction plus lambda
MMD^2 without the prior's density term; its codes come to match the prior;
WAE-GAN is the adversarial autoencoder with the WAE's settings."""

import math

import pyro
import pytest
import torch
from pyro import poutine

import ppvae
from ppvae.data import load_dataset
from ppvae.infer import log_likelihood, reconstruction_error
from ppvae.infer.mmd import mmd2
from ppvae.models import REGISTRY, WAEGAN, Autoencoder, WassersteinAutoencoder
from ppvae.models.wae import IMQ_SCALES
from ppvae.train import make_plan


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_the_loss_is_the_reconstruction_and_the_mmd_without_the_prior_term():
    x = torch.rand(12, 64)
    wae = WassersteinAutoencoder((1, 8, 8), latent_dim=3, hidden=(16,), mmd_weight=7.0)
    torch.manual_seed(0)
    reconstruction, penalty = make_plan(wae).terms((x,))
    with torch.no_grad():
        z = wae.code(x)
        expected = (0.5 * (wae.decode(z) - x).pow(2).sum(-1)).mean() + 32 * math.log(2 * math.pi)
        torch.manual_seed(0)
        mmd = mmd2(z, torch.randn(12, 3), "imq", IMQ_SCALES)
    torch.testing.assert_close(reconstruction.detach(), expected)
    torch.testing.assert_close(penalty.detach(), 7.0 * mmd)
    # the model keeps its prior: the pair's joint density has the N(0, I) term
    guide = poutine.trace(wae.guide).get_trace(x)
    joint = poutine.trace(poutine.replay(wae.model, trace=guide)).get_trace(x)
    joint.compute_log_prob()
    torch.testing.assert_close(joint.nodes["z"]["log_prob"],
                               torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1))


def test_the_codes_come_to_match_the_prior_unlike_a_plain_autoencoder(digits):
    def gap(model):
        torch.manual_seed(7)
        with torch.no_grad():
            z = model.encode(digits.train.x)
            return float(mmd2(z, torch.randn_like(z), "imq", IMQ_SCALES))

    pyro.set_rng_seed(0)
    wae = WassersteinAutoencoder(digits.image_shape, latent_dim=4, hidden=(64,))
    ppvae.fit(wae, digits, epochs=30, seed=0, progress=False)
    pyro.set_rng_seed(0)
    ae = Autoencoder(digits.image_shape, latent_dim=4, hidden=(64,))
    ppvae.fit(ae, digits, epochs=30, seed=0, progress=False)
    assert gap(wae) < 0.2 * gap(ae), (gap(wae), gap(ae))
    assert wae.sample(5).shape == (5, 64)
    with pytest.raises(ValueError, match="point mass"):
        log_likelihood(wae.model, wae.guide, digits.test.x[:5], num_samples=3)
    assert reconstruction_error(wae.model, wae.guide, digits.test.x).mean > 0


def test_wae_gan_is_the_adversarial_autoencoder_with_the_wae_settings(digits, tmp_path):
    gan = WAEGAN(digits.image_shape, latent_dim=4, hidden=(16,), adversarial_weight=2.0)
    assert not gan.density and REGISTRY["wae-gan"].plan == "adversarial"
    assert (gan.config["adversarial_weight"], gan.config["discriminator_hidden"]) == \
        (2.0, [512, 512, 512, 512])
    for model in (gan, WassersteinAutoencoder(digits.image_shape, latent_dim=4, kernel="rbf")):
        loaded = ppvae.load(ppvae.save(model, tmp_path / type(model).__name__))
        torch.testing.assert_close(loaded.encode(digits.test.x), model.encode(digits.test.x))


@pytest.mark.parametrize("kw, message", [({"mmd_weight": -1.0}, ">= 0"),
                                         ({"kernel": "cosine"}, "unknown kernel")])
def test_bad_arguments(kw, message):
    with pytest.raises(ValueError, match=message):
        WassersteinAutoencoder((1, 8, 8), **kw)


def test_a_wae_matches_its_codes_to_a_mixture_prior(digits):
    pyro.set_rng_seed(0)
    wae = WassersteinAutoencoder(digits.image_shape, latent_dim=2, hidden=(64,), prior="mixture")
    ppvae.fit(wae, digits, epochs=40, batch_size=64, seed=0, progress=False)
    torch.manual_seed(3)
    with torch.no_grad():
        z = wae.encode(digits.train.x)
        gap = float(mmd2(z, wae.prior.sample(len(z)), "imq", 4.0))
        least = torch.bincount(torch.cdist(z, wae.prior.component_means()).argmin(1),
                               minlength=10).min() / len(z)
    assert gap < 0.03 and least > 0.02, (gap, float(least))
    assert "latent_manifold" not in wae.figures(digits)
