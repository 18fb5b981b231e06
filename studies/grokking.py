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
import math
import time
from pathlib import Path
from typing import Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from llc_estim import SGLDConfig  # noqa: E402
from llc_training import leadlag  # noqa: E402
from llc_training.grokking.mod_add import train_seed  # noqa: E402
from llc_training.model import ModAddMLP  # noqa: E402
from llc_training.train import (TrainConfig, WithSquaredNorm, _load, classification_task, llc_curve,  # noqa: E402
                                regularised, unregularised)
from llc_training.validity import TrainedLLCSettings, trained_llc  # noqa: E402
from studies.common import environment, json_default, results_root, scale  # noqa: E402
from studies.runner import effective_workers, run_jobs  # noqa: E402
from studies.report_text import dirty_warning, fmt, fmt_ci, took  # noqa: E402
from studies.traces import write_diagnostics  # noqa: E402

# The reference curve (Timaeus' example, published SGLD setting, 100 checkpoints every 250 steps)
REFERENCE = {"llc_start": 21.0, "llc_peak": 49.0, "llc_after": (22.0, 24.0), "peak_checkpoint": 10, "every": 250}
GROKKED_ACC = 0.9  # a seed "groks" when its test accuracy reaches this at some checkpoint


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
    out.update(_events(out))
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


def _first(values, test) -> Optional[int]:
    return next((i for i, v in enumerate(values) if test(v)), None)


def _events(r: dict) -> dict:
    """Turning points of both LLC curves and of the test loss (checkpoint indices, and training steps
    interpolated between checkpoints), accuracy crossings, grokked or not."""
    ev = {}
    for key, series in (("llc_local", r["local"]["llc/mean"]),
                        ("llc_published", r["published"]["llc/mean"] if r["published"] else None),
                        ("test_loss", r["test_loss"])):
        ev[key] = leadlag.event_steps(r["steps"], series) if series is not None else None
    acc = r["test_acc"]
    return {"events": ev, "test_acc_cross50": _first(acc, lambda a: a > 0.5),
            "train_acc_cross99": _first(r["train_acc"], lambda a: a > 0.99),
            "grokked": bool(max(acc) >= GROKKED_ACC), "final_test_acc": float(acc[-1]), "max_test_acc": float(max(acc))}


def _step(r: dict, idx: Optional[int]) -> Optional[int]:
    return None if idx is None else int(r["steps"][idx])


def _fmt_step(v) -> str:
    return "none" if v is None else f"{v:.0f}"


def lead_lag(results: list, cfg: GrokConfig) -> dict:
    """Event timing (per setting, LLC curve and event, Holm over all of them) and pooled pre-whitened CCFs."""
    tests = {}
    for st in cfg.settings:
        rs = [r for r in results if r["setting"] == st.name]
        for curve in ("llc_local", "llc_published") if st.published else ("llc_local",):
            for event in ("turn", "half_decline"):
                x = [r["events"][curve][event] for r in rs]
                y = [r["events"]["test_loss"][event] for r in rs]
                res = leadlag.event_lead(x, y)
                res["seeds"] = [r["seed"] for r in rs]
                tests[f"{st.name}/{curve}/{event}"] = res
    keys = list(tests)
    adj = leadlag.holm([tests[k]["p"] for k in keys])
    for k, a in zip(keys, adj):
        tests[k]["p_holm"] = a
    ccfs = {}
    for st in cfg.settings:
        even = set(st.even_steps())
        pairs = []
        for r in (r for r in results if r["setting"] == st.name):
            idx = [i for i, s in enumerate(r["steps"]) if s in even]
            llc = np.asarray(r["local"]["llc/mean"], float)[idx]
            tl = np.log10(np.asarray(r["test_loss"], float)[idx])
            if np.isfinite(llc).all() and len(idx) > 2 * cfg.max_lag + 6:
                pairs.append((llc, tl))
        if pairs:
            c = leadlag.pooled_ccf(pairs, cfg.max_lag, seed=cfg.seed)
            c["lag_steps"] = st.steps // st.n_even
            ccfs[st.name] = c
        else:
            ccfs[st.name] = {"note": "series too short for the cross-correlation at this scale", "runs": 0}
    return {"events": tests, "ccf": ccfs, "num_event_tests": len(keys),
            "method": "per-seed event timing (turning point = peak followed by a >= 30% fall, and half-decline, "
                      "of the 3-point running median), mean step difference across seeds with a t-interval, "
                      "Holm over all event tests; plus the pre-whitened cross-correlation (differenced, AR(p) by "
                      "AIC) of the local LLC and log10 test loss on the even grid, pooled over seeds by Fisher z, "
                      "Holm over lags"}


def reference_shape(r: dict) -> dict:
    """The published-setting curve against the reference: LLC at step 250, at its peak, at the end."""
    llc = r["published"]["llc/mean"]
    steps = r["steps"]
    i250 = steps.index(REFERENCE["every"]) if REFERENCE["every"] in steps else 0
    peak = r["events"]["llc_published"]["index"]["peak"]
    final = float(np.nanmean(llc[-3:]))
    turn = r["events"]["test_loss"]["turn"]
    return {"llc_at_250": llc[i250], "llc_peak": llc[peak], "llc_peak_step": steps[peak], "llc_final": final,
            "peak_before_test_turn": turn is not None and r["events"]["llc_published"]["peak"] < turn,
            "decline_from_peak": (llc[peak] - final) / llc[peak] if llc[peak] else math.nan}


def validity_summary(results: list) -> dict:
    """How many points of each curve passed the estimator's verdict, and the auto_llc checks."""
    out = {}
    for curve in ("published", "local"):
        have = [r for r in results if r[curve]]
        flags = [t for r in have for t in r[curve]["trustworthy"]]
        reasons = {}
        for r in have:
            for w in r[curve]["warnings"]:
                for reason in w:
                    key = _reason_kind(reason)
                    reasons[key] = reasons.get(key, 0) + 1
        out[curve] = {"points": len(flags), "trustworthy": int(sum(flags)), "reasons": reasons}
    autos = [dict(a, setting=r["setting"], seed=r["seed"], where=w) for r in results for w, a in r["auto"].items()]
    out["auto"] = [{k: a[k] for k in ("setting", "seed", "where", "step", "llc_mean", "llc_std", "valid", "reasons",
                                       "checks", "grad_norm", "train_acc", "step_change", "sgld_mode")}
                   | {"sgld": [s["llc_mean"] for s in a["sgld"]], "bounds": a["auto"]["bounds"],
                      "draw_acc_min": a["auto"]["draw_metric_min"]} for a in autos]
    return out


def _reason_kind(reason: str) -> str:
    """The kind of a verdict reason, its numbers replaced by # ("R-hat # above #: the chains disagree")."""
    import re

    return re.sub(r"-?\d+(\.\d+)?(e-?\d+)?", "#", reason.split("(")[0].split(": the")[0]).strip()


def plot_seeds(results: list, st: GrokSetting, cfg: GrokConfig, path: Path, curve: str = "local") -> None:
    """One panel per seed: one LLC curve (filled: trustworthy, hollow: flagged; error bars: std over chains) with
    the train and test losses. `curve="local"` marks the LLC and test-loss turns and the auto_llc checks;
    `"published"` draws the reference's levels (21, 49, 23)."""
    import textwrap

    rs = [r for r in results if r["setting"] == st.name and r[curve]]
    if not rs:
        return
    cols = min(4, len(rs))
    rows = -(-len(rs) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), squeeze=False)
    color = "k" if curve == "local" else "tab:blue"
    for ax, r in zip(axes.flat, rs):
        steps = np.asarray(r["steps"])
        m = np.asarray(r[curve]["llc/mean"], float)
        sd = np.asarray(r[curve]["llc/std"], float)
        ok = np.asarray(r[curve]["trustworthy"], bool)
        label = f"LLC {curve} (nbeta={r['local_nbeta']:.0f})" if curve == "local" else "LLC published (nbeta=2)"
        ax.errorbar(steps, m, yerr=sd, color=color, lw=0.8, capsize=0, label=label)
        ax.scatter(steps[ok], m[ok], color=color, s=12, zorder=3, label="passes its checks")
        ax.scatter(steps[~ok], m[~ok], facecolors="none", edgecolors=color, s=12, zorder=3, label="flagged")
        ev = r["events"]
        if curve == "local":
            for where, a in r["auto"].items():
                ax.scatter([a["step"]], [a["llc_mean"]], marker="*", s=90, color="g" if a["valid"] else "none",
                           edgecolors="g", zorder=4, label=f"auto_llc ({'valid' if a['valid'] else 'flagged'})")
            if ev["llc_local"]["turn"] is not None:
                ax.axvline(ev["llc_local"]["turn"], color="k", ls="--", lw=0.7, label="LLC turn")
        else:
            for y in (REFERENCE["llc_start"], REFERENCE["llc_peak"], np.mean(REFERENCE["llc_after"])):
                ax.axhline(y, color="tab:blue", ls=":", lw=0.6)
        if ev["test_loss"]["turn"] is not None:
            ax.axvline(ev["test_loss"]["turn"], color="r", ls="--", lw=0.7, label="test-loss turn")
        ax.set_xscale("log")
        ax.set_xlabel("training step")
        ax.set_ylabel(f"estimated LLC, {curve} (train data)", fontsize=8)
        a2 = ax.twinx()
        a2.plot(steps, r["test_loss"], color="r", lw=0.8, label="test loss")
        a2.plot(steps, r["train_loss"], color="orange", lw=0.8, label="train loss")
        a2.set_yscale("log")
        a2.set_ylabel("cross-entropy (nats)", fontsize=8)
        tag = "grokked" if r["grokked"] else "did not grok"
        ax.set_title(f"seed {r['seed']}: {tag} (max test acc {r['max_test_acc']:.2f})", fontsize=8)
        if r is rs[0]:
            h1, l1 = ax.get_legend_handles_labels()
            h2, l2 = a2.get_legend_handles_labels()
            ax.legend(h1 + h2, l1 + l2, fontsize=5, loc="upper left")
    for ax in list(axes.flat)[len(rs):]:
        ax.axis("off")
    sg = cfg.local if curve == "local" else cfg.published
    extra = (f"nbeta={cfg.local_beta:g} x n, regularised loss" if curve == "local" else
             "nbeta=2, plain cross-entropy; dotted: the reference's 21 / 49 / 23")
    title = (f"Modular addition p={cfg.p}, {cfg.train_frac:.0%} train, Adam lr={st.lr:g}, L2 wd={st.weight_decay:g}, "
             f"{st.steps} steps, {len(rs)} seeds. LLC ({curve}): SGLD eps={sg.step_size:g}, gamma={sg.localization:g}, "
             f"{extra}, {sg.num_chains} chains x {sg.num_draws} draws (+{sg.num_burnin} burn-in), float64. Error bars: "
             "std over chains; hollow: flagged by the estimator's checks; dashed: LLC (black) and test-loss (red) turns.")
    fig.suptitle(textwrap.fill(title, 170), fontsize=7)
    fig.tight_layout(rect=(0, 0, 1, 0.92 if rows > 1 else 0.86))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_lead_lag(ll: dict, cfg: GrokConfig, path: Path) -> None:
    """Per-seed event leads with the mean and its 95% t-interval, and the pooled pre-whitened CCFs."""
    fig, ax = plt.subplots(1, 2, figsize=(12, 4))
    keys = list(ll["events"])
    for j, k in enumerate(keys):
        e = ll["events"][k]
        d = e["lead_per_run"]
        ax[0].scatter(d, [j] * len(d), s=14, color="grey")
        if e["n"] >= 3 and math.isfinite(e["ci"][0]):
            ax[0].errorbar([e["mean"]], [j], xerr=[[e["mean"] - e["ci"][0]], [e["ci"][1] - e["mean"]]], color="k",
                           capsize=3, marker="o")
    ax[0].axvline(0, color="r", lw=0.8)
    ax[0].set_yticks(range(len(keys)))
    ax[0].set_yticklabels([f"{k.replace('/llc_', ' ').replace('/', ' ')} (n={ll['events'][k]['n']})" for k in keys],
                          fontsize=7)
    ax[0].set_xlabel("test-loss event step - LLC event step (positive: LLC first)")
    ax[0].set_title("event timing across seeds: mean ± 95% t-interval (not Holm-adjusted)", fontsize=8)
    for name, c in ll["ccf"].items():
        if "r" not in c:
            continue
        lags = np.asarray(c["lags"])
        r = np.asarray(c["r"])
        ci = np.asarray(c["ci"])
        ax[1].errorbar(lags, r, yerr=[r - ci[:, 0], ci[:, 1] - r], capsize=2, marker="o",
                       label=f"{name} ({c['runs']} seeds; 1 lag = {c['lag_steps']} steps)")
    notes = [f"{name}: {c['note']}" for name, c in ll["ccf"].items() if "r" not in c and c.get("note")]
    if notes:  # say why a panel has no curve instead of leaving it blank
        ax[1].text(0.5, 0.5, "no cross-correlation:\n" + "\n".join(notes), ha="center", va="center", fontsize=8,
                   transform=ax[1].transAxes)
    ax[1].axhline(0, color="grey", lw=0.8)
    ax[1].set_xlabel("lag in even-grid checkpoints (positive: LLC leads log test loss)")
    ax[1].set_ylabel("pooled pre-whitened cross-correlation")
    ax[1].set_title("simultaneous 95% intervals (Bonferroni over lags)", fontsize=8)
    if ax[1].get_legend_handles_labels()[0]:
        ax[1].legend(fontsize=6)
    fig.suptitle(f"lead-lag of the train-data LLC and the test loss, modular addition p={cfg.p}, train fraction "
                 f"{cfg.train_frac:g} (n per row: seeds where both events occur)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


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
    per_seed = {f"{r['setting']}/{r['seed']}": _seed_row(r) for r in results}
    probes = [{"key": f"{r['setting']}/{r['seed']}", "draws_probe": r["draws_probe"]} for r in results
              if r["draws_probe"]]
    metrics = {"per_seed": per_seed, "reference_shape": shapes, "lead_lag": ll, "validity": validity,
               "published_draws_probe": probes,
               "settings": {st.name: _setting_summary(results, st) for st in cfg.settings},
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


def _seed_row(r: dict) -> dict:
    e = r["events"]
    s = r["steps"]

    def at(curve, kind):
        """The event's checkpoint index, that checkpoint's step, and the interpolated step."""
        if e.get(curve) is None or e[curve]["index"][kind] is None:
            return None
        idx = e[curve]["index"][kind]
        return {"checkpoint": idx, "checkpoint_step": s[idx], "step": e[curve][kind]}

    def cross(idx):
        return None if idx is None else {"checkpoint": idx, "checkpoint_step": s[idx], "step": s[idx]}

    return {"grokked": r["grokked"], "final_test_acc": r["final_test_acc"], "max_test_acc": r["max_test_acc"],
            "llc_local_peak": at("llc_local", "peak"), "llc_local_turn": at("llc_local", "turn"),
            "llc_published_peak": at("llc_published", "peak"), "test_loss_turn": at("test_loss", "turn"),
            "test_loss_peak": at("test_loss", "peak"), "llc_local_half_decline": at("llc_local", "half_decline"),
            "test_loss_half_decline": at("test_loss", "half_decline"),
            "test_acc_cross50": cross(r["test_acc_cross50"]), "train_acc_cross99": cross(r["train_acc_cross99"]),
            "llc_local_final": r["local"]["llc/mean"][-1],
            "llc_published_final": r["published"]["llc/mean"][-1] if r["published"] else None,
            "grad_norm_final": r["grad_norm_regularised"][-1], "num_checkpoints": len(s),
            "seconds": r["seconds"], "cpu_seconds": r["cpu_seconds"], "num_params": r["num_params"]}


def _setting_summary(results: list, st: GrokSetting) -> dict:
    rs = [r for r in results if r["setting"] == st.name]
    return {"seeds": [r["seed"] for r in rs], "grokked": [r["seed"] for r in rs if r["grokked"]],
            "num_grokked": sum(r["grokked"] for r in rs), "lr": st.lr, "weight_decay": st.weight_decay,
            "steps": st.steps, "num_checkpoints": len(st.checkpoints())}


def readme(m: dict, cfg: GrokConfig, env: dict) -> str:
    """Plain-words summary; every number comes from `m`."""
    lines = ["# Grokking over seeds: does the train-data LLC anticipate the test loss?", ""]
    if env.get("dirty"):
        lines += [dirty_warning(), ""]
    pub, loc = cfg.published, cfg.local
    lines += [f"Modular addition p = {cfg.p}, {cfg.train_frac:.0%} of the pairs for training, the "
              f"{next(iter(m['per_seed'].values()))['num_params']}-parameter MLP, Adam with L2 weight decay, batch "
              f"{cfg.batch_size}. Training in float32, every LLC in float64 on the training data. "
              + took(m), "",
              "Two LLC curves per seed: **published** (SGLD eps 3e-3, gamma 5, nbeta 2, plain cross-entropy, "
              f"{pub.num_chains} chains x {pub.num_draws} draws: the reference's setting, for the shape) and "
              f"**local** (SGLD eps {loc.step_size:g}, gamma {loc.localization:g}, nbeta = {cfg.local_beta:g} x n, "
              f"{loc.num_chains} chains x {loc.num_draws} draws after {loc.num_burnin} burn-in, on the regularised "
              "loss CE + (wd/2)|w|^2 that Adam with L2 decay minimises). Each point carries the estimator's verdict "
              f"(acceptance, R-hat, trend, draws below L(w*), and the draws' training accuracy may fall at most "
              f"{cfg.acc_drop:.2f} below the checkpoint's); flagged points are hollow in the figures.", ""]
    lines += _answer_lines(m)
    lines += ["## Seeds", ""]
    for name, s in m["settings"].items():
        lines.append(f"- **{name}** (lr {s['lr']:g}, weight decay {s['weight_decay']:g}, {s['steps']} steps, "
                     f"{s['num_checkpoints']} checkpoints): {s['num_grokked']} of {len(s['seeds'])} seeds grokked "
                     f"(test accuracy reached {GROKKED_ACC:.0%}): seeds {s['grokked'] or 'none'}.")
    lines += ["", "| setting/seed | grokked | final test acc | LLC turn (local) | LLC peak (published) | "
              "test-loss turn | test acc > 50% | LLC published at 250 / peak / final | grad norm at end |",
              "|---|---|---|---|---|---|---|---|---|"]
    for key, r in m["per_seed"].items():
        sh = m["reference_shape"].get(key)
        shape = (f"{fmt(sh['llc_at_250'], '.1f')} / {fmt(sh['llc_peak'], '.1f')} / {fmt(sh['llc_final'], '.1f')}"
                 if sh else "not measured for this setting")
        lines.append(f"| {key} | {'yes' if r['grokked'] else 'no'} | {r['final_test_acc']:.3f} | "
                     f"{_at(r['llc_local_turn'])} | {_at(r['llc_published_peak'], 'not measured')} | "
                     f"{_at(r['test_loss_turn'])} | {_at(r['test_acc_cross50'], 'never')} | {shape} | "
                     f"{fmt(r['grad_norm_final'], '.2g')} |")
    lines += ["", "Events are given as `checkpoint index (training step)`, the step interpolated between checkpoints "
              "(in log-step: a parabola through the peak, a line through the half-way crossing); 'no turn' means "
              "the series never fell by 30% after its peak.", ""]
    lines += _shape_lines(m, cfg)
    lines += _leadlag_lines(m)
    lines += _validity_lines(m, cfg)
    lines += ["", "Figures: `seeds_<setting>.png` (every seed: the local LLC curve, the losses, the turns, the auto_llc "
              "checks), `published_<setting>.png` (the published-setting curve against the reference's levels), "
              "`lead_lag.png`, `diagnostics.png` (per-chain loss with the burn-in shaded and running acceptance of "
              "the first seed's estimates at its first, peak and last checkpoints and of the auto_llc checks; data in "
              "`traces.json`). "
              "Numbers: `metrics.json`; curves: `curves.json`; settings: `config.json`.", ""]
    return "\n".join(lines)


def _answer_lines(m: dict) -> list:
    """The answer in a few bullets: who grokked, which series turns first (local LLC turn vs test-loss turn), and
    how many LLC points are valid; every number from `m`."""
    lines = ["## The answer", ""]
    lines.append("- Grokking: " + "; ".join(f"{n}: {s['num_grokked']} of {len(s['seeds'])} seeds"
                                            for n, s in m["settings"].items()) + ".")
    for k, e in m["lead_lag"]["events"].items():
        if not k.endswith("llc_local/turn"):
            continue
        if e["n"] < 3:
            lines.append(f"- {k}: only {e['n']} seeds have both turning points: no lead-lag conclusion.")
        else:
            who = ("the LLC turns first" if e["mean"] > 0 else "the test loss turns first")
            sure = "significant" if e.get("p_holm", 1) < 0.05 else "not significant"
            lines.append(f"- {k}: {who} by {abs(e['mean']):.0f} steps on average over {e['n']} seeds (95% CI "
                         f"{fmt_ci(e['ci'], '.0f')}; Holm p = {fmt(e.get('p_holm'), '.2g')}, {sure}).")
    v = m["validity"]
    valid_auto = sum(bool(a["valid"]) for a in v["auto"])
    lines.append(f"- How sure: the LLC curves are plain SGLD; {v['local']['trustworthy']} of {v['local']['points']} "
                 f"local-curve points and {v['published']['trustworthy']} of {v['published']['points']} "
                 f"published-setting points pass the estimator's verdict, and {valid_auto} of {len(v['auto'])} "
                 "auto_llc checks pass (see Validity). Timings of a curve's turn are read from flagged points too, so "
                 "they describe the estimator's output, not a certified LLC.")
    return lines + [""]


def _at(v, none: str = "no turn") -> str:
    return none if v is None else f"{v['checkpoint']} ({v['step']:.0f})"


def _shape_lines(m: dict, cfg: GrokConfig) -> list:
    ref = m["reference"]
    grok = [k for k, r in m["per_seed"].items() if r["grokked"] and k.startswith(cfg.settings[0].name)]
    lines = ["## Against the reference shape", "",
             f"The reference (published setting, seed that grokked): LLC about {ref['llc_start']:g} at step 250, "
             f"{ref['llc_peak']:g} at memorisation (checkpoint ~{ref['peak_checkpoint']} = step "
             f"~{ref['peak_checkpoint'] * ref['every']}), then {ref['llc_after'][0]:g}-{ref['llc_after'][1]:g} after "
             "grokking."]
    if grok:
        sh = [m["reference_shape"][k] for k in grok]
        mean = {f: float(np.mean([s[f] for s in sh])) for f in ("llc_at_250", "llc_peak", "llc_final")}
        lines.append(f"Here, over the {len(grok)} seeds of the reference setting that grokked ({', '.join(grok)}): "
                     f"{mean['llc_at_250']:.1f} at step 250, {mean['llc_peak']:.1f} at the peak (steps "
                     f"{', '.join(str(s['llc_peak_step']) for s in sh)}), {mean['llc_final']:.1f} at the end; the peak "
                     f"comes before the test-loss turn in {sum(s['peak_before_test_turn'] for s in sh)} of "
                     f"{len(sh)}, and the LLC falls from its peak by "
                     f"{', '.join(fmt(s['decline_from_peak'], '.0%') for s in sh)}.")
    else:
        lines.append("No seed of the reference setting grokked at this scale, so the full shape cannot be compared.")
    probe = next((r["draws_probe"] for r in m["published_draws_probe"] if r["draws_probe"]), None)
    if probe:
        lines.append(f"The published setting has no burn-in and its chains do not mix (R-hat far above 1.1), so its "
                     f"number depends on how many draws are averaged: at step {probe[0]['step']} of "
                     f"{m['published_draws_probe'][0]['key']}, "
                     + ", ".join(f"{p['draws']} draws give {p['llc_mean']:.1f}" for p in probe)
                     + f" (this study's curves use {cfg.published.num_draws}; the reference used 500).")
    lines.append("These published-setting numbers are comparable with the reference, not valid LLCs: see "
                 "Validity below.")
    return lines + [""]


def _leadlag_lines(m: dict) -> list:
    ll = m["lead_lag"]
    lines = ["## Lead-lag: which moves first, the LLC or the test loss?", "",
             f"Method: {ll['method']}. A positive lead means the LLC event comes first. "
             f"{ll['num_event_tests']} event tests, Holm-adjusted together.", "",
             "| setting / LLC curve / event | seeds with both events | mean lead (steps) | 95% CI (t) | "
             "95% CI (bootstrap) | p | p (Holm) |", "|---|---|---|---|---|---|---|"]
    for k, e in ll["events"].items():
        lines.append(f"| {k} | {e['n']} of {e['n'] + e['excluded']} | {fmt(e['mean'], '.0f')} | "
                     f"{fmt_ci(e['ci'], '.0f')} | {fmt_ci(e['ci_bootstrap'], '.0f')} | {fmt(e['p'], '.3g')} | "
                     f"{fmt(e.get('p_holm'), '.3g')} |")
    lines.append("")
    for k, e in ll["events"].items():
        if "local" not in k:
            continue
        if e["n"] < 3:
            lines.append(f"- {k}: {e['note']}; no conclusion.")
        elif e.get("p_holm", 1) < 0.05:
            who = "the LLC leads" if e["mean"] > 0 else "the test loss leads"
            lines.append(f"- {k}: {who} by {abs(e['mean']):.0f} steps on average (95% CI {fmt_ci(e['ci'], '.0f')}, "
                         f"Holm p = {e['p_holm']:.3g}, {e['n']} seeds).")
        else:
            lines.append(f"- {k}: neither leads detectably (mean {e['mean']:.0f} steps, 95% CI "
                         f"{fmt_ci(e['ci'], '.0f')}, Holm p = {fmt(e.get('p_holm'), '.2g')}, {e['n']} seeds).")
    for name, c in ll["ccf"].items():
        if "r" not in c:
            lines.append(f"- Cross-correlation, {name}: {c['note']}.")
            continue
        sig = c["significant_lags"]
        lines.append(f"- Pre-whitened cross-correlation, {name} ({c['runs']} seeds, one lag = {c['lag_steps']} "
                     f"steps): largest |r| at lag {c['best_lag']} (r = {c['best_lag_r']:.2f}; bootstrap-over-seeds "
                     f"95% interval of that lag {fmt_ci(c['best_lag_ci'], '.0f')}); lags significant after Holm: "
                     f"{sig if sig else 'none'}.")
    return lines + [""]


def _validity_lines(m: dict, cfg: GrokConfig) -> list:
    v = m["validity"]
    lines = ["## Validity", ""]
    for curve in ("published", "local"):
        c = v[curve]
        top = sorted(c["reasons"].items(), key=lambda kv: -kv[1])[:3]
        lines.append(f"- {curve} curve: {c['trustworthy']} of {c['points']} points pass the estimator's verdict"
                     + (f"; most common reasons: " + "; ".join(f"{k} ({n})" for k, n in top) if top else "") + ".")
    for a in v["auto"]:
        verdict = "valid" if a["valid"] else "flagged: " + "; ".join(a["reasons"])
        b = a["bounds"] or {}
        lines.append(f"- auto_llc, {a['setting']} seed {a['seed']} at the {a['where']} checkpoint (step {a['step']}): "
                     f"LLC {a['llc_mean']:.1f} ± {fmt(a['llc_std'], '.1f')} (HMC; Hessian effective half-rank "
                     f"{fmt(b.get('effective_half_rank'), '.1f')}, d/2 = {fmt(b.get('half_dim'), '.0f')}); {a['sgld_mode']} "
                     f"SGLD at two step sizes {', '.join(fmt(x, '.1f') for x in a['sgld'])}, the smaller run for as "
                     f"much Langevin time (largest relative spread "
                     f"{fmt(a['step_change'], '.0%')}); draws' min train accuracy {fmt(a['draw_acc_min'], '.3f')} "
                     f"(at w*: {a['train_acc']:.3f}); gradient norm of the regularised loss at w* "
                     f"{a['grad_norm']:.2g}. Verdict: {verdict}.")
    if not v["auto"]:
        lines.append("- auto_llc checks were not run at this scale.")
    lines.append("- The checkpoints are points along training, not minima: the gradient norm of the regularised loss "
                 "is recorded at every checkpoint (`curves.json`), and the table gives it at the end.")
    return lines


def main() -> None:
    """The study at `LLC_SCALE`, written to `<LLC_RESULTS_DIR>/grokking`."""
    out = results_root() / "grokking"
    print(f"grokking study at scale {scale()!r} -> {out}", flush=True)
    run(PRESETS[scale()], out)


if __name__ == "__main__":
    main()
