"""Research question 1: does the LLC of a compiled transformer track the complexity of its algorithm?

Algorithm (per scale preset):
1. for every registered program and every size-sweep variant (fractok, palindrome, sort at several sizes), in
   worker processes, costliest first: calibrate the step size on a log grid, then estimate the LLC at the
   recommended step over seeds (sweeps: one seed), with all parameters and with all but the embeddings;
2. the common step size = the largest step size stable for every program, then one estimate of each at it;
3. checks: loss-rescaling invariance on two programs, float32 vs float64;
4. Spearman correlations of the LLC with each descriptor (bootstrap over programs), tables, figures, README.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

from llc_estim import SGLDConfig
from rasp_models import registry
from studies import complexity_report as report
from studies.common import environment, results_root, run_parallel, scale
from studies.complexity_runs import ChecksJob, CommonJob, ProgramJob, StudySettings, SweepJob, Variant, run_job


@dataclasses.dataclass(frozen=True)
class ComplexityConfig:
    """One scale of the study.

    Attributes:
        programs: registered program names.
        settings: sampler and calibration settings shared by every program.
        sweeps: size variants (same algorithm, bigger model).
        workers: worker processes.
        seed: recorded seed of the study (the sampler seeds are in `settings`).
    """

    programs: tuple
    settings: StudySettings
    sweeps: tuple = ()
    workers: int = 2
    seed: int = 0


# Localization. Compiled models are extremely degenerate (most weights read directions that are always zero), so
# with gamma = 1 the flat directions need ~2/(eps*gamma) steps to equilibrate, far beyond any affordable chain:
# the estimate then grows with the chain length instead of converging (measured: a tenfold rise per decade of
# eps, no plateau). gamma = 1000 confines them within ~2/(eps*1000) steps. The LLC is then measured at that
# localization scale; compare programs only at equal gamma.
LOCALIZATION = 1000.0


def _sampler(*, chains: int, draws: int, burnin: int, batch: int) -> SGLDConfig:
    return SGLDConfig(step_size=1e-6, localization=LOCALIZATION, num_chains=chains, num_draws=draws,
                      num_burnin=burnin, batch_size=batch, mala_every=10, progress=False)


_SWEEPS = (Variant.of("fractok", letters=5, max_seq_len=5), Variant.of("fractok", letters=5, max_seq_len=10),
           Variant.of("fractok", letters=5, max_seq_len=20), Variant.of("fractok", letters=13, max_seq_len=10),
           Variant.of("fractok", letters=25, max_seq_len=10), Variant.of("palindrome", max_seq_len=4),
           Variant.of("palindrome", max_seq_len=6), Variant.of("palindrome", max_seq_len=8),
           Variant.of("sort", max_seq_len=3), Variant.of("sort", max_seq_len=4), Variant.of("sort", max_seq_len=5))
_GRID = (1e-7, 1e-6, 1e-5, 1e-4)

PRESETS = {
    "smoke": ComplexityConfig(
        programs=("identity", "fractok", "histogram"),
        settings=StudySettings(num_sequences=64, seeds=(0, 1), base=_sampler(chains=2, draws=20, burnin=10, batch=32),
                               step_grid=(1e-7, 1e-6, 1e-5), calib_chains=2, calib_draws=10, calib_burnin=5,
                               no_embed_seeds=(0,)),
        sweeps=(Variant.of("fractok", letters=5, max_seq_len=5),), workers=1),
    "quick": ComplexityConfig(
        programs=tuple(registry.names()),
        settings=StudySettings(num_sequences=256, seeds=(0, 1, 2),
                               base=_sampler(chains=4, draws=150, burnin=100, batch=32), step_grid=_GRID,
                               calib_chains=2, calib_draws=80, calib_burnin=80, no_embed_seeds=(0,)),
        sweeps=_SWEEPS),
    "full": ComplexityConfig(
        programs=tuple(registry.names()),
        settings=StudySettings(num_sequences=1024, seeds=(0, 1, 2),
                               base=_sampler(chains=8, draws=1000, burnin=500, batch=64),
                               step_grid=_GRID + (3e-7, 3e-6, 3e-5, 3e-4), calib_chains=2, calib_draws=300,
                               calib_burnin=300, no_embed_seeds=(0, 1, 2)),
        sweeps=_SWEEPS),
}


def _run_jobs(jobs: list, workers: int) -> list:
    """Runs typed jobs, in `workers` spawned processes when workers > 1 (results in order)."""

    def log(i, r):
        if isinstance(r, dict) and "program" in r:
            llc = (r.get("all") or {}).get("llc_mean", r.get("llc_mean", math.nan))
            print(f"  {jobs[i].kind:8s} {r['program']:22s} llc {llc:10.3f}  step {r.get('step_size', math.nan):.0e}",
                  flush=True)

    return run_parallel(run_job, [(j,) for j in jobs], workers, on_done=log)


def run(cfg: ComplexityConfig, out_dir: Path) -> dict:
    """Runs the study and writes `out_dir`; returns the metrics."""
    t0 = time.time()
    st = cfg.settings
    jobs = [ProgramJob(p, st) for p in cfg.programs] + [SweepJob(v, st) for v in cfg.sweeps]
    order = sorted(range(len(jobs)), key=lambda i: -jobs[i].cost())
    print(f"[1/3] calibrate + estimate {len(cfg.programs)} programs (seeds {st.seeds}) and {len(cfg.sweeps)} "
          f"sweep variants", flush=True)
    done = _run_jobs([jobs[i] for i in order], cfg.workers)
    results = [None] * len(jobs)
    for i, r in zip(order, done):
        results[i] = r
    programs, sweeps = results[:len(cfg.programs)], results[len(cfg.programs):]
    steps = tuple((r["program"], r["step_size"]) for r in programs)
    stable = [r["largest_stable_step"] for r in programs]
    common = min(stable) if stable and all(math.isfinite(s) for s in stable) else math.nan
    print(f"[2/3] common step size {common:g} (largest stable for every program) and checks", flush=True)
    tail = [CommonJob(p, st, common) for p in cfg.programs] if math.isfinite(common) else []
    tail_out = _run_jobs(tail + [ChecksJob(st, steps)], cfg.workers)
    commons, checks = tail_out[:-1], tail_out[-1]
    print("[3/3] tables, correlations, figures, README", flush=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = report.write_all(out_dir, programs, commons, sweeps, checks, common, cfg)
    config = {"scale": scale(), "seed": cfg.seed, "programs": list(cfg.programs), "settings": _jsonable(st),
              "sweeps": [[v.family, dict(v.size)] for v in cfg.sweeps], "workers": cfg.workers,
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
    """The study at `LLC_SCALE`, written to `<LLC_RESULTS_DIR>/complexity`."""
    s = scale()
    out = results_root() / "complexity"
    print(f"Complexity study at scale {s!r} -> {out}", flush=True)
    run(PRESETS[s], out)


if __name__ == "__main__":
    main()
