"""The diagnostics figure of a finished complexity study, reproduced without rerunning the study.

`python -m studies.complexity_diagnostics [folder]` (default `results/complexity`). The study takes about 100
minutes at the quick scale; its base estimates are deterministic given their settings and seed. This reads the
folder's `config.json`, reruns only the base estimate of every program the table estimated (the validity checks
are not rerun), and

1. compares each reproduced LLC with the one in `metrics.json`: a relative difference above `RTOL` stops with an
   error and writes nothing, because the figure would then show a different estimate from the table's;
2. writes `diagnostics.png` and `traces.json` (`studies.traces`) with the same panels the study draws, and
   `diagnostics_reproduction.json`: the commit and dirty flag it ran at, and per program the committed and the
   reproduced LLC;
3. points the README's line about per-chain draws at the new figure (a README that has no such line is left as is).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from datasets.teacher import teacher_problem
from rasp_models import registry
from studies.common import environment, results_root
from studies.complexity_report import figure_traces
from studies.runner import run_jobs
from studies.validity import ValiditySettings, estimate

RTOL = 1e-9  # the reproduction must give the committed number, not a nearby one
OLD_LINE = "Per-chain draws: [loss_traces.png](loss_traces.png)."


def settings_from_config(config: dict) -> ValiditySettings:
    """The table's `ValiditySettings` from a complexity `config.json` (`config.validity`)."""
    return ValiditySettings.from_dict(config["config"]["validity"])


def base_estimate(program: str, st: ValiditySettings) -> dict:
    """The table's base estimate of one registered program (one worker's job)."""
    torch.set_num_threads(1)
    spec = registry.get(program)
    return estimate(teacher_problem(spec, st.n, sharpness=st.sharpness), st, st.nbeta)


def reproduce(folder: Path, workers: int = 1) -> dict:
    """Reruns, checks and writes (see the module docstring); returns the reproduction record.

    Raises:
        FileNotFoundError: the folder has no metrics.json or config.json.
        RuntimeError: a reproduced LLC differs from the committed one by more than `RTOL` (relative).
    """
    t0 = time.time()
    metrics = json.loads((folder / "metrics.json").read_text())
    config = json.loads((folder / "config.json").read_text())
    st = settings_from_config(config)
    rows = [r for r in metrics["programs"].values() if not math.isnan(float(r.get("llc_mean", math.nan)))]
    if not rows:
        raise RuntimeError(f"{folder}: the table estimated no program; nothing to reproduce")
    ests = run_jobs(base_estimate, [(r["program"], st) for r in rows], workers, desc="diagnostics",
                    describe=lambda args, e: f"{args[0]}: LLC {e['llc_mean']:.4g}")
    record = {"source_commit": config["environment"]["git_commit"], "programs": {}}
    bad = []
    for r, e in zip(rows, ests):
        rel = abs(e["llc_mean"] - r["llc_mean"]) / max(abs(r["llc_mean"]), 1e-12)
        record["programs"][r["program"]] = {"committed_llc": r["llc_mean"], "reproduced_llc": e["llc_mean"],
                                            "relative_difference": rel}
        if not rel <= RTOL:
            bad.append(f"{r['program']}: committed {r['llc_mean']:.6g}, reproduced {e['llc_mean']:.6g}")
    if bad:
        raise RuntimeError("the base estimates do not reproduce the committed table, so no figure is written: "
                           + "; ".join(bad))
    figure_traces([{**r, "trace": e["trace"]} for r, e in zip(rows, ests)], folder,
                  f"Base estimate of each checked program ({st.line()}); reproduced, LLCs identical to the table")
    env = environment()
    record.update(commit=env["git_commit"], dirty=env["dirty"], seconds=time.time() - t0)
    (folder / "diagnostics_reproduction.json").write_text(json.dumps(record, indent=1))
    _point_readme(folder / "README.md", record)
    return record


def _point_readme(path: Path, record: dict) -> None:
    if not path.exists() or OLD_LINE not in path.read_text():
        return
    worst = max(p["relative_difference"] for p in record["programs"].values())
    new = (f"Per-chain diagnostics of each base estimate (loss with the burn-in shaded, running acceptance): "
           f"[diagnostics.png](diagnostics.png) (data in `traces.json`), drawn by `studies.complexity_diagnostics` "
           f"at commit `{record['commit'][:10]}`, which reran the {len(record['programs'])} base estimates and got "
           f"the table's LLCs (largest relative difference {worst:.1g}; "
           f"`diagnostics_reproduction.json`).")
    path.write_text(path.read_text().replace(OLD_LINE, new))


def main() -> None:
    """Command line: `python -m studies.complexity_diagnostics [folder] [--workers N]`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=results_root() / "complexity")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    rec = reproduce(args.folder, args.workers)
    print(json.dumps(rec, indent=1))


if __name__ == "__main__":
    main()
