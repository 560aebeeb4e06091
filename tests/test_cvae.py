import json
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from sklearn.linear_model import LogisticRegression
from torch.nn.functional import one_hot

import ppvae
from ppvae.cli import main
from ppvae.data import HIDDEN, DataError, load_dataset, mask_quadrants, quadrant_mask
from ppvae.infer import evaluate_elbo, log_likelihood
from ppvae.models import CVAE, CompletionBaseline


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", binarize="dynamic")


# ---------------------------------------------------------------- masks
@pytest.mark.parametrize("shape", [(1, 8, 8), (1, 28, 28), (3, 6, 4)])
def test_quadrant_masks(shape):
    c, h, w = shape
    for q in (1, 2, 3):
        given = quadrant_mask(shape, q).reshape(shape)
        assert given.shape == shape and given.dtype == torch.bool
        assert given.sum() == c * q * (h // 2) * (w // 2)  # q quadrants of every channel
        assert given[:, h // 2:, : w // 2].all()  # the bottom-left quadrant is always given
        assert not given[:, h // 2:, w // 2:].any()  # the bottom-right never
    assert quadrant_mask(shape, 2).reshape(shape)[:, :, : w // 2].all()  # 2: the left half
    assert quadrant_mask(shape, 3).reshape(shape)[:, : h // 2].all()  # 3: and the top half


def test_mask_quadrants_keeps_given_pixels_and_marks_the_others(binary_batch):
    c = mask_quadrants(binary_batch, (1, 8, 8), 2)
    given = quadrant_mask((1, 8, 8), 2)
    assert torch.equal(c[:, given], binary_batch[:, given])
    assert (c[:, ~given] == HIDDEN).all()
    for bad in (0, 4, 1.5):
        with pytest.raises(DataError, match="1, 2 or 3"):
            quadrant_mask((1, 8, 8), bad)
    with pytest.raises(DataError, match=r"\(C, H, W\)"):
        quadrant_mask((64,), 1)


# ------------------------------------------------------------ the model
def test_trace_shapes_and_only_hidden_pixels_are_scored(binary_batch):
    m = CVAE((1, 8, 8), condition="quadrants", quadrants=1, latent_dim=3, hidden=(32,))
    x, c = m.condition_batch(binary_batch, None)
    guide_tr = poutine.trace(m.guide).get_trace(x, c)
    model_tr = poutine.trace(poutine.replay(m.model, trace=guide_tr)).get_trace(x, c)
    assert model_tr.nodes["z"]["value"].shape == (32, 3)
    assert [f.name for f in model_tr.nodes["x"]["cond_indep_stack"]] == ["data"]
    site = model_tr.nodes["x"]
    hidden = c == HIDDEN
    logits = m.likelihood.net(guide_tr.nodes["z"]["value"], c)
    by_hand = (dist.Bernoulli(logits=logits).log_prob(x) * hidden).sum(-1)
    assert torch.allclose(site["fn"].log_prob(x), by_hand, atol=1e-5)
    flipped_given = torch.where(hidden, x, 1 - x)  # the given pixels do not count
    assert torch.allclose(site["fn"].log_prob(flipped_given), by_hand, atol=1e-5)
    flipped_hidden = torch.where(hidden, 1 - x, x)
    assert not torch.allclose(site["fn"].log_prob(flipped_hidden), by_hand, atol=1e-2)


def test_baseline_log_likelihood_is_exact_for_any_k(binary_batch):
    b = CompletionBaseline((1, 8, 8), quadrants=3, hidden=(32,))
    x, c = b.condition_batch(binary_batch, None)
    with torch.no_grad():
        probs = torch.sigmoid(b.likelihood.net(c))
        exact = ((x * probs.log() + (1 - x) * (1 - probs).log()) * (c == HIDDEN)).sum(-1)
    for k in (1, 7):
        r = b.log_likelihood(x, num_samples=k)
        assert torch.allclose(r.per_datapoint.float(), exact, atol=1e-4)
    # the ELBO of a model without latents is its log-likelihood; batches split x and c
    elbo = evaluate_elbo(b.model, b.guide, x, c, batch_size=7)
    assert elbo == pytest.approx(exact.mean().item(), abs=1e-4)


def _set_guide_to_posterior(m: CVAE, inflate: float) -> tuple[torch.Tensor, torch.Tensor]:
    """For a linear-Gaussian CVAE whose prior scale does not depend on c, set
    q(z | x, c) to the exact posterior mean with marginal standard deviations
    times ``inflate``. Returns the class means and covariances of p(x | c)."""
    k, latent = m.num_classes, m.latent_dim
    eye = torch.eye(k)
    prior = m.prior(eye)
    loc, s2 = prior.base_dist.loc, prior.base_dist.scale[0] ** 2  # (K, L), (L,)
    w = m.likelihood.net.layers[0].weight  # (D, L + K): [W_z, W_c]
    w_z, w_c, b = w[:, :latent], w[:, latent:], m.likelihood.net.layers[0].bias
    sigma2 = float(m.likelihood.scale) ** 2
    cov = torch.linalg.inv(torch.diag(1 / s2) + w_z.T @ w_z / sigma2)  # posterior covariance
    gain = cov @ w_z.T / sigma2
    # posterior mean = cov S^-1 loc_c + gain (x - W_c c - b), linear in (x, one-hot c)
    prior_part = loc @ (cov @ torch.diag(1 / s2)).T  # (K, L)
    layer = m.encoder.net.layers[0]
    layer.weight.zero_()
    layer.weight[:latent, : m.input_dim] = gain
    layer.weight[:latent, m.input_dim :] = (prior_part - (w_c.T @ gain.T)).T
    layer.bias.zero_()
    layer.bias[:latent] = -gain @ b
    std = inflate * cov.diagonal().sqrt() - m.encoder.min_scale
    layer.bias[latent:] = torch.log(torch.expm1(std))
    means = loc @ w_z.T + w_c.T + b  # (K, D)
    covs = w_z @ torch.diag(s2) @ w_z.T + sigma2 * torch.eye(m.input_dim)
    return means, covs.expand(k, -1, -1)


@torch.no_grad()
def test_conditional_iw_estimate_is_below_the_exact_value_and_converges_to_it():
    """A CVAE with linear networks and a Gaussian likelihood is a conditional
    linear-Gaussian model: z | c ~ N(A c + a, S), x | z, c ~ N(W z + B c + b, s^2 I),
    so p(x | c) = N(W (A c + a) + B c + b, W S W^T + s^2 I) exactly."""
    torch.manual_seed(0)
    m = CVAE(6, condition="label", num_classes=3, latent_dim=2, hidden=(), likelihood="gaussian")
    m.prior.net.layers[0].weight[2:] = 0  # the prior's scale does not depend on c
    m.prior.net.layers[0].bias[2:] = 0.3
    m.likelihood.raw_scale.fill_(-0.4)  # sigma ~ 0.5
    m.likelihood.net.layers[0].weight.mul_(3.0)  # a strong dependence of x on z
    means, covs = _set_guide_to_posterior(m, inflate=3.0)
    y = torch.arange(300) % 3
    c = m.prepare_condition(y)
    x = m.sample(c, 1, mean=False)[0]
    exact = dist.MultivariateNormal(means[y], covs[y]).log_prob(x).double()
    result = log_likelihood(m.model, m.guide, x, c, num_samples=3000)
    curve = result.by_num_samples | {3000: result.per_datapoint}
    gaps, stderrs = [], []
    for k, estimate in sorted(curve.items()):
        d = estimate - exact
        gaps.append(float(d.mean()))
        stderrs.append(float(d.std()) / math.sqrt(len(d)))
        assert gaps[-1] <= 3 * stderrs[-1], k  # a lower bound
    assert gaps[0] < -1  # K = 1, the ELBO, is loose with a diagonal, inflated guide
    assert gaps[0] < gaps[1] < gaps[2] < gaps[3]  # K = 1, 10, 100, 1000: tighter with K
    # and at K = 3000 equal to the exact value within Monte Carlo error (here ~0.002)
    assert abs(gaps[-1]) < 4 * stderrs[-1]
    assert m.log_likelihood(x, y, num_samples=10).mean == pytest.approx(
        log_likelihood(m.model, m.guide, x, c, num_samples=10).mean)


# ------------------------------------------------------ conditional sampling
def test_completions_keep_the_given_pixels(binary_batch):
    m = CVAE((1, 8, 8), condition="quadrants", quadrants=2, latent_dim=3, hidden=(32,))
    c = mask_quadrants(binary_batch, (1, 8, 8), 2)
    given = c != HIDDEN
    samples = m.sample(c, 4)
    assert samples.shape == (4, 32, 64)
    assert torch.equal(samples[:, given], c[given].expand(4, -1))
    assert not torch.equal(samples[0], samples[1])  # z ~ p(z | c) varies
    reconstructions = m.reconstruct(binary_batch, c)
    assert reconstructions.shape == (32, 64) and torch.equal(reconstructions[given], c[given])
    with pytest.raises(ValueError, match=r"z must have shape \(batch, 3\)"):
        m.decode(torch.zeros(32, 2), c)
    draws = m.sample(c, 2, mean=False)
    assert set(draws.unique().tolist()) <= {0.0, 1.0}
    for predicted in (m.predict(c), CompletionBaseline((1, 8, 8), quadrants=2).predict(c)):
        assert predicted.shape == (32, 64) and torch.equal(predicted[given], c[given])
        assert ((predicted >= 0) & (predicted <= 1)).all()


def test_class_conditional_samples_show_their_class(digits):
    pyro.set_rng_seed(0)
    m = CVAE(digits.image_shape, condition="label", latent_dim=4, hidden=(128,))
    history = ppvae.fit(m, digits, epochs=40, batch_size=64, progress=False)
    assert history.val_elbo[-1] > history.val_elbo[0] + 10
    classifier = LogisticRegression(max_iter=500).fit(digits.train.x.numpy(),
                                                      digits.train.y.numpy())
    torch.manual_seed(1)
    samples = m.sample(torch.arange(10), 20)  # (20, 10, 64): 20 per class
    predicted = torch.as_tensor(classifier.predict(samples.reshape(-1, 64).numpy()))
    accuracy = (predicted == torch.arange(10).repeat(20)).float().mean().item()
    assert accuracy > 0.8, accuracy  # chance is 0.1


# ----------------------------------------------------------- bad input
@pytest.fixture
def label_cvae():
    return CVAE((1, 8, 8), condition="label", num_classes=4, latent_dim=2, hidden=(16,))


@pytest.mark.parametrize("c, message", [
    (torch.tensor([0, 1, 4]), r"0\.\.3"),
    (torch.tensor([0, -1, 2]), r"0\.\.3"),
    (torch.tensor([0.0, 1.0, 2.0]), "integer class labels"),
    (torch.zeros(3, 5), "one-hot rows of shape"),
    (torch.full((3, 4), 0.25), "not one-hot"),
    (torch.tensor([0, 1]), "2 conditions for 3 data points"),
])
def test_bad_labels(label_cvae, binary_batch, c, message):
    with pytest.raises(ValueError, match=message):
        label_cvae.log_likelihood(binary_batch[:3], c, num_samples=2)


def test_bad_partial_images(binary_batch):
    m = CVAE((1, 8, 8), condition="quadrants", latent_dim=2, hidden=(16,))
    c = mask_quadrants(binary_batch, (1, 8, 8), 1)
    with pytest.raises(ValueError, match=r"partial images of shape \(batch, 64\)"):
        m.sample(c[:, :60])
    with pytest.raises(ValueError, match=r"\[0, 1\] and -1"):
        m.sample(torch.where(c == HIDDEN, -2.0, c))
    with pytest.raises(ValueError, match="row 1 has no hidden pixel"):
        m.predict(torch.cat([c[:1], binary_batch[1:2]]))
    with pytest.raises(ValueError, match=r"expects c of shape \(32, 64\)"):
        m.model(binary_batch, c[:5])
    assert m.sample(c.reshape(32, 1, 8, 8)).shape == (1, 32, 64)  # image-shaped is fine


@pytest.mark.parametrize("kwargs, message", [
    (dict(condition="pixels"), "unknown condition"),
    (dict(condition="quadrants", quadrants=4), "1, 2 or 3"),
    (dict(condition="quadrants", likelihood="gaussian"), "pixels in \\[0, 1\\]"),
    (dict(condition="label", num_classes=1), "at least 2"),
    (dict(input_shape=64, condition="quadrants"), r"\(C, H, W\)"),
])
def test_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CVAE(**kwargs)


def test_fit_needs_a_dataset_with_good_labels(digits, label_cvae):
    with pytest.raises(ValueError, match="trains on a Dataset"):
        ppvae.fit(label_cvae, digits.train.x, epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"0\.\.3"):  # digits has 10 classes
        ppvae.fit(label_cvae, digits, epochs=1, progress=False)
    with pytest.raises(ValueError, match="needs the condition"):
        label_cvae.log_likelihood(torch.zeros(2, 64))


# ------------------------------------------------------------ save / load
@pytest.mark.parametrize("make", [
    lambda: CVAE((1, 8, 8), condition="label", latent_dim=2, hidden=(16,)),
    lambda: CVAE((1, 8, 8), condition="quadrants", quadrants=3, latent_dim=2, hidden=(16,),
                 network="conv"),
    lambda: CompletionBaseline((1, 8, 8), quadrants=2, hidden=(16,)),
])
def test_save_load_round_trip(make, binary_batch, tmp_path):
    m = make()
    json.dumps(m.config)
    x, c = m.condition_batch(binary_batch, torch.arange(32) % 10)
    ppvae.save(m, tmp_path)
    loaded = ppvae.load(tmp_path)
    assert type(loaded) is type(m) and loaded.config == m.config
    assert torch.equal(loaded.predict(c), m.predict(c))
    assert torch.equal(loaded.log_likelihood(x, c, num_samples=5).per_datapoint,
                       m.log_likelihood(x, c, num_samples=5).per_datapoint)


# ---------------------------------------------------------------- CLI
def test_cli_cvae_benchmark_writes_results_and_resumes(tmp_path, capsys):
    out = tmp_path / "bench"
    argv = ["cvae", "--out", str(out), "--epochs", "2", "--baseline-epochs", "2", "--hidden",
            "32", "--latent-dim", "2", "--num-samples", "5", "--max-test", "40",
            "--no-progress"]
    assert main(argv) == 0
    results = json.loads((out / "cvae_results.json").read_text())
    cells = {(r["quadrants"], r["method"]) for r in results["records"]}
    assert cells == {(q, m) for q in (1, 2, 3) for m in ("baseline", "cvae")}
    for r in results["records"]:
        assert r["nll"] > 0 and r["num_datapoints"] == 40 and r["epochs"] == 2
        assert r["num_samples"] == (1 if r["method"] == "baseline" else 5)
    table = (out / "cvae_results.md").read_text()
    assert "| method | 1 | 2 | 3 |" in table and "| cvae |" in table
    assert (out / "cvae_results.png").read_bytes()[:4] == b"\x89PNG"
    for q in (1, 2, 3):
        assert (out / f"completions_q{q}.png").stat().st_size > 1000
    capsys.readouterr()
    assert main(argv) == 0  # a second run finds every cell done
    assert capsys.readouterr().err.count(": done before") == 6
    assert main([*argv[:-1], "--epochs", "3"]) == 2  # other settings: refused
    assert "other settings" in capsys.readouterr().err


def test_benchmark_warms_up_the_cvae_kl_only(tmp_path, monkeypatch):
    from ppvae.experiments import cvae as experiment

    warmups = []

    def recording(model, *args, **kwargs):
        warmups.append((type(model).__name__, kwargs["kl_warmup_epochs"]))
        return fit(model, *args, **kwargs)

    fit = experiment.fit
    monkeypatch.setattr(experiment, "fit", recording)
    experiment.run_cvae(tmp_path / "run", quadrants=(2,), epochs=1, baseline_epochs=1,
                        hidden=(16,), latent_dim=2, num_samples=2, max_test=8,
                        kl_warmup_epochs=3.0, progress=False)
    assert sorted(warmups) == [("CVAE", 3.0), ("CompletionBaseline", 0.0)]
    assert experiment.CVAESettings().kl_warmup_epochs > 0
    with pytest.raises(ValueError, match="kl_warmup_epochs"):
        experiment.CVAESettings(kl_warmup_epochs=-1)


@pytest.mark.parametrize("condition", ["label", "quadrants"])
def test_cli_train_evaluate_and_sample_a_cvae(tmp_path, condition, capsys):
    run = tmp_path / "run"
    assert main(["train", "--model", "cvae", "--condition", condition, "--epochs", "2",
                 "--hidden", "32", "--latent-dim", "2", "--no-progress", "--out", str(run)]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["condition"] == condition
    saved = json.loads((run / "model" / "model.json").read_text())["config"]
    data_set = ("input_shape", "num_classes")  # from the data set, not options
    assert {k: config[k] for k in saved if k not in data_set} == {
        k: v for k, v in saved.items() if k not in data_set}  # one source: the constructor
    assert (run / "samples.png").stat().st_size > 1000
    assert main(["evaluate", str(run), "-k", "10", "--max-points", "50", "--no-progress"]) == 0
    loglik = json.loads((run / "loglik.json").read_text())
    assert loglik["num_datapoints"] == 50 and loglik["mean"] < 0
    assert main(["sample", str(run), "--out", str(tmp_path / "s.png")]) == 0
    assert main(["latent-map", str(run)]) == 2
    assert "CVAE offers no latent_map figure; it offers ['samples']" in capsys.readouterr().err
    assert main(["train", "--quadrants", "2", "--epochs", "1", "--no-progress"]) == 2
    assert "unrecognized arguments: --quadrants" in capsys.readouterr().err
