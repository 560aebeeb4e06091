"""Metrics: the classifier Frechet distance on MNIST (:mod:`ppvae.metrics.fid`),
computed offline with a small classifier the project trains and ships, and
the error of a clustering named by labelled points (:mod:`ppvae.metrics.clustering`)."""

from ppvae.metrics.clustering import cluster_labels, clustering_error
from ppvae.metrics.fid import (
    CLASSIFIER_FILE,
    MNISTClassifier,
    classifier_fid,
    feature_statistics,
    frechet_distance,
    load_classifier,
)

__all__ = ["CLASSIFIER_FILE", "MNISTClassifier", "classifier_fid", "cluster_labels",
           "clustering_error", "feature_statistics", "frechet_distance", "load_classifier"]
