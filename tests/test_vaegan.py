"""VAE-GAN: the VAE's pair (a density), a discriminator whose gradients stay
where the paper puts them, and the generator loss as its formula."""

import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO

import ppvae
from ppvae.data import load_dataset
from ppvae.infer import log_likelihood
from ppvae.models import REGISTRY, VAEGAN


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", binarize="dynamic")


def binary(n=10, seed=0):
    return torch.bernoulli(torch.full((n, 64), 0.4), generator=torch.Generator().manual_seed(seed))


def grads(module):
    return [p.grad for p in module.parameters()]


def test_the_gradients_stay_where_the_paper_puts_them():
    model = VAEGAN((1, 8, 8), latent_dim=3, hidden=(16,), discriminator_hidden=(16,))
    x = binary()
    model.discriminator_loss(x).backward()
    assert all(g is None for g in grads(model.encoder) + grads(model.likelihood))
    assert all(g is not None for g in grads(model.discriminator))
    model.zero_grad(set_to_none=True)
    model.adversarial_loss(x, model.encoder(x).rsample()).backward()
    assert all(g is None for g in grads(model.encoder))  # kept off the encoder
    assert all(g is not None for g in grads(model.likelihood))


def test_the_generator_loss_is_the_negative_elbo_plus_the_weighted_terms():
    x = binary()
    plain = VAEGAN((1, 8, 8), latent_dim=3, hidden=(16,), feature_weight=0.0, gan_weight=0.0)
    pyro.set_rng_seed(4)
    got = plain.generator_loss(x)
    pyro.set_rng_seed(4)
    want = Trace_ELBO().differentiable_loss(plain.model, plain.guide, x) / len(x)
    torch.testing.assert_close(got, want)
    weighted = VAEGAN((1, 8, 8), latent_dim=3, hidden=(16,), feature_weight=0.3, gan_weight=2.0)
    pyro.set_rng_seed(5)
    got = weighted.generator_loss(x)
    pyro.set_rng_seed(5)
    elbo = Trace_ELBO().differentiable_loss(weighted.model, weighted.guide, x) / len(x)
    z = weighted.encoder(x).rsample()
    recon = weighted.likelihood.mean(z)
    matching = 0.5 * (weighted.features(recon) - weighted.features(x)).pow(2).sum(-1).mean()
    want = elbo + 0.3 * matching + 2.0 * weighted.adversarial_loss(x, z)
    torch.testing.assert_close(got, want)


def test_trains_is_a_density_and_saves(digits, tmp_path):
    pyro.set_rng_seed(0)
    model = VAEGAN(digits.image_shape, latent_dim=4, hidden=(64,), discriminator_hidden=(64,))
    x = digits.test.x[:100].round()
    before = log_likelihood(model.model, model.guide, x, num_samples=20, seed=0).mean
    history = ppvae.fit(model, digits, epochs=15, seed=0, progress=False)
    assert {"train_loss", "train_discriminator_loss"} <= set(history.metrics)
    after = log_likelihood(model.model, model.guide, x, num_samples=20, seed=0)
    assert after.mean > before + 5 and model.density and REGISTRY["vae-gan"].plan == "adversarial"
    loaded = ppvae.load(ppvae.save(model, tmp_path / "vaegan"))
    torch.testing.assert_close(loaded.encode(x), model.encode(x))


@pytest.mark.parametrize("kw, message", [({"discriminator_hidden": ()}, "hidden layer"),
                                         ({"gan_weight": -1.0}, ">= 0")])
def test_bad_arguments(kw, message):
    with pytest.raises(ValueError, match=message):
        VAEGAN((1, 8, 8), **kw)
