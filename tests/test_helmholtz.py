"""The Helmholtz machine and reweighted wake-sleep: the wake-phase gradients
are the self-normalized importance-weighted gradients computed by hand on a
small sigmoid belief network; RWS trains it; it is scored and saved."""

import pyro
import pytest
import torch

import ppvae
from ppvae.data import load_dataset
from ppvae.infer import log_likelihood
from ppvae.models import VAE, HelmholtzMachine
from ppvae.train import RWSPlan, make_plan


def test_the_wake_gradients_are_the_self_normalized_weighted_gradients_by_hand():
    torch.manual_seed(0)
    hm = HelmholtzMachine(3, layers=(2,))
    with torch.no_grad():
        for p in hm.parameters():
            p.copy_(torch.randn_like(p))
    x = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
    plan = RWSPlan(hm, num_particles=6, insomnia=1.0)
    pyro.set_rng_seed(3)
    wake_p, wake_q, bound = plan.wake((x,))
    hm.zero_grad()
    (wake_p.sum() + wake_q.sum()).backward()
    got = {name: p.grad.clone() for name, p in hm.named_parameters()}

    # by hand: the same draws h ~ q(h | x), six per point
    gen, rec = hm.likelihood.net.layers[0], hm.recognition[0].layers[0]
    with torch.no_grad():
        pyro.set_rng_seed(3)
        q_logits = rec(x)                                    # (4, 2)
        h = torch.bernoulli(torch.sigmoid(q_logits).expand(6, 4, 2))
        x_logits = h @ gen.weight.T + gen.bias               # (6, 4, 3)

        def bernoulli(v, logits):
            return (v * logits - torch.nn.functional.softplus(logits)).sum(-1)

        log_p = bernoulli(h, hm.top_logits) + bernoulli(x, x_logits)
        log_q = bernoulli(h, q_logits)
        w = torch.softmax(log_p - log_q, 0)                  # (6, 4): over the particles
        torch.testing.assert_close(bound, torch.logsumexp(log_p - log_q, 0) - torch.log(
            torch.tensor(6.0)))
        # d/dlogits log Bernoulli(v; sigmoid(l)) = v - sigmoid(l)
        dx = x - torch.sigmoid(x_logits)                     # (6, 4, 3)
        dh = h - torch.sigmoid(q_logits)
        want = {
            "top_logits": -(w[..., None] * (h - torch.sigmoid(hm.top_logits))).sum((0, 1)),
            "likelihood.net.layers.0.weight": -torch.einsum("ki,kid,kij->dj", w, dx, h),
            "likelihood.net.layers.0.bias": -(w[..., None] * dx).sum((0, 1)),
            "recognition.0.layers.0.weight": -torch.einsum("ki,kij,id->jd", w, dh, x),
            "recognition.0.layers.0.bias": -(w[..., None] * dh).sum((0, 1)),
        }
    assert got.keys() == want.keys()
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-6, msg=name)


def test_the_sleep_phase_is_the_guides_log_density_of_dreams():
    torch.manual_seed(1)
    hm = HelmholtzMachine(3, layers=(2, 2))
    plan = RWSPlan(hm, num_particles=2, insomnia=0.0)
    pyro.set_rng_seed(4)
    loss = plan.sleep(5)
    pyro.set_rng_seed(4)
    x, h = hm.dream(5)
    with torch.no_grad():
        log_q = (torch.distributions.Bernoulli(logits=hm.recognition[0](x)).log_prob(h["h1"]).sum()
                 + torch.distributions.Bernoulli(logits=hm.recognition[1](h["h1"]))
                 .log_prob(h["h2"]).sum())
    torch.testing.assert_close(loss.detach(), -log_q / 5)
    hm.zero_grad()
    loss.backward()
    assert all(p.grad is None for p in [*hm.generative.parameters(), *hm.likelihood.parameters(),
                                        hm.top_logits])
    assert all(p.grad is not None for p in hm.recognition.parameters())


def test_rws_trains_a_helmholtz_machine_which_is_then_scored_and_saved(tmp_path):
    data = load_dataset("digits", binarize="dynamic")
    pyro.set_rng_seed(0)
    hm = HelmholtzMachine(data.image_shape, layers=(32, 16))
    x = data.test.x[:100]
    before = log_likelihood(hm.model, hm.guide, x, num_samples=50).per_datapoint.mean()
    history = ppvae.fit(hm, data, epochs=20, progress=False)
    after = log_likelihood(hm.model, hm.guide, x, num_samples=50).per_datapoint.mean()
    assert after > before + 5, (before, after)
    train, val = history.metrics["train_bound"][-1], history.metrics["val_bound"][-1]
    assert -60 < train < 0 and -60 < val < 0 and abs(train - val) < 10, (train, val)
    loaded = ppvae.load(ppvae.save(hm, tmp_path / "hm"))
    torch.testing.assert_close(loaded.encode(x), hm.encode(x))
    assert hm.sample(4).shape == (4, 64) and ((hm.sample(3, mean=False) % 1) == 0).all()


def test_bad_settings_are_refused():
    hm = HelmholtzMachine(3, layers=(2,))
    with pytest.raises(ValueError, match="num_particles >= 2"):
        make_plan(hm, "rws", num_particles=1)
    with pytest.raises(ValueError, match="insomnia"):
        make_plan(hm, "rws", insomnia=1.5)
    with pytest.raises(ValueError, match="no dream"):
        make_plan(VAE((1, 8, 8)), "rws", insomnia=0.5)
    with pytest.raises(ValueError, match="layers"):
        HelmholtzMachine(3, layers=())
