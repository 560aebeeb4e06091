"""Inference gaps (Cremer et al. 2018) against closed-form answers on the
linear-Gaussian model, where log p(x), p(z | x) and every Gaussian's ELBO are
known exactly: ELBO(q) = log p(x) - KL(q || p(z | x)).

Tolerances: 4 Monte Carlo standard errors (the estimates' own, per data
point), plus, for the fitted local Gaussian, an optimization tolerance of
2e-3 nats (the ELBO is flat at its optimum: an error d in the parameters
costs O(d^2)).
"""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from matplotlib.figure import Figure

from ppvae import plots
from ppvae.infer import elbo_per_datapoint, fit_local_gaussian, inference_gaps
from ppvae.models import VAE, SSVAE

OPTIMIZATION_TOL = 2e-3


@pytest.fixture
def ppca(correlated_ppca):
    """PPCA with a correlated posterior and 6 data points (see conftest)."""
    return correlated_ppca()


@torch.no_grad()
def exact_answers(model, x):
    """log p(x), and the KL to p(z | x) of the amortized guide and of the best
    diagonal Gaussian N(posterior mean, diag(1 / diag(precision)))."""
    post = model.exact_posterior(x)
    q = model.encoder(x).base_dist
    amortized = dist.MultivariateNormal(q.loc, scale_tril=torch.diag_embed(q.scale))
    precision = torch.linalg.inv(post.covariance_matrix)
    best = dist.MultivariateNormal(post.loc, scale_tril=torch.diag_embed(
        precision.diagonal(dim1=-2, dim2=-1).rsqrt()))
    kl = torch.distributions.kl_divergence
    return (model.exact_log_likelihood(x).double(), kl(amortized, post).double(),
            kl(best, post).double())


def perturb_guide(model):
    """Move the amortized guide off the best diagonal Gaussian: shifted means,
    standard deviations scaled by about 0.6."""
    model.set_guide_to_posterior()
    with torch.no_grad():
        model.encoder.net.layers[0].bias[:2] += 0.4
        model.encoder.net.layers[0].bias[2:] -= 0.5


def test_gaps_match_the_closed_form(ppca):
    model, x = ppca
    perturb_guide(model)
    log_px, kl_amortized, kl_best = exact_answers(model, x)
    assert float(kl_best.min()) > 0.5 and float((kl_amortized - kl_best).min()) > 0.2
    gaps = inference_gaps(model.model, model.guide, x, num_samples=2000, num_elbo_samples=1000,
                          num_steps=300)
    assert torch.equal(gaps.datapoints, torch.arange(6))
    assert float(gaps.khat.max()) < 0.7  # the defensive proposal's estimate is reliable
    assert ((gaps.log_likelihood - log_px).abs() <= 4 * gaps.log_likelihood_error).all()
    assert ((gaps.elbo_amortized - (log_px - kl_amortized)).abs()
            <= 4 * gaps.elbo_amortized_error).all()
    assert ((gaps.elbo_local - (log_px - kl_best)).abs()
            <= 4 * gaps.elbo_local_error + OPTIMIZATION_TOL).all()
    # the two gaps add up to the exact inference gap log p(x) - ELBO(q)
    total = gaps.approximation_gap + gaps.amortization_gap
    assert ((total - kl_amortized).abs() <= 4 * gaps.inference_gap_error).all()
    assert ((gaps.approximation_gap - kl_best).abs()
            <= 4 * gaps.approximation_gap_error + OPTIMIZATION_TOL).all()


def test_amortization_gap_vanishes_for_the_best_diagonal_guide(ppca):
    model, x = ppca
    model.set_guide_to_posterior()
    _, _, kl_best = exact_answers(model, x)
    gaps = inference_gaps(model.model, model.guide, x, datapoints=[1, 4], num_samples=2000,
                          num_elbo_samples=1000, num_steps=200)
    assert gaps.datapoints.tolist() == [1, 4]
    assert (gaps.amortization_gap.abs()
            <= 4 * gaps.amortization_gap_error + OPTIMIZATION_TOL).all()
    assert ((gaps.approximation_gap - kl_best[[1, 4]]).abs()
            <= 4 * gaps.approximation_gap_error + OPTIMIZATION_TOL).all()


def test_local_fit_recovers_the_best_diagonal_gaussian(ppca):
    """From a perturbed start, the fitted Gaussian's ELBO is within the
    optimization tolerance of the closed-form optimum's, computed exactly:
    ELBO(best) - ELBO(fitted) = KL(fitted || p(z | x)) - KL(best || p(z | x))."""
    model, x = ppca
    perturb_guide(model)
    _, kl_start, kl_best = exact_answers(model, x)
    local = fit_local_gaussian(model.model, model.guide, x, num_steps=300)
    with torch.no_grad():
        post = model.exact_posterior(x)
        fitted = dist.MultivariateNormal(local.loc["z"],
                                         scale_tril=torch.diag_embed(local.scale["z"]))
        kl_fitted = torch.distributions.kl_divergence(fitted, post).double()
    assert local.loc["z"].shape == local.scale["z"].shape == (6, 2)
    assert float((kl_start - kl_best).min()) > 0.2  # the start is far from the optimum
    assert ((kl_fitted - kl_best).abs() <= OPTIMIZATION_TOL).all()


def test_gaps_are_non_negative_on_a_vae(binary_batch):
    torch.manual_seed(0)
    vae = VAE((1, 8, 8), latent_dim=2, hidden=(32,), beta=4.0)  # beta is ignored
    x = binary_batch[:5]
    gaps = inference_gaps(vae.model, vae.guide, x, num_samples=1000, num_elbo_samples=500,
                          num_steps=200)
    assert float(gaps.khat.max()) < 0.7
    assert (gaps.approximation_gap >= -4 * gaps.approximation_gap_error).all()
    assert (gaps.amortization_gap >= -4 * gaps.amortization_gap_error - OPTIMIZATION_TOL).all()
    # an untrained encoder is far from the best local Gaussian
    assert gaps.mean("amortization_gap") > 10 * gaps.mc_error("amortization_gap")


def test_elbo_per_datapoint_error_matches_the_spread_of_repeats(ppca):
    model, x = ppca
    model.set_guide_to_posterior()
    pyro.set_rng_seed(0)
    runs = [elbo_per_datapoint(model.model, model.guide, x, num_samples=200) for _ in range(20)]
    means = torch.stack([m for m, _ in runs])
    reported = torch.stack([e for _, e in runs]).mean(0)
    # the sd of 20 repeats estimates the error with relative s.e. 1/sqrt(2 * 19) = 16%;
    # allow 3 of those
    assert ((means.std(0) / reported - 1).abs() < 0.5).all()


def test_summary_dict_and_figure(ppca, tmp_path):
    model, x = ppca
    perturb_guide(model)
    gaps = inference_gaps(model.model, model.guide, x, num_samples=200, num_elbo_samples=100,
                          num_steps=50)
    text = gaps.summary()
    assert "approximation gap" in text and "amortization gap" in text
    summary = gaps.to_dict()
    assert summary["num_datapoints"] == 6 and summary["proposal"] == "defensive"
    assert summary["inference_gap"]["mean"] == pytest.approx(
        summary["approximation_gap"]["mean"] + summary["amortization_gap"]["mean"])
    assert gaps.stderr("amortization_gap") == pytest.approx(
        float(gaps.amortization_gap.std()) / math.sqrt(6))
    with pytest.raises(ValueError, match="quantity"):
        gaps.mean("elbo")
    fig = plots.plot_inference_gaps(gaps, path=tmp_path / "gaps.png")
    assert isinstance(fig, Figure) and (tmp_path / "gaps.png").is_file()
    assert len(fig.axes[0].patches) == 2 * 7  # two stacked bars per point and for the mean


def test_bad_input(ppca, binary_batch):
    model, x = ppca
    with pytest.raises(ValueError, match=r"0\.\.5"):
        inference_gaps(model.model, model.guide, x, datapoints=[2, 6])
    with pytest.raises(ValueError, match="proposal"):
        inference_gaps(model.model, model.guide, x, proposal="prior")

    def no_latent(x):
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Normal(0.0, 1.0).expand([4]).to_event(1), obs=x)

    with pytest.raises(ValueError, match="no latent"):
        inference_gaps(no_latent, no_latent, x)

    def two_latents(x):
        with pyro.plate("data", len(x)):
            a = pyro.sample("a", dist.Normal(0.0, 1.0))
            b = pyro.sample("b", dist.Normal(0.0, 1.0))
            loc = (a + b).unsqueeze(-1).expand(x.shape)
            pyro.sample("x", dist.Normal(loc, 1.0).to_event(1), obs=x)

    def guide_of_a(x):
        with pyro.plate("data", len(x)):
            pyro.sample("a", dist.Normal(0.0, 1.0))

    with pytest.raises(ValueError, match="'b' of the model has no counterpart"):
        inference_gaps(two_latents, guide_of_a, x)
    m2 = SSVAE((1, 8, 8), num_classes=3, latent_dim=2, hidden=(16,))
    with pytest.raises(ValueError, match="real-valued"):
        inference_gaps(m2.model, m2.guide, binary_batch[:4])  # y unobserved: discrete latent
