"""Research question 1: does the LLC of a compiled transformer track the complexity of its algorithm?

Algorithm (per scale preset):
1. for every registered program (in worker processes): calibrate the step size on a log grid, then estimate the
   LLC at the recommended step over seeds, with all parameters and with all but the embeddings;
2. the common step size = the smallest recommended one, then one estimate of every program at it;
3. size sweeps of fractok, palindrome and sort (same algorithm, bigger model);
4. checks: loss-rescaling invariance on two programs, float32 vs float64;
5. Spearman correlations of the LLC with each descriptor (bootstrap over programs), tables, figures, README.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import json
import math
import multiprocessing as mp
import time
from pathlib import Path

import numpy as np

from llc_estim import SGLDConfig
from llc_estim.experiments import complexity_report as report
from llc_estim.experiments.common import environment, results_root, scale
from llc_estim.experiments.complexity_runs import StudySettings, job
from rasp_models import registry


@dataclasses.dataclass(frozen=True)
class ComplexityConfig:
    programs: tuple
    settings: StudySettings
    sweeps: tuple  # (family, size dict) pairs
    workers: int = 2
    seed: int = 0


def _settings(n, seeds, chains, draws, burnin, batch, grid, cal_draws, cal_burnin, no_embed_seeds):
    base = SGLDConfig(step_size=1e-6, localization=1.0, num_chains=chains, num_draws=draws, num_burnin=burnin,
                      batch_size=batch, mala_every=10, progress=False)
    return StudySettings(num_sequences=n, seeds=seeds, base=base, step_grid=grid, calib_chains=2,
                         calib_draws=cal_draws, calib_burnin=cal_burnin, no_embed_seeds=no_embed_seeds)


_SWEEPS = (("fractok", {"letters": 5, "max_seq_len": 5}), ("fractok", {"letters": 5, "max_seq_len": 10}),
           ("fractok", {"letters": 5, "max_seq_len": 20}), ("fractok", {"letters": 13, "max_seq_len": 10}),
           ("fractok", {"letters": 25, "max_seq_len": 10}), ("palindrome", {"max_seq_len": 4}),
           ("palindrome", {"max_seq_len": 6}), ("palindrome", {"max_seq_len": 8}), ("sort", {"max_seq_len": 3}),
           ("sort", {"max_seq_len": 4}), ("sort", {"max_seq_len": 5}))
_GRID = (1e-8, 1e-7, 1e-6, 1e-5, 1e-4)

PRESETS = {
    "smoke": ComplexityConfig(("identity", "fractok", "histogram"),
                              _settings(64, (0, 1), 2, 20, 10, 32, (1e-7, 1e-6, 1e-5), 10, 5, (0,)),
                              sweeps=(("fractok", {"letters": 5, "max_seq_len": 5}),), workers=1),
    "quick": ComplexityConfig(tuple(registry.names()),
                              _settings(256, (0, 1, 2), 4, 150, 100, 32, _GRID, 60, 40, (0,)), sweeps=_SWEEPS),
    "full": ComplexityConfig(tuple(registry.names()),
                             _settings(1024, (0, 1, 2), 8, 1000, 500, 64, _GRID + (3e-8, 3e-7, 3e-6, 3e-5), 300, 200,
                                       (0, 1, 2)), sweeps=_SWEEPS),
}


def _run_jobs(jobs: list, workers: int) -> list:
    """Runs (kind, name, settings, extra) jobs, in `workers` spawned processes when workers > 1."""
    if workers <= 1:
        return [job(*j) for j in jobs]
    results = [None] * len(jobs)
    with cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        futures = {pool.submit(job, *j): i for i, j in enumerate(jobs)}
        for fut in cf.as_completed(futures):
            i = futures[fut]
            results[i] = fut.result()
            r = results[i]
            if isinstance(r, dict) and "program" in r:
                llc = (r.get("all") or r).get("llc_mean", math.nan) if r.get("all") is not None or "llc_mean" in r \
                    else math.nan
                print(f"  {jobs[i][0]:8s} {r['program']:22s} llc {llc:10.3f}  step {r.get('step_size', math.nan):.0e}",
                      flush=True)
    return results


def run(cfg: ComplexityConfig, out_dir: Path) -> dict:
    """Runs the study and writes `out_dir`; returns the metrics."""
    t0 = time.time()
    st = cfg.settings
    print(f"[1/4] calibrate + estimate {len(cfg.programs)} programs over seeds {st.seeds}", flush=True)
    programs = _run_jobs([("program", p, st, None) for p in cfg.programs], cfg.workers)
    steps = {r["program"]: r["step_size"] for r in programs}
    finite = [s for s in steps.values() if math.isfinite(s)]
    common = min(finite) if finite else math.nan
    print(f"[2/4] common step size {common:g} for every program", flush=True)
    commons = _run_jobs([("common", p, st, common) for p in cfg.programs], cfg.workers) if finite else []
    print(f"[3/4] size sweeps ({len(cfg.sweeps)}) and checks", flush=True)
    sweeps = _run_jobs([("sweep", None, st, s) for s in cfg.sweeps] + [("checks", None, st, steps)], cfg.workers)
    checks = sweeps.pop()
    print("[4/4] tables, correlations, figures, README", flush=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = report.write_all(out_dir, programs, commons, sweeps, checks, common, cfg)
    config = {"scale": scale(), "seed": cfg.seed, "programs": list(cfg.programs), "settings": _jsonable(st),
              "sweeps": [list(s) for s in cfg.sweeps], "workers": cfg.workers,
              "loss": "teacher loss: mean over real positions of |readout(w) - readout(w*)|^2", "dtype": "float64",
              "environment": environment(), "seconds": time.time() - t0}
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))
    print(f"done in {time.time() - t0:.0f} s -> {out_dir}", flush=True)
    return metrics


def _jsonable(st: StudySettings) -> dict:
    d = dataclasses.asdict(st)
    d["base"] = st.base.to_dict()
    return d


def main() -> None:
    s = scale()
    out = results_root() / "complexity"
    print(f"Complexity study at scale {s!r} -> {out}", flush=True)
    run(PRESETS[s], out)


if __name__ == "__main__":
    main()
