"""Tables, correlations, figures and the README of the complexity study."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

DESCRIPTORS = ("primitives", "layers", "heads", "mlp_width", "residual_width", "num_params", "num_nonzero")
COLUMNS = ("program", "llc_mean", "llc_std", "llc_std_seeds", "llc_std_chains", "step_size", "localization", "nbeta",
           "num_params", "half_params", "num_nonzero", "layers", "heads", "mlp_width", "residual_width", "primitives",
           "acceptance", "frac_below_init", "num_diverged", "llc_no_embed", "llc_no_embed_std", "params_no_embed",
           "llc_common", "llc_common_std", "common_step_size", "calibration_flat", "largest_stable_step")


def _pooled(block) -> tuple:
    """Mean and std over every chain of every seed."""
    if not block:
        return math.nan, math.nan
    vals = [v for r in block["runs"] if not r["diverged"] for v in r["llc_per_chain"]]
    return (float(np.mean(vals)), float(np.std(vals, ddof=1))) if len(vals) > 1 else (math.nan, math.nan)


def rows(programs: list, commons: list, common_step: float, localization: float) -> list[dict]:
    by_common = {c["program"]: c for c in commons}
    out = []
    for p in programs:
        d, a, ne = p["descriptors"], p.get("all"), p.get("no_embed")
        mean, std = _pooled(a)
        ne_mean, ne_std = _pooled(ne)
        c = by_common.get(p["program"])
        c_mean, c_std = _pooled(c)
        ok = [r for r in (a or {}).get("runs", []) if not r["diverged"]]
        ne_ok = [r for r in (ne or {}).get("runs", []) if not r["diverged"]]
        out.append({
            "program": p["program"], "llc_mean": mean, "llc_std": std,
            "llc_std_seeds": (a or {}).get("llc_std_seeds", math.nan),
            "llc_std_chains": (a or {}).get("llc_std_chains", math.nan), "step_size": p["step_size"],
            "localization": localization, "nbeta": ok[0]["nbeta"] if ok else math.nan,
            **{k: d[k] for k in ("num_params", "half_params", "num_nonzero", "layers", "heads", "mlp_width",
                                 "residual_width", "primitives")},
            "acceptance": (a or {}).get("acceptance", math.nan),
            "frac_below_init": (a or {}).get("frac_below_init", math.nan),
            "num_diverged": (a or {}).get("num_diverged", 0), "llc_no_embed": ne_mean, "llc_no_embed_std": ne_std,
            "params_no_embed": ne_ok[0]["num_sampled_params"] if ne_ok else math.nan,
            "llc_common": c_mean, "llc_common_std": c_std, "common_step_size": common_step,
            "calibration_flat": bool(p.get("calibration_flat")), "largest_stable_step": p.get("largest_stable_step"),
        })
    return out


def spearman_table(table: list[dict], key: str = "llc_mean", reps: int = 2000, seed: int = 0) -> dict:
    """Spearman rho of `key` with each descriptor, with a bootstrap 95% interval over programs."""
    rng = np.random.default_rng(seed)
    good = [r for r in table if math.isfinite(r[key])]
    y = np.array([r[key] for r in good])
    out = {}
    for desc in DESCRIPTORS:
        x = np.array([r[desc] for r in good], dtype=float)
        if len(good) < 4:
            out[desc] = {"rho": math.nan, "ci95": [math.nan, math.nan], "p": math.nan, "n": len(good)}
            continue
        rho, p = stats.spearmanr(x, y)
        boots = []
        for _ in range(reps):
            i = rng.integers(0, len(good), len(good))
            if len(set(x[i])) > 1 and len(set(y[i])) > 1:
                boots.append(stats.spearmanr(x[i], y[i])[0])
        lo, hi = np.nanpercentile(boots, [2.5, 97.5]) if boots else (math.nan, math.nan)
        out[desc] = {"rho": float(rho), "ci95": [float(lo), float(hi)], "p": float(p), "n": len(good)}
    return out


def _fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if not math.isfinite(v) else (f"{v:.3g}" if abs(v) < 1e4 else f"{v:.0f}")
    return str(v)


def write_tables(out_dir: Path, table: list[dict]) -> None:
    with open(out_dir / "llc_table.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(table)
    cols = ("program", "llc_mean", "llc_std", "step_size", "nbeta", "num_params", "num_nonzero", "layers", "heads",
            "acceptance", "llc_no_embed", "llc_common")
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r[c]) for c in cols) + " |" for r in table]
    (out_dir / "llc_table.md").write_text("\n".join(lines) + "\n")


def _errorbar_grid(table, path, title):
    fig, axes = plt.subplots(2, 4, figsize=(14, 6.5))
    for ax, desc in zip(axes.flat, DESCRIPTORS):
        for r in table:
            if math.isfinite(r["llc_mean"]):
                ax.errorbar(r[desc], r["llc_mean"], yerr=r["llc_std"], fmt="o", ms=4, capsize=2)
                ax.annotate(r["program"], (r[desc], r["llc_mean"]), fontsize=5, xytext=(2, 2),
                            textcoords="offset points")
        ax.set_xlabel(desc.replace("_", " ") + " (count)")
        ax.set_ylabel("LLC (mean ± std, chains × seeds)")
        if desc in ("num_params", "num_nonzero", "mlp_width"):
            ax.set_xscale("log")
    axes.flat[-1].axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _sweep_figure(sweeps, path, title):
    fams = sorted({s["family"] for s in sweeps})
    fig, axes = plt.subplots(1, len(fams), figsize=(4.5 * len(fams), 3.6), squeeze=False)
    for ax, fam in zip(axes[0], fams):
        pts = [(s["descriptors"]["num_params"], *_pooled(s.get("all")), s["program"], s["step_size"])
               for s in sweeps if s["family"] == fam]
        for x, m, sd, name, eps in pts:
            ax.errorbar(x, m, yerr=sd, fmt="o", capsize=3)
            ax.annotate(f"{name}\neps={eps:g}", (x, m), fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel("parameters of the compiled model (count)")
        ax.set_ylabel("LLC (mean ± std)")
        ax.set_title(fam, fontsize=9)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _small_multiples(items, path, title, draw):
    k = len(items)
    cols = min(6, k)
    rows_ = -(-k // cols)
    fig, axes = plt.subplots(rows_, cols, figsize=(2.8 * cols, 2.4 * rows_), squeeze=False)
    for ax, item in zip(axes.flat, items):
        draw(ax, item)
    for ax in list(axes.flat)[k:]:
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _draw_trace(ax, p):
    tr = np.array((p.get("all") or {}).get("trace") or [[np.nan]])
    ax.plot(tr.T, lw=0.6)
    ax.set_title(f"{p['program']} eps={p['step_size']:g}", fontsize=7)
    ax.set_xlabel("step", fontsize=6)
    ax.tick_params(labelsize=5)


def _draw_calibration(ax, p):
    ok = [r for r in p["calibration"] if not r["diverged"]]
    ax.errorbar([r["step_size"] for r in ok], [r["llc_mean"] for r in ok], yerr=[r["llc_std"] for r in ok],
                marker="o", ms=3, capsize=2)
    bad = [r["step_size"] for r in p["calibration"] if r["diverged"]]
    if bad:
        ax.scatter(bad, [0] * len(bad), marker="x", color="red")
    if math.isfinite(p["step_size"]):
        ax.axvline(p["step_size"], color="k", ls=":", lw=0.8)
    ax.set_xscale("log")
    ax.set_title(p["program"], fontsize=7)
    ax.set_xlabel("step size", fontsize=6)
    ax.tick_params(labelsize=5)


def write_all(out_dir: Path, programs, commons, sweeps, checks, common_step, cfg) -> dict:
    st = cfg.settings
    table = rows(programs, commons, common_step, st.base.localization)
    write_tables(out_dir, table)
    corr = spearman_table(table)
    corr_common = spearman_table(table, key="llc_common")
    hp = (f"teacher loss, gamma={st.base.localization}, nbeta=n/log n, n={st.num_sequences}, batch {st.base.batch_size}, "
          f"{st.base.num_chains} chains x {st.base.num_draws} draws (burn-in {st.base.num_burnin}), seeds {st.seeds}")
    _errorbar_grid(table, out_dir / "llc_vs_descriptors.png", f"LLC vs descriptors, per-program calibrated eps; {hp}")
    if sweeps:
        _sweep_figure(sweeps, out_dir / "size_sweeps.png", f"same algorithm, bigger model; {hp}")
    _small_multiples(programs, out_dir / "loss_traces.png", f"loss traces (seed 0, all chains); {hp}", _draw_trace)
    _small_multiples(programs, out_dir / "calibration.png",
                     "calibration: LLC vs step size (x: diverged; dotted: chosen)", _draw_calibration)
    metrics = {
        "programs": {r["program"]: {"llc/mean": r["llc_mean"], "llc/std": r["llc_std"], **r} for r in table},
        "spearman_calibrated": corr, "spearman_common": corr_common, "common_step_size": common_step,
        "checks": checks,
        "sweeps": [{"program": s["program"], "family": s["family"], "size": s["size"], "step_size": s["step_size"],
                    "num_params": s["descriptors"]["num_params"],
                    **dict(zip(("llc/mean", "llc/std"), _pooled(s.get("all"))))} for s in sweeps],
        "calibration": {p["program"]: p["calibration"] for p in programs},
        "step_reductions": {p["program"]: p.get("step_reductions", []) for p in programs},
    }
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
    (out_dir / "README.md").write_text(readme(table, corr, corr_common, {**metrics, "_programs": programs}, hp))
    return metrics


def readme(table, corr, corr_common, metrics, hp) -> str:
    """Plain-words summary; every number is computed from this run."""
    ok = [r for r in table if math.isfinite(r["llc_mean"])]
    lines = ["# Research question 1: does the LLC track the complexity of the compiled algorithm?", "",
             f"Settings: {hp}. Step size calibrated per program on a log grid (rule in `metrics.json`); "
             f"common step size {metrics['common_step_size']:g}. Generated by `studies/complexity.py`.",
             "", "## Table", "", Path("llc_table.md").name + " (same numbers as `llc_table.csv`):", ""]
    cols = ("program", "llc_mean", "llc_std", "step_size", "calibration_flat", "num_params", "num_nonzero",
            "acceptance", "llc_no_embed", "llc_common")
    lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r[c]) for c in cols) + " |" for r in table]
    lines += ["", "## Spearman rank correlation of the LLC with each descriptor", "",
              "| descriptor | rho (calibrated eps) | 95% bootstrap CI | rho (common eps) | 95% CI |", "|---|---|---|---|---|"]
    for d in DESCRIPTORS:
        a, b = corr[d], corr_common[d]
        lines.append(f"| {d} | {_fmt(a['rho'])} | [{_fmt(a['ci95'][0])}, {_fmt(a['ci95'][1])}] | {_fmt(b['rho'])} | "
                     f"[{_fmt(b['ci95'][0])}, {_fmt(b['ci95'][1])}] |")
    best = max(DESCRIPTORS, key=lambda d: abs(corr[d]["rho"]) if math.isfinite(corr[d]["rho"]) else -1)
    failed = [r["program"] for r in table if not math.isfinite(r["llc_mean"])]
    ratio = [r["llc_mean"] / r["half_params"] for r in ok]
    not_flat = [r["program"] for r in table if not r["calibration_flat"]]
    lines += ["", "## What was found", "",
              f"- Calibration found a flat region (LLC stable across neighbouring step sizes) for "
              f"{len(table) - len(not_flat)} of {len(table)} programs"
              + (f"; not for {', '.join(not_flat)}: their estimates depend on the step size and are lower "
                 "bounds at best (chains not equilibrated) or biased upward (acceptance below 0.9)." if not_flat
                 else "."),
              "- Localization gamma = 1000 (see `complexity.py`): with gamma = 1 the degenerate directions of "
              "compiled weights never equilibrate within an affordable chain and the estimate grows with the chain "
              "length. All numbers here are at gamma = 1000 and are comparable only at that localization.",
              f"- {len(ok)} of {len(table)} programs gave an estimate at their calibrated step size"
              + (f"; no stable step size was found for {', '.join(failed)}." if failed else "."),
              f"- The descriptor with the strongest rank correlation is `{best}` (rho = {_fmt(corr[best]['rho'])}, "
              f"95% CI [{_fmt(corr[best]['ci95'][0])}, {_fmt(corr[best]['ci95'][1])}]). With about "
              f"{len(ok)} programs the intervals are wide: read them before the point estimates.",
              f"- Every estimate is far below d/2 of the sampled parameters: LLC / (d/2) ranges from "
              f"{_fmt(min(ratio) if ratio else math.nan)} to {_fmt(max(ratio) if ratio else math.nan)}, as expected "
              "for compiled weights, which are highly degenerate (most parameters are exactly zero and unused).",
              "- Calibrated step sizes differ by orders of magnitude between programs (see `calibration.png`): "
              "programs whose discretising MLPs follow a SelectorWidth or numerical mean are far stiffer. Numbers at "
              "different step sizes are not directly comparable; the common-step column compares all programs at "
              "the one step size stable for all, at the price of under-equilibrated chains for the easy programs.",
              ]
    chk = metrics["checks"]
    for name, r in chk.get("rescaling", {}).items():
        if "diverged" in r:
            lines.append(f"- Loss-rescaling check on {name}: diverged ({r['diverged']})")
            continue
        lines.append(f"- Loss-rescaling check on {name}: LLC {_fmt(r['loss_x1'])} with the loss, "
                     f"{_fmt(r['loss_x10_nbeta_div10'])} with 10x the loss and nbeta/10 (relative difference "
                     f"{_fmt(r['rel_diff'])}).")
    if chk.get("dtype") and all("llc_mean" in v for v in chk["dtype"].values()):
        d = chk["dtype"]
        lines.append(f"- float32 vs float64 on fractok: {_fmt(d['float32']['llc_mean'])} ± "
                     f"{_fmt(d['float32']['llc_std'])} vs {_fmt(d['float64']['llc_mean'])} ± "
                     f"{_fmt(d['float64']['llc_std'])}.")
    reduced = {p["program"]: len(p.get("step_reductions", [])) for p in metrics.get("_programs", [])}
    reduced = {k: v for k, v in reduced.items() if v}
    if reduced:
        lines.append("- Step size reduced after a full run diverged or had an exploding chain: "
                     + ", ".join(f"{k} ({v}x)" for k, v in reduced.items()) + ".")
    below = [r["program"] for r in ok if r["frac_below_init"] > 0.05]
    lines.append("- Draws below the initial loss: " + (f"more than 5% for {', '.join(below)} (w* may not be a "
                 "strict local minimum there, or the chain is too hot)." if below else
                 "under 5% for every program (the teacher loss is 0 at w*, so no draw can be below it)."))
    lines += ["", "## Figures", "", "- `llc_vs_descriptors.png`, `size_sweeps.png`, `loss_traces.png`, "
              "`calibration.png`.", ""]
    return "\n".join(lines)
