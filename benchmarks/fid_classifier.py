"""Train the small MNIST classifier whose features the classifier FID uses
(:mod:`ppvae.metrics.fid`) and write it as
``ppvae/metrics/mnist_classifier.safetensors``.

Seeded: Adam 1e-3, batch 128, ``--epochs`` epochs on MNIST's training split
(grey images), the epoch with the best validation accuracy kept; prints the
test accuracy and the file's SHA-256 (for benchmarks/README.md). ``--check``
trains nothing: it scores the shipped classifier (test accuracy) and its FID
on known cases: two random halves of the test images (and the test file's two
halves as stored), the validation images against the test images, blurred
test images (3x3 mean filter) and uniform noise against test images.

Usage: PPVAE_DATA=../shared/data python benchmarks/fid_classifier.py [--epochs 8] [--seed 0]
       PPVAE_DATA=../shared/data python benchmarks/fid_classifier.py --check
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
from ppvae.metrics.fid import CLASSIFIER_FILE, MNISTClassifier, classifier_fid, load_classifier


@torch.no_grad()
def accuracy(net: MNISTClassifier, x: torch.Tensor, y: torch.Tensor) -> float:
    net.eval()
    return sum(int((net(x[i:i + 2000]).argmax(-1) == y[i:i + 2000]).sum())
               for i in range(0, len(x), 2000)) / len(x)


def check(data) -> None:
    """The shipped classifier's test accuracy and FID on known cases."""
    net = load_classifier()
    order = torch.randperm(10000, generator=torch.Generator().manual_seed(0))
    first, second = data.test.x[order[:5000]], data.test.x[order[5000:]]
    blurred = torch.nn.functional.avg_pool2d(first.reshape(-1, 1, 28, 28), 3, 1, 1)
    noise = torch.rand(5000, 784, generator=torch.Generator().manual_seed(0))
    print(f"{CLASSIFIER_FILE} (sha256 {hashlib.sha256(CLASSIFIER_FILE.read_bytes()).hexdigest()})"
          f": test accuracy {100 * accuracy(net, data.test.x, data.test.y):.2f}%")
    for name, a, b in (("two random halves of the test images", first, second),
                       ("the test file's first 5,000 images against its last 5,000",
                        data.test.x[:5000], data.test.x[5000:]),
                       ("validation images against test images", data.val.x, data.test.x),
                       ("blurred test images against the other half", blurred.reshape(-1, 784),
                        second),
                       ("uniform noise against test images", noise, second)):
        print(f"FID, {name}: {classifier_fid(a, b, net):.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check", action="store_true", help="score the shipped classifier only")
    args = parser.parse_args()
    if args.check:
        return check(load_dataset("mnist"))
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
