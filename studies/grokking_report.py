"""The grokking study's figures and README, drawn and written from the numbers `studies.grokking.run` computed."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from studies.grokking_analysis import GROKKED_ACC, REFERENCE  # noqa: E402
from studies.report_text import dirty_warning, fmt, fmt_ci, took  # noqa: E402

if TYPE_CHECKING:
    from studies.grokking import GrokConfig, GrokSetting


def plot_seeds(results: list, st: GrokSetting, cfg: GrokConfig, path: Path, curve: str = "local") -> None:
    """One panel per seed: one LLC curve (filled: trustworthy, hollow: flagged; error bars: std over chains) with
    the train and test losses. `curve="local"` marks the LLC and test-loss turns and the auto_llc checks;
    `"published"` draws the reference's levels (21, 49, 23)."""
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
                     + ("; most common reasons: " + "; ".join(f"{k} ({n})" for k, n in top) if top else "") + ".")
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
