"""Experiments that train many models and report tables and figures, each a
:class:`~ppvae.experiments.sweep.Sweep` over cells: :func:`run_ssl`, the
semi-supervised classification of Kingma et al. (2014), and :func:`run_cvae`,
the image completion of Sohn et al. (2015)."""

from ppvae.experiments.cvae import CVAESettings, run_cvae
from ppvae.experiments.ssl import METHODS, SSLSettings, run_ssl
from ppvae.experiments.sweep import Sweep, summarize

__all__ = ["METHODS", "CVAESettings", "SSLSettings", "Sweep", "run_cvae", "run_ssl", "summarize"]
