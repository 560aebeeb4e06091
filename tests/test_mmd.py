"""The MMD estimator against the closed form for Gaussians and a brute-force sum."""

import math

import pytest
import torch

from ppvae.infer.mmd import kernel_matrix, mmd2


def expected_rbf(mu1, var1, mu2, var2, scale):
    """E k(x, y) for x ~ N(mu1, var1 I), y ~ N(mu2, var2 I) and the RBF kernel
    of width ``scale``: x - y ~ N(mu1 - mu2, (var1 + var2) I), and
    E exp(-|u|^2 / (2 s^2)) for u ~ N(m, v I) in d dimensions is
    (s^2 / (s^2 + v))^(d/2) exp(-|m|^2 / (2 (s^2 + v)))."""
    d, v, s2 = len(mu1), var1 + var2, scale ** 2
    return (s2 / (s2 + v)) ** (d / 2) * math.exp(-float((mu1 - mu2).pow(2).sum()) / (2 * (s2 + v)))


def test_the_unbiased_estimate_matches_the_closed_form_for_gaussians():
    torch.manual_seed(0)
    mu1, mu2 = torch.zeros(3), torch.tensor([0.5, -0.3, 0.0])
    var1, var2, scale = 1.0, 0.6, 1.3
    exact = (expected_rbf(mu1, var1, mu1, var1, scale) + expected_rbf(mu2, var2, mu2, var2, scale)
             - 2 * expected_rbf(mu1, var1, mu2, var2, scale))
    draws = torch.stack([mmd2(mu1 + math.sqrt(var1) * torch.randn(50, 3),
                              mu2 + math.sqrt(var2) * torch.randn(40, 3), "rbf", scale)
                         for _ in range(2000)])
    stderr = float(draws.std() / math.sqrt(len(draws)))
    assert abs(float(draws.mean()) - exact) < 4 * stderr
    assert 4 * stderr < 0.1 * exact  # precise enough to see a bias of 10%


def test_the_estimate_is_the_brute_force_sum_and_near_zero_for_one_distribution():
    torch.manual_seed(1)
    x, y = torch.randn(6, 2), torch.randn(5, 2) + 1

    def k(a, b):
        c = 2 * 2 * 0.7 ** 2
        return c / (c + float((a - b).pow(2).sum()))

    brute = (sum(k(x[i], x[j]) for i in range(6) for j in range(6) if i != j) / 30
             + sum(k(y[i], y[j]) for i in range(5) for j in range(5) if i != j) / 20
             - 2 * sum(k(x[i], y[j]) for i in range(6) for j in range(5)) / 30)
    assert float(mmd2(x, y, "imq", 0.7)) == pytest.approx(brute, rel=1e-5)
    same = torch.stack([mmd2(torch.randn(30, 2), torch.randn(30, 2)) for _ in range(500)])
    assert abs(float(same.mean())) < 4 * float(same.std()) / math.sqrt(500)


def test_several_scales_sum_and_bad_input_is_refused():
    x, y = torch.randn(4, 2), torch.randn(3, 2)
    torch.testing.assert_close(kernel_matrix(x, y, "rbf", [0.5, 2.0]),
                               kernel_matrix(x, y, "rbf", 0.5) + kernel_matrix(x, y, "rbf", 2.0))
    for args, message in (((x, y, "cosine"), "unknown kernel"), ((x, y, "imq", 0.0), "positive"),
                          ((x, torch.randn(3, 3)), "points"), ((x[:1], y), "at least 2")):
        with pytest.raises(ValueError, match=message):
            mmd2(*args)
