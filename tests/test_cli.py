import json
import os
import shutil
import subprocess
import sys

import pytest

from ppvae.cli import main

FAST = ["--epochs", "2", "--no-progress", "--latent-dim", "2", "--hidden", "32"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", *FAST, "--out", str(out)]) == 0
    return out


def test_train_writes_a_complete_run_directory(run_dir, capsys):
    for name in ["config.json", "metrics.json", "model/model.json", "model/model.safetensors",
                 "checkpoints/last.ckpt", "logs/version_0/metrics.csv", "elbo.png", "reconstructions.png",
                 "samples.png", "latent_map.png", "latent_manifold.png"]:
        assert (run_dir / name).is_file(), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert len(metrics["train_elbo"]) == len(metrics["val_elbo"]) == 2
    assert metrics["test_elbo"] < 0
    config = json.loads((run_dir / "config.json").read_text())
    assert config["dataset"] == "digits" and config["latent_dim"] == 2
    assert config["binarize"] == "dynamic"


@pytest.mark.parametrize("command, figure", [("sample", "samples.png"),
                                             ("reconstruct", "reconstructions.png"),
                                             ("latent-map", "latent_map.png")])
def test_figure_commands(run_dir, tmp_path, command, figure, capsys):
    out = tmp_path / figure
    assert main([command, str(run_dir), "--out", str(out)]) == 0
    assert out.stat().st_size > 1000


def test_config_file_is_overridden_by_flags(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("latent-dim: 3\nepochs: 1\nbeta: 2.0\nhidden: [16]\n")
    out = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--beta", "0.5", "--no-progress",
                 "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert (config["latent_dim"], config["epochs"], config["beta"]) == (3, 1, 0.5)
    assert json.loads((out / "model" / "model.json").read_text())["config"]["beta"] == 0.5


def test_resume_continues_a_run(run_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    assert main(["train", "--resume", str(copy), "--epochs", "3", "--no-progress"]) == 0
    metrics = json.loads((copy / "metrics.json").read_text())
    assert len(metrics["val_elbo"]) == 3
    assert metrics["val_elbo"][:2] == pytest.approx(
        json.loads((run_dir / "metrics.json").read_text())["val_elbo"][:2])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["sample", "no/such/run"], "does not exist"),
        (["reconstruct", "."], "not a finished ppvae run"),
        (["train", "--resume", "no/such/run"], "cannot resume"),
        (["train", "--config", "missing.yaml"], "does not exist"),
    ],
)
def test_bad_input_gives_one_line_error(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_unknown_config_keys_and_grey_bernoulli(tmp_path, capsys):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"latent_size": 3}))
    assert main(["train", "--config", str(cfg)]) == 2
    assert "unknown option(s) ['latent_size']" in capsys.readouterr().err
    assert main(["train", "--binarize", "none", *FAST, "--out", str(tmp_path / "r")]) == 2
    assert "binary data only" in capsys.readouterr().err


def test_missing_data_fails_before_creating_the_run(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("PPVAE_DATA", raising=False)
    assert main(["train", "--dataset", "mnist", "--out", str(tmp_path / "run")]) == 2
    assert "train-images-idx3-ubyte.gz" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_unknown_dataset_is_rejected_by_the_parser(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--dataset", "cifar"])
    assert e.value.code == 2
    assert "invalid choice: 'cifar'" in capsys.readouterr().err


def test_console_script_help():
    exe = shutil.which("ppvae") or pytest.skip("ppvae console script not on PATH")
    for args in (["--help"], ["train", "--help"], ["latent-map", "--help"]):
        result = subprocess.run([exe, *args], capture_output=True, text=True, check=True)
        assert "usage: ppvae" in result.stdout
    result = subprocess.run([sys.executable, "-m", "ppvae.cli", "--version"],
                            capture_output=True, text=True, check=True)
    assert result.stdout.startswith("ppvae ")


def test_evaluate_writes_loglik_json_and_figure(run_dir, capsys):
    assert main(["evaluate", str(run_dir), "--num-samples", "50", "--no-progress"]) == 0
    record = json.loads((run_dir / "loglik.json").read_text())
    assert {"mean", "stderr", "elbo", "num_samples", "khat_max",
            "frac_khat_above_0.7"} <= set(record)
    assert record["num_samples"] == 50 and record["elbo"] <= record["mean"] < 0
    assert list(record["by_num_samples"]) == ["1", "10", "50"]
    assert (run_dir / "loglik.png").stat().st_size > 1000
    assert "log p(x) ~=" in capsys.readouterr().out
    assert main(["evaluate", str(run_dir), "--num-samples", "0"]) == 2
    # through Pyro's traces: the same draws, the same estimate up to float rounding
    assert main(["evaluate", str(run_dir), "--num-samples", "50", "--no-progress",
                 "--no-accel"]) == 0
    slow = json.loads((run_dir / "loglik.json").read_text())
    assert slow["mean"] == pytest.approx(record["mean"], abs=1e-3)


def test_train_through_pyro_is_recorded_and_trains_alike(run_dir, tmp_path):
    out = tmp_path / "pyro"
    assert main(["train", *FAST, "--no-accel", "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["accel"] is False
    fast = json.loads((run_dir / "metrics.json").read_text())["val_elbo"]
    assert json.loads((out / "metrics.json").read_text())["val_elbo"] == pytest.approx(fast,
                                                                                       abs=1e-3)


def test_cli_makes_idle_openmp_threads_sleep_unless_told_otherwise():
    code = "import os, ppvae.cli; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "PASSIVE"
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "ACTIVE"
