"""The runner every experiment shares: a resumable sweep over cells (methods x
settings x seeds).

Finished cells are records in ``out_dir/<kind>_results.json`` (``{"config",
"records", "summary"}``), rewritten atomically after every cell: an
interrupted sweep resumes where it stopped, a new seed or setting runs only
its new cells, and a results file of other settings is refused before any
work. :meth:`Sweep.report` adds ``<kind>_results.md`` and ``<kind>_results.png``.
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from ppvae.atomic import atomic_write
from ppvae.plots import plot_sweep


def summarize(records: Iterable[dict[str, Any]], by: Sequence[str], value: str,
              error: str | None = None) -> list[dict[str, Any]]:
    """One row per distinct ``by`` fields, in order of appearance: ``mean``, the
    mean of ``value`` over its records (the seeds); ``spread``, their sample
    standard deviation, or a single record's ``error`` field (else None);
    ``count``, the number of records."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault(tuple(r[k] for k in by), []).append(r)
    return [{**dict(zip(by, key)), "mean": statistics.fmean(r[value] for r in rs),
             "spread": (statistics.stdev(r[value] for r in rs) if len(rs) > 1
                        else rs[0].get(error) if error else None), "count": len(rs)}
            for key, rs in groups.items()]


def markdown_table(summary: Sequence[dict[str, Any]], rows: str, columns: str, title: str,
                   scale: float = 1.0, digits: int = 1) -> str:
    """A Markdown table of the summary: a row per value of ``rows``, a column
    per value of ``columns``, cells ``mean ± spread`` times ``scale`` (and the
    count of records where counts differ)."""
    cells = {(r[rows], r[columns]): r for r in summary}
    across = list(dict.fromkeys(r[columns] for r in summary))
    counts = {r["count"] for r in summary}

    def cell(r: dict[str, Any] | None) -> str:
        spread = "" if r is None or r["spread"] is None else f" ± {scale * r['spread']:.{digits}f}"
        count = f" ({r['count']})" if r is not None and len(counts) > 1 else ""
        return "" if r is None else f"{scale * r['mean']:.{digits}f}{spread}{count}"

    per_cell = "records per cell in brackets" if len(counts) > 1 else f"{min(counts)} per cell"
    return "\n".join([
        f"{title} ({per_cell})", "", f"| {rows} | " + " | ".join(map(str, across)) + " |",
        "| --- |" + " ---: |" * len(across),
        *(f"| {name} | " + " | ".join(cell(cells.get((name, c))) for c in across) + " |"
          for name in dict.fromkeys(r[rows] for r in summary))]) + "\n"


class Sweep:
    """The cells of one experiment in ``out_dir``, identified by the record
    fields ``key``, for the settings ``config`` (JSON-able); ``added`` holds
    settings introduced after results files of this kind were first written,
    with the value such files were run with."""

    def __init__(self, out_dir: str | Path, kind: str, config: dict[str, Any],
                 key: Sequence[str], added: dict[str, Any] | None = None) -> None:
        self.out_dir, self.kind, self.key = Path(out_dir), kind, tuple(key)
        self.path = self.out_dir / f"{kind}_results.json"
        self.config = json.loads(json.dumps(config))
        self.records: list[dict[str, Any]] = []
        self.summary: list[dict[str, Any]] = []
        if self.path.is_file():
            try:
                results = json.loads(self.path.read_text())
                stored, self.records = {**(added or {}), **results["config"]}, results["records"]
            except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
                raise ValueError(f"{self.path} is not a ppvae {kind} results file "
                                 f"({e!r})") from None
            differ = sorted(k for k in self.config.keys() | stored.keys()
                            if self.config.get(k) != stored.get(k))
            if differ:
                raise ValueError(
                    f"{self.path} holds results for other settings "
                    f"({', '.join(f'{k}={stored.get(k)!r}' for k in differ)}; now "
                    f"{', '.join(f'{k}={self.config.get(k)!r}' for k in differ)}): "
                    "use another out_dir (--out)")
        self.write()

    def write(self) -> None:
        """Rewrite the results file atomically."""
        results = {"config": self.config, "records": self.records, "summary": self.summary}
        atomic_write(self.path, (json.dumps(results, indent=2) + "\n").encode())

    def run(self, cells: list[dict[str, Any]], run: Callable[[dict[str, Any]], dict[str, Any]],
            describe: Callable[[dict[str, Any]], str]) -> list[dict[str, Any]]:
        """Run the cells not done before (``run(cell)`` returns the cell's
        results), one line per cell on standard error; returns all records."""
        done = {tuple(r[k] for k in self.key) for r in self.records}
        print(f"{self.out_dir}: {len(cells)} cells, "
              f"{sum(tuple(c[k] for k in self.key) in done for c in cells)} done before",
              file=sys.stderr)
        for i, cell in enumerate(cells, 1):
            line = f"[{i}/{len(cells)}] {', '.join(f'{k} {cell[k]}' for k in self.key)}"
            if tuple(cell[k] for k in self.key) in done:
                print(f"{line}: done before", file=sys.stderr)
                continue
            self.records.append({**cell, **run(cell)})
            self.write()
            print(f"{line}: {describe(self.records[-1])}", file=sys.stderr, flush=True)
        return self.records

    def report(self, rows: str, columns: str, value: str, label: str, note: str = "",
               error: str | None = None, scale: float = 1.0, digits: int = 1,
               log_x: bool = False) -> str:
        """Summarize ``value`` per ``rows`` and ``columns`` field over the other
        key fields (:func:`summarize`) into the results file, as the table
        ``<kind>_results.md`` (titled ``label``, the data set and ``note``) and
        the figure ``<kind>_results.png`` (a line per ``rows`` value against
        ``columns``); return the table."""
        self.summary = summarize(self.records, (rows, columns), value, error)
        self.write()
        dataset = self.config.get("dataset", "")
        table = markdown_table(self.summary, rows, columns, f"{label} on {dataset}{note}",
                               scale, digits)
        atomic_write(self.out_dir / f"{self.kind}_results.md", table.encode())
        plot_sweep(self.summary, columns, group=rows, scale=scale, log_x=log_x, ylabel=label,
                   title=dataset, path=self.out_dir / f"{self.kind}_results.png")
        return table
