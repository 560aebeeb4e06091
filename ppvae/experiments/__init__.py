"""Experiments that train many models and report tables and figures.

:func:`run_ssl` runs the semi-supervised classification experiment of Kingma,
Rezende, Mohamed & Welling (2014): M2, M1+M2 and a supervised baseline over
label counts and seeds (see :mod:`ppvae.experiments.ssl`). :func:`run_cvae`
runs the image completion benchmark of Sohn, Lee & Yan (2015): a conditional
VAE and a deterministic network given 1, 2 or 3 quadrants (see
:mod:`ppvae.experiments.cvae`).
"""

from ppvae.experiments.cvae import CVAESettings, run_cvae
from ppvae.experiments.ssl import METHODS, SSLSettings, markdown_table, run_ssl, summarize

__all__ = ["METHODS", "CVAESettings", "SSLSettings", "markdown_table", "run_cvae", "run_ssl",
           "summarize"]
