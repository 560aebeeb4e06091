"""Shared helpers of the benchmarks: the IWAE paper's network, FLOP counts,
the machine's measured matmul peak, and a description of the machine."""

from __future__ import annotations

import os
import platform
import time

import torch

from ppvae.models import VAE


def iwae_paper_vae(input_shape=(1, 28, 28), **kwargs) -> VAE:
    """The one-stochastic-layer MNIST model of Burda et al. (2016): encoder
    784-200-200-(50, 50), decoder 50-200-200-784, tanh, Bernoulli likelihood."""
    return VAE(input_shape, latent_dim=50, hidden=(200, 200), activation="tanh", **kwargs)


def linear_flops(module: torch.nn.Module) -> int:
    """Multiply-add FLOPs (2 per MAC) of one input row through every Linear layer."""
    return sum(2 * m.in_features * m.out_features for m in module.modules()
               if isinstance(m, torch.nn.Linear))


def matmul_peak_gflops(size: int = 2048, repeats: int = 5) -> float:
    """The best of ``repeats`` float32 ``size``-cubed matrix products, in GFLOP/s."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def machine() -> str:
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"torch {torch.__version__} with {torch.get_num_threads()} threads")
