import dataclasses
import json
import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from ppvae.infer import log_likelihood
from ppvae.infer.loglik import WeightAccumulator
from ppvae.infer.psis import kept_size, pareto_khat
from ppvae.models import VAE, LinearGaussian


@pytest.fixture
def ppca():
    """PPCA with an amortized guide at the exact posterior mean and 1.5 times the
    marginal posterior standard deviations (an overdispersed proposal), and data."""
    torch.manual_seed(0)
    model = LinearGaussian(6, 2, sigma=0.6)
    with torch.no_grad():
        x = torch.randn(40, 2) @ model.weight.T + model.bias + 0.6 * torch.randn(40, 6)
    with torch.no_grad():
        post = model.exact_posterior(x)
    precision = torch.linalg.inv(post.covariance_matrix[0])
    marginal_std = post.covariance_matrix[0].diagonal().sqrt()
    model.set_guide_to_posterior(inflate=1.5 * float((marginal_std * precision.diagonal().sqrt()).max()))
    q = model.encoder(x).base_dist
    assert torch.allclose(q.loc, post.loc, atol=1e-4)
    assert bool((q.scale >= 1.5 * marginal_std - 1e-4).all())
    return model, x


def test_exact_posterior_guide_gives_exact_log_likelihood_with_one_sample(ppca):
    model, x = ppca
    result = log_likelihood(model.model, model.exact_guide, x, num_samples=1)
    exact = model.exact_log_likelihood(x).detach().double()
    assert torch.allclose(result.per_datapoint, exact, atol=1e-4)
    assert torch.allclose(result.elbo, exact, atol=1e-4)  # the bound is tight
    assert math.isnan(result.khat[0])  # k-hat needs K >= 50


def test_estimate_converges_to_exact_value_and_bounds_are_ordered(ppca):
    model, x = ppca
    exact = model.exact_log_likelihood(x).detach().double()
    means = {}
    for k in (1, 10, 100):
        r = log_likelihood(model.model, model.guide, x, num_samples=k, seed=k)
        means[k] = r.mean
        assert r.elbo_mean <= r.mean + 1e-9
        gap = exact - r.per_datapoint  # IW_K <= log p(x) in expectation
        assert gap.mean() > -3 * gap.std() / math.sqrt(len(gap))
    assert means[1] < means[10] < means[100]  # increasing in K
    r = log_likelihood(model.model, model.guide, x, num_samples=3000, seed=1)
    gap = exact - r.per_datapoint
    assert abs(gap.mean()) < 1e-3 + 4 * gap.std() / math.sqrt(len(gap))
    assert abs(r.mean - exact.mean().item()) < 2e-3
    assert r.khat_max < 0.7  # an overdispersed proposal has well-behaved weights


def test_khat_flags_a_too_narrow_guide(ppca):
    model, x = ppca
    with torch.no_grad():
        model.encoder.net.layers[0].bias[2:] = -6.0  # sigma ~ 0.0025: far too narrow
    r = log_likelihood(model.model, model.guide, x, num_samples=1000)
    assert r.frac_khat_above > 0.5
    assert float(r.ess.mean()) < 100  # of K = 1000


def test_constant_weights_have_a_bounded_tail_not_a_failed_fit():
    def model(x):
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(0.0, 1.0), obs=x)

    def guide(x):  # q(z | x) = p(z | x) = p(z): every weight equals p(x)
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Normal(0.0, 1.0))

    x = torch.randn(4)
    r = log_likelihood(model, guide, x, num_samples=100)
    assert torch.allclose(r.per_datapoint.float(), dist.Normal(0.0, 1.0).log_prob(x))
    # equal up to float rounding: a bounded tail (k <= 0), never a failed fit
    assert (r.khat <= 0).all() and r.frac_khat_above == 0.0
    acc = WeightAccumulator(3, 50)
    acc.add(torch.full((50, 3), -7.25))  # exactly equal weights
    khat = acc.result()[3]
    assert torch.isneginf(khat).all()
    r = dataclasses.replace(r, khat=khat[:1].expand(4))  # as if all were constant
    assert r.to_dict()["khat_max"] is None and r.to_dict()["frac_khat_above_0.7"] == 0.0
    json.dumps(r.to_dict(), allow_nan=False)


def test_result_does_not_depend_on_chunk_sizes(ppca):
    model, x = ppca
    a = log_likelihood(model.model, model.guide, x, num_samples=400, seed=0)
    b = log_likelihood(model.model, model.guide, x, num_samples=400, seed=0,
                       data_chunk=7, particle_chunk=33)
    c = log_likelihood(model.model, model.guide, x, num_samples=400, seed=0,
                       data_chunk=40, particle_chunk=400)
    for other in (b, c):
        diff = a.per_datapoint - other.per_datapoint
        assert abs(diff.mean()) < 4 * diff.std() / math.sqrt(len(diff)) + 1e-9
        assert abs(a.mean - other.mean) < 0.1


def test_same_seed_same_result_and_global_rng_untouched(ppca):
    model, x = ppca
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = log_likelihood(model.model, model.guide, x, num_samples=50, seed=5)
    assert torch.equal(torch.rand(1), expected_next)
    b = log_likelihood(model.model, model.guide, x, num_samples=50, seed=5)
    assert torch.equal(a.per_datapoint, b.per_datapoint)


@pytest.mark.parametrize("k", [500, 200, 3000])
def test_accumulator_matches_direct_computation_for_any_chunking(k):
    gen = torch.Generator().manual_seed(0)
    n = 6
    log_w = torch.randn(k, n, generator=gen, dtype=torch.float64) * torch.linspace(0.2, 3, n)
    log_w[:, -1] += torch.distributions.StudentT(1.5).sample((k,)).double()  # heavy tail
    khat_direct = pareto_khat(log_w.T, k)  # from all K weights at once
    direct = (torch.logsumexp(log_w, 0) - math.log(k), log_w.mean(0),
              torch.exp(2 * torch.logsumexp(log_w, 0) - torch.logsumexp(2 * log_w, 0)))
    for chunk in (1, 37, k):
        acc = WeightAccumulator(n, k)
        for part in torch.split(log_w, chunk):
            acc.add(part)
        lme, elbo, ess, khat, _ = acc.result()
        assert acc.top.shape == (n, kept_size(k))
        for got, want in zip((lme, elbo, ess), direct):
            assert torch.allclose(got, want, rtol=1e-10, atol=1e-10)
        assert torch.allclose(khat, khat_direct, rtol=1e-10, atol=1e-12)
    assert khat[-1] > khat[:-1].max()


def user_model(x):
    """A Pyro program written outside ppvae: PPCA with pyro.param, a pixel plate
    nested in the data plate, and a beta-style poutine.scale."""
    w = pyro.param("w", torch.linspace(-1, 1, 12).reshape(6, 2))
    with pyro.plate("data", x.shape[0], dim=-2):
        with poutine.scale(scale=3.0):
            z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([2]).to_event(1))
        with pyro.plate("pixels", 6, dim=-1):
            pyro.sample("x", dist.Normal((z @ w.T).squeeze(-2), 0.6), obs=x)


def user_guide(x):
    a = pyro.param("a", torch.zeros(2, 6))
    with pyro.plate("data", x.shape[0], dim=-2):
        with poutine.scale(scale=3.0):
            pyro.sample("z", dist.Normal((x @ a.T).unsqueeze(-2), 0.8).to_event(1))


def test_works_on_a_user_written_model_and_ignores_scales():
    pyro.clear_param_store()
    x = torch.randn(30, 6)
    result = log_likelihood(user_model, user_guide, x, num_samples=2000)
    w = pyro.param("w").detach()
    cov = w @ w.T + 0.36 * torch.eye(6)
    exact = dist.MultivariateNormal(torch.zeros(6), cov).log_prob(x).double()
    assert abs(result.mean - exact.mean().item()) < 0.05
    assert result.per_datapoint.shape == (30,)


def test_subsampled_data_plate_is_refused():
    def model(x):
        with pyro.plate("data", x.shape[0], subsample_size=5) as idx:
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x[idx])

    def guide(x):
        with pyro.plate("data", x.shape[0], subsample_size=5):
            pyro.sample("z", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match="subsamples"):
        log_likelihood(model, guide, torch.randn(20), num_samples=3)


def test_global_latent_and_missing_guide_site_are_refused():
    def model(x):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(mu, 1.0), obs=x)

    def guide(x):
        pyro.sample("mu", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match="not inside pyro.plate"):
        log_likelihood(model, guide, torch.randn(5), num_samples=3)

    def local_model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    with pytest.raises(ValueError, match="no counterpart in the guide"):
        log_likelihood(local_model, lambda x: None, torch.randn(5), num_samples=3)


def test_a_guide_site_the_model_lacks_is_refused():
    """A guide latent the model does not have would add -log q to every
    weight: the "estimate" would rise above log p(x) and grow with K."""
    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(x / 2, 0.8))
            pyro.sample("extra", dist.Normal(0.0, 0.01))

    with pytest.raises(ValueError, match="'extra' is not a latent site of the model"):
        log_likelihood(model, guide, torch.randn(5), num_samples=3)


def test_point_mass_guides_and_improper_priors_are_refused():
    """A deterministic encoder (Delta) has no density to divide by, and a flat
    prior leaves log p(x) undefined: neither pair is a density to estimate."""
    def model(x, prior=dist.Normal(0.0, 1.0)):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", prior.expand([2]).to_event(1))
            pyro.sample("x", dist.Normal(z.sum(-1), 1.0), obs=x)

    def delta_guide(x, prior=None):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Delta(x.unsqueeze(-1).expand(-1, 2), event_dim=1))

    def normal_guide(x, prior=None):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(x.unsqueeze(-1).expand(-1, 2), 1.0).to_event(1))

    x = torch.randn(5)
    with pytest.raises(ValueError, match="point mass"):
        log_likelihood(model, delta_guide, x, num_samples=3)
    flat = dist.ImproperUniform(dist.constraints.real, (), ())
    with pytest.raises(ValueError, match="improper"):
        log_likelihood(model, normal_guide, x, num_samples=3, prior=flat)


def test_seed_none_draws_fresh_numbers_each_call(ppca):
    model, x = ppca
    a = log_likelihood(model.model, model.guide, x, num_samples=20, seed=None)
    b = log_likelihood(model.model, model.guide, x, num_samples=20, seed=None)
    assert not torch.equal(a.per_datapoint, b.per_datapoint)
    torch.manual_seed(7)
    c = log_likelihood(model.model, model.guide, x, num_samples=20, seed=None)
    torch.manual_seed(7)
    d = log_likelihood(model.model, model.guide, x, num_samples=20, seed=None)
    assert torch.equal(c.per_datapoint, d.per_datapoint)  # the global state decides


def test_another_guide_on_the_same_module_is_estimated_with_that_guide(ppca):
    """After an estimate with the amortized guide, one with the exact
    posterior on the same module is exact: nothing made for one pair is
    reused for another."""
    model, x = ppca
    log_likelihood(model.model, model.guide, x, num_samples=200)
    log_likelihood(model.model, model.guide, x, num_samples=200)
    exact = model.exact_log_likelihood(x).detach().double()
    for _ in range(2):
        result = log_likelihood(model.model, model.exact_guide, x, num_samples=1)
        assert torch.allclose(result.per_datapoint, exact, atol=1e-4)


def test_vae_method_and_summary(binary_batch):
    vae = VAE(latent_dim=3)
    r = vae.log_likelihood(binary_batch, num_samples=100)
    assert r.per_datapoint.shape == r.elbo.shape == r.ess.shape == r.khat.shape == (32,)
    assert bool((r.ess >= 1 - 1e-9).all() and (r.ess <= 100 + 1e-9).all())
    assert r.elbo_mean < r.mean < 0
    summary = r.summary()
    assert "K = 100" in summary and "k-hat" in summary
    d = r.to_dict()
    assert set(d) >= {"mean", "stderr", "elbo", "num_samples", "khat_max", "frac_khat_above_0.7"}
    with pytest.raises(ValueError, match="binary data only"):
        vae.log_likelihood(torch.full((2, 64), 0.5))


def test_beta_vae_log_likelihood_does_not_depend_on_beta(binary_batch):
    a = VAE(latent_dim=3, beta=1.0)
    b = VAE(latent_dim=3, beta=5.0)
    b.load_state_dict(a.state_dict())
    ra = a.log_likelihood(binary_batch, num_samples=20)
    rb = b.log_likelihood(binary_batch, num_samples=20)
    assert torch.allclose(ra.per_datapoint, rb.per_datapoint)


def test_bad_arguments():
    vae = VAE(latent_dim=2)
    with pytest.raises(ValueError, match="num_samples"):
        log_likelihood(vae.model, vae.guide, torch.zeros(3, 64), num_samples=0)
    with pytest.raises(ValueError, match="first positional argument"):
        log_likelihood(vae.model, vae.guide, num_samples=3)
    with pytest.raises(ValueError, match="no data points"):
        log_likelihood(vae.model, vae.guide, torch.zeros(0, 64), num_samples=3)


def test_curve_uses_nested_subsets_of_the_same_draws(ppca):
    model, x = ppca
    r = log_likelihood(model.model, model.guide, x, num_samples=250, particle_chunk=64,
                       data_chunk=len(x))
    assert sorted(r.by_num_samples) == [1, 10, 100]
    curve = r.curve()
    assert list(curve) == [1, 10, 100, 250] and curve[250][0] == r.mean
    short = log_likelihood(model.model, model.guide, x, num_samples=100, particle_chunk=64,
                           data_chunk=len(x))
    assert torch.allclose(short.per_datapoint, r.by_num_samples[100])  # same first 100 draws
    assert torch.allclose(short.by_num_samples[10], r.by_num_samples[10])


def test_paired_difference_of_two_models_on_the_same_points(ppca):
    """With the exact posterior as guide (K = 1: exact estimates) the paired
    difference of two PPCA models is the mean and standard error of their
    exact per-point differences; refused for different data points."""
    model, x = ppca
    other = LinearGaussian(6, 2, sigma=0.9)
    other.load_state_dict({k: v for k, v in model.state_dict().items() if "scale" not in k},
                          strict=False)  # the same W and b, another noise level
    a = log_likelihood(model.model, model.exact_guide, x, num_samples=1)
    b = log_likelihood(other.model, other.exact_guide, x, num_samples=1)
    d = (model.exact_log_likelihood(x) - other.exact_log_likelihood(x)).detach().double().numpy()
    mean, stderr = a.difference(b)
    assert mean == pytest.approx(d.mean(), abs=1e-4)
    assert stderr == pytest.approx(d.std(ddof=1) / math.sqrt(len(d)), abs=1e-4)
    assert stderr < math.hypot(a.stderr, b.stderr)  # the two move together over the points
    assert b.difference(a)[0] == pytest.approx(-mean)
    with pytest.raises(ValueError, match="same data points"):
        a.difference(log_likelihood(model.model, model.exact_guide, x[:10], num_samples=1))
