import os

# One thread per process: the tests' networks are small, and the data-parallel
# and command-line tests start more processes; with a thread pool each, they
# oversubscribe a 2-core machine and stall (set before torch is imported, so
# the subprocesses inherit it too).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import matplotlib  # noqa: E402
import pyro  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

matplotlib.use("Agg")
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


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


@pytest.fixture(scope="session")
def correlated_ppca():
    """A factory of PPCA models whose posterior has correlation -0.8 (the best
    diagonal Gaussian misses it by KL = 0.52 nats), with 6 data points drawn
    from the model: ``correlated_ppca() -> (model, x)``, seeded."""
    from ppvae.models import LinearGaussian

    def make():
        torch.manual_seed(0)
        model = LinearGaussian(4, 2, sigma=0.5)
        with torch.no_grad():
            model.likelihood.net.layers[0].weight.copy_(
                torch.tensor([[1.0, 0.8], [0.6, 0.9], [0.3, 0.1], [0.2, 0.4]]))
            x = torch.randn(6, 2) @ model.weight.T + model.bias + 0.5 * torch.randn(6, 4)
        return model, x

    return make
