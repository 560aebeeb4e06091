"""Denoising models: the guide sees a corrupted input in train mode only; the
model scores the clean data. (The denoising VAE's twin equals its Pyro path
in train mode: tests/test_accel.py.)"""

import pyro
import pytest
import torch
from pyro import poutine

import ppvae
from ppvae.data import load_dataset
from ppvae.infer import log_likelihood
from ppvae.models import VAE, DenoisingAutoencoder, DenoisingVAE
from ppvae.pieces import Corruption


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", binarize="dynamic")


def test_the_corruptions_have_their_stated_statistics():
    torch.manual_seed(0)
    x = torch.rand(200, 500)
    masked = Corruption("masking", 0.3)(x)
    assert abs(float((masked == 0).float().mean()) - 0.3) < 0.01
    assert torch.equal(masked[masked != 0], x[masked != 0])
    noise = Corruption("gaussian", 0.2)(x) - x
    assert abs(float(noise.std()) - 0.2) < 0.002 and abs(float(noise.mean())) < 0.002
    assert Corruption("gaussian", 0.0)(x) is x
    for kind, level in (("salt", 0.1), ("masking", 1.0), ("gaussian", -0.1)):
        with pytest.raises(ValueError):
            Corruption(kind, level)


def guide_code(model, x):
    return poutine.trace(model.guide).get_trace(x).nodes["z"]["value"]


def test_the_autoencoder_guide_sees_the_corruption_in_train_mode_only(digits):
    dae = DenoisingAutoencoder(digits.image_shape, latent_dim=3, hidden=(16,),
                               noise="masking", noise_level=0.5)
    x = digits.test.x[:20]
    dae.eval()
    torch.testing.assert_close(guide_code(dae, x), dae.code(x))
    dae.train()
    torch.manual_seed(4)
    corrupted = guide_code(dae, x)
    torch.manual_seed(4)
    torch.testing.assert_close(corrupted, dae.code(Corruption("masking", 0.5)(x)))
    assert not torch.allclose(corrupted, dae.code(x))


def test_the_denoising_vae_is_scored_on_clean_data_like_a_vae(digits):
    dvae = DenoisingVAE(digits.image_shape, latent_dim=3, hidden=(16,), noise_level=0.5)
    vae = VAE(digits.image_shape, latent_dim=3, hidden=(16,))
    vae.load_state_dict(dvae.state_dict())
    x = digits.test.x[:30].round()
    ours = log_likelihood(dvae.eval().model, dvae.guide, x, num_samples=50, seed=1)
    plain = log_likelihood(vae.model, vae.guide, x, num_samples=50, seed=1)
    torch.testing.assert_close(ours.per_datapoint, plain.per_datapoint)


def test_fit_leaves_clean_validation_and_save_load_works(digits, tmp_path):
    pyro.set_rng_seed(0)
    dvae = DenoisingVAE(digits.image_shape, latent_dim=3, hidden=(32,), noise="gaussian",
                        noise_level=0.2)
    history = ppvae.fit(dvae, digits, epochs=4, progress=False)
    assert history.metrics["val_elbo"][-1] > history.metrics["val_elbo"][0]
    assert not dvae.training  # fit leaves the model in eval mode: clean estimates
    pyro.set_rng_seed(0)
    dae = DenoisingAutoencoder(digits.image_shape, latent_dim=3, hidden=(32,))
    ppvae.fit(dae, digits, epochs=4, progress=False)
    for model in (dvae, dae):
        loaded = ppvae.load(ppvae.save(model, tmp_path / type(model).__name__))
        assert not loaded.training and loaded.config == model.config
        torch.testing.assert_close(loaded.encode(digits.test.x), model.eval().encode(
            digits.test.x))
