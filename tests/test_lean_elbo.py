"""Tests for :mod:`ppvae.infer.lean_elbo`: the lean path gives Trace_ELBO's
loss and gradients on the same random state, and defers to Trace_ELBO where
it would not."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO

from ppvae.infer import lean_elbo, replay
from ppvae.infer.lean_elbo import LeanTrace_ELBO, lean_elbo_loss
from ppvae.models import CVAE, VAE, LinearGaussian


def loss_and_grads(loss_fn, params, seed, *args, **kwargs):
    for p in params:
        p.grad = None
    pyro.set_rng_seed(seed)
    loss = loss_fn(*args, **kwargs)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in params]


def assert_same_as_trace_elbo(model, guide, params, *args, loss_fn=lean_elbo_loss,
                              seeds=range(3), **kwargs):
    """``loss_fn`` gives Trace_ELBO's loss and gradients on the same draws."""
    for seed in seeds:
        ref, ref_grads = loss_and_grads(Trace_ELBO().differentiable_loss, params, seed,
                                        model, guide, *args, **kwargs)
        ours, our_grads = loss_and_grads(loss_fn, params, seed, model, guide, *args, **kwargs)
        assert torch.allclose(ours, ref, rtol=1e-6), (seed, ours, ref)
        for a, b in zip(our_grads, ref_grads):
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)


def run_steps(elbo, model, guide, *args, times=3):
    """``times`` calls without Pyro's validation: enough to record and replay."""
    with pyro.validation_enabled(False):
        for _ in range(times):
            elbo.differentiable_loss(model, guide, *args)


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
    elbo = LeanTrace_ELBO(replay=False)
    with pyro.validation_enabled(True):
        elbo.differentiable_loss(vae.model, vae.guide, binary_batch)
        # validation runs Trace_ELBO itself, checking the lean path on the way
        assert lean_calls == [1] and elbo._agrees == {(vae.model, vae.guide): True}
        elbo.differentiable_loss(vae.model, vae.guide, binary_batch)
        assert lean_calls == [1]  # checked once
    with pyro.validation_enabled(False):
        elbo.differentiable_loss(vae.model, vae.guide, binary_batch)
        elbo.differentiable_loss(vae.model, vae.guide, binary_batch)
    assert len(lean_calls) == 3  # no second check: the lean path on both calls
    fresh = LeanTrace_ELBO(replay=False)
    with pyro.validation_enabled(False):
        fresh.differentiable_loss(vae.model, vae.guide, binary_batch)
    # without validation, the check runs on the first call (and the lean path after it)
    assert len(lean_calls) == 5 and fresh._agrees == {(vae.model, vae.guide): True}


def test_a_validated_call_gives_trace_elbos_loss_and_gradients(binary_batch):
    """The check made on a validated call draws from a copy of the random
    state: the loss, gradients and the stream after it are Trace_ELBO's."""
    vae = VAE(64, latent_dim=3, hidden=(16,))
    params = list(vae.parameters())
    with pyro.validation_enabled(True):
        for seed in range(2):
            elbo = LeanTrace_ELBO()
            ours, our_grads = loss_and_grads(elbo.differentiable_loss, params, seed,
                                             vae.model, vae.guide, binary_batch)
            after = torch.rand(1)
            ref, ref_grads = loss_and_grads(Trace_ELBO().differentiable_loss, params, seed,
                                            vae.model, vae.guide, binary_batch)
            assert torch.equal(ours, ref) and torch.equal(after, torch.rand(1))
            assert all(torch.equal(a, b) for a, b in zip(our_grads, ref_grads))
            assert elbo._agrees == {(vae.model, vae.guide): True}


def test_a_pair_that_pyros_checks_reject_gets_pyros_error(binary_batch):
    def model(x):
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(torch.zeros(len(x)), 1.0))
            pyro.sample("x", dist.Normal(z, -1.0), obs=x[:, 0])  # a negative scale

    def guide(x):
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Normal(torch.zeros(len(x)), 1.0))

    with pyro.validation_enabled(True), pytest.raises(ValueError, match="scale"):
        LeanTrace_ELBO().differentiable_loss(model, guide, binary_batch)


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


# ------------------------------------------------------- recorded replay
@pytest.fixture
def replays(monkeypatch):
    calls = []
    real = replay._Recording.__call__

    def counting(self, *args):
        calls.append(1)
        return real(self, *args)

    monkeypatch.setattr(replay._Recording, "__call__", counting)
    return calls


def test_replays_a_recording_with_trace_elbos_loss_and_gradients(binary_batch, replays):
    """Recorded on a signature's second call and replayed from then on: one
    recording for the KL weight 1 (a constant of it) and one for every other
    weight (an input of it, so warm-up does not record at every step)."""
    vae = VAE(64, latent_dim=3, hidden=(16,))
    elbo = LeanTrace_ELBO()
    with pyro.validation_enabled(False):
        for seed, beta in enumerate([1.0, 0.3, 1.0, 0.7, 0.05, 1.0]):
            assert_same_as_trace_elbo(vae.model, vae.guide, list(vae.parameters()), binary_batch,
                                      loss_fn=elbo.differentiable_loss, seeds=[seed], beta=beta)
    recordings = list(elbo._recordings.values())
    assert len(recordings) == 2 and all(isinstance(r, replay._Recording) for r in recordings)
    # per recording: the second call's replay (checked against the run the
    # tracer made) is that call's value, and the third call replays
    assert len(replays) == 2 * 2


def test_replay_leaves_the_random_stream_as_eager_steps_would(binary_batch):
    """A run whose steps are replayed draws the same z as one run eagerly."""
    losses = {}
    for replay in (True, False):
        torch.manual_seed(0)
        vae = VAE(64, latent_dim=3, hidden=(16,))
        elbo = LeanTrace_ELBO(replay=replay)
        pyro.set_rng_seed(1)
        with pyro.validation_enabled(False):
            losses[replay] = torch.stack([elbo.differentiable_loss(vae.model, vae.guide,
                                                                   binary_batch).detach()
                                          for _ in range(4)])
    assert torch.allclose(losses[True], losses[False], rtol=1e-6)
    assert len(set(losses[True].tolist())) == 4  # fresh draws at every step


def test_a_failed_recording_leaves_the_random_stream_as_it_was(binary_batch, monkeypatch):
    """When a recording's replay does not match (here: it draws numbers and
    returns something else), the call runs eagerly on the random state it
    started from."""
    losses = {}
    for broken in (True, False):
        torch.manual_seed(0)
        vae = VAE(64, latent_dim=3, hidden=(16,))
        elbo = LeanTrace_ELBO(replay=broken)
        if broken:
            monkeypatch.setattr(replay._Recording, "__call__",
                                lambda self, *args: torch.randn(100).sum().requires_grad_())
        pyro.set_rng_seed(1)
        with pyro.validation_enabled(False):
            losses[broken] = torch.stack([elbo.differentiable_loss(vae.model, vae.guide,
                                                                   binary_batch).detach()
                                          for _ in range(4)])
        if broken:
            assert list(elbo._recordings.values())[0] is None  # tried once, never again
            monkeypatch.undo()
    assert torch.equal(losses[True], losses[False])


def test_one_off_shapes_and_plain_functions_stay_eager(binary_batch, replays):
    vae = VAE(64, latent_dim=3, hidden=(16,))
    elbo = LeanTrace_ELBO()
    with pyro.validation_enabled(False):
        elbo.differentiable_loss(vae.model, vae.guide, binary_batch)
        elbo.differentiable_loss(vae.model, vae.guide, binary_batch[:5])  # e.g. a last batch
    assert all(isinstance(r, replay._Pending) for r in elbo._recordings.values())
    assert len(elbo._recordings) == 2 and replays == []

    def model(x):  # not a method of a module declaring a static structure
        with pyro.plate("data", len(x)):
            pyro.sample("x", dist.Normal(pyro.sample("z", dist.Normal(0.0, 1.0)), 1.0), obs=x)

    def guide(x):
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Normal(x, 1.0))

    plain = LeanTrace_ELBO()
    run_steps(plain, model, guide, torch.randn(4))
    assert plain._recordings == {} and replays == []


def test_a_replaced_parameter_gets_a_new_recording(binary_batch):
    vae = VAE(64, latent_dim=3, hidden=(16,))
    elbo = LeanTrace_ELBO()
    run_steps(elbo, vae.model, vae.guide, binary_batch)
    last = vae.likelihood.net.layers[-1]
    last.bias = torch.nn.Parameter(torch.full_like(last.bias, 3.0))
    with pyro.validation_enabled(False):
        assert_same_as_trace_elbo(vae.model, vae.guide, list(vae.parameters()), binary_batch,
                                  loss_fn=elbo.differentiable_loss)
    assert sum(isinstance(r, replay._Recording) for r in elbo._recordings.values()) == 2


def test_replays_a_quadrant_cvae_with_its_masks(binary_batch, replays):
    m = CVAE((1, 8, 8), condition="quadrants", quadrants=2, latent_dim=3, hidden=(32,))
    x, c = m.condition_batch(binary_batch, None)
    elbo = LeanTrace_ELBO()
    with pyro.validation_enabled(False):
        assert_same_as_trace_elbo(m.model, m.guide, list(m.parameters()), x, c,
                                  loss_fn=elbo.differentiable_loss, seeds=range(4), beta=0.5)
    assert len(replays) == 3  # calls 2 (the checked replay) to 4


def test_replay_caches_do_not_keep_a_model_alive(binary_batch):
    import gc
    import weakref

    vae = VAE(64, latent_dim=3, hidden=(16,))
    elbo = LeanTrace_ELBO()
    run_steps(elbo, vae.model, vae.guide, binary_batch)
    alive = weakref.ref(vae)
    del vae, elbo
    gc.collect()
    assert alive() is None
