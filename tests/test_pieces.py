import math

import pyro.distributions as dist
import pytest
import torch

from ppvae.nn import MLP, make_decoder
from ppvae.pieces import (
    BernoulliLikelihood,
    ContinuousBernoulliLikelihood,
    DiagonalGaussian,
    GaussianLikelihood,
    StandardNormalPrior,
    make_likelihood,
)


def test_prior_is_standard_normal_event():
    p = StandardNormalPrior(3)()
    assert p.event_shape == (3,) and p.batch_shape == ()
    assert torch.allclose(p.log_prob(torch.zeros(3)), torch.tensor(-1.5 * 1.8378770664))


def test_diagonal_gaussian_event_and_positive_scale():
    q = DiagonalGaussian(MLP(4, [8], 6), 3)(torch.randn(5, 4))
    assert q.event_shape == (3,) and q.batch_shape == (5,)
    assert bool((q.base_dist.scale > 0).all())


@pytest.mark.parametrize("cls", [BernoulliLikelihood, ContinuousBernoulliLikelihood])
def test_likelihood_event_shape_and_mean_in_unit_interval(cls):
    lik = cls(MLP(2, [8], 10))
    p = lik(torch.randn(7, 2))
    assert p.event_shape == (10,) and p.batch_shape == (7,)
    m = lik.mean(torch.randn(7, 2))
    assert bool(((m >= 0) & (m <= 1)).all())


def test_gaussian_scale_is_learned_and_bounded():
    lik = GaussianLikelihood(MLP(2, [8], 10), 10, init_scale=0.1, min_scale=1e-3)
    assert lik.scale.item() == pytest.approx(0.1, rel=1e-5)
    with torch.no_grad():
        lik.raw_scale.fill_(-100.0)
    assert lik.scale.item() == pytest.approx(1e-3)
    assert len(list(lik.parameters())) == len(list(lik.net.parameters())) + 1
    per_pixel = GaussianLikelihood(MLP(2, [8], 10), 10, per_pixel=True)
    assert per_pixel.scale.shape == (10,)


def test_init_from_data_gives_each_pixel_its_fit_to_the_data():
    """The output bias makes E[x_d | z] the data's pixel mean when the rest of
    the decoder's output is zero (a zero last-layer weight here)."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(200, 6, generator=g) * torch.tensor([0, 1, 0.5, 0.6, 0.9, 1])
    x[:, 5] = 1.0  # a pixel always on, one always off (column 0)
    for name in ("bernoulli", "continuous-bernoulli", "gaussian"):
        lik = make_likelihood(name, MLP(2, [4], 6), 6)
        with torch.no_grad():
            lik.net.layers[-1].weight.zero_()
        lik.init_from_data(x)
        mean = lik.mean(torch.randn(3, 2))
        pixel_mean = x.mean(0)
        if name == "bernoulli":  # clipped to [1e-3, 1 - 1e-3]: finite logits
            pixel_mean = pixel_mean.clamp(1e-3, 1 - 1e-3)
        if name == "continuous-bernoulli":  # reachable within logits [-15, 15]
            ends = dist.ContinuousBernoulli(logits=torch.tensor([-15.0, 15.0])).mean
            pixel_mean = pixel_mean.clamp(*ends)
        assert torch.allclose(mean, pixel_mean.expand(3, 6), atol=1e-5), name


def test_init_from_data_refuses_what_it_cannot_fit_and_changes_nothing():
    lik = BernoulliLikelihood(MLP(2, [4], 6))
    before = lik.net.output_bias.detach().clone()
    with pytest.raises(ValueError, match="4 values per point, the decoder 6 outputs"):
        lik.init_from_data(torch.rand(10, 4))
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        lik.init_from_data(torch.full((10, 6), 2.0))
    assert torch.equal(lik.net.output_bias, before)
    conv = BernoulliLikelihood(make_decoder("conv", 2, (1, 8, 8), [16]))
    with pytest.raises(ValueError, match="ConvDecoder has no bias per output"):
        conv.init_from_data(torch.rand(10, 64))


def test_bernoulli_log_prob_matches_formula():
    lik = BernoulliLikelihood(MLP(2, [8], 4))
    z, x = torch.randn(3, 2), torch.bernoulli(torch.full((3, 4), 0.5))
    logits = lik.net(z)
    expected = (x * torch.nn.functional.logsigmoid(logits)
                + (1 - x) * torch.nn.functional.logsigmoid(-logits)).sum(-1)
    assert torch.allclose(lik(z).log_prob(x), expected, atol=1e-6)


def test_bernoulli_is_stable_at_extreme_logits():
    """Stock Pyro Bernoulli(logits): log p(x) = x l - softplus(l), exact in
    float32 however confident the decoder."""
    lik = BernoulliLikelihood(MLP(1, [], 1))
    logits = torch.tensor([-300.0, -60.0, -20.0, 0.0, 20.0, 60.0, 300.0])
    for x in (0.0, 1.0):
        fn = torch.distributions.Bernoulli(logits=logits)
        exact = (x * logits.double() - torch.nn.functional.softplus(logits.double()))
        assert torch.allclose(fn.log_prob(torch.full_like(logits, x)).double(), exact, atol=1e-6)
    assert lik.support == "binary"


def test_support_checks_name_the_problem():
    lik = make_likelihood("bernoulli", MLP(2, [4], 3), 3)
    with pytest.raises(ValueError, match="binary data only.*binarize"):
        lik.check(torch.tensor([[0.0, 0.5, 1.0]]))
    lik.check(torch.tensor([[0.0, 0.5, 1.0]]), support="unit")
    cb = make_likelihood("continuous-bernoulli", MLP(2, [4], 3), 3)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        cb.check(torch.tensor([[-0.1, 0.5, 1.0]]))
    make_likelihood("gaussian", MLP(2, [4], 3), 3).check(torch.tensor([[-5.0, 3.0, 1.0]]))
    with pytest.raises(ValueError, match="unknown likelihood"):
        make_likelihood("poisson", MLP(2, [4], 3), 3)




def test_support_checks_find_nan_and_inf_and_grey_values():
    from ppvae.pieces import check_support

    x = torch.zeros(4, 5)
    x[2, 3] = float("nan")
    with pytest.raises(ValueError, match=r"1 NaN or infinite values \(first at index \(2, 3\)\)"):
        check_support(x, "real", "the data")
    x[2, 3] = float("inf")
    with pytest.raises(ValueError, match="infinite"):
        check_support(x, "binary")
    check_support(torch.tensor([0.0, 1.0, 1.0]), "binary")
    with pytest.raises(ValueError, match="binary data only"):
        check_support(torch.tensor([0.0, 1.0, 0.999]), "binary")
    with pytest.raises(ValueError, match="unknown support"):
        check_support(x, "integer")


def test_detached_distribution_keeps_values_and_drops_the_graph():
    from ppvae.pieces import detach_distribution

    loc = torch.zeros(3, requires_grad=True)
    q = torch.distributions.Normal(loc, 2.0)
    import pyro.distributions as dist

    fn = detach_distribution(dist.Normal(loc, torch.full((3,), 2.0)).to_event(1))
    assert fn.event_shape == (3,) and not fn.base_dist.loc.requires_grad
    z = torch.ones(3, requires_grad=True)
    assert torch.allclose(fn.log_prob(z), q.log_prob(z).sum())
    fn.log_prob(z).backward()
    assert loc.grad is None and z.grad is not None


def test_the_gaussian_mixture_prior_is_its_formula_and_draws_its_petals():
    import math

    from ppvae.pieces import GaussianMixturePrior

    prior = GaussianMixturePrior(components=4, radius=3.0, radial_scale=0.8, tangential_scale=0.2)
    z = torch.tensor([[3.0, 0.0], [0.0, 3.1], [1.0, 1.0]])
    parts = []
    for k in range(4):
        a = 2 * math.pi * k / 4
        r = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
        cov = r @ torch.diag(torch.tensor([0.64, 0.04])) @ r.T
        parts.append(torch.distributions.MultivariateNormal(3 * r[:, 0], cov).log_prob(z))
    expected = torch.logsumexp(torch.stack(parts), 0) - math.log(4)
    torch.testing.assert_close(prior().log_prob(z), expected)
    torch.manual_seed(0)
    draws = prior.sample(20000)
    nearest = torch.cdist(draws, prior.component_means()).argmin(1)
    assert torch.bincount(nearest).min() > 4500  # equal weights
    along = draws[nearest == 0]  # the petal on the x axis: radial sd 0.8, tangential 0.2
    assert abs(float(along[:, 0].std()) - 0.8) < 0.05 and abs(float(along[:, 1].std()) - 0.2) < 0.02


def test_the_swiss_roll_is_known_by_its_draws_only():
    import pyro.distributions as dist

    from ppvae.pieces import StandardNormalPrior, SwissRollPrior

    roll = SwissRollPrior(radius=4.0, turns=1.5, noise=0.0)
    torch.manual_seed(0)
    z = roll.sample(5000)
    radius = z.norm(dim=1)
    assert float(radius.max()) <= 4.0 + 1e-5 and z.shape == (5000, 2)
    # on the spiral: the direction is the angle a = radius / 4 * 2 pi * 1.5
    a = radius / 4.0 * 2 * torch.pi * 1.5
    torch.testing.assert_close(z, radius[:, None] * torch.stack([a.cos(), a.sin()], -1),
                               atol=1e-4, rtol=0)
    assert isinstance(roll(), dist.ImproperUniform)
    assert StandardNormalPrior(3).sample(7).shape == (7, 3)
    with pytest.raises(ValueError):
        SwissRollPrior(turns=0)


def test_priors_by_name():
    from ppvae.pieces import GaussianMixturePrior, make_prior

    assert isinstance(make_prior("mixture", 2), GaussianMixturePrior)
    assert make_prior("normal", 5).sample(3).shape == (3, 5)
    with pytest.raises(ValueError, match="unknown prior"):
        make_prior("cauchy", 2)
    with pytest.raises(ValueError, match="2-d"):
        make_prior("swiss-roll", 3)


def test_the_learned_mixture_prior_is_its_formula_and_learns():
    from ppvae.pieces import LearnedMixturePrior

    torch.manual_seed(0)
    prior = LearnedMixturePrior(3, components=4)
    with torch.no_grad():
        prior.logits.copy_(torch.tensor([0.0, 1.0, -1.0, 0.5]))
    z = torch.randn(6, 3)
    weights = prior.logits.softmax(0)
    scale = torch.nn.functional.softplus(prior.raw_scale) + 1e-5
    densities = torch.distributions.Normal(prior.loc, scale).log_prob(z[:, None]).sum(-1).exp()
    torch.testing.assert_close(prior().log_prob(z), (densities * weights).sum(-1).log())
    torch.testing.assert_close(scale, torch.ones(4, 3), atol=1e-4, rtol=0)
    prior().log_prob(z).sum().backward()
    assert all(p.grad is not None for p in prior.parameters())
    assert prior.sample(5).shape == (5, 3)
    with pytest.raises(ValueError, match="at least 1 component"):
        LearnedMixturePrior(3, components=0)


def test_the_vamp_prior_is_the_mean_of_the_posteriors_at_its_pseudo_inputs():
    from ppvae.pieces import VampPrior

    torch.manual_seed(0)
    encoder = DiagonalGaussian(MLP(64, (16,), 6), 3)
    prior = VampPrior(encoder, 64, components=5)
    assert [name for name, _ in prior.named_parameters()] == ["pseudo_inputs"]
    with torch.no_grad():
        prior.pseudo_inputs.uniform_(-0.5, 1.5)  # hardtanh clips to [0, 1]
    z = torch.randn(7, 3)
    u = prior.pseudo_inputs.clamp(0, 1)
    want = torch.stack([encoder(u[k:k + 1]).log_prob(z) for k in range(5)], -1)
    torch.testing.assert_close(prior().log_prob(z), want.logsumexp(-1) - math.log(5))
    prior().log_prob(z).sum().backward()  # the prior trains the encoder too
    assert prior.pseudo_inputs.grad is not None
    assert all(p.grad is not None for p in encoder.parameters())
    assert prior.sample(4).shape == (4, 3)


def test_the_fast_gaussian_mixture_is_pyros_mixture():
    import pyro.distributions as dist

    from ppvae.pieces import DiagonalGaussianMixture

    torch.manual_seed(0)
    logits, loc = torch.randn(7), torch.randn(7, 4)
    scale = torch.rand(7, 4) * 0.5 + torch.tensor([1e-3, 0.01, 0.1, 1.0])  # some very narrow
    loc.requires_grad_()
    fast = DiagonalGaussianMixture(logits, loc, scale)
    slow = dist.MixtureSameFamily(dist.Categorical(logits=logits),
                                  dist.Normal(loc, scale).to_event(1))
    z = torch.cat([loc[:3].detach() + 1e-3 * torch.randn(3, 4), 3 * torch.randn(5, 4)])
    z = z.reshape(2, 4, 4)  # any leading shape
    torch.testing.assert_close(fast.log_prob(z), slow.log_prob(z), rtol=1e-5, atol=1e-4)
    grad_fast, = torch.autograd.grad(fast.log_prob(z).sum(), loc)
    grad_slow, = torch.autograd.grad(slow.log_prob(z).sum(), loc)
    torch.testing.assert_close(grad_fast, grad_slow, rtol=1e-4, atol=1e-3)
    torch.manual_seed(1)
    draws = DiagonalGaussianMixture(torch.tensor([0.0, 1.0]), torch.tensor([[-5.0], [5.0]]),
                                    torch.tensor([[0.1], [0.1]])).sample((4000,))
    assert draws.shape == (4000, 1)
    share = float((draws > 0).double().mean())
    assert abs(share - torch.sigmoid(torch.tensor(1.0)).item()) < 0.03  # the weights
    with pytest.raises(ValueError, match="logits"):
        DiagonalGaussianMixture(torch.zeros(3), torch.zeros(2, 4), torch.ones(2, 4))
