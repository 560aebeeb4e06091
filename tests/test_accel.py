"""The pure-torch twins equal the Pyro path: loss, gradients and log weights
under the same random state, for every likelihood and objective, with one
latent or a chain of two; and they stand in only for the pairs they were
written for."""

import copy
from contextlib import nullcontext

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO

from ppvae import accel
from ppvae.data import mask_quadrants
from ppvae.infer import IWAE, log_likelihood
from ppvae.infer.importance import per_datapoint_log_weights
from ppvae.models import CVAE, VAE, DenoisingVAE, LinearGaussian, TwoLayerVAE
from ppvae.train.plans import twin_objective

LIKELIHOODS = ["bernoulli", "gaussian", "continuous-bernoulli"]


def data_for(likelihood: str, n: int = 12, d: int = 64) -> torch.Tensor:
    gen = torch.Generator().manual_seed(3)
    if likelihood == "bernoulli":
        return torch.bernoulli(torch.full((n, d), 0.3), generator=gen)
    if likelihood == "gaussian":
        return torch.randn(n, d, generator=gen)
    return torch.rand(n, d, generator=gen)


def pairs():
    """(name, model, args, kwargs) for each kind of model with a twin."""
    torch.manual_seed(0)
    out = []
    for likelihood in LIKELIHOODS:
        out.append((f"vae-{likelihood}", VAE((1, 8, 8), latent_dim=3, hidden=(16,),
                                            likelihood=likelihood), (data_for(likelihood),), {}))
    out.append(("vae-beta", VAE((1, 8, 8), latent_dim=3, hidden=(16,), beta=2.5),
                (data_for("bernoulli"),), {"beta": 0.4}))
    out.append(("vae-conv", VAE((1, 8, 8), latent_dim=2, hidden=(16,), network="conv"),
                (data_for("bernoulli", n=5),), {}))
    for prior in ("mog", "vamp"):
        out.append((f"vae-{prior}", VAE((1, 8, 8), latent_dim=3, hidden=(16,), prior=prior,
                                        prior_components=4), (data_for("bernoulli"),), {}))
    out.append(("vae-iaf", VAE((1, 8, 8), latent_dim=3, hidden=(16,), posterior="iaf"),
                (data_for("bernoulli"),), {}))
    x = data_for("bernoulli")
    label = CVAE((1, 8, 8), condition="label", num_classes=4, latent_dim=3, hidden=(16,))
    out.append(("cvae-label", label, (x, label.condition_from(x, torch.arange(12) % 4)), {}))
    quad = CVAE((1, 8, 8), condition="quadrants", quadrants=2, latent_dim=3, hidden=(16,))
    out.append(("cvae-quadrants", quad, (x, mask_quadrants(x, (1, 8, 8), 2)), {}))
    dvae = DenoisingVAE((1, 8, 8), latent_dim=3, hidden=(16,), noise="masking", noise_level=0.3)
    out.append(("dvae-train-mode", dvae.train(), (data_for("bernoulli"),), {}))
    lg = LinearGaussian(6, 2, sigma=0.5)
    out.append(("linear-gaussian", lg, (torch.randn(12, 6),), {}))
    for likelihood in ("bernoulli", "gaussian"):
        out.append((f"vae-2l-{likelihood}",
                    TwoLayerVAE((1, 8, 8), latent_dim=3, top_latent_dim=2, hidden=(16,),
                                top_hidden=(8,), likelihood=likelihood),
                    (data_for(likelihood),), {}))
    out.append(("vae-2l-beta", TwoLayerVAE((1, 8, 8), latent_dim=3, top_latent_dim=2, hidden=(16,),
                                           top_hidden=(8,), beta=2.5),
                (data_for("bernoulli"),), {"beta": 0.4}))
    return out


PAIRS = pairs()
OBJECTIVES = {
    "elbo": lambda: Trace_ELBO(),
    "elbo-3-particles": lambda: Trace_ELBO(num_particles=3, vectorize_particles=True,
                                           max_plate_nesting=1),
    "elbo-analytic": lambda: TraceMeanField_ELBO(),
    "iwae": lambda: IWAE(4),
    "iwae-dreg": lambda: IWAE(4, dreg=True),
}


def loss_and_grads(loss_fn, module):
    module.zero_grad()
    pyro.set_rng_seed(11)
    loss = loss_fn()
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in module.parameters() if p.grad is not None]


def in_float64(module, args):
    """A float64 copy of the module, and the floating-point arguments in float64."""
    return (copy.deepcopy(module).double(),
            tuple(a.double() if torch.is_floating_point(a) else a for a in args))


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
@pytest.mark.parametrize("name, module, args, kwargs", PAIRS, ids=[p[0] for p in PAIRS])
def test_twin_gives_the_pyro_loss_and_gradients(name, module, args, kwargs, objective):
    if objective.startswith("iwae") and "beta" in kwargs:
        pytest.skip("IWAE takes no beta")
    if objective == "iwae-dreg" and name == "vae-iaf":
        pytest.skip("DReG refuses a flow posterior (tests/test_flows.py)")
    if objective == "iwae-dreg" and name.startswith("vae-2l"):
        pytest.skip("DReG refuses a chain (test_dreg_refuses_a_chain_on_either_path)")
    # in float64: in float32 the two paths differ by rounding that the
    # continuous Bernoulli's normalizer, a difference of nearly equal terms
    # near lambda = 1/2, can magnify to percents of a small gradient, by an
    # amount that depends on the CPU's kernels; in float64 the paths agree to
    # about 1e-14, so any difference in the math shows
    module, args = in_float64(module, args)
    pyro_loss = OBJECTIVES[objective]()
    twin = twin_objective(pyro_loss)
    assert twin is not None
    # Pyro computes a chain's per-latent KLs at the drawn parents, and says so
    warns = objective == "elbo-analytic" and name.startswith("vae-2l")
    with pytest.warns(UserWarning, match="mean field") if warns else nullcontext():
        want, want_grads = loss_and_grads(
            lambda: pyro_loss.differentiable_loss(module.model, module.guide, *args, **kwargs),
            module)
    got, got_grads = loss_and_grads(
        lambda: twin(accel.twin_parts(module.model, module.guide, args, kwargs)), module)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    assert len(got_grads) == len(want_grads) > 0
    for g, w in zip(got_grads, want_grads):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name, module, args, kwargs", PAIRS, ids=[p[0] for p in PAIRS])
def test_twin_log_weights_are_the_pyro_log_weights(name, module, args, kwargs):
    with torch.no_grad():
        pyro.set_rng_seed(5)
        want = per_datapoint_log_weights(module.model, module.guide, args, kwargs,
                                         num_particles=7, plate_nesting=1)
        pyro.set_rng_seed(5)
        got = accel.log_weights(accel.twin_parts(module.model, module.guide, args, kwargs), 7)
    assert got.shape == want.shape == (7, len(args[0]))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("name, module, args, kwargs", PAIRS, ids=[p[0] for p in PAIRS])
def test_the_estimators_passes_are_the_pyro_log_weights(name, module, args, kwargs):
    """LogWeights: the batch's q evaluated once, pass after pass, and binary
    images scored through softplus((1 - 2x) l): the same weights."""
    if name == "dvae-train-mode":
        pytest.skip("q is evaluated once per batch: one corruption for all passes, where the "
                    "Pyro path draws one per pass; the estimator scores a denoising VAE in eval "
                    "mode, without corruption (tests/test_denoising.py)")
    parts = accel.twin_parts(module.model, module.guide, args, kwargs)
    weights = accel.LogWeights(parts)
    with torch.no_grad():
        for seed, k in ((5, 7), (6, 1)):
            pyro.set_rng_seed(seed)
            want = per_datapoint_log_weights(module.model, module.guide, args, kwargs,
                                             num_particles=k, plate_nesting=1)
            pyro.set_rng_seed(seed)
            torch.testing.assert_close(weights(k), want, rtol=1e-5, atol=1e-4)


def test_dreg_refuses_a_chain_on_either_path():
    model = TwoLayerVAE((1, 8, 8), latent_dim=3, top_latent_dim=2, hidden=(16,), top_hidden=(8,))
    x = data_for("bernoulli")
    with pytest.raises(ValueError, match="dreg=True needs guide latents"):
        IWAE(4, dreg=True).differentiable_loss(model.model, model.guide, x)
    parts = accel.twin_parts(model.model, model.guide, (x,), {})
    with pytest.raises(ValueError, match="dreg=True needs guide latents"):
        accel.iwae_loss(parts, 4, dreg=True)


def test_grey_data_under_a_bernoulli_are_scored_as_the_pyro_path_does():
    """The softplus form holds for binary data only; other values take the
    cross-entropy (what Pyro's Bernoulli computes), checks off."""
    vae = VAE((1, 8, 8), latent_dim=3, hidden=(16,))
    x = data_for("continuous-bernoulli")
    parts = accel.twin_parts(vae.model, vae.guide, (x,), {})
    assert accel.LogWeights(parts).flip is None
    with torch.no_grad(), pyro.validation_enabled(False):
        pyro.set_rng_seed(1)
        want = per_datapoint_log_weights(vae.model, vae.guide, (x,), {}, num_particles=4,
                                         plate_nesting=1)
        pyro.set_rng_seed(1)
        torch.testing.assert_close(accel.LogWeights(parts)(4), want, rtol=1e-5, atol=1e-4)


def test_the_estimator_gives_the_same_estimate_on_either_path():
    """The same draws; the log weights differ by float32 rounding only."""
    vae = VAE((1, 8, 8), latent_dim=3, hidden=(16,))
    x = data_for("bernoulli", n=40)
    fast = log_likelihood(vae.model, vae.guide, x, num_samples=300, particle_chunk=64)
    slow = log_likelihood(vae.model, vae.guide, x, num_samples=300, particle_chunk=64,
                          accel=False)
    for field in ("per_datapoint", "elbo", "ess", "khat"):
        torch.testing.assert_close(getattr(fast, field), getattr(slow, field),
                                   rtol=1e-5, atol=1e-3)


class BranchingVAE(VAE):
    """A VAE whose model branches on the data's values: images with more ink
    than ``threshold`` are scored by a likelihood with flipped logits."""

    threshold = 0.3

    def model(self, x, beta=None):
        self.check_shape(x)
        with pyro.plate("data", len(x)):
            with poutine.scale(scale=self.beta if beta is None else beta):
                z = pyro.sample("z", self.prior())
            logits = self.likelihood.net(z)
            if float(x.mean()) > self.threshold:
                logits = -logits
            pyro.sample("x", dist.Bernoulli(logits=logits).to_event(1), obs=x)


def test_twins_stand_in_only_for_the_pairs_they_were_written_for():
    torch.manual_seed(0)
    vae = VAE((1, 8, 8), latent_dim=2, hidden=(8,))
    x = data_for("bernoulli")
    assert accel.twin_parts(vae.model, vae.guide, (x,), {}) is not None
    # a subclass that rewrites model, another guide, functions, an outer handler
    branchy = BranchingVAE((1, 8, 8), latent_dim=2, hidden=(8,))
    assert accel.twin_parts(branchy.model, branchy.guide, (x,), {}) is None

    class Quiet(VAE):  # any subclass opts in only by declaring accel_parts again
        pass

    quiet = Quiet((1, 8, 8), latent_dim=2, hidden=(8,))
    assert accel.twin_parts(quiet.model, quiet.guide, (x,), {}) is None
    lg = LinearGaussian(6, 2)
    y = torch.randn(3, 6)
    assert accel.twin_parts(lg.model, lg.guide, (y,), {}) is not None
    assert accel.twin_parts(lg.model, lg.exact_guide, (y,), {}) is None
    other = VAE((1, 8, 8), latent_dim=2, hidden=(8,))
    assert accel.twin_parts(vae.model, other.guide, (x,), {}) is None
    assert accel.twin_parts(lambda x: None, lambda x: None, (x,), {}) is None
    with poutine.scale(scale=2.0):
        assert accel.twin_parts(vae.model, vae.guide, (x,), {}) is None


def test_a_subclass_that_branches_on_data_is_trained_and_estimated_as_written():
    """Its loss and log weights are those of its own model, on both sides of
    the branch, and differ from the parent's."""
    from ppvae.train.plans import ELBOPlan

    torch.manual_seed(0)
    branchy = BranchingVAE((1, 8, 8), latent_dim=2, hidden=(8,))
    parent = VAE((1, 8, 8), latent_dim=2, hidden=(8,))
    parent.load_state_dict(branchy.state_dict())
    plan = ELBOPlan(branchy)
    for ink in (0.1, 0.6):  # one batch on each side of the branch
        x = torch.bernoulli(torch.full((10, 64), ink), generator=torch.Generator().manual_seed(1))
        pyro.set_rng_seed(2)
        got = plan.pair_loss(plan.objective, plan.twin, (x,), {})
        pyro.set_rng_seed(2)
        want = Trace_ELBO().differentiable_loss(branchy.model, branchy.guide, x)
        torch.testing.assert_close(got, want)
        est = log_likelihood(branchy.model, branchy.guide, x, num_samples=50)
        pyro_est = log_likelihood(branchy.model, branchy.guide, x, num_samples=50, accel=False)
        torch.testing.assert_close(est.per_datapoint, pyro_est.per_datapoint)
        if ink > branchy.threshold:
            parent_est = log_likelihood(parent.model, parent.guide, x, num_samples=50)
            assert not torch.allclose(est.per_datapoint, parent_est.per_datapoint)


def test_objectives_without_a_twin_take_the_pyro_path():
    class MyELBO(Trace_ELBO):
        pass

    assert twin_objective(MyELBO()) is None
    assert twin_objective(Trace_ELBO(num_particles=3, vectorize_particles=False)) is None
    assert twin_objective(pyro.infer.RenyiELBO()) is None
