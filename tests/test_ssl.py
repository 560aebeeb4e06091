"""Tests for :mod:`ppvae.experiments.ssl` and ``ppvae ssl``: results files,
resuming, the M1 cache, argument checks and the command line, on tiny settings."""

import dataclasses
import json
import shutil

import pytest
import torch
import yaml

from ppvae.cli import main
from ppvae.data import DataError
from ppvae.experiments import METHODS, SSLSettings, run_ssl
from ppvae.experiments import ssl
from ppvae.models import m1m2

TINY = dict(epochs=1, m1_epochs=2, supervised_epochs=1, latent_dim=2, m1_latent_dim=2,
            hidden=(16,), labelled_per_batch=10, progress=False)
RECORD_KEYS = {"method", "labels", "seed", "test_error", "epochs", "seconds", "dataset"}


@pytest.fixture
def calls(monkeypatch):
    """Counts the models trained by ``run_ssl``: by class name for ``fit``,
    ``"classifier"`` for the baseline."""
    counts = {}

    def counting(name, train):
        def wrapper(model, *args, **kwargs):
            key = type(model).__name__ if name == "fit" else name
            counts[key] = counts.get(key, 0) + 1
            return train(model, *args, **kwargs)
        return wrapper

    monkeypatch.setattr(ssl, "fit", counting("fit", ssl.fit))
    monkeypatch.setattr(ssl, "fit_classifier", counting("classifier", ssl.fit_classifier))
    return counts


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny experiment: every method, 50 labels, seed 0."""
    out = tmp_path_factory.mktemp("ssl") / "run"
    results = run_ssl(out, labels=(50,), seeds=(0,), **TINY)
    return out, results


def read(out):
    return json.loads((out / "ssl_results.json").read_text())


def test_run_writes_records_summary_table_and_figure(finished):
    out, results = finished
    stored = read(out)
    assert stored == json.loads(json.dumps(results))
    assert [(r["method"], r["labels"], r["seed"]) for r in stored["records"]] == [
        (m, 50, 0) for m in METHODS]
    for r in stored["records"]:
        assert RECORD_KEYS <= r.keys()
        assert 0 <= r["test_error"] <= 1 and r["seconds"] > 0 and r["dataset"] == "digits"
    m1m2 = stored["records"][1]
    assert m1m2["m1_epochs"] == 2 and m1m2["epochs"] == 1
    assert 0 <= m1m2["test_error_sampled"] <= 1
    assert stored["summary"] == [
        {"method": r["method"], "labels": 50, "mean": r["test_error"], "spread": None,
         "count": 1} for r in stored["records"]]
    table = (out / "ssl_results.md").read_text()
    assert table.startswith("test error (%) on digits (mean ± std over seeds) (1 per cell)")
    assert "| method | 50 |" in table
    assert f"| m2 | {100 * stored['records'][0]['test_error']:.1f} |" in table
    assert (out / "ssl_results.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "m1" / "seed0" / "model.safetensors").is_file()


def test_resume_skips_finished_cells_and_trains_m1_once_per_seed(finished, tmp_path, calls):
    out = tmp_path / "run"
    shutil.copytree(finished[0], out)
    before = read(out)["records"]
    results = run_ssl(out, labels=(50, 100), seeds=(0, 1), methods=("m1m2",), **TINY)
    # new cells: (100, seed 0), (50, seed 1), (100, seed 1); seed 0's M1 comes from disk
    assert calls == {"VAE": 1, "SSVAE": 3}
    assert results["records"][:4] == before
    assert [(r["labels"], r["seed"]) for r in results["records"][4:]] == [
        (100, 0), (50, 1), (100, 1)]
    assert read(out)["records"] == results["records"]
    assert {(s["method"], s["labels"]): s["count"] for s in results["summary"]} == {
        ("m2", 50): 1, ("m1m2", 50): 2, ("m1m2", 100): 2, ("aae", 50): 1, ("supervised", 50): 1}


@pytest.mark.parametrize("labels", [(55,), (0,), (50, 105)])
def test_bad_label_counts_fail_before_training(tmp_path, calls, labels):
    with pytest.raises(DataError, match="positive multiple of the 10 classes"):
        run_ssl(tmp_path / "run", labels=labels, **TINY)
    assert calls == {} and not (tmp_path / "run").exists()


@pytest.mark.parametrize("kwargs, message", [
    (dict(methods=("m3",)),
     r"methods must be among \['m2', 'm1m2', 'aae', 'supervised'\], got \['m3'\]"),
    (dict(seeds=()), "seeds must not be empty"),
    (dict(epochs=0), "epochs must be at least 1"),
    (dict(max_minutes=0), "max_minutes must be above 0, got 0"),
    (dict(labelled_weight=0.0), "labelled_weight must be a positive number"),
    (dict(labelled_weight="paper"), "labelled_weight must be a positive number"),
    (dict(likelihood="poisson"), r"likelihood must be among .*, got \['poisson'\]"),
])
def test_bad_arguments_fail_before_training(tmp_path, calls, kwargs, message):
    with pytest.raises(ValueError, match=message):
        run_ssl(tmp_path / "run", **{**TINY, **kwargs})
    assert calls == {}


def test_time_limit_reaches_every_generative_fit(tmp_path, monkeypatch):
    limits = []

    def recording(model, *args, **kwargs):
        limits.append((type(model).__name__, kwargs.get("max_minutes")))
        return fit(model, *args, **kwargs)

    fit = ssl.fit
    monkeypatch.setattr(ssl, "fit", recording)
    results = run_ssl(tmp_path / "run", labels=(50,), methods=("m1m2", "m2"),
                      **{**TINY, "max_minutes": 0.5})
    assert sorted(limits) == [("SSVAE", 0.5), ("SSVAE", 0.5), ("VAE", 0.5)]
    assert results["config"]["max_minutes"] == 0.5


def test_labelled_weight_reaches_m2s_fit(tmp_path, monkeypatch):
    weights = []

    def recording(model, *args, **kwargs):
        weights.append(kwargs.get("labelled_weight"))
        return fit(model, *args, **kwargs)

    fit = ssl.fit
    monkeypatch.setattr(ssl, "fit", recording)
    results = run_ssl(tmp_path / "run", labels=(50,), methods=("m2",),
                      **{**TINY, "labelled_weight": "dataset"})
    assert weights == ["dataset"] and results["config"]["labelled_weight"] == "dataset"


def test_grey_likelihood_reaches_every_model_and_its_data(tmp_path, monkeypatch):
    """With a likelihood for grey levels, M2 and M1 use it and every method,
    the baseline too, trains and is tested on the grey images."""
    seen = []

    def recording(name, train):
        def wrapper(model, data, *args, **kwargs):
            likelihood = getattr(model, "config", {}).get("likelihood")
            x = data.train.x
            grey = "codes" if data.train.scale is not None else bool(((x > 0) & (x < 1)).any())
            seen.append((name, type(model).__name__, likelihood, data.binarize, grey))
            return train(model, data, *args, **kwargs)
        return wrapper

    monkeypatch.setattr(ssl, "fit", recording("fit", ssl.fit))
    monkeypatch.setattr(ssl, "fit_classifier", recording("classifier", ssl.fit_classifier))
    results = run_ssl(tmp_path / "run", labels=(50,), **{**TINY,
                                                        "likelihood": "continuous-bernoulli"})
    cb = "continuous-bernoulli"
    assert seen == [("fit", "SSVAE", cb, None, True),   # m2 on grey images
                    ("fit", "VAE", cb, None, True),     # M1 of m1m2 on grey images
                    ("fit", "SSVAE", "gaussian", None, "codes"),  # M2 on M1's codes
                    ("fit", "CategoricalAdversarialAutoencoder", cb, None, True),
                    ("classifier", "MLP", None, None, True)]
    assert results["config"]["likelihood"] == cb
    assert all(0 <= r["test_error"] <= 1 for r in results["records"])


def test_m1_hidden_sizes_m1_alone(tmp_path, monkeypatch):
    sizes = []

    def recording(model, *args, **kwargs):
        sizes.append((type(model).__name__, tuple(model.config["hidden"])))
        return fit(model, *args, **kwargs)

    fit = ssl.fit
    monkeypatch.setattr(ssl, "fit", recording)
    results = run_ssl(tmp_path / "run", labels=(50,), methods=("m1m2",),
                      **{**TINY, "m1_hidden": (24, 12)})
    assert sizes == [("VAE", (24, 12)), ("SSVAE", (16,))]
    assert results["config"]["m1_hidden"] == [24, 12]


def test_m1_activation_and_learning_rate_reach_m1_alone(tmp_path, monkeypatch):
    seen = []

    def recording(model, *args, **kwargs):
        seen.append((type(model).__name__, model.config.get("activation"), kwargs["lr"]))
        return fit(model, *args, **kwargs)

    fit = ssl.fit
    monkeypatch.setattr(ssl, "fit", recording)
    monkeypatch.setattr(m1m2, "ACTIVE_CODE_STD", 0.0)  # a 2-epoch M1 need not use its codes
    results = run_ssl(tmp_path / "run", labels=(50,), methods=("m1m2",),
                      **{**TINY, "m1_activation": "softplus", "m1_lr": 3e-4})
    assert seen == [("VAE", "softplus", 3e-4), ("SSVAE", "relu", 1e-3)]
    assert (results["config"]["m1_activation"], results["config"]["m1_lr"]) == ("softplus", 3e-4)
    for bad, message in (({"m1_activation": "sigmoidal"}, "unknown activation"),
                         ({"m1_lr": 0.0}, "m1_lr must be above 0, got 0.0")):
        with pytest.raises(ValueError, match=message):
            run_ssl(tmp_path / "bad", labels=(50,), methods=("m1m2",), **{**TINY, **bad})


def test_m2_of_m1m2_learns_from_draws_of_the_active_codes(tmp_path, monkeypatch):
    """M2 of M1+M2 gets M1's active dimensions: the training codes with
    q(z1 | x)'s scales, to be drawn anew in each batch; validation and test
    codes the posterior means."""
    seen = []

    def recording(model, data, *args, **kwargs):
        seen.append((type(model).__name__, data))
        return fit(model, data, *args, **kwargs)

    fit = ssl.fit
    monkeypatch.setattr(ssl, "fit", recording)
    results = run_ssl(tmp_path / "run", labels=(50,), methods=("m1m2",),
                      **{**TINY, "m1_latent_dim": 6, "m1_epochs": 3})
    (_, images), (_, codes) = seen
    dims = results["records"][0]["m1_dims"]
    assert 1 <= dims <= 6 and codes.input_dim == dims
    assert codes.train.scale is not None and codes.train.scale.shape == codes.train.x.shape
    assert codes.val.scale is None and codes.test.scale is None
    assert torch.equal(codes.test.y, images.test.y)
    assert bool((codes.train.x.std(0) > m1m2.ACTIVE_CODE_STD).all())


def test_m1_without_active_codes_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(m1m2, "ACTIVE_CODE_STD", 1e6)
    with pytest.raises(ValueError, match="no active latent dimension"):
        run_ssl(tmp_path / "run", labels=(50,), methods=("m1m2",), **TINY)


def test_results_written_before_newer_settings_resume(finished, calls):
    """Files from before the settings existed were run with weight 1, a
    Bernoulli likelihood and M1 as wide as M2."""
    path = finished[0] / "ssl_results.json"
    stored = json.loads(path.read_text())
    del stored["config"]["labelled_weight"]
    del stored["config"]["likelihood"]
    del stored["config"]["m1_hidden"]
    del stored["config"]["m1_activation"]
    del stored["config"]["m1_lr"]
    path.write_text(json.dumps(stored))
    results = run_ssl(finished[0], labels=(50,), seeds=(0,), **TINY)
    assert calls == {} and len(results["records"]) == len(stored["records"])


def test_results_of_other_settings_are_not_mixed(finished, calls):
    default = SSLSettings().alpha
    with pytest.raises(ValueError, match=f"other settings.*alpha={default}; now alpha=10.0"):
        run_ssl(finished[0], labels=(50,), **TINY, alpha=10.0)
    assert calls == {}


def test_cli_defaults_are_the_settings(capsys):
    assert main(["ssl", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    for field in dataclasses.fields(SSLSettings):
        default = getattr(SSLSettings(), field.name)
        assert printed[field.name] == (list(default) if isinstance(default, tuple)
                                       else default), field.name
    assert (printed["dataset"], printed["labels"], printed["seeds"], tuple(printed["methods"])
            ) == ("digits", [100], [0], METHODS)

    def parsed(*argv):
        assert main(["ssl", *argv, "--print-config"]) == 0
        return yaml.safe_load(capsys.readouterr().out)

    assert parsed("--labelled-weight", "dataset")["labelled_weight"] == "dataset"
    assert parsed("--labelled-weight", "0.25")["labelled_weight"] == 0.25
    assert parsed("--likelihood", "gaussian")["likelihood"] == "gaussian"
    assert parsed("--m1-hidden", "600", "600")["m1_hidden"] == [600, 600]
    assert parsed("--m1-activation", "softplus", "--m1-lr", "3e-4")["m1_lr"] == 3e-4


@pytest.mark.parametrize("weight", ["0", "-1", "paper"])
def test_cli_bad_labelled_weight_fails_before_training(tmp_path, calls, capsys, weight):
    assert main(["ssl", "--labelled-weight", weight, "--out", str(tmp_path / "run")]) == 2
    assert "labelled_weight must be a positive number" in capsys.readouterr().err
    assert calls == {}


def test_cli_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["ssl", "--out", str(out), "--labels", "50", "--methods", "m2", "supervised",
            "--epochs", "1", "--supervised-epochs", "1", "--hidden", "16", "--latent-dim", "2",
            "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr()
    assert "| m2 | " in printed.out and "| supervised | " in printed.out
    assert "| method | 50 |" in printed.out
    assert "[2/2] method supervised, labels 50, seed 0: test error" in printed.err
    assert [r["method"] for r in read(out)["records"]] == ["m2", "supervised"]
    assert (out / "ssl_results.md").is_file() and (out / "ssl_results.png").is_file()
    assert main(argv) == 0  # done before: nothing trained again
    assert "2 cells, 2 done before" in capsys.readouterr().err


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["ssl", "--out", str(tmp_path / "run"), "--labels", "55", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("ppvae: error: num_labels must be a positive multiple")
    assert "\n" not in err
    assert main(["ssl", "--help"]) == 0
    assert "--labelled_weight" in capsys.readouterr().out
