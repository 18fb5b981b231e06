"""Question 1 over every valid estimate: does the LLC of a compiled program say anything its Hessian rank does not?

`python -m studies.q1_answer [--source DIR]` reads the committed Q1 folders under `--source` (default the
repository's `results/`) and writes `results_root()/q1_answer/`. It samples nothing: it joins
  * `complexity` (the validity table, one row per registered program, with the program's descriptors),
  * `complexity_escalation` and its sub-folders (the same protocol rerun at a larger budget, one `escalate` per
    folder; for each program the row of the largest `escalate` that holds an estimate replaces the table's,
    whatever its verdict),
  * for programs still without an estimate, the evidence there is: `sharpness_ladder`'s single estimate at the
    table's sharpness, and the projected cost of the five checks from `estimate_cost`; for every program, the
    leapfrog steps one crossing of the whitened range costs, from `landscape_probe` (`studies.q1_evidence`),
and answers with the programs whose estimate passed all five checks of `studies.validity` (tier A). Estimates that
passed only the checks an estimate can make alone (the complexity ladders' trustworthy seeds, the valid rungs of
`sharpness_ladder`) are shown beside them as tier B and never enter tier A's statistics.

Q1 in its sharp form: the Hessian at w* gives rank/2, a lower bound on the LLC that costs one Hessian. The
statistics are the ratio LLC / (rank/2) with its spread, the rank correlation of LLC with rank/2, and whether the
excess over rank/2 differs between programs with and without a SelectorWidth (the primitive behind the earlier,
withdrawn "10x" claim), by an exact Mann-Whitney test.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from studies.common import REPO_ROOT, environment, json_default, results_root  # noqa: E402
from studies.complexity_report import write_csv  # noqa: E402
from studies.q1_evidence import add_evidence, crossing_line  # noqa: E402
from studies.report_text import finite, readable  # noqa: E402
from studies.validity import CHECKS  # noqa: E402

DESCRIPTORS = ("layers", "heads", "mlp_width", "residual_width", "primitives", "selector_width")
COLUMNS = ("program", "source", "num_params", "valid", "llc_mean", "llc_std", "half_rank", "effective_half_rank",
           "half_dim", "ratio", *DESCRIPTORS, "probe_step", "crossing_steps", "seconds_per_eval", "reason")


def escalation_folders(source: Path) -> list:
    """The escalation runs under `source`: `complexity_escalation` itself, then its sub-folders in name order
    (runs whose `escalate` differs from the folder's cannot be merged into it)."""
    base = source / "complexity_escalation"
    return [d for d in (base, *sorted(p.parent for p in base.glob("*/metrics.json"))) if (d / "metrics.json").exists()]


def escalated_rows(source: Path) -> dict:
    """program -> (row, folder name relative to `source`) of the largest-budget escalation run holding an estimate
    (the first folder among equal `escalate`)."""
    best = {}
    for d in escalation_folders(source):
        esc = json.loads((d / "config.json").read_text())["settings"]["escalate"]
        for prog, row in json.loads((d / "metrics.json").read_text())["programs"].items():
            if finite(row.get("llc_mean")) and (prog not in best or esc > best[prog][0]):
                best[prog] = (esc, row, str(d.relative_to(source)))
    return {prog: (row, name) for prog, (_, row, name) in best.items()}


def program_rows(source: Path) -> list:
    """One row per registered program: the largest-budget escalation estimate where there is one, else the
    table's."""
    table = json.loads((source / "complexity" / "metrics.json").read_text())["programs"]
    esc = escalated_rows(source)
    rows = []
    for prog, t in table.items():
        use, src = esc.get(prog, (t, "complexity"))
        half = use.get("half_rank")
        rows.append({"program": prog, "source": src, "num_params": t["num_params"], "valid": bool(use["valid"]),
                     **{k: use.get(k, math.nan) for k in ("llc_mean", "llc_std", "half_rank", "effective_half_rank",
                                                          "half_dim")},
                     "ratio": use["llc_mean"] / half if finite(half) and half else math.nan,
                     **{k: t.get(k) for k in DESCRIPTORS}, "reason": use.get("reason", ""),
                     "failed_checks": [c for c in CHECKS if use.get(f"check_{c}") is False]})
    return rows


def tier_b(source: Path) -> list:
    """Estimates that passed the single-estimate checks only: ladder rungs (mean over trustworthy seeds) and the
    valid rungs of the sharpness ladders."""
    out = []
    ladders = json.loads((source / "complexity" / "metrics.json").read_text()).get("ladders", {})
    for name, lad in ladders.items():
        out += [{"kind": f"ladder {name}", "program": r["program"], "llc_mean": r["llc_mean"],
                 "half_rank": r["half_rank"]} for r in lad["rungs"] if r["valid_seeds"] and finite(r["llc_mean"])]
    sharp = source / "sharpness_ladder" / "metrics.json"
    if sharp.exists():
        out += [{"kind": f"sharpness {r['knob']}={r['value']:g}", "program": r["program"], "llc_mean": r["llc_mean"],
                 "half_rank": r["half_rank"], "knob": r["knob"], "value": r["value"]}
                for r in json.loads(sharp.read_text())["rows"] if r.get("valid")]
    for r in out:
        r["ratio"] = r["llc_mean"] / r["half_rank"]
    return out


def statistics(rows: list) -> dict:
    """Tier A statistics (valid programs only); fewer than 3 valid programs give none."""
    ok = [r for r in rows if r["valid"]]
    out = {"num_valid": len(ok), "valid_programs": [r["program"] for r in ok]}
    if len(ok) < 3:
        return {**out, "note": "fewer than 3 valid programs: no statistics"}
    ratio = np.array([r["ratio"] for r in ok])
    sp = stats.spearmanr([r["half_rank"] for r in ok], [r["llc_mean"] for r in ok])
    out.update(ratio_median=float(np.median(ratio)), ratio_min=float(ratio.min()), ratio_max=float(ratio.max()),
               ratio_mean=float(ratio.mean()), ratio_ci95=_t_interval(ratio),
               spearman_llc_half_rank=float(sp.statistic), p_llc_half_rank=float(sp.pvalue),
               largest_ratio=max(ok, key=lambda r: r["ratio"])["program"])
    # the bounds check admits LLC >= 0.85 x effective half-rank: the smallest ratio it lets through, per program
    cuts = [0.85 * r["effective_half_rank"] / r["half_rank"] for r in ok]
    out.update(bounds_cut_min=float(min(cuts)), bounds_cut_max=float(max(cuts)),
               closest_to_cut=float(min(r["ratio"] / c for r, c in zip(ok, cuts))),
               failed_bounds_only=[r["program"] for r in rows if r.get("failed_checks") == ["bounds"]])
    sw = [r["ratio"] for r in ok if r["selector_width"]]
    no = [r["ratio"] for r in ok if not r["selector_width"]]
    out.update(selector_width_ratios=sw, other_ratios=no)
    if sw and no:
        mw = stats.mannwhitneyu(sw, no, alternative="two-sided", method="exact")
        out.update(mannwhitney_u=float(mw.statistic), mannwhitney_p=float(mw.pvalue))
    return out


def _t_interval(x: np.ndarray) -> list:
    half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return [float(x.mean() - half), float(x.mean() + half)]


def _rescued(rows: list, extra: list, table_sharpness: dict) -> dict:
    """program -> its valid sharpness-ladder rungs less sharp than the table's, for programs without a valid
    estimate at the table's sharpness."""
    invalid = {r["program"] for r in rows if not r["valid"]}
    out = {}
    for r in extra:
        if "knob" in r and r["program"] in invalid and r["value"] < table_sharpness.get(r["knob"], -math.inf):
            out.setdefault(r["program"], []).append(r)
    return out


def answer(st: dict, rows: list, num_chains: int, extra: tuple = (), table_sharpness: Optional[dict] = None,
           evidence: tuple = ()) -> list:
    """The README's answer lines, each a branch on the statistics (and on tier B's rungs of programs not valid at
    the table's sharpness); `evidence` lines (why the other programs are not valid) come before "How sure"."""
    n_total = len(rows)
    if st["num_valid"] < 3:
        return [f"- **Only {st['num_valid']} of {n_total} programs have a valid estimate: too few to answer Q1.**",
                *evidence]
    close = 0.9 <= st["ratio_min"] and st["ratio_max"] <= 1.3
    spread = (f"LLC / (rank/2) lies in [{st['ratio_min']:.2f}, {st['ratio_max']:.2f}] (median {st['ratio_median']:.2f}, "
              f"mean {st['ratio_mean']:.2f}, 95% t interval [{st['ratio_ci95'][0]:.2f}, {st['ratio_ci95'][1]:.2f}]), "
              f"and the LLC and rank/2 order the programs alike (Spearman rho {st['spearman_llc_half_rank']:.2f}"
              f", p = {st['p_llc_half_rank']:.2g})")
    lines = [f"- **{st['num_valid']} of {n_total} programs have a valid LLC** ({', '.join(st['valid_programs'])}); "
             "only these enter the statistics."]
    if close:
        lines.append(f"- **The LLC is close to the Hessian's rank/2**: {spread}. So on these programs the LLC tracks "
                     "the complexity of the compiled algorithm as far as the number of weight directions the loss "
                     "constrains to second order does; what it adds is the excess over rank/2"
                     + (f", at most {st['ratio_max'] - 1:.0%} ({st['largest_ratio']})." if st["ratio_max"] > 1 else
                        ", which is not positive here."))
    else:
        lines.append(f"- **The LLC is not a fixed multiple of rank/2**: {spread}.")
    only = st["failed_bounds_only"]
    shaped = st["closest_to_cut"] < 1.05
    lines.append(f"- **Selection by the bounds check**: a valid estimate must reach 0.85 x the effective half-rank, so "
                 f"no valid ratio could lie below {st['bounds_cut_min']:.2f}-{st['bounds_cut_max']:.2f} (per program); "
                 + (f"the valid ratios come within {st['closest_to_cut'] - 1:.0%} of their cut, so the filter may shape "
                    "the lower end of the range" if shaped else
                    f"every valid ratio is at least {st['closest_to_cut'] - 1:.0%} above its cut, so the closeness to "
                    "rank/2 from below is measured, not imposed by the filter")
                 + "; " + (f"{len(only)} program(s) failed on the bounds alone ({', '.join(only)})." if only else
                           "no program failed on the bounds check alone."))
    if "mannwhitney_p" in st:
        sw, no = st["selector_width_ratios"], st["other_ratios"]
        verdict = "differs" if st["mannwhitney_p"] < 0.05 else "does not differ significantly"
        lines.append(f"- **SelectorWidth**: LLC / (rank/2) is {_list(sw)} in the {len(sw)} valid programs with a "
                     f"SelectorWidth and {_list(no)} in the {len(no)} without; the ratio {verdict} between them (exact "
                     f"two-sided Mann-Whitney p = {st['mannwhitney_p']:.2g}). The earlier claim that SelectorWidth "
                     "programs have 10x the LLC came from chains that had left the basin and is withdrawn.")
    else:
        lines.append("- **SelectorWidth**: the valid programs do not include both kinds, so no comparison is made; "
                     "the earlier 10x claim came from chains that had left the basin and is withdrawn.")
    rescued = _rescued(rows, extra, table_sharpness or {})
    if rescued:
        lines.append("- **Not valid at the table's sharpness, valid on less sharp rungs**: " + "; ".join(
            f"{prog} at " + ", ".join(f"{r['knob']}={r['value']:g} (LLC {r['llc_mean']:.1f}, LLC/(rank/2) {r['ratio']:.2f})"
                                      for r in rs) for prog, rs in rescued.items())
            + ". Each such rung computes the program exactly and passed the checks one estimate can make alone "
            "(basin, bounds, R-hat); these programs stay out of the statistics above.")
    lines += evidence
    largest = max(r["num_params"] for r in rows if r["valid"])
    lines.append(f"- How sure: each LLC is one estimate of {num_chains} chains whose five checks passed (basin, 4x "
                 "data, reparametrisation, bounds, R-hat with a clean estimator verdict); the statistics are over "
                 f"{st['num_valid']} programs, the largest with {largest} parameters, at the table's sharpness. "
                 "Programs without a valid estimate are not in them; their reasons are in the table below.")
    return lines


def _list(xs: list) -> str:
    return ", ".join(f"{x:.2f}" for x in sorted(xs))


def figure(rows: list, extra: list, path: Path, title: str) -> None:
    """LLC against rank/2: valid programs (labelled, error bars over chains), tier B estimates, and y = x."""
    fig, ax = plt.subplots(figsize=(7, 5.5))
    ok = [r for r in rows if r["valid"]]
    for i, kind in enumerate(dict.fromkeys(r["kind"].split()[0] for r in extra)):
        rs = [r for r in extra if r["kind"].split()[0] == kind]
        ax.scatter([r["half_rank"] for r in rs], [r["llc_mean"] for r in rs], s=14, alpha=0.5, color=f"C{i + 1}",
                   label=f"tier B: {kind} rungs (single-estimate checks only), n = {len(rs)}")
    ax.errorbar([r["half_rank"] for r in ok], [r["llc_mean"] for r in ok], yerr=[r["llc_std"] for r in ok],
                fmt="o", color="C0", capsize=3, label=f"tier A: valid programs (all five checks), n = {len(ok)}")
    for r in ok:
        ax.annotate(r["program"] + (" (SW)" if r["selector_width"] else ""), (r["half_rank"], r["llc_mean"]),
                    fontsize=7, xytext=(3, 3), textcoords="offset points")
    top = max([r["llc_mean"] for r in ok + extra] + [r["half_rank"] for r in ok + extra] + [1.0]) * 1.08
    ax.plot([0, top], [0, top], "k--", lw=0.8, label="LLC = rank/2 (the lower bound)")
    ax.set(xlabel="rank/2 of the Hessian at w*", ylabel="LLC (mean +- sd over chains)", xlim=(0, top), ylim=(0, top),
           title="LLC against the Hessian bound (SW: has a SelectorWidth)")
    ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(source: Path, out_dir: Path) -> dict:
    """Joins the Q1 folders under `source` and writes programs.csv, llc_vs_rank.png, metrics.json, config.json and
    README.md into `out_dir`.

    Raises:
        FileNotFoundError: `source` has no complexity study.
    """
    if not (source / "complexity" / "metrics.json").exists():
        raise FileNotFoundError(f"{source / 'complexity'} holds no metrics.json: run the complexity study first")
    cfg = json.loads((source / "complexity" / "config.json").read_text())
    validity = cfg["config"]["validity"]
    rows, extra = program_rows(source), tier_b(source)
    add_evidence(rows, source, validity.get("sharpness", {}))
    st = statistics(rows)
    folders = [source / "complexity", *escalation_folders(source), source / "sharpness_ladder",
               source / "estimate_cost", source / "landscape_probe"]
    sources = {str(d.relative_to(source)): json.loads((d / "config.json").read_text())["environment"]["git_commit"]
               for d in folders if (d / "config.json").exists()}
    config = {"scale": cfg.get("scale", "?"), "source": str(source), "source_commits": sources,
              "environment": environment()}  # the scale of the complexity table it answers from
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(out_dir / "programs.csv", [{k: r.get(k, "") for k in COLUMNS} for r in rows])
    metrics = {"statistics": st, "programs": {r["program"]: r for r in rows}, "tier_b": extra}
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1, default=json_default))
    (out_dir / "config.json").write_text(json.dumps(config, indent=1, default=json_default))
    setting = (f"gamma={validity['localization']:g}, n={validity['n']}, beta={validity['beta']:g}, "
               f"{validity['num_chains']} chains")
    figure(rows, extra, out_dir / "llc_vs_rank.png", f"Valid compiled-program LLCs, {setting}")
    crossing = crossing_line(rows, validity["max_steps"])
    answer_lines = answer(st, rows, validity["num_chains"], extra, validity.get("sharpness", {}),
                          (crossing,) if crossing else ())
    (out_dir / "README.md").write_text(readme(rows, extra, config, answer_lines))
    return metrics


def readme(rows: list, extra: list, config: dict, answer_lines: list) -> str:
    """The README, generated from the rows and the answer's lines."""
    env = config["environment"]
    made = ", ".join(f"`{k}` at `{v[:10]}`" for k, v in config["source_commits"].items())
    lines = ["# Question 1 over every valid estimate", "",
             f"Generated by `studies/q1_answer.py` at commit `{env['git_commit'][:10]}` (dirty: {env['dirty']}) "
             f"from {made}; it samples nothing. Tier A: programs whose estimate passed all five validity checks "
             "(the largest-budget escalation run's row where one has an estimate, else the table's). Tier B: estimates that passed the "
             "checks one estimate can make alone; shown, never pooled with tier A.", "",
             "## The answer", "", *answer_lines, "",
             "## Programs", "",
             "| program | params | from | LLC | rank/2 | LLC/(rank/2) | SelectorWidths | primitives | "
             "steps to cross (probe) | valid | why not |",
             "|" + "---|" * 11]
    for r in rows:
        llc = f"{r['llc_mean']:.2f} +- {r['llc_std']:.2f}" if finite(r["llc_mean"]) else "not estimated"
        ratio = f"{r['ratio']:.2f}" if finite(r["ratio"]) else "-"
        half = f"{r['half_rank']:.1f}" if finite(r["half_rank"]) else "-"
        cross = readable(r["crossing_steps"]) if finite(r.get("crossing_steps")) else "not probed"
        lines.append(f"| {r['program']} | {r['num_params']} | {r['source']} | {llc} | {half} | {ratio} | "
                     f"{r['selector_width']} | {r['primitives']} | {cross} | {'yes' if r['valid'] else 'no'} | "
                     f"{r['reason'][:400]} |")
    if extra:
        ratios = np.array([r["ratio"] for r in extra])
        lines += ["", f"Tier B: {len(extra)} estimates, LLC / (rank/2) in [{ratios.min():.2f}, {ratios.max():.2f}] "
                  f"(median {np.median(ratios):.2f}); by kind: " + "; ".join(
                      f"{k}: {_list([r['ratio'] for r in extra if r['kind'] == k])}"
                      for k in dict.fromkeys(r["kind"] for r in extra)) + "."]
    lines += ["", "![LLC against rank/2](llc_vs_rank.png)", "",
              "Files: `programs.csv`, `metrics.json` (statistics, rows, tier B), `config.json` (source commits).", ""]
    return "\n".join(lines)


def main() -> None:
    """Command line (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", type=Path, default=REPO_ROOT / "results")
    args = ap.parse_args()
    run(args.source, results_root() / "q1_answer")


if __name__ == "__main__":
    main()
