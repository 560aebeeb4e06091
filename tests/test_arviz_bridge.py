"""Export to ArviZ InferenceData: documented groups and dims, draws that follow
the guide, log weights that are log p(x, z) - log q(z | x) of those draws."""

import math
import warnings

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch

from ppvae.infer import to_inference_data
from ppvae.infer.arviz_bridge import history_dataset
from ppvae.models import VAE, LinearGaussian, SSVAE
from ppvae.train.history import History

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az


def test_groups_and_dims_for_a_vae(binary_batch):
    vae = VAE((1, 8, 8), latent_dim=3, hidden=(32,))
    history = History(metrics={"train_elbo": [-60.0, -50.0, -45.0],
                               "val_elbo": [-61.0, -52.0, -47.0]}, best_epoch=3, seconds=1.5)
    data = to_inference_data(vae.model, vae.guide, binary_batch, datapoints=[3, 7, 20],
                             num_samples=50, history=history)
    assert set(data.groups()) == {"posterior", "sample_stats", "observed_data", "training"}
    z = data.posterior.z
    assert z.dims == ("chain", "draw", "datapoint", "latent") and z.shape == (1, 50, 3, 3)
    assert z.datapoint.values.tolist() == [3, 7, 20]
    x = data.observed_data.x
    assert x.dims == ("datapoint", "pixel") and x.datapoint.values.tolist() == [3, 7, 20]
    assert np.array_equal(x.values, binary_batch[[3, 7, 20]].numpy())
    assert data.sample_stats.log_weight.dims == ("chain", "draw", "datapoint")
    assert data.sample_stats.khat.dims == ("datapoint",)
    assert np.isfinite(data.sample_stats.khat.values).all()
    training = data.training
    assert training.train_elbo.dims == ("epoch",) and training.epoch.values.tolist() == [1, 2, 3]
    assert training.val_elbo.values.tolist() == [-61.0, -52.0, -47.0]
    assert training.attrs["best_epoch"] == 3 and training.attrs["stopped_early"] == 0
    assert "val_accuracy" not in training  # empty series are left out
    assert len(az.summary(data, kind="stats")) == 9  # ArviZ reads it


def test_draws_follow_the_guide_and_log_weights_score_them():
    torch.manual_seed(0)
    model = LinearGaussian(5, 2, sigma=0.6)
    model.set_guide_to_posterior()
    x = torch.randn(12, 5)
    data = to_inference_data(model.model, model.guide, x, datapoints=[0, 5, 11], num_samples=2000)
    z = torch.as_tensor(data.posterior.z.values[0])  # (draw, datapoint, latent)
    with torch.no_grad():
        q = model.encoder(x[[0, 5, 11]]).base_dist
        # means within 4 standard errors of the guide's
        assert ((z.mean(0) - q.loc).abs() < 4 * q.scale / math.sqrt(2000)).all()
        # the log weights are those of these very draws
        log_w = (model.likelihood(z).log_prob(x[[0, 5, 11]]) + model.prior().log_prob(z)
                 - model.encoder(x[[0, 5, 11]]).log_prob(z))
        exact = model.exact_log_likelihood(x[[0, 5, 11]]).double()
    stored = torch.as_tensor(data.sample_stats.log_weight.values[0])
    assert torch.allclose(stored, log_w.double(), atol=1e-4)
    estimate = torch.logsumexp(stored, 0) - math.log(2000)  # the IW estimate from them
    ess = torch.exp(2 * torch.logsumexp(stored, 0) - torch.logsumexp(2 * stored, 0))
    assert ((estimate - exact).abs() < 4 * (1 / ess - 1 / 2000).sqrt()).all()
    assert (data.sample_stats.khat.values < 0.7).all()


def test_khat_flags_a_too_narrow_guide():
    torch.manual_seed(0)
    model = LinearGaussian(5, 2, sigma=0.6)
    model.set_guide_to_posterior(inflate=0.3)
    data = to_inference_data(model.model, model.guide, torch.randn(4, 5), num_samples=1000)
    assert (data.sample_stats.khat.values > 0.7).all()


def test_an_enumerated_site_becomes_a_dimension(binary_batch):
    m2 = SSVAE((1, 8, 8), num_classes=3, latent_dim=2, hidden=(16,))
    data = to_inference_data(m2.model, m2.guide, binary_batch, datapoints=[0, 1], num_samples=20)
    assert data.posterior.z.dims == ("chain", "draw", "datapoint", "y", "latent")
    assert data.posterior.y.values.tolist() == [0, 1, 2]
    assert "y" not in data.posterior.data_vars  # summed over, not drawn
    labels = torch.tensor([2, 0, 1] * 10 + [0, 1])
    data = to_inference_data(m2.model, m2.guide, binary_batch, labels, datapoints=[0, 1],
                             num_samples=20)
    assert data.posterior.z.dims == ("chain", "draw", "datapoint", "latent")
    assert data.observed_data.y.dims == ("datapoint",)
    assert data.observed_data.y.values.tolist() == [2, 0]


def test_a_user_model_with_two_latent_sites():
    """Sites are read from traces: names and event dims come from the pair."""

    def model(x):
        with pyro.plate("data", len(x)):
            a = pyro.sample("a", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
            b = pyro.sample("b", dist.Normal(0.0, 1.0).expand([3]).to_event(1))
            loc = torch.cat([a, b], -1)
            pyro.sample("obs", dist.Normal(loc, 1.0).to_event(1), obs=x)

    def guide(x):
        with pyro.plate("data", len(x)):
            pyro.sample("a", dist.Normal(x[..., :2] / 2, 0.8).to_event(1))
            pyro.sample("b", dist.Normal(x[..., 2:] / 2, 0.8).to_event(1))

    data = to_inference_data(model, guide, torch.randn(4, 5), num_samples=30)
    assert data.posterior.a.dims == ("chain", "draw", "datapoint", "a_dim_0")
    assert data.posterior.b.dims == ("chain", "draw", "datapoint", "b_dim_0")
    assert data.observed_data.obs.dims == ("datapoint", "pixel")
    assert data.posterior.datapoint.values.tolist() == [0, 1, 2, 3]


def test_history_dataset_from_a_mapping():
    ds = history_dataset({"train_elbo": [1.0, 2.0, 3.0], "val_elbo": [1.5, 2.5],
                          "test_elbo": -3.0, "note": "digits", "checkpoint_dir": None})
    assert ds.train_elbo.dims == ("epoch",)
    assert ds.val_elbo.dims == ("val_elbo_epoch",)
    assert ds.attrs == {"test_elbo": -3.0, "note": "digits"}
    with pytest.raises(TypeError, match="History or a mapping"):
        history_dataset([1.0, 2.0])
    with pytest.raises(ValueError, match="no per-epoch values"):
        history_dataset(History())


def test_bad_input(binary_batch):
    vae = VAE((1, 8, 8), latent_dim=2, hidden=(16,))
    with pytest.raises(ValueError, match=r"0\.\.31"):
        to_inference_data(vae.model, vae.guide, binary_batch, datapoints=[0, 32])
    with pytest.raises(ValueError, match=r"0\.\.31"):
        to_inference_data(vae.model, vae.guide, binary_batch, datapoints=[-1])
    with pytest.raises(ValueError, match="integer indices"):
        to_inference_data(vae.model, vae.guide, binary_batch, datapoints=[0.5])
    with pytest.raises(ValueError, match="num_samples"):
        to_inference_data(vae.model, vae.guide, binary_batch, num_samples=0)
    with pytest.raises(ValueError, match="data tensor"):
        to_inference_data(vae.model, vae.guide, [0.0, 1.0])

    def no_latent(x):
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Bernoulli(0.5).expand([64]).to_event(1), obs=x)

    with pytest.raises(ValueError, match="no latent sample site"):
        to_inference_data(no_latent, no_latent, binary_batch)
