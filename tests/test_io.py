import json

import pyro
import pytest
import torch

import ppvae
from ppvae.io import CONFIG_FILE, WEIGHTS_FILE, ModelFileError, atomic_write
from ppvae.models import VAE


@pytest.mark.parametrize("network, likelihood", [("mlp", "bernoulli"), ("conv", "gaussian")])
def test_round_trip_gives_identical_outputs(tmp_path, binary_batch, network, likelihood):
    vae = VAE(latent_dim=3, network=network, likelihood=likelihood, beta=2.0)
    ppvae.save(vae, tmp_path / "m")
    loaded = ppvae.load(tmp_path / "m")
    assert type(loaded) is VAE and loaded.config == vae.config and loaded.beta == 2.0
    assert torch.equal(vae.encode(binary_batch), loaded.encode(binary_batch))
    assert torch.equal(vae.reconstruct(binary_batch), loaded.reconstruct(binary_batch))
    pyro.set_rng_seed(5)
    a = vae.sample(4)
    pyro.set_rng_seed(5)
    assert torch.equal(a, loaded.sample(4))
    for (k, v), (k2, v2) in zip(vae.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)


def test_saved_files_are_safetensors_and_versioned_json(tmp_path):
    ppvae.save(VAE(latent_dim=2), tmp_path)
    meta = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert meta["format"] == "ppvae-model" and meta["format_version"] == 1
    assert meta["class"] == "VAE" and meta["config"]["latent_dim"] == 2
    header_len = int.from_bytes((tmp_path / WEIGHTS_FILE).read_bytes()[:8], "little")
    header = json.loads((tmp_path / WEIGHTS_FILE).read_bytes()[8 : 8 + header_len])
    assert "encoder.net.layers.0.weight" in header


def test_loaded_model_trains_independently(tmp_path, binary_batch):
    vae = VAE(latent_dim=2)
    ppvae.save(vae, tmp_path)
    loaded = ppvae.load(tmp_path)
    svi = pyro.infer.SVI(loaded.model, loaded.guide, pyro.optim.Adam({"lr": 0.1}),
                         pyro.infer.Trace_ELBO())
    svi.step(binary_batch)
    assert not torch.equal(vae.encode(binary_batch), loaded.encode(binary_batch))


def test_missing_directory(tmp_path):
    with pytest.raises(ModelFileError, match="model.json is missing"):
        ppvae.load(tmp_path / "nowhere")


def test_corrupt_weights(tmp_path):
    ppvae.save(VAE(latent_dim=2), tmp_path)
    data = bytearray((tmp_path / WEIGHTS_FILE).read_bytes())
    data[-5] ^= 0xFF
    (tmp_path / WEIGHTS_FILE).write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="checksum"):
        ppvae.load(tmp_path)


def test_truncated_weights_with_matching_checksum(tmp_path):
    import hashlib

    ppvae.save(VAE(latent_dim=2), tmp_path)
    data = (tmp_path / WEIGHTS_FILE).read_bytes()[:100]
    (tmp_path / WEIGHTS_FILE).write_bytes(data)
    meta = json.loads((tmp_path / CONFIG_FILE).read_text())
    meta["weights_sha256"] = hashlib.sha256(data).hexdigest()
    (tmp_path / CONFIG_FILE).write_text(json.dumps(meta))
    with pytest.raises(ModelFileError, match="not a valid safetensors"):
        ppvae.load(tmp_path)


def edit_meta(path, **changes):
    meta = json.loads((path / CONFIG_FILE).read_text())
    for key, value in changes.items():
        if key == "config":
            meta["config"].update(value)
        else:
            meta[key] = value
    (path / CONFIG_FILE).write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"config": {"latent_dim": 5}}, "do not fit"),
        ({"config": {"likelihood": "poisson"}}, "invalid config"),
        ({"format_version": 99}, "upgrade ppvae"),
        ({"format": "something-else"}, "not a ppvae model"),
        ({"class": "Transformer"}, "unknown model 'vae' of class 'Transformer'"),
        ({"model": "gpt", "class": "GPT"}, "unknown model 'gpt'"),
    ],
)
def test_mismatched_config(tmp_path, changes, message):
    ppvae.save(VAE(latent_dim=2), tmp_path)
    edit_meta(tmp_path, **changes)
    with pytest.raises(ModelFileError, match=message):
        ppvae.load(tmp_path)


def test_garbage_json(tmp_path):
    ppvae.save(VAE(latent_dim=2), tmp_path)
    (tmp_path / CONFIG_FILE).write_text("{not json")
    with pytest.raises(ModelFileError, match="not valid JSON"):
        ppvae.load(tmp_path)


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "f.bin"
    atomic_write(target, b"old")
    atomic_write(target, b"new contents")
    assert target.read_bytes() == b"new contents"
    assert [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_save_rejects_non_ppvae_models(tmp_path):
    with pytest.raises(TypeError, match="can only save registered models"):
        ppvae.save(torch.nn.Linear(2, 2), tmp_path)


def test_files_from_before_the_registry_load_by_class_name(tmp_path):
    vae = VAE(latent_dim=2)
    ppvae.save(vae, tmp_path)
    meta = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert (meta["model"], meta["class"]) == ("vae", "VAE")
    del meta["model"]
    (tmp_path / CONFIG_FILE).write_text(json.dumps(meta))
    loaded = ppvae.load(tmp_path)
    assert type(loaded) is VAE and loaded.config == vae.config
