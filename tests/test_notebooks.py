"""The notebooks: one per kind of study, committed with rendered outputs from results/, re-runnable at smoke scale.

By default (`RERUN = False`) a notebook only reads the committed `results/<experiment>/`; with `LLC_RERUN=1` it
recomputes its study at `LLC_SCALE` into `LLC_RESULTS_DIR` first. The tests run both ways and never write into
results/.
"""

import hashlib
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for p in REPO.glob("llc_*/**/*.ipynb") if ".ipynb_checkpoints" not in str(p))
EXPERIMENT = {"complexity.ipynb": "complexity", "ablations.ipynb": "ablations", "training.ipynb": "training",
              "mod_add.ipynb": "grokking"}


def _ids(p: Path) -> str:
    return str(p.relative_to(REPO))


def _execute(path: Path, cwd: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def _images(nb) -> int:
    return sum("image/png" in out.get("data", {}) for c in nb.cells if c.cell_type == "code"
               for out in c.get("outputs", []))


def _results_digest() -> str:
    h = hashlib.sha256()
    for p in sorted((REPO / "results").rglob("*")):
        if p.is_file():
            h.update(str(p).encode() + p.read_bytes())
    return h.hexdigest()


def _committed(path: Path) -> bool:
    return (REPO / "results" / EXPERIMENT[path.name] / "metrics.json").exists()


def _says_missing(nb) -> bool:
    return any("no committed results" in out.get("text", "") for c in nb.cells if c.cell_type == "code"
               for out in c.get("outputs", []))


def test_one_notebook_per_kind_of_study_each_committed_with_a_rendered_figure():
    """Committed with outputs: a figure where the study's results are committed, else the words saying so."""
    assert sorted(p.name for p in NOTEBOOKS) == sorted(EXPERIMENT)
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        if _committed(path):
            assert _images(nb) >= 1, f"{path} is committed without a rendered figure"
        else:
            assert _says_missing(nb), f"{path}: its study has no committed results and the notebook does not say so"
        source = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        assert "RERUN = rerun_requested()" in source, path  # off unless LLC_RERUN=1


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids)
def test_notebook_shows_the_committed_results_without_computing(path, tmp_path, monkeypatch):
    monkeypatch.setenv("LLC_RERUN", "0")
    monkeypatch.setenv("LLC_RESULTS_DIR", str(tmp_path / "unused"))
    before = _results_digest()
    nb = _execute(path, tmp_path)
    assert _images(nb) >= 1 if _committed(path) else _says_missing(nb)
    assert not (tmp_path / "unused").exists() and _results_digest() == before


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids)
def test_notebook_reruns_its_study_at_smoke_scale_outside_results(path, tmp_path, monkeypatch):
    monkeypatch.setenv("LLC_RERUN", "1")
    monkeypatch.setenv("LLC_SCALE", "smoke")
    monkeypatch.setenv("LLC_RESULTS_DIR", str(tmp_path))
    monkeypatch.setenv("PYTHONHASHSEED", "0")
    before = _results_digest()
    nb = _execute(path, tmp_path)
    assert (tmp_path / EXPERIMENT[path.name] / "metrics.json").exists()
    # every study draws devinterp-style per-chain diagnostics (burn-in shaded, acceptance) of its estimates
    assert (tmp_path / EXPERIMENT[path.name] / "diagnostics.png").exists()
    assert _images(nb) >= 1 and _results_digest() == before
