import math

import pytest
import torch

from ppvae.infer.psis import MIN_SAMPLES_FOR_KHAT, kept_size, pareto_khat, tail_length


@pytest.mark.parametrize("shape", [0.3, 0.9])
def test_khat_recovers_the_tail_index_of_pareto_weights(shape):
    """Weights w = U^(-shape), U ~ Uniform(0, 1), have a generalized Pareto
    tail with k = shape: the median k-hat over many rows sits near it."""
    gen = torch.Generator().manual_seed(0)
    log_w = -shape * torch.rand(60, 5000, generator=gen, dtype=torch.float64).log()
    khat = pareto_khat(log_w, 5000)
    assert abs(float(khat.median()) - shape) < 0.06


def test_only_the_largest_weights_enter():
    gen = torch.Generator().manual_seed(1)
    log_w = torch.randn(4, 2000, generator=gen, dtype=torch.float64)
    top = log_w.topk(kept_size(2000), dim=1).values
    assert torch.equal(pareto_khat(log_w, 2000), pareto_khat(top.flip(1), 2000))
    assert kept_size(2000) == tail_length(2000) + 1 == math.ceil(3 * math.sqrt(2000)) + 1


def test_too_few_weights_give_nan_a_bounded_tail_minus_inf_a_dominant_few_inf():
    few = torch.randn(3, MIN_SAMPLES_FOR_KHAT - 1, dtype=torch.float64)
    assert torch.isnan(pareto_khat(few, few.shape[1])).all()
    constant = torch.full((2, 100), -3.0, dtype=torch.float64)
    assert torch.isneginf(pareto_khat(constant, 100)).all()
    dominated = torch.zeros(1, 100, dtype=torch.float64)
    dominated[0, :3] = 50.0  # three weights e^50 times all the others
    assert torch.isposinf(pareto_khat(dominated, 100)).all()
    with pytest.raises(ValueError, match="needs the"):
        pareto_khat(torch.randn(2, 5), 1000)
