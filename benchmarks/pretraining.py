"""Greedy layer-wise pretraining against random initialization (issue 22): a
stacked autoencoder (SAE) and a stacked denoising autoencoder (SDAE),
pretrained on the unlabelled training images, then fine-tuned as classifiers
with 100, 1000 and all labels, beside the same network trained from random
weights.

Every model is :class:`ppvae.models.stacked.StackedAutoencoder` with widths
``--sizes`` (default 1000-1000-1000) and sigmoid units:

- ``sae``: pretrained greedily by the ``"layerwise"`` plan, ``--layer-epochs``
  epochs per layer, bottom up (Bengio et al. 2007), then ``--finetune-epochs``
  epochs of the whole unrolled autoencoder (default 0: straight to the
  classifier, as Vincent et al. 2010);
- ``sdae``: the same, every layer's input corrupted by masking noise (each
  component zeroed with probability ``--noise-level``, default 0.25, the level
  Vincent et al. 2010 report for MNIST);
- ``random``: no pretraining; the stack's initial weights (the SAE's, seed for
  seed).

Pretraining sees the training images only, without labels; with
``--likelihood bernoulli`` (default) they are binarized afresh every epoch, so
that the first layer's expected loss is the cross-entropy of its
reconstruction against the grey image, Vincent et al.'s loss for inputs in
[0, 1]; the layers above are scored by squared error (the model's choice).
Then, for each label count n and seed s, ``classifier(C)`` (a copy of the
encoder stack plus a linear layer; its initial weights seeded by s, the same
for every model) is trained by cross-entropy on n grey training images, n / C
per class chosen by s (all of them for ``all``), with Adam, for
``--classifier-epochs`` epochs (at least ``--classifier-min-steps`` steps
for few labels). Its validation accuracy is measured on the validation split
at most ``VALIDATIONS`` times per run, every epoch when there are no more
epochs than that, and the weights of the best validation epoch are kept
(``ppvae.train.classifier.fit_classifier`` keeps the last epoch's, hence the
loop here): the number of fine-tuning epochs is chosen on validation data,
never on test data. The whole validation split (6,000 labelled images on
MNIST) chooses the epoch even with 100 labels, as in the semi-supervised
benchmarks. Test error on all test images.

The validation split is 10% of the training file, fixed (seed 0); a cell's seed
chooses the labels, the initial weights, the batch order, the binarization and
the noise. Resumable: pretrained stacks are kept in ``--out/stacks/<model>-seed<s>``
(``ppvae.save``, with the settings they were trained with), finished cells in
``--out/pretraining_results.json``; a rerun runs only new cells and refuses a
directory of other settings. Also written: ``pretraining_results.{md,png}``
(test error against labels) and ``table.md``, the tables printed at the end.
``--max-minutes`` limits each stage: a stack's pretraining (cut wherever it is,
the layers above then left untrained) and each classifier (the best epoch so
far kept); the tables list every stage it stopped.

Usage: OMP_NUM_THREADS=1 PPVAE_DATA=../shared/data python benchmarks/pretraining.py
       [--sizes 1000 1000 1000]
       [--layer-epochs 30] [--finetune-epochs 0] [--classifier-epochs 60]
       [--labels 100 1000 all] [--seeds 0] [--models sae sdae random] [--max-minutes M]
       [--out DIR]
Quick check: python benchmarks/pretraining.py --dataset digits --sizes 256 256 --labels 50 all
       --layer-epochs 20 --classifier-epochs 100 --classifier-min-steps 500 --out /tmp/pre-check
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import math
import time
from pathlib import Path
from typing import Any

import lightning as L
import pyro
import torch
from common import machine
from torch import Tensor, nn

import ppvae
from ppvae.atomic import atomic_write
from ppvae.data import DataError, Dataset, LabelSplit, label_split, load_dataset
from ppvae.experiments.sweep import Sweep, summarize
from ppvae.models.stacked import StackedAutoencoder
from ppvae.train.batches import EpochBatches
from ppvae.train.classifier import ClassifierModule
from ppvae.train.fit import quiet_lightning

MODELS = ("sae", "sdae", "random")
DATA_SEED = 0  # the validation split, and the binarization of validation and test images
VALIDATIONS = 100  # validation passes per classifier run, at most
BATCH = 4096  # images per forward pass in evaluation
#: Vincent et al. (2010), Table 3, MNIST test error in % with all labels, ± the 95%
#: confidence interval over the 10,000 test images (3 hidden layers; SDAE-3 with
#: masking noise nu = 25%)
PAPER = {"sae": "1.40 ± 0.23", "sdae": "1.28 ± 0.22"}


def label(name: str, args: argparse.Namespace) -> str:
    """The row name of a model in the tables."""
    depth = len(args.sizes)
    return {"sae": f"SAE-{depth}", "sdae": f"SDAE-{depth} (masking {args.noise_level:g})",
            "random": "random init (no pretraining)"}[name]


def settings(args: argparse.Namespace, data: Dataset) -> dict[str, Any]:
    """What every result depends on (models, label counts and seeds are cells)."""
    return {"dataset": data.name, "data_seed": DATA_SEED, "sizes": list(args.sizes),
            "activation": "sigmoid", "likelihood": args.likelihood, "noise": "masking",
            "noise_level": args.noise_level, "layer_epochs": args.layer_epochs,
            "finetune_epochs": args.finetune_epochs, "lr": args.lr,
            "batch_size": args.batch_size, "classifier_epochs": args.classifier_epochs,
            "classifier_min_steps": args.classifier_min_steps,
            "classifier_batch_size": args.classifier_batch_size,
            "classifier_lr": args.classifier_lr, "validations": VALIDATIONS,
            "max_minutes": args.max_minutes}


def pretraining_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The settings a pretrained stack depends on."""
    return {k: config[k] for k in ("dataset", "data_seed", "sizes", "activation", "likelihood",
                                   "noise", "noise_level", "layer_epochs", "finetune_epochs",
                                   "lr", "batch_size", "max_minutes")}


class KeepBest(L.Callback):
    """Validation accuracy of ``net`` on ``(x, y)`` after every ``every``-th
    epoch and at the end of training, with a copy of the weights of the best
    epoch (the first of ties)."""

    def __init__(self, net: nn.Module, x: Tensor, y: Tensor, every: int) -> None:
        self.net, self.x, self.y, self.every = net, x, y, every
        self.best, self.best_epoch, self.state = -1.0, 0, None
        self.curve: list[tuple[int, float]] = []

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every == 0:
            self.validate(trainer.current_epoch + 1)

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if not self.curve or self.curve[-1][0] < trainer.current_epoch:
            self.validate(trainer.current_epoch)  # the last epoch, or where time ran out

    def validate(self, epoch: int) -> None:
        accuracy = 1.0 - error(self.net, self.x, self.y)
        self.net.train()
        self.curve.append((epoch, accuracy))
        if accuracy > self.best:
            self.best, self.best_epoch = accuracy, epoch
            self.state = copy.deepcopy(self.net.state_dict())


@torch.no_grad()
def error(net: nn.Module, x: Tensor, y: Tensor) -> float:
    """The fraction of ``x`` that ``net`` (left in eval mode) misclassifies."""
    net.eval()
    wrong = sum(int((net(x[i:i + BATCH]).argmax(-1) != y[i:i + BATCH]).sum())
                for i in range(0, len(x), BATCH))
    return wrong / len(x)


def labelled(data: Dataset, n: int, seed: int) -> LabelSplit:
    """n labels, n / C per class chosen by ``seed``, or all of the training split."""
    if n == len(data.train):  # MNIST's classes are not balanced: take them all
        return LabelSplit(data.train, data.train.subset(torch.zeros(n, dtype=torch.bool)),
                          data.num_classes)
    return label_split(data.train, n, data.num_classes, seed)


class Bench:
    """The data, the pretrained stacks (trained on first use, kept on disk) and
    the classifier cells."""

    def __init__(self, args: argparse.Namespace, data: Dataset, pretrain_data: Dataset,
                 config: dict[str, Any]) -> None:
        self.args, self.data, self.pretrain_data = args, data, pretrain_data
        self.pretraining = pretraining_settings(config)
        self._stacks: dict[tuple[str, int], tuple[StackedAutoencoder, dict[str, Any]]] = {}

    def fresh(self, name: str, seed: int) -> StackedAutoencoder:
        """The stack of ``name`` with seed ``seed``'s initial weights."""
        a = self.args
        pyro.set_rng_seed(seed)
        return StackedAutoencoder(self.data.image_shape, a.sizes, likelihood=a.likelihood,
                                  noise="masking" if name == "sdae" else None,
                                  noise_level=a.noise_level if name == "sdae" else 0.0)

    def stack(self, name: str, seed: int) -> tuple[StackedAutoencoder, dict[str, Any]]:
        """The stack of ``name`` and seed, pretrained (but ``random``), and
        what its training took."""
        if (name, seed) in self._stacks:
            return self._stacks[name, seed]
        a = self.args
        path = Path(a.out) / "stacks" / f"{name}-seed{seed}"
        if name == "random":
            model, info = self.fresh(name, seed), {"pretrain_epochs": 0, "pretrain_seconds": 0.0}
        elif (path / "training.json").is_file():
            info = json.loads((path / "training.json").read_text())
            stored = info.get("settings") or {}
            differ = sorted(k for k in self.pretraining if stored.get(k) != self.pretraining[k])
            if differ:
                raise SystemExit(f"{path} was pretrained with other settings ("
                                 + ", ".join(f"{k}={stored.get(k)!r}" for k in differ)
                                 + "): use another --out")
            model = ppvae.load(path)
        else:
            model = self.fresh(name, seed)
            epochs = model.num_layers * a.layer_epochs + a.finetune_epochs
            history = ppvae.fit(model, self.pretrain_data, epochs=epochs,
                                layer_epochs=a.layer_epochs, lr=a.lr, batch_size=a.batch_size,
                                patience=None, max_minutes=a.max_minutes, seed=seed,
                                progress=a.progress)
            info = {"settings": self.pretraining, "pretrain_epochs": history.epochs,
                    "pretrain_planned_epochs": epochs, "pretrain_seconds": history.seconds,
                    "val_reconstruction": history.metrics.get("val_reconstruction", [None])[-1]}
            ppvae.save(model, path)
            atomic_write(path / "training.json", (json.dumps(info, indent=2) + "\n").encode())
        self._stacks[name, seed] = model, info
        return model, info

    def cell(self, cell: dict[str, Any]) -> dict[str, Any]:
        """Fine-tune the classifier of one (model, labels, seed) cell."""
        a, data = self.args, self.data
        name, n, seed = cell["model"], cell["labels"], cell["seed"]
        model, info = self.stack(name, seed)
        pyro.set_rng_seed(seed)
        net = model.classifier(data.num_classes)
        split = labelled(data, n, seed)
        batch = min(a.classifier_batch_size, n)
        steps = math.ceil(n / batch)
        epochs = max(a.classifier_epochs, math.ceil(a.classifier_min_steps / steps))
        keep = KeepBest(net, data.val.x, data.val.y, every=math.ceil(epochs / VALIDATIONS))
        L.seed_everything(seed, verbose=False)
        start = time.perf_counter()
        with quiet_lightning():
            trainer = L.Trainer(
                max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                callbacks=[keep], max_time=None if a.max_minutes is None
                else datetime.timedelta(minutes=a.max_minutes))
            batches = EpochBatches(split.labelled.x, split.labelled.y, batch_size=batch,
                                   shuffle=True, seed=seed, epoch=lambda: trainer.current_epoch)
            trainer.fit(ClassifierModule(net, a.classifier_lr), train_dataloaders=batches)
        seconds = time.perf_counter() - start
        net.load_state_dict(keep.state)
        return {"test_error": error(net, data.test.x, data.test.y),
                "val_error": 1.0 - keep.best, "best_epoch": keep.best_epoch,
                "epochs": trainer.current_epoch, "planned_epochs": epochs,
                "steps_per_epoch": steps, "classifier_seconds": seconds,
                "val_curve": keep.curve, **{k: v for k, v in info.items() if k != "settings"}}


def tables(records: list[dict[str, Any]], args: argparse.Namespace, data: Dataset) -> str:
    """The test error table (mean ± sd over seeds), with the anchors, and the
    training each cell took."""
    summary = summarize(records, ("model", "labels"), "test_error")
    cells = {(r["model"], r["labels"]): r for r in summary}
    models = [m for m in MODELS if any(r["model"] == m for r in summary)]
    counts = sorted({r["labels"] for r in summary})
    seeds = sorted({r["seed"] for r in records})

    def head(n: int) -> str:
        return f"all ({n:,})" if n == len(data.train) else f"{n:,}"

    def cell(r: dict[str, Any] | None) -> str:
        if r is None:
            return ""
        spread = "" if r["spread"] is None else f" ± {100 * r['spread']:.2f}"
        return f"{100 * r['mean']:.2f}{spread}" + ("" if r["count"] == len(seeds)
                                                   else f" ({r['count']} seeds)")

    def classifier_minutes(m: str) -> float:
        rs = [r for r in records if r["model"] == m]
        return sum(r["classifier_seconds"] for r in rs) / 60 / len({r["seed"] for r in rs})

    anchor = data.name == "mnist" and len(args.sizes) == 3
    lines = [f"Test error (%) on {data.name}, labels per column; mean ± sd over seeds "
             f"{', '.join(map(str, seeds))}; minutes per seed", "",
             "| model | " + " | ".join(f"{head(n)} labels" for n in counts)
             + " | pretraining min | classifier min |"
             + (" Vincent et al. 2010, all labels |" if anchor else ""),
             "| --- |" + " ---: |" * (len(counts) + 2 + anchor)]
    for m in models:
        pretrain = {r["seed"]: r["pretrain_seconds"] for r in records if r["model"] == m}
        pretrain = sum(pretrain.values()) / 60 / len(pretrain)
        lines.append(f"| {label(m, args)} | " + " | ".join(cell(cells.get((m, n)))
                                                          for n in counts)
                     + f" | {pretrain:.1f} | {classifier_minutes(m):.1f} |"
                     + (f" {PAPER.get(m, '—')} |" if anchor else ""))
    lines += ["", "Best validation epoch / epochs run (per seed):", "",
              "| model | " + " | ".join(f"{head(n)} labels" for n in counts) + " |",
              "| --- |" + " ---: |" * len(counts)]
    for m in models:
        by = {(r["labels"], r["seed"]): r for r in records if r["model"] == m}
        lines.append(f"| {label(m, args)} | " + " | ".join(
            ", ".join(f"{by[n, s]['best_epoch']}/{by[n, s]['epochs']}"
                      for s in seeds if (n, s) in by) for n in counts) + " |")
    cut = sorted({f"{label(r['model'], args)} seed {r['seed']}: pretraining stopped at epoch "
                  f"{r['pretrain_epochs']} of {r['pretrain_planned_epochs']}" for r in records
                  if r["pretrain_epochs"] < r.get("pretrain_planned_epochs", 0)})
    cut += [f"{label(r['model'], args)}, {head(r['labels'])} labels, seed {r['seed']}: "
            f"classifier stopped at epoch {r['epochs']} of {r['planned_epochs']}"
            for r in records if r["epochs"] < r["planned_epochs"]]
    if cut:
        lines += ["", "Stopped by --max-minutes:", "", *(f"- {c}" for c in cut)]
    return "\n".join(lines) + "\n"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="mnist", choices=["mnist", "digits"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 1000, 1000],
                        help="widths of the stacked layers")
    parser.add_argument("--layer-epochs", type=int, default=30,
                        help="pretraining epochs per layer")
    parser.add_argument("--finetune-epochs", type=int, default=0,
                        help="epochs of the whole unrolled autoencoder after pretraining")
    parser.add_argument("--noise-level", type=float, default=0.25,
                        help="the SDAE's masking probability")
    parser.add_argument("--likelihood", default="bernoulli",
                        choices=["bernoulli", "continuous-bernoulli", "gaussian"],
                        help="p(x | z) in pretraining; bernoulli: on images binarized afresh "
                             "every epoch")
    parser.add_argument("--lr", type=float, default=1e-3, help="Adam's, in pretraining")
    parser.add_argument("--batch-size", type=int, default=128, help="in pretraining")
    parser.add_argument("--classifier-epochs", type=int, default=60)
    parser.add_argument("--classifier-min-steps", type=int, default=2000,
                        help="Adam steps of a classifier, at least")
    parser.add_argument("--classifier-batch-size", type=int, default=100)
    parser.add_argument("--classifier-lr", type=float, default=1e-3)
    parser.add_argument("--labels", nargs="+", default=["100", "1000", "all"],
                        help="labelled training images: numbers or 'all'")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="time limit of each stage (a stack's pretraining, a classifier)")
    parser.add_argument("--progress", action="store_true", help="pretraining progress")
    parser.add_argument("--out", default=f"runs/pretraining-{datetime.date.today()}")
    args = parser.parse_args()
    for name in ("layer_epochs", "finetune_epochs"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be >= 0")
    if args.layer_epochs + args.finetune_epochs < 1 and set(args.models) & {"sae", "sdae"}:
        parser.error("pretraining needs --layer-epochs or --finetune-epochs of at least 1")
    if not 0 < args.noise_level < 1:
        parser.error(f"--noise-level must lie in (0, 1), got {args.noise_level}")
    return args


def main() -> None:
    args = parse_args()
    data = load_dataset(args.dataset, seed=DATA_SEED)
    pretrain_data = (load_dataset(args.dataset, seed=DATA_SEED, binarize="dynamic")
                     if args.likelihood == "bernoulli" else data)
    labels = []
    try:  # bad counts or widths fail before any training
        for text in args.labels:
            n = len(data.train) if text == "all" else int(text)
            labelled(data, n, 0)
            labels.append(n)
        StackedAutoencoder(data.image_shape, args.sizes)
    except (ValueError, DataError) as e:
        raise SystemExit(f"error: {e}") from None
    config = settings(args, data)
    try:
        sweep = Sweep(args.out, "pretraining", config, key=("model", "labels", "seed"))
    except ValueError as e:  # a results file of other settings
        raise SystemExit(str(e)) from None
    bench = Bench(args, data, pretrain_data, config)
    cells = [{"model": m, "labels": n, "seed": s}
             for s in args.seeds for m in args.models for n in labels]
    sweep.run(cells, bench.cell, lambda r: (
        f"test error {100 * r['test_error']:.2f}%, best epoch {r['best_epoch']}/{r['epochs']} "
        f"({r['classifier_seconds']:.0f} s; pretraining {r['pretrain_seconds']:.0f} s)"))
    sweep.report("model", "labels", "test_error", "test error (%)", " (mean ± sd over seeds)",
                 scale=100, digits=2, log_x=True)
    records = [r for r in sweep.records
               if r["model"] in args.models and r["labels"] in labels and r["seed"] in args.seeds]
    text = tables(records, args, data)
    atomic_write(Path(args.out) / "table.md", text.encode())
    print(f"\nmachine: {machine()}; {len(data.train)} train / {len(data.val)} val / "
          f"{len(data.test)} test images; widths {'-'.join(map(str, args.sizes))}, sigmoid; "
          f"pretraining: Adam {args.lr:g}, batch {args.batch_size}, {args.layer_epochs} epochs "
          f"per layer, {args.finetune_epochs} of the whole autoencoder, {args.likelihood}; "
          f"classifier: Adam {args.classifier_lr:g}, batch {args.classifier_batch_size}, "
          f"{args.classifier_epochs} epochs (>= {args.classifier_min_steps} steps), best "
          "validation epoch kept\n")
    print(text)


if __name__ == "__main__":
    main()
