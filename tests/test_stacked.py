"""The stacked (denoising) autoencoder and its layer-wise training plan."""

import math

import pytest
import torch

import ppvae
from ppvae.data import label_split, load_dataset
from ppvae.models.autoencoder import Autoencoder
from ppvae.models.registry import entry
from ppvae.models.stacked import StackedAutoencoder
from ppvae.train import PLANS, LayerwisePlan, make_plan
from ppvae.train.classifier import fit_classifier


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def stacked(seed: int = 0, **kwargs) -> StackedAutoencoder:
    torch.manual_seed(seed)
    return StackedAutoencoder((1, 8, 8), **{"sizes": (16, 4), **kwargs})


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a, b))


def test_layer_losses_are_one_layer_autoencoders_of_fixed_inputs(digits):
    m = stacked().eval()
    x = digits.val.x[:20]
    enc, dec = m.encoder.layers, m.likelihood.net.layers  # Linear, sigmoid, Linear (+ sigmoid)
    with torch.no_grad():
        h1 = torch.sigmoid(enc[0](x))
        out0 = dec[2](h1)  # V_0 h_1 + c_0: the mean of N(x; ., I)
        loss0 = (0.5 * (x - out0).pow(2).sum(-1) + 32 * math.log(2 * math.pi)).mean()
        out1 = torch.sigmoid(dec[0](torch.sigmoid(enc[2](h1))))
        loss1 = 0.5 * (h1 - out1).pow(2).sum(-1).mean()
    torch.testing.assert_close(m.layer_loss(0, x).detach(), loss0)
    torch.testing.assert_close(m.layer_loss(1, x).detach(), loss1)
    m.layer_loss(1, x).backward()  # no gradient through the layer below
    trained = {id(p) for p in m.layer_parameters(1)}
    assert len(trained) == 4 and sum(len(m.layer_parameters(k)) for k in (0, 1)) == len(
        list(m.parameters()))
    for p in m.parameters():
        assert (p.grad is not None) == (id(p) in trained)


def test_each_pretraining_epoch_trains_only_its_layer(digits):
    init, one, two = stacked(), stacked(), stacked()
    ppvae.fit(one, digits, epochs=1, layer_epochs=1, batch_size=64, progress=False)
    ppvae.fit(two, digits, epochs=2, layer_epochs=1, batch_size=64, progress=False)
    # epoch 1 trains layer 0 alone; epoch 2 layer 1 alone (the same epoch 1 in both runs)
    assert not same(one.layer_parameters(0), init.layer_parameters(0))
    assert same(one.layer_parameters(1), init.layer_parameters(1))
    assert same(two.layer_parameters(0), one.layer_parameters(0))
    assert not same(two.layer_parameters(1), one.layer_parameters(1))


def test_a_run_resumed_across_phases_ends_as_an_uninterrupted_one(digits, tmp_path):
    whole, resumed = stacked(), stacked()
    ppvae.fit(whole, digits, epochs=4, layer_epochs=1, progress=False)
    ppvae.fit(resumed, digits, epochs=2, layer_epochs=1, progress=False, out_dir=tmp_path)
    resumed.train()  # fit leaves a model in eval mode, and Lightning keeps the mode it finds
    ppvae.fit(resumed, digits, epochs=4, layer_epochs=1, progress=False, out_dir=tmp_path,
              resume=True)  # the layer-1 and fine-tuning optimizers from the checkpoint
    assert same(list(resumed.parameters()), list(whole.parameters()))


def test_the_loss_switches_to_the_full_reconstruction_after_pretraining(digits, monkeypatch):
    m = stacked().eval()
    x = digits.val.x[:20]
    plan = make_plan(m, layer_epochs=2)
    assert isinstance(plan, LayerwisePlan) and plan.monitor is None
    assert [plan.layer(e) for e in range(6)] == [0, 0, 1, 1, None, None]
    with torch.no_grad():
        full = (0.5 * (x - m.likelihood.net(m.code(x))).pow(2).sum(-1)
                + 32 * math.log(2 * math.pi)).mean()
    for epoch, expected in ((0, m.layer_loss(0, x)), (3, m.layer_loss(1, x)), (4, full)):
        monkeypatch.setattr(LayerwisePlan, "current_epoch", property(lambda self: epoch))
        torch.testing.assert_close(plan.loss((x,), 0, 1).detach(), expected.detach())
    no_pretraining = make_plan(m, layer_epochs=0)
    assert no_pretraining.layer(0) is None and no_pretraining.monitor == ("val_loss", "min")


def test_pretraining_lowers_each_layers_loss(digits):
    m, init = stacked(sizes=(32, 8), noise="gaussian", noise_level=0.1), stacked(sizes=(32, 8))
    history = ppvae.fit(m, digits, epochs=10, layer_epochs=5, batch_size=32, lr=1e-2,
                        progress=False)
    assert history.epochs == 10
    m.eval()
    x = digits.val.x
    for k in range(2):
        trained = m.layer_loss(k, x).item()
        with torch.no_grad():  # layer k back at its initial weights, the layers below trained
            kept = [p.clone() for p in m.layer_parameters(k)]
            for p, p0 in zip(m.layer_parameters(k), init.layer_parameters(k)):
                p.copy_(p0)
            untrained = m.layer_loss(k, x).item()
            for p, p1 in zip(m.layer_parameters(k), kept):
                p.copy_(p1)
        assert trained < untrained - 0.1, (k, trained, untrained)


def test_trains_on_digits_and_its_classifier_fine_tunes(digits):
    m = stacked(sizes=(64, 16), noise="masking", noise_level=0.2)
    history = ppvae.fit(m, digits, epochs=30, layer_epochs=10, batch_size=32, lr=1e-2,
                        patience=1, progress=False)
    assert set(history.metrics) == {"train_loss", "val_loss", "val_reconstruction"}
    assert history.epochs == 30 and not history.stopped_early and history.best_epoch == 30
    assert history.metrics["val_loss"][-1] < history.metrics["val_loss"][0]
    assert history.metrics["train_loss"][10] < 10 < history.metrics["train_loss"][20]  # phases
    codes = m.encode(digits.test.x)
    net = m.classifier(10)
    fit_classifier(net, digits, label_split(digits.train, 100, 10, seed=0), epochs=200,
                   lr=1e-2)
    with torch.no_grad():
        accuracy = (net(digits.test.x).argmax(-1) == digits.test.y).float().mean().item()
    assert accuracy > 0.6  # chance: 0.1
    assert torch.equal(m.encode(digits.test.x), codes)  # the classifier holds a copy
    fresh = StackedAutoencoder((1, 8, 8), sizes=(64, 16)).classifier(10)
    assert [p.shape for p in fresh.parameters()] == [p.shape for p in net.parameters()]
    assert not same(list(fresh.parameters())[:4], list(m.classifier(10).parameters())[:4])


def test_save_load_round_trip(digits, tmp_path):
    m = stacked(noise="masking", noise_level=0.3)
    ppvae.fit(m, digits, epochs=2, layer_epochs=1, batch_size=128, progress=False)
    loaded = ppvae.load(ppvae.save(m, tmp_path / "stacked"))
    assert type(loaded) is StackedAutoencoder and loaded.config == m.config
    x = digits.test.x
    torch.testing.assert_close(loaded.encode(x), m.encode(x))
    torch.testing.assert_close(loaded.reconstruct(x), m.reconstruct(x))
    assert entry("stacked-ae").plan == "layerwise" and "layerwise" in PLANS


@pytest.mark.parametrize("kwargs, message", [
    (dict(sizes=()), "sizes"),
    (dict(sizes=(16, 0)), "sizes"),
    (dict(sizes=(16, 2.5)), "sizes"),
    (dict(activation="sigmoidal"), "activation"),
    (dict(likelihood="poisson"), "likelihood"),
    (dict(noise="salt"), "noise"),
    (dict(noise="gaussian", noise_level=-0.1), "noise_level"),
    (dict(noise="masking", noise_level=1.0), "noise_level"),
    (dict(noise_level=0.2), "noise_level"),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        StackedAutoencoder((1, 8, 8), **kwargs)


def test_bad_layers_classes_and_plans():
    m = stacked()
    x = torch.rand(4, 64)
    for k in (2, -1):
        with pytest.raises(ValueError, match="layer k must be in 0..1"):
            m.layer_loss(k, x)
    with pytest.raises(ValueError, match="num_classes"):
        m.classifier(1)
    with pytest.raises(ValueError, match="layer_epochs"):
        make_plan(m, layer_epochs=-1)
    with pytest.raises(ValueError, match="layerwise plan needs"):
        make_plan(Autoencoder((1, 8, 8)), "layerwise")
