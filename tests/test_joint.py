"""The joint-loss semi-supervised autoencoder and its training plan."""

import math

import pytest
import torch
from torch.nn.functional import log_softmax

import ppvae
from ppvae.data import label_split, load_dataset
from ppvae.models.autoencoder import Autoencoder
from ppvae.models.joint import JointAutoencoder
from ppvae.models.registry import entry
from ppvae.train import JointPlan, ReconstructionPlan, make_plan
from ppvae.train.batches import single_process


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def joint(seed: int = 0, **kwargs) -> JointAutoencoder:
    torch.manual_seed(seed)
    return JointAutoencoder((1, 8, 8), **{"num_classes": 10, "latent_dim": 4, "hidden": (16,),
                                          **kwargs})


def first_batch(plan, data, batch_size=32):
    train, _ = plan.batches(data, batch_size=batch_size, val_batch_size=100, seed=0,
                            epoch=lambda: 0, shard=single_process)
    return next(iter(train))


def test_loss_is_the_weighted_reconstruction_plus_alpha_times_the_cross_entropy(digits):
    m = joint(classifier_hidden=(8,))
    for weight in (1.0, 0.25, "dataset"):
        plan = make_plan(m, labels=20, labelled_per_batch=6, alpha=0.7, labelled_weight=weight)
        x_l, y_l, x_u = batch = first_batch(plan, digits)
        assert (len(x_l), len(x_u)) == (6, 32)
        w = (20 / 6) / ((len(digits.train) - 20) / 32) if weight == "dataset" else weight
        assert plan.weight == pytest.approx(w)
        with torch.no_grad():
            def reconstruction(x):  # -log N(x; g(f(x)), I) per point
                return 0.5 * (x - m.likelihood.net(m.encoder(x))).pow(2).sum(-1) + \
                    32 * math.log(2 * math.pi)

            cross_entropy = -log_softmax(m.head(m.encoder(x_l)), -1)[torch.arange(6), y_l]
            expected = ((reconstruction(x_u).sum() + w * reconstruction(x_l).sum())
                        / (32 + w * 6) + 0.7 * cross_entropy.mean())
        torch.testing.assert_close(plan.loss(batch, 0, 1).detach(), expected)


def test_alpha_zero_gives_the_plain_reconstruction_loss(digits):
    m = joint()
    plan = make_plan(m, labels=20, alpha=0.0)
    x_l, y_l, x_u = batch = first_batch(plan, digits)
    plain = ReconstructionPlan(m).loss((torch.cat([x_l, x_u]),), 0, 1)
    torch.testing.assert_close(plan.loss(batch, 0, 1), plain)
    assert plan.num_points(batch) == len(x_l) + len(x_u)


def test_trains_on_digits_with_100_labels(digits):
    m = joint(latent_dim=8, hidden=(64,))
    history = ppvae.fit(m, digits, labels=100, epochs=20, batch_size=64, labelled_per_batch=16,
                        lr=3e-3, progress=False)
    assert set(history.metrics) == {"train_loss", "val_loss", "val_reconstruction",
                                    "val_accuracy"}
    assert history.metrics["val_loss"][-1] < history.metrics["val_loss"][0]
    accuracy = (m.predict(digits.test.x) == digits.test.y).float().mean().item()
    assert accuracy > 0.6  # chance: 0.1
    assert history.val_accuracy[-1] > 0.6
    probs = m.predict_proba(digits.test.x[:5])
    torch.testing.assert_close(probs.sum(-1), torch.ones(5))


def test_save_load_round_trip(digits, tmp_path):
    m = joint()
    ppvae.fit(m, digits, labels=label_split(digits.train, 20, 10), epochs=1, progress=False)
    loaded = ppvae.load(ppvae.save(m, tmp_path / "joint"))
    assert type(loaded) is JointAutoencoder and loaded.config == m.config
    x = digits.test.x
    torch.testing.assert_close(loaded.encode(x), m.encode(x))
    torch.testing.assert_close(loaded.predict_proba(x), m.predict_proba(x))


def test_the_registry_fills_num_classes_and_the_plan(digits):
    model = entry("joint-ae").build(digits, latent_dim=2)
    assert model.num_classes == 10 and entry("joint-ae").plan == "joint"
    assert isinstance(make_plan(model, labels=10), JointPlan)


def test_missing_labels_and_bad_arguments(digits):
    m = joint()
    with pytest.raises(ValueError, match="labels=N"):
        ppvae.fit(m, digits, epochs=1, progress=False)
    with pytest.raises(ValueError, match="labels=N"):
        ppvae.fit(m, digits.train.x, labels=10, epochs=1, progress=False)
    with pytest.raises(ValueError, match="alpha"):
        make_plan(m, labels=10, alpha=-1.0)
    with pytest.raises(ValueError, match="labelled_weight"):
        make_plan(m, labels=10, labelled_weight=0.0)
    with pytest.raises(ValueError, match="joint plan needs .*classifier"):
        make_plan(Autoencoder((1, 8, 8)), "joint", labels=10)
    with pytest.raises(ValueError, match=r"labels must lie in 0..4"):
        ppvae.fit(joint(num_classes=5), digits, labels=10, epochs=1, progress=False)
    for kwargs in (dict(num_classes=1), dict(classifier_hidden=(0,)), dict(latent_dim=0)):
        with pytest.raises(ValueError, match=next(iter(kwargs))):
            JointAutoencoder((1, 8, 8), **{"num_classes": 10, **kwargs})
