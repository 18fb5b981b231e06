"""The README of the ablation study (and `write`, which also draws the figures); every number in it comes from
the run's metrics."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from studies.ablation_stats import fmt_rho
from studies.ablations_figures import program_figure, summary_figure, trained_figure
from studies.report_text import dirty_warning, finite, fmt

if TYPE_CHECKING:
    from studies.ablation_jobs import AblationConfig

PRIOR_TRAINED = (("full model", 26.7, None), ("without attention layer 1", 17.8, -0.33),
                 ("without layer 1", 17.0, -0.36), ("without MLP layer 0", 26.2, -0.02))


def _pct(x) -> str:
    return f"{100 * x:+.0f}%" if finite(x) else "n/a"


def _verdict(r: dict, q: str) -> str:
    if f"ok_{q}" not in r:
        return "not measured"
    return "valid" if r[f"ok_{q}"] else "flagged: " + (r.get(f"why_{q}") or "")[:160]


def _llc(r: dict, q: str) -> str:
    if not finite(r.get(f"llc_{q}")):
        return "n/a (not measured)"
    return f"{r[f'llc_{q}']:.1f} ± {r[f'llc_{q}_std']:.1f}{'' if r.get(f'ok_{q}') else ' (flagged)'}"


def _direction(change: float) -> str:
    """"lowers" / "raises" / "leaves unchanged" for a relative change (within 1% counts as unchanged)."""
    return "leaves unchanged" if abs(change) < 0.01 else ("lowers" if change < 0 else "raises")


def _plain(sign: dict, strong: list, rows: list, corr: dict) -> str:
    """The answer in one sentence, read from the sign test, the 2-sd count and the stratified interval."""
    alike = not (sign["p"] < 0.05) and len(strong) <= 0.2 * max(len(rows), 1)
    ci = corr.get("ci95", [math.nan, math.nan])
    if not all(finite(v) for v in ci):
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
    d_comp = [r["delta_a"] / r["llc_intact"] for r in rows if finite(r.get("delta_a")) and r["llc_intact"]]
    d_ctrl = [r["delta_a"] / r["llc_intact"] for r in ctrls if finite(r.get("delta_a")) and r["llc_intact"]]
    strong = [r for r in rows if finite(r.get("z_a")) and abs(r["z_a"]) >= 2]
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
        neg = [r for r in t["rows"] if finite(r.get("llc_train")) and r["llc_train"] < 0]
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
