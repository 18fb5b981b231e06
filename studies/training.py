"""Research question 2: train the compiled architectures from scratch and track the LLC at checkpoints.

For each task: the compiled model's architecture (layers, heads, key size, MLP width, residual width) with
trainable embeddings and readout, trained on disjoint train/validation/test splits. The model must beat the
majority-class baseline on validation before its LLC curve is read. The LLC uses the training loss on training
data, one sampler setting calibrated on the final checkpoint and reused for every checkpoint. Writes
`results/training/<task>/` and `results/training/metrics.json`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from datasets import generators  # noqa: E402
from datasets.dataloaders import labelled_tensors  # noqa: E402
from llc_estim import SGLDConfig  # noqa: E402
from llc_training.model import ModelConfig, TrainableTransformer  # noqa: E402
from llc_training.train import (TrainConfig, calibrate_on_final, lead_lag, llc_curve, save_history,  # noqa: E402
                                sequence_task, train)
from rasp_models import registry  # noqa: E402
from studies.common import environment, results_root, scale  # noqa: E402


@dataclasses.dataclass(frozen=True)
class TaskRun:
    """One training run.

    Attributes:
        name: run name.
        program: registered program whose architecture and data are used.
        sizes: train, validation and test set sizes.
        train: optimiser and checkpoint schedule.
        sgld: base sampler settings; the step size is calibrated on the final checkpoint.
        step_grid: step sizes tried by that calibration.
    """

    name: str
    program: str
    sizes: tuple
    train: TrainConfig
    sgld: SGLDConfig
    step_grid: tuple


def _run(name: str, program: str, *, sizes: tuple, steps: int, checkpoints: int, lr: float, weight_decay: float,
         chains: int, draws: int, burnin: int, step_grid: tuple, seed: int = 0) -> TaskRun:
    return TaskRun(name, program, sizes,
                   TrainConfig(steps=steps, batch_size=64, lr=lr, weight_decay=weight_decay,
                               checkpoints=TrainConfig.evenly(steps, checkpoints), seed=seed),
                   SGLDConfig(step_size=1e-5, localization=10.0, num_chains=chains, num_draws=draws, num_burnin=burnin,
                              batch_size=64, mala_every=10, progress=False), step_grid)


_GRID = (1e-6, 1e-5, 1e-4)
_QUICK = dict(sizes=(2000, 500, 500), steps=3000, checkpoints=15, lr=1e-3, weight_decay=0.01, chains=4, draws=100,
              burnin=50, step_grid=_GRID)
_FULL = dict(sizes=(5000, 1000, 1000), steps=10000, checkpoints=40, lr=1e-3, weight_decay=0.01, chains=8, draws=400,
             burnin=200, step_grid=_GRID)
PRESETS = {
    "smoke": (_run("fractok", "fractok", sizes=(64, 32, 32), steps=60, checkpoints=3, lr=3e-3, weight_decay=0.01,
                   chains=2, draws=10, burnin=5, step_grid=(1e-6, 1e-5)),),
    "quick": (_run("palindrome", "palindrome", **_QUICK),
              _run("fractok", "fractok", **_QUICK),
              _run("peak", "peak", **{**_QUICK, "steps": 1500, "checkpoints": 8, "draws": 60, "burnin": 30}),
              _run("peak_small_data", "peak", **{**_QUICK, "sizes": (150, 500, 500), "weight_decay": 0.1,
                                                 "draws": 60, "burnin": 30})),
    "full": (_run("palindrome", "palindrome", **_FULL),
             _run("fractok", "fractok", **_FULL),
             _run("peak", "peak", **{**_FULL, "steps": 6000, "checkpoints": 30, "draws": 300, "burnin": 150}),
             _run("peak_small_data", "peak", **{**_FULL, "sizes": (150, 1000, 1000), "steps": 20000,
                                                "weight_decay": 0.1, "draws": 300, "burnin": 150})),
}


def task_run(name: str, scale_name: str) -> TaskRun:
    """The run called `name` at a scale; at smoke scale a tiny version of its quick run (for notebooks and tests)."""
    runs = {r.name: r for r in PRESETS["quick"] + PRESETS["full"]}
    if name not in runs:
        raise KeyError(f"unknown training run {name!r}; known: {sorted(runs)}")
    if scale_name == "smoke":
        r = runs[name]
        return dataclasses.replace(r, sizes=(64, 32, 32), train=dataclasses.replace(r.train, steps=40,
                                   checkpoints=(20, 40)), sgld=dataclasses.replace(r.sgld, num_chains=2, num_draws=10,
                                                                                  num_burnin=5),
                                   step_grid=r.step_grid[:2])
    return {r.name: r for r in PRESETS[scale_name]}[name]


def run_task(run: TaskRun, out_dir: Path) -> dict:
    """Trains one model, measures its LLC curve, writes its figure and curves; returns its metrics."""
    torch.set_num_threads(1)
    t0 = time.time()
    spec = registry.get(run.program)
    compiled = spec.compile()
    tr, va, te = generators.splits(spec, run.sizes, seed=run.train.seed)
    train_data, val_data, test_data = (labelled_tensors(spec, s, compiled) for s in (tr, va, te))
    if spec.numerical:
        train_data, val_data, test_data = ((i, y.float(), m) for i, y, m in (train_data, val_data, test_data))
    model = TrainableTransformer(ModelConfig.from_compiled(compiled), seed=run.train.seed)
    task = sequence_task(spec.numerical)
    hist = train(model, task, train_data, val_data, run.train, progress=False)
    cal, sgld = calibrate_on_final(model, task, train_data, hist,
                                   dataclasses.replace(run.sgld, num_draws=max(run.sgld.num_draws // 2, 10)),
                                   run.step_grid)
    sgld = dataclasses.replace(run.sgld, step_size=sgld.step_size)
    curve = llc_curve(model, task, train_data, hist, sgld, progress=False)
    model.load_state_dict(hist.states[-1])
    baseline = task.majority_baseline(val_data)
    learned = hist.val_acc[-1] > baseline + 0.05
    metrics = {
        "program": run.program, "num_params": sum(p.numel() for p in model.parameters()),
        "final_train_acc": hist.train_acc[-1], "final_val_acc": hist.val_acc[-1],
        "test_acc": task.accuracy(model, test_data), "majority_baseline_val": baseline, "learned": learned,
        "llc/mean": curve["llc_mean"][-1], "llc/std": curve["llc_std"][-1], "step_size": sgld.step_size,
        "localization": sgld.localization, "nbeta": run.sizes[0] / math.log(run.sizes[0]),
        "lead_lag": lead_lag(curve["llc_mean"], hist.val_loss), "calibration": cal.table,
        "seconds": time.time() - t0,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    save_history(out_dir / "curves.json", hist, curve)
    # the final model, for the ablation study (ignored by git: a generated artefact like checkpoints)
    torch.save({"state": model.state_dict(), "model_config": dataclasses.asdict(model.cfg), "run": run.name,
                "program": run.program, "sizes": run.sizes, "seed": run.train.seed, "sgld": run.sgld.to_dict(),
                "step_size": sgld.step_size, "learned": learned}, out_dir / "final_model.pt")
    _plot(run, hist, curve, metrics, out_dir / "training_llc.png")
    return metrics


def _plot(run: TaskRun, hist, curve: dict, m: dict, path: Path) -> None:
    steps = np.asarray(hist.steps)
    fig, ax = plt.subplots(1, 3, figsize=(13, 3.6))
    ax[0].plot(steps, hist.train_loss, label="train")
    ax[0].plot(steps, hist.val_loss, label="validation")
    ax[0].set_yscale("log")
    ax[0].set_ylabel("loss (CE nats or MSE)")
    ax[1].plot(steps, hist.train_acc, label="train")
    ax[1].plot(steps, hist.val_acc, label="validation")
    ax[1].axhline(m["majority_baseline_val"], color="grey", ls=":", label="majority baseline")
    ax[1].set_ylabel("per-position accuracy")
    mean, std = np.asarray(curve["llc_mean"]), np.asarray(curve["llc_std"])
    ax[2].plot(steps, mean, color="k")
    ax[2].fill_between(steps, mean - std, mean + std, color="k", alpha=0.2, label="± std over chains")
    ax[2].set_ylabel("estimated LLC (train data)")
    for a in ax:
        a.set_xlabel("training step")
        a.legend(fontsize=7)
    s = run.sgld
    fig.suptitle(f"{run.name}: n_train={run.sizes[0]}, AdamW lr={run.train.lr}, wd={run.train.weight_decay}; "
                 f"SGLD eps={m['step_size']:g} (calibrated on final checkpoint), gamma={s.localization}, "
                 f"{s.num_chains}x{s.num_draws} draws; learned={m['learned']}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def readme(all_metrics: dict) -> str:
    """Plain-words summary; every number comes from the runs."""
    lines = ["# LLC during training of the compiled architectures (trained from scratch)", "",
             "Each model has the compiled program's architecture (layers, heads, key size, MLP width, residual "
             "width) with trainable embeddings and readout. The LLC is measured on training data at every "
             "checkpoint with one step size calibrated on the final checkpoint (localization 10).", "",
             "| run | params | val acc | majority baseline | learned | test acc | final LLC | eps |",
             "|---|---|---|---|---|---|---|---|"]
    for name, m in all_metrics.items():
        lines.append(f"| {name} | {m['num_params']} | {m['final_val_acc']:.3f} | {m['majority_baseline_val']:.3f} | "
                     f"{m['learned']} | {m['test_acc']:.3f} | {m['llc/mean']:.2f} ± {m['llc/std']:.2f} | "
                     f"{m['step_size']:g} |")
    lines += ["", "## What was found", ""]
    for name, m in all_metrics.items():
        sig = {k: v for k, v in m["lead_lag"].items() if v["p"] == v["p"] and v["p"] < 0.05}
        if not m["learned"]:
            lines.append(f"- {name}: did not beat the majority baseline by 5 points on validation; its LLC curve "
                         "is not interpreted.")
            continue
        lead = ", ".join(f"lag {k}: r = {v['r']:.2f} (p = {v['p']:.3f})" for k, v in sig.items()) or "none"
        lines.append(f"- {name}: learned (validation {m['final_val_acc']:.3f} vs baseline "
                     f"{m['majority_baseline_val']:.3f}). Significant lead-lag correlations of LLC changes with "
                     f"validation-loss changes (positive lag: LLC first): {lead}.")
    lines += ["", "The permutation p-values ignore autocorrelation between checkpoints and are optimistic; with one "
              "seed per task, no lead-lag claim here is established. Figures: `<run>/training_llc.png`.", ""]
    return "\n".join(lines)


def run(runs: tuple, root: Path) -> dict:
    """Runs every task run into `root/<run>/`; writes the summary README, metrics and config; returns the metrics."""
    all_metrics = {}
    for task in runs:
        m = run_task(task, root / task.name)
        all_metrics[task.name] = m
        print(f"  {task.name:16s} val acc {m['final_val_acc']:.3f} (baseline {m['majority_baseline_val']:.3f}) "
              f"final LLC {m['llc/mean']:.2f} eps {m['step_size']:g} {m['seconds']:.0f}s", flush=True)
    root.mkdir(parents=True, exist_ok=True)
    (root / "README.md").write_text(readme(all_metrics))
    (root / "metrics.json").write_text(json.dumps(all_metrics, indent=2, default=float))
    (root / "config.json").write_text(json.dumps({"scale": scale(), "runs": [
        {"name": r.name, "program": r.program, "sizes": r.sizes, "train": dataclasses.asdict(r.train),
         "sgld": r.sgld.to_dict(), "step_grid": r.step_grid} for r in runs],
        "environment": environment()}, indent=2))
    return all_metrics


def main() -> None:
    """The study at `LLC_SCALE`, written to `<LLC_RESULTS_DIR>/training`."""
    root = results_root() / "training"
    print(f"training study at scale {scale()!r} -> {root}", flush=True)
    run(PRESETS[scale()], root)


if __name__ == "__main__":
    main()
