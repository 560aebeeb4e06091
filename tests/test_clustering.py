"""Naming clusters by labelled points and the clustering error, against
hand-worked cases."""

import pytest
import torch

from ppvae.metrics import cluster_labels, clustering_error


def test_each_rule_names_the_clusters_as_worked_by_hand():
    # 5 points, 3 clusters; most probable clusters: 0, 0, 1, 1, 0
    probs = torch.tensor([[0.9, 0.1, 0.0], [0.5, 0.2, 0.3], [0.1, 0.6, 0.3],
                          [0.2, 0.7, 0.1], [0.6, 0.0, 0.4]])
    labels = torch.tensor([4, 2, 2, 3, 2])
    # max-prob: cluster 0's most probable point is 0 (label 4), cluster 1's is 3
    # (label 3), cluster 2's is 4 (label 2)
    assert cluster_labels(probs, labels).tolist() == [4, 3, 2]
    # majority: cluster 0 holds points 0, 1, 4 (labels 4, 2, 2) -> 2; cluster 1
    # holds 2, 3 (labels 2, 3: a tie) -> 2; cluster 2 holds none -> max-prob's 2
    assert cluster_labels(probs, labels, "majority").tolist() == [2, 2, 2]
    assert clustering_error(probs, labels, torch.tensor([4, 3, 2])) == pytest.approx(3 / 5)
    assert clustering_error(probs, labels, torch.tensor([2, 2, 2])) == pytest.approx(2 / 5)


def test_a_perfect_clustering_with_more_clusters_than_classes_has_no_error():
    torch.manual_seed(0)
    labels = torch.randint(0, 3, (200,))
    cluster = labels * 2 + torch.randint(0, 2, (200,))  # two clusters per class
    probs = torch.nn.functional.one_hot(cluster, 6).float() * 0.9 + 0.1 / 6
    for rule in ("max-prob", "majority"):
        names = cluster_labels(probs, labels, rule)
        assert names.tolist() == [0, 0, 1, 1, 2, 2]
        assert clustering_error(probs, labels, names) == 0.0


@pytest.mark.parametrize("args, message", [
    ((torch.rand(4, 3), torch.zeros(5, dtype=torch.long)), "probs must be"),
    ((torch.rand(4, 3), torch.zeros(4, dtype=torch.long), "vote"), "unknown rule")])
def test_bad_arguments(args, message):
    with pytest.raises(ValueError, match=message):
        cluster_labels(*args)
    with pytest.raises(ValueError, match="disagree"):
        clustering_error(torch.rand(4, 3), torch.zeros(4, dtype=torch.long), torch.zeros(2))
