"""The contractive autoencoder: its three ways to compute ||J_f(x)||_F^2
against exact Jacobians, the penalty the reconstruction plan adds, the
argument checks, and training on digits."""

import math

import pyro.distributions as dist
import pytest
import torch
from torch.autograd.functional import jacobian

import ppvae
from ppvae.data import load_dataset
from ppvae.models.contractive import ContractiveAutoencoder
from ppvae.models.registry import entry
from ppvae.train import ReconstructionPlan, make_plan


def inputs(n: int, dim: int = 64, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    return torch.rand(n, dim, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def model(seed: int = 0, **kwargs) -> ContractiveAutoencoder:
    torch.manual_seed(seed)
    return ContractiveAutoencoder((1, 8, 8), **kwargs).double()


def brute_force(cae: ContractiveAutoencoder, x: torch.Tensor) -> torch.Tensor:
    """||J_f(x_i)||_F^2 from torch.autograd.functional.jacobian, one point at a time."""
    return torch.stack([jacobian(lambda xi: cae.code(xi[None])[0], xi).pow(2).sum()
                        for xi in x])


def parameter_grads(value: torch.Tensor, cae: ContractiveAutoencoder) -> list[torch.Tensor]:
    return torch.autograd.grad(value, [p for p in cae.encoder.parameters()])


def test_the_closed_form_equals_autograd_and_brute_force_on_one_sigmoid_layer():
    cae = model(latent_dim=5, hidden=())
    x = inputs(7)
    closed = cae.jacobian_norm(x, "closed-form")
    exact = cae.jacobian_norm(x, "autograd")
    assert closed.shape == (7,)
    torch.testing.assert_close(closed, exact, rtol=1e-12, atol=0)
    torch.testing.assert_close(closed, brute_force(cae, x), rtol=1e-12, atol=0)
    torch.testing.assert_close(cae.jacobian_norm(x), closed, rtol=0, atol=0)  # "auto"
    # differentiable: the same parameter gradients both ways
    for a, b in zip(parameter_grads(closed.sum(), cae), parameter_grads(exact.sum(), cae)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("network", ["mlp", "conv"])
def test_autograd_equals_a_brute_force_jacobian_on_deep_encoders(network):
    cae = model(latent_dim=3, hidden=(16, 8), network=network, activation="tanh")
    x = inputs(5)
    exact = cae.jacobian_norm(x, "autograd")
    torch.testing.assert_close(exact, brute_force(cae, x), rtol=1e-12, atol=0)
    torch.testing.assert_close(cae.jacobian_norm(x), exact, rtol=0, atol=0)  # "auto"
    assert all(g.abs().sum() > 0 for g in parameter_grads(exact.sum(), cae))


@pytest.mark.parametrize("network", ["mlp", "conv"])
def test_the_estimate_is_the_mean_of_its_projections_with_exact_gradients(network):
    """With v replayed from the same seed, the estimate is mean_k ||J_i v_k||^2
    with J_i the exact Jacobian, value and parameter gradients."""
    cae = model(latent_dim=3, hidden=(16,), network=network, activation="tanh")
    x = inputs(4)
    torch.manual_seed(7)
    estimate = cae.jacobian_norm(x, "estimate", projections=3)
    torch.manual_seed(7)
    v = torch.randn(3 * 4, 64, dtype=torch.float64).reshape(3, 4, 64)
    jac = torch.func.vmap(torch.func.jacrev(lambda xi: cae.code(xi[None])[0]))(x)  # (4, 3, 64)
    replayed = torch.einsum("ikd,pid->pik", jac, v).pow(2).sum(-1).mean(0)
    torch.testing.assert_close(estimate, replayed, rtol=1e-12, atol=0)
    for a, b in zip(parameter_grads(estimate.sum(), cae), parameter_grads(replayed.sum(), cae)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("projections", [1, 4])
def test_the_estimate_is_unbiased_with_the_gaussian_variance(projections):
    """Many independent estimates per point: their mean is within 4 standard
    errors of ||J||_F^2, their variance within 4 standard errors of
    2 ||J^T J||_F^2 / projections (Var v^T A v = 2 tr A^2 for v ~ N(0, I)),
    and the standard error is small enough to expose a bias of 5%."""
    cae = model(latent_dim=4, hidden=(32,), activation="tanh")
    x = inputs(3)
    draws = 6000
    exact = cae.jacobian_norm(x, "autograd").detach()
    jac = torch.func.vmap(torch.func.jacrev(lambda xi: cae.code(xi[None])[0]))(x).detach()
    gram = jac.transpose(-1, -2) @ jac
    variance = 2 * gram.pow(2).sum((-2, -1)) / projections
    torch.manual_seed(0)
    with torch.no_grad():
        samples = cae.jacobian_norm(x.repeat(draws, 1), "estimate", projections=projections)
    samples = samples.reshape(draws, len(x))
    mean, var = samples.mean(0), samples.var(0)
    stderr = samples.std(0) / math.sqrt(draws)
    assert torch.all(stderr < 0.0125 * exact)  # 4 standard errors < 5% of the value
    assert torch.all((mean - exact).abs() < 4 * stderr), (mean, exact, stderr)
    centred = samples - mean
    var_stderr = ((centred.pow(4).mean(0) - var.pow(2)) / draws).sqrt()
    assert torch.all((var - variance).abs() < 4 * var_stderr), (var, variance, var_stderr)


def test_the_reconstruction_plan_adds_lambda_times_the_mean_squared_jacobian_norm():
    cae = model(latent_dim=4, hidden=(16,), contraction=0.3)
    x = inputs(10)
    plan = make_plan(cae)
    assert isinstance(plan, ReconstructionPlan)
    rec, pen = plan.terms((x,))
    with torch.no_grad():
        code = cae.code(x)
        reconstruction = -dist.Normal(cae.likelihood.mean(code), 1.0).log_prob(x).sum(-1).mean()
        penalty = 0.3 * brute_force(cae, x).mean()
    torch.testing.assert_close(rec.detach(), reconstruction)
    torch.testing.assert_close(pen.detach(), penalty, rtol=1e-12, atol=0)
    torch.testing.assert_close(plan.loss((x,), 0, 1).detach(), reconstruction + penalty)
    assert set(cae.penalties(x)) == {"contraction"}
    assert all(g.abs().sum() > 0 for g in parameter_grads(pen, cae))
    plain = model(latent_dim=4, hidden=(16,), contraction=0.0)
    assert float(ReconstructionPlan(plain).terms((x,))[1]) == 0.0


def test_the_penalty_uses_the_configured_jacobian_method():
    cae = model(latent_dim=4, hidden=(16,), contraction=2.0, jacobian="estimate",
                projections=5)
    x = inputs(6)
    torch.manual_seed(3)
    pen = cae.penalties(x)["contraction"]
    torch.manual_seed(3)
    torch.testing.assert_close(pen, 2.0 * cae.jacobian_norm(x, "estimate", projections=5).mean(),
                               rtol=0, atol=0)


@pytest.mark.parametrize("kwargs, message", [
    (dict(jacobian="exact"), "unknown jacobian 'exact'"),
    (dict(contraction=-0.1), "contraction must be a finite number >= 0"),
    (dict(contraction=float("nan")), "contraction must be a finite number >= 0"),
    (dict(contraction=float("inf")), "contraction must be a finite number >= 0"),
    (dict(projections=0), "projections must be an integer >= 1"),
    (dict(jacobian="closed-form"), "closed-form.*one sigmoid layer.*hidden=\\[256, 128\\]"),
    (dict(jacobian="closed-form", hidden=(), code_activation=None), "code_activation=None"),
    (dict(jacobian="closed-form", hidden=(), code_activation="tanh"), "one sigmoid layer"),
    (dict(jacobian="closed-form", hidden=(), network="conv"), "network='conv'"),
])
def test_bad_arguments_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ContractiveAutoencoder((1, 8, 8), **kwargs)


def test_jacobian_norm_refuses_a_bad_method():
    cae = model(hidden=(16,))
    x = inputs(2)
    with pytest.raises(ValueError, match="one sigmoid layer"):
        cae.jacobian_norm(x, "closed-form")
    with pytest.raises(ValueError, match="unknown jacobian 'hessian'"):
        cae.jacobian_norm(x, "hessian")
    with pytest.raises(ValueError, match="projections must be"):
        cae.jacobian_norm(x, "estimate", projections=0)
    with pytest.raises(ValueError, match=r"shape \(batch, 64\)"):
        cae.jacobian_norm(x[:, :10])


def test_registered_as_cae_with_the_reconstruction_plan():
    found = entry("cae")
    assert found.cls is ContractiveAutoencoder and found.plan == "reconstruction"
    assert not ContractiveAutoencoder.density
    cae = ContractiveAutoencoder((1, 8, 8), contraction=0.5, jacobian="estimate", projections=2)
    assert cae.config["contraction"] == 0.5 and cae.config["jacobian"] == "estimate"
    assert cae.config["projections"] == 2 and cae.config["code_activation"] == "sigmoid"


def trained(contraction: float, seed: int, data) -> ContractiveAutoencoder:
    torch.manual_seed(seed)
    cae = ContractiveAutoencoder((1, 8, 8), latent_dim=8, hidden=(32,), contraction=contraction)
    ppvae.fit(cae, data, epochs=3, batch_size=64, lr=1e-2, seed=seed, progress=False)
    return cae


def test_training_contracts_the_code_and_round_trips_through_save_and_load(tmp_path):
    """The same network, seed and epochs with and without the penalty: the
    contractive one has a much smaller mean ||J_f||_F^2 on the test data
    (by hand, over seeds 0-6, 3 to 12 times smaller)."""
    data = load_dataset("digits")
    x = torch.as_tensor(data.test.x, dtype=torch.float32).reshape(len(data.test.x), -1)
    cae, plain = trained(0.5, 0, data), trained(0.0, 0, data)
    with torch.no_grad():
        contracted = float(cae.jacobian_norm(x).mean())
        free = float(plain.jacobian_norm(x).mean())
    assert contracted < 0.5 * free, (contracted, free)
    path = ppvae.save(cae, tmp_path / "cae")
    loaded = ppvae.load(path)
    assert type(loaded) is ContractiveAutoencoder and loaded.config == cae.config
    torch.testing.assert_close(loaded.encode(x), cae.encode(x), rtol=0, atol=0)
