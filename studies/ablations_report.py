"""Figures and the README of the ablation study; every number in them comes from the run's metrics."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from studies.ablation_stats import fmt_rho
from studies.report_text import dirty_warning, fmt
from studies.traces import write_diagnostics

if TYPE_CHECKING:
    from studies.ablations import AblationConfig

PRIOR_TRAINED = (("full model", 26.7, None), ("without attention layer 1", 17.8, -0.33),
                 ("without layer 1", 17.0, -0.36), ("without MLP layer 0", 26.2, -0.02))


def _finite(v) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(v)


def _limits(values, pad: float = 0.08) -> tuple[float, float]:
    """y-limits that keep the bulk of the values readable: outliers beyond 3 x the interquartile span past the
    quartiles are drawn at the edge with a marker instead of squashing the panel."""
    v = np.asarray([x for x in values if _finite(x)], float)
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
    signed = [v for v in vals + [intact["llc_intact"]] if _finite(v)]
    size = np.abs(signed)
    wide = len(size) > 0 and size.max() > 1e3 and size.min() < size.max() / 100
    if wide:  # e.g. negative (b) LLCs of -1e5 beside (c) LLCs of 10: a symmetric log axis shows both, clips none
        lims = (min(min(signed), 0.0) * 3, max(max(signed), 0.0) * 3 + 1)
    else:
        lims = _limits(vals + [intact["llc_intact"]])
    for off, key, color, label in ((-0.15, "llc_b", "tab:purple", "(b) after fine-tune, original loss"),
                                   (0.15, "llc_c", "tab:red", "(c) refined: only the component sampled")):
        have = [(i, r) for i, r in enumerate(comps) if _finite(r.get(key))]
        for j, (i, r) in enumerate(have):
            ok = r.get("ok_" + key[-1])
            ax.errorbar([i + off], [np.clip(r[key], *lims)], yerr=[r[key + "_std"]], fmt="o" if ok else "x",
                        color=color, capsize=3, label=label if j == 0 else None)
            cs = [c.get(key) for c in ctrl[r["ablation"]] if _finite(c.get(key))]
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
            if _finite(s["rho"]):
                x, (lo, hi) = k + 0.15 * (2 * j - 1), s["ci95"]
                if _finite(lo) and _finite(hi):  # a percentile-bootstrap interval need not contain rho
                    ax.vlines([x], [lo], [hi], color=color, lw=1)
                ax.plot([x], [s["rho"]], "o", color=color,
                        label=("rho(LLC change (a), accuracy drop)" if j == 0 else
                               "rho(LLC change (a), function change)") if k == 0 else None)
            else:
                ax.scatter([k + 0.15 * (2 * j - 1)], [0], marker="$?$", color=color)
    pooled = metrics["statistics"]["pooled_stratified"]["delta_a_vs_acc_drop"]
    if _finite(pooled["rho"]):
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
            pts = [(i, r) for i, r in enumerate(rows) if _finite(r.get(f"llc_{q}"))]
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


def _pct(x) -> str:
    return f"{100 * x:+.0f}%" if _finite(x) else "n/a"


def _verdict(r: dict, q: str) -> str:
    if f"ok_{q}" not in r:
        return "not measured"
    return "valid" if r[f"ok_{q}"] else "flagged: " + (r.get(f"why_{q}") or "")[:160]


def _llc(r: dict, q: str) -> str:
    if not _finite(r.get(f"llc_{q}")):
        return "n/a (not measured)"
    return f"{r[f'llc_{q}']:.1f} ± {r[f'llc_{q}_std']:.1f}{'' if r.get(f'ok_{q}') else ' (flagged)'}"


def _direction(change: float) -> str:
    """"lowers" / "raises" / "leaves unchanged" for a relative change (within 1% counts as unchanged)."""
    return "leaves unchanged" if abs(change) < 0.01 else ("lowers" if change < 0 else "raises")


def _plain(sign: dict, strong: list, rows: list, corr: dict) -> str:
    """The answer in one sentence, read from the sign test, the 2-sd count and the stratified interval."""
    alike = not (sign["p"] < 0.05) and len(strong) <= 0.2 * max(len(rows), 1)
    ci = corr.get("ci95", [math.nan, math.nan])
    if not all(_finite(v) for v in ci):
        tracks = "cannot be said (no interval)"
    elif ci[0] <= 0 <= ci[1]:
        tracks = "does not track the accuracy lost (the interval contains 0)"
    else:
        tracks = f"tracks the accuracy lost (rho {corr['rho']:.2f}, the interval excludes 0)"
    first = ("changes the LLC of what is left no more than removing as many atoms at random" if alike else
             "changes the LLC of what is left differently from removing as many atoms at random")
    return (f"- **In one line: removing a known component {first}, and within a program the LLC change {tracks}.** "
            "Details and how sure below.")


def answer(metrics: dict) -> list[str]:
    """The plain answer to Q3, from the pooled (stratified) statistics, and how sure it is."""
    s = metrics["statistics"]
    pooled = s["pooled_stratified"]
    sign = pooled["components_below_controls_a"]
    rows = [r for rows in metrics["programs"].values() for r in rows if r["role"] == "component"
            and r.get("mode") == "zero"]
    ctrls = [r for rows in metrics["programs"].values() for r in rows if r["role"] == "control"]
    d_comp = [r["delta_a"] / r["llc_intact"] for r in rows if _finite(r.get("delta_a")) and r["llc_intact"]]
    d_ctrl = [r["delta_a"] / r["llc_intact"] for r in ctrls if _finite(r.get("delta_a")) and r["llc_intact"]]
    strong = [r for r in rows if _finite(r.get("z_a")) and abs(r["z_a"]) >= 2]
    val = s["validity"]
    ok_a = val.get("a/component", {"ok": 0, "total": 0})
    ok_ac = val.get("a/control", {"ok": 0, "total": 0})
    corr = pooled["delta_a_vs_acc_drop"]
    eff = pooled["effect_a_vs_acc_drop"]
    lines = [_plain(sign, strong, rows, corr)]
    if d_comp and d_ctrl:
        mc, mr = float(np.median(d_comp)), float(np.median(d_ctrl))
        lines.append(f"- **Removing a component {_direction(mc)} the LLC of what is left (median), and removing as many "
                     f"weights at random {_direction(mr)} it.** Median change of the LLC (a) relative to the intact "
                     f"model: {mc:+.0%} for components, {mr:+.0%} for their random controls.")
    lines.append(f"- **Against its own controls**, a component's LLC (a) was below the controls' mean in "
                 f"{sign['negative']} and above it in {sign['positive']} of {sign['negative'] + sign['positive']} "
                 f"components (two-sided sign test p = {fmt(sign['p'], '.2g')}); {len(strong)} of {len(rows)} "
                 "components differ from their controls by 2 or more control standard deviations.")
    lines.append(f"- **Does the LLC change track the accuracy lost, within a program?** Over components and controls, "
                 f"Spearman rho of the LLC change (a) with the accuracy drop, within programs, pooled by stratification: "
                 f"{fmt_rho(corr)}. Component effects relative to controls vs the accuracy drop: {fmt_rho(eff)}.")
    lines.append(f"- **How sure:** {ok_a['ok']} of {ok_a['total']} component estimates (a) and {ok_ac['ok']} of "
                 f"{ok_ac['total']} control estimates (a) passed every check; the rest are reported and flagged "
                 "(reasons in the tables). The within-program statistics rest on "
                 f"{corr['n']} ablations in {corr['groups']} programs; with 5 controls per component, a single "
                 "component can at best reach a rank p-value of 1/6.")
    return lines


def readme(metrics: dict, cfg: "AblationConfig", config: dict) -> str:
    """Plain-words summary of the study; every number comes from the run."""
    st = cfg.estimate
    env = config.get("environment", {})
    lines = ["# Research question 3: how do ablations change the LLC?", ""]
    if env.get("dirty"):
        lines += [dirty_warning(), ""]
    secs = metrics["seconds"]
    lines += [f"Scale `{config.get('scale')}`; the study took {secs / 60:.1f} minutes "
              f"({metrics['seconds_compiled'] / 60:.1f} compiled programs, {metrics['seconds_trained'] / 60:.1f} "
              f"trained models), commit `{env.get('git_commit', 'unknown')[:10]}`.", "",
              "## The answer", ""] + answer(metrics) + ["", "## What was measured", "",
              f"Programs: {', '.join(cfg.programs)}, compiled with ReLU margin {st.sharpness.relu_margin} (every ReLU "
              "off its kink; same function). Components: " + ", ".join(cfg.kinds) + f"; {cfg.controls} random "
              "controls each. Every LLC is `auto_llc` (Metropolis-adjusted HMC in Hessian-whitened coordinates) at one "
              f"setting for the whole study: n = {st.n} teacher sequences, nbeta = n x {st.beta:g} = {st.nbeta:.3g}, "
              f"gamma = {st.localization:g}, {st.max_steps} gradient evaluations x {st.num_chains} chains, seed "
              f"{st.seed}; the validity study's settings with only n and the budget reduced at this scale.", "",
              "- **(a) what is left**: the zero-ablated model (weights edited; removed hidden units switched off by the "
              "margin, b_in = -margin) under its *own* teacher loss, where its weights are an exact minimum, sampling "
              "only the entries the ablation kept; compared with the intact model's LLC (all entries sampled).",
              f"- **(b) what recovery costs**: the kept entries fine-tuned on the original teacher loss "
              f"({cfg.finetune_steps} Adam steps, then up to {cfg.polish_iter} L-BFGS iterations), the accuracy "
              "recovered, the gradient norm reached, and the LLC there; flagged when nbeta^2 |g|^2 / (2 gamma) > 1 "
              "(the gradient can then move the estimate by more than one unit).",
              "- **(c) refined LLC**: only the component's entries sampled in the intact model.",
              "- **Controls**: as many live and as many dead *atoms* (hidden units; query-key and value-output "
              "dimensions of heads) as the component, drawn uniformly from all atoms of the model (the component's "
              "included); entry counts match to within one per atom. Single weights cannot be used: removing single "
              "weights of a compiled MLP leaves units exactly at their ReLU kink, where the loss is one-sided "
              "(measured: no kink-free draw in 50 for most MLP layers). Controls are redrawn until every unit that "
              f"still matters keeps {cfg.kink_tol} from its kink. Output-direction ablations are not used: removing "
              "every writer of the output space makes the readout constant, so its LLC is 0 by construction.",
              "- **Verdicts**: the estimator's (acceptance, R-hat, trend, draws below L(w*), 0.85 x effective "
              "half-rank <= LLC <= d/2, draws' decoded accuracy >= 0.99 of their own start), the basin check (mean "
              "draw loss <= 0.05), a ReLU within the kink tolerance, a start that is not a minimum. A flagged number "
              "is kept and marked.", ""]
    lines += ["## Components against their controls (zero-ablation)", "",
              "| program | component | live/all atoms | accuracy drop: component / controls | LLC (a): component | "
              "controls mean ± sd | z | (a) verdict | (b) acc after fine-tune | LLC (b) | LLC (c) refined |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for program, rows in metrics["programs"].items():
        intact = rows[0]
        lines.append(f"| {program} | (intact) | | accuracy {fmt(intact.get('acc_ref'), '.2f')} | "
                     f"{_llc(intact, 'intact')} | | | {_verdict(intact, 'intact')} | | | |")
        for r in rows:
            if r["role"] != "component" or r.get("mode") != "zero":
                continue
            lines.append(
                f"| {program} | {r['ablation']} | {r.get('component_live_atoms')}/{r.get('component_atoms')} | "
                f"{fmt(r.get('acc_drop'), '.2f')} / {fmt(r.get('controls_mean_acc_drop'), '.2f')} | {_llc(r, 'a')} | "
                f"{fmt(r.get('controls_mean_a'), '.1f')} ± {fmt(r.get('controls_sd_a'), '.1f')} | "
                f"{fmt(r.get('z_a'), '.1f')} | {_verdict(r, 'a')} | {fmt(r.get('acc_ft'), '.2f')} | {_llc(r, 'b')} | "
                f"{_llc(r, 'c')} |")
    means = [(p, r) for p, rows in metrics["programs"].items() for r in rows if r.get("mode") == "mean"
             and r["role"] == "component"]
    if means:
        lines += ["", "Mean-ablations (no controls: a mean output is defined for a component, not for random weights):",
                  "", "| program | component | accuracy drop | LLC (a) | LLC (b) |", "|---|---|---|---|---|"]
        lines += [f"| {p} | {r['ablation']} | {fmt(r.get('acc_drop'), '.2f')} | {_llc(r, 'a')} | {_llc(r, 'b')} |"
                  for p, r in means]
    per = metrics["statistics"]["per_program"]
    lines += ["", "## Statistics within programs", "",
              "Spearman rho with a 95% bootstrap interval (rows resampled within the program).", "",
              "| program | components / controls | LLC change (a) vs accuracy drop (all ablations) | LLC change (a) vs "
              "function change | component effect vs controls, vs accuracy drop | refined LLC (c) vs accuracy drop |",
              "|---|---|---|---|---|---|"]
    for p, s in per.items():
        lines.append(f"| {p} | {s['components']} / {s['controls']} | {fmt_rho(s['delta_a_vs_acc_drop'])} | "
                     f"{fmt_rho(s['delta_a_vs_func_change'])} | {fmt_rho(s['effect_a_vs_acc_drop'])} | "
                     f"{fmt_rho(s['refined_vs_acc_drop'])} |")
    pooled = metrics["statistics"]["pooled_stratified"]
    lines += ["", "Pooled only by stratification (within-program rhos averaged with weights n - 1; stratified "
              "bootstrap interval; permutation within programs):", ""]
    for key, words in (("delta_a_vs_acc_drop", "LLC change (a) vs accuracy drop"),
                       ("delta_a_vs_acc_drop_valid_only", "the same, valid estimates only"),
                       ("delta_a_vs_func_change", "LLC change (a) vs function change (teacher loss of the ablated "
                                                  "model)"),
                       ("effect_a_vs_acc_drop", "component effect vs its controls, vs accuracy drop"),
                       ("refined_vs_acc_drop", "refined LLC (c) vs accuracy drop")):
        s = pooled[key]
        left = (f"; left out: {', '.join(f'{k} ({v})' for k, v in s['left_out'].items())}"
                if s.get("left_out") else "")
        lines.append(f"- {words}: {fmt_rho(s)}{left}")
    val = metrics["statistics"]["validity"]
    lines += ["", "## Validity of the estimates", "", "| quantity / role | valid | of |", "|---|---|---|"]
    lines += [f"| {k} | {v['ok']} | {v['total']} |" for k, v in val.items()]
    reasons: dict = {}
    for rows in metrics["programs"].values():
        for r in rows:
            for q in ("intact", "a", "b", "c"):
                for why in (r.get(f"why_{q}") or "").split("; "):
                    if why:
                        key = why.split(":")[0].split("(")[0].strip()[:70]
                        reasons[key] = reasons.get(key, 0) + 1
    if reasons:
        lines += ["", "Most frequent reasons for a flag: " + "; ".join(
            f"{k} ({v})" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1])[:6]) + "."]
    lines += trained_section(metrics.get("trained", {}), cfg)
    lines += ["", "## Files", "", "`<program>.csv`: one row per ablation (`role` intact / component / control), "
              "every quantity with its verdict (`ok_*`, `why_*`), the removed entries and atoms, the kink margin. "
              "`trained_<program>.csv`: the trained-model rows. Figures: `<program>.png`, `summary.png`, "
              "`trained.png`; `diagnostics.png` (per-chain loss with the burn-in shaded and running acceptance of each "
              "program's intact estimate and its first component's; data in `traces.json`). `metrics.json`, `config.json` (settings, commit, dirty flag).", ""]
    return "\n".join(lines)


def trained_section(trained: dict, cfg: "AblationConfig") -> list[str]:
    if not trained:
        return []
    tc = cfg.trained
    te = tc.estimate
    lines = ["", "## Trained models, beside the prior attempt's table", "",
             f"Two-layer transformers of the same body (widths {dict(tc.arch)}), trained in float64 with Adam and L2 "
             f"weight decay {tc.train.weight_decay:g} ({tc.train.steps} steps, {tc.sizes[0]} training sequences), then "
             f"L-BFGS to a minimum of the regularised training loss. Every LLC: auto_llc, nbeta = {te.nbeta:g}, gamma "
             f"= {te.localization:g}, {te.max_steps} steps x {te.num_chains} chains. Change = relative to the full model "
             "under the same loss. The training-loss column of an ablated row is what the prior attempt measured (the "
             "ablated weights under the training loss): not a minimum, so it is flagged with its gradient norm and is "
             "where negative LLCs come from.", "",
             "Prior attempt (invalid: ablated weights not at a minimum, dead parameters sampled): full model 26.7; "
             "without attention layer 1 17.8 (-33%); without layer 1 17.0 (-36%); without MLP layer 0 26.2 (-2%).", ""]
    for p, t in trained.items():
        s = t["summary"]
        learned = "learned" if s["learned"] else "DID NOT LEARN: its numbers are not interpretable"
        lines += [f"**{p}** ({s['num_params']} parameters): test accuracy {fmt(s['test_acc'], '.3f')} vs majority "
                  f"baseline {fmt(s['majority_baseline'], '.3f')} ({learned}); "
                  f"gradient norm after L-BFGS {fmt(s['polish']['grad_norm_after'], '.2g')}.", "",
                  "| model | mode | test acc | LLC, training loss | change | LLC (a), own-output loss | change | "
                  "LLC (b), training loss after fine-tune | change | acc after fine-tune |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for r in t["rows"]:
            lines.append(f"| {r['ablation']} | {r['mode'] or '-'} | {fmt(r.get('test_acc'), '.2f')} | "
                         f"{_llc(r, 'train')} | {_pct(r.get('change_naive'))} | {_llc(r, 'a')} | "
                         f"{_pct(r.get('change_a'))} | {_llc(r, 'b')} | {_pct(r.get('change_b'))} | "
                         f"{fmt(r.get('test_acc_finetuned'), '.2f')} |")
        neg = [r for r in t["rows"] if _finite(r.get("llc_train")) and r["llc_train"] < 0]
        if neg:
            lines.append("")
            lines.append(f"Negative training-loss LLCs ({len(neg)}): " + "; ".join(
                f"{r['ablation']} ({r['mode']}): {r['llc_train']:.1f}, gradient norm "
                f"{fmt(r.get('grad_norm_train'), '.2g')}, bound on the shift {fmt(r.get('grad_bias_train'), '.2g')}"
                for r in neg) + ". The ablated weights are not a minimum of the training loss: the posterior slides "
                "downhill, below L(w*), and nbeta x (E[L] - L(w*)) turns negative.")
        lines.append("")
    return lines


def write(out: Path, metrics: dict, cfg: "AblationConfig", config: dict) -> None:
    """Figures and README.md."""
    for program, rows in metrics["programs"].items():
        program_figure(out, program, rows, cfg)
    summary_figure(out, metrics, cfg)
    trained_figure(out, metrics.get("trained", {}), cfg)
    (out / "README.md").write_text(readme(metrics, cfg, config))
