"""Research question 1: does the LLC of a compiled transformer track the complexity of its algorithm?

Algorithm (per scale preset):
1. for every registered program and every size-sweep variant (fractok, palindrome, sort at several sizes), in
   worker processes, costliest first: calibrate the step size on a log grid, then estimate the LLC at the
   recommended step over seeds (sweeps: one seed), with all parameters and with all but the embeddings;
2. the common step size = the largest step size stable for every program, then one estimate of each at it;
3. checks: loss-rescaling invariance on two programs, float32 vs float64;
5. Spearman correlations of the LLC with each descriptor (bootstrap over programs), tables, figures, README.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np

from llc_estim import SGLDConfig
from llc_estim.experiments import complexity_report as report
from llc_estim.experiments.common import environment, results_root, run_parallel, scale
from llc_estim.experiments.complexity_runs import StudySettings, job
from rasp_models import registry


@dataclasses.dataclass(frozen=True)
class ComplexityConfig:
    programs: tuple
    settings: StudySettings
    sweeps: tuple  # (family, size dict) pairs
    workers: int = 2
    seed: int = 0


# Localization. Compiled models are extremely degenerate (most weights read directions that are always zero), so
# with gamma = 1 the flat directions need ~2/(eps*gamma) steps to equilibrate, far beyond any affordable chain:
# the estimate then grows with the chain length instead of converging (measured: a tenfold rise per decade of
# eps, no plateau). gamma = 1000 confines them within ~2/(eps*1000) steps. The LLC is then measured at that
# localization scale; compare programs only at equal gamma.
LOCALIZATION = 1000.0


def _settings(n, seeds, chains, draws, burnin, batch, grid, cal_draws, cal_burnin, no_embed_seeds):
    base = SGLDConfig(step_size=1e-6, localization=LOCALIZATION, num_chains=chains, num_draws=draws, num_burnin=burnin,
                      batch_size=batch, mala_every=10, progress=False)
    return StudySettings(num_sequences=n, seeds=seeds, base=base, step_grid=grid, calib_chains=2,
                         calib_draws=cal_draws, calib_burnin=cal_burnin, no_embed_seeds=no_embed_seeds)


_SWEEPS = (("fractok", {"letters": 5, "max_seq_len": 5}), ("fractok", {"letters": 5, "max_seq_len": 10}),
           ("fractok", {"letters": 5, "max_seq_len": 20}), ("fractok", {"letters": 13, "max_seq_len": 10}),
           ("fractok", {"letters": 25, "max_seq_len": 10}), ("palindrome", {"max_seq_len": 4}),
           ("palindrome", {"max_seq_len": 6}), ("palindrome", {"max_seq_len": 8}), ("sort", {"max_seq_len": 3}),
           ("sort", {"max_seq_len": 4}), ("sort", {"max_seq_len": 5}))
_GRID = (1e-7, 1e-6, 1e-5, 1e-4)

PRESETS = {
    "smoke": ComplexityConfig(("identity", "fractok", "histogram"),
                              _settings(64, (0, 1), 2, 20, 10, 32, (1e-7, 1e-6, 1e-5), 10, 5, (0,)),
                              sweeps=(("fractok", {"letters": 5, "max_seq_len": 5}),), workers=1),
    "quick": ComplexityConfig(tuple(registry.names()),
                              _settings(256, (0, 1, 2), 4, 150, 100, 32, _GRID, 80, 80, (0,)), sweeps=_SWEEPS),
    "full": ComplexityConfig(tuple(registry.names()),
                             _settings(1024, (0, 1, 2), 8, 1000, 500, 64, _GRID + (3e-7, 3e-6, 3e-5, 3e-4), 300, 300,
                                       (0, 1, 2)), sweeps=_SWEEPS),
}


def _run_jobs(jobs: list, workers: int) -> list:
    """Runs (kind, name, settings, extra) jobs, in `workers` spawned processes when workers > 1."""

    def report(i, r):
        if isinstance(r, dict) and "program" in r:
            llc = (r.get("all") or {}).get("llc_mean", r.get("llc_mean", math.nan))
            print(f"  {jobs[i][0]:8s} {r['program']:22s} llc {llc:10.3f}  step {r.get('step_size', math.nan):.0e}",
                  flush=True)

    return run_parallel(job, jobs, workers, on_done=report)


def _cost(job_args) -> float:
    """Rough cost for scheduling: parameters of the compiled model (seeds for registered programs)."""
    kind, name, st, extra = job_args
    from llc_estim.experiments.complexity_runs import sweep_spec

    model = (registry.get(name) if name else sweep_spec(*extra)).compile()
    return model.model_config.mlp_hidden_size * len(model.residual_labels) * (
        len(st.seeds) if kind == "program" else 1)


def run(cfg: ComplexityConfig, out_dir: Path) -> dict:
    """Runs the study and writes `out_dir`; returns the metrics."""
    t0 = time.time()
    st = cfg.settings
    jobs = [("program", p, st, None) for p in cfg.programs] + [("sweep", None, st, s) for s in cfg.sweeps]
    order = sorted(range(len(jobs)), key=lambda i: -_cost(jobs[i]))
    print(f"[1/3] calibrate + estimate {len(cfg.programs)} programs (seeds {st.seeds}) and {len(cfg.sweeps)} "
          f"sweep variants", flush=True)
    done = _run_jobs([jobs[i] for i in order], cfg.workers)
    results = [None] * len(jobs)
    for i, r in zip(order, done):
        results[i] = r
    programs, sweeps = results[:len(cfg.programs)], results[len(cfg.programs):]
    steps = {r["program"]: r["step_size"] for r in programs}
    stable = [r["largest_stable_step"] for r in programs]
    common = min(stable) if stable and all(math.isfinite(s) for s in stable) else math.nan
    print(f"[2/3] common step size {common:g} (largest stable for every program) and checks", flush=True)
    tail = [("common", p, st, common) for p in cfg.programs] if math.isfinite(common) else []
    tail_out = _run_jobs(tail + [("checks", None, st, steps)], cfg.workers)
    commons, checks = tail_out[:-1], tail_out[-1]
    print("[3/3] tables, correlations, figures, README", flush=True)
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
