"""Tests for :mod:`ppvae.models.m1m2`: M1's active codes and classifying
images through an M2 trained on them."""

import pytest
import torch
from torch.distributions import Normal

from ppvae.data import load_dataset
from ppvae.models import SSVAE, M1Codes


class FixedM1:
    """An M1 whose q(z1 | x) is N(x[:, :3], scale^2) (x's first three features)."""

    def __init__(self, scale):
        self.scale = scale

    def posterior(self, x):
        return Normal(x[:, :3], torch.full_like(x[:, :3], self.scale))


def test_codes_keep_the_active_dimensions_only():
    x = torch.randn(200, 5)
    x[:, 1] = 0.01 * torch.randn(200)  # varies less than ACTIVE_CODE_STD: inactive
    codes = M1Codes(FixedM1(0.5), x)
    assert codes.active.tolist() == [True, False, True]
    mean, scale = codes(x[:7])
    assert torch.equal(mean, x[:7, [0, 2]]) and torch.equal(scale, torch.full((7, 2), 0.5))
    with pytest.raises(ValueError, match="no active latent dimension"):
        M1Codes(FixedM1(0.5), x, threshold=10.0)


def test_code_dataset_has_the_splits_labels_and_training_scales():
    data = load_dataset("digits")
    codes = M1Codes(FixedM1(0.3), data.train.x[:, 20:])
    coded = codes.dataset(data, data.train.x[:, 20:])
    assert coded.input_dim == int(codes.active.sum()) and coded.num_classes == 10
    assert torch.equal(coded.train.y, data.train.y) and torch.equal(coded.test.y, data.test.y)
    assert torch.equal(coded.train.scale, torch.full_like(coded.train.x, 0.3))
    assert coded.val.scale is None and coded.test.scale is None


def test_sampled_codes_classify_as_the_mean_when_q_z1_is_a_point():
    """With (near) zero posterior scales every draw of z1 is the mean, so the
    averaged q(y | z1) picks the class that q(y | mean) picks."""
    torch.manual_seed(0)
    x = torch.randn(40, 3)
    m2 = SSVAE(3, 3, latent_dim=2, hidden=(8,), likelihood="gaussian")
    point = M1Codes(FixedM1(1e-12), x)
    assert torch.equal(point.predict(m2, x, draws=32), point.predict(m2, x))
    assert torch.equal(point.predict(m2, x), m2.predict(x))
    wide = M1Codes(FixedM1(3.0), x).predict(m2, x, draws=32, seed=0)
    assert wide.shape == (40,) and not torch.equal(wide, m2.predict(x))  # draws matter
