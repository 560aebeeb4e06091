"""Sample-quality metrics: the classifier Frechet distance on MNIST
(:mod:`ppvae.metrics.fid`), computed offline with a small classifier the
project trains and ships."""

from ppvae.metrics.fid import (
    CLASSIFIER_FILE,
    MNISTClassifier,
    classifier_fid,
    feature_statistics,
    frechet_distance,
    load_classifier,
)

__all__ = ["CLASSIFIER_FILE", "MNISTClassifier", "classifier_fid", "feature_statistics",
           "frechet_distance", "load_classifier"]
