"""The adversarial autoencoder: codes matched to a mixture prior by the
discriminator; the discriminator's gradient kept off the encoder; a density
only with a Gaussian encoder."""

import pyro
import pytest
import torch

import ppvae
from ppvae.data import load_dataset
from ppvae.infer import log_likelihood
from ppvae.infer.mmd import mmd2
from ppvae.models import REGISTRY, AdversarialAutoencoder
from ppvae.train import make_plan


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def prior_gap(aae, x):
    """MMD^2 between the codes of x and as many prior draws, and the share of
    codes in the least visited petal (10% each for a perfect match)."""
    torch.manual_seed(123)
    with torch.no_grad():
        z = aae.encode(x)
        nearest = torch.cdist(z, aae.prior.component_means()).argmin(1)
        share = torch.bincount(nearest, minlength=10).float() / len(z)
        return float(mmd2(z, aae.prior.sample(len(z)), "imq", 4.0)), float(share.min())


@pytest.mark.parametrize("encoder", ["deterministic", "gaussian"])
def test_the_codes_come_to_match_a_mixture_prior(digits, encoder):
    pyro.set_rng_seed(1)
    aae = AdversarialAutoencoder(digits.image_shape, prior="mixture", hidden=(64,),
                                 encoder=encoder)
    before, _ = prior_gap(aae, digits.train.x)
    history = ppvae.fit(aae, digits, epochs=80, batch_size=32, seed=1, progress=False)
    after, least = prior_gap(aae, digits.train.x)
    # prior draws against prior draws: |MMD^2| < 0.002 at this size
    assert before > 0.05 and after < 0.03 and least > 0.02, (before, after, least)
    assert set(history.metrics) >= {"train_loss", "train_discriminator_loss"}


def test_the_discriminator_step_leaves_the_encoder_alone():
    aae = AdversarialAutoencoder((1, 8, 8), hidden=(16,), prior="normal", latent_dim=3)
    aae.discriminator_loss(torch.rand(10, 64)).backward()
    assert all(p.grad is None for p in aae.encoder.parameters())
    assert all(p.grad is not None for p in aae.discriminator.parameters())
    generator_opt, discriminator_opt = make_plan(aae).configure_optimizers()
    disc = {id(p) for p in aae.discriminator.parameters()}
    assert {id(p) for g in discriminator_opt.param_groups for p in g["params"]} == disc
    assert not disc & {id(p) for g in generator_opt.param_groups for p in g["params"]}


def test_the_losses_are_their_formulas():
    aae = AdversarialAutoencoder((1, 8, 8), hidden=(16,), prior="normal", latent_dim=3,
                                 adversarial_weight=0.7)
    x = torch.rand(10, 64)
    with torch.no_grad():
        z = aae.encoder(x)
        d = torch.sigmoid(aae.discriminator(z))
        reconstruction = (0.5 * (aae.likelihood.mean(z) - x).pow(2).sum(-1)
                          + 32 * torch.log(torch.tensor(2 * torch.pi))).mean()
        torch.testing.assert_close(aae.generator_loss(x), reconstruction - 0.7 * d.log().mean())
        torch.manual_seed(0)
        real = aae.prior.sample(10)
        expected = -(torch.sigmoid(aae.discriminator(real)).log().mean()
                     + (1 - d).log().mean())
        torch.manual_seed(0)
        torch.testing.assert_close(aae.discriminator_loss(x), expected)


def test_a_density_only_with_a_gaussian_encoder_and_a_prior_with_a_density(digits, tmp_path):
    x = digits.test.x[:20]
    gaussian = AdversarialAutoencoder(digits.image_shape, hidden=(16,), encoder="gaussian",
                                      prior="mixture")
    assert gaussian.density
    result = log_likelihood(gaussian.model, gaussian.guide, x, num_samples=20)
    assert result.per_datapoint.isfinite().all()
    for kw in ({"encoder": "deterministic"}, {"encoder": "gaussian", "prior": "swiss-roll"}):
        model = AdversarialAutoencoder(digits.image_shape, hidden=(16,), **kw)
        assert not model.density
        with pytest.raises(ValueError, match="point mass|improper"):
            log_likelihood(model.model, model.guide, x, num_samples=5)
    loaded = ppvae.load(ppvae.save(gaussian, tmp_path / "aae"))
    torch.testing.assert_close(loaded.encode(x), gaussian.encode(x))
    assert loaded.sample(4).shape == (4, 64) and REGISTRY["aae"].plan == "adversarial"


@pytest.mark.parametrize("kw, message", [
    ({"encoder": "vae"}, "unknown encoder"), ({"prior": "cauchy"}, "unknown prior"),
    ({"prior": "mixture", "latent_dim": 3}, "2-d"), ({"adversarial_weight": -1}, ">= 0")])
def test_bad_arguments(kw, message):
    with pytest.raises(ValueError, match=message):
        AdversarialAutoencoder((1, 8, 8), **kw)


def test_the_labelled_prior_draws_each_class_from_its_component():
    from ppvae.pieces import GaussianMixturePrior

    prior = GaussianMixturePrior(components=4)
    torch.manual_seed(0)
    k = torch.tensor([3] * 4000 + [1] * 4000)
    draws = prior.sample_components(k)
    torch.testing.assert_close(draws[:4000].mean(0), prior.component_means()[3], atol=0.05,
                               rtol=0)
    torch.testing.assert_close(torch.cov(draws[4000:].T), prior.components().covariance_matrix[1],
                               atol=0.05, rtol=0)


def test_the_labelled_losses_and_their_labels():
    from torch.nn.functional import one_hot

    from ppvae.models import LabelledAdversarialAutoencoder

    aae = LabelledAdversarialAutoencoder((1, 8, 8), num_classes=3, hidden=(16,),
                                         adversarial_weight=0.5)
    x, y, x_u = torch.rand(4, 64), torch.tensor([0, 2, 1, 2]), torch.rand(3, 64)
    with torch.no_grad():
        inputs = torch.cat([x, x_u])
        z = aae.encoder(inputs)
        slots = one_hot(torch.tensor([0, 2, 1, 2, 3, 3, 3]), 4).float()
        d = torch.sigmoid(aae.discriminator(torch.cat([z, slots], -1)))
        reconstruction = -aae.likelihood(z).log_prob(inputs).mean()
        torch.testing.assert_close(aae.generator_loss(x, y, x_u),
                                   reconstruction - 0.5 * d.log().mean())
        torch.manual_seed(0)
        real = torch.cat([aae.prior.sample_components(y), aae.prior.sample(3)])
        real_d = torch.sigmoid(aae.discriminator(torch.cat([real, slots], -1)))
        torch.manual_seed(0)
        torch.testing.assert_close(aae.discriminator_loss(x, y, x_u),
                                   -(real_d.log().mean() + (1 - d).log().mean()))
    with pytest.raises(ValueError, match="labels=N"):
        aae.generator_loss(x)


def test_the_labelled_autoencoder_trains_with_labels_and_refuses_without(digits):
    from ppvae.models import LabelledAdversarialAutoencoder

    aae = LabelledAdversarialAutoencoder(digits.image_shape, hidden=(16,))
    history = ppvae.fit(aae, digits, epochs=1, labels=100, progress=False)
    assert "train_discriminator_loss" in history.metrics
    assert aae.predict(digits.test.x).shape == (360,)
    with pytest.raises(ValueError, match="labels=N"):
        ppvae.fit(aae, digits, epochs=1, progress=False)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_label_information_in_the_prior_classifies_with_100_labels(digits, seed):
    from ppvae.data import label_split
    from ppvae.models import LabelledAdversarialAutoencoder

    pyro.set_rng_seed(seed)
    aae = LabelledAdversarialAutoencoder(digits.image_shape, hidden=(64,))
    ppvae.fit(aae, digits, epochs=300, batch_size=32, seed=seed, progress=False,
              labels=label_split(digits.train, 100, 10, seed), labelled_per_batch=16)
    assert float((aae.predict(digits.test.x) == digits.test.y).float().mean()) > 0.3  # chance 0.1


def test_the_categorical_losses_are_their_formulas():
    from ppvae.models import CategoricalAdversarialAutoencoder

    aae = CategoricalAdversarialAutoencoder((1, 8, 8), num_clusters=4, style_dim=2,
                                            hidden=(16,), adversarial_weight=0.5,
                                            supervised_weight=3.0)
    x, y, x_u = torch.rand(3, 64), torch.tensor([0, 3, 1]), torch.rand(5, 64)
    with torch.no_grad():
        inputs = torch.cat([x, x_u])
        h = aae.encoder(inputs)
        probs, style = h[:, :4].softmax(-1), h[:, 4:]
        reconstruction = -aae.likelihood(torch.cat([probs, style], -1)).log_prob(inputs).mean()
        d_y = torch.sigmoid(aae.discriminator["y"](probs))
        d_z = torch.sigmoid(aae.discriminator["z"](style))
        ce = -h[:3, :4].log_softmax(-1)[torch.arange(3), y].mean()
        torch.testing.assert_close(aae.generator_loss(x, y, x_u),
                                   reconstruction - 0.5 * (d_y.log().mean() + d_z.log().mean())
                                   + 3.0 * ce)
        torch.testing.assert_close(aae.generator_loss(inputs),
                                   reconstruction - 0.5 * (d_y.log().mean() + d_z.log().mean()))
        torch.manual_seed(0)
        real_y, real_z = aae.prior_sample(8)
        assert ((real_y == 0) | (real_y == 1)).all() and (real_y.sum(-1) == 1).all()
        expected = -sum(torch.sigmoid(aae.discriminator[v](real)).log().mean()
                        + (1 - fake).log().mean()
                        for v, real, fake in (("y", real_y, d_y), ("z", real_z, d_z)))
        torch.manual_seed(0)
        torch.testing.assert_close(aae.discriminator_loss(x, y, x_u), expected)
    aae.discriminator_loss(x, y, x_u).backward()
    assert all(p.grad is None for p in aae.encoder.parameters())
    with pytest.raises(ValueError, match="come with labelled"):
        aae.generator_loss(x, None, x_u)


def test_the_categorical_autoencoder_classifies_with_100_labels_and_saves(digits, tmp_path):
    from ppvae.data import label_split
    from ppvae.models import CategoricalAdversarialAutoencoder

    pyro.set_rng_seed(0)
    aae = CategoricalAdversarialAutoencoder(digits.image_shape, num_clusters=10, style_dim=2,
                                            hidden=(64,))
    ppvae.fit(aae, digits, epochs=30, batch_size=32, progress=False,
              labels=label_split(digits.train, 100, 10, 0), labelled_per_batch=16)
    accuracy = float((aae.predict(digits.test.x) == digits.test.y).float().mean())
    assert accuracy > 0.6, accuracy  # chance 0.1
    probs = aae.cluster_probs(digits.test.x)
    assert probs.shape == (360, 10) and torch.allclose(probs.sum(-1), torch.ones(360))
    assert not aae.density and aae.sample(5).shape == (5, 64)
    loaded = ppvae.load(ppvae.save(aae, tmp_path / "aae-clusters"))
    torch.testing.assert_close(loaded.encode(digits.test.x), aae.encode(digits.test.x))
    with pytest.raises(ValueError, match="must lie in 0..3"):
        ppvae.fit(CategoricalAdversarialAutoencoder(digits.image_shape, num_clusters=4),
                  digits, epochs=1, labels=100, progress=False)


@pytest.mark.parametrize("kw, message", [
    ({"num_clusters": 1}, "num_clusters"), ({"style_dim": 0}, "style_dim"),
    ({"supervised_weight": -1}, "supervised_weight")])
def test_bad_categorical_arguments(kw, message):
    from ppvae.models import CategoricalAdversarialAutoencoder

    with pytest.raises(ValueError, match=message):
        CategoricalAdversarialAutoencoder((1, 8, 8), **kw)
