"""Safe save and load of trained models.

A saved model is a directory with two files:

- ``model.safetensors``: the weights (and buffers) in the safetensors format,
  which holds raw tensors only, so loading never unpickles anything;
- ``model.json``: ``{"format": "ppvae-model", "format_version": 1,
  "ppvae_version": ..., "class": "VAE", "config": {...constructor arguments...},
  "weights_sha256": ...}``.

Both are written atomically (temporary file, fsync, rename), so a crash while
saving leaves the previous files intact. Loading checks the format, the
version, the checksum and every tensor's name and shape, and says what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from ppvae import __version__
from ppvae.atomic import atomic_write
from ppvae.models import MODELS, LatentVariableModel

FORMAT = "ppvae-model"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "model.json"


class ModelFileError(ValueError):
    """A saved model is missing, corrupt, or does not match its config."""


def save(model: LatentVariableModel, path: str | os.PathLike) -> Path:
    """Save ``model`` into the directory ``path`` (created if needed).

    Returns the directory. Load it back with :func:`load`.
    """
    name = type(model).__name__
    if MODELS.get(name) is not type(model):
        raise TypeError(f"can only save ppvae models ({sorted(MODELS)}), got {name}")
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    weights = save_safetensors(state, metadata={"format": FORMAT})
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "ppvae_version": __version__,
        "class": name,
        "config": model.config,
        "weights_sha256": hashlib.sha256(weights).hexdigest(),
    }
    atomic_write(path / WEIGHTS_FILE, weights)
    atomic_write(path / CONFIG_FILE, (json.dumps(meta, indent=2) + "\n").encode())
    return path


def _read_meta(path: Path) -> dict[str, Any]:
    config_path = path / CONFIG_FILE
    if not config_path.is_file():
        raise ModelFileError(
            f"no saved model at {path}: {CONFIG_FILE} is missing "
            "(ppvae.save(model, path) writes a directory with model.json and model.safetensors)"
        )
    try:
        meta = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelFileError(f"{config_path} is not valid JSON ({e}); the file is corrupt") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"{config_path} is not a ppvae model file")
    version = meta.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFileError(
            f"{config_path} has format version {version!r}; this ppvae ({__version__}) reads "
            f"versions up to {FORMAT_VERSION}: upgrade ppvae to load it"
        )
    if meta.get("class") not in MODELS:
        raise ModelFileError(f"{config_path} names an unknown model class {meta.get('class')!r}")
    return meta


def _read_weights(path: Path, meta: dict[str, Any]) -> dict[str, torch.Tensor]:
    weights_path = path / WEIGHTS_FILE
    if not weights_path.is_file():
        raise ModelFileError(f"{weights_path} is missing")
    data = weights_path.read_bytes()
    if hashlib.sha256(data).hexdigest() != meta.get("weights_sha256"):
        raise ModelFileError(
            f"{weights_path} does not match the checksum in {CONFIG_FILE}: "
            "the file is corrupt or was replaced"
        )
    try:
        return load_safetensors(data)
    except SafetensorError as e:
        raise ModelFileError(f"{weights_path} is not a valid safetensors file ({e})") from None


def load(path: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> LatentVariableModel:
    """Load a model saved with :func:`save` (weights only; nothing is unpickled)."""
    path = Path(path)
    meta = _read_meta(path)
    state = _read_weights(path, meta)
    try:
        model = MODELS[meta["class"]](**meta["config"])
    except (TypeError, ValueError) as e:
        raise ModelFileError(f"{path / CONFIG_FILE} has an invalid config: {e}") from None
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state.items()}
    if expected != found:
        missing = sorted(set(expected) - set(found))
        extra = sorted(set(found) - set(expected))
        shapes = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
        raise ModelFileError(
            f"the weights in {path} do not fit the {meta['class']} described by its config: "
            f"missing {missing[:5]}, unexpected {extra[:5]}, wrong shapes "
            f"{[(k, found[k], expected[k]) for k in shapes[:5]]}"
        )
    model.load_state_dict(state)
    return model.to(map_location).eval()
