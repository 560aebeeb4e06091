"""Active units against their exact values: a linear guide's posterior means
are linear in x, so Var_x(E_q[z | x]) is a matrix product away."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.distributions.transforms import AffineTransform

from ppvae.infer.active_units import active_units
from ppvae.models import VAE, TwoLayerVAE

torch.manual_seed(0)
X = torch.randn(300, 4)
W = torch.tensor([[1.0, 0.5, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.05, 0.0, 0.0, 0.02]])
V = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 1.0]])


def exact(matrix: torch.Tensor) -> torch.Tensor:
    """Var_x((matrix x)_d), unbiased over the data points."""
    return (X @ matrix.T).var(0)


def linear_guide(x):
    with pyro.plate("data", len(x)):
        pyro.sample("z", dist.Normal(x @ W.T, 0.3).to_event(1))
        pyro.sample("y", dist.Categorical(logits=torch.zeros(len(x), 3)))


def chain_guide(x):
    with pyro.plate("data", len(x)):
        z1 = pyro.sample("z1", dist.Normal(x @ W.T, 1.0).to_event(1))
        pyro.sample("z2", dist.Normal(z1 @ V.T, 0.5).to_event(1))


def flow_guide(x):
    with pyro.plate("data", len(x)):
        base = dist.Normal(torch.zeros(len(x), 3), 1.0)
        pyro.sample("z", dist.TransformedDistribution(
            base, AffineTransform(x @ W.T, 0.7)).to_event(1))


def test_a_guide_that_depends_on_x_alone_gives_the_exact_variances():
    """The Normal's mean is E_q[z | x] at every draw: no Monte Carlo error;
    the discrete site is left out."""
    units = active_units(linear_guide, X, num_samples=2, batch_size=128)
    assert list(units.variance) == ["z"]
    torch.testing.assert_close(units.variance["z"], exact(W), rtol=1e-5, atol=1e-7)
    assert units.counts == {"z": 1}  # the third unit's variance is about 0.0029
    assert active_units(linear_guide, X, threshold=1e-3).counts == {"z": 2}


@pytest.mark.parametrize("guide, site, matrix", [(chain_guide, "z2", V @ W),
                                                (flow_guide, "z", W)])
def test_draws_give_unbiased_variances(guide, site, matrix):
    """q(z2 | z1) averaged over z1, and a flow scored by its draws: the noise
    of the Monte Carlo means is removed. The noise term alone would add
    1.25 (chain) and 0.49 (flow) / S to every unit: with S = 50, 0.025 and
    0.0098, far above the tolerance."""
    got = active_units(guide, X, num_samples=50, seed=1).variance[site]
    torch.testing.assert_close(got, exact(matrix), rtol=0.1, atol=4e-3)


def test_collapsed_layers_of_the_ppvae_models_are_counted():
    """The encoders' output weights of the posterior means scaled up (active)
    or zeroed (collapsed: the mean is the bias for every x)."""
    torch.manual_seed(0)
    x = torch.bernoulli(torch.full((64, 64), 0.3))
    vae = VAE((1, 8, 8), latent_dim=4, hidden=(16,))
    with torch.no_grad():
        weight = vae.encoder.net.layers[-1].weight  # rows: 4 means, then 4 scales
        weight[:2] *= 10
        weight[2:4].zero_()
    assert active_units(vae.guide, x).counts == {"z": 2}
    two = TwoLayerVAE((1, 8, 8), latent_dim=3, top_latent_dim=2, hidden=(16,), top_hidden=(8,))
    with torch.no_grad():
        two.encoder.net.layers[-1].weight[:3] *= 10
        two.top_encoder.net.layers[-1].weight[:2].zero_()
    assert active_units(two.guide, x).counts == {"z1": 3, "z2": 0}


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="num_samples must be at least 2"):
        active_units(linear_guide, X, num_samples=1)
    with pytest.raises(ValueError, match="at least 2 data points"):
        active_units(linear_guide, X[:1])
    with pytest.raises(ValueError, match="threshold must be non-negative"):
        active_units(linear_guide, X, threshold=-1.0)



def test_a_guide_without_continuous_latents_in_the_data_plate_has_no_sites():
    def global_and_discrete(x):
        pyro.sample("g", dist.Normal(0.0, 1.0))
        with pyro.plate("data", len(x)):
            pyro.sample("h", dist.Bernoulli(0.5 * torch.ones(len(x), 3)).to_event(1))

    units = active_units(global_and_discrete, X)
    assert units.variance == {} and units.counts == {}
