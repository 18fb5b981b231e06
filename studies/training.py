"""Research question 2 on the compiled architectures: validation without a validation set, and compiled vs trained.

Three parts, all on models with the compiled program's architecture (layers, heads, key size, MLP width, residual
width) and trainable embeddings and readout, trained with Adam and L2 weight decay (so the regularised loss
L + (wd/2)|w|^2 has a minimum), finished with full-batch L-BFGS on that loss so the final weights are a minimum to
within a reported gradient norm, and measured in float64:

1. **Sweep** (`SweepJob`): training-set sizes x seeds on one program (fractok: cheap and learnable). At the final
   weights: the train-data LLC (`llc_training.validity.trained_llc`: auto_llc with the draws' accuracy as draw metric,
   plus plain SGLD at two step sizes, one common nbeta and gamma for every run so the numbers are comparable), and
   what a practitioner would use instead: the training loss, the weight norm, the Hessian trace (Hutchinson) and
   LLC / n (the Bayes generalisation-error term). Does each rank the runs by test loss? Spearman's rho with a
   bootstrap interval over runs.
2. **Curves** (`CurveJob`): one run per program with log-spaced checkpoints and the LLC (SGLD, regularised loss, a
   verdict per point) and gradient norm at each; lead-lag of LLC and validation loss within the run (pre-whitened
   cross-correlation, Holm over lags, and how much the plain correlation moves when one checkpoint is dropped). The
   final model is saved for the ablation study (`<run>/final_model.pt`).
3. **Compiled vs trained** under one common loss: the mean over real positions of the squared distance between the
   model's outputs and the labels (the value for numerical outputs, the one-hot label for categorical ones), which
   is zero at a compiled model's exact readout, on the same sequences and at the same nbeta and gamma. The trained
   model is the curve run's final model, fine-tuned by L-BFGS to a minimum of that loss.
Writes `results/training/`.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Optional

import torch

from datasets import generators
from llc_estim import SGLDConfig
from llc_training import correlation
from llc_training.model import ModelConfig, TrainableTransformer
from llc_training.objectives import (WithSquaredNorm, hutchinson_trace, outputs_only, polish, regularised,
                                     unregularised, weight_norm)
from llc_training.train import TrainConfig, sequence_task, train
from llc_training.validity import TrainedLLCSettings, trained_llc
from rasp_models import registry
from studies.common import environment, json_default, results_root, scale
from studies.runner import effective_workers, run_jobs
from studies.traces import write_diagnostics
from studies.training_curves import (CompareSettings, CurveJob, cast64, compare_compiled, labelled_data, quiet_call,
                                     run_curve_job, slim)
from studies.training_report import PREDICTORS, plot_sweep, readme


@dataclasses.dataclass(frozen=True)
class SweepJob:
    """One run of the sweep (picklable).

    Attributes:
        program: registered program (a family name when `size` is given).
        size: ((keyword, value), ...) of `registry.variant(program, **size)`; () for the registered program.
        n_train: training sequences (the first n of the seed's pool, so a seed's training sets are nested).
        seed: data pool, initialisation and batch order.
        pool: (largest n_train, validation, test) sizes of `generators.splits` for this seed.
        train: optimiser and schedule (Adam with L2 weight decay).
        polish_iter: L-BFGS iterations at the end.
        llc: the LLC and its checks (one common nbeta and gamma for every run).
        trace_probes: Hutchinson probes for the Hessian trace.
        compare: when given, this run also compares its model with the compiled one (see `compare_compiled`).
    """

    program: str
    size: tuple
    n_train: int
    seed: int
    pool: tuple
    train: TrainConfig
    polish_iter: int
    llc: TrainedLLCSettings
    trace_probes: int
    compare: Optional["CompareSettings"] = None


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """One scale of the study."""

    sweep_program: str
    sweep_variant: tuple
    sweep_sizes: tuple
    sweep_seeds: tuple
    sweep_pool: tuple
    sweep_train: TrainConfig
    sweep_llc: TrainedLLCSettings
    polish_iter: int
    trace_probes: int
    curves: tuple
    compare: Optional[CompareSettings] = None
    workers: int = 2
    seed: int = 0


# --- the sweep -------------------------------------------------------------------------------------------------

def program_spec(program: str, size: tuple = ()):
    """The registered program, or its variant of the given size (e.g. fractok with 5 letters and length 5)."""
    return registry.variant(program, **dict(size)) if size else registry.get(program)


def run_sweep_job(job: SweepJob) -> dict:
    """Trains one sweep run, polishes it, and measures the LLC (with its checks) and the alternatives."""
    torch.set_num_threads(1)
    t0, c0 = time.time(), time.process_time()
    spec = program_spec(job.program, job.size)
    compiled = spec.compile()
    tr, _, te = generators.splits(spec, job.pool, seed=job.seed)
    train_data, test_data = labelled_data(spec, tr[: job.n_train], compiled), labelled_data(spec, te, compiled)
    task = sequence_task(spec.numerical)
    model = TrainableTransformer(ModelConfig.from_compiled(compiled), seed=job.seed)
    cfg = dataclasses.replace(job.train, batch_size=min(job.train.batch_size, job.n_train), seed=job.seed)
    hist = train(model, task, train_data, test_data, cfg, progress=False)
    timing = {"train": time.time() - t0}
    wd = cfg.weight_decay
    wrapped = WithSquaredNorm(model).double()
    tr64, te64 = cast64(train_data), cast64(test_data)
    reg, plain = regularised(task.loss, wd), unregularised(task.loss)
    pol = polish(wrapped, reg, tr64, job.polish_iter)
    with torch.no_grad():
        out = {"program": spec.name, "n_train": job.n_train, "seed": job.seed,
               "train_loss": float(plain(wrapped, tr64)), "test_loss": float(plain(wrapped, te64)),
               "regularised_loss": float(reg(wrapped, tr64))}
    out.update(train_acc=task.accuracy(outputs_only(wrapped), tr64),
               test_acc=task.accuracy(outputs_only(wrapped), te64),
               majority_baseline_test=task.majority_baseline(test_data), weight_norm=weight_norm(wrapped),
               polish=pol, num_params=sum(p.numel() for p in model.parameters()),
               adam_final_train_loss=hist.train_loss[-1], adam_final_test_loss=hist.val_loss[-1])
    tr_h = hutchinson_trace(wrapped, plain, tr64, job.trace_probes, seed=job.seed)
    out["hessian_trace"], out["hessian_trace_se"] = tr_h["trace"], tr_h["se"]
    timing["polish_and_predictors"] = time.time() - t0 - timing["train"]
    res = quiet_call(trained_llc, wrapped, task, tr64, reg, job.llc)
    timing["llc_checks"] = res["seconds"]
    timing["auto_llc"] = res["auto"]["seconds"]
    out["llc"], out["llc_std"], out["llc_valid"], out["llc_reasons"] = (res["llc_mean"], res["llc_std"], res["valid"],
                                                                         res["reasons"])
    out["llc_over_n"] = res["llc_mean"] / job.n_train
    out["llc_detail"] = slim(res)
    out["traces"] = [(f"sweep n={job.n_train} seed {job.seed}: auto_llc", res["auto"]["trace"])]
    out["grad_norm"] = res["grad_norm"]
    t1 = time.time()
    out["compare"] = (compare_compiled(spec, compiled, model, tr[: job.n_train][: job.compare.n], job.compare,
                                       job.seed) if job.compare is not None else None)
    timing["compare"] = time.time() - t1
    out["timing"] = timing
    out["seconds"], out["cpu_seconds"] = time.time() - t0, time.process_time() - c0
    return out




def sweep_statistics(rows: list, seed: int = 0) -> dict:
    """Spearman's rho of each predictor with the test loss across runs, with bootstrap intervals; also over the
    runs whose LLC is valid only."""
    test = [r["test_loss"] for r in rows]
    out = {"all_runs": {}, "valid_llc_runs": {}, "num_runs": len(rows),
           "num_valid_llc": int(sum(r["llc_valid"] for r in rows))}
    for name in PREDICTORS:
        out["all_runs"][name] = correlation.spearman_ci([r[name] for r in rows], test, seed=seed)
        valid = [r for r in rows if r["llc_valid"]]
        out["valid_llc_runs"][name] = correlation.spearman_ci([r[name] for r in valid],
                                                              [r["test_loss"] for r in valid], seed=seed)
    strata = [r["n_train"] for r in rows]
    out["within_size"] = {name: correlation.stratified_spearman([r[name] for r in rows], test, strata, seed=seed)
                          for name in PREDICTORS}
    return out


# --- presets ------------------------------------------------------------------------------------------------------

def _curve(name: str, program: str, *, sizes: tuple, steps: int, n_log: int, lr: float, wd: float, sgld: SGLDConfig,
           llc: Optional[TrainedLLCSettings], polish_iter: int = 300, max_lag: int = 3, seed: int = 0) -> CurveJob:
    return CurveJob(name, program, sizes,
                    TrainConfig(steps=steps, batch_size=64, lr=lr, weight_decay=wd, optimizer="adam",
                                checkpoints=TrainConfig.log_and_even(steps, n_log, n_log // 2, first=10), seed=seed),
                    sgld, 0.05, polish_iter, llc, max_lag)


def _curve_sgld(chains: int, draws: int, burnin: int, nbeta: float, eps: float, gamma: float) -> SGLDConfig:
    return SGLDConfig(step_size=eps, localization=gamma, nbeta=nbeta, num_chains=chains, num_draws=draws,
                      num_burnin=burnin, batch_size=64, mala_every=10, progress=False)


_SWEEP_LLC = TrainedLLCSettings(localization=1e4, nbeta=1e6, max_steps=600, num_chains=4, sgld_mode="whitened",
                                sgld_step=0.1, sgld_step_ratio=2.0, sgld_draws=100, sgld_burnin=100, dense_max=3000,
                                refreshes=0)
_SWEEP_TRAIN = TrainConfig(steps=1500, batch_size=32, lr=3e-3, weight_decay=1e-5, checkpoints=(1500,),
                           optimizer="adam")
_VARIANT = (("letters", 5), ("max_seq_len", 5))
_COMPARE = CompareSettings(nbeta=1e6, localization=1e4, max_steps=600, n=64)
# plain SGLD along training: nbeta x h_max / gamma (the condition number SGLD sees) must stay near 100 for a few
# hundred steps to mix, so the curve uses a far lower nbeta than the sweep's auto_llc
_CURVE_SGLD = dict(nbeta=1e3, eps=2e-6, gamma=1e3)
PRESETS = {
    "smoke": TrainingConfig(
        sweep_program="fractok", sweep_variant=(("letters", 3), ("max_seq_len", 4)), sweep_sizes=(8, 16),
        sweep_seeds=(0, 1), sweep_pool=(16, 8, 32), sweep_train=dataclasses.replace(_SWEEP_TRAIN, steps=60, checkpoints=(60,)),
        sweep_llc=dataclasses.replace(_SWEEP_LLC, max_steps=200, sgld_draws=10, sgld_burnin=10), polish_iter=20,
        trace_probes=4,
        curves=(_curve("fractok", "fractok", sizes=(48, 32, 32), steps=40, n_log=4, lr=3e-3, wd=1e-5,
                       sgld=_curve_sgld(2, 10, 5, **_CURVE_SGLD), llc=None, polish_iter=20),),
        compare=dataclasses.replace(_COMPARE, max_steps=200, polish_iter=50, n=16), workers=1),
    "quick": TrainingConfig(
        sweep_program="fractok", sweep_variant=_VARIANT, sweep_sizes=(16, 32, 64, 128, 256), sweep_seeds=(0, 1, 2),
        sweep_pool=(256, 64, 1000), sweep_train=_SWEEP_TRAIN, sweep_llc=_SWEEP_LLC, polish_iter=300,
        trace_probes=16,
        curves=(_curve("fractok", "fractok", sizes=(1000, 300, 300), steps=3000, n_log=16, lr=3e-3, wd=1e-5,
                       sgld=_curve_sgld(4, 80, 80, **_CURVE_SGLD), llc=None),),
        compare=_COMPARE),
    "full": TrainingConfig(
        sweep_program="fractok", sweep_variant=_VARIANT, sweep_sizes=(16, 32, 64, 128, 256, 512),
        sweep_seeds=(0, 1, 2, 3, 4), sweep_pool=(512, 128, 2000),
        sweep_train=dataclasses.replace(_SWEEP_TRAIN, steps=4000, checkpoints=(4000,)),
        sweep_llc=dataclasses.replace(_SWEEP_LLC, max_steps=3000, sgld_draws=600, sgld_burnin=400),
        polish_iter=1000, trace_probes=128,
        curves=(_curve("fractok", "fractok", sizes=(2000, 500, 500), steps=6000, n_log=40, lr=3e-3, wd=1e-5,
                       sgld=_curve_sgld(4, 300, 200, **_CURVE_SGLD),
                       llc=dataclasses.replace(_SWEEP_LLC, max_steps=2000)),
                _curve("palindrome", "palindrome", sizes=(2000, 500, 500), steps=6000, n_log=40, lr=1e-3, wd=1e-4,
                       sgld=_curve_sgld(4, 300, 200, 1e3, 1e-6, 1e3), llc=None),
                _curve("peak", "peak", sizes=(2000, 500, 500), steps=6000, n_log=30, lr=1e-3, wd=1e-4,
                       sgld=_curve_sgld(4, 200, 200, 1e3, 1e-6, 1e3), llc=None)),
        compare=dataclasses.replace(_COMPARE, max_steps=3000, n=512)),
}


# --- the study ------------------------------------------------------------------------------------------------------

def _job_entry(job):
    """One job of either kind (a picklable top-level entry point for the worker processes)."""
    if isinstance(job, SweepJob):
        return run_sweep_job(job)
    return run_curve_job(*job)


def run(cfg: TrainingConfig, root: Path) -> dict:
    """Runs the sweep and the curve runs into `root`; writes README, metrics, config, figures; returns metrics."""
    torch.set_num_threads(1)
    t0 = time.time()
    largest = max(cfg.sweep_sizes)
    sweep = [SweepJob(cfg.sweep_program, cfg.sweep_variant, n, s, cfg.sweep_pool, cfg.sweep_train, cfg.polish_iter,
                      cfg.sweep_llc, cfg.trace_probes,
                      cfg.compare if (n == largest and s == cfg.sweep_seeds[0]) else None)
             for n in cfg.sweep_sizes for s in cfg.sweep_seeds]
    jobs = [(c, str(root)) for c in cfg.curves] + sorted(sweep, key=lambda j: -j.n_train)

    def describe(job, r):
        if isinstance(job, SweepJob):
            return (f"sweep n={r['n_train']} seed {r['seed']}: test loss {r['test_loss']:.3g}, LLC {r['llc']:.1f} "
                    f"({'valid' if r['llc_valid'] else 'flagged'}), {r['seconds']:.0f} s")
        return f"curve {r['name']}: val acc {r['final_val_acc']:.3f}, LLC {r['llc/mean']:.2f}, {r['seconds']:.0f} s"

    out = run_jobs(_job_entry, [(j,) for j in jobs], cfg.workers, desc="training",
                   describe=lambda args, result: describe(args[0], result))
    curves = {r["name"]: r for r in out[: len(cfg.curves)]}
    rows = sorted(out[len(cfg.curves):], key=lambda r: (r["n_train"], r["seed"]))
    stats = sweep_statistics(rows, cfg.seed)
    root.mkdir(parents=True, exist_ok=True)
    plot_sweep(rows, stats, cfg, root / "sweep.png")
    traces = [t for r in curves.values() for t in r.pop("traces")]
    traces += [t for r in rows for t in r.pop("traces") if r["seed"] == cfg.sweep_seeds[0]]
    write_diagnostics(traces, root, f"Trained models, per-chain diagnostics: the sweep's first seed at every size "
                      f"({cfg.sweep_program}, auto_llc) and the curve runs (SGLD at the first and last checkpoint, "
                      "auto_llc at the end)", ncols=3)
    seconds = time.time() - t0
    env = environment()
    compare = next((r["compare"] for r in rows if r.get("compare")), None)
    metrics = {"sweep": {"runs": rows, "statistics": stats}, "curves": curves, "compare": compare,
               "seconds": seconds, "workers": effective_workers(cfg.workers),
               "cpu_seconds_jobs": float(sum(r["cpu_seconds"] for r in rows + list(curves.values())))}
    (root / "metrics.json").write_text(json.dumps(metrics, indent=2, default=json_default))
    (root / "config.json").write_text(json.dumps({
        "scale": scale(), "seed": cfg.seed, "sweep_program": cfg.sweep_program,
        "sweep_variant": dict(cfg.sweep_variant), "sweep_sizes": list(cfg.sweep_sizes),
        "sweep_seeds": list(cfg.sweep_seeds), "sweep_pool": list(cfg.sweep_pool),
        "sweep_train": dataclasses.asdict(cfg.sweep_train), "sweep_llc": dataclasses.asdict(cfg.sweep_llc),
        "polish_iter": cfg.polish_iter, "trace_probes": cfg.trace_probes,
        "llc_loss": "training loss (MSE or CE) + (weight_decay / 2) |w|^2, the loss Adam with L2 decay minimises",
        "curves": [{"name": c.name, "program": c.program, "sizes": list(c.sizes), "train": dataclasses.asdict(c.train),
                    "sgld": c.sgld.to_dict(), "acc_drop": c.acc_drop, "polish_iter": c.polish_iter,
                    "llc": dataclasses.asdict(c.llc) if c.llc else None} for c in cfg.curves],
        "compare": dataclasses.asdict(cfg.compare) if cfg.compare else None,
        "workers": cfg.workers, "dtype_llc": "float64", "environment": env, "seconds": seconds}, indent=2,
        default=json_default))
    (root / "README.md").write_text(readme(metrics, cfg, env))
    return metrics


def main() -> None:
    """The study at `LLC_SCALE`, written to `<LLC_RESULTS_DIR>/training`."""
    root = results_root() / "training"
    print(f"training study at scale {scale()!r} -> {root}", flush=True)
    run(PRESETS[scale()], root)


if __name__ == "__main__":
    main()
