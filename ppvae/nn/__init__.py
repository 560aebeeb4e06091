"""Plain ``torch.nn`` building blocks (no Pyro): MLP and convolutional
encoders/decoders that map ``(inputs, context)`` to flat feature vectors."""

from ppvae.nn.networks import (
    ACTIVATIONS,
    MLP,
    ConvDecoder,
    ConvEncoder,
    activation,
    concat_context,
    make_decoder,
    make_encoder,
)

__all__ = [
    "ACTIVATIONS",
    "MLP",
    "ConvDecoder",
    "ConvEncoder",
    "activation",
    "concat_context",
    "make_decoder",
    "make_encoder",
]
