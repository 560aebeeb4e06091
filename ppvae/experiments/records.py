"""What the experiment runners share: argument lists without repeats, and the
records of an earlier run read back for resuming."""

from __future__ import annotations

import json
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any


def unique(values: Sequence[Hashable], name: str) -> list:
    """``values`` without repeats, in order; raises ``ValueError`` if empty."""
    kept = list(dict.fromkeys(values))
    if not kept:
        raise ValueError(f"{name} must not be empty")
    return kept


def read_records(path: Path, config: dict[str, Any], kind: str,
                 added: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The records of an earlier run stored in ``path`` as ``{"config",
    "records", ...}`` (none if the file does not exist), refusing a file that
    is not a ppvae ``kind`` results file or holds results of other settings.
    ``added``: settings introduced after such files were first written, with
    the value that files without them were run with."""
    if not path.is_file():
        return []
    try:
        results = json.loads(path.read_text())
        stored, records = {**(added or {}), **results["config"]}, results["records"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{path} is not a ppvae {kind} results file ({e!r})") from None
    differ = sorted(k for k in config.keys() | stored.keys() if config.get(k) != stored.get(k))
    if differ:
        was = ", ".join(f"{k}={stored.get(k)!r}" for k in differ)
        now = ", ".join(f"{k}={config.get(k)!r}" for k in differ)
        raise ValueError(f"{path} holds results for other settings ({was}; now {now}): "
                         "use another out_dir (--out)")
    return records
