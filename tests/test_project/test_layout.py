"""Project-level guarantees: our tracr is the one imported, and the package dependency direction holds.

The dependency direction (README.md, "Folder map"): libraries at the bottom, `tracr` <- `rasp_models` <- `datasets`;
`llc_estim` is a standalone estimator library (torch, numpy, scipy; none of our packages); `llc_training` (trainable models on the
shared transformer body, the training loop) may use `llc_estim`, `tracr`, `rasp_models` and `datasets`; the studies
(`studies`) form one layer on top of all of them; `benchmarks` may use every library but not the studies (and the
compiler's test cases in `tests`). No exemptions: every module of every package is checked, imports inside functions
included, and the package import graph has no cycle.
"""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

LIBRARIES = {"tracr", "rasp_models", "datasets", "llc_estim", "llc_training"}
# package -> the packages of ours it may import
ALLOWED = {
    "tracr": set(),
    "rasp_models": {"tracr"},
    "datasets": {"tracr", "rasp_models"},
    "llc_estim": set(),
    "llc_training": {"llc_estim", "tracr", "rasp_models", "datasets"},
    "studies": set(LIBRARIES),
    "benchmarks": set(LIBRARIES) | {"tests"},
}
OURS = set(ALLOWED) | {"tests"}


def _modules(package: str) -> list[Path]:
    return sorted(p for p in (REPO / package).rglob("*.py") if "__pycache__" not in p.parts)


def _imported_packages(path: Path) -> set[str]:
    """Top-level packages of ours that a module imports anywhere (module level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & OURS


def import_graph() -> dict[str, set[str]]:
    """Package -> the other packages of ours its modules import."""
    return {pkg: set().union(*(_imported_packages(p) for p in _modules(pkg))) - {pkg} for pkg in ALLOWED}


def test_tracr_is_ours():
    import tracr

    assert Path(tracr.__file__).resolve().is_relative_to(REPO)


def test_every_package_is_checked():
    packages = {p.parent.name for p in REPO.glob("*/__init__.py")}
    assert packages - {"tests"} == set(ALLOWED), "add the new package to ALLOWED (and to README.md)"


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_dependency_direction_in_the_source(package):
    """Every import statement of every module (function-level ones included) stays within the allowed packages."""
    bad = {str(p.relative_to(REPO)): sorted(_imported_packages(p) - ALLOWED[package] - {package})
           for p in _modules(package)}
    assert not {k: v for k, v in bad.items() if v}


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_dependency_direction_when_imported(package):
    """Import every submodule in a clean interpreter and list which of our packages got loaded."""
    code = (
        "import importlib, pkgutil, sys, json\n"
        f"pkg = importlib.import_module({package!r})\n"
        "for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
        "    importlib.import_module(m.name)\n"
        "print(json.dumps(sorted({k.split('.')[0] for k in sys.modules})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    loaded = set(json.loads(out.stdout.strip().splitlines()[-1])) & OURS
    assert not loaded - ALLOWED[package] - {package}


def find_cycle(graph: dict[str, set[str]]):
    """A cycle of the directed graph as a list of nodes (first == last), or None if it is acyclic."""
    done, active = set(), []

    def visit(node):
        if node in active:
            return active[active.index(node):] + [node]
        if node in done:
            return None
        active.append(node)
        for dep in sorted(graph.get(node, ())):
            cycle = visit(dep)
            if cycle:
                return cycle
        active.pop()
        done.add(node)
        return None

    for node in sorted(graph):
        cycle = visit(node)
        if cycle:
            return cycle
    return None


def test_cycle_finder():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_package_level_import_cycle():
    graph = import_graph()
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_llc_estim_is_a_library_of_torch_and_numpy():
    """Nothing under llc_estim imports the compiler, the programs, the data or the training code."""
    assert import_graph()["llc_estim"] == set()


def test_hugging_face_datasets_not_installed():
    import datasets

    assert Path(datasets.__file__).resolve().is_relative_to(REPO)


def test_main_job_smoke(tmp_path):
    """`make results` at smoke scale writes every experiment under the redirected results root."""
    env = {**__import__("os").environ, "LLC_SCALE": "smoke", "LLC_RESULTS_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "-m", "studies.main"], cwd=REPO, check=True, env=env, capture_output=True)
    for exp in ("complexity", "grokking", "training", "ablations"):
        metrics = json.loads((tmp_path / exp / "metrics.json").read_text())
        assert metrics, exp
        config = json.loads((tmp_path / exp / "config.json").read_text())
        assert "torch" in json.dumps(config)
        assert {"git_commit", "dirty"} <= set(config["environment"]), exp
    header = (tmp_path / "complexity" / "llc_table.csv").read_text().splitlines()[0].split(",")
    assert {"program", "llc_mean", "valid", "half_rank", "effective_half_rank", "half_dim", "reason"} <= set(header)
    assert (tmp_path / "complexity" / "llc_vs_rank.png").stat().st_size > 0
    assert (tmp_path / "grokking" / "lead_lag.png").exists() and (tmp_path / "ablations" / "fractok.csv").exists()
    index = (tmp_path / "README.md").read_text()
    assert all(f"({exp}/README.md)" in index for exp in ("complexity", "grokking", "training", "ablations"))


@pytest.mark.parametrize("value", [",", "", " , ", "complexity,nope", "grokking,grokking"])
def test_main_job_refuses_selections_that_run_nothing_or_nonsense(value):
    from studies.main import selected

    with pytest.raises(ValueError, match="LLC_EXPERIMENTS"):
        selected(value)


def test_main_job_selection():
    from studies.main import EXPERIMENTS, selected

    assert selected(None) == list(EXPERIMENTS)
    assert selected(" ablations , complexity") == ["ablations", "complexity"]
