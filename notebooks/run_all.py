"""Execute the notebooks top to bottom and save them with their outputs.

    python notebooks/run_all.py                        # every notebook, full settings, in place
    python notebooks/run_all.py 02_log_likelihood      # one (or several) by name
    python notebooks/run_all.py --quick --out /tmp/nb  # the CI settings, copies written elsewhere

Each notebook runs in a fresh kernel with the notebook's folder (or ``--out``)
as its working directory. ``--quick`` sets ``PPVAE_NOTEBOOK_QUICK=1`` for the
kernel, which selects the tiny settings of each notebook's parameters cell;
never commit the outputs of a quick run. A failing cell stops that notebook
and leaves the file untouched.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
QUICK_ENV = "PPVAE_NOTEBOOK_QUICK"


def notebooks(names: list[str]) -> list[Path]:
    """The notebooks named (with or without ``.ipynb``), or all of them in order."""
    if not names:
        return sorted(HERE.glob("[0-9][0-9]_*.ipynb"))
    paths = [HERE / (n if n.endswith(".ipynb") else f"{n}.ipynb") for n in names]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise SystemExit(f"no such notebook: {', '.join(missing)}")
    return paths


def execute(path: Path, out_dir: Path, timeout: int) -> float:
    """Run ``path`` in a fresh kernel from ``out_dir``, write the executed
    notebook to ``out_dir / path.name``; return the wall time in seconds."""
    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(out_dir)}})
    client.execute()
    seconds = time.perf_counter() - start
    nbformat.write(nb, out_dir / path.name)
    return seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="notebooks to run (default: all)")
    parser.add_argument("--quick", action="store_true", help=f"set {QUICK_ENV}=1 (CI settings)")
    parser.add_argument("--out", type=Path, help="write the executed notebooks here "
                        "(default: in place)")
    parser.add_argument("--timeout", type=int, default=900, help="seconds per cell [900]")
    args = parser.parse_args(argv)
    os.environ[QUICK_ENV] = "1" if args.quick else "0"  # the kernel inherits it
    out_dir = (args.out or HERE).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in notebooks(args.names):
        print(f"{path.name} ...", end=" ", flush=True, file=sys.stderr)
        seconds = execute(path, out_dir, args.timeout)
        print(f"{seconds:.0f} s -> {out_dir / path.name}", file=sys.stderr)


if __name__ == "__main__":
    main()
