"""pythae's counterparts of ``benchmarks/generative.py`` (the peer library
pythae, Chadebec, Vincent & Allassonniere 2022, "Pythae: unifying generative
autoencoders in Python"), trained on that benchmark's exported MNIST split
with the same networks and budget; writes samples and codes that
``generative.py --score-pythae`` scores with ppvae's metrics.

Runs in its own virtual environment, outside the repository (pythae 0.1.2
from PyPI: it asks for torch>=1.10.1, which the CPU wheel on this machine
satisfies, so nothing from CUDA is pulled)::

    python3 -m venv /tmp/pythae-venv
    /tmp/pythae-venv/bin/pip install torch==2.13.0    # first: the CPU wheel
    /tmp/pythae-venv/bin/pip install pythae

Full run (the settings flags of the two ppvae commands must be the same)::

    PPVAE_DATA=../shared/data python benchmarks/generative.py --export-split \\
        runs/generative/split.npz
    /tmp/pythae-venv/bin/python benchmarks/pythae_generative.py \\
        --split runs/generative/split.npz --out runs/generative-pythae
    PPVAE_DATA=../shared/data python benchmarks/generative.py --out runs/generative \\
        --score-pythae runs/generative-pythae

The split file (``split.npz`` and ``split.json`` beside it) fixes the data
and the settings shared with the ppvae run: network sizes, latent size,
epochs and minutes per model, batch size, learning rate, the likelihood of
the density models, the scored split and the number of samples.

Counterparts, built with pythae's custom-network classes (encoder MLP
784-512-256 with two z-sized heads, the embedding and the log-variance;
decoder z-256-512-784, ReLU; a sigmoid on the decoder's output where pythae's
loss needs probabilities, none for squared error). pythae's adversarial
scale must lie in [0, 1]: a weight w > 1 of ppvae's (reconstruction + w x
adversarial term) becomes adversarial scale 1 and reconstruction scale 1 / w,
the same objective divided by w (Adam's steps hardly depend on that factor).

- ``vae``: ``VAE``, reconstruction loss ``bce``;
- ``aae``: ``Adversarial_AE`` with its Gaussian posterior, ``bce``, ppvae's
  AAE weight, discriminator 8-512-512-1;
- ``wae``: ``WAE_MMD``, IMQ kernel over pythae's default scales (the same
  seven widths as ppvae's), ``reg_weight`` = lambda and
  ``reconstruction_loss_scale`` 0.5, which makes pythae's |x - g(z)|^2 the
  same objective as ppvae's |x - g(z)|^2 / 2 + lambda MMD^2;
- ``wae-gan``: pythae has no WAE-GAN; ``Adversarial_AE`` with a
  deterministic posterior, ``mse`` (|x - g(z)|^2 / 2), the weight lambda,
  the WAE-GAN's discriminator 8-512-512-512-512-1 and discriminator learning
  rate is the same model as ppvae's WAE-GAN;
- ``vae-gan``: ``VAEGAN`` with pythae's training rule (no pixel likelihood:
  reconstruction in the discriminator's features, its equilibrium and margin
  defaults), discriminator 784-512-256-1, features from its 256-unit layer.

Data as the ppvae counterpart saw it: where ppvae's model has a Bernoulli
likelihood (by default VAE and AAE), pythae's trains on the training images
binarized afresh every epoch (a callback re-draws the pixels) and is
validated and encoded on the fixed binarized images of the split; the
others see grey images (pythae has no continuous Bernoulli: ``bce`` on grey
images stands for it).

Budget: pythae's trainers with Adam at the shared learning rate (every
optimizer of a model), batch size, at most the shared epochs, stopped after
the training step that passes the shared minutes (a callback); the weights
kept are pythae's own choice, its best epoch on its validation loss.

Written in ``--out``: ``settings.json``, and per model and seed
``<model>-s<seed>/``: ``samples.npy`` (``num_samples`` decoder outputs of
z ~ N(0, I), the decoder's mean, float32 (N, 784)), ``<split>_codes.npy``
(the encoder's embedding of each image of the scored split),
``<split>_draws.npy`` (one z ~ q(z | x) per image for the Gaussian
posteriors of VAE, AAE and VAE-GAN; the embedding otherwise) and
``info.json``. Models with an ``info.json`` are not trained again; a
directory of other settings is refused.

Quick check: generative.py --export-split /tmp/split.npz --max-train 300 --epochs 1, then
       pythae_generative.py --split /tmp/split.npz --out /tmp/pythae-check
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

os.environ.setdefault("TQDM_DISABLE", "1")  # pythae's progress bars, read when tqdm loads

import numpy as np  # noqa: E402
import torch  # noqa: E402
from pythae.data.datasets import BaseDataset  # noqa: E402
from pythae.models import (  # noqa: E402
    VAE,
    VAEGAN,
    WAE_MMD,
    Adversarial_AE,
    Adversarial_AE_Config,
    VAEConfig,
    VAEGANConfig,
    WAE_MMD_Config,
)
from pythae.models.base.base_utils import ModelOutput  # noqa: E402
from pythae.models.nn import BaseDecoder, BaseDiscriminator, BaseEncoder  # noqa: E402
from pythae.trainers import (  # noqa: E402
    AdversarialTrainer,
    AdversarialTrainerConfig,
    BaseTrainer,
    BaseTrainerConfig,
    CoupledOptimizerAdversarialTrainer,
    CoupledOptimizerAdversarialTrainerConfig,
)
from pythae.trainers.training_callbacks import TrainingCallback  # noqa: E402
from torch import nn  # noqa: E402

MODELS = ("vae", "aae", "wae", "wae-gan", "vae-gan")
SAMPLE_SEED = 20_000  # + the seed, as in generative.py
DRAW_SEED = 60_000  # + the seed: the draws z ~ q(z | x), as in generative.py
BINARIZE_SEED = 50_000  # + the seed: the per-epoch binarization of the training images


def mlp(sizes: list[int]) -> nn.Sequential:
    """Linear layers with ReLU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class Encoder(BaseEncoder):
    """784-hidden MLP with two heads: the embedding and the log-variance."""

    def __init__(self, input_dim: int, hidden: list[int], latent: int) -> None:
        BaseEncoder.__init__(self)
        self.body = nn.Sequential(mlp([input_dim, *hidden]), nn.ReLU())
        self.embedding = nn.Linear(hidden[-1], latent)
        self.log_var = nn.Linear(hidden[-1], latent)

    def forward(self, x: torch.Tensor) -> ModelOutput:
        h = self.body(x.reshape(len(x), -1))
        return ModelOutput(embedding=self.embedding(h), log_covariance=self.log_var(h))


class Decoder(BaseDecoder):
    """latent-reversed hidden-784 MLP; a sigmoid on the output if ``probabilities``."""

    def __init__(self, latent: int, hidden: list[int], image_shape: tuple[int, ...],
                 probabilities: bool) -> None:
        BaseDecoder.__init__(self)
        self.image_shape = image_shape
        self.net = mlp([latent, *reversed(hidden), int(np.prod(image_shape))])
        self.out = nn.Sigmoid() if probabilities else nn.Identity()

    def forward(self, z: torch.Tensor) -> ModelOutput:
        return ModelOutput(reconstruction=self.out(self.net(z)).reshape(len(z),
                                                                        *self.image_shape))


class Discriminator(BaseDiscriminator):
    """An MLP to a probability; ``output_layer_levels`` (1-based) returns the
    activations of those layers, as pythae's VAEGAN asks for."""

    def __init__(self, sizes: list[int]) -> None:
        BaseDiscriminator.__init__(self)
        self.layers = nn.ModuleList(
            [nn.Sequential(nn.Linear(a, b), nn.ReLU()) for a, b in zip(sizes[:-1], sizes[1:])]
            + [nn.Sequential(nn.Linear(sizes[-1], 1), nn.Sigmoid())])
        self.depth = len(self.layers)

    def forward(self, x: torch.Tensor, output_layer_levels: list[int] | None = None
                ) -> ModelOutput:
        out, output = x.reshape(len(x), -1), ModelOutput()
        for i, layer in enumerate(self.layers, 1):
            out = layer(out)
            if output_layer_levels is not None and i in output_layer_levels:
                output[f"embedding_layer_{i}"] = out
        output["embedding"] = out
        return output


class Budget(TrainingCallback):
    """Counts epochs; ends training (``BudgetSpent``) after the step that
    passes ``seconds``; re-binarizes the training images every epoch when
    ``grey`` is given (their binary copy ``data`` is what the loader reads)."""

    def __init__(self, seconds: float, data: torch.Tensor, grey: torch.Tensor | None,
                 seed: int) -> None:
        self.seconds, self.data, self.grey = seconds, data, grey
        self.generator = torch.Generator().manual_seed(BINARIZE_SEED + seed)
        self.start, self.epochs = time.perf_counter(), 0

    def on_epoch_begin(self, training_config: Any, **kwargs: Any) -> None:
        if self.grey is not None:
            self.data.copy_(torch.bernoulli(self.grey, generator=self.generator))

    def on_epoch_end(self, training_config: Any, **kwargs: Any) -> None:
        self.epochs += 1

    def on_train_step_end(self, training_config: Any, **kwargs: Any) -> None:
        if time.perf_counter() - self.start >= self.seconds:
            raise BudgetSpent


class BudgetSpent(Exception):
    """The time budget is spent."""


def build(name: str, s: dict[str, Any], shape: tuple[int, ...]) -> tuple[Any, Any, type]:
    """The pythae model, its trainer config and its trainer class."""
    latent, hidden, lr = s["latent"], s["hidden"], s["lr"]
    d = int(np.prod(shape))
    encoder = Encoder(d, hidden, latent)
    common_train = dict(per_device_train_batch_size=s["batch_size"],
                        per_device_eval_batch_size=1000, num_epochs=s["epochs"], no_cuda=True)
    if name == "vae":
        config = VAEConfig(input_dim=shape, latent_dim=latent, reconstruction_loss="bce")
        model = VAE(config, encoder=encoder, decoder=Decoder(latent, hidden, shape, True))
        return model, BaseTrainerConfig(learning_rate=lr, **common_train), BaseTrainer
    if name in ("aae", "wae-gan"):
        aae = name == "aae"
        weight = s["aae_weight"] if aae else s["wae_gan_lambda"]
        config = Adversarial_AE_Config(
            input_dim=shape, latent_dim=latent, reconstruction_loss="bce" if aae else "mse",
            adversarial_loss_scale=min(weight, 1.0),
            reconstruction_loss_scale=1.0 / max(weight, 1.0), deterministic_posterior=not aae)
        disc = Discriminator([latent, *(s["aae_disc"] if aae else [512, 512, 512, 512])])
        model = Adversarial_AE(config, encoder=encoder,
                               decoder=Decoder(latent, hidden, shape, aae), discriminator=disc)
        trainer = AdversarialTrainerConfig(
            autoencoder_learning_rate=lr,
            discriminator_learning_rate=lr if aae else s["wae_gan_disc_lr"], **common_train)
        return model, trainer, AdversarialTrainer
    if name == "wae":
        config = WAE_MMD_Config(input_dim=shape, latent_dim=latent, kernel_choice="imq",
                                reg_weight=s["wae_lambda"], kernel_bandwidth=1.0,
                                reconstruction_loss_scale=0.5)
        model = WAE_MMD(config, encoder=encoder, decoder=Decoder(latent, hidden, shape, False))
        return model, BaseTrainerConfig(learning_rate=lr, **common_train), BaseTrainer
    if name == "vae-gan":
        disc_hidden = s["vae_gan_disc"]
        config = VAEGANConfig(input_dim=shape, latent_dim=latent,
                              reconstruction_layer=len(disc_hidden))
        model = VAEGAN(config, encoder=encoder, decoder=Decoder(latent, hidden, shape, True),
                       discriminator=Discriminator([d, *disc_hidden]))
        trainer = CoupledOptimizerAdversarialTrainerConfig(
            encoder_learning_rate=lr, decoder_learning_rate=lr, discriminator_learning_rate=lr,
            **common_train)
        return model, trainer, CoupledOptimizerAdversarialTrainer
    raise ValueError(f"unknown model {name!r}")


def digest(arrays: dict[str, np.ndarray]) -> str:
    """sha256 of the split, as generative.py's ``split_digest`` computes it."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}{a.shape}{a.dtype}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def binarized(name: str, s: dict[str, Any]) -> bool:
    """Whether ppvae's ``name`` has a Bernoulli likelihood (binarized data)."""
    chosen = {"vae": s["density_likelihood"], "aae": s["density_likelihood"],
              "vae-gan": s["vae_gan_likelihood"]}
    return chosen.get(name) == "bernoulli"


#: pythae's reconstruction term, for the table
LOSSES = {"vae": "BCE", "aae": "BCE", "wae": "squared error", "wae-gan": "squared error",
          "vae-gan": "discriminator features"}


def run(name: str, seed: int, s: dict[str, Any], arrays: dict[str, np.ndarray],
        out: Path) -> None:
    """Train one counterpart and write its samples, codes and info."""
    binary = binarized(name, s)
    shape = (1, 28, 28) if arrays["train_grey"].shape[1] == 784 else (1, 8, 8)

    def images(key: str) -> torch.Tensor:
        x = torch.from_numpy(arrays[key]).float()
        return (x if key.endswith("binary") else x / 255).reshape(len(x), *shape)

    grey = images("train_grey")
    train = grey.clone()  # binarized by the callback before every epoch if ``binary``
    val = images("val_binary" if binary else "val_grey")
    scored = images(f"{s['split']}_{'binary' if binary else 'grey'}")
    torch.manual_seed(seed)
    model, config, trainer_cls = build(name, s, shape)
    config.output_dir, config.seed = str(out / "pythae"), seed
    train_set = BaseDataset(train, torch.zeros(len(train)))
    budget = Budget(60 * s["max_minutes"], train_set.data, grey if binary else None, seed)
    trainer = trainer_cls(model=model, train_dataset=train_set,
                          eval_dataset=BaseDataset(val, torch.zeros(len(val))),
                          training_config=config, callbacks=[budget])
    start = time.perf_counter()
    try:
        trainer.train()
        stopped = False
    except BudgetSpent:
        stopped = True
    seconds = time.perf_counter() - start
    # pythae keeps its best epoch on the validation loss in trainer._best_model, a private
    # attribute: a run stopped by the budget (an exception from a callback, the only way to
    # stop pythae 0.1.2 on time) never reaches the end of train() that writes the final
    # model; a run stopped in its first epoch has no best model yet: the current weights
    best = getattr(trainer, "_best_model", None) or trainer.model
    best.eval()
    with torch.no_grad():
        z = torch.randn(s["num_samples"], s["latent"],
                        generator=torch.Generator().manual_seed(SAMPLE_SEED + seed))
        drawn = torch.cat([best.decoder(z[i:i + 5000]).reconstruction.flatten(1)
                           for i in range(0, len(z), 5000)])
        encoded = [best.encoder(scored[i:i + 5000]) for i in range(0, len(scored), 5000)]
        codes = torch.cat([e.embedding for e in encoded])
        draws = codes  # one z ~ q(z | x) per image where the posterior is Gaussian
        if name in ("vae", "aae", "vae-gan"):
            noise = torch.randn(codes.shape, generator=torch.Generator().manual_seed(
                DRAW_SEED + seed))
            draws = codes + noise * torch.cat([e.log_covariance for e in encoded]).mul(0.5).exp()
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "samples.npy", drawn.numpy().astype(np.float32))
    np.save(out / f"{s['split']}_codes.npy", codes.numpy().astype(np.float32))
    np.save(out / f"{s['split']}_draws.npy", draws.numpy().astype(np.float32))
    info = {"pythae_class": type(model).__name__, "epochs": budget.epochs,
            "stopped_by_budget": stopped, "train_seconds": seconds, "binarized": binary,
            "loss": LOSSES[name],
            "model_config": {k: v for k, v in vars(model.model_config).items()
                             if isinstance(v, (int, float, str, bool, list, tuple, type(None)))}}
    (out / "info.json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"pythae {info['pythae_class']} ({name}, seed {seed}): {budget.epochs} epochs, "
          f"{seconds:.0f} s" + (" (time budget)" if stopped else ""), file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", required=True, help="generative.py --export-split's .npz")
    parser.add_argument("--out", required=True)
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    args = parser.parse_args()
    for name in ("pythae", "pythae.trainers", "pythae.models"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in list(logging.root.manager.loggerDict):
        if name.startswith("pythae"):
            logging.getLogger(name).setLevel(logging.WARNING)
    split = Path(args.split)
    s = json.loads(split.with_suffix(".json").read_text())
    with np.load(split) as f:
        arrays = {k: f[k] for k in f.files}
    if digest(arrays) != s["split_sha256"]:
        raise SystemExit(f"error: {split} does not match {split.with_suffix('.json')}")
    settings = {**s, "seeds": args.seeds, "pythae": version("pythae"),
                "torch": torch.__version__}
    out = Path(args.out)
    path = out / "settings.json"
    if path.is_file():
        stored = json.loads(path.read_text())
        differ = sorted(k for k in settings.keys() | stored.keys()
                        if k != "seeds" and settings.get(k) != stored.get(k))
        if differ:
            raise SystemExit(f"error: {out} holds a run of other settings ({', '.join(differ)})"
                             ": use another --out")
        settings["seeds"] = sorted(set(stored["seeds"]) | set(args.seeds))
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(settings, indent=2) + "\n")
    print(f"pythae {version('pythae')}, torch {torch.__version__} with "
          f"{torch.get_num_threads()} threads; settings {s}", file=sys.stderr)
    for seed in args.seeds:
        for name in args.models:
            if (out / f"{name}-s{seed}" / "info.json").is_file():
                print(f"{name}, seed {seed}: done before", file=sys.stderr)
                continue
            run(name, seed, s, arrays, out / f"{name}-s{seed}")


if __name__ == "__main__":
    main()
