"""Experiments that train many models and report tables and figures.

:func:`run_ssl` runs the semi-supervised classification experiment of Kingma,
Rezende, Mohamed & Welling (2014): M2, M1+M2 and a supervised baseline over
label counts and seeds (see :mod:`ppvae.experiments.ssl`).
"""

from ppvae.experiments.ssl import METHODS, SSLSettings, markdown_table, run_ssl, summarize

__all__ = ["METHODS", "SSLSettings", "markdown_table", "run_ssl", "summarize"]
