"""The model contract: a user's own nn.Module pair, written the way Pyro's VAE
example writes one (plain torch networks registered with ``pyro.module``, a
latent site named ``latent``, no ppvae base class), trains with ``ppvae.fit``
and goes through every diagnostic."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn

import ppvae
from ppvae.data import load_dataset
from ppvae.infer import (
    compare_posteriors,
    inference_gaps,
    log_likelihood,
    nuts_posterior,
    to_inference_data,
)
from ppvae.train import contract


class PlainVAE(nn.Module):
    """p(latent) = N(0, I), p(obs | latent) = Bernoulli(decoder(latent)), and
    q(latent | x) = N(mu(x), sigma(x)^2), on flattened 8x8 images."""

    def __init__(self, z_dim: int = 2, hidden: int = 32, pixels: int = 64) -> None:
        super().__init__()
        self.z_dim, self.pixels = z_dim, pixels
        self.decoder = nn.Sequential(nn.Linear(z_dim, hidden), nn.Softplus(),
                                     nn.Linear(hidden, pixels), nn.Sigmoid())
        self.encoder_body = nn.Sequential(nn.Linear(pixels, hidden), nn.Softplus())
        self.encoder_loc = nn.Linear(hidden, z_dim)
        self.encoder_log_scale = nn.Linear(hidden, z_dim)

    def model(self, x):
        pyro.module("decoder", self.decoder)
        with pyro.plate("data", x.shape[0]):
            loc = x.new_zeros((x.shape[0], self.z_dim))
            z = pyro.sample("latent", dist.Normal(loc, torch.ones_like(loc)).to_event(1))
            probs = self.decoder(z)
            pyro.sample("obs", dist.Bernoulli(probs, validate_args=False).to_event(1),
                        obs=x.reshape(-1, self.pixels))

    def guide(self, x):
        pyro.module("encoder_body", self.encoder_body)
        pyro.module("encoder_loc", self.encoder_loc)
        pyro.module("encoder_log_scale", self.encoder_log_scale)
        with pyro.plate("data", x.shape[0]):
            h = self.encoder_body(x.reshape(-1, self.pixels))
            pyro.sample("latent", dist.Normal(self.encoder_loc(h),
                                              self.encoder_log_scale(h).exp()).to_event(1))


@pytest.fixture(scope="module")
def trained():
    """A PlainVAE trained by ppvae.fit on binarized digits, and test images."""
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    data = load_dataset("digits", binarize="static")
    vae = PlainVAE()
    history = ppvae.fit(vae, (data.train.x, data.val.x), epochs=15, lr=3e-3, progress=False)
    return vae, history, data.test.x[:40]


def test_a_users_own_pair_trains_with_fit(trained):
    vae, history, _ = trained
    assert history.epochs == 15 and len(history.val_elbo) == 15
    assert history.val_elbo[-1] > history.val_elbo[0] + 5
    assert contract.default_plan(vae) == "elbo" and not contract.takes_kl_weight(vae)


def test_a_users_own_pair_runs_every_diagnostic(trained):
    vae, history, x = trained
    result = log_likelihood(vae.model, vae.guide, x, num_samples=200)
    assert result.per_datapoint.shape == (40,) and result.elbo_mean < result.mean < 0
    assert torch.isfinite(result.khat).all()

    idata = to_inference_data(vae.model, vae.guide, x, datapoints=[0, 1], num_samples=100,
                              history=history)
    # the site named "latent" keeps its name; its event dimension does not clash with it
    assert idata.posterior["latent"].dims == ("chain", "draw", "datapoint", "latent_dim_0")
    assert idata.observed_data["obs"].dims == ("datapoint", "pixel")
    nuts = nuts_posterior(vae.model, x, datapoints=[0, 1], num_samples=100, warmup_steps=100,
                          num_chains=2)
    assert nuts.posterior["latent"].dims == ("chain", "draw", "datapoint", "latent_dim_0")
    table = compare_posteriors(idata, nuts)
    assert len(table) == 2 * 2 and table["sd_ratio"].between(0.2, 5).all()

    gaps = inference_gaps(vae.model, vae.guide, x, datapoints=range(3), num_samples=500,
                          num_elbo_samples=200, num_steps=100)
    assert all(math.isfinite(gaps.mean(q)) for q in ("approximation_gap", "amortization_gap"))
    assert gaps.mean("amortization_gap") > -3 * gaps.mc_error("amortization_gap") - 0.05


def test_site_names_that_clash_with_fixed_dimensions_are_refused():
    def model(x):
        with pyro.plate("data", len(x)):
            draw = pyro.sample("draw", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(draw, 1.0), obs=x)

    def guide(x):
        with pyro.plate("data", len(x)):
            pyro.sample("draw", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match=r"\['draw'\] share their name"):
        to_inference_data(model, guide, torch.randn(3), num_samples=5)


class OutsideParameter(PlainVAE):
    """A pair that keeps one parameter in Pyro's store, outside the module."""

    def model(self, x):
        shift = pyro.param("shift", torch.zeros(self.pixels))
        pyro.module("decoder", self.decoder)
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("latent", dist.Normal(torch.zeros(self.z_dim), 1.0).to_event(1))
            logits = torch.logit(self.decoder(z), eps=1e-6) + shift
            pyro.sample("obs", dist.Bernoulli(logits=logits).to_event(1), obs=x)


def test_what_fit_cannot_train_is_refused_with_a_clear_error():
    x = torch.bernoulli(torch.full((20, 64), 0.5))
    with pytest.raises(ValueError, match=r"not parameters of the module: \['shift'\]"):
        ppvae.fit(OutsideParameter(), x, epochs=1, progress=False)

    class NoModule:
        def model(self, x):
            pass

        def guide(self, x):
            pass

    with pytest.raises(TypeError, match="not one"):
        ppvae.fit(NoModule(), x, epochs=1, progress=False)
    with pytest.raises(ValueError, match="do not take"):
        ppvae.fit(PlainVAE(), x, epochs=1, kl_warmup_epochs=2, progress=False)
    nan = x.clone()
    nan[1, 2] = math.nan
    with pytest.raises(ValueError, match="training data contains 1 NaN"):
        ppvae.fit(PlainVAE(), nan, epochs=1, progress=False)
    with pytest.raises(ValueError, match="PlainVAE has none"):
        ppvae.fit(PlainVAE(), x, epochs=1, init_output_bias=True, progress=False)
