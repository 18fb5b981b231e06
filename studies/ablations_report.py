"""Correlations, figures and the README of the ablation study."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from studies.ablations import AblationConfig


def spearman(x, y, reps: int = 2000, seed: int = 0) -> dict:
    """Spearman rho of finite pairs with a bootstrap 95% interval (NaN below 4 pairs)."""
    from scipy import stats

    x, y = np.asarray(x, float), np.asarray(y, float)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 4:
        return {"rho": math.nan, "ci95": [math.nan, math.nan], "n": int(len(x))}
    rng = np.random.default_rng(seed)
    boots = [stats.spearmanr(x[i], y[i])[0] for i in (rng.integers(0, len(x), len(x)) for _ in range(reps))
             if len(set(x[i])) > 1 and len(set(y[i])) > 1]
    ci = [float(v) for v in np.nanpercentile(boots, [2.5, 97.5])] if boots else [math.nan, math.nan]
    return {"rho": float(stats.spearmanr(x, y)[0]), "ci95": ci, "n": int(len(x))}


def figures(out: Path, name: str, rows: list) -> None:
    """`<name>.png`: refined vs ablated LLC and the accuracy after each zero-ablation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    zero = [r for r in rows if r["mode"] == "zero"]
    fig, ax = plt.subplots(1, 2, figsize=(13, 4))
    x = np.arange(len(zero))
    ax[0].bar(x - 0.2, [r["llc_refined"] for r in zero], 0.4, yerr=[r["llc_refined_std"] for r in zero], capsize=2,
              label="refined LLC (intact model)")
    ax[0].bar(x + 0.2, [r["llc_ablated"] for r in zero], 0.4, yerr=[r["llc_ablated_std"] for r in zero], capsize=2,
              label="LLC after zero-ablation (own teacher loss)")
    ax[0].axhline(zero[0]["llc_intact"], color="k", ls=":", label="LLC of the intact model")
    ax[0].set_xticks(x, [r["component"] for r in zero], rotation=60, fontsize=6, ha="right")
    ax[0].set_ylabel("estimated LLC (mean ± std over chains)")
    ax[0].legend(fontsize=6)
    ax[1].bar(x, [r["acc_ablated"] for r in zero], color="tab:red", label="zero-ablated")
    if "acc_finetuned" in zero[0]:
        ax[1].scatter(x, [r.get("acc_finetuned", np.nan) for r in zero], color="k", zorder=3, label="after fine-tune")
    ax[1].set_xticks(x, [r["component"] for r in zero], rotation=60, fontsize=6, ha="right")
    ax[1].set_ylabel("accuracy vs reference")
    ax[1].legend(fontsize=6)
    fig.suptitle(f"{name}: ablations (eps={zero[0]['step_size']:g}, teacher loss)", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / f"{name}.png", dpi=110)
    plt.close(fig)


def readme(metrics: dict, cfg: "AblationConfig") -> str:
    """Plain-words summary of the ablation study; every number comes from the run."""
    rows = metrics["rows"]
    lines = ["# Research question 3: how do ablations change the LLC?", "",
             f"Programs: {', '.join(cfg.programs)}. Per program one step size, calibrated on the intact compiled model "
             f"(teacher loss, localization {cfg.base.localization}, {cfg.base.num_chains} chains x "
             f"{cfg.base.num_draws} draws, n = {cfg.n}); the same setting for every ablation of that program. LLC "
             "(a): the ablated model under its own teacher loss, sampling only the entries the ablation kept. LLC "
             f"(b): after {cfg.finetune_steps} Adam steps of fine-tuning the kept entries back towards the original "
             "function, under the original teacher loss (not an exact minimum: its gradient norm is in the CSV).", "",
             "| program | component | expressions | mode | acc after | LLC intact | LLC after (a) | refined LLC |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['program']} | {r['component']} | {r['expressions'][:40]} | {r['mode']} | "
                     f"{r['acc_ablated']:.2f} | {r['llc_intact']:.2f} | {r['llc_ablated']:.2f} | "
                     f"{r['llc_refined']:.2f} |")
    zero = [r for r in rows if r["mode"] == "zero"]
    breaking = [r for r in zero if r["acc_ablated"] < 0.9 * r["acc_intact"]]
    lower = [r for r in zero if r["llc_ablated"] == r["llc_ablated"] and r["llc_ablated"] < r["llc_intact"]]
    a, b = metrics["spearman_refined_vs_acc_drop"], metrics["spearman_refined_vs_llc_change"]
    ft = [r for r in zero if "acc_finetuned" in r]
    lines += ["", "## What was found", "",
              f"- {len(breaking)} of {len(zero)} zero-ablations cost more than 10% of the accuracy: in a compiled "
              "model almost every component is necessary.",
              f"- {len(lower)} of {len(zero)} zero-ablations lowered the LLC (own teacher loss vs intact teacher loss).",
              f"- Spearman correlation of a component's refined LLC with the accuracy it costs: rho = {a['rho']:.2f} "
              f"(95% CI [{a['ci95'][0]:.2f}, {a['ci95'][1]:.2f}], n = {a['n']}); with the LLC drop its removal "
              f"causes: rho = {b['rho']:.2f} (95% CI [{b['ci95'][0]:.2f}, {b['ci95'][1]:.2f}]).",
              (f"- Fine-tuning recovered a mean accuracy of {np.mean([r['acc_finetuned'] for r in ft]):.2f} (from "
               f"{np.mean([r['acc_ablated'] for r in ft]):.2f} after ablation) in {cfg.finetune_steps} steps."
               if ft else "- No fine-tuning at this scale."),
              "- Caveat: the ablated models' LLCs are measured at the intact model's calibrated step size; where the "
              "ablation removes the stiffest parts, that step size is conservative for the ablated model."]
    trained = metrics.get("trained", {})
    for run, t in trained.items():
        if "rows" in t:
            r = t["rows"]
            drops = sorted(r, key=lambda x: x["acc_ablated"])[:2]
            lines.append(f"- Trained `{run}` (training loss, eps {t['step_size']:g}): LLC {r[0]['llc_intact']:.2f}; "
                         "largest accuracy costs from " + ", ".join(f"{d['component']} ({d['acc_ablated']:.2f})"
                                                                   for d in drops) + ".")
        else:
            lines.append(f"- Trained `{run}`: skipped ({t['skipped']}).")
    lines += ["", "Tables: `<program>.csv`, `trained_<run>.csv`; figures: `<program>.png`.", ""]
    return "\n".join(lines)
