"""The training-plan seam: a reconstruction-plus-penalty autoencoder and an
adversarial model, each a minimal model written here, trained by ``fit``
through its declared plan (no edit of ``fit``)."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from sklearn.decomposition import PCA
from torch import nn
from torch.nn.functional import binary_cross_entropy_with_logits

import ppvae
from ppvae.infer import log_likelihood
from ppvae.train import PLANS, ReconstructionPlan, make_plan


class TinyAutoencoder(nn.Module):
    """A linear autoencoder as MAP inference of the code: a flat prior on z,
    x ~ N(W z + b, 0.5^2 I), and a point-mass guide at the encoder's code.
    ``penalty`` weighs an L2 penalty on the codes, declared, not in the model."""

    default_plan = "reconstruction"

    def __init__(self, dim: int, code: int, penalty: float = 0.0) -> None:
        super().__init__()
        self.code = code
        self.penalty = penalty
        self.encoder = nn.Linear(dim, code)
        self.decoder = nn.Linear(code, dim)

    def model(self, x):
        pyro.module("tiny_ae", self)
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.ImproperUniform(dist.constraints.real, (), (self.code,)))
            pyro.sample("x", dist.Normal(self.decoder(z), 0.5).to_event(1), obs=x)

    def guide(self, x):
        pyro.module("tiny_ae", self)
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Delta(self.encoder(x), event_dim=1))

    def penalties(self, x):
        return {"l2": self.penalty * self.encoder(x).pow(2).sum(-1).mean()}


def low_rank_data(n: int = 600) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    basis = torch.randn(2, 6, generator=gen)
    return (torch.randn(n, 2, generator=gen) * torch.tensor([3.0, 1.5])) @ basis + \
        0.1 * torch.randn(n, 6, generator=gen)


def test_reconstruction_plan_trains_a_point_mass_autoencoder_to_the_pca_error():
    x = low_rank_data()
    ae = TinyAutoencoder(6, 2)
    history = ppvae.fit(ae, (x[:500], x[500:]), epochs=60, batch_size=50, lr=2e-2,
                        progress=False)
    assert set(history.metrics) == {"train_loss", "val_loss", "val_reconstruction"}
    assert history.metrics["val_loss"][-1] < history.metrics["val_loss"][0]
    with torch.no_grad():
        ours = (ae.decoder(ae.encoder(x[500:])) - x[500:]).pow(2).sum(-1).mean()
    pca = PCA(2).fit(x[:500].numpy())
    best = ((pca.inverse_transform(pca.transform(x[500:].numpy())) - x[500:].numpy()) ** 2
            ).sum(-1).mean()
    assert float(ours) < 1.1 * best + 1e-3  # the linear AE spans the PCA subspace


def test_reconstruction_loss_adds_the_declared_penalties():
    x = low_rank_data(40)
    ae = TinyAutoencoder(6, 2, penalty=0.3)
    plan = make_plan(ae)
    assert isinstance(plan, ReconstructionPlan)
    with torch.no_grad():
        code = ae.encoder(x)
        reconstruction = -dist.Normal(ae.decoder(code), 0.5).log_prob(x).sum(-1).mean()
        penalty = 0.3 * code.pow(2).sum(-1).mean()
    rec, pen = plan.terms((x,))
    torch.testing.assert_close(rec.detach(), reconstruction)
    torch.testing.assert_close(pen.detach(), penalty)
    torch.testing.assert_close(plan.loss((x,), 0, 1).detach(), reconstruction + penalty)


def test_a_point_mass_autoencoder_is_not_evaluated_as_a_density():
    ae = TinyAutoencoder(6, 2)
    with pytest.raises(ValueError, match="point mass"):
        log_likelihood(ae.model, ae.guide, low_rank_data(10), num_samples=5)


class ToyAdversarial(nn.Module):
    """Codes z = a x + b of 1-D data pushed to the prior N(0, 1) by a
    logistic-regression discriminator on (z, z^2), with a linear decoder
    reconstructing x from z. The discriminator is a plain module outside
    Pyro's parameter store."""

    default_plan = "adversarial"

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Linear(1, 1)
        self.decoder = nn.Linear(1, 1)
        self.discriminator = nn.Linear(2, 1)

    def model(self, x):
        pyro.module("toy_decoder", self.decoder)
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", dist.Normal(torch.zeros(1), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(self.decoder(z), 0.1).to_event(1), obs=x)

    def guide(self, x):
        pyro.module("toy_encoder", self.encoder)
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Delta(self.encoder(x), event_dim=1))

    def critic(self, z):
        return self.discriminator(torch.cat([z, z.pow(2)], -1))

    def discriminator_loss(self, x):
        fake = self.encoder(x).detach()
        real = torch.randn_like(fake)
        ones, zeros = torch.ones(len(x), 1), torch.zeros(len(x), 1)
        return (binary_cross_entropy_with_logits(self.critic(real), ones)
                + binary_cross_entropy_with_logits(self.critic(fake), zeros))

    def generator_loss(self, x):
        z = self.encoder(x)
        reconstruction = (self.decoder(z) - x).pow(2).sum(-1).mean()
        return reconstruction + binary_cross_entropy_with_logits(self.critic(z),
                                                                 torch.ones(len(x), 1))


def test_adversarial_plan_matches_the_codes_to_the_prior():
    gen = torch.Generator().manual_seed(0)
    x = 0.25 * torch.randn(2000, 1, generator=gen)
    toy = ToyAdversarial()
    history = ppvae.fit(toy, x, epochs=50, batch_size=100, lr=1e-2, progress=False)
    assert set(history.metrics) == {"train_loss", "train_discriminator_loss"}
    assert history.best_epoch == 50  # no monitor: the last weights are kept
    with torch.no_grad():
        z = toy.encoder(x)
    assert abs(float(z.mean())) < 0.15 and abs(float(z.std()) - 1.0) < 0.15
    assert float(history.metrics["train_discriminator_loss"][-1]) == pytest.approx(
        2 * math.log(2), abs=0.1)  # a discriminator that can no longer tell


def test_adversarial_plan_keeps_the_discriminator_out_of_the_generator_step():
    toy = ToyAdversarial()
    plan = make_plan(toy)
    generator_opt, discriminator_opt = plan.configure_optimizers()
    disc = {id(p) for p in toy.discriminator.parameters()}
    assert {id(p) for g in discriminator_opt.param_groups for p in g["params"]} == disc
    assert not disc & {id(p) for g in generator_opt.param_groups for p in g["params"]}
    assert sum(len(g["params"]) for g in generator_opt.param_groups) == 4  # encoder, decoder


def test_plans_are_chosen_by_name_class_or_declaration_and_check_their_options():
    assert sorted(PLANS) == ["adversarial", "elbo", "joint", "layerwise", "reconstruction",
                            "rws", "semi-supervised"]
    ae = TinyAutoencoder(6, 2)
    assert isinstance(make_plan(ae, ReconstructionPlan), ReconstructionPlan)
    assert make_plan(ae, "elbo").name == "elbo"
    with pytest.raises(ValueError, match="unknown training plan 'gan'"):
        make_plan(ae, "gan")
    with pytest.raises(ValueError, match="takes no option.*objective"):
        ppvae.fit(ae, low_rank_data(20), objective="iwae", progress=False)
    with pytest.raises(ValueError, match="needs .*discriminator_loss"):
        make_plan(ae, "adversarial")
