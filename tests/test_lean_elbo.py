"""Tests for :mod:`ppvae.infer.lean_elbo`: the lean path gives Trace_ELBO's
loss and gradients on the same random state, and defers to Trace_ELBO where
it would not."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO

from ppvae.infer import lean_elbo
from ppvae.infer.lean_elbo import LeanTrace_ELBO, lean_elbo_loss
from ppvae.models import VAE, LinearGaussian


def loss_and_grads(loss_fn, params, seed, *args, **kwargs):
    for p in params:
        p.grad = None
    pyro.set_rng_seed(seed)
    loss = loss_fn(*args, **kwargs)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in params]


def assert_same_as_trace_elbo(model, guide, params, *args, **kwargs):
    for seed in range(3):
        ref, ref_grads = loss_and_grads(Trace_ELBO().differentiable_loss, params, seed,
                                        model, guide, *args, **kwargs)
        lean, lean_grads = loss_and_grads(lean_elbo_loss, params, seed, model, guide,
                                          *args, **kwargs)
        assert torch.allclose(lean, ref, rtol=1e-6), (lean, ref)
        for a, b in zip(lean_grads, ref_grads):
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)


def test_same_loss_and_gradients_as_trace_elbo_on_a_beta_vae(binary_batch):
    vae = VAE(64, latent_dim=3, hidden=(16,), beta=0.5)
    assert_same_as_trace_elbo(vae.model, vae.guide, list(vae.parameters()), binary_batch)
    assert_same_as_trace_elbo(vae.model, vae.guide, list(vae.parameters()), binary_batch,
                              beta=2.0)


def test_same_on_the_linear_gaussian_model():
    torch.manual_seed(0)
    lg = LinearGaussian(5, latent_dim=2)
    x = torch.randn(7, 5)
    assert_same_as_trace_elbo(lg.model, lg.guide, list(lg.parameters()), x)


def test_same_on_a_user_model_with_nested_plates_masks_and_scales():
    loc = torch.nn.Parameter(torch.zeros(3))
    log_scale = torch.nn.Parameter(torch.zeros(4, 3))

    def model(x, mask):
        with pyro.plate("data", x.shape[0], dim=-2):
            with pyro.plate("features", 3, dim=-1):
                z = pyro.sample("z", dist.Normal(0.0, 1.0))
                with poutine.scale(scale=0.3), poutine.mask(mask=mask):
                    pyro.sample("x", dist.Normal(z + loc, 1.0), obs=x)
            pyro.factor("penalty", -(z**2).sum(-1, keepdim=True))

    def guide(x, mask):
        with pyro.plate("data", x.shape[0], dim=-2):
            with pyro.plate("features", 3, dim=-1):
                pyro.sample("z", dist.Normal(x * 0.5, log_scale.exp()))

    x = torch.randn(4, 3)
    mask = torch.tensor([[True, False, True]] * 4)
    assert_same_as_trace_elbo(model, guide, [loc, log_scale], x, mask)


@pytest.fixture
def lean_calls(monkeypatch):
    calls = []

    def counting(*args, **kwargs):
        calls.append(1)
        return lean_elbo_loss(*args, **kwargs)

    monkeypatch.setattr(lean_elbo, "lean_elbo_loss", counting)
    return calls


def test_takes_the_lean_path_only_after_checking_agreement(binary_batch, lean_calls):
    vae = VAE(64, latent_dim=3, hidden=(16,))
    elbo = LeanTrace_ELBO()
    with pyro.validation_enabled(True):
        elbo.differentiable_loss(vae.model, vae.guide, binary_batch)
    assert lean_calls == [] and elbo._agrees == {}  # validation runs Trace_ELBO itself
    with pyro.validation_enabled(False):
        elbo.differentiable_loss(vae.model, vae.guide, binary_batch)
        elbo.differentiable_loss(vae.model, vae.guide, binary_batch)
    # one agreement check on the first call, then the lean path on both calls
    assert len(lean_calls) == 3 and elbo._agrees == {(vae.model, vae.guide): True}


def test_defers_to_trace_elbo_for_discrete_guides_and_several_particles(lean_calls):
    probs = torch.nn.Parameter(torch.tensor(0.3))

    def model(x):
        with pyro.plate("data", len(x)):
            c = pyro.sample("c", dist.Bernoulli(0.5))
            pyro.sample("x", dist.Normal(c, 1.0), obs=x)

    def guide(x):
        with pyro.plate("data", len(x)):
            pyro.sample("c", dist.Bernoulli(probs.clamp(0.01, 0.99)))

    x = torch.randn(5)
    elbo = LeanTrace_ELBO()
    with pyro.validation_enabled(False):
        elbo.differentiable_loss(model, guide, x).backward()
        elbo.differentiable_loss(model, guide, x)
    assert elbo._agrees == {(model, guide): False}
    assert lean_calls == [1]  # the agreement check tried it once, then never again
    assert probs.grad is not None  # Trace_ELBO's score-function gradient
    vae = VAE(4, latent_dim=2, hidden=(4,))
    several = LeanTrace_ELBO(num_particles=3, vectorize_particles=True, max_plate_nesting=1)
    with pyro.validation_enabled(False):
        several.differentiable_loss(vae.model, vae.guide, torch.ones(2, 4))
    assert lean_calls == [1] and several._agrees == {}
