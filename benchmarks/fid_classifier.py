"""Train the small MNIST classifier whose features the classifier FID uses
(:mod:`ppvae.metrics.fid`) and write it as
``ppvae/metrics/mnist_classifier.safetensors``.

Seeded and deterministic on CPU: Adam 1e-3, batch 128, ``--epochs`` epochs
on MNIST's training split (grey images), the epoch with the best validation
accuracy kept; prints the test accuracy and the file's SHA-256 (for
benchmarks/README.md).

Usage: PPVAE_DATA=../shared/data python benchmarks/fid_classifier.py [--epochs 8] [--seed 0]
"""

from __future__ import annotations

import argparse
import copy
import hashlib

import torch
from common import machine
from safetensors.torch import save_file
from torch.nn.functional import cross_entropy

from ppvae.data import load_dataset
from ppvae.metrics.fid import CLASSIFIER_FILE, MNISTClassifier


@torch.no_grad()
def accuracy(net: MNISTClassifier, x: torch.Tensor, y: torch.Tensor) -> float:
    net.eval()
    return sum(int((net(x[i:i + 2000]).argmax(-1) == y[i:i + 2000]).sum())
               for i in range(0, len(x), 2000)) / len(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    data = load_dataset("mnist")
    print(f"{data}; {machine()}", flush=True)
    net = MNISTClassifier()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    x, y = data.train.x, data.train.y
    best, state = -1.0, None
    for epoch in range(1, args.epochs + 1):
        net.train()
        order = torch.randperm(len(x))
        for i in range(0, len(x), 128):
            batch = order[i:i + 128]
            optimizer.zero_grad()
            cross_entropy(net(x[batch]), y[batch]).backward()
            optimizer.step()
        val = accuracy(net, data.val.x, data.val.y)
        print(f"epoch {epoch}: validation accuracy {100 * val:.2f}%", flush=True)
        if val > best:
            best, state = val, copy.deepcopy(net.state_dict())
    net.load_state_dict(state)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, CLASSIFIER_FILE)
    digest = hashlib.sha256(CLASSIFIER_FILE.read_bytes()).hexdigest()
    print(f"test accuracy {100 * accuracy(net, data.test.x, data.test.y):.2f}% (validation "
          f"{100 * best:.2f}%); wrote {CLASSIFIER_FILE} (sha256 {digest})")


if __name__ == "__main__":
    main()
