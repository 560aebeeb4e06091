"""Clustering error: the classes a clustering's clusters stand for, and the
error of labelling every point by its cluster's class.

A model that clusters without labels (such as
:class:`ppvae.models.CategoricalAdversarialAutoencoder`) gives each point n
cluster probabilities q(k | x_n). Its clusters are named by a labelled set
(Makhzani et al. 2015, Sec. 6): cluster k takes the label of the point that
maximizes q(k | x_n) (``rule="max-prob"``), or the most frequent label among
the points assigned to it (``rule="majority"``, the usual choice of the
clustering literature with more clusters than classes). The clustering error
is then the share of points whose cluster's label is not their own. Neither
rule is fit on the points it is scored on unless the caller does so.
"""

from __future__ import annotations

import torch
from torch import Tensor

RULES = ("max-prob", "majority")


def cluster_labels(probs: Tensor, labels: Tensor, rule: str = "max-prob") -> Tensor:
    """The label of each of the K clusters ``(K,)`` from cluster
    probabilities ``probs`` ``(N, K)`` of labelled points ``labels`` ``(N,)``.

    ``"max-prob"``: cluster k gets ``labels[argmax_n probs[n, k]]``.
    ``"majority"``: the most frequent label among the points whose most
    probable cluster is k (ties to the smaller label); a cluster no point
    falls in gets the label of its most probable point, as under ``"max-prob"``.
    """
    probs, labels = torch.as_tensor(probs), torch.as_tensor(labels).long()
    if probs.dim() != 2 or labels.shape != probs.shape[:1] or not len(labels):
        raise ValueError(f"probs must be (N, K) and labels (N,) with N >= 1, got "
                         f"{tuple(probs.shape)} and {tuple(labels.shape)}")
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; choose one of {list(RULES)}")
    named = labels[probs.argmax(0)]
    if rule == "majority":
        counts = torch.zeros(probs.shape[1], int(labels.max()) + 1, dtype=torch.long)
        counts.index_put_((probs.argmax(1), labels), torch.ones_like(labels), accumulate=True)
        named = torch.where(counts.sum(1) > 0, counts.argmax(1), named)
    return named


def clustering_error(probs: Tensor, labels: Tensor, names: Tensor) -> float:
    """The share of points ``(N,)`` whose most probable cluster (``probs``
    ``(N, K)``) is named (``names`` ``(K,)``, from :func:`cluster_labels`)
    by a label other than their own."""
    probs, labels = torch.as_tensor(probs), torch.as_tensor(labels).long()
    if probs.dim() != 2 or labels.shape != probs.shape[:1] or names.shape != probs.shape[1:]:
        raise ValueError(f"probs (N, K), labels (N,) and names (K,) disagree: "
                         f"{tuple(probs.shape)}, {tuple(labels.shape)}, {tuple(names.shape)}")
    return float((names[probs.argmax(1)] != labels).double().mean())
