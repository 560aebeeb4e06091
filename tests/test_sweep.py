"""Tests for :mod:`ppvae.experiments.sweep`: the resumable runner, its
summary, table and figure, on a fake experiment whose cells cost nothing."""

import json

import pytest
from matplotlib.figure import Figure

from ppvae import plots
from ppvae.config import at_least, unique
from ppvae.experiments.sweep import Sweep, markdown_table, summarize

RECORDS = [{"method": m, "labels": n, "seed": s, "error": e, "stderr": 0.01}
           for m, n, s, e in [("supervised", 100, 0, 0.3), ("m2", 100, 0, 0.2),
                              ("m2", 100, 1, 0.1), ("m2", 50, 0, 0.4)]]


def test_summarize_means_and_spreads_over_the_other_fields():
    summary = summarize(RECORDS, ("method", "labels"), "error")
    assert [(r["method"], r["labels"], r["count"]) for r in summary] == [
        ("supervised", 100, 1), ("m2", 100, 2), ("m2", 50, 1)]
    assert summary[1]["mean"] == pytest.approx(0.15)
    assert summary[1]["spread"] == pytest.approx(0.0707107)  # sample std over seeds
    assert summary[0]["spread"] is None
    assert summarize(RECORDS, ("method", "labels"), "error", "stderr")[0]["spread"] == 0.01


def test_markdown_table_pivots_rows_and_columns():
    summary = summarize(RECORDS, ("method", "labels"), "error")
    table = markdown_table(summary, "method", "labels", "error (%)", scale=100)
    assert table.splitlines() == [
        "error (%) (records per cell in brackets)", "",
        "| method | 100 | 50 |", "| --- | ---: | ---: |",
        "| supervised | 30.0 (1) |  |", "| m2 | 15.0 ± 7.1 (2) | 40.0 (1) |"]
    one = markdown_table(summary[:1], "method", "labels", "error", digits=2)
    assert one.splitlines()[0] == "error (1 per cell)" and "| supervised | 0.30 |" in one


def test_plot_sweep(tmp_path):
    summary = summarize(RECORDS, ("method", "labels"), "error")
    fig = plots.plot_sweep(summary, "labels", scale=100, log_x=True, path=tmp_path / "e.png")
    assert isinstance(fig, Figure) and (tmp_path / "e.png").is_file()
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["supervised", "m2"]
    with pytest.raises(ValueError, match="empty"):
        plots.plot_sweep([], "labels")


def test_sweep_runs_new_cells_only_and_refuses_other_settings(tmp_path, capsys):
    ran = []

    def run(cell):
        ran.append(cell["seed"])
        return {"error": 0.1 * cell["seed"]}

    cells = [{"method": "m", "seed": s} for s in (0, 1)]
    sweep = Sweep(tmp_path, "toy", {"dataset": "digits", "lr": 0.1}, key=("method", "seed"))
    sweep.run(cells, run, lambda r: f"error {r['error']}")
    assert ran == [0, 1] and "[2/2] method m, seed 1: error 0.1" in capsys.readouterr().err
    again = Sweep(tmp_path, "toy", {"dataset": "digits", "lr": 0.1}, key=("method", "seed"))
    records = again.run(cells + [{"method": "m", "seed": 2}], run, str)
    assert ran == [0, 1, 2] and [r["seed"] for r in records] == [0, 1, 2]
    assert "3 cells, 2 done before" in capsys.readouterr().err
    table = again.report("method", "seed", "error", "error", " (toy)")
    assert table.startswith("error on digits (toy)") and (tmp_path / "toy_results.png").is_file()
    stored = json.loads((tmp_path / "toy_results.json").read_text())
    assert stored["records"] == records and len(stored["summary"]) == 3
    with pytest.raises(ValueError, match=r"other settings \(lr=0.1; now lr=0.2\)"):
        Sweep(tmp_path, "toy", {"dataset": "digits", "lr": 0.2}, key=("method", "seed"))
    # a setting added later: old files count as run with its old value
    assert Sweep(tmp_path, "toy", {"dataset": "digits", "lr": 0.1, "new": 1},
                 key=("method", "seed"), added={"new": 1}).records == records
    (tmp_path / "toy_results.json").write_text("{")
    with pytest.raises(ValueError, match="not a ppvae toy results file"):
        Sweep(tmp_path, "toy", {}, key=("seed",))


def test_argument_checks():
    assert unique([2, 1, 2], "labels") == [2, 1]
    with pytest.raises(ValueError, match="seeds must not be empty"):
        unique([], "seeds")
    with pytest.raises(ValueError, match=r"methods must be among \['a', 'b'\], got \['c'\]"):
        unique(["a", "c"], "methods", ("a", "b"))

    class Settings:
        epochs, lr, limit = 0, 0.0, None

    at_least(Settings, 0, ["epochs", "limit"])
    with pytest.raises(ValueError, match="epochs must be at least 1, got 0"):
        at_least(Settings, 1, ["epochs"])
    with pytest.raises(ValueError, match="lr must be above 0, got 0.0"):
        at_least(Settings, 0, ["lr", "limit"], strictly=True)
