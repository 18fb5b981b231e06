"""Figures of the ablation study: per program, the summary, the trained models, and the per-chain diagnostics."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from studies.report_text import finite
from studies.traces import write_diagnostics

if TYPE_CHECKING:
    from studies.ablation_jobs import AblationConfig


def _limits(values, pad: float = 0.08) -> tuple[float, float]:
    """y-limits that keep the bulk of the values readable: outliers beyond 3 x the interquartile span past the
    quartiles are drawn at the edge with a marker instead of squashing the panel."""
    v = np.asarray([x for x in values if finite(x)], float)
    if not len(v):
        return -1.0, 1.0
    q1, q3 = np.percentile(v, [25, 75])
    span = max(q3 - q1, 1e-9, 0.05 * max(abs(q1), abs(q3)))
    lo, hi = max(v.min(), q1 - 3 * span), min(v.max(), q3 + 3 * span)
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    width = max(hi - lo, 1e-6)
    return lo - pad * width, hi + pad * width


def _clipped(ax, xs, ys, lims, **kw):
    """Scatter with points outside `lims` drawn at the edge as triangles, annotated with their value."""
    lo, hi = lims
    xs, ys = np.asarray(xs, float), np.asarray(ys, float)
    inside = (ys >= lo) & (ys <= hi)
    ax.scatter(xs[inside], ys[inside], **kw)
    for x, y in zip(xs[~inside], ys[~inside]):
        if not math.isfinite(y):
            continue
        edge, marker = (hi, "^") if y > hi else (lo, "v")
        ax.scatter([x], [edge], marker=marker, color=kw.get("color", "k"), s=40, zorder=4)
        ax.annotate(f"{y:.3g}", (x, edge), xytext=(0, -7 if y > hi else 7), textcoords="offset points", fontsize=6,
                    ha="center", va="top" if y > hi else "bottom")  # inside the axes, clear of the tick labels


def program_figure(out: Path, program: str, rows: list, cfg: "AblationConfig") -> None:
    """`<program>.png`: (a) LLC of what is left, accuracy after ablation, and (b), (c), component vs controls."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    intact = rows[0]
    comps = [r for r in rows if r["role"] == "component" and r["mode"] == "zero"]
    ctrl = {c["ablation"]: [r for r in rows if r["role"] == "control" and r["component"] == c["ablation"]]
            for c in comps}
    means = [r for r in rows if r["role"] == "component" and r["mode"] == "mean"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    x = np.arange(len(comps))
    # panel 1: LLC (a)
    ax = axes[0]
    vals = [r.get("llc_a") for r in comps] + [c.get("llc_a") for k in ctrl.values() for c in k] + \
        [intact["llc_intact"]] + [r.get("llc_a") for r in means]
    lims = _limits(vals)
    ax.axhspan(intact["llc_intact"] - intact["llc_intact_std"], intact["llc_intact"] + intact["llc_intact_std"],
               color="0.85", zorder=0)
    ax.axhline(intact["llc_intact"], color="k", ls=":", label="intact model (± chain std)")
    for i, r in enumerate(comps):
        ok = r.get("ok_a")
        ax.errorbar([i - 0.15], [np.clip(r["llc_a"], *lims)], yerr=[r["llc_a_std"]], fmt="o" if ok else "x",
                    color="tab:blue", capsize=3, label="component, zero-ablated" if i == 0 else None)
        cs = ctrl[r["ablation"]]
        _clipped(ax, [i + 0.15 + 0.04 * (k - len(cs) / 2) for k in range(len(cs))], [c.get("llc_a") for c in cs],
                 lims, color="tab:orange", s=14, label="random controls" if i == 0 else None)
    for r in means:
        i = [c["ablation"] for c in comps].index(r["ablation"])
        ax.errorbar([i - 0.3], [np.clip(r["llc_a"], *lims)], yerr=[r["llc_a_std"]], fmt="s", color="tab:green",
                    capsize=3, label="component, mean-ablated" if r is means[0] else None)
    ax.set_ylim(*lims)
    ax.set_xticks(x, [r["ablation"] for r in comps], rotation=45, fontsize=7, ha="right")
    ax.set_ylabel("LLC (a): ablated model, own teacher loss\n(mean ± std over chains; x = flagged)")
    _legend(ax)
    # panel 2: accuracy
    ax = axes[1]
    ax.axhline(intact["acc_ref"], color="k", ls=":", label="intact")
    ax.bar(x - 0.15, [r.get("acc_ref", np.nan) for r in comps], 0.3, color="tab:blue", label="component removed")
    for i, r in enumerate(comps):
        cs = ctrl[r["ablation"]]
        ax.scatter([i + 0.15] * len(cs), [c.get("acc_ref", np.nan) for c in cs], color="tab:orange", s=14,
                   label="random controls" if i == 0 else None)
    if any("acc_ft" in r for r in comps):
        ax.scatter(x - 0.15, [r.get("acc_ft", np.nan) for r in comps], marker="*", color="k", s=50, zorder=4,
                   label="after fine-tune (b)")
    ax.set_ylim(-0.02, 1.05)
    ax.set_xticks(x, [r["ablation"] for r in comps], rotation=45, fontsize=7, ha="right")
    ax.set_ylabel(f"accuracy vs reference ({cfg.n_test} test sequences)")
    _legend(ax)
    # panel 3: (b) and (c)
    ax = axes[2]
    vals = [r.get(k) for r in comps for k in ("llc_b", "llc_c")] + \
        [c.get(k) for cs in ctrl.values() for c in cs for k in ("llc_b", "llc_c")]
    signed = [v for v in vals + [intact["llc_intact"]] if finite(v)]
    size = np.abs(signed)
    wide = len(size) > 0 and size.max() > 1e3 and size.min() < size.max() / 100
    if wide:  # e.g. negative (b) LLCs of -1e5 beside (c) LLCs of 10: a symmetric log axis shows both, clips none
        lims = (min(min(signed), 0.0) * 3, max(max(signed), 0.0) * 3 + 1)
    else:
        lims = _limits(vals + [intact["llc_intact"]])
    for off, key, color, label in ((-0.15, "llc_b", "tab:purple", "(b) after fine-tune, original loss"),
                                   (0.15, "llc_c", "tab:red", "(c) refined: only the component sampled")):
        have = [(i, r) for i, r in enumerate(comps) if finite(r.get(key))]
        for j, (i, r) in enumerate(have):
            ok = r.get("ok_" + key[-1])
            ax.errorbar([i + off], [np.clip(r[key], *lims)], yerr=[r[key + "_std"]], fmt="o" if ok else "x",
                        color=color, capsize=3, label=label if j == 0 else None)
            cs = [c.get(key) for c in ctrl[r["ablation"]] if finite(c.get(key))]
            if cs:
                _clipped(ax, [i + off + 0.07] * len(cs), cs, lims, color=color, s=8, alpha=0.5,
                         label=f"{key[-1]} on controls" if j == 0 else None)
    ax.axhline(intact["llc_intact"], color="k", ls=":", label="intact model")
    if wide:
        ax.set_yscale("symlog", linthresh=10)
    ax.set_ylim(*lims)
    ax.set_xticks(x, [r["ablation"] for r in comps], rotation=45, fontsize=7, ha="right")
    ax.set_ylabel("LLC (mean ± std over chains; x = flagged)" + ("\nsymmetric log axis, linear within ±10" if wide
                                                                else ""))
    _legend(ax)
    st = cfg.estimate
    fig.suptitle(f"{program}: components vs {cfg.controls} random controls (same number of live and dead atoms); "
                 f"auto_llc, n={st.n}, nbeta={st.nbeta:.2g}, gamma={st.localization:.2g}, {st.max_steps} steps x "
                 f"{st.num_chains} chains", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / f"{program}.png", dpi=110)
    plt.close(fig)


def summary_figure(out: Path, metrics: dict, cfg: "AblationConfig") -> None:
    """`summary.png`: component effect vs controls against the accuracy it costs, and the within-program rhos."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tables = metrics["programs"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    ax = axes[0]
    allz = [r.get("z_a") for rows in tables.values() for r in rows if r["role"] == "component"]
    lims = _limits(allz)
    for k, (program, rows) in enumerate(tables.items()):
        comp = [r for r in rows if r["role"] == "component" and r.get("mode") == "zero"]
        _clipped(ax, [r.get("effect_acc_drop", np.nan) for r in comp], [r.get("z_a", np.nan) for r in comp], lims,
                 color=f"C{k}", s=30, label=program)
    ax.axhline(0, color="k", lw=0.5)
    ax.axvline(0, color="k", lw=0.5)
    ax.set_ylim(*lims)
    ax.set_xlabel("accuracy drop of the component minus its controls' mean")
    ax.set_ylabel("LLC (a) of the component minus its controls' mean,\nin controls' standard deviations (z)")
    _legend(ax)
    ax.set_title("each point: one component against its own controls", fontsize=9)
    ax = axes[1]
    per = metrics["statistics"]["per_program"]
    names = list(per)
    for k, name in enumerate(names):
        for j, (key, color) in enumerate((("delta_a_vs_acc_drop", "tab:blue"), ("delta_a_vs_func_change", "tab:red"))):
            s = per[name][key]
            if finite(s["rho"]):
                x, (lo, hi) = k + 0.15 * (2 * j - 1), s["ci95"]
                if finite(lo) and finite(hi):  # a percentile-bootstrap interval need not contain rho
                    ax.vlines([x], [lo], [hi], color=color, lw=1)
                ax.plot([x], [s["rho"]], "o", color=color,
                        label=("rho(LLC change (a), accuracy drop)" if j == 0 else
                               "rho(LLC change (a), function change)") if k == 0 else None)
            else:
                ax.scatter([k + 0.15 * (2 * j - 1)], [0], marker="$?$", color=color)
    pooled = metrics["statistics"]["pooled_stratified"]["delta_a_vs_acc_drop"]
    if finite(pooled["rho"]):
        ax.axhline(pooled["rho"], color="tab:blue", ls="--", lw=1, label="stratified pooled rho (accuracy drop)")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_xticks(range(len(names)), names, rotation=30, fontsize=7, ha="right")
    ax.set_ylim(-1.05, 1.05)
    ax.set_ylabel("Spearman rho within the program (95% bootstrap CI)\nover components and controls; ? = undefined")
    _legend(ax)
    comps = sum(r["role"] == "component" and r.get("mode") == "zero" for rows in tables.values() for r in rows)
    ablated = sum(r["role"] in ("component", "control") for rows in tables.values() for r in rows)
    st = cfg.estimate
    fig.suptitle(f"{len(tables)} compiled programs, {comps} components with {cfg.controls} random controls each "
                 f"({ablated} ablations); auto_llc, n={st.n}, nbeta={st.nbeta:.2g}, gamma={st.localization:.2g}, "
                 f"{st.max_steps} steps x {st.num_chains} chains", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "summary.png", dpi=110)
    plt.close(fig)


def trained_figure(out: Path, trained: dict, cfg: "AblationConfig") -> None:
    """`trained.png`: per trained program, the LLC of the full model and of each ablation, by quantity."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    progs = [p for p, t in trained.items() if t.get("rows")]
    if not progs:
        return
    fig, axes = plt.subplots(1, len(progs), figsize=(5.5 * len(progs), 4.2), squeeze=False)
    for ax, p in zip(axes[0], progs):
        rows = trained[p]["rows"]
        labels = [r["ablation"] + (f" ({r['mode']})" if r["mode"] else "") for r in rows]
        x = np.arange(len(rows))
        vals = [r.get(f"llc_{q}") for r in rows for q in ("train", "a", "b")]
        lims = _limits(vals)
        for j, (q, color, name) in enumerate((("train", "tab:gray", "training loss (ablated rows: naive, at the "
                                                                     "ablated weights)"),
                                              ("a", "tab:blue", "(a) own-output loss"),
                                              ("b", "tab:purple", "(b) training loss after fine-tune"))):
            pts = [(i, r) for i, r in enumerate(rows) if finite(r.get(f"llc_{q}"))]
            for k, (i, r) in enumerate(pts):
                y = r[f"llc_{q}"]
                ok = r.get(f"ok_{q}")
                if lims[0] <= y <= lims[1]:
                    ax.errorbar([i + 0.2 * (j - 1)], [y], yerr=[r[f"llc_{q}_std"]], fmt="o" if ok else "x",
                                color=color, capsize=3, label=name if k == 0 else None)
                else:
                    _clipped(ax, [i + 0.2 * (j - 1)], [y], lims, color=color, label=name if k == 0 else None)
        ax.axhline(0, color="k", lw=0.5)
        ax.set_ylim(*lims)
        ax.set_xticks(x, labels, rotation=40, fontsize=7, ha="right")
        ax.set_ylabel("LLC (mean ± std over chains; x = flagged)")
        ax.set_title(f"trained {p} ({trained[p]['summary']['num_params']} parameters)", fontsize=9)
    handles = {}  # one legend for the figure, above the panels, where it hides no point
    for ax in axes[0]:
        for h, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, h)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="upper center", ncol=len(handles), fontsize=7,
                   bbox_to_anchor=(0.5, 0.94))
    tc = cfg.trained
    te = tc.estimate
    fig.suptitle(f"Trained models ({tc.sizes[0]} training sequences), zero- and mean-ablated; auto_llc, "
                 f"nbeta={te.nbeta:g}, gamma={te.localization:g}, {te.max_steps} steps x {te.num_chains} chains",
                 fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.88))
    fig.savefig(out / "trained.png", dpi=110)
    plt.close(fig)


def figure_diagnostics(traces: list, cfg: "AblationConfig", out: Path) -> None:
    """`diagnostics.png` and `traces.json` (`studies.traces`): per-chain traces of each program's intact estimate and
    of its first component's (a), (b) and (c) estimates."""
    picked = []
    for program in cfg.programs:
        mine = [t for t in traces if t["program"] == program and t["control"] < 0 and t["mode"] == "zero"]
        first = next((t["component"] for t in mine if t["component"]), None)
        picked += [t for t in mine if t["component"] in ("", first)]
    st = cfg.estimate
    write_diagnostics([(f"{t['program']} {t['component'] + ' (' + t['quantity'] + ')' if t['component'] else 'intact'}",
                        t["trace"]) for t in picked], out,
                      f"Ablation study, auto_llc per estimate: n = {st.n} teacher sequences, nbeta = {st.nbeta:.3g}, "
                      f"gamma = {st.localization:g}, {st.num_chains} chains, max {st.max_steps} steps")


def _legend(ax) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=6)
