import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO

import ppvae
from ppvae.infer import IWAE, make_objective
from ppvae.models import VAE, LinearGaussian


@pytest.fixture
def ppca():
    torch.manual_seed(0)
    model = LinearGaussian(4, 2, sigma=0.7)
    x = torch.randn(8, 4)
    return model, x


def test_value_equals_hand_computation(ppca):
    model, x = ppca
    k = 7
    pyro.set_rng_seed(3)
    value = IWAE(k).loss(model.model, model.guide, x)
    pyro.set_rng_seed(3)
    with torch.no_grad():
        q = model.encoder(x)
        z = q.rsample((k,))  # (K, N, L)
        log_w = (model.likelihood(z).log_prob(x) + model.prior().log_prob(z) - q.log_prob(z))
        expected = -(torch.logsumexp(log_w, 0) - math.log(k)).sum()
    assert value == pytest.approx(expected.item(), rel=1e-6)


def test_one_particle_equals_the_elbo(ppca):
    model, x = ppca
    pyro.set_rng_seed(1)
    iwae = IWAE(1).loss(model.model, model.guide, x)
    pyro.set_rng_seed(1)
    elbo = Trace_ELBO().loss(model.model, model.guide, x)
    assert iwae == pytest.approx(elbo, rel=1e-6)


def test_agrees_with_pyro_renyi_elbo_when_all_sites_are_local(ppca):
    """Pyro's RenyiELBO(alpha=0) keeps the data plate (shared by all sites), so on
    the same draws it must give the same per-datapoint bound."""
    model, x = ppca
    renyi = pyro.infer.RenyiELBO(alpha=0, num_particles=20, vectorize_particles=True,
                                 max_plate_nesting=1)
    pyro.set_rng_seed(2)
    ours = IWAE(20).loss(model.model, model.guide, x)
    pyro.set_rng_seed(2)
    assert ours == pytest.approx(renyi.loss(model.model, model.guide, x), rel=1e-6)


def grads(model, x, loss_fn, seed):
    model.zero_grad()
    pyro.set_rng_seed(seed)
    loss_fn.differentiable_loss(model.model, model.guide, x).backward()
    return ({n: p.grad.clone() for n, p in model.named_parameters() if n.startswith("encoder")},
            {n: p.grad.clone() for n, p in model.named_parameters() if n.startswith("likelihood")})


def test_dreg_agrees_with_standard_gradient_in_expectation(ppca):
    model, x = ppca
    model.set_guide_to_posterior(inflate=1.3)  # near the posterior, where DReG shines
    iwae, dreg = IWAE(5), IWAE(5, dreg=True)
    guide_std, guide_dreg = [], []
    for seed in range(400):
        g_std, m_std = grads(model, x, iwae, seed)
        g_dreg, m_dreg = grads(model, x, dreg, seed)
        for name in m_std:  # model gradients: the same estimator on the same draws
            scale = m_std[name].abs().max()
            assert torch.allclose(m_std[name], m_dreg[name], rtol=1e-4, atol=1e-5 * scale)
        guide_std.append(torch.cat([g.flatten() for g in g_std.values()]))
        guide_dreg.append(torch.cat([g.flatten() for g in g_dreg.values()]))
    std, dr = torch.stack(guide_std), torch.stack(guide_dreg)
    se = (std.var(0) / len(std) + dr.var(0) / len(dr)).sqrt()
    z = (std.mean(0) - dr.mean(0)) / se
    assert z.abs().max() < 4.5, z
    assert dr.var(0).sum() < std.var(0).sum()  # the point of DReG: lower variance


def test_value_is_the_same_with_and_without_dreg(ppca):
    model, x = ppca
    pyro.set_rng_seed(4)
    a = IWAE(6).differentiable_loss(model.model, model.guide, x)
    pyro.set_rng_seed(4)
    b = IWAE(6, dreg=True).differentiable_loss(model.model, model.guide, x)
    assert a.item() == pytest.approx(b.item(), rel=1e-6)


def test_works_with_pyro_svi(binary_batch):
    vae = VAE(latent_dim=2, hidden=(32,))
    svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-2}), IWAE(5, dreg=True))
    losses = [svi.step(binary_batch) for _ in range(60)]
    assert sum(losses[-10:]) < sum(losses[:10])


def test_fit_with_iwae_objective():
    from ppvae.data import load_dataset

    data = load_dataset("digits", binarize="dynamic")
    vae = VAE(latent_dim=4, hidden=(64,))
    history = ppvae.fit(vae, data, epochs=3, objective="iwae", num_particles=5, dreg=True,
                        lr=3e-3, progress=False)
    assert history.val_elbo[-1] > history.val_elbo[0]
    with pytest.raises(ValueError, match="beta"):
        ppvae.fit(VAE(beta=2.0), data, epochs=1, objective="iwae", progress=False)


def test_objective_names():
    assert isinstance(make_objective("iwae", 3), IWAE)
    with pytest.raises(ValueError, match="unknown objective"):
        make_objective("vimco")
    with pytest.raises(ValueError, match="dreg"):
        make_objective("elbo", dreg=True)


def test_enumerated_discrete_latent_is_summed_not_refused(binary_batch):
    from ppvae.models import SSVAE

    m = SSVAE((1, 8, 8), num_classes=3, latent_dim=2, hidden=(16,))
    pyro.set_rng_seed(0)
    value = IWAE(4).loss(m.model, m.guide, binary_batch[:5])
    assert math.isfinite(value)
    with pytest.raises(NotImplementedError, match="DReG"):
        IWAE(4, dreg=True).differentiable_loss(m.model, m.guide, binary_batch[:5])


def two_layer_model(x):
    """z2 ~ N(0, I), z1 ~ N(W z2, I), x ~ N(V z1, 0.5^2 I): a two-layer Gaussian model."""
    w = pyro.param("w", torch.tensor([[0.8, -0.3], [0.2, 0.5]]))
    v = pyro.param("v", torch.linspace(-1.0, 1.0, 8).reshape(4, 2))
    with pyro.plate("data", len(x)):
        z2 = pyro.sample("z2", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        z1 = pyro.sample("z1", dist.Normal(z2 @ w.T, 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z1 @ v.T, 0.5).to_event(1), obs=x)


def guide_z2_given_z1(x):
    """q(z1 | x) q(z2 | z1): z2's distribution depends on z1's value."""
    a = pyro.param("a", 0.3 * torch.ones(2, 4))
    b = pyro.param("b", torch.tensor([[0.5, 0.1], [-0.2, 0.4]]))
    with pyro.plate("data", len(x)):
        z1 = pyro.sample("z1", dist.Normal(x @ a.T, 0.7).to_event(1))
        pyro.sample("z2", dist.Normal(z1 @ b.T, 0.8).to_event(1))


def guide_z2_given_x(x):
    """q(z1 | x) q(z2 | x): two sites, neither depending on the other."""
    a = pyro.param("a", 0.3 * torch.ones(2, 4))
    c = pyro.param("c", 0.1 * torch.ones(2, 4))
    with pyro.plate("data", len(x)):
        pyro.sample("z1", dist.Normal(x @ a.T, 0.7).to_event(1))
        pyro.sample("z2", dist.Normal(x @ c.T, 0.8).to_event(1))


def test_dreg_refuses_a_guide_whose_latents_depend_on_each_other():
    """Holding q's parameters fixed would also cut z1's path into q(z2 | z1):
    a biased gradient, so such a guide is refused with a clear error."""
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="'z2' depends on 'z1'"):
        IWAE(5, dreg=True).differentiable_loss(two_layer_model, guide_z2_given_z1, x)
    assert math.isfinite(IWAE(5).differentiable_loss(two_layer_model, guide_z2_given_z1, x).item())
    assert math.isfinite(IWAE(5, dreg=True).loss(two_layer_model, guide_z2_given_z1, x))


def test_dreg_agrees_with_standard_gradient_in_expectation_with_two_independent_sites():
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    names = ("a", "c")
    rows = {False: [], True: []}
    for seed in range(300):
        for dreg in (False, True):
            pyro.clear_param_store()
            pyro.set_rng_seed(seed)
            loss = IWAE(5, dreg=dreg).differentiable_loss(two_layer_model, guide_z2_given_x, x)
            params = [pyro.param(n).unconstrained() for n in names]
            grads = torch.autograd.grad(loss, params)
            rows[dreg].append(torch.cat([g.flatten() for g in grads]))
    std, dr = torch.stack(rows[False]), torch.stack(rows[True])
    se = (std.var(0) / len(std) + dr.var(0) / len(dr)).sqrt()
    assert ((std.mean(0) - dr.mean(0)) / se).abs().max() < 4.5
    assert dr.var(0).sum() < std.var(0).sum()
