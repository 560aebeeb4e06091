import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceEnum_ELBO
from torch.nn.functional import one_hot

import ppvae
from ppvae.data import DataError, label_split, load_dataset
from ppvae.infer import SemiSupervisedELBO, log_likelihood
from ppvae.models import SSVAE
from ppvae.nn import make_encoder
from ppvae.train.classifier import fit_classifier


@pytest.fixture
def small():
    torch.manual_seed(0)
    return SSVAE((1, 8, 8), num_classes=4, latent_dim=2, hidden=(16,))


def test_enumerated_unlabelled_objective_equals_brute_force_sum_over_y(small, binary_batch):
    x = binary_batch[:6]
    pyro.set_rng_seed(5)
    loss = TraceEnum_ELBO(max_plate_nesting=1).loss(small.model, small.guide, x)
    pyro.set_rng_seed(5)
    with torch.no_grad():
        ys = torch.arange(4).reshape(4, 1)
        q_z = small.encoder(x, one_hot(ys, 4).float())  # batch (C, N): one z per value of y
        z = q_z.rsample()
        elbo_y = (small.likelihood(z, one_hot(ys, 4).float()).log_prob(x) + math.log(1 / 4)
                  + small.prior().log_prob(z) - q_z.log_prob(z))  # (C, N)
        log_q_y = torch.log_softmax(small.classifier(x), -1).T  # (C, N)
        expected = -(log_q_y.exp() * (elbo_y - log_q_y)).sum()
    assert loss == pytest.approx(expected.item(), rel=1e-5)


def test_labelled_elbo_term(small, binary_batch):
    x, y = binary_batch[:6], torch.tensor([0, 1, 2, 3, 0, 1])
    pyro.set_rng_seed(2)
    loss = Trace_ELBO().loss(small.model, small.guide, x, y)
    pyro.set_rng_seed(2)
    with torch.no_grad():
        c = one_hot(y, 4).float()
        q = small.encoder(x, c)
        z = q.rsample()
        expected = -(small.likelihood(z, c).log_prob(x) + math.log(1 / 4)
                     + small.prior().log_prob(z) - q.log_prob(z)).sum()
    assert loss == pytest.approx(expected.item(), rel=1e-5)


def test_semi_supervised_objective_adds_the_classification_term(small, binary_batch):
    """-[U(x_u) + w (ELBO(x_l, y_l) + alpha log q(y_l | x_l))] / (n_u + w n_l)."""
    x_l, y_l, x_u = binary_batch[:4], torch.tensor([0, 1, 2, 3]), binary_batch[4:10]
    for alpha, w in ((0.0, 1.0), (10.0, 1.0), (10.0, 0.05)):
        pyro.set_rng_seed(1)
        got = SemiSupervisedELBO(alpha, labelled_weight=w)(small, (x_l, y_l, x_u), 1.0)
        pyro.set_rng_seed(1)
        enum = TraceEnum_ELBO(max_plate_nesting=1)
        expected = (enum.differentiable_loss(small.model, small.guide, x_u, beta=1.0)
                    + w * (Trace_ELBO().differentiable_loss(small.model, small.guide, x_l, y_l)
                           - alpha * small.classifier_log_prob(x_l, y_l).sum())) / (6 + 4 * w)
        assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    with pytest.raises(ValueError, match="labelled_weight"):
        SemiSupervisedELBO(10.0, labelled_weight=0.0)


def test_dataset_weighting_counts_every_training_image_once_per_epoch(digits, monkeypatch):
    """labelled_weight="dataset": w = (N_l / n_l) / (N_u / n_u)."""
    from ppvae.train import SemiSupervisedPlan

    seen = []
    real = SemiSupervisedPlan.loss
    monkeypatch.setattr(SemiSupervisedPlan, "loss",
                        lambda self, *a: seen.append(self.objective.labelled_weight) or real(self, *a))
    m = SSVAE(digits.image_shape, latent_dim=2, hidden=(16,))
    labels = label_split(digits.train, 50, 10, seed=0)
    ppvae.fit(m, digits, labels=labels, epochs=1, batch_size=32, labelled_per_batch=8,
              labelled_weight="dataset", progress=False)
    n_u = len(digits.train) - 50
    assert seen[-1] == pytest.approx((50 / 8) / (n_u / 32))
    with pytest.raises(ValueError, match="labelled_weight"):
        ppvae.fit(m, digits, labels=labels, epochs=1, labelled_weight="paper", progress=False)


def test_log_likelihood_marginalizes_y_exactly():
    """A 1-D latent lets us integrate p(x) = sum_y p(y) int p(z) p(x|y,z) dz on a grid."""
    torch.manual_seed(0)
    m = SSVAE(3, num_classes=3, latent_dim=1, hidden=(8,), likelihood="gaussian")
    with torch.no_grad():
        m.likelihood.raw_scale.fill_(0.55)  # sigma ~ 1
        last = m.encoder.net.layers[-1]  # q(z | x, y) = N(0, 2^2): broader than the posterior,
        last.weight.zero_()  # so the importance weights are bounded
        last.bias.copy_(torch.tensor([0.0, math.log(math.expm1(2.0))]))
    x = m.sample(5, mean=False)
    grid = torch.linspace(-8, 8, 8001).reshape(-1, 1, 1)  # (G, 1, 1)
    with torch.no_grad():
        per_y = []
        for c in range(3):
            context = one_hot(torch.tensor(c), 3).float()
            log_joint = m.likelihood(grid, context).log_prob(x) + dist.Normal(0, 1).log_prob(grid[..., 0])
            per_y.append(torch.logsumexp(log_joint, 0) + math.log(16 / 8000) + math.log(1 / 3))
        exact = torch.logsumexp(torch.stack(per_y), 0).double()
    r = log_likelihood(m.model, m.guide, x, num_samples=3000)
    assert r.khat_max < 0.5
    assert torch.allclose(r.per_datapoint, exact, atol=0.02)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", binarize="dynamic")


def test_m2_beats_the_supervised_baseline_with_10_labels_per_class(digits):
    labels = label_split(digits.train, 100, 10, seed=0)
    test_x, test_y = digits.test.x, digits.test.y
    pyro.set_rng_seed(0)
    m2 = SSVAE(digits.image_shape, latent_dim=8)
    ppvae.fit(m2, digits, labels=labels, epochs=100, batch_size=32, labelled_per_batch=16,
              alpha=50.0, progress=False)
    m2_error = (m2.predict(test_x) != test_y).float().mean().item()
    torch.manual_seed(0)
    net = make_encoder("mlp", digits.image_shape, 10, [256, 128])
    fit_classifier(net, digits, labels, epochs=100)
    with torch.no_grad():
        baseline_error = (net(test_x).argmax(-1) != test_y).float().mean().item()
    assert m2_error < baseline_error, (m2_error, baseline_error)


def test_fit_records_validation_accuracy(digits):
    m = SSVAE(digits.image_shape, latent_dim=4, hidden=(64,))
    history = ppvae.fit(m, digits, labels=50, epochs=2, progress=False)
    assert len(history.val_accuracy) == 2 and 0 <= history.val_accuracy[-1] <= 1


def test_predict_sample_and_save_load(small, binary_batch, tmp_path):
    assert small.predict_proba(binary_batch).shape == (32, 4)
    assert torch.allclose(small.predict_proba(binary_batch).sum(-1), torch.ones(32))
    assert small.predict(binary_batch).shape == (32,)
    assert small.sample(5, y=2).shape == (5, 64) and small.sample(5).shape == (5, 64)
    assert small.reconstruct(binary_batch).shape == (32, 64)
    ppvae.save(small, tmp_path)
    loaded = ppvae.load(tmp_path)
    assert torch.equal(loaded.predict_proba(binary_batch), small.predict_proba(binary_batch))


@pytest.mark.parametrize("labels, message", [
    (torch.tensor([0, 1, 4]), r"0\.\.3"),
    (torch.tensor([0, 1, -1]), r"0\.\.3"),
    (torch.tensor([0.0, 1.0, 2.0]), "integer class labels"),
    (torch.tensor([0, 1]), r"shape \(3,\)"),
])
def test_bad_labels(small, binary_batch, labels, message):
    with pytest.raises(ValueError, match=message):
        small.encode(binary_batch[:3], labels)


def test_bad_label_splits(digits):
    with pytest.raises(DataError, match="multiple of the 10 classes"):
        label_split(digits.train, 5, 10)
    with pytest.raises(DataError, match="multiple of the 10 classes"):
        label_split(digits.train, 105, 10)
    with pytest.raises(DataError, match="fewer than"):
        label_split(digits.train, 2000, 10)
    with pytest.raises(ValueError, match="labels=N"):
        ppvae.fit(SSVAE(), digits, epochs=1, progress=False)
    with pytest.raises(ValueError, match="takes no option.*labels"):
        ppvae.fit(ppvae.models.VAE(), digits, labels=100, epochs=1, progress=False)


def test_label_split_is_balanced_and_seeded(digits):
    a = label_split(digits.train, 50, 10, seed=0)
    b = label_split(digits.train, 50, 10, seed=1)
    assert torch.bincount(a.labelled.y, minlength=10).tolist() == [5] * 10
    assert len(a.labelled) + len(a.unlabelled) == len(digits.train)
    assert not torch.equal(a.labelled.x, b.labelled.x)
    assert torch.equal(a.labelled.x, label_split(digits.train, 50, 10, seed=0).labelled.x)
