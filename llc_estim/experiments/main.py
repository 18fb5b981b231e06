"""The main job (`make results`): LLC of compiled RASP programs at one common sampler setting.

For each program: compile, convert to torch (float64), draw a data set, and estimate the LLC under the teacher
loss (zero with zero gradient at the compiled weights) with identical hyperparameters for every program.
Writes `results/compiled_llc/`: `metrics.json`, `llc_table.csv`, `config.json`, and two figures.

Scale (`LLC_SCALE`): `smoke` (seconds, for tests), `quick` (default), `full`. `LLC_RESULTS_DIR` redirects the
results root. This is the end-to-end demonstration of the pipeline, not yet the calibrated complexity study.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from datasets import generators  # noqa: E402
from datasets.dataloaders import teacher_dataset  # noqa: E402
from llc_estim import SGLDConfig, SGLDDivergenceError, estimate_llc  # noqa: E402
from llc_estim.experiments.teacher import teacher_loss  # noqa: E402
from rasp_models import registry  # noqa: E402
from rasp_models.base import descriptors  # noqa: E402
from tracr.haiku_to_pytorch import to_torch  # noqa: E402


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    programs: tuple
    num_sequences: int
    sgld: SGLDConfig
    seed: int = 0


PRESETS = {
    "smoke": DemoConfig(("identity", "fractok"), 64,
                        SGLDConfig(step_size=1e-5, localization=1.0, num_chains=2, num_draws=20, num_burnin=10,
                                   batch_size=32, progress=False)),
    "quick": DemoConfig(("identity", "length", "histogram", "fractok", "pair_balance", "detect_abc", "triplets",
                         "count_less_freq", "sort", "reverse"), 256,
                        SGLDConfig(step_size=1e-5, localization=1.0, num_chains=4, num_draws=200, num_burnin=100,
                                   batch_size=64)),
    "full": DemoConfig(tuple(registry.names()), 1024,
                       SGLDConfig(step_size=1e-5, localization=1.0, num_chains=8, num_draws=1000, num_burnin=500,
                                  batch_size=64)),
}


def scale() -> str:
    s = os.environ.get("LLC_SCALE", "quick")
    if s not in PRESETS:
        raise ValueError(f"LLC_SCALE must be one of {list(PRESETS)}, got {s!r}")
    return s


def results_root() -> Path:
    return Path(os.environ.get("LLC_RESULTS_DIR", "results"))


def environment() -> dict:
    """Package versions and the git commit, recorded with every result."""
    import jax
    import haiku

    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False,
                                cwd=Path(__file__).parent).stdout.strip()
    except OSError:
        commit = ""
    return {"python": platform.python_version(), "torch": torch.__version__, "jax": jax.__version__,
            "haiku": haiku.__version__, "numpy": np.__version__, "git_commit": commit}


def run(cfg: DemoConfig, out_dir: Path) -> dict:
    """Runs the demo and writes its files; returns the metrics."""
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics, traces = {}, {}
    for name in cfg.programs:
        spec = registry.get(name)
        tm = to_torch(spec.compile(), dtype=torch.float64)
        seqs = generators.generate(spec, cfg.num_sequences, seed=cfg.seed)
        data = teacher_dataset(tm, seqs)
        t0 = time.time()
        desc = {k: v for k, v in descriptors(spec).items() if k != "primitives_by_kind"}
        try:
            res = estimate_llc(tm, data, teacher_loss, cfg.sgld)
        except SGLDDivergenceError as err:  # reported, never dropped silently
            metrics[name] = {"llc/mean": float("nan"), "llc/std": float("nan"), "nbeta": float("nan"),
                             "diagnostics/diverged": True, "diagnostics/error": str(err),
                             "diagnostics/mala_acceptance": float("nan"), **desc, "seconds": time.time() - t0}
            print(f"{name:16s} DIVERGED at the common setting: {err}", flush=True)
            continue
        row = {**res.to_dict(), **desc, "seconds": time.time() - t0}
        metrics[name] = row
        traces[name] = res
        print(f"{name:16s} llc {res.llc_mean:9.3f} +- {res.llc_std:7.3f}  params {row['num_params']:7d}  "
              f"accept {res.diagnostics['mala_acceptance']:.3f}  {row['seconds']:.1f}s", flush=True)
    _write(cfg, out_dir, metrics, traces)
    return metrics


def _write(cfg: DemoConfig, out_dir: Path, metrics: dict, traces: dict) -> None:
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
    config = {"scale": scale(), "seed": cfg.seed, "programs": list(cfg.programs), "num_sequences": cfg.num_sequences,
              "sgld": cfg.sgld.to_dict(), "loss": "teacher (MSE to the compiled readout over real positions)",
              "dtype": "float64", "environment": environment()}
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))
    cols = ["program", "llc_mean", "llc_std", "step_size", "localization", "nbeta", "num_params", "num_nonzero",
            "layers", "heads", "mlp_width", "residual_width", "primitives", "mala_acceptance", "diverged"]
    with open(out_dir / "llc_table.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for name, m in metrics.items():
            w.writerow([name, m["llc/mean"], m["llc/std"], cfg.sgld.step_size, cfg.sgld.localization, m["nbeta"],
                        m["num_params"], m["num_nonzero"], m["layers"], m["heads"], m["mlp_width"],
                        m["residual_width"], m["primitives"], m["diagnostics/mala_acceptance"],
                        bool(m.get("diagnostics/diverged"))])
    s = cfg.sgld
    hp = f"eps={s.step_size}, gamma={s.localization}, n={cfg.num_sequences}, {s.num_chains} chains x {s.num_draws} draws"
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, m in metrics.items():
        if m.get("diagnostics/diverged"):
            continue
        ax.errorbar(m["num_nonzero"], m["llc/mean"], yerr=m["llc/std"], fmt="o", capsize=3)
        ax.annotate(name, (m["num_nonzero"], m["llc/mean"]), fontsize=8, xytext=(3, 3), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("non-zero parameters of the compiled model (count)")
    ax.set_ylabel("estimated LLC (dimensionless), mean ± std over chains")
    diverged = [n for n, m in metrics.items() if m.get("diagnostics/diverged")]
    note = f"\ndiverged at this setting (not shown): {', '.join(diverged)}" if diverged else ""
    ax.set_title(f"LLC of compiled programs, teacher loss\n{hp}{note}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out_dir / "llc_vs_nonzero.png", dpi=120)
    plt.close(fig)
    fig, axes = plt.subplots(1, len(traces), figsize=(3 * len(traces), 3), squeeze=False)
    for ax, (name, res) in zip(axes[0], traces.items()):
        full = np.concatenate([res.burnin_trace, res.loss_trace], axis=1)
        ax.plot(full.T, lw=0.7)
        ax.axvline(res.burnin_trace.shape[1], color="k", ls="--", lw=0.8)
        ax.set_title(f"{name}: {res.llc_mean:.2f}±{res.llc_std:.2f}", fontsize=8)
        ax.set_xlabel("SGLD step")
    axes[0][0].set_ylabel("minibatch teacher loss")
    fig.suptitle(f"loss traces per chain (dashed: end of burn-in); {hp}", fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "loss_traces.png", dpi=100)
    plt.close(fig)


def main() -> None:
    torch.set_num_threads(1)
    s = scale()
    out = results_root() / "compiled_llc"
    print(f"LLC of compiled programs at scale {s!r} -> {out}")
    run(PRESETS[s], out)


if __name__ == "__main__":
    main()
