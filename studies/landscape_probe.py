"""Why are some compiled programs not validly sampled? The landscape probe beside each program's validity verdict.

`python -m studies.landscape_probe [--programs a b ...] [--max-params M] [--steps S] [--workers N]` writes
`results_root()/landscape_probe/`. At the committed complexity table's settings (read from
`results/complexity/config.json`), for every registered program up to `max_params` parameters it
1. runs `auto_llc` for `steps` gradient evaluations per chain (its warm-up only matters: the step size it tunes in
   whitened units, and the acceptance), which also gives the Hessian at w*;
2. runs `llc_estim.landscape.probe_landscape` with that Hessian: how far the whitened range stays quadratic, and at
   what fraction of the prior scale 1 / sqrt(gamma) the flat complement meets a wall;
3. puts these beside the program's verdict: the table's (`results/complexity`), or that of the largest-budget
   escalation run holding an estimate (`results/complexity_escalation` and its sub-folders).
`--merge DIR DIR ...` combines folders of earlier runs (e.g. the large programs probed later, each run keeping its
commit) into it instead, with the verdicts read anew. It is a supplement to the complexity study, not part of
`make results`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from datasets.teacher import teacher_problem  # noqa: E402
from llc_estim import LLCWarning, auto_llc  # noqa: E402
from llc_estim.landscape import probe_landscape  # noqa: E402
from rasp_models import registry  # noqa: E402
from studies.common import REPO_ROOT, environment, json_default, results_root  # noqa: E402
from studies.complexity_diagnostics import settings_from_config  # noqa: E402
from studies.complexity_report import write_csv  # noqa: E402
from studies.q1_answer import escalated_rows  # noqa: E402
from studies.report_text import finite  # noqa: E402
from studies.runner import run_jobs  # noqa: E402
from studies.validity import ValiditySettings  # noqa: E402


def job(program: str, st: ValiditySettings, steps: int) -> dict:
    """One program's short `auto_llc` run and landscape probe (one worker's job)."""
    torch.set_num_threads(1)
    t0 = time.time()
    pb = teacher_problem(registry.get(program), st.n, sharpness=st.sharpness)
    with warnings.catch_warnings():  # a short run is flagged by design; only its tuned step size is used
        warnings.simplefilter("ignore", LLCWarning)
        res = auto_llc(pb.model, pb.data, pb.loss_fn, localization=st.localization, nbeta=st.nbeta,
                       num_chains=st.num_chains, max_steps=steps, seed=st.seed, settings=st.auto, progress=False)
    probe = probe_landscape(pb.model, pb.data, pb.loss_fn, nbeta=st.nbeta, localization=st.localization,
                            curvature=res.curvature, seed=st.seed)
    limit = {row["scale"]: row["step_limit"] for row in probe["rows"]}
    return {"program": program, "num_params": probe["num_params"], "rank": probe["rank"],
            "step_limit_0.01": limit.get(0.01, math.nan), "step_limit_0.1": limit.get(0.1, math.nan),
            "complement_dim": probe["complement_dim"], "wall_scale": probe["wall_scale"],
            "quadratic_scale": probe["quadratic_scale"], "step_size": res.choices["step_size"],
            "warmup_acceptance": res.choices["warmup_final_acceptance"], "rows": probe["rows"],
            "seconds": time.time() - t0}


def verdicts(results: Path) -> dict:
    """program -> "valid", "not valid" or "not estimated": the table's verdict, replaced by that of the
    largest-budget escalation run holding an estimate (the rule `studies.q1_answer` answers by)."""
    table = results / "complexity" / "metrics.json"
    rows = json.loads(table.read_text())["programs"] if table.exists() else {}
    rows.update({prog: row for prog, (row, _) in escalated_rows(results).items()})
    return {prog: "valid" if row["valid"] else ("not valid" if finite(row.get("llc_mean")) else "not estimated")
            for prog, row in rows.items()}


def run(source: Path, out_dir: Path, programs: tuple, max_params: int, steps: int, workers: int) -> dict:
    """Probes the programs at the settings of `source/config.json`; writes probe.csv, probe.png, metrics.json,
    config.json and README.md into `out_dir`.

    Raises:
        ValueError: an unknown program.
    """
    unknown = [p for p in programs if p not in registry.names()]
    if unknown:
        raise ValueError(f"unknown programs {unknown}; known: {registry.names()}")
    t0 = time.time()
    st = settings_from_config(json.loads((source / "config.json").read_text()))
    table = json.loads((source / "metrics.json").read_text())["programs"]
    sizes = {p: r.get("num_params", 0) for p, r in table.items()}
    chosen = [p for p in programs if sizes.get(p, 0) <= max_params]  # a program the table lacks is probed
    kept = run_jobs(job, [(p, st, steps) for p in chosen], workers, desc="landscape probe",
                    describe=lambda args, r: f"{args[0]}: wall at s={r['wall_scale']}, step {r['step_size']:.3g}")
    env = environment()
    run_record = {"commit": env["git_commit"], "dirty": env["dirty"], "seconds": time.time() - t0,
                  "workers": workers, "programs": chosen, "max_params": max_params}
    config = {"settings": {**dataclasses.asdict(st), "nbeta": st.nbeta}, "steps": steps, "max_params": max_params,
              "programs": list(programs), "not_probed": sorted(set(programs) - set(chosen)),
              "source_commit": _source_commit(source), "environment": env, "runs": [run_record]}
    return write(source.parent, out_dir, kept, config)


def merge(parts: list, out_dir: Path, results: Path) -> dict:
    """Combines folders written by `run` (e.g. the large programs probed in a later run) into `out_dir`; every run
    keeps its commit, time, workers and programs in config.json's `runs`, and the verdicts are read anew from the
    validity folders under `results`.

    Raises:
        ValueError: the parts differ in settings, warm-up steps or source table, or two parts probed the same
            program.
    """
    configs = [json.loads((Path(p) / "config.json").read_text()) for p in parts]
    rows = [r for p in parts for r in json.loads((Path(p) / "metrics.json").read_text())["programs"].values()]
    for key in ("settings", "steps", "source_commit"):
        if any(c[key] != configs[0][key] for c in configs):
            raise ValueError(f"the parts differ in {key}: {[c[key] for c in configs]}")
    names = [r["program"] for r in rows]
    if len(set(names)) != len(names):
        raise ValueError(f"a program was probed in more than one part: {sorted(names)}")
    asked = list(dict.fromkeys(p for c in configs for p in c["programs"]))
    config = {**configs[0], "max_params": max(c["max_params"] for c in configs), "programs": asked,
              "not_probed": sorted(set(asked) - set(names)), "environment": environment(),
              "runs": [run for c in configs for run in c.get("runs") or [_run_record(c)]]}
    return write(results, out_dir, rows, config)


def _run_record(config: dict) -> dict:
    """The run record of a folder written before config.json listed its runs (one run: its own environment)."""
    env = config["environment"]
    return {"commit": env["git_commit"], "dirty": env["dirty"], "seconds": config["seconds"],
            "workers": config["workers"], "programs": sorted(set(config["programs"]) - set(config["not_probed"])),
            "max_params": config["max_params"]}


def write(results: Path, out_dir: Path, rows: list, config: dict) -> dict:
    """probe.csv, probe.png, metrics.json, config.json and the README of `rows` (as `config` records them), each
    row with its program's verdict from the validity folders under `results`."""
    status = verdicts(results)
    for r in rows:
        r["verdict"] = status.get(r["program"], "not estimated")
    config = {k: v for k, v in config.items() if k not in ("workers", "seconds")}
    config["seconds"] = sum(run["seconds"] for run in config["runs"])
    out_dir.mkdir(parents=True, exist_ok=True)
    flat = [{k: v for k, v in r.items() if k != "rows"} for r in rows]
    write_csv(out_dir / "probe.csv", flat)
    metrics = {"programs": {r["program"]: r for r in rows}, "seconds": config["seconds"]}
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1, default=json_default))
    (out_dir / "config.json").write_text(json.dumps(config, indent=1, default=json_default))
    st = ValiditySettings.from_dict(config["settings"])
    figure(rows, out_dir / "probe.png", st, config["steps"])
    (out_dir / "README.md").write_text(readme(rows, st, config))
    return metrics


def _source_commit(source: Path) -> str:
    return json.loads((source / "config.json").read_text())["environment"]["git_commit"]


COLOURS = {"valid": "tab:green", "not valid": "tab:red", "not estimated": "tab:grey"}


def figure(rows: list, path: Path, st: ValiditySettings, steps: int) -> None:
    """Complement force ratio and range ratio against the whitened distance s, one line per program."""
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
    for r in rows:
        s = [x["scale"] for x in r["rows"]]
        kw = {"color": COLOURS[r["verdict"]], "marker": "o", "ms": 3, "alpha": 0.8}
        axes[0].loglog(s, [max(x["complement_force_ratio"], 1e-12) for x in r["rows"]], **kw)
        axes[0].annotate(r["program"], (s[-1], max(r["rows"][-1]["complement_force_ratio"], 1e-12)), fontsize=7)
        axes[1].semilogx(s, [x["range_ratio"] for x in r["rows"]], **kw)
        axes[2].loglog(s, [x["step_limit"] for x in r["rows"]], **kw)
        axes[2].scatter([s[0]], [r["step_size"]], color=kw["color"], marker="x")
    axes[0].axhline(1.0, color="k", lw=0.8, ls="--")
    axes[0].set(xlabel="whitened distance s (complement: s / sqrt(gamma))", ylabel="loss force / prior force",
                title="flat complement: where the loss, not the prior, confines it")
    axes[1].axhline(1.0, color="k", lw=0.8, ls="--")
    axes[1].set(xlabel="whitened distance s", ylabel="nbeta dL / quadratic prediction", yscale="log",
                title="Hessian range: measured over quadratic")
    axes[2].set(xlabel="whitened distance s", ylabel="2 / sqrt(top |eigenvalue| of whitened Hessian)",
                title="leapfrog step limit at w* + s A^(1/2) z (x: auto_llc's tuned step)")
    for verdict, colour in COLOURS.items():
        axes[2].plot([], [], color=colour, label=verdict)
    axes[2].legend(fontsize=8)
    fig.suptitle(f"Landscape probe, {st.line()}, 4 random directions per s; verdicts from results/complexity*; "
                 f"{len(rows)} programs", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def readme(rows: list, st: ValiditySettings, config: dict) -> str:
    """The README, generated from the rows."""
    by = {v: [r for r in rows if r["verdict"] == v] for v in COLOURS}
    made = "; ".join(f"{', '.join(run['programs'])} at commit `{run['commit'][:10]}` (dirty: {run['dirty']}), "
                     f"{run['seconds'] / 60:.1f} minutes with {run['workers']} worker(s)" for run in config["runs"])

    def walls(rs):
        return ", ".join(f"{r['program']} {_s(r['wall_scale'])}" for r in rs) or "none"

    def limits(rs):
        return ", ".join(f"{r['program']} {r['step_limit_0.1']:.2g}" for r in rs) or "none"

    def steps(rs):
        return ", ".join(f"{r['program']} {r['step_size']:.2g}" for r in rs) or "none"

    lines = ["# Landscape probe: what the sampler meets near w*", "",
             f"Generated by `studies/landscape_probe.py`: {made}. Settings of the committed "
             f"complexity table ({st.line()}); `auto_llc` warm-up of {config['steps']} gradient evaluations per "
             f"chain for the step size; programs up to {config['max_params']} parameters"
             + (f" (not probed: {', '.join(config['not_probed'])})." if config["not_probed"] else "."), "",
             "## The answer", "",
             f"- Wall scale (the whitened distance s at which the loss, not the prior, confines the flat complement; "
             f"the preconditioner assumes 1): valid programs: {walls(by['valid'])}; not valid: "
             f"{walls(by['not valid'])}; not estimated: {walls(by['not estimated'])}.",
             f"- Step size tuned by `auto_llc` in whitened units (about 1 / d^(1/4) for a Gaussian of dimension d): "
             f"valid: {steps(by['valid'])}; not valid: {steps(by['not valid'])}; not estimated: "
             f"{steps(by['not estimated'])}.",
             "- Leapfrog step limit 2 / sqrt(stiffness) at whitened distance 0.1 from w* (2 at w* itself, where the "
             f"whitened Hessian is I): "
             f"valid: {limits(by['valid'])}; not valid: {limits(by['not valid'])}; not estimated: "
             f"{limits(by['not estimated'])}.",
             "- How to read it: the chains must cross the whitened range (scale 1) with steps no larger than the "
             "limit where they are, so a crossing costs about 1 / step leapfrog steps; that, not the number of "
             "parameters, is the budget a valid estimate needs.", "",
             "## Per program", "",
             "| program | params | rank | complement | quadratic up to s | wall at s | step limit at s=0.01 | "
             "step limit at s=0.1 | tuned step | warm-up acceptance | verdict |", "|" + "---|" * 11]
    for r in rows:
        lines.append(f"| {r['program']} | {r['num_params']} | {r['rank']} | {r['complement_dim']} | "
                     f"{_s(r['quadratic_scale'])} | {_s(r['wall_scale'])} | {r['step_limit_0.01']:.3g} | "
                     f"{r['step_limit_0.1']:.3g} | {r['step_size']:.3g} | "
                     f"{r['warmup_acceptance']:.2f} | {r['verdict']} |")
    lines += ["", "Figure: [probe.png](probe.png). Files: `probe.csv`, `metrics.json` (every scale's numbers), "
              "`config.json`. The step size is from a short warm-up, not from the table's runs.", ""]
    return "\n".join(lines)


def _s(v) -> str:
    return "none up to 1" if v is None else f"{v:g}"


def main() -> None:
    """Command line (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--programs", nargs="+", default=list(registry.names()))
    ap.add_argument("--max-params", type=int, default=25_000)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--source", type=Path, default=REPO_ROOT / "results" / "complexity")
    ap.add_argument("--merge", type=Path, nargs="+", metavar="DIR",
                    help="instead of running, combine folders written by earlier runs into the results folder")
    args = ap.parse_args()
    out = results_root() / "landscape_probe"
    if args.merge:
        merge(args.merge, out, args.source.parent)
    else:
        run(args.source, out, tuple(args.programs), args.max_params, args.steps, args.workers)


if __name__ == "__main__":
    main()
