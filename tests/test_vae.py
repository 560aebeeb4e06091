import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO, TraceMeanField_ELBO

from ppvae.models import VAE


def hand_elbo(vae, x, beta):
    """log p(x|z) + beta * (log p(z) - log q(z|x)) for one z ~ q, by hand."""
    q = vae.encoder(x)
    z = q.rsample()
    prior = dist.Normal(torch.zeros(vae.latent_dim), 1.0).to_event(1)
    return (vae.likelihood(z).log_prob(x) + beta * (prior.log_prob(z) - q.log_prob(z))).sum()


@pytest.mark.parametrize("beta", [1.0, 0.25, 4.0])
def test_beta_scales_model_and_guide_latents(binary_batch, beta):
    vae = VAE(latent_dim=3, beta=beta)
    pyro.set_rng_seed(7)
    loss = Trace_ELBO().loss(vae.model, vae.guide, binary_batch)
    pyro.set_rng_seed(7)
    assert -loss == pytest.approx(hand_elbo(vae, binary_batch, beta).item(), rel=1e-5)


def test_beta_argument_overrides_model_beta(binary_batch):
    vae = VAE(latent_dim=3, beta=4.0)
    pyro.set_rng_seed(3)
    loss = Trace_ELBO().loss(vae.model, vae.guide, binary_batch, beta=1.0)
    pyro.set_rng_seed(3)
    assert -loss == pytest.approx(hand_elbo(vae, binary_batch, 1.0).item(), rel=1e-5)


def test_analytic_kl_is_beta_weighted(binary_batch):
    beta = 0.5
    vae = VAE(latent_dim=3, beta=beta)
    q = vae.encoder(binary_batch)
    kl = (0.5 * (q.base_dist.scale**2 + q.base_dist.loc**2 - 1) - q.base_dist.scale.log()).sum()
    pyro.set_rng_seed(11)
    loss = TraceMeanField_ELBO().loss(vae.model, vae.guide, binary_batch)
    pyro.set_rng_seed(11)
    z = vae.encoder(binary_batch).rsample()
    expected = vae.likelihood(z).log_prob(binary_batch).sum() - beta * kl
    assert -loss == pytest.approx(expected.item(), rel=1e-5)


def test_trace_has_data_plate_and_sites(binary_batch):
    vae = VAE(latent_dim=2)
    guide_tr = poutine.trace(vae.guide).get_trace(binary_batch)
    model_tr = poutine.trace(poutine.replay(vae.model, trace=guide_tr)).get_trace(binary_batch)
    assert model_tr.nodes["x"]["is_observed"]
    assert [f.name for f in model_tr.nodes["z"]["cond_indep_stack"]] == ["data"]
    assert model_tr.nodes["z"]["value"].shape == (32, 2)


def test_plain_pyro_svi_loop_improves_elbo():
    from ppvae.data import load_dataset

    data = load_dataset("digits", binarize="static")
    vae = VAE(latent_dim=4)
    svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 3e-3}), Trace_ELBO())
    x = data.train.x
    losses = []
    for epoch in range(8):
        for batch in torch.split(x[torch.randperm(len(x))], 128):
            losses.append(svi.step(batch) / len(batch))
    assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10 - 5.0


def test_two_instances_do_not_share_parameters_under_svi(binary_batch):
    a, b = VAE(latent_dim=2), VAE(latent_dim=2)
    before = b.encoder.net.layers[0].weight.detach().clone()
    svi = SVI(a.model, a.guide, pyro.optim.Adam({"lr": 1e-2}), Trace_ELBO())
    for _ in range(3):
        svi.step(binary_batch)
    assert torch.equal(before, b.encoder.net.layers[0].weight)
    svi_b = SVI(b.model, b.guide, pyro.optim.Adam({"lr": 1e-2}), Trace_ELBO())
    svi_b.step(binary_batch)
    assert not torch.equal(before, b.encoder.net.layers[0].weight)


@pytest.mark.parametrize("network", ["mlp", "conv"])
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian", "continuous-bernoulli"])
def test_conveniences_shapes(binary_batch, network, likelihood):
    vae = VAE((1, 8, 8), latent_dim=5, network=network, likelihood=likelihood)
    assert vae.encode(binary_batch).shape == (32, 5)
    assert vae.encode(binary_batch, sample=True).shape == (32, 5)
    assert vae.decode(torch.zeros(4, 5)).shape == (4, 64)
    assert vae.reconstruct(binary_batch.reshape(32, 1, 8, 8)).shape == (32, 64)
    assert vae.sample(6).shape == (6, 64)
    assert vae.sample(6, mean=False).shape == (6, 64)
    assert math.isfinite(Trace_ELBO().loss(vae.model, vae.guide, binary_batch))


def test_bernoulli_means_are_probabilities(binary_batch):
    out = VAE(latent_dim=2).reconstruct(binary_batch)
    assert bool(((out >= 0) & (out <= 1)).all())


@pytest.mark.parametrize(
    "bad, message",
    [
        (torch.full((4, 64), float("nan")), "NaN or infinite"),
        (torch.zeros(4, 63), "shape"),
        (torch.zeros(0, 64), "empty"),
        (torch.full((4, 64), 0.5), "binary data only"),
        (torch.full((4, 64), 2.0), "binary data only"),
        (torch.zeros(4, 64, dtype=torch.complex64), "real numbers"),
    ],
)
def test_bad_inputs_get_clear_errors(bad, message):
    with pytest.raises(ValueError, match=message):
        VAE(latent_dim=2).encode(bad)


def test_continuous_bernoulli_rejects_values_outside_unit_interval():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        VAE(latent_dim=2, likelihood="continuous-bernoulli").encode(torch.full((2, 64), 1.5))
    VAE(latent_dim=2, likelihood="continuous-bernoulli").encode(torch.full((2, 64), 0.5))


def test_model_checks_shape_inside_pyro(binary_batch):
    vae = VAE(latent_dim=2)
    with pytest.raises(ValueError, match=r"shape \(batch, 64\)"):
        Trace_ELBO().loss(vae.model, vae.guide, binary_batch[:, :10])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"latent_dim": 0}, "latent_dim"),
        ({"beta": 0.0}, "beta"),
        ({"likelihood": "poisson"}, "unknown likelihood"),
        ({"network": "rnn"}, "unknown network"),
        ({"activation": "swish!"}, "unknown activation"),
        ({"input_shape": 64, "network": "conv"}, r"\(C, H, W\)"),
    ],
)
def test_bad_constructor_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        VAE(**kwargs)


@pytest.mark.parametrize("prior", ["mog", "vamp"])
def test_a_learned_prior_trains_with_the_model_and_is_saved(prior, tmp_path):
    import ppvae
    from ppvae.data import load_dataset

    data = load_dataset("digits")
    pyro.set_rng_seed(0)
    vae = VAE(data.image_shape, latent_dim=4, hidden=(32,), likelihood="continuous-bernoulli",
              prior=prior, prior_components=5)
    before = [p.detach().clone() for p in vae.prior.parameters()]
    ppvae.fit(vae, data, epochs=2, progress=False)
    assert all(not torch.equal(b, p) for b, p in zip(before, vae.prior.parameters()))
    result = vae.log_likelihood(data.test.x[:10], num_samples=20)
    assert result.per_datapoint.isfinite().all()
    loaded = ppvae.load(ppvae.save(vae, tmp_path / prior))
    assert loaded.config["prior"] == prior and type(loaded.prior) is type(vae.prior)
    torch.testing.assert_close(loaded.prior().log_prob(torch.zeros(4)),
                               vae.prior().log_prob(torch.zeros(4)))
    assert loaded.sample(3).shape == (3, 64)
    assert "prior" not in VAE(data.image_shape).config  # a standard VAE's config is unchanged


@pytest.mark.parametrize("kwargs, message", [
    ({"prior": "cauchy"}, "unknown prior"), ({"prior_components": 3}, "learned prior"),
    ({"prior": "vamp", "prior_components": 0}, "positive count")])
def test_bad_prior_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        VAE(**kwargs)
