import pytest
import torch

from ppvae.nn import MLP
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


def test_bernoulli_log_prob_matches_formula():
    lik = BernoulliLikelihood(MLP(2, [8], 4))
    z, x = torch.randn(3, 2), torch.bernoulli(torch.full((3, 4), 0.5))
    logits = lik.net(z)
    expected = (x * torch.nn.functional.logsigmoid(logits)
                + (1 - x) * torch.nn.functional.logsigmoid(-logits)).sum(-1)
    assert torch.allclose(lik(z).log_prob(x), expected, atol=1e-6)


def test_binary_bernoulli_is_exact_up_to_the_floor_at_extreme_logits():
    from ppvae.pieces.likelihoods import BinaryBernoulli

    logits = torch.tensor([-300.0, -60.0, -25.0, -20.0, -3.0, 0.0, 3.0, 20.0, 25.0, 60.0, 300.0])
    for x in (torch.zeros_like(logits), torch.ones_like(logits)):
        exact = torch.distributions.Bernoulli(logits=logits.double()).log_prob(x.double())
        ours = BinaryBernoulli(logits=logits).log_prob(x)
        assert torch.isfinite(ours).all()
        assert ((ours.double() - exact).abs() <= 2.1e-9 + 1.2e-7 * exact.abs()).all()
        # gradients through the density agree too (the floor only zeroes ~1e-9 ones)
        lg = logits.clone().requires_grad_()
        BinaryBernoulli(logits=lg).log_prob(x).sum().backward()
        assert torch.allclose(lg.grad, x - torch.sigmoid(logits), atol=2.1e-9)


@pytest.mark.parametrize("size", [784, 37, 5])  # whole blocks of 8, a remainder, no block
def test_bernoulli_image_density_without_gradients_matches_the_exact_sum(size):
    """Evaluation sums an image's pixels by products of sigmoid(|l|) over
    blocks: the exact log density up to float32 rounding, at any logit scale
    (trained decoders' confident logits included) and with broadcasting of
    the data over particles."""
    from ppvae.pieces.likelihoods import BernoulliImage, BinaryBernoulli

    torch.manual_seed(0)
    x = torch.bernoulli(torch.full((6, size), 0.3))
    for scale in (0.5, 4.0, 40.0, 400.0):
        logits = torch.randn(20, 6, size) * scale
        exact = torch.distributions.Bernoulli(logits=logits.double()).log_prob(x.double()).sum(-1)
        with torch.no_grad():
            ours = BernoulliImage(BinaryBernoulli(logits=logits), 1).log_prob(x)
        assert ours.shape == (20, 6) and ours.dtype == torch.float32
        # float32: about 1e-7 of the magnitude, plus 6e-8 nats a pixel where
        # sigmoid(|l|) rounds to 1
        assert ((ours.double() - exact).abs() <= 3e-7 * exact.abs() + 6e-8 * size + 1e-6).all()


@pytest.mark.parametrize("scale", [0.3, 3.0, 30.0])
def test_bernoulli_density_through_the_linear_head_matches_the_exact_sum(scale):
    """Without gradients, a Bernoulli likelihood on an MLP scores the data
    through the last hidden layer (s . l = h . (W^T s) + b . s): the exact
    log density up to float32 rounding of the products' terms, for
    particles of latents broadcast against a batch of images, with and
    without a context; with gradients, the head is not used."""
    from ppvae.pieces.likelihoods import BernoulliImage, BinaryBernoulli

    torch.manual_seed(0)
    for context in (None, torch.randn(5, 1, 1, 3)):
        net = MLP(4, [16, 12], 37, context_features=0 if context is None else 3,
                  activation_name="tanh")
        for p in net.parameters():
            p.data *= scale
        lik = make_likelihood("bernoulli", net, 37)
        z = torch.randn(20, 6, 4)
        x = torch.bernoulli(torch.full((6, 37), 0.3))
        with torch.no_grad():
            image = lik(z, context)
            assert image._linear_head is not None
            ours = image.log_prob(x)
        # exact: in float64, from the same float32 h, W and b
        hidden, weight, bias = (t.double() for t in image._linear_head)
        logits = hidden @ weight.T + bias
        exact = torch.distributions.Bernoulli(logits=logits).log_prob(x.double()).sum(-1)
        assert ours.shape == exact.shape and ours.dtype == torch.float32
        # float32 rounding (about 1e-7) of the products' terms and of the
        # result, plus 6e-8 nats a pixel where sigmoid(|l|) rounds to 1
        terms = (hidden.abs() @ weight.abs().T + bias.abs()).sum(-1)
        bound = 3e-7 * (terms + exact.abs()) + 6e-8 * 37 + 1e-6
        assert ((ours.double() - exact).abs() <= bound).all()
        # the same as the density without the head, on the same logits
        plain = BernoulliImage(BinaryBernoulli(logits=image.base_dist.logits), 1).log_prob(x)
        assert ((ours - plain).abs() <= bound.float()).all()
    # training (gradients on) builds the image without the head; expanded to
    # its own shape (as by Pyro's plates) it keeps it, to another it forgets it
    c = context[0, 0, 0]
    assert lik(torch.randn(6, 4), c)._linear_head is None
    with torch.no_grad():
        image = lik(torch.randn(1, 4), c)
        assert image.expand((1,))._linear_head is not None
        assert image.expand((6,))._linear_head is None


def test_bernoulli_image_with_gradients_is_the_per_pixel_density_summed():
    from ppvae.pieces.likelihoods import BernoulliImage, BinaryBernoulli

    logits = (torch.randn(4, 30) * 5).requires_grad_()
    x = torch.bernoulli(torch.full((4, 30), 0.5))
    image = BernoulliImage(BinaryBernoulli(logits=logits), 1)
    value = image.log_prob(x)
    (grad,) = torch.autograd.grad(value.sum(), logits)
    assert torch.allclose(value, BinaryBernoulli(logits=logits).log_prob(x).sum(-1))
    assert torch.allclose(grad, x - torch.sigmoid(logits), atol=1e-6)
    assert isinstance(image.expand((2, 4)), BernoulliImage)
    # grey levels are refused where validation is on
    with pytest.raises(ValueError), torch.no_grad():
        BernoulliImage(BinaryBernoulli(logits=logits.detach(), validate_args=True), 1).log_prob(
            torch.full((4, 30), 0.5))


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




@pytest.mark.parametrize("whole,more", [(0, 5), (1, 0), (1, 3), (3, 0)])  # chunks, values
def test_scan_values_finds_extremes_and_binary_data_in_every_chunk(whole, more):
    from ppvae.pieces.likelihoods import _SCAN_CHUNK, scan_values

    size = whole * _SCAN_CHUNK + more
    torch.manual_seed(0)
    x = (torch.rand(size) < 0.3).float()
    assert scan_values(x, binary=True) == (0.0, 1.0, True)
    assert scan_values(x, binary=False) == (0.0, 1.0, None)
    for position in (0, size - 1):  # first and last chunk
        for value, expected in ((0.25, (0.0, 1.0, False)), (1e-30, (0.0, 1.0, False)),
                                (2.0, (0.0, 2.0, False)), (-1.0, (-1.0, 1.0, False))):
            y = x.clone()
            y[position] = value
            assert scan_values(y, binary=True) == expected
        y = x.clone()
        y[position] = float("nan")
        lo, hi, binary = scan_values(y, binary=True)
        assert lo != lo and hi != hi and binary is False  # NaN extremes


def test_scan_values_is_not_fooled_by_terms_that_cancel():
    from ppvae.pieces.likelihoods import scan_values

    # x (1 - x) is -2 at -1 and 0.25 at 0.5: eight 0.5s and one -1 sum to zero,
    # yet the data are not binary (the extremes rule them out)
    x = torch.tensor([-1.0] + [0.5] * 8 + [0.0, 1.0])
    assert float(torch.dot(x, 1 - x)) == 0.0
    assert scan_values(x, binary=True) == (-1.0, 1.0, False)
def test_standard_normal_scores_as_the_general_normal():
    from ppvae.pieces.priors import StandardNormal

    z = torch.randn(5, 3, dtype=torch.float64)
    ours = StandardNormal(torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64))
    general = torch.distributions.Normal(0.0, 1.0)
    assert torch.allclose(ours.log_prob(z), general.log_prob(z), rtol=1e-12)
    # a value smaller than the batch shape broadcasts as the general Normal does
    wide = StandardNormal(torch.zeros(4, 3), torch.ones(4, 3))
    assert wide.log_prob(torch.zeros(3)).shape == (4, 3)


def test_reparameterized_normal_scores_its_own_draws_with_the_same_values_and_gradients():
    from ppvae.pieces.posteriors import ReparameterizedNormal

    loc = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    raw = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    results = []
    for cls in (ReparameterizedNormal, torch.distributions.Normal):
        torch.manual_seed(3)
        q = cls(loc * 2, raw.exp())
        z = q.rsample((2,))
        log_q = q.log_prob(z)
        (grad_loc, grad_raw) = torch.autograd.grad((log_q * torch.arange(48.0).reshape(2, 6, 4)
                                                    .double()).sum() + z.sum(), (loc, raw))
        results.append((z.detach(), log_q.detach(), grad_loc, grad_raw))
    for ours, general in zip(*results):  # same draw, same log q, same total gradients
        assert torch.allclose(ours, general, rtol=1e-10, atol=1e-12)
    # any other value, even an equal copy of the draw, is scored by the general formula
    q = ReparameterizedNormal(torch.zeros(3), torch.ones(3))
    z = q.rsample()
    other = torch.randn(3)
    assert torch.allclose(q.log_prob(other), torch.distributions.Normal(0.0, 1.0).log_prob(other))
    copy = z.clone().requires_grad_()
    q.log_prob(copy).sum().backward()
    assert torch.allclose(copy.grad, -z)  # d/dz log N(z; 0, 1), the partial derivative


def test_binary_bernoulli_gradients_with_respect_to_logits_match_torch():
    from ppvae.pieces.likelihoods import BinaryBernoulli

    logits = (torch.randn(50, 30, dtype=torch.float64) * 8).requires_grad_()
    x = torch.bernoulli(torch.full((50, 30), 0.4, dtype=torch.float64))
    weight = torch.rand(50, 30, dtype=torch.float64)
    (ours,) = torch.autograd.grad((BinaryBernoulli(logits=logits).log_prob(x) * weight).sum(),
                                  logits)
    (exact,) = torch.autograd.grad(
        (torch.distributions.Bernoulli(logits=logits).log_prob(x) * weight).sum(), logits)
    assert torch.allclose(ours, exact, rtol=1e-9, atol=2.1e-9)


def test_distributions_expanded_to_their_own_shape_stay_themselves():
    """Pyro's plates expand every site to the plate's shape; our distributions
    skip the copy (and its autograd views) when the shape is already right,
    and expand to any other shape as torch does."""
    from ppvae.pieces.likelihoods import BinaryBernoulli
    from ppvae.pieces.posteriors import ReparameterizedNormal

    loc = torch.zeros(5, 3, requires_grad=True)
    for d in (ReparameterizedNormal(loc, torch.ones(5, 3)),
              BinaryBernoulli(logits=torch.zeros(5, 3))):
        assert d.expand((5, 3)) is d
        wider = d.expand((2, 5, 3))
        assert type(wider) is type(d) and wider.batch_shape == (2, 5, 3)
        value = torch.ones(2, 5, 3)
        assert torch.allclose(wider.log_prob(value), d.log_prob(value[0]).expand(2, 5, 3))
    guide_site = ReparameterizedNormal(loc, torch.ones(5, 3)).to_event(1)
    assert guide_site.expand((5,)).base_dist is guide_site.base_dist
