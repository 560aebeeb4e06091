import os

import matplotlib
import pyro
import pytest
import torch

matplotlib.use("Agg")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True)
def _seed_and_clean_param_store():
    pyro.set_rng_seed(0)
    pyro.clear_param_store()
    yield


@pytest.fixture
def binary_batch():
    """32 random binary 8x8 images, flattened."""
    return torch.bernoulli(torch.full((32, 64), 0.3), generator=torch.Generator().manual_seed(1))


def data_root():
    """$PPVAE_DATA, or skip the test with the reason."""
    root = os.environ.get("PPVAE_DATA")
    if not root:
        pytest.skip("PPVAE_DATA is not set: it must point to the MNIST-family files")
    return root
