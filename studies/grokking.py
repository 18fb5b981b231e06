"""The grokking anchor, over seeds: does the train-data LLC anticipate the test loss? (research question 2)

Modular addition (Timaeus' devinterp example): p = 53, 40% of the pairs for training, the 4.4k-parameter MLP, Adam
lr 5e-3 with L2 weight decay (the reference's 2e-4, and a second setting where most seeds grok), batch 128.
Every seed is trained, measured and plotted, whether it groks or not. Checkpoints are log-spaced (dense where
memorisation happens) merged with an even grid (for the cross-correlation).

Two LLC curves per seed, both on the training data in float64:
  * published: SGLD eps 3e-3, gamma 5, nbeta 2 on the plain cross-entropy, as the reference (for comparing the
    shape: LLC about 21 -> 49 at memorisation, then 22-24 after grokking). nbeta = 2 is a very hot posterior; its
    verdict (acceptance, R-hat, trend, the draws' training accuracy) is recorded at every checkpoint.
  * local: SGLD at nbeta = beta x n (beta = 1 by default) on the regularised training loss
    CE + (wd / 2) |w|^2, the loss Adam with L2 decay minimises, with the gradient norm at every checkpoint; the
    draws must keep their training accuracy.
At chosen checkpoints, `llc_training.validity.trained_llc` adds auto_llc (HMC, Hessian bounds) and the step-size
check (plain SGLD at two step sizes).

Lead-lag (`llc_training.leadlag`): per seed, the turning point (peak followed by a fall) and the half-decline of the
LLC and of the test loss; their step differences across seeds with a t-interval, Holm-corrected over every event
test; and the pre-whitened cross-correlation of LLC and log test loss on the even grid, pooled over seeds, Holm over
lags. Writes `results/grokking/`.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Optional

import torch

from llc_estim import SGLDConfig
from llc_training.grokking.mod_add import train_seed
from llc_training.model import ModAddMLP
from llc_training.objectives import WithSquaredNorm, regularised, unregularised
from llc_training.train import TrainConfig, _load, classification_task, llc_curve
from llc_training.validity import TrainedLLCSettings, trained_llc
from studies.common import environment, json_default, results_root, scale
from studies.grokking_analysis import (GROKKED_ACC, REFERENCE, events, lead_lag, reference_shape, seed_row,
                                       setting_summary, validity_summary)
from studies.grokking_report import plot_lead_lag, plot_seeds, readme
from studies.runner import effective_workers, run_jobs
from studies.traces import write_diagnostics



@dataclasses.dataclass(frozen=True)
class GrokSetting:
    """One optimiser setting, run for several seeds.

    Attributes:
        name: label in tables and figures.
        lr, weight_decay: Adam learning rate and L2 weight decay (wd * w added to the gradient).
        steps: training steps.
        seeds: seeds (model init, data split and batch order).
        n_log, n_even: checkpoints log-spaced from step `first`, and evenly spaced (merged, plus step 250).
        first: the first log-spaced checkpoint.
        published: also measure the published-setting curve (for the comparison with the reference).
    """

    name: str
    lr: float
    weight_decay: float
    steps: int
    seeds: tuple
    n_log: int
    n_even: int
    published: bool = True
    first: int = 100

    def checkpoints(self) -> tuple:
        return TrainConfig.log_and_even(self.steps, self.n_log, self.n_even, first=self.first,
                                        extra=(REFERENCE["every"],))

    def even_steps(self) -> tuple:
        return TrainConfig.evenly(self.steps, self.n_even)


@dataclasses.dataclass(frozen=True)
class GrokConfig:
    """One scale of the study.

    Attributes:
        p, train_frac, batch_size: the task and the batch.
        settings: the optimiser settings (the reference first).
        published: the reference SGLD setting (plain cross-entropy).
        local: the local SGLD setting (regularised loss); its nbeta is `local_beta` x n.
        acc_drop: the draws' training accuracy may fall at most this far below the checkpoint's.
        auto: settings of the auto_llc + step-size checks.
        auto_seeds: in the settings named in `auto_settings`, this many seeds (the first) get the checks ...
        auto_at: ... at these checkpoints: "final", "llc_peak" (of the local curve).
        draws_probe: the first seed of the first setting also gets the published setting at its LLC peak with
            these numbers of draws (the published setting has no burn-in and its chains have not mixed, so its
            number depends on how many draws are averaged).
        max_lag: cross-correlation lags tried, in even-grid checkpoints, each way.
        workers: processes.
    """

    p: int
    train_frac: float
    batch_size: int
    settings: tuple
    published: SGLDConfig
    local: SGLDConfig
    local_beta: float
    acc_drop: float
    auto: TrainedLLCSettings
    auto_seeds: int
    auto_at: tuple
    max_lag: int
    workers: int = 2
    seed: int = 0
    d_embed: int = 12
    d_hidden: int = 48
    auto_settings: tuple = ("reference", "wd1e-3")
    draws_probe: tuple = (100, 200, 500, 1000)

    @property
    def train(self) -> TrainConfig:
        """The reference setting's training configuration (seed 0)."""
        s = self.settings[0]
        return TrainConfig(steps=s.steps, batch_size=self.batch_size, lr=s.lr, weight_decay=s.weight_decay,
                           checkpoints=s.checkpoints(), optimizer="adam", betas=(0.9, 0.999))


@dataclasses.dataclass(frozen=True)
class SeedJob:
    """Everything one seed's run needs (picklable)."""

    p: int
    train_frac: float
    batch_size: int
    setting: GrokSetting
    seed: int
    published: SGLDConfig
    local: SGLDConfig
    local_beta: float
    acc_drop: float
    auto: Optional[TrainedLLCSettings]
    auto_at: tuple
    d_embed: int = 12
    d_hidden: int = 48
    draws_probe: tuple = ()


def _published(chains: int, draws: int) -> SGLDConfig:
    return SGLDConfig(step_size=3e-3, localization=5.0, nbeta=2.0, num_chains=chains, num_draws=draws, num_burnin=0,
                      batch_size=128, mala_every=10, progress=False)


def _local(chains: int, draws: int, burnin: int) -> SGLDConfig:
    # nbeta = 4 n and gamma = 400: the draws keep their training accuracy after memorisation (at nbeta = n they
    # lose up to 20 points at the memorisation peak), and burn-in covers the slowest relaxation time 2/(eps gamma)
    return SGLDConfig(step_size=5e-5, localization=400.0, num_chains=chains, num_draws=draws, num_burnin=burnin,
                      batch_size=128, mala_every=10, progress=False)


_REF = dict(name="reference", lr=5e-3, weight_decay=2e-4)
_WD = dict(name="wd1e-3", lr=5e-3, weight_decay=1e-3)
_AUTO = TrainedLLCSettings(localization=400.0, nbeta=None, max_steps=400, num_chains=4, sgld_draws=100,
                           sgld_burnin=100, sgld_batch=128, dense_max=5000, refreshes=0)
PRESETS = {
    "smoke": GrokConfig(p=13, train_frac=0.5, batch_size=32,
                        settings=(GrokSetting(**_REF, steps=300, seeds=(0, 1, 2), n_log=6, n_even=6, first=10),
                                  GrokSetting(**_WD, steps=300, seeds=(0,), n_log=6, n_even=6, published=False,
                                              first=10)),
                        published=_published(2, 20), local=_local(2, 20, 10), local_beta=4.0, acc_drop=0.05,
                        auto=dataclasses.replace(_AUTO, max_steps=200, sgld_draws=20, sgld_burnin=10), auto_seeds=1,
                        auto_at=("final",), max_lag=2, workers=1, d_embed=4, d_hidden=8, draws_probe=(10, 20)),
    "quick": GrokConfig(p=53, train_frac=0.4, batch_size=128,
                        settings=(GrokSetting(**_REF, steps=25000, seeds=tuple(range(8)), n_log=10, n_even=10,
                                              first=300),
                                  GrokSetting(**_WD, steps=25000, seeds=tuple(range(3)), n_log=10, n_even=10,
                                              first=300, published=False)),
                        published=_published(4, 100), local=_local(4, 80, 80), local_beta=4.0, acc_drop=0.05,
                        auto=_AUTO, auto_seeds=1, auto_at=("final",), max_lag=2, auto_settings=("wd1e-3",)),
    "full": GrokConfig(p=53, train_frac=0.4, batch_size=128,
                       settings=(GrokSetting(**_REF, steps=25000, seeds=tuple(range(8)), n_log=30, n_even=100,
                                             first=10),
                                 GrokSetting(**_WD, steps=25000, seeds=tuple(range(8)), n_log=30, n_even=100,
                                             first=10)),
                       published=_published(4, 500), local=_local(4, 400, 300), local_beta=4.0, acc_drop=0.05,
                       auto=dataclasses.replace(_AUTO, max_steps=2000, sgld_draws=1000, sgld_burnin=1000),
                       auto_seeds=2, auto_at=("llc_peak", "final"), max_lag=8, draws_probe=(100, 200, 500, 1000, 2000)),
}


def run_seed(job: SeedJob) -> dict:
    """Trains one seed, measures both LLC curves and the checks; returns every curve and number (JSON-friendly)."""
    torch.set_num_threads(1)
    t0, c0 = time.time(), time.process_time()
    st = job.setting
    cfg = TrainConfig(steps=st.steps, batch_size=job.batch_size, lr=st.lr, weight_decay=st.weight_decay,
                      checkpoints=st.checkpoints(), seed=job.seed, optimizer="adam", betas=(0.9, 0.999))
    run = train_seed(job.p, job.train_frac, cfg, job.seed, d=job.d_embed, h=job.d_hidden)
    hist, train_data, test_data = run.hist, run.train_data, run.test_data
    t_train = time.time() - t0
    task = classification_task()
    wrapped = WithSquaredNorm(ModAddMLP(job.p, job.d_embed, job.d_hidden))
    reg, plain = regularised(task.loss, st.weight_decay), unregularised(task.loss)
    n = len(train_data[0])
    local_cfg = dataclasses.replace(job.local, nbeta=job.local_beta * n)
    loc = llc_curve(wrapped, task, train_data, hist, local_cfg, progress=False, loss_fn=reg, dtype=torch.float64,
                    draw_metric_floor=job.acc_drop, grad_loss=reg)
    pub = (llc_curve(wrapped, task, train_data, hist, job.published, progress=False, loss_fn=plain,
                     dtype=torch.float64, draw_metric_floor=job.acc_drop) if st.published else None)
    out = {"setting": st.name, "seed": job.seed, "steps": hist.steps, "train_loss": hist.train_loss,
           "test_loss": hist.val_loss, "train_acc": hist.train_acc, "test_acc": hist.val_acc,
           "grad_norm_regularised": loc["grad_norm"], "published": _curve(pub) if pub else None,
           "local": _curve(loc),
           "local_nbeta": local_cfg.nbeta, "n_train": n, "num_params": sum(p.numel() for p in run.model.parameters()),
           "majority_baseline_test": task.majority_baseline(test_data)}
    out.update(events(out))
    out["draws_probe"] = _draws_probe(job, hist, wrapped, task, train_data, plain, out) if pub else []
    out["auto"] = {}
    if job.auto is not None:
        for where in job.auto_at:
            i = len(hist.steps) - 1 if where == "final" else out["events"]["llc_local"]["index"]["peak"]
            model = WithSquaredNorm(ModAddMLP(job.p, job.d_embed, job.d_hidden)).double()
            _load(model, hist.states[i], torch.float64)
            res = trained_llc(model, task, train_data, reg, dataclasses.replace(job.auto, nbeta=local_cfg.nbeta))
            res["checkpoint"], res["step"] = i, hist.steps[i]
            out["auto"][where] = res
    out["traces"] = _traces(out, loc, pub)
    out["seconds_train"], out["seconds"] = t_train, time.time() - t0
    out["cpu_seconds"] = time.process_time() - c0
    return out


def _draws_probe(job: SeedJob, hist, wrapped, task, train_data, loss, r: dict) -> list:
    """The published setting at the published curve's peak with more and more draws."""
    if not job.draws_probe:
        return []
    i = r["events"]["llc_published"]["index"]["peak"]
    one = dataclasses.replace(hist, steps=[hist.steps[i]], states=[hist.states[i]])
    out = []
    for draws in job.draws_probe:
        c = llc_curve(wrapped, task, train_data, one, dataclasses.replace(job.published, num_draws=draws),
                      progress=False, loss_fn=loss, dtype=torch.float64, draw_metric_floor=job.acc_drop)
        out.append({"draws": draws, "step": hist.steps[i], "llc_mean": c["llc_mean"][0], "llc_std": c["llc_std"][0],
                    "trustworthy": c["trustworthy"][0], "warnings": c["warnings"][0]})
    return out


def _traces(r: dict, loc: dict, pub: Optional[dict]) -> list:
    """[(title, trace_record)] of one seed: the local curve at its first, peak and last checkpoints, the published
    curve at its peak, and the auto_llc checks."""
    steps, out = r["steps"], []
    picks: dict = {}  # checkpoint -> names, so that a peak at the first or last checkpoint is drawn once
    for name, i in (("first", 0), ("peak", r["events"]["llc_local"]["index"]["peak"]), ("last", len(steps) - 1)):
        if i is not None:
            picks.setdefault(i, []).append(name)
    out += [(f"local, {' = '.join(names)} (step {steps[i]})", loc["trace"][i]) for i, names in sorted(picks.items())]
    i = r["events"]["llc_published"]["index"]["peak"] if pub else None
    if i is not None:
        out.append((f"published, peak (step {steps[i]})", pub["trace"][i]))
    out += [(f"auto_llc, {where} (step {a['step']})", a["auto"]["trace"]) for where, a in r["auto"].items()]
    return [(f"{r['setting']} seed {r['seed']}: {t}", rec) for t, rec in out]


def _curve(c: dict) -> dict:
    return {"llc/mean": c["llc_mean"], "llc/std": c["llc_std"], "trustworthy": c["trustworthy"],
            "warnings": c["warnings"], "acceptance": c["acceptance"], "draw_acc_min": c["draw_acc_min"],
            "train_acc_at_w": c["train_acc"]}


def _fmt_step(v) -> str:
    return "none" if v is None else f"{v:.0f}"


def run(cfg: GrokConfig, out_dir: Path) -> dict:
    """Trains every seed of every setting, measures, writes `out_dir`; returns the metrics."""
    torch.set_num_threads(1)
    t0 = time.time()
    jobs = []
    for j, st in enumerate(cfg.settings):
        for k, seed in enumerate(st.seeds):
            auto = cfg.auto if k < cfg.auto_seeds and st.name in cfg.auto_settings else None
            jobs.append(SeedJob(cfg.p, cfg.train_frac, cfg.batch_size, st, seed, cfg.published, cfg.local,
                                cfg.local_beta, cfg.acc_drop, auto, cfg.auto_at, cfg.d_embed, cfg.d_hidden,
                                cfg.draws_probe if j == 0 and k == 0 else ()))
    jobs.sort(key=lambda j: -(j.setting.steps + (50000 if j.auto else 0)))

    def describe(job, r):
        e = r["events"]
        return (f"{r['setting']} seed {r['seed']}: {'grokked' if r['grokked'] else 'no grok'} (test acc "
                f"{r['final_test_acc']:.2f}), LLC turn at step {_fmt_step(e['llc_local']['turn'])}, test-loss turn "
                f"at {_fmt_step(e['test_loss']['turn'])}, {r['seconds']:.0f} s")

    results = run_jobs(run_seed, [(j,) for j in jobs], cfg.workers, desc="grokking",
                       describe=lambda args, result: describe(args[0], result))
    results.sort(key=lambda r: ([s.name for s in cfg.settings].index(r["setting"]), r["seed"]))
    ll = lead_lag(results, cfg)
    shapes = {f"{r['setting']}/{r['seed']}": reference_shape(r) for r in results if r["published"]}
    validity = validity_summary(results)
    out_dir.mkdir(parents=True, exist_ok=True)
    for st in cfg.settings:
        plot_seeds(results, st, cfg, out_dir / f"seeds_{st.name}.png")
        if st.published:
            plot_seeds(results, st, cfg, out_dir / f"published_{st.name}.png", curve="published")
    plot_lead_lag(ll, cfg, out_dir / "lead_lag.png")
    first = {st.name: st.seeds[0] for st in cfg.settings if st.seeds}
    write_diagnostics([item for r in results if first.get(r["setting"]) == r["seed"] for item in r.pop("traces")],
                      out_dir, f"Grokking, per-chain diagnostics of the first seed of each setting (p = {cfg.p}, "
                      f"train fraction {cfg.train_frac:g}; local: nbeta = {cfg.local_beta:g} x n, "
                      f"published: nbeta = {cfg.published.nbeta}, gamma = {cfg.published.localization:g})", ncols=4)
    seconds = time.time() - t0
    per_seed = {f"{r['setting']}/{r['seed']}": seed_row(r) for r in results}
    probes = [{"key": f"{r['setting']}/{r['seed']}", "draws_probe": r["draws_probe"]} for r in results
              if r["draws_probe"]]
    metrics = {"per_seed": per_seed, "reference_shape": shapes, "lead_lag": ll, "validity": validity,
               "published_draws_probe": probes,
               "settings": {st.name: setting_summary(results, st) for st in cfg.settings},
               "reference": REFERENCE, "grokked_threshold": GROKKED_ACC, "seconds": seconds,
               "cpu_seconds_jobs": float(sum(r["cpu_seconds"] for r in results)),
               "workers": effective_workers(cfg.workers)}
    env = environment()
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=json_default))
    (out_dir / "curves.json").write_text(json.dumps(
        {f"{r['setting']}/{r['seed']}": {k: r[k] for k in ("steps", "train_loss", "test_loss", "train_acc", "test_acc",
                                                           "grad_norm_regularised", "published", "local")}
         for r in results}, default=json_default))
    (out_dir / "config.json").write_text(json.dumps({
        "scale": scale(), "seed": cfg.seed, "p": cfg.p, "train_frac": cfg.train_frac, "batch_size": cfg.batch_size,
        "settings": [dataclasses.asdict(s) | {"checkpoints": list(s.checkpoints())} for s in cfg.settings],
        "optimizer": "Adam (betas 0.9, 0.999) with L2 weight decay in the gradient",
        "published_sgld": cfg.published.to_dict(), "published_loss": "cross-entropy (no regulariser)",
        "local_sgld": cfg.local.to_dict(), "local_beta": cfg.local_beta,
        "local_loss": "cross-entropy + (weight_decay / 2) |w|^2 (the loss Adam with L2 decay minimises)",
        "model": {"d_embed": cfg.d_embed, "d_hidden": cfg.d_hidden}, "acc_drop": cfg.acc_drop, "auto": dataclasses.asdict(cfg.auto), "auto_seeds": cfg.auto_seeds,
        "auto_at": list(cfg.auto_at), "max_lag": cfg.max_lag, "workers": cfg.workers, "dtype_llc": "float64",
        "dtype_training": "float32", "environment": env, "seconds": seconds}, indent=2, default=json_default))
    (out_dir / "README.md").write_text(readme(metrics, cfg, env))
    return metrics


def main() -> None:
    """The study at `LLC_SCALE`, written to `<LLC_RESULTS_DIR>/grokking`."""
    out = results_root() / "grokking"
    print(f"grokking study at scale {scale()!r} -> {out}", flush=True)
    run(PRESETS[scale()], out)


if __name__ == "__main__":
    main()
