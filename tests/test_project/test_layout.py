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


def test_main_job_smoke(tmp_path):
    """`make results` at smoke scale writes every experiment under the redirected results root."""
    env = {**__import__("os").environ, "LLC_SCALE": "smoke", "LLC_RESULTS_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "-m", "llc_estim.experiments.main"], cwd=REPO, check=True, env=env,
                   capture_output=True)
    for exp in ("complexity", "grokking", "training", "ablations"):
        metrics = json.loads((tmp_path / exp / "metrics.json").read_text())
        assert metrics, exp
        config = json.loads((tmp_path / exp / "config.json").read_text())
        assert "torch" in json.dumps(config)
    table = (tmp_path / "complexity" / "llc_table.csv").read_text().splitlines()
    assert table[0].startswith("program,llc_mean,llc_std,llc_std_seeds,llc_std_chains,step_size,localization,nbeta,"
                               "num_params")
    assert (tmp_path / "complexity" / "llc_vs_descriptors.png").stat().st_size > 0
    assert (tmp_path / "grokking" / "grokking_llc.png").exists() and (tmp_path / "ablations" / "fractok.csv").exists()
