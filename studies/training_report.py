"""The training study's figures and README, drawn and written from the numbers `studies.training.run` computed."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402

from studies.report_text import dirty_warning, fmt, fmt_ci, took  # noqa: E402

if TYPE_CHECKING:
    from llc_training.validity import TrainedLLCSettings
    from studies.training import TrainingConfig
    from studies.training_curves import CurveJob

PREDICTORS = ("llc", "llc_over_n", "train_loss", "weight_norm", "hessian_trace")
PREDICTOR_WORDS = {"llc": "train-data LLC", "llc_over_n": "LLC / n", "train_loss": "training loss",
                   "weight_norm": "weight norm |w|", "hessian_trace": "Hessian trace (training loss)"}


def plot_sweep(rows: list, stats: dict, cfg: TrainingConfig, path: Path) -> None:
    """Test loss against each predictor (one colour per training-set size; hollow: LLC flagged), and against n."""
    fig, axes = plt.subplots(2, 3, figsize=(13, 7.2))
    sizes = sorted({r["n_train"] for r in rows})
    cmap = plt.get_cmap("viridis")
    for ax, name in zip(axes.flat, PREDICTORS + ("n_train",)):
        for k, n in enumerate(sizes):
            sub = [r for r in rows if r["n_train"] == n]
            color = cmap(k / max(len(sizes) - 1, 1))
            x = np.array([r[name] for r in sub], float)
            y = np.array([r["test_loss"] for r in sub])
            ok = np.array([r["llc_valid"] for r in sub])
            if name.startswith("llc"):
                xerr = np.array([r["llc_std"] for r in sub]) / (n if name == "llc_over_n" else 1)
            elif name == "hessian_trace":
                xerr = np.array([r["hessian_trace_se"] for r in sub])
            else:
                xerr = None
            ax.errorbar(x, y, xerr=xerr, fmt="none", ecolor=color, lw=0.8)
            ax.scatter(x[ok], y[ok], color=color, s=22, label=f"n={n}")
            ax.scatter(x[~ok], y[~ok], facecolors="none", edgecolors=color, s=22)
        if name == "n_train":
            ax.set_title("training-set size (for reference)", fontsize=9)
            ax.set_xlabel("n_train")
            ax.set_xscale("log")
            ax.set_xticks(sizes, [str(n) for n in sizes])
        else:
            s, w = stats["all_runs"][name], stats["within_size"][name]
            ax.set_title(f"{PREDICTOR_WORDS[name]}: rho = {fmt(s['rho'], '.2f')} {fmt_ci(s['ci'], '.2f')};\n"
                         f"within sizes {fmt(w['rho'], '.2f')} {fmt_ci(w['ci'], '.2f')}", fontsize=8)
            ax.set_xlabel(PREDICTOR_WORDS[name])
            if name in ("llc_over_n", "train_loss", "hessian_trace"):
                positive = all(r[name] > 0 for r in rows)
                ax.set_xscale("log" if positive else "symlog")
                if positive:  # labels at 1 and 3 per decade; the default labels every minor tick of a short range
                    ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 3.0)))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_ylabel("test loss (MSE)")
        ax.set_yscale("log")
    axes.flat[0].legend(fontsize=7)
    st = cfg.sweep_llc
    fig.suptitle(f"{rows[0]['program']}: {len(rows)} runs ({len(sizes)} training-set sizes x {len(cfg.sweep_seeds)} "
                 f"seeds), Adam L2 wd={cfg.sweep_train.weight_decay:g}, polished by L-BFGS. LLC: auto_llc, "
                 f"nbeta={st.nbeta:g}, gamma={st.localization:g}, float64; hollow = LLC flagged.\nSpearman rho with "
                 "95% bootstrap CI; error bars: std over chains (LLC), Hutchinson s.e. (trace)", fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_curve(job: CurveJob, hist, curve: dict, m: dict, path: Path) -> None:
    """One curve run: the losses, the LLC with its verdict per point, and the gradient norm along training."""
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
    mean, std = np.asarray(curve["llc_mean"], float), np.asarray(curve["llc_std"], float)
    ok = np.asarray(curve["trustworthy"], bool)
    ax[2].errorbar(steps, mean, yerr=std, color="k", lw=0.8, capsize=2, label="± std over chains")
    ax[2].scatter(steps[ok], mean[ok], color="k", s=14, zorder=3, label="trustworthy")
    ax[2].scatter(steps[~ok], mean[~ok], facecolors="none", edgecolors="k", s=14, zorder=3, label="flagged")
    ax[2].set_ylabel("estimated LLC (train data, regularised loss)")
    for a in ax:
        a.set_xlabel("training step")
        a.set_xscale("log")
        a.legend(fontsize=7)
    s = job.sgld
    fig.suptitle(f"{job.name}: n_train={job.sizes[0]}, Adam lr={job.train.lr}, L2 wd={job.train.weight_decay}; SGLD "
                 f"eps={s.step_size:g}, gamma={s.localization:g}, nbeta={m['curve_nbeta']:.3g}, {s.num_chains}x"
                 f"{s.num_draws} draws (+{s.num_burnin} burn-in), float64; learned={m['learned']}", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def readme(m: dict, cfg: TrainingConfig, env: dict) -> str:
    """Plain-words summary; every number comes from `m`."""
    rows, st = m["sweep"]["runs"], m["sweep"]["statistics"]
    lines = ["# Validation without a validation set: the train-data LLC of trained compiled architectures", ""]
    if env.get("dirty"):
        lines += [dirty_warning(), ""]
    llc = cfg.sweep_llc
    lines += _answer_lines(st, len(rows))
    lines += [took(m) + " Every model has its compiled program's architecture with "
              "trainable embeddings and readout, is trained with Adam and L2 weight decay wd, then finished with "
              "full-batch L-BFGS on the regularised training loss L + (wd/2)|w|^2 (the loss the LLC uses, so w* is a "
              "minimum of it), and measured in float64.", "",
              f"## 1. Sweep: {len(rows)} runs of {rows[0]['program']} ({len(cfg.sweep_sizes)} training-set sizes "
              f"{list(cfg.sweep_sizes)} x {len(cfg.sweep_seeds)} seeds)", "",
              f"The program is {rows[0]['program']}, fractok's algorithm (running fraction of x) at "
              f"{dict(cfg.sweep_variant)}: small enough ({rows[0]['num_params']} parameters) for auto_llc's dense "
              "Hessian in every run. "
              f"Training: Adam lr {cfg.sweep_train.lr:g}, L2 weight decay {cfg.sweep_train.weight_decay:g}, "
              f"{cfg.sweep_train.steps} steps, batch {cfg.sweep_train.batch_size}; test loss on "
              f"{cfg.sweep_pool[2]} held-out sequences (MSE of the running fraction). The LLC: auto_llc (HMC, Hessian "
              f"bounds) at nbeta = {llc.nbeta:g} and gamma = {llc.localization:g} for every run (one temperature, so "
              f"the numbers are comparable across n; n / log n would change it {_nlogn_ratio(cfg.sweep_sizes):.0f}-"
              f"fold across the sweep, and it must be large for the draws to keep their accuracy), the draws' "
              f"training accuracy may fall at most {llc.acc_drop:g}, and SGLD without Metropolis correction "
              f"({_sgld_words(llc)}) at steps {llc.sgld_step:g} and {llc.sgld_step / llc.sgld_step_ratio:g} (the "
              "smaller for proportionally more iterations) must agree with each other and with the HMC estimate "
              f"within {llc.tolerance:.0%}.", "",
              "Does each quantity, measured on the training set alone, rank the runs by test loss? Spearman's rho "
              "with a 95% bootstrap interval over runs:", "",
              "| predictor | rho (all runs) | 95% CI | p | rho (runs with a valid LLC) | 95% CI | rho within a size "
              "(mean over sizes) | 95% CI | permutation p |", "|---|---|---|---|---|---|---|---|---|"]
    for name in PREDICTORS:
        a, v, w = st["all_runs"][name], st["valid_llc_runs"][name], st["within_size"][name]
        lines.append(f"| {PREDICTOR_WORDS[name]} | {fmt(a['rho'], '.2f')} | {fmt_ci(a['ci'], '.2f')} | "
                     f"{fmt(a['p'], '.2g')} | {fmt(v['rho'], '.2f')} (n={v['n']}) | {fmt_ci(v['ci'], '.2f')} | "
                     f"{fmt(w['rho'], '.2f')} ({w['strata']} sizes) | {fmt_ci(w['ci'], '.2f')} | {fmt(w['p'], '.2g')} |")
    lines += ["", _sweep_verdict(st), ""]
    lines += ["| n_train | seed | test loss | train loss | LLC ± std | LLC valid | grad norm at w* | weight norm | "
              "Hessian trace | test acc |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['n_train']} | {r['seed']} | {r['test_loss']:.3g} | {r['train_loss']:.3g} | "
                     f"{r['llc']:.1f} ± {fmt(r['llc_std'], '.1f')} | {'yes' if r['llc_valid'] else 'no: ' + '; '.join(r['llc_reasons'])[:160]} | "
                     f"{r['polish']['grad_norm_after']:.1g} | {r['weight_norm']:.2f} | {r['hessian_trace']:.3g} | "
                     f"{r['test_acc']:.3f} |")
    nv = st["num_valid_llc"]
    lines += ["", f"{nv} of {len(rows)} sweep LLCs pass every check (auto_llc verdict, draws keep their accuracy, "
              "step-size agreement); the others are flagged above with their reasons and drawn hollow in `sweep.png`.",
              ""]
    lines += _curve_lines(m, cfg)
    lines += ["", "Figures: `sweep.png`, `<run>/training_llc.png`, `diagnostics.png` (per-chain loss with the burn-in "
              "shaded and running acceptance; data in `traces.json`). Numbers: `metrics.json`; settings: `config.json`; "
              "curves: `<run>/curves.json`.", ""]
    return "\n".join(lines)


def _answer_lines(st: dict, runs: int) -> list:
    """The answer to "does the final train-data LLC rank runs by test loss?", with how many LLCs are valid."""
    a, v, w = st["all_runs"]["llc"], st["valid_llc_runs"]["llc"], st["within_size"]["llc"]
    others = ", ".join(f"{PREDICTOR_WORDS[n]} {fmt(st['all_runs'][n]['rho'], '.2f')}" for n in PREDICTORS
                       if n != "llc")
    return ["## The answer", "",
            f"- Across {runs} runs the final train-data LLC ranks runs by test loss with Spearman rho = "
            f"{fmt(a['rho'], '.2f')} (95% CI {fmt_ci(a['ci'], '.2f')}); over the {v['n']} runs whose LLC passed every "
            f"check, rho = {fmt(v['rho'], '.2f')} (95% CI {fmt_ci(v['ci'], '.2f')}); within one training-set size "
            f"(the part n itself does not explain), rho = {fmt(w['rho'], '.2f')} (permutation p = "
            f"{fmt(w['p'], '.2g')}).",
            f"- What a practitioner would use instead, rho with test loss over all runs: {others}.",
            f"- How sure: {st['num_valid_llc']} of {runs} sweep LLCs are valid; a correlation over flagged LLCs "
            "describes the estimator's output, not the LLC.", ""]


def _nlogn_ratio(sizes) -> float:
    lo, hi = min(sizes), max(sizes)
    return (hi / math.log(hi)) / (lo / math.log(lo))


def _sgld_words(st: TrainedLLCSettings) -> str:
    return ("in auto_llc's Hessian-whitened coordinates" if st.sgld_mode == "whitened"
            else "plain, no preconditioner; steps as fractions of 2 / (nbeta h_max + gamma)")


def _sweep_verdict(st: dict) -> str:
    a = st["all_runs"]
    llc = a["llc"]
    best = max((n for n in PREDICTORS if math.isfinite(a[n]["rho"])), key=lambda n: abs(a[n]["rho"]), default=None)
    if not math.isfinite(llc["rho"]):
        return "The LLC's rank correlation with the test loss could not be computed."
    sure = "its interval excludes 0" if llc["ci"][0] > 0 or llc["ci"][1] < 0 else "its interval includes 0"
    text = (f"Across runs the final train-data LLC has rho = {llc['rho']:.2f} with the test loss ({sure}). ")
    if best:
        text += (f"The strongest ranking comes from the {PREDICTOR_WORDS[best]} (rho = {a[best]['rho']:.2f}). ")
    w = st["within_size"]["llc"]
    text += ("Across sizes most of any correlation comes from n itself (larger n: lower test loss, and LLC / n "
             "inherits it); the within-size columns (seeds of one size, predictor shuffled within sizes for the "
             f"p-value) ask whether a predictor also ranks runs of the same n: for the LLC, rho = {fmt(w['rho'], '.2f')} "
             f"(95% CI {fmt_ci(w['ci'], '.2f')}, p = {fmt(w['p'], '.2g')}).")
    return text


def _curve_lines(m: dict, cfg: TrainingConfig) -> list:
    lines = ["## 2. Curves: one run per program, LLC along training", ""]
    for name, c in m["curves"].items():
        learned = ("learned" if c["learned"] else "did NOT beat the majority baseline by 5 points; its curve is not "
                   "interpreted")
        lines.append(f"- **{name}** ({c['num_params']} parameters, n_train {c['sizes'][0]}): validation accuracy "
                     f"{c['final_val_acc']:.3f} vs majority baseline {c['majority_baseline_val']:.3f} ({learned}). "
                     f"{c['curve_trustworthy']} of the curve's points pass the estimator's verdict. Gradient norm of "
                     f"the regularised loss at the end of Adam {c['polish']['grad_norm_before']:.2g}, after L-BFGS "
                     f"{c['polish']['grad_norm_after']:.2g}.")
        f = c["final_llc"]
        if f:
            lines.append(f"  Final LLC (auto_llc, nbeta {f['auto']['nbeta']:g}, gamma "
                         f"{f['settings']['localization']:g}): {f['llc_mean']:.2f} ± {fmt(f['llc_std'], '.2f')}; "
                         f"SGLD ({f['sgld_mode']}) at two step sizes "
                         f"{', '.join(fmt(s['llc_mean'], '.2f') for s in f['sgld'])}; "
                         + ("valid." if f["valid"] else "flagged: " + "; ".join(f["reasons"]) + "."))
        else:
            lines.append("  No auto_llc check at this size (dense Hessian too large for this scale); the curve's "
                         "last point carries the SGLD verdict only.")
        ll = c["lead_lag"]
        loo = ll["leave_one_out"]
        ccf = ll["ccf"]
        if "r" in ccf:
            sig = ccf["significant_lags"]
            lines.append(f"  Lead-lag within this one run: Pearson r of LLC and log validation loss "
                         f"{fmt(loo['r'], '.2f')} (between {fmt(loo['r_min'], '.2f')} and {fmt(loo['r_max'], '.2f')} "
                         f"when one checkpoint is dropped); pre-whitened cross-correlation, lags significant after "
                         f"Holm over {len(ccf['lags'])} lags: {sig if sig else 'none'}. One seed: no lead-lag claim.")
        else:
            lines.append(f"  Lead-lag: {ccf['note']}.")
    lines += ["", "## 3. Compiled vs trained, one common loss", ""]
    cmp_ = m.get("compare")
    if not cmp_:
        return lines + ["Not run at this scale."]
    lines.append(f"- **{cmp_['program']}**: loss = {cmp_['loss']}, on {cmp_['n']} training sequences of the "
                 f"largest sweep run (seed 0), nbeta {cmp_['nbeta']:g}, gamma {cmp_['localization']:g} for both, "
                 "auto_llc, float64. The trained model (sweep run, a minimum of its regularised loss) was taken by "
                 f"L-BFGS to a minimum of this loss (gradient norm {cmp_['trained_finetune']['grad_norm_before']:.2g} "
                 f"-> {cmp_['trained_finetune']['grad_norm_after']:.2g}).")
    for kind in ("compiled", "trained"):
        k = cmp_[kind]
        verdict = "trustworthy" if k["trustworthy"] else "flagged: " + "; ".join(k["warnings"])
        lines.append(f"  - {kind}: LLC {k['llc_mean']:.2f} ± {fmt(k['llc_std'], '.2f')} ({k['num_params']} "
                     f"parameters; Hessian effective half-rank {fmt(k['bounds']['effective_half_rank'], '.1f')}, "
                     f"rank/2 {fmt(k['bounds']['half_rank'], '.1f')}); loss at w* {k['loss_at_w']:.2g}, gradient norm "
                     f"{k['grad_norm']:.2g}, accuracy {k['accuracy']:.3f}; {verdict}.")
    c, t = cmp_["compiled"], cmp_["trained"]
    if c["trustworthy"] and t["trustworthy"]:
        lines.append(f"  Both estimates pass their checks: the trained solution's LLC is "
                     f"{t['llc_mean'] / c['llc_mean']:.2f} x the compiled one's.")
    else:
        lines.append("  At least one of the two estimates is flagged, so their ratio "
                     f"({t['llc_mean'] / c['llc_mean']:.2f}) is not a finding.")
    return lines
