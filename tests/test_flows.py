"""The IAF posterior: its log density is the change-of-variables formula
computed with torch's Jacobian; a VAE with it trains, is scored and saves."""

import pyro
import pytest
import torch
from torch.autograd.functional import jacobian

import ppvae
from ppvae.data import load_dataset
from ppvae.infer import IWAE
from ppvae.models import VAE
from ppvae.nn import MLP
from ppvae.pieces import IAFPosterior


def posterior(num_flows=2):
    torch.manual_seed(0)
    q = IAFPosterior(MLP(5, (8,), 2 * 3 + 2), latent_dim=3, context_dim=2, num_flows=num_flows)
    with torch.no_grad():  # steps far from the identity
        for p in q.flows.parameters():
            p.add_(0.5 * torch.randn_like(p))
    return q


def test_the_log_density_is_the_change_of_variables_formula():
    q = posterior()
    x = torch.randn(1, 5)
    base, h = q.base(x)

    def push(z0):
        z = z0
        for flow in q.flows:
            z = flow.condition(h)(z)
        return z

    torch.manual_seed(3)
    z = q(x).rsample()  # the steps cache their inputs: log_prob reads them
    torch.manual_seed(3)
    z0 = base.rsample()
    torch.testing.assert_close(push(z0), z)
    log_det = torch.linalg.slogdet(jacobian(push, z0).reshape(3, 3)).logabsdet
    want = base.log_prob(z0) - log_det
    torch.testing.assert_close(q(x).log_prob(z), want, rtol=1e-5, atol=1e-5)  # by inversion
    with torch.no_grad():
        fn = q(x)
        drawn = fn.rsample()
        assert torch.isfinite(fn.log_prob(drawn)).all()
    # the Jacobian is not the identity and not diagonal: the flow does something
    j = jacobian(push, z0).reshape(3, 3)
    assert (j - torch.diag(torch.diagonal(j))).abs().max() > 1e-2


def test_no_steps_is_the_diagonal_gaussian():
    q = posterior(num_flows=0)
    x = torch.randn(4, 5)
    z = torch.randn(4, 3)
    torch.testing.assert_close(q(x).log_prob(z), q.base(x)[0].log_prob(z))
    torch.testing.assert_close(q.code(x), q.base(x)[0].mean)


def test_a_vae_with_an_iaf_guide_trains_is_scored_and_saves(tmp_path):
    data = load_dataset("digits")
    pyro.set_rng_seed(0)
    vae = VAE(data.image_shape, latent_dim=4, hidden=(32,), likelihood="continuous-bernoulli",
              posterior="iaf", num_flows=2)
    x = data.test.x[:40]
    before = vae.log_likelihood(x, num_samples=20).per_datapoint.mean()
    ppvae.fit(vae, data, epochs=5, progress=False)
    after = vae.log_likelihood(x, num_samples=20).per_datapoint.mean()
    assert after > before + 10, (before, after)
    loaded = ppvae.load(ppvae.save(vae, tmp_path / "iaf"))
    assert loaded.config["posterior"] == "iaf"
    torch.testing.assert_close(loaded.encode(x), vae.encode(x))
    with pytest.raises(NotImplementedError, match="cannot detach"):
        IWAE(3, dreg=True).differentiable_loss(vae.model, vae.guide, x)


@pytest.mark.parametrize("kwargs, message", [
    ({"posterior": "flow"}, "unknown posterior"), ({"num_flows": 3}, "posterior='iaf'")])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        VAE(**kwargs)
    with pytest.raises(ValueError, match="num_flows >= 0"):
        IAFPosterior(MLP(5, (), 8), 3, 2, num_flows=-1)
