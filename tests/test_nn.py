import pytest
import torch

from ppvae.nn import MLP, concat_context, make_decoder, make_encoder


@pytest.mark.parametrize("kind", ["mlp", "conv"])
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 7, 5)])
def test_encoder_decoder_shapes_with_leading_dims(kind, shape):
    d = shape[0] * shape[1] * shape[2]
    enc = make_encoder(kind, shape, 6, [32], context_features=10)
    dec = make_decoder(kind, 3, shape, [32], context_features=10)
    x, y = torch.rand(4, d), torch.eye(10)[:4]
    assert enc(x, y).shape == (4, 6)
    z = torch.randn(5, 4, 3)  # (particles, batch, latent)
    assert dec(z, y).shape == (5, 4, d)
    assert dec(z[0], y).shape == (4, d)


def test_concat_context_broadcasts_leading_dims():
    out = concat_context(torch.zeros(5, 4, 3), torch.ones(4, 2))
    assert out.shape == (5, 4, 5) and bool((out[..., 3:] == 1).all())
    assert concat_context(torch.zeros(2, 3), None).shape == (2, 3)


@pytest.mark.parametrize("x_shape, c_shape", [
    ((4, 6), (4, 3)),         # one context per input (labelled batches)
    ((4, 6), (5, 1, 3)),      # every input with every context (y enumerated)
    ((7, 4, 6), (4, 3)),      # particles of inputs, one context per data point
    ((4, 6), (3,)),           # one context for all
])
def test_mlp_with_context_is_the_network_on_the_concatenation(x_shape, c_shape):
    """The first layer's split product W_x x + W_c c + b equals W [x; c] + b."""
    torch.manual_seed(0)
    net = MLP(6, [8, 5], 2, context_features=3, activation_name="tanh").double()
    x, c = torch.randn(x_shape, dtype=torch.float64), torch.randn(c_shape, dtype=torch.float64)
    expected = net.layers(concat_context(x, c))
    out = net(x, c)
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    (g,) = torch.autograd.grad(out.sum(), net.layers[0].weight)
    (g_ref,) = torch.autograd.grad(net.layers(concat_context(x, c)).sum(), net.layers[0].weight)
    torch.testing.assert_close(g, g_ref, rtol=1e-12, atol=1e-12)
    # a context of another dtype (a float32 one-hot label beside float64 inputs)
    assert net(x, c.float()).dtype == torch.float64


def test_mlp_last_layer_is_linear():
    net = MLP(3, [8, 8], 2, activation_name="tanh")
    assert isinstance(net.layers[-1], torch.nn.Linear)
    assert net.output_bias is net.layers[-1].bias
    assert sum(isinstance(m, torch.nn.Tanh) for m in net.layers) == 2


def test_unknown_kind():
    with pytest.raises(ValueError, match="unknown network kind"):
        make_encoder("transformer", (1, 8, 8), 4, [8])
