"""The notebooks: each runs top to bottom with its quick settings
(``PPVAE_NOTEBOOK_QUICK=1``), on a copy, and each committed notebook holds the
outputs of an error-free run with the full settings."""

import shutil
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ["01_vae_basics", "02_log_likelihood", "03_semi_supervised", "04_conditional",
         "05_autoencoders"]
NOTEBOOKS = [NOTEBOOK_DIR / f"{name}.ipynb" for name in NAMES]
QUICK_ENV = "PPVAE_NOTEBOOK_QUICK"
CELL_TIMEOUT = 300  # seconds; a quick run takes seconds per notebook
MAX_BYTES = 2_000_000


def code_cells(nb):
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def test_every_notebook_is_listed():
    assert sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb")) == NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NAMES)
def test_notebook_runs_with_quick_settings(path, tmp_path, monkeypatch):
    monkeypatch.setenv(QUICK_ENV, "1")  # the kernel inherits this process's environment
    committed = path.read_bytes()
    copy = tmp_path / path.name
    shutil.copyfile(path, copy)
    nb = nbformat.read(copy, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, with the traceback, if a cell fails
    outputs = [out for cell in code_cells(nb) for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    assert any("settings: quick" in out.get("text", "") for out in outputs)
    assert path.read_bytes() == committed


@pytest.mark.parametrize("path", NOTEBOOKS, ids=NAMES)
def test_committed_notebook_holds_a_full_run(path):
    assert path.stat().st_size < MAX_BYTES
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    cells = code_cells(nb)
    assert [cell.execution_count for cell in cells] == list(range(1, len(cells) + 1))
    assert "parameters" in cells[0].metadata.get("tags", [])
    outputs = [out for cell in cells for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    assert any("image/png" in out.get("data", {}) for out in outputs)
    assert any("settings: full" in out.get("text", "") for out in outputs)
