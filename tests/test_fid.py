"""The Frechet distance against closed forms, and the shipped classifier's
FID validated on MNIST: real against real near zero, noise far."""

import math

import numpy as np
import pytest
import torch
from scipy.linalg import sqrtm

from conftest import data_root
from ppvae.metrics import classifier_fid, feature_statistics, frechet_distance, load_classifier


def test_one_dimension_and_commuting_covariances():
    d = frechet_distance(torch.tensor([1.0]), torch.tensor([[4.0]]),
                         torch.tensor([-0.5]), torch.tensor([[0.25]]))
    assert d == pytest.approx(1.5 ** 2 + (2.0 - 0.5) ** 2)
    a, b = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([4.0, 0.5, 3.0])
    d = frechet_distance(torch.zeros(3), torch.diag(a), torch.ones(3), torch.diag(b))
    assert d == pytest.approx(3 + float((a.sqrt() - b.sqrt()).pow(2).sum()))


def test_general_covariances_match_the_matrix_square_root():
    gen = torch.Generator().manual_seed(0)
    m1, m2 = torch.randn(5, 5, generator=gen), torch.randn(5, 5, generator=gen)
    c1, c2 = m1 @ m1.T + 0.1 * torch.eye(5), m2 @ m2.T + 0.1 * torch.eye(5)
    mu1, mu2 = torch.randn(5, generator=gen), torch.randn(5, generator=gen)
    c1n, c2n = c1.double().numpy(), c2.double().numpy()
    expected = (float((mu1 - mu2).pow(2).sum()) + np.trace(c1n) + np.trace(c2n)
                - 2 * np.trace(sqrtm(c1n @ c2n)).real)
    assert frechet_distance(mu1, c1, mu2, c2) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(mu1, c1, mu1, c1) == pytest.approx(0.0, abs=1e-9)


def test_a_covariance_asymmetric_by_rounding_is_at_distance_zero_from_itself():
    # a BLAS product m m^T can differ from its transpose by a float32 unit
    gen = torch.Generator().manual_seed(0)
    m = torch.randn(5, 5, generator=gen, dtype=torch.float64)
    c = m @ m.T + 0.1 * torch.eye(5, dtype=torch.float64)
    c[3, 1] += 2.0 ** -22
    mu = torch.randn(5, generator=gen, dtype=torch.float64)
    assert frechet_distance(mu, c, mu, c) == pytest.approx(0.0, abs=1e-9)


def test_the_shipped_classifier_and_its_fid_on_mnist():
    from ppvae.data import load_dataset

    data = load_dataset("mnist", data_root())
    net = load_classifier()
    with torch.no_grad():
        accuracy = float((net(data.test.x).argmax(-1) == data.test.y).float().mean())
    assert accuracy > 0.985
    # MNIST's test file is ordered (its halves come from different writers):
    # real against real takes random halves
    order = torch.randperm(10000, generator=torch.Generator().manual_seed(0))
    first, second = data.test.x[order[:5000]], data.test.x[order[5000:]]
    real = classifier_fid(first, second, net)
    also_real = classifier_fid(data.val.x, data.test.x, net)
    blurred = torch.nn.functional.avg_pool2d(first.reshape(-1, 1, 28, 28), 3, 1, 1)
    degraded = classifier_fid(blurred.reshape(-1, 784), second, net)
    noise = classifier_fid(torch.rand(5000, 784, generator=torch.Generator().manual_seed(0)),
                           second, net)
    assert max(real, also_real) < 3.0, (real, also_real)
    assert 20 * max(real, also_real) < degraded < noise / 5, (degraded, noise)
    mu, cov = feature_statistics(data.test.x[:100], net)
    assert mu.shape == (128,) and cov.shape == (128, 128) and math.isfinite(float(cov.sum()))
    with pytest.raises(ValueError, match="784"):
        feature_statistics(torch.zeros(10, 64), net)
