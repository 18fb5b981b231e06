"""Project-level guarantees: our tracr is the one imported, and the package dependency direction holds."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# package -> packages of ours it must never import (DESIGN.md: tracr <- rasp_models <- datasets <- llc_training;
# llc_estim is standalone, torch and numpy only)
FORBIDDEN = {
    "tracr": ["rasp_models", "datasets", "llc_estim", "llc_training"],
    "rasp_models": ["datasets", "llc_estim", "llc_training"],
    "datasets": ["llc_estim", "llc_training"],
    "llc_estim": ["tracr", "rasp_models", "datasets", "llc_training"],
}


def test_tracr_is_ours():
    import tracr

    assert Path(tracr.__file__).resolve().is_relative_to(REPO)


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_dependency_direction(package):
    """Import the package (and its submodules) in a clean interpreter and list which of ours got loaded."""
    code = (
        "import importlib, pkgutil, sys, json\n"
        f"pkg = importlib.import_module({package!r})\n"
        "for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "    if '.experiments' not in m.name: importlib.import_module(m.name)\n"
        "print(json.dumps(sorted({k.split('.')[0] for k in sys.modules})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1]))
    assert not loaded & set(FORBIDDEN[package]), loaded & set(FORBIDDEN[package])


def test_hugging_face_datasets_not_installed():
    import datasets

    assert Path(datasets.__file__).resolve().is_relative_to(REPO)


def test_main_job_smoke(tmp_path, monkeypatch):
    """`make results` at smoke scale writes its files under the redirected results root."""
    env = {"LLC_SCALE": "smoke", "LLC_RESULTS_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "-m", "llc_estim.experiments.main"], cwd=REPO, check=True,
                   env={**__import__("os").environ, **env}, capture_output=True)
    out = tmp_path / "compiled_llc"
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"identity", "fractok"}
    for m in metrics.values():
        assert "llc/mean" in m and "llc/std" in m
    config = json.loads((out / "config.json").read_text())
    assert config["seed"] == 0 and config["environment"]["torch"].startswith("2.13.0")
    assert (out / "llc_vs_nonzero.png").stat().st_size > 0 and (out / "llc_table.csv").exists()
