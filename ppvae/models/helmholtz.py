"""The Helmholtz machine (Dayan, Hinton, Neal & Zemel 1995) as a Pyro pair:
a sigmoid belief network and its recognition network, trained by reweighted
wake-sleep (Bornschein & Bengio 2015, "Reweighted wake-sleep";
:class:`ppvae.train.RWSPlan`).

Generative model, binary layers h_L (top) ... h_1 above the data, for each
data point i::

    h_L ~ Bernoulli(sigmoid(b_L))
    h_l ~ Bernoulli(sigmoid(W_l h_{l+1} + b_l))       l = L-1 .. 1
    x   ~ Bernoulli(sigmoid(W_0 h_1 + b_0))

and recognition model q(h_1 | x) q(h_2 | h_1) ... q(h_L | h_{L-1}), each a
layer of Bernoullis with logits linear in the layer below. Every conditional
is one linear layer (a sigmoid belief network) unless ``hidden`` adds
deterministic layers inside each. The latents are discrete, so the pair is
trained without reparameterization: reweighted wake-sleep by default (the
ELBO's gradient would need score functions). It is a density of binary x;
the importance-weighted estimator scores it with q as proposal.
``dream(n)`` draws (x, h) from the model for the sleep phase.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyro
import pyro.distributions as dist
import torch
from torch import Tensor, nn

from ppvae.models.base import LatentVariableModel, as_shape
from ppvae.models.registry import register
from ppvae.nn import MLP
from ppvae.pieces import make_likelihood


class HelmholtzMachine(LatentVariableModel):
    """A sigmoid belief network with a recognition network.

    Args:
        input_shape: ``(C, H, W)`` of the binary images (or ``D``); data flattened.
        layers: widths of the binary layers h_1 (next to x) .. h_L (top).
        hidden: deterministic hidden widths inside each conditional (empty:
            each conditional is linear, the classic sigmoid belief network).
        activation: their activation.
    """

    default_plan = "rws"

    def __init__(
        self,
        input_shape: int | Sequence[int] = (1, 8, 8),
        layers: Sequence[int] = (200, 200),
        hidden: Sequence[int] = (),
        activation: str = "tanh",
    ) -> None:
        if not layers or min(layers) < 1:
            raise ValueError(f"layers must be positive widths, at least one, got {list(layers)}")
        super().__init__(dict(input_shape=list(as_shape(input_shape)), layers=list(layers),
                              hidden=list(hidden), activation=activation), input_shape)
        self.layers = list(layers)
        self.latent_dim = self.layers[0]
        sizes = [self.input_dim, *self.layers]
        #: p(x | h_1)
        self.likelihood = make_likelihood(
            "bernoulli", MLP(sizes[1], hidden, sizes[0], activation_name=activation),
            self.input_dim)
        #: p(h_l | h_{l+1}) for l = 1 .. L-1: ``generative[l - 1]`` gives its logits
        self.generative = nn.ModuleList(
            MLP(sizes[l + 1], hidden, sizes[l], activation_name=activation)
            for l in range(1, len(self.layers)))
        self.top_logits = nn.Parameter(torch.zeros(self.layers[-1]))
        #: recognition conditionals: sizes[l] -> logits of sizes[l + 1]
        self.recognition = nn.ModuleList(
            MLP(sizes[l], hidden, sizes[l + 1], activation_name=activation)
            for l in range(len(self.layers)))

    def model(self, x: Tensor) -> None:
        """p(h_L) prod_l p(h_l | h_{l+1}) p(x | h_1)."""
        self.pyro_module()
        self.check_shape(x)
        with pyro.plate("data", len(x)):
            h = pyro.sample(f"h{len(self.layers)}",
                            dist.Bernoulli(logits=self.top_logits).to_event(1))
            for l in range(len(self.layers) - 1, 0, -1):
                h = pyro.sample(f"h{l}",
                                dist.Bernoulli(logits=self.generative[l - 1](h)).to_event(1))
            pyro.sample("x", self.likelihood(h), obs=x)

    def guide(self, x: Tensor) -> None:
        """q(h_1 | x) prod_l q(h_{l+1} | h_l)."""
        self.pyro_module()
        self.check_shape(x)
        with pyro.plate("data", len(x)):
            h = x
            for l, net in enumerate(self.recognition, 1):
                h = pyro.sample(f"h{l}", dist.Bernoulli(logits=net(h)).to_event(1))

    @torch.no_grad()
    def dream(self, n: int) -> tuple[Tensor, dict[str, Tensor]]:
        """n ancestral draws (x, {"h1": ..., "hL": ...}) from the model."""
        device = self.top_logits.device
        h = dist.Bernoulli(logits=self.top_logits).sample((n,)).to(device)
        latents = {f"h{len(self.layers)}": h}
        for l in range(len(self.layers) - 1, 0, -1):
            h = dist.Bernoulli(logits=self.generative[l - 1](h)).sample()
            latents[f"h{l}"] = h
        return self.likelihood(h).sample(), latents

    # ----------------------------------------------------------- conveniences
    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """q(h_1 = 1 | x), ``(batch, layers[0])``."""
        return torch.sigmoid(self.recognition[0](self.prepare(x)))

    def prior_codes(self, num_samples: int) -> Tensor:
        """h_1 drawn ancestrally from the top layer down (what :meth:`sample` decodes)."""
        return self.dream(num_samples)[1]["h1"]


register("helmholtz", HelmholtzMachine, summary="Helmholtz machine: a sigmoid belief network "
         "with a recognition network, trained by reweighted wake-sleep",
         paper="Dayan et al. 1995; Bornschein & Bengio 2015")
