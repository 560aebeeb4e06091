"""The Frechet distance between two sets of images in the feature space of a
classifier (Heusel, Ramsauer, Unterthiner, Nessler & Hochreiter 2017, "GANs
trained by a two time-scale update rule converge to a local Nash
equilibrium": FID with Inception features; here, offline, the features of a
small MNIST classifier the project trains and ships, as is common for MNIST).

Each set's features are summarized by their mean mu and covariance S, and::

    d^2 = |mu_1 - mu_2|^2 + tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2)),

the squared 2-Wasserstein distance between the two Gaussians with those
moments; tr (S_1 S_2)^(1/2) is the sum of the square roots of the
eigenvalues of S_1^(1/2) S_2 S_1^(1/2) (symmetric, positive semi-definite).

The classifier (:class:`MNISTClassifier`: two convolutions, a 128-unit
feature layer, 10 logits) is trained by ``benchmarks/fid_classifier.py``
(seeded; its test accuracy and the file's checksum are recorded in
benchmarks/README.md) and shipped as ``mnist_classifier.safetensors`` beside
this module; features are its 128 hidden units.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

#: the shipped weights of the feature classifier
CLASSIFIER_FILE = Path(__file__).with_name("mnist_classifier.safetensors")


class MNISTClassifier(nn.Module):
    """28x28 grey images ``(N, 784)`` in [0, 1] -> 10 logits, through 128
    features: conv 5x5 (16) - max-pool - conv 5x5 (32) - max-pool - 128 - 10,
    ReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(32 * 4 * 4, 128), nn.ReLU())
        self.head = nn.Linear(128, 10)

    def features(self, x: Tensor) -> Tensor:
        """The 128 features ``(N, 128)`` of flattened images ``(N, 784)``."""
        return self.body(x.reshape(-1, 1, 28, 28))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def load_classifier(path: str | Path = CLASSIFIER_FILE) -> MNISTClassifier:
    """The shipped feature classifier (eval mode); ``FileNotFoundError``
    saying how to make it when the file is missing."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: python benchmarks/fid_classifier.py "
                                "trains and writes it")
    net = MNISTClassifier()
    net.load_state_dict(load_file(path))
    return net.eval()


def frechet_distance(mu1: Tensor, cov1: Tensor, mu2: Tensor, cov2: Tensor) -> float:
    """d^2 between N(mu1, cov1) and N(mu2, cov2) (module doc), in float64.
    Each covariance is taken as its symmetric part (S + S^T) / 2: one computed
    by a matrix product can be asymmetric by a rounding unit, and the
    eigendecomposition reads one triangle only, so d^2(mu, S; mu, S) would
    then be the size of that rounding rather than 0."""
    mu1, mu2 = mu1.to(torch.float64), mu2.to(torch.float64)
    cov1, cov2 = (0.5 * (c + c.T) for c in (cov1.to(torch.float64), cov2.to(torch.float64)))
    values, vectors = torch.linalg.eigh(cov1)
    root1 = vectors @ torch.diag(values.clamp_min(0).sqrt()) @ vectors.T
    middle = torch.linalg.eigvalsh(root1 @ cov2 @ root1).clamp_min(0).sqrt().sum()
    return float((mu1 - mu2).pow(2).sum() + cov1.trace() + cov2.trace() - 2 * middle)


@torch.no_grad()
def feature_statistics(images: Tensor, classifier: MNISTClassifier | None = None,
                       batch_size: int = 1000) -> tuple[Tensor, Tensor]:
    """Mean ``(128,)`` and covariance ``(128, 128)`` of the classifier's
    features of flattened 28x28 images ``(N, 784)`` in [0, 1], N >= 2."""
    if images.dim() != 2 or images.shape[1] != 784 or len(images) < 2:
        raise ValueError(f"images must be (N >= 2, 784) flattened 28x28 images, got "
                         f"{tuple(images.shape)}")
    classifier = classifier or load_classifier()
    features = torch.cat([classifier.features(images[i:i + batch_size].float())
                          for i in range(0, len(images), batch_size)]).to(torch.float64)
    return features.mean(0), torch.cov(features.T)


def classifier_fid(images: Tensor, reference: Tensor,
                   classifier: MNISTClassifier | None = None) -> float:
    """The Frechet distance between two sets of flattened MNIST-sized images
    (e.g. 10,000 model samples and the test images) in the classifier's features."""
    classifier = classifier or load_classifier()
    return frechet_distance(*feature_statistics(images, classifier),
                            *feature_statistics(reference, classifier))
