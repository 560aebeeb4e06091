"""Crash safety: atomic checkpoints, and a killed training run resumed to the
same result as an uninterrupted one."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import ppvae
from ppvae.data import load_dataset
from ppvae.models import VAE

# about 80 steps of a few ms per epoch: a kill lands inside an epoch
TRAIN = ["train", "--epochs", "8", "--batch-size", "16", "--hidden", "64", "--latent-dim", "4",
         "--seed", "3", "--no-progress"]


def ppvae_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "ppvae.cli", *args]


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def test_checkpoints_are_fsynced_and_a_failed_write_leaves_last_intact(tmp_path, monkeypatch):
    data = load_dataset("digits", binarize="dynamic")
    vae = VAE((1, 8, 8), latent_dim=2, hidden=(32,))
    synced = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    ppvae.fit(vae, data, epochs=2, progress=False, out_dir=tmp_path)
    last = tmp_path / "checkpoints" / "last.ckpt"
    # each of the 4 saves: the temporary file, then the directory after the rename
    assert sum(".last.ckpt." in path for path in synced) == 2
    assert synced.count(str(last.parent)) == 4
    before = last.read_bytes()
    real_save = torch.save

    def crash_midway(obj, f, *args, **kwargs):  # half a checkpoint, then the "crash"
        real_save(obj, f, *args, **kwargs)
        f.truncate(f.tell() // 2)
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash_midway)
    with pytest.raises(OSError, match="disk full"):
        ppvae.fit(vae, data, epochs=3, progress=False, out_dir=tmp_path, resume=True)
    assert last.read_bytes() == before
    assert torch.load(last, weights_only=True)["epoch"] == 1
    assert sorted(p.name for p in last.parent.iterdir()) == ["epoch000.ckpt", "epoch001.ckpt",
                                                            "last.ckpt"]  # no temporary file


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """An uninterrupted run."""
    out = tmp_path_factory.mktemp("straight") / "run"
    subprocess.run(ppvae_command(*TRAIN, "--out", str(out)), env=env(), check=True,
                   capture_output=True, timeout=120)
    return out


@pytest.mark.parametrize("delay", [0.0, 0.15], ids=["while-saving", "mid-epoch"])
def test_sigkill_then_resume_gives_the_uninterrupted_result(straight, tmp_path, delay):
    """SIGKILL as soon as epoch 3's checkpoint appears, or 0.15 s later, then
    ``ppvae train --resume``. Observed: the first kill lands while last.ckpt is
    being written (its temporary file stays behind, last.ckpt is still epoch
    2's), the second inside epoch 4 (an epoch takes 0.3-1 s here)."""
    killed = tmp_path / "killed"
    proc = subprocess.Popen(ppvae_command(*TRAIN, "--out", str(killed)), env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = killed / "checkpoints" / "epoch002.ckpt"
    deadline = time.monotonic() + 60
    while not checkpoint.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    saved = torch.load(killed / "checkpoints" / "last.ckpt", weights_only=False)
    assert 1 <= saved["epoch"] < 7  # last.ckpt is whole: epoch 2's, 3's or later
    assert not (killed / "metrics.json").exists()

    subprocess.run(ppvae_command("train", "--resume", str(killed), "--no-progress"), env=env(),
                   check=True, capture_output=True, timeout=120)
    a = json.loads((straight / "metrics.json").read_text())
    b = json.loads((killed / "metrics.json").read_text())
    for key in ("train_elbo", "val_elbo", "test_elbo", "best_epoch", "epochs"):
        assert a[key] == b[key], key  # bit-exact: the same batches, draws and updates
    assert ((straight / "model" / "model.safetensors").read_bytes()
            == (killed / "model" / "model.safetensors").read_bytes())
