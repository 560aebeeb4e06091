"""Plain ``torch.nn`` encoder and decoder networks.

Every network maps an input tensor, optionally with a *context* tensor (a one-hot
label, a conditioning image, ...), to a flat feature vector::

    net(inputs, context=None) -> Tensor[..., out_features]

Leading dimensions are arbitrary (``(batch,)`` in training, ``(particles, batch)``
in vectorized importance sampling), and a context with fewer leading dimensions
is broadcast against the input. Nothing here knows about Pyro or distributions:
the generative pieces (:mod:`ppvae.pieces`) turn these features into
distribution parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import islice
import torch
from torch import Tensor, nn
from torch.nn.functional import linear

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "softplus": nn.Softplus,
    "leaky_relu": nn.LeakyReLU,
    "sigmoid": nn.Sigmoid,
}


def activation(name: str) -> nn.Module:
    """Return a fresh activation module by name (one of :data:`ACTIVATIONS`)."""
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}"
        ) from None


def concat_context(inputs: Tensor, context: Tensor | None) -> Tensor:
    """Concatenate ``context`` to ``inputs`` on the last dimension, broadcasting
    the leading (batch/particle) dimensions of both."""
    if context is None:
        return inputs
    batch = torch.broadcast_shapes(inputs.shape[:-1], context.shape[:-1])
    inputs = inputs.expand(*batch, inputs.shape[-1])
    context = context.to(inputs.dtype).expand(*batch, context.shape[-1])
    return torch.cat([inputs, context], dim=-1)


class MLP(nn.Module):
    """Multi-layer perceptron ``in_features (+ context_features) -> hidden... -> out_features``.

    The last layer is linear (no activation): its outputs are distribution
    parameters in unconstrained space.

    With a context c, the first layer computes W [x; c] + b as
    W_x x + (W_c c + b), each part on its own leading dimensions before they
    are broadcast together: where one x meets many contexts (M2's guide
    q(z | x, y) with its 10 classes enumerated: x of shape (batch, D), c of
    shape (10, 1, 10)), the large product W_x x is computed once per x
    instead of once per (x, c) pair. The parameters are those of one
    ``nn.Linear`` on the concatenation, so the weights are the same either
    way (:func:`concat_context` is that concatenation).
    """

    def __init__(
        self,
        in_features: int,
        hidden: Sequence[int],
        out_features: int,
        *,
        context_features: int = 0,
        activation_name: str = "relu",
    ) -> None:
        super().__init__()
        sizes = [in_features + context_features, *hidden]
        layers: list[nn.Module] = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(n_in, n_out), activation(activation_name)]
        layers.append(nn.Linear(sizes[-1], out_features))
        self.layers = nn.Sequential(*layers)
        self.out_features = out_features

    @property
    def output_bias(self) -> Tensor:
        """The last layer's bias, one per output feature (a parameter: set it
        in place, under ``torch.no_grad()``)."""
        return self.layers[-1].bias

    def forward(self, inputs: Tensor, context: Tensor | None = None) -> Tensor:
        if context is None:
            return self.layers(inputs)
        first = self.layers[0]
        d = inputs.shape[-1]
        h = (linear(inputs, first.weight[:, :d])
             + linear(context.to(inputs.dtype), first.weight[:, d:], first.bias))
        for layer in islice(self.layers, 1, None):
            h = layer(h)
        return h


def _downsampled(image_shape: Sequence[int], steps: int, channels: int) -> tuple[int, int, int]:
    """Shape (channels, H, W) after ``steps`` stride-2 convolutions (padding 1)."""
    _, height, width = image_shape
    for _ in range(steps):
        height, width = (height + 1) // 2, (width + 1) // 2
    return channels, height, width


class ConvEncoder(nn.Module):
    """Convolutional encoder: stride-2 3x3 convolutions, then a linear head.

    Takes flattened images ``(..., C*H*W)`` and returns ``(..., out_features)``.
    A context vector is concatenated after the convolutional trunk.
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        out_features: int,
        *,
        channels: Sequence[int] = (32, 64),
        hidden: int = 256,
        context_features: int = 0,
        activation_name: str = "relu",
    ) -> None:
        super().__init__()
        self.image_shape = tuple(image_shape)
        layers: list[nn.Module] = []
        c_in = self.image_shape[0]
        for c_out in channels:
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), activation(activation_name)]
            c_in = c_out
        self.trunk = nn.Sequential(*layers, nn.Flatten())
        trunk_features = int(torch.tensor(_downsampled(self.image_shape, len(channels), channels[-1])).prod())
        self.head = MLP(
            trunk_features,
            [hidden],
            out_features,
            context_features=context_features,
            activation_name=activation_name,
        )
        self.out_features = out_features

    def forward(self, inputs: Tensor, context: Tensor | None = None) -> Tensor:
        batch = inputs.shape[:-1]
        features = self.trunk(inputs.reshape(-1, *self.image_shape))
        return self.head(features.reshape(*batch, -1), context)


class ConvDecoder(nn.Module):
    """Convolutional decoder, the mirror of :class:`ConvEncoder`.

    Maps ``(..., in_features)`` (plus context) through a linear layer to a small
    feature map, upsamples it with stride-2 transposed convolutions and crops to
    the image size. Returns ``(..., out_channels*H*W)`` flattened, where
    ``out_channels = C * params_per_pixel``.
    """

    def __init__(
        self,
        in_features: int,
        image_shape: Sequence[int],
        *,
        params_per_pixel: int = 1,
        channels: Sequence[int] = (64, 32),
        hidden: int = 256,
        context_features: int = 0,
        activation_name: str = "relu",
    ) -> None:
        super().__init__()
        self.image_shape = tuple(image_shape)
        self.start_shape = _downsampled(self.image_shape, len(channels), channels[0])
        self.stem = MLP(
            in_features,
            [hidden],
            int(torch.tensor(self.start_shape).prod()),
            context_features=context_features,
            activation_name=activation_name,
        )
        self.stem_activation = activation(activation_name)
        layers: list[nn.Module] = []
        c_in = channels[0]
        for c_out in channels[1:]:
            layers += [
                nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1),
                activation(activation_name),
            ]
            c_in = c_out
        out_channels = self.image_shape[0] * params_per_pixel
        layers.append(nn.ConvTranspose2d(c_in, out_channels, 4, stride=2, padding=1))
        self.upsample = nn.Sequential(*layers)
        self.out_features = out_channels * self.image_shape[1] * self.image_shape[2]

    def forward(self, inputs: Tensor, context: Tensor | None = None) -> Tensor:
        features = self.stem_activation(self.stem(inputs, context))
        batch = features.shape[:-1]
        maps = features.reshape(-1, *self.start_shape)
        out = self.upsample(maps)[..., : self.image_shape[1], : self.image_shape[2]]
        return out.reshape(*batch, -1)


def make_encoder(
    kind: str,
    image_shape: Sequence[int],
    out_features: int,
    hidden: Sequence[int],
    *,
    context_features: int = 0,
    activation_name: str = "relu",
) -> nn.Module:
    """Build an encoder network of ``kind`` ``"mlp"`` or ``"conv"``.

    For ``"conv"``, ``hidden[-1]`` (if given) is the width of the dense layer
    after the convolutions.
    """
    in_features = int(torch.tensor(image_shape).prod())
    if kind == "mlp":
        return MLP(in_features, hidden, out_features, context_features=context_features,
                   activation_name=activation_name)
    if kind == "conv":
        _check_conv_shape(image_shape)
        return ConvEncoder(image_shape, out_features, hidden=hidden[-1] if hidden else 256,
                           context_features=context_features, activation_name=activation_name)
    raise ValueError(f"unknown network kind {kind!r}; choose 'mlp' or 'conv'")


def make_decoder(
    kind: str,
    in_features: int,
    image_shape: Sequence[int],
    hidden: Sequence[int],
    *,
    params_per_pixel: int = 1,
    context_features: int = 0,
    activation_name: str = "relu",
) -> nn.Module:
    """Build a decoder network of ``kind`` ``"mlp"`` or ``"conv"``; ``hidden``
    is given encoder-side first and reversed here so the decoder mirrors it."""
    out_features = int(torch.tensor(image_shape).prod()) * params_per_pixel
    if kind == "mlp":
        return MLP(in_features, list(reversed(hidden)), out_features,
                   context_features=context_features, activation_name=activation_name)
    if kind == "conv":
        _check_conv_shape(image_shape)
        return ConvDecoder(in_features, image_shape, params_per_pixel=params_per_pixel,
                           hidden=hidden[-1] if hidden else 256,
                           context_features=context_features, activation_name=activation_name)
    raise ValueError(f"unknown network kind {kind!r}; choose 'mlp' or 'conv'")


def _check_conv_shape(image_shape: Sequence[int]) -> None:
    if len(image_shape) != 3 or min(image_shape) < 1:
        raise ValueError(
            f"a convolutional network needs an image shape (C, H, W), got {tuple(image_shape)}"
        )
