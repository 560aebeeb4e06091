import math

import pyro
import pytest
import torch

import ppvae
from ppvae.infer import evaluate_elbo
from ppvae.models import LinearGaussian


@pytest.fixture
def model():
    torch.manual_seed(0)
    return LinearGaussian(3, 2, sigma=0.8)


def test_exact_log_likelihood_matches_monte_carlo_over_the_prior(model):
    x = torch.tensor([[0.3, -1.0, 2.0], [0.0, 0.5, -0.5]])
    z = torch.randn(400_000, 2)
    with torch.no_grad():
        log_lik = model.likelihood(z.unsqueeze(1)).log_prob(x)  # (S, N)
    mc = torch.logsumexp(log_lik, 0) - math.log(len(z))
    assert torch.allclose(mc, model.exact_log_likelihood(x).detach(), atol=0.01)


def test_exact_posterior_is_bayes_rule(model):
    """log p(z|x) = log p(x|z) + log p(z) - log p(x) at arbitrary z."""
    x = torch.tensor([[1.0, -0.5, 0.2]])
    z = torch.randn(5, 1, 2)
    with torch.no_grad():
        lhs = model.exact_posterior(x).log_prob(z)
        rhs = (model.likelihood(z).log_prob(x) + model.prior().log_prob(z)
               - model.exact_log_likelihood(x))
    assert torch.allclose(lhs, rhs, atol=1e-4)


def test_guide_set_to_posterior_has_the_best_diagonal_elbo_gap(model):
    """q = N(posterior mean, diag(1 / diag(precision))) gives
    ELBO = log p(x) - KL(q || p(z|x)) with KL = (sum_i log P_ii - log det P) / 2."""
    x = torch.randn(200, 3)
    model.set_guide_to_posterior()
    pyro.set_rng_seed(0)
    elbo = evaluate_elbo(model.model, model.guide, x, num_particles=500)
    exact = model.exact_log_likelihood(x).mean().item()
    precision = torch.linalg.inv(model.exact_posterior(x[:1]).covariance_matrix[0])
    kl = 0.5 * (precision.diagonal().log().sum() - torch.logdet(precision)).item()
    assert kl > 0.01
    assert elbo == pytest.approx(exact - kl, abs=0.01)


@pytest.mark.filterwarnings("ignore:.*not registered in the param store")  # frozen on purpose
def test_training_the_guide_closes_the_gap(model):
    with torch.no_grad():
        x = torch.randn(500, 2) @ model.weight.T + model.bias + 0.8 * torch.randn(500, 3)
    for p in model.likelihood.parameters():
        p.requires_grad_(False)  # learn the guide only: the exact answer stays fixed
    history = ppvae.fit(model, x, epochs=60, lr=1e-2, progress=False)
    exact = model.exact_log_likelihood(x).mean().item()
    assert history.train_elbo[-1] < exact
    assert history.train_elbo[-1] > exact - 0.2


def test_save_and_load(model, tmp_path):
    ppvae.save(model, tmp_path)
    loaded = ppvae.load(tmp_path)
    x = torch.randn(4, 3)
    assert torch.allclose(loaded.exact_log_likelihood(x), model.exact_log_likelihood(x))
    assert loaded.sigma == pytest.approx(0.8)


def test_bad_sigma():
    with pytest.raises(ValueError, match="sigma"):
        LinearGaussian(3, 1, sigma=0.0)
