"""Sparse coding and predictive sparse decomposition: FISTA against exact and
long-run minimizers and the optimality (KKT) conditions, the negative ELBO as
the sparse-coding energy plus its constants, the unit-norm dictionary,
training on digits, argument checks and save/load."""

import math

import pytest
import torch

import ppvae
from ppvae.data import load_dataset
from ppvae.infer import reconstruction_error
from ppvae.models.psd import PredictiveSparseDecomposition, fista, soft_threshold
from ppvae.models.registry import entry
from ppvae.train import ReconstructionPlan


def energy(x, D, z, lam):
    """1/2 |x - D z|^2 + lam |z|_1 per row."""
    return 0.5 * (x - z @ D.T).pow(2).sum(-1) + lam * z.abs().sum(-1)


def random_problem(seed=0, d_in=20, atoms=40, n=8):
    """An overcomplete, non-orthogonal dictionary with unit columns, and data."""
    gen = torch.Generator().manual_seed(seed)
    D = torch.randn(d_in, atoms, generator=gen, dtype=torch.float64)
    return D / D.norm(dim=0), torch.randn(n, d_in, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("scale", [1.0, 3.0])
def test_fista_is_exact_for_an_orthogonal_dictionary(scale):
    # D = c Q with orthonormal columns: z* = soft_threshold(c Q^T x, lam) / c^2
    gen = torch.Generator().manual_seed(1)
    Q, _ = torch.linalg.qr(torch.randn(20, 8, generator=gen, dtype=torch.float64))
    x = torch.randn(16, 20, generator=gen, dtype=torch.float64)
    z0 = torch.randn(16, 8, generator=gen, dtype=torch.float64)
    lam = 0.7 * scale  # the same zeros at every scale
    exact = soft_threshold(scale * x @ Q, lam) / scale**2
    assert 0.2 < float((exact == 0).double().mean()) < 0.8  # the threshold matters
    for start in (None, z0):
        z = fista(x, scale * Q, lam, 5, z0=start)
        torch.testing.assert_close(z, exact, rtol=0, atol=1e-12)


def test_fista_reaches_the_minimum_and_its_optimality_conditions():
    D, x = random_problem()
    lam = 0.3
    # reference: 5000 steps of plain ISTA, written out independently
    L = float(torch.linalg.eigvalsh(D.T @ D).max())
    ref = torch.zeros(len(x), D.shape[1], dtype=x.dtype)
    for _ in range(5000):
        ref = soft_threshold(ref - (ref @ D.T - x) @ D / L, lam / L)
    best = energy(x, D, ref, lam)
    z = fista(x, D, lam, 1000)
    torch.testing.assert_close(energy(x, D, z, lam), best, rtol=0, atol=1e-9)
    torch.testing.assert_close(z, ref, rtol=0, atol=1e-4)
    # KKT: |D^T (x - D z)|_j <= lam everywhere, = lam sign(z_j) on the support
    g = (x - z @ D.T) @ D
    support = z != 0
    assert 0.1 < float(support.double().mean()) < 0.9
    assert float(g.abs().max()) <= lam + 1e-5
    torch.testing.assert_close(g[support], lam * z[support].sign(), rtol=0, atol=1e-5)
    # Beck & Teboulle's rate from 0: gap after k steps <= 2 L |z*|^2 / (k + 1)^2
    for k in (1, 10, 50):
        gap = energy(x, D, fista(x, D, lam, k), lam) - best
        assert bool((gap <= 2 * L * ref.pow(2).sum(-1) / (k + 1) ** 2 + 1e-12).all())
    # a warm start at the minimizer stays there
    torch.testing.assert_close(fista(x, D, lam, 5, z0=ref), ref, rtol=0, atol=1e-8)


def test_negative_elbo_is_the_sparse_coding_energy_plus_constants():
    torch.manual_seed(0)
    lam, alpha, atoms = 0.4, 2.0, 32
    model = PredictiveSparseDecomposition((1, 8, 8), latent_dim=atoms, sparsity=lam,
                                          prediction=alpha, iterations=30)
    x = torch.as_tensor(load_dataset("digits").test.x[:50]).reshape(50, -1)
    reconstruction, penalty = ReconstructionPlan(model).terms((x,))
    z, D = model.sparse_codes(x), model.dictionary()
    constants = 64 / 2 * math.log(2 * math.pi) + atoms * math.log(2 / lam)
    torch.testing.assert_close(reconstruction.detach(), (energy(x, D, z, lam) + constants).mean())
    prediction = alpha * (z - model.predict_codes(x)).pow(2).sum(-1).mean()
    torch.testing.assert_close(penalty.detach(), prediction)
    # z* is a constant: the energy trains D only, the penalty trains F only
    encoder = [model.gains, *model.encoder.parameters()]
    grads = torch.autograd.grad(reconstruction, [model.likelihood.net.atoms, *encoder],
                                allow_unused=True)
    assert grads[0] is not None and float(grads[0].abs().max()) > 0
    assert all(g is None for g in grads[1:])
    grads = torch.autograd.grad(penalty, [model.likelihood.net.atoms, *encoder],
                                allow_unused=True)
    assert grads[0] is None and all(g is not None for g in grads[1:])


def test_the_dictionary_has_unit_columns_whatever_its_parameters():
    model = PredictiveSparseDecomposition(10, latent_dim=6)
    D = model.dictionary()
    assert D.shape == (10, 6)
    torch.testing.assert_close(D.norm(dim=0), torch.ones(6))
    with torch.no_grad():
        model.likelihood.net.atoms.mul_(torch.tensor([0.01, 0.5, 2.0, 7.0, 30.0, 1.0]))
    torch.testing.assert_close(model.dictionary().norm(dim=0), torch.ones(6))
    torch.testing.assert_close(model.dictionary(), D)  # the scales of V do not matter


@pytest.fixture(scope="module")
def trained():
    """(untrained copy's codes, trained model, digits), trained 5 epochs."""
    data = load_dataset("digits")
    torch.manual_seed(0)
    model = PredictiveSparseDecomposition(data.image_shape)
    x = data.test.x
    before = model.sparse_codes(x), model.predict_codes(x), model.reconstruct(x)
    history = ppvae.fit(model, data, epochs=5, lr=1e-2, progress=False)
    return before, model, data, history


def relative_error(predicted, codes):
    return float((predicted - codes).norm() / codes.norm())


def test_training_on_digits_teaches_the_encoder_to_predict_sparse_codes(trained):
    (z0, f0, r0), model, data, history = trained
    x = torch.as_tensor(data.test.x).reshape(len(data.test.x), -1)
    assert history.metrics["val_loss"][-1] < history.metrics["val_loss"][0]
    z, f = model.sparse_codes(x), model.predict_codes(x)
    assert relative_error(f, z) < 0.5 * relative_error(f0, z0)  # F(x) nears z*(x)
    assert float((z == 0).float().mean()) > 0.6  # over 60% of the code values are exactly 0
    error = (x - model.reconstruct(x)).pow(2).sum(-1).mean()
    assert float(error) < 0.5 * float((x - r0).pow(2).sum(-1).mean())
    torch.testing.assert_close(model.dictionary().norm(dim=0), torch.ones(64))
    torch.testing.assert_close(model.encode(x), f)
    torch.testing.assert_close(model.encode(x, method="ista"), z)
    assert set(model.figures(data)) == {"reconstructions", "latent_map"}


def test_save_and_load_round_trip(trained, tmp_path):
    _, model, data, _ = trained
    loaded = ppvae.load(ppvae.save(model, tmp_path / "psd"))
    assert isinstance(loaded, PredictiveSparseDecomposition) and loaded.config == model.config
    x = data.test.x[:100]
    for method in ("predict", "ista"):
        torch.testing.assert_close(loaded.encode(x, method=method),
                                   model.encode(x, method=method), rtol=0, atol=0)


def test_registration_and_declarations():
    assert entry("psd").cls is PredictiveSparseDecomposition
    model = PredictiveSparseDecomposition(16, latent_dim=4, prediction=0.0)
    assert model.default_plan == "reconstruction" and model.density is False
    assert model.penalties(torch.rand(3, 16)) == {}  # alpha = 0: plain sparse coding
    with pytest.raises(ValueError, match="not a generative density"):
        model.sample(4)
    x = torch.rand(5, 16)
    with pytest.raises(ValueError, match="point mass"):
        model.log_likelihood(x, num_samples=3)
    scored = reconstruction_error(model.model, model.guide, x)  # what `ppvae evaluate` reports
    torch.testing.assert_close(scored.squared_error, (x - model.reconstruct(x)).pow(2).sum(-1))


@pytest.mark.parametrize("kwargs, message", [
    (dict(sparsity=0.0), "sparsity"), (dict(sparsity=-1.0), "sparsity"),
    (dict(sparsity=float("nan")), "sparsity"), (dict(prediction=-0.1), "prediction"),
    (dict(prediction=float("inf")), "prediction"), (dict(iterations=0), "iterations"),
    (dict(iterations=2.5), "iterations"), (dict(latent_dim=0), "latent_dim"),
])
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PredictiveSparseDecomposition(16, **kwargs)


def test_bad_calls_raise():
    model = PredictiveSparseDecomposition(16, latent_dim=4)
    x = torch.rand(3, 16)
    with pytest.raises(ValueError, match="unknown method 'fista'"):
        model.encode(x, method="fista")
    with pytest.raises(ValueError, match="iterations"):
        model.sparse_codes(x, iterations=0)
    with pytest.raises(ValueError, match=r"shape \(batch, 16\)"):
        model.sparse_codes(torch.rand(3, 15))
    with pytest.raises(ValueError, match="NaN"):
        model.predict_codes(torch.full((2, 16), float("nan")))
    with pytest.raises(ValueError, match="at least 1 iteration"):
        fista(x, torch.eye(16, 4), 0.1, 0)
