"""Exceptions raised by :mod:`ppvae.data`."""

from __future__ import annotations

__all__ = ["DataError", "MissingDataError"]


class DataError(ValueError):
    """A data set cannot be loaded: corrupt file, bad checksum or bad argument."""


class MissingDataError(DataError, FileNotFoundError):
    """A data file is missing; the message says where it was looked for and how to get it."""
