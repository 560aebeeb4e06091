"""Stacked (denoising) autoencoders: a deep autoencoder pretrained greedily,
one layer at a time, then fine-tuned whole (Bengio, Lamblin, Popovici &
Larochelle 2007, "Greedy layer-wise training of deep networks"; Vincent,
Larochelle, Lajoie, Bengio & Manzagol 2010, "Stacked denoising autoencoders";
Hinton & Salakhutdinov 2006, "Reducing the dimensionality of data with neural
networks").

The unrolled deep autoencoder is the Pyro pair of
:class:`~ppvae.models.autoencoder.Autoencoder` (MAP inference of the code with
a point-mass guide; not a density of x), for each data point::

    h_0 = x,  h_{k+1} = s(W_k h_k + b_k)    k = 0, ..., L - 1; the code z = h_L
    z ~ p(z)                                flat (improper)
    x ~ p(x | z)                            N(g(z), I), continuous Bernoulli or
                                            Bernoulli, with parameters g(z)
    q(z | x) = delta(z - h_L)

where s is the activation of every code layer (the last included) and the
decoder g mirrors the encoder: layer k's decoder s(V_k h_{k+1} + c_k)
reconstructs h_k for k > 0, and V_0 h_1 + c_0 gives the parameters of
p(x | z) (its mean or logits).

Greedy pretraining (:class:`ppvae.train.LayerwisePlan`) trains layer k alone
as a one-layer (denoising) autoencoder of h_k, the codes of the trained
layers below held fixed (no gradient through them)::

    h~_k ~ C(h~_k | h_k)                        the corruption, if any
    loss_0 = -log p(x | V_0 s(W_0 h~_0 + b_0) + c_0)          the model's likelihood
    loss_k = |h_k - s(V_k s(W_k h~_k + b_k) + c_k)|^2 / 2      k > 0

(for the hidden codes, which are not data, squared error: the negative
log-density of N(h_k; ., I) up to a constant). W_k, b_k, V_k, c_k are the
weights of the unrolled model itself, so pretraining initializes the deep
autoencoder that fine-tuning then trains by the reconstruction of x. With a
corruption, each layer is a denoising autoencoder of its clean input
(Vincent et al. 2010), and in fine-tuning the guide sees C(x) in train mode,
as the denoising autoencoder's does.

``classifier(num_classes)`` is the encoder stack with a linear layer on the
code, for supervised fine-tuning (:func:`ppvae.train.classifier.fit_classifier`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ppvae.models.autoencoder import Autoencoder
from ppvae.models.base import check_num_classes
from ppvae.models.registry import register
from ppvae.pieces import Corruption, make_likelihood


class _Parameters(nn.Module):
    """The identity as an observation model's network: the likelihood of x
    given its parameters (a decoder's output) themselves."""

    def forward(self, inputs: Tensor, context: Tensor | None = None) -> Tensor:
        return inputs


class StackedAutoencoder(Autoencoder):
    """A stacked (denoising) autoencoder as a Pyro model/guide pair, trained
    by greedy layer-wise pretraining then fine-tuning (``"layerwise"`` plan).

    Args:
        input_shape: ``(C, H, W)`` of the images, or ``D`` for flat vectors.
        sizes: widths of the stacked codes h_1, ..., h_L; the last is the
            code's ``latent_dim``.
        activation: activation of every code layer, the code z = h_L
            included, and of the decoder's hidden layers (sigmoid throughout,
            as the classic stacked denoising autoencoder).
        likelihood: p(x | z) of the full reconstruction, as for
            :class:`~ppvae.models.autoencoder.Autoencoder`; also the first
            layer's pretraining loss.
        noise: ``None``, ``"gaussian"`` or ``"masking"``: the corruption of
            each layer's input in pretraining, and of x in fine-tuning
            (:class:`ppvae.pieces.Corruption`; train mode only).
        noise_level: the corruption's level (0 without noise).

    ``num_layers`` is L; ``layer_loss(k, x)`` is layer k's pretraining loss and
    ``layer_parameters(k)`` the parameters it trains.
    """

    default_plan = "layerwise"

    def __init__(
        self,
        input_shape: int | Sequence[int] = (1, 8, 8),
        sizes: Sequence[int] = (500, 500, 100),
        activation: str = "sigmoid",
        likelihood: str = "gaussian",
        noise: str | None = None,
        noise_level: float = 0.0,
    ) -> None:
        sizes = list(sizes)
        if not sizes or any(isinstance(s, bool) or not isinstance(s, int) or s < 1
                            for s in sizes):
            raise ValueError(f"sizes must be one or more positive integer widths, got {sizes!r}")
        if noise is None and noise_level != 0:
            raise ValueError(f"noise_level={noise_level} needs noise='gaussian' or 'masking'")
        corruption = None if noise is None else Corruption(noise, noise_level)
        super().__init__(input_shape, latent_dim=sizes[-1], hidden=sizes[:-1],
                         likelihood=likelihood, network="mlp", activation=activation,
                         code_activation=activation)
        self.config = dict(input_shape=list(self.input_shape), sizes=sizes,
                           activation=activation, likelihood=likelihood, noise=noise,
                           noise_level=noise_level)
        self.corruption = corruption
        #: L, the number of stacked layers
        self.num_layers = len(sizes)
        #: p(x | parameters): the first layer's pretraining likelihood, on
        #: the output of its own decoder (the unrolled decoder's last layer)
        self.layer_likelihood = make_likelihood(likelihood, _Parameters(), self.input_dim,
                                                gaussian_scale=1.0)

    # ------------------------------------------------------------- the layers
    def _check_layer(self, k: int) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < self.num_layers:
            raise ValueError(f"layer k must be in 0..{self.num_layers - 1}, got {k!r}")

    def _encoder(self, k: int) -> tuple[nn.Linear, nn.Module]:
        """W_k, b_k and the activation of layer k's code."""
        layers = self.encoder.layers
        last = k == self.num_layers - 1
        return layers[2 * k], self.code_activation if last else layers[2 * k + 1]

    def _decoder(self, k: int) -> tuple[nn.Linear, nn.Module]:
        """V_k, c_k and the activation of layer k's reconstruction (the
        identity for k = 0: the parameters of p(x | z))."""
        layers, j = self.likelihood.net.layers, self.num_layers - 1 - k
        return layers[2 * j], nn.Identity() if k == 0 else layers[2 * j + 1]

    def layer_parameters(self, k: int) -> list[nn.Parameter]:
        """The parameters layer k's pretraining trains: W_k, b_k, V_k, c_k."""
        self._check_layer(k)
        return [*self._encoder(k)[0].parameters(), *self._decoder(k)[0].parameters()]

    def layer_code(self, k: int, h: Tensor) -> Tensor:
        """h_{k+1} = s(W_k h + b_k), the code of layer k's input ``h``."""
        self._check_layer(k)
        linear, act = self._encoder(k)
        return act(linear(h))

    def layer_loss(self, k: int, x: Tensor) -> Tensor:
        """Layer k's pretraining loss, a mean over the batch ``x`` ``(batch,
        D)``: the reconstruction of its input h_k (h_0 = x; computed without
        gradient) from the code of its corruption (in train mode), through
        layer k's decoder: -log p(x | .) for k = 0, |h_k - .|^2 / 2 above."""
        self._check_layer(k)
        self.check_shape(x)
        h = x
        with torch.no_grad():
            for i in range(k):
                h = self.layer_code(i, h)
        linear, act = self._decoder(k)
        out = act(linear(self.layer_code(k, self.corrupt(h))))
        if k == 0:
            return -self.layer_likelihood(out).log_prob(x).mean()
        return 0.5 * (out - h).pow(2).sum(-1).mean()

    # ------------------------------------------------------------- classifier
    def classifier(self, num_classes: int) -> nn.Module:
        """A classifier network, flattened x ``(batch, D)`` -> class logits:
        a copy of the encoder stack x -> h_L with its current weights (the
        pretrained ones once trained), then a new linear layer to
        ``num_classes`` logits, for supervised fine-tuning
        (:func:`ppvae.train.classifier.fit_classifier`). A copy: fine-tuning
        it leaves this autoencoder unchanged. Of an untrained model it is the
        same network from random weights (the baseline without pretraining).
        Returned in train mode.
        """
        check_num_classes(num_classes)
        return nn.Sequential(copy.deepcopy(self.encoder), copy.deepcopy(self.code_activation),
                             nn.Linear(self.latent_dim, num_classes)).to(self.device).train()


register("stacked-ae", StackedAutoencoder, summary="stacked (denoising) autoencoder: greedy "
         "layer-wise pretraining, then fine-tuning of the whole stack; not a density",
         paper="Bengio, Lamblin, Popovici & Larochelle 2007; Vincent et al. 2010; "
               "Hinton & Salakhutdinov 2006")
