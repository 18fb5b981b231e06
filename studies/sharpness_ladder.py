"""Does the LLC of a compiled program converge as the compiler's weights get sharper, while the model stays exact?

`python -m studies.sharpness_ladder [--programs a b ...] [--coldness v ...] [--exactness v ...] [--escalate K]
[--workers N]` writes `results_root()/sharpness_ladder/`; `--merge DIR DIR ...` combines folders of earlier runs
(programs run at different times, each keeping its commit) into it instead.

Each program is compiled along two ladders, one knob each with the other at the table's value: the attention
softmax coldness (the score of a selected key) and the MLP exactness (the slope of the discretising ramps). A rung is
estimated only if the compiled model decodes like the reference on every defined position of 300 generated
sequences (`complexity_jobs.reference_accuracy`), so every estimated rung computes the same function. At the
committed complexity table's settings (read from `results/complexity/config.json`) each rung gets `auto_llc`, rerun
at twice its budget while flagged (`escalate`), and the three checks that need only the estimate itself
(`validity.base_checks`: basin, bounds, R-hat with the estimator's verdict); a rung is `valid` when all three hold.
The 4x-data and reparametrisation checks are not run per rung (each costs another estimate); the table's own row
holds them at its sharpness. The README answers, per program and knob, whether the valid LLCs settle as the knob
grows, and where validity ends. `--coldness` or `--exactness` given no values climbs only the other knob (for a
program the table's sharpness blocks, whose low rungs alone may be samplable); merged parts may climb different
ladders, and config.json records each run's. It is a supplement to the complexity study, not part of
`make results`.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from datasets.teacher import teacher_problem
from rasp_models import registry
from studies.common import REPO_ROOT, environment, json_default, results_root
from studies.complexity_diagnostics import settings_from_config
from studies.complexity_jobs import reference_accuracy
from studies.complexity_readme import convergence
from studies.complexity_report import figure_sharpness, write_csv
from studies.runner import run_jobs
from studies.validity import ValiditySettings, base_checks, settled_estimate

DEFAULT_PROGRAMS = ("count_a", "histogram", "length", "pair_balance")  # valid at the table's sharpness
DEFAULT_LADDERS = (("softmax_coldness", (20.0, 50.0, 100.0, 200.0, 500.0)),
                   ("mlp_exactness", (4.0, 20.0, 100.0, 1000.0)))
COLUMNS = ("program", "knob", "value", "reference_accuracy", "estimated", "llc_mean", "llc_std", "half_rank",
           "effective_half_rank", "half_dim", "rhat", "acceptance", "draw_accuracy_min", "mean_draw_loss",
           "step_size", "trustworthy", "max_steps_used", "check_basin", "check_bounds", "check_rhat", "valid",
           "reason", "weights", "seconds")


def job(program: str, sharpness: dict, st: ValiditySettings) -> dict:
    """One program at one sharpness: exactness against the reference, then the settled estimate and its checks."""
    torch.set_num_threads(1)
    t0 = time.time()
    spec = registry.get(program)
    sharp = dataclasses.replace(st.sharpness, **sharpness)
    out = {"program": program, "reference_accuracy": reference_accuracy(spec, sharp)}
    if out["reference_accuracy"] < 1.0:
        return {**out, "estimated": False, "valid": False, "seconds": time.time() - t0,
                "reason": f"not exact at this sharpness ({out['reference_accuracy']:.4f} of positions decode right)"}
    est = settled_estimate(teacher_problem(spec, st.n, sharpness=sharp), st, st.nbeta)
    checks = base_checks(est)
    b = est["bounds"]
    out.update(estimated=True, llc_mean=est["llc_mean"], llc_std=est["llc_std"], half_rank=b["half_rank"],
               effective_half_rank=b["effective_half_rank"], half_dim=b["half_dim"], rhat=est["rhat"],
               acceptance=est["acceptance"], draw_accuracy_min=est["draw_accuracy_min"],
               mean_draw_loss=est["mean_draw_loss"], step_size=est["step_size"], trustworthy=est["trustworthy"],
               max_steps_used=est["max_steps_used"], **{f"check_{k}": v for k, v in checks.items()},
               valid=all(checks.values()), reason=_reason(est, checks), seconds=time.time() - t0)
    return out


def _reason(est: dict, checks: dict) -> str:
    out = []
    if not checks["basin"]:
        out.append(f"left the basin (draw accuracy {est['draw_accuracy_min']:.3f}, mean draw loss "
                   f"{est['mean_draw_loss']:.3g})")
    if not checks["bounds"]:
        b = est["bounds"]
        out.append(f"outside the bounds [{0.85 * b['effective_half_rank']:.1f}, {b['half_dim']:.0f}]")
    if not checks["rhat"]:
        out.append("sampler verdict: " + ("; ".join(est["warnings"]) or f"R-hat {est['rhat']:.2f}"))
    return "; ".join(out)


def weights_digest(program: str, sharpness) -> str:
    """The digest of `program`'s compiled parameters at `sharpness` (`AssembledTransformerModel.fingerprint`):
    rungs with equal digests are the same model (a knob that does not touch the program's weights), so they share
    one estimate."""
    return registry.get(program).compile(sharpness).fingerprint()


def _with_digests(rows: list, st: ValiditySettings) -> list:
    """`rows` with the `weights` digest of each rung's model, always derived from the compiler (deterministic and
    cached per sharpness), never read from a part."""
    return [{**r, "weights": weights_digest(r["program"], dataclasses.replace(st.sharpness, **{r["knob"]: float(
        r["value"])}))} for r in rows]


def rungs(programs: tuple, ladders: tuple) -> list:
    """{program, knob, value} per rung, in program, ladder and value order."""
    return [{"program": p, "knob": knob, "value": float(v)} for p in programs for knob, values in ladders
            for v in values]


def run(source: Path, out_dir: Path, programs: tuple = DEFAULT_PROGRAMS, ladders: tuple = DEFAULT_LADDERS,
        escalate: int = 1, workers: int = 1) -> dict:
    """Estimates every rung at the settings of `source/config.json`; writes ladder.csv, sharpness.png,
    metrics.json, config.json and README.md into `out_dir`. Rungs of a program that compile identical weights
    (`weights_digest`: the table's value, on both ladders, or a knob the program's weights do not depend on) are
    estimated once.

    Raises:
        ValueError: an unknown program or knob, no rung at all, or escalate < 0.
    """
    unknown = [p for p in programs if p not in registry.names()]
    if unknown:
        raise ValueError(f"unknown programs {unknown}; known: {registry.names()}")
    bad = [k for k, _ in ladders if k not in ("softmax_coldness", "mlp_exactness")]
    if bad or not any(values for _, values in ladders):
        raise ValueError(f"ladders must be on softmax_coldness or mlp_exactness and hold a rung, got {ladders}")
    if escalate < 0:
        raise ValueError(f"escalate must be >= 0, got {escalate}")
    t0 = time.time()
    source_config = json.loads((source / "config.json").read_text())
    st = dataclasses.replace(settings_from_config(source_config), checks=False, escalate=escalate)
    todo = _with_digests(rungs(programs, ladders), st)
    first = {}  # (program, weights digest) -> the overrides of the first rung with that model
    for r in todo:
        first.setdefault((r["program"], r["weights"]), {r["knob"]: r["value"]})
    done = run_jobs(job, [(p, over, st) for (p, _), over in first.items()], workers, desc="sharpness ladder",
                    describe=lambda args, r: f"{args[0]} {args[1]}: " + (
                        f"LLC {r['llc_mean']:.2f} valid={r['valid']}" if r["estimated"] else r["reason"]))
    by_model = dict(zip(first, done))
    rows = [{**by_model[(r["program"], r["weights"])], **r} for r in todo]
    env = environment()
    run_record = {"commit": env["git_commit"], "dirty": env["dirty"], "seconds": time.time() - t0,
                  "workers": workers, "programs": list(programs), "ladders": [[k, list(v)] for k, v in ladders],
                  "environment": env}
    config = {"settings": {**dataclasses.asdict(st), "nbeta": st.nbeta},
              "source_commit": source_config["environment"]["git_commit"], "environment": env, "runs": [run_record]}
    return write(out_dir, rows, config)


def merge(parts: list, out_dir: Path) -> dict:
    """Combines folders written by `run` into `out_dir`; every run keeps its commit, time, programs and ladders in
    config.json (parts may climb different ladders: a program the table's sharpness blocks may only have low rungs).

    Raises:
        ValueError: the parts differ in settings or source table, or two parts hold the same rung (program, knob
            and value; a program may climb different rungs in different parts).
    """
    configs = [json.loads((Path(p) / "config.json").read_text()) for p in parts]
    rows = [r for p in parts for r in json.loads((Path(p) / "metrics.json").read_text())["rows"]]
    for key in ("settings", "source_commit"):
        if any(c[key] != configs[0][key] for c in configs):
            raise ValueError(f"the parts differ in {key}: {[c[key] for c in configs]}")
    held = collections.Counter((r["program"], r["knob"], r["value"]) for r in rows)
    twice = sorted(k for k, n in held.items() if n > 1)
    if twice:
        raise ValueError(f"a rung appears in more than one part: {twice}")
    runs = [{"ladders": c.get("ladders", []), **run} for c in configs for run in c["runs"]]  # older parts: per folder
    base = {k: v for k, v in configs[0].items() if k != "ladders"}
    rows = _with_digests(rows, ValiditySettings.from_dict(base["settings"]))
    return write(out_dir, rows, {**base, "environment": environment(), "runs": runs})


def trend(rows: list) -> tuple:
    """Spearman rho of the valid LLCs against log(knob value) and its exact two-sided permutation p (a ladder has a
    handful of rungs, where the t approximation is meaningless: it gives p = 0 for three rungs in order); (nan, nan)
    with fewer than 3 valid rungs."""
    ok = [r for r in rows if r.get("valid")]
    if len(ok) < 3 or len({r["llc_mean"] for r in ok}) == 1:  # a constant LLC has no rank correlation
        return math.nan, math.nan
    x = np.log([r["value"] for r in ok])
    res = stats.permutation_test(([r["llc_mean"] for r in ok],), lambda y: stats.spearmanr(x, y).statistic,
                                 permutation_type="pairings", n_resamples=math.factorial(len(ok)))
    return float(res.statistic), float(res.pvalue)


def summaries(rows: list) -> list:
    """Per (program, knob): valid rungs, the range of valid LLCs over rank/2, the trend, and where validity ends."""
    out = []
    for prog, knob in dict.fromkeys((r["program"], r["knob"]) for r in rows):
        rs = sorted([r for r in rows if (r["program"], r["knob"]) == (prog, knob)], key=lambda r: r["value"])
        ok = [r for r in rs if r["valid"]]
        rho, p = trend(rs)
        ratios = [r["llc_mean"] / r["half_rank"] for r in ok if r["half_rank"]]
        first_bad = next((r for r in rs if ok and r["value"] > ok[-1]["value"] and not r["valid"]), None)
        out.append({"program": prog, "knob": knob, "rungs": len(rs), "valid_rungs": len(ok),
                    "valid_values": [r["value"] for r in ok], "llc_min": min((r["llc_mean"] for r in ok), default=None),
                    "llc_max": max((r["llc_mean"] for r in ok), default=None),
                    "spread": (max(r["llc_mean"] for r in ok) / min(r["llc_mean"] for r in ok) - 1) if ok else None,
                    "ratio_min": min(ratios, default=None), "ratio_max": max(ratios, default=None),
                    "models": len({r["weights"] for r in rs}) if all(r.get("weights") for r in rs) else None,
                    "spearman_rho": rho, "spearman_p": p,
                    "breaks_at": first_bad["value"] if first_bad else None,
                    "breaks_because": first_bad["reason"] if first_bad else ""})
    return out


def write(out_dir: Path, rows: list, config: dict) -> dict:
    """ladder.csv, sharpness.png, metrics.json, config.json and the README of `rows`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(out_dir / "ladder.csv", [{k: r.get(k, "") for k in COLUMNS} for r in rows])
    summ = summaries(rows)
    metrics = {"rows": rows, "summaries": summ, "num_valid": sum(bool(r["valid"]) for r in rows),
               "seconds": sum(run["seconds"] for run in config["runs"])}
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1, default=json_default))
    (out_dir / "config.json").write_text(json.dumps(config, indent=1, default=json_default))
    st = ValiditySettings.from_dict(config["settings"])
    figure_sharpness(rows, out_dir / "sharpness.png", f"Sharpness ladders, {st.line()}, {st.num_chains} chains; "
                     f"error bars: std over chains; dotted: rank/2", ok_key="valid")
    (out_dir / "README.md").write_text(readme(rows, summ, st, config["runs"]))
    return metrics


def readme(rows: list, summ: list, st: ValiditySettings, runs: list) -> str:
    """The README, generated from the rows (every claim is a branch on the numbers)."""
    made = "; ".join(f"{', '.join(run['programs'])} ({_ladder_text(run.get('ladders', []))}) at commit "
                     f"`{run['commit'][:10]}` (dirty: {run['dirty']}), {run['seconds'] / 60:.1f} minutes with "
                     f"{run['workers']} worker(s)" for run in runs)
    est = [r for r in rows if r["estimated"]]
    valid = [r for r in est if r["valid"]]
    judged = [s for s in summ if s["valid_rungs"] >= 2]
    settled = [s for s in judged if _last_change(rows, s) <= 0.1]
    lines = ["# Sharpness ladders: does the LLC converge as the compiled weights get sharper?", "",
             f"Generated by `studies/sharpness_ladder.py`: {made}. Settings of the committed complexity table "
             f"({st.line()}, {st.num_chains} chains, up to {st.max_steps} steps per chain, rerun at twice the budget "
             f"while flagged, up to {st.escalate} time(s)); the other knobs at the table's values (softmax coldness "
             f"{st.sharpness.softmax_coldness:g}, MLP exactness {st.sharpness.mlp_exactness:g}, ReLU margin "
             f"{st.sharpness.relu_margin:g}). A rung is estimated only where the compiled model decodes like the "
             "reference on every defined position of 300 generated sequences; it is valid when the draws stay in "
             "the basin, the LLC lies in [0.85 x effective half-rank, d/2], and R-hat < 1.1 with a clean estimator "
             "verdict. The 4x-data and reparametrisation checks are not run per rung.", "",
             "## The answer", "",
             f"- **{len(valid)} of {len(est)} estimated rungs are valid** ({len(rows) - len(est)} rung(s) not exact, "
             f"so not estimated).",
             f"- **Convergence: {len(settled)} of {len(judged)} program/knob ladders with two or more valid rungs "
             f"have settled** (the last two valid values within 10%); "
             f"{len(summ) - len(judged)} ladder(s) have fewer than two valid rungs and cannot say.",
             ]
    for s in summ:
        lines.append("- " + _summary_line(rows, s))
    lines += ["- How sure: each rung is one estimate of "
              f"{st.num_chains} chains (error bars are the spread over chains, not over seeds); the Spearman trend "
              "over at most five rungs can only detect a monotone change. Rungs of a program whose compiled "
              "parameters are identical (equal `weights` digest: the table's sharpness, a rung of both ladders, or a "
              "knob the program's weights do not depend on) are estimated once. The tuned step is `auto_llc`'s "
              "leapfrog step in Hessian-whitened units: a "
              "chain crosses the whitened range in about 1 / step leapfrog steps, so a tiny step means walls near w* "
              "(see `results/landscape_probe`).", "",
              "## Per rung", "",
              "| program | knob | value | exact | LLC | rank/2 | eff. half-rank | LLC/(rank/2) | draw acc. | R-hat | "
              "acceptance | tuned step | steps | valid | why not |", "|" + "---|" * 15]
    for r in rows:
        if not r["estimated"]:
            lines.append(f"| {r['program']} | {r['knob']} | {r['value']:g} | {r['reference_accuracy']:.4f} | - | - | "
                         f"- | - | - | - | - | - | - | no | {r['reason']} |")
            continue
        lines.append(f"| {r['program']} | {r['knob']} | {r['value']:g} | 1 | {r['llc_mean']:.2f} +- "
                     f"{r['llc_std']:.2f} | {r['half_rank']:.1f} | {r['effective_half_rank']:.1f} | "
                     f"{r['llc_mean'] / r['half_rank']:.2f} | {r['draw_accuracy_min']:.3f} | {r['rhat']:.2f} | "
                     f"{r['acceptance']:.2f} | {r['step_size']:.2g} | {r['max_steps_used']} | "
                     f"{'yes' if r['valid'] else 'no'} | "
                     f"{r['reason'][:200]} |")
    lines += ["", convergence(rows, ok_key="valid"), "", "![sharpness](sharpness.png)", "",
              "Files: `ladder.csv` (one row per rung), `metrics.json` (rows and per-ladder summaries), `config.json` "
              "(settings, and the commit, time and environment of every run).", ""]
    return "\n".join(lines)


def _ladder_text(ladders: list) -> str:
    """'softmax_coldness 20, 50; mlp_exactness 4' for a run's ladders."""
    return "; ".join(f"{k} {', '.join(f'{v:g}' for v in values)}" for k, values in ladders if values) or "ladders not recorded"


def _last_change(rows: list, s: dict) -> float:
    """Relative change of the LLC between the two sharpest valid rungs of a ladder."""
    ok = sorted([r for r in rows if (r["program"], r["knob"]) == (s["program"], s["knob"]) and r["valid"]],
                key=lambda r: r["value"])
    return abs(ok[-1]["llc_mean"] - ok[-2]["llc_mean"]) / max(abs(ok[-2]["llc_mean"]), 1e-12)


def _summary_line(rows: list, s: dict) -> str:
    head = f"{s['program']} / {s['knob']}: "
    if not s["valid_rungs"]:
        why = "; ".join(f"at {r['value']:g}: {r['reason'][:160]}" for r in sorted(
            (r for r in rows if (r["program"], r["knob"]) == (s["program"], s["knob"])), key=lambda r: r["value"]))
        return head + f"no valid rung of {s['rungs']} ({why})."
    vals = ", ".join(f"{v:g}" for v in s["valid_values"])
    text = (head + f"valid at {vals}; LLC {s['llc_min']:.1f} ... {s['llc_max']:.1f} (spread {s['spread']:.0%}), "
            f"LLC/(rank/2) {s['ratio_min']:.2f} ... {s['ratio_max']:.2f}")
    if s["rungs"] >= 2 and s["models"] == 1:
        text += (f"; every rung compiles the same weights (one parameter digest over {s['rungs']} rungs: the knob "
                 "does not touch this program), so they share one estimate")
    if math.isfinite(s["spearman_rho"]):
        text += f"; trend against log value: Spearman rho {s['spearman_rho']:.2f} (p = {s['spearman_p']:.2g})"
    if s["valid_rungs"] >= 2:
        text += f"; last two valid rungs differ by {_last_change(rows, s):.0%}"
    if s["breaks_at"] is not None:
        text += f"; the first rung above the last valid one, {s['breaks_at']:g}, is not valid ({s['breaks_because'][:160]})"
    return text + "."


def main() -> None:
    """Command line (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--programs", nargs="+", default=list(DEFAULT_PROGRAMS))
    ap.add_argument("--coldness", type=float, nargs="*", default=list(DEFAULT_LADDERS[0][1]),
                    help="softmax-coldness rungs (none: climb only the exactness ladder)")
    ap.add_argument("--exactness", type=float, nargs="*", default=list(DEFAULT_LADDERS[1][1]),
                    help="MLP-exactness rungs (none: climb only the coldness ladder)")
    ap.add_argument("--escalate", type=int, default=1)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--source", type=Path, default=REPO_ROOT / "results" / "complexity")
    ap.add_argument("--merge", type=Path, nargs="+", metavar="DIR",
                    help="instead of running, combine folders written by earlier runs into the results folder")
    args = ap.parse_args()
    out = results_root() / "sharpness_ladder"
    if args.merge:
        merge(args.merge, out)
    else:
        ladders = (("softmax_coldness", tuple(args.coldness)), ("mlp_exactness", tuple(args.exactness)))
        run(args.source, out, tuple(args.programs), ladders, args.escalate, args.workers)


if __name__ == "__main__":
    main()
