"""The two-stochastic-layer VAE: with linear-Gaussian pieces set to the exact
conditionals, every importance weight is p(x) (the estimator exact at any K);
it trains as a VAE and as IWAE-K, saves and loads."""


import pyro
import pytest
import torch

import ppvae
from ppvae.data import load_dataset
from ppvae.infer import log_likelihood
from ppvae.models import REGISTRY
from ppvae.models.two_layer import TwoLayerVAE


def inverse_softplus(y: torch.Tensor) -> torch.Tensor:
    return y + torch.log(-torch.expm1(-y))


def set_linear(gaussian, weight, bias, scale):
    """A DiagonalGaussian on a linear net: mean weight @ u + bias, fixed scale."""
    layer = gaussian.net.layers[-1]
    d = len(bias)
    with torch.no_grad():
        layer.weight.zero_()
        layer.weight[:d] = weight
        layer.bias[:d] = bias
        layer.bias[d:] = inverse_softplus(scale - gaussian.min_scale)


def test_with_the_exact_conditionals_every_weight_is_p_x():
    """z2 ~ N(0, I), z1 | z2 ~ N(diag(alpha) z2 + a, diag s1^2), x | z1 ~
    N(B z1 + b, sigma^2 I) with orthogonal columns of B: p(z1 | x) and
    p(z2 | z1) are diagonal Gaussians, linear in their inputs, and the guide
    q(z1 | x) q(z2 | z1) set to them is the exact posterior."""
    torch.manual_seed(0)
    alpha, s1, a = torch.tensor([1.5, 0.7]), torch.tensor([0.6, 0.9]), torch.tensor([0.3, -0.2])
    rotation = torch.linalg.qr(torch.randn(3, 3)).Q
    beta_, sigma, b = torch.tensor([2.0, 0.8]), 0.5, torch.tensor([0.1, -0.4, 0.2])
    B = rotation[:, :2] * beta_
    vae = TwoLayerVAE(3, latent_dim=2, top_latent_dim=2, hidden=(), top_hidden=(),
                      likelihood="gaussian")
    with torch.no_grad():
        vae.likelihood.raw_scale.fill_(float(inverse_softplus(
            torch.tensor(sigma - vae.likelihood.min_scale))))
        vae.likelihood.net.layers[-1].weight.copy_(B)
        vae.likelihood.net.layers[-1].bias.copy_(b)
    set_linear(vae.conditional_prior, torch.diag(alpha), a, s1)
    marginal = alpha**2 + s1**2                       # z1's prior variances
    precision = 1 / marginal + beta_**2 / sigma**2     # p(z1 | x): diagonal
    set_linear(vae.encoder, (B / sigma**2).T / precision[:, None],
               (-(B.T @ b) / sigma**2 + a / marginal) / precision, precision.rsqrt())
    precision2 = 1 + alpha**2 / s1**2                  # p(z2 | z1): diagonal
    set_linear(vae.top_encoder, torch.diag(alpha / s1**2 / precision2),
               -alpha / s1**2 * a / precision2, precision2.rsqrt())
    exact = torch.distributions.MultivariateNormal(
        B @ a + b, B @ torch.diag(marginal) @ B.T + sigma**2 * torch.eye(3))
    x = exact.sample((6,)) + torch.tensor([0.0, 1.0, -1.0])  # some points in the tails
    result = log_likelihood(vae.model, vae.guide, x, num_samples=50)
    want = exact.log_prob(x).double()
    torch.testing.assert_close(result.per_datapoint, want, atol=1e-4, rtol=0)
    torch.testing.assert_close(result.elbo.double(), want, atol=1e-4, rtol=0)
    # equal weights (up to float32 rounding): the largest effective sample size
    torch.testing.assert_close(result.ess, torch.full_like(result.ess, 50.0), atol=1e-2, rtol=0)
    # a guide off the posterior gives a lower bound below log p(x)
    with torch.no_grad():
        vae.top_encoder.net.layers[-1].bias[:2] += 1.0
    worse = log_likelihood(vae.model, vae.guide, x, num_samples=50)
    assert (worse.elbo.double() < want - 0.1).all()


@pytest.mark.parametrize("fit_kwargs", [{}, {"objective": "iwae", "num_particles": 3}])
def test_it_trains_as_a_vae_and_as_an_iwae_and_saves(fit_kwargs, tmp_path):
    data = load_dataset("digits")
    pyro.set_rng_seed(0)
    vae = TwoLayerVAE(data.image_shape, latent_dim=8, top_latent_dim=4, hidden=(32,),
                      top_hidden=(16,), likelihood="continuous-bernoulli")
    x = data.test.x[:50]
    before = log_likelihood(vae.model, vae.guide, x, num_samples=20).per_datapoint.mean()
    ppvae.fit(vae, data, epochs=5, progress=False, **fit_kwargs)
    after = log_likelihood(vae.model, vae.guide, x, num_samples=20).per_datapoint.mean()
    assert after > before + 10, (before, after)
    assert vae.sample(4).shape == (4, 64) and vae.encode(x).shape == (50, 8)
    loaded = ppvae.load(ppvae.save(vae, tmp_path / "vae2"))
    torch.testing.assert_close(loaded.encode(x), vae.encode(x))
    assert REGISTRY["two-layer-vae"].cls is TwoLayerVAE


def test_bad_arguments():
    with pytest.raises(ValueError, match="top_latent_dim must be at least 1"):
        TwoLayerVAE(top_latent_dim=0)
    with pytest.raises(ValueError, match="num_samples"):
        TwoLayerVAE().sample(0)
