import json
import os
import shutil
import subprocess
import sys

import pytest
import pyro
from torch import nn

from ppvae import io
from ppvae.cli import main
from ppvae.models import REGISTRY, LatentVariableModel, register
from ppvae.models.base import as_shape
from ppvae.nn import make_decoder, make_encoder
from ppvae.pieces import DiagonalGaussian, StandardNormalPrior, make_likelihood

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
    assert config["model"] == "vae" and config["dataset"] == "digits"
    assert config["latent_dim"] == 2 and config["epochs"] == 2 and config["patience"] == 30
    assert config["binarize"] == "auto" and io.run_data(config).binarize == "dynamic"


@pytest.mark.parametrize("command, figure", [("sample", "samples.png"),
                                             ("reconstruct", "reconstructions.png"),
                                             ("latent-map", "latent_map.png")])
def test_figure_commands(run_dir, tmp_path, command, figure, capsys):
    out = tmp_path / figure
    assert main([command, str(run_dir), "--out", str(out)]) == 0
    assert out.stat().st_size > 1000


@pytest.mark.parametrize("name, text", [
    ("c.yaml", "latent-dim: 3\nepochs: 1\nbeta: 2.0\nhidden: [16]\n"),
    ("c.json", '{"latent_dim": 3, "epochs": 1, "beta": 2.0, "hidden": [16]}'),
    ("c.toml", "latent_dim = 3\nepochs = 1\nbeta = 2.0\nhidden = [16]\n"),
])
def test_config_file_is_overridden_by_flags(tmp_path, name, text):
    cfg = tmp_path / name
    cfg.write_text(text)
    out = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--beta", "0.5", "--no-progress",
                 "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert (config["latent_dim"], config["epochs"], config["beta"]) == (3, 1, 0.5)
    assert config["hidden"] == [16]
    assert json.loads((out / "model" / "model.json").read_text())["config"]["beta"] == 0.5


def test_print_config_shows_the_resolved_settings(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text("latent_dim = 3\n")
    assert main(["train", "--config", str(cfg), "--epochs", "7", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "latent_dim: 3" in out and "epochs: 7" in out and "patience: 30" in out
    assert not list(tmp_path.glob("runs"))
    assert main(["cvae", "--epochs", "4", "--print_config"]) == 0
    assert "epochs: 4" in capsys.readouterr().out


def test_one_progress_line_per_epoch_without_a_terminal(tmp_path, capsys):
    assert main(["train", "--epochs", "3", "--latent-dim", "2", "--out", str(tmp_path / "r")]) == 0
    err = capsys.readouterr().err
    assert [line.split(":")[0] for line in err.splitlines() if line.startswith("epoch ")] == [
        "epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert "val_elbo" in err and "DataLoader" not in err and "it/s" not in err


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
        (["reconstruct", "."], "not a ppvae run directory"),
        (["train", "--resume", "no/such/run"], "run directory no/such/run does not exist"),
        (["train", "--config", "missing.yaml"], "cannot read config file missing.yaml"),
        (["train", "--epochs", "many"], 'Parser key "epochs": Expected a <class \'int\'>'),
        (["train", "--model", "gan"], "unknown model 'gan'"),
        (["train", "--quadrants", "2"], "unrecognized arguments: --quadrants"),  # cvae's
        (["models", "--all"], "takes no options"),
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
    assert "Option 'latent_size' is not accepted" in capsys.readouterr().err
    assert main(["train", "--binarize", "none", *FAST, "--out", str(tmp_path / "r")]) == 2
    assert "binary data only" in capsys.readouterr().err


def test_missing_data_fails_before_creating_the_run(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("PPVAE_DATA", raising=False)
    assert main(["train", "--dataset", "mnist", "--out", str(tmp_path / "run")]) == 2
    assert "train-images-idx3-ubyte.gz" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_unknown_dataset_fails_before_creating_the_run(tmp_path, capsys):
    assert main(["train", "--dataset", "cifar", "--out", str(tmp_path / "run")]) == 2
    assert "unknown data set 'cifar'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


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
    units = record["active_units"]["z"]
    assert list(record["active_units"]) == ["z"] and 0 <= units["active"] <= units["units"] == 2
    out = capsys.readouterr().out
    assert "log p(x) ~=" in out
    assert f"active units (Var_x E_q[z_d | x] > 0.01): z {units['active']} of 2" in out
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


# ----------------------------------------------------------- run directories
def test_out_onto_an_existing_run_is_refused_unless_told(run_dir, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    before = (copy / "model" / "model.safetensors").read_bytes()
    assert main(["train", *FAST, "--out", str(copy)]) == 2
    assert "holds a run already" in capsys.readouterr().err
    assert (copy / "model" / "model.safetensors").read_bytes() == before
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "paper.tex").write_text("mine")
    assert main(["train", *FAST, "--out", str(tmp_path / "notes"), "--overwrite"]) == 2
    assert "not a ppvae run directory" in capsys.readouterr().err
    assert (tmp_path / "notes" / "paper.tex").read_text() == "mine"
    assert main(["train", "--resume", str(copy), "--overwrite"]) == 2
    assert "choose one" in capsys.readouterr().err
    assert main(["train", *FAST, "--latent-dim", "3", "--out", str(copy), "--overwrite"]) == 0
    assert json.loads((copy / "config.json").read_text())["latent_dim"] == 3
    assert sorted(p.name for p in (copy / "checkpoints").iterdir()) == [
        "epoch000.ckpt", "epoch001.ckpt", "last.ckpt"]
    assert not (copy / "loglik.json").exists()


def test_resume_falls_back_to_the_newest_intact_checkpoint(run_dir, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    last = copy / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])  # truncated, as by a crash while copying
    assert main(["train", "--resume", str(copy), "--epochs", "3", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "last.ckpt cannot be read" in err and "resuming from epoch001.ckpt instead" in err
    metrics = json.loads((copy / "metrics.json").read_text())
    assert metrics["val_elbo"][:2] == pytest.approx(
        json.loads((run_dir / "metrics.json").read_text())["val_elbo"][:2])
    assert len(metrics["val_elbo"]) == 3


@pytest.mark.parametrize("damage, message", [
    ("corrupt", "no intact checkpoint in"),
    ("missing", "holds no checkpoint to resume from"),
])
def test_resume_without_an_intact_checkpoint_is_a_one_line_error(run_dir, tmp_path, capsys,
                                                                  damage, message):
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    for path in (copy / "checkpoints").iterdir():
        path.write_bytes(b"not a checkpoint") if damage == "corrupt" else path.unlink()
    assert main(["train", "--resume", str(copy), "--epochs", "3"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


# ----------------------------------------------------------- the registry
class LinearVAE(LatentVariableModel):
    """A VAE with linear encoder and decoder, registered by a test only."""

    def __init__(self, input_shape=(1, 8, 8), latent_dim: int = 2, init_std: float = 0.01):
        super().__init__(dict(input_shape=list(as_shape(input_shape)), latent_dim=latent_dim,
                              init_std=init_std), input_shape)
        self.latent_dim = latent_dim
        self.prior = StandardNormalPrior(latent_dim)
        self.encoder = DiagonalGaussian(make_encoder("mlp", self.input_shape, 2 * latent_dim, ()),
                                        latent_dim)
        decoder = make_decoder("mlp", latent_dim, self.input_shape, ())
        for p in decoder.parameters():
            nn.init.normal_(p, std=init_std)
        self.likelihood = make_likelihood("bernoulli", decoder, self.input_dim)

    def model(self, x):
        self.pyro_module()
        with pyro.plate("data", len(x)):
            z = pyro.sample("z", self.prior())
            pyro.sample("x", self.likelihood(z), obs=x)

    def guide(self, x):
        self.pyro_module()
        with pyro.plate("data", len(x)):
            pyro.sample("z", self.encoder(x))

    def encode(self, x):
        return self.encoder(self.prepare(x)).mean

    def figures(self, data, num=None):  # it offers a latent map only
        return {"latent_map": super().figures(data, num)["latent_map"]}


@pytest.fixture
def linear_vae():
    register("linear-vae", LinearVAE, summary="a linear VAE (test)", paper="none")
    yield
    del REGISTRY["linear-vae"]


def test_a_registered_model_is_listed_trained_and_evaluated(linear_vae, tmp_path, capsys):
    assert main(["models"]) == 0
    listed = capsys.readouterr().out
    assert all(f"| {name} |" in listed for name in REGISTRY)
    assert "| linear-vae | LinearVAE | elbo | a linear VAE (test) | none |" in listed
    run = tmp_path / "run"
    assert main(["train", "--model", "linear-vae", "--latent-dim", "3", "--init-std", "0.1",
                 "--epochs", "2", "--out", str(run)]) == 2  # no likelihood option: grey data
    assert "binary data only" in capsys.readouterr().err
    assert main(["train", "--model", "linear-vae", "--latent-dim", "3", "--init-std", "0.1",
                 "--epochs", "2", "--binarize", "dynamic", "--out", str(run)]) == 0
    config = json.loads((run / "config.json").read_text())
    assert (config["model"], config["latent_dim"], config["init_std"]) == ("linear-vae", 3, 0.1)
    assert json.loads((run / "metrics.json").read_text())["test_elbo"] < 0
    assert (run / "latent_map.png").is_file() and not (run / "samples.png").exists()
    assert main(["evaluate", str(run), "-k", "20", "--max-points", "30"]) == 0
    assert json.loads((run / "loglik.json").read_text())["num_datapoints"] == 30
    assert main(["latent-map", str(run), "--num", "50"]) == 0
    assert main(["sample", str(run)]) == 2
    assert "LinearVAE offers no samples figure; it offers ['latent_map']" in capsys.readouterr().err
    assert main(["train", "--resume", str(run), "--epochs", "3"]) == 0  # the model from config.json
    assert json.loads((run / "config.json").read_text())["init_std"] == 0.1
    assert main(["train", "--model", "linear-vae", "--hidden", "8"]) == 2  # a VAE option
    assert "unrecognized arguments: --hidden" in capsys.readouterr().err


@pytest.mark.parametrize("model, options", [
    ("ae", []), ("dae", []), ("sparse-ae", []), ("cae", []), ("psd", []), ("linear-ae", []),
    ("stacked-ae", ["--sizes", "32", "8", "--layer-epochs", "1", "--epochs", "3"]),
    ("joint-ae", ["--labels", "100"])])
def test_an_autoencoder_trains_and_is_evaluated_by_its_reconstruction(model, options, tmp_path,
                                                                      capsys):
    run = tmp_path / model
    assert main(["train", "--model", model, "--epochs", "2", "--no-progress", *options,
                 "--out", str(run)]) == 0
    assert (run / "reconstructions.png").is_file() and not (run / "samples.png").exists()
    assert main(["evaluate", str(run)]) == 0
    record = json.loads((run / "reconstruction.json").read_text())
    assert record["split"] == "test" and record["num_datapoints"] == 360
    assert 0 < record["squared_error"] < 64 and not (run / "loglik.json").exists()
    assert "squared error per point" in capsys.readouterr().out
    assert main(["sample", str(run)]) == 2
    assert "offers no samples figure" in capsys.readouterr().err


def test_an_adversarial_autoencoder_is_evaluated_as_what_it_is(tmp_path, capsys):
    point, gaussian = tmp_path / "point", tmp_path / "gaussian"
    assert main(["train", "--model", "aae", "--epochs", "2", "--no-progress",
                 "--out", str(point)]) == 0
    assert main(["train", "--model", "aae", "--encoder", "gaussian", "--epochs", "2",
                 "--no-progress", "--out", str(gaussian)]) == 0
    assert (point / "samples.png").is_file()
    assert main(["evaluate", str(point)]) == 0 and (point / "reconstruction.json").is_file()
    assert main(["evaluate", str(gaussian), "-k", "20", "--no-progress"]) == 0
    assert (gaussian / "loglik.json").is_file() and not (gaussian / "reconstruction.json").exists()


@pytest.mark.parametrize("model, options, evaluated", [
    ("wae", [], "reconstruction.json"), ("wae-gan", [], "reconstruction.json"),
    ("vae-gan", [], "loglik.json"), ("aae-clusters", ["--num-clusters", "12"],
                                     "reconstruction.json"),
    ("aae-clusters", ["--labels", "100"], "reconstruction.json")])
def test_the_wasserstein_and_adversarial_autoencoders_train_and_evaluate(model, options,
                                                                         evaluated, tmp_path):
    run = tmp_path / model
    assert main(["train", "--model", model, "--epochs", "2", "--no-progress", *options,
                 "--out", str(run)]) == 0
    assert (run / "samples.png").is_file()
    assert main(["evaluate", str(run), "-k", "20", "--no-progress"]) == 0
    assert (run / evaluated).is_file()
