"""Do near-valid programs of the complexity table, and ones it left out, become valid with a larger budget?

`python -m studies.complexity_escalation [--programs a b ...] [--escalate K] [--workers N] [--max-params M]`
writes `results_root()/complexity_escalation/`; `--merge DIR DIR ...` combines folders of earlier runs (programs
run at different times, each keeping its commit) into it instead. The committed complexity table
(`results/complexity`) marks several programs invalid only because one of their check estimates was flagged
(R-hat, trend) at its fixed budget. This reruns the whole validity protocol (`studies.validity.validate`) for the
chosen programs at the table's own settings, read from `results/complexity/config.json`, with `escalate = K`: a
flagged estimate is rerun at twice its budget, up to K times. Each of a program's four estimates is its own job, so
one program's checks run in parallel on N workers. `--max-params` also estimates programs the table left out for
their size. It reports, per program, each check's verdict, the budget each estimate needed, and the
table's earlier verdict beside the new one. It is a supplement to the complexity study, not part of `make results`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Optional

from rasp_models import registry
from studies.common import REPO_ROOT, environment, json_default, results_root
from studies.complexity_diagnostics import settings_from_config
from studies.complexity_report import write_csv
from studies.runner import run_jobs
from studies.validity import ESTIMATES, ValiditySettings, assemble, check_estimate, needed, table_row

DEFAULT_PROGRAMS = ("count_a", "length", "pair_balance")  # invalid in the table only through a flagged check estimate


def estimate_job(program: str, st: ValiditySettings, key: str) -> dict:
    """One check estimate of one program (a worker's job) and its wall time."""
    t0 = time.time()
    return {"estimate": check_estimate(registry.get(program), st, key), "seconds": time.time() - t0}


def program_rows(programs: tuple, st: ValiditySettings, workers: int) -> list:
    """Each program's validity row with the budget each estimate used. Every estimate of every program is its
    own job, so the estimates of one program run in parallel on `workers` cores; `validity.assemble` joins them as
    `validity.validate` would (a row's `seconds` is the sum of its estimates' wall times)."""
    specs = {p: registry.get(p) for p in programs}
    todo = [(p, st, key) for p in programs for key in needed(specs[p], st)]
    done = run_jobs(estimate_job, todo, workers, desc="escalation estimates",
                    describe=lambda args, r: f"{args[0]} {args[2]}: " + (
                        "n/a" if r["estimate"] is None else f"LLC {r['estimate']['llc_mean']:.4g}, "
                        f"{r['estimate']['max_steps_used']} steps, trustworthy {r['estimate']['trustworthy']}"))
    estimates = {p: {} for p in programs}
    seconds = dict.fromkeys(programs, 0.0)
    for (p, _, key), r in zip(todo, done):
        estimates[p][key] = r["estimate"]
        seconds[p] += r["seconds"]
    out = []
    for p in programs:
        row = assemble(specs[p], st, estimates[p], seconds[p])
        flat = table_row(row)
        for key in ESTIMATES:
            est = row.get(key) or {}
            flat[f"steps_{key}"] = est.get("max_steps_used", "")
            flat[f"trustworthy_{key}"] = est.get("trustworthy", "")
        out.append(flat)
    return out


def run(source: Path, out_dir: Path, programs: tuple = DEFAULT_PROGRAMS, escalate: int = 1,
        workers: int = 2, max_params: Optional[int] = None) -> dict:
    """Runs `job` for every program at the settings of `source/config.json` with `escalate` (and, if given,
    `max_params`: the size above which the table left a program unestimated), and writes `escalation.csv`,
    metrics.json, config.json and README.md into `out_dir`.

    Raises:
        ValueError: escalate < 1 (that is the committed table itself) or an unknown program.
    """
    if escalate < 1:
        raise ValueError(f"escalate must be >= 1 (0 is the committed table), got {escalate}")
    unknown = [p for p in programs if p not in registry.names()]
    if unknown:
        raise ValueError(f"unknown programs {unknown}; known: {registry.names()}")
    t0 = time.time()
    source_config = json.loads((source / "config.json").read_text())
    before = json.loads((source / "metrics.json").read_text())["programs"]
    st = dataclasses.replace(settings_from_config(source_config), escalate=escalate)
    if max_params is not None:
        st = dataclasses.replace(st, max_params=max_params)
    rows = program_rows(programs, st, workers)
    for r in rows:
        r["valid_in_table"] = before.get(r["program"], {}).get("valid", "")
    env = environment()
    run_record = {"commit": env["git_commit"], "dirty": env["dirty"], "seconds": time.time() - t0, "workers": workers,
                  "programs": list(programs), "max_params": st.max_params, "environment": env}
    config = {"scale": source_config.get("scale", "?"), "settings": {**dataclasses.asdict(st), "nbeta": st.nbeta},
              "source": str(source), "source_commit": source_config["environment"]["git_commit"],
              "environment": env, "runs": [run_record]}
    return write(out_dir, rows, config)


def merge(parts: list, out_dir: Path) -> dict:
    """Combines folders written by `run` (e.g. programs run at different times) into one in `out_dir`.

    Every run keeps its own commit, time, worker count and `max_params` in config.json's `runs` and in the README;
    the merged settings record the largest `max_params` (it only decides which programs get an estimate).

    Raises:
        ValueError: the parts used different settings (other than `max_params`) or source tables, or two parts
            hold the same program.
    """
    configs = [json.loads((Path(p) / "config.json").read_text()) for p in parts]
    metrics = [json.loads((Path(p) / "metrics.json").read_text()) for p in parts]
    rows = [r for m in metrics for r in m["programs"].values()]
    sampling = [{k: v for k, v in c["settings"].items() if k != "max_params"} for c in configs]
    if any(d != sampling[0] for d in sampling):
        raise ValueError(f"the parts differ in settings: {sampling}")
    if len({c["source_commit"] for c in configs}) > 1:
        raise ValueError(f"the parts differ in source_commit: {[c['source_commit'] for c in configs]}")
    names = [r["program"] for r in rows]
    if len(set(names)) != len(names):
        raise ValueError(f"a program appears in more than one part: {names}")
    runs = [run for c, m in zip(configs, metrics) for run in c.get("runs") or [_run_record(c, m)]]
    config = {k: v for k, v in configs[0].items() if k not in ("programs", "workers")}
    settings = {**config["settings"], "max_params": max(c["settings"]["max_params"] for c in configs)}
    return write(out_dir, rows, {**config, "settings": settings, "environment": environment(), "runs": runs})


def _run_record(config: dict, metrics: dict) -> dict:
    """The run record of a folder written before config.json listed its runs (one run: its own environment)."""
    env = config["environment"]
    return {"commit": env["git_commit"], "dirty": env["dirty"], "seconds": metrics["seconds"],
            "workers": config["workers"], "programs": config["programs"],
            "max_params": config["settings"]["max_params"], "environment": env}


def write(out_dir: Path, rows: list, config: dict) -> dict:
    """`escalation.csv`, metrics.json, config.json and the README of `rows` (made as `config` records)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(out_dir / "escalation.csv", rows)
    metrics = {"programs": {r["program"]: r for r in rows}, "num_valid": sum(bool(r["valid"]) for r in rows),
               "seconds": sum(run["seconds"] for run in config["runs"])}
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1, default=json_default))
    (out_dir / "config.json").write_text(json.dumps(config, indent=1, default=json_default))
    st = ValiditySettings.from_dict(config["settings"])
    (out_dir / "README.md").write_text(readme(rows, st, config["runs"]))
    return metrics


def readme(rows: list, st: ValiditySettings, runs: list) -> str:
    """The README, generated from the rows and the runs that made them."""
    now = sum(bool(r["valid"]) for r in rows)
    was = sum(r["valid_in_table"] is True for r in rows)
    made = "; ".join(f"{', '.join(run['programs'])} at commit `{run['commit'][:10]}` (dirty: {run['dirty']}), "
                     f"{run['seconds'] / 60:.1f} minutes with {run['workers']} worker(s), max_params "
                     f"{run['max_params']}" for run in runs)
    lines = ["# Complexity table, flagged estimates rerun at a larger budget", "",
             f"Generated by `studies/complexity_escalation.py`: {made}. Settings of the committed "
             f"complexity table (gamma = {st.localization:g}, nbeta = {st.nbeta:g}, n = {st.n}, {st.max_steps} steps x "
             f"{st.num_chains} chains) with `escalate = {st.escalate}`: an estimate the estimator flags is rerun at "
             "twice its budget, up to that many times; every check is otherwise the table's.", "",
             "## The answer", "",
             f"- **{now} of {len(rows)} programs are valid with escalation; {was} of them were valid in the table.** "
             "Programs: " + ", ".join(f"{r['program']} ({'valid' if r['valid'] else 'not valid: ' + r['reason']})"
                                     for r in rows) + ".", "",
             "## Per program", "",
             "| program | LLC | rank/2 | 4x data | MLP x10 | QK x0.1 | steps: base / 4x / MLP / QK | valid (table) | "
             "valid (now) |", "|" + "---|" * 9]
    table_max = min(run["max_params"] for run in runs)  # the table's own; a run may only have raised it
    for r in rows:
        steps = " / ".join(str(r[f"steps_{k}"]) if r[f"steps_{k}"] != "" else "-" for k in ESTIMATES)
        before = (f"not estimated ({r['num_params']} params > {table_max})" if r["num_params"] > table_max
                  else r["valid_in_table"])
        lines.append(f"| {r['program']} | {r['llc_mean']:.2f} +- {r['llc_std']:.2f} | {r['half_rank']:.1f} | "
                     f"{_change(r, 'nbeta_change')} | {_change(r, 'mlp_x10_change')} | {_change(r, 'qk_x0.1_change')} "
                     f"| {steps} | {before} | {r['valid']} |")
    lines += ["", "Changes are relative to the base estimate (limit 20%, and the check's own estimate must not be "
              "flagged). Files: `escalation.csv` (every column of the table's rows, plus the budget and verdict of "
              "each estimate), `metrics.json`, `config.json`.", ""]
    return "\n".join(lines)


def _change(r: dict, key: str) -> str:
    v = r.get(key)
    return "n/a (no such part)" if v is None or v != v else f"{v:.1%}"


def main() -> None:
    """Command line (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--programs", nargs="+", default=list(DEFAULT_PROGRAMS))
    ap.add_argument("--escalate", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--max-params", type=int, default=None,
                    help="estimate programs up to this size (default: the table's max_params)")
    ap.add_argument("--source", type=Path, default=REPO_ROOT / "results" / "complexity")
    ap.add_argument("--merge", type=Path, nargs="+", metavar="DIR",
                    help="instead of running, combine folders written by earlier runs into the results folder")
    args = ap.parse_args()
    out = results_root() / "complexity_escalation"
    if args.merge:
        merge(args.merge, out)
    else:
        run(args.source, out, tuple(args.programs), args.escalate, args.workers, args.max_params)


if __name__ == "__main__":
    main()
