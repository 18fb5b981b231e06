"""What would the five validity checks cost for each compiled program? Measured gradient evaluations, projected.

`python -m studies.estimate_cost [--programs a b ...] [--repeats K] [--workers N]` writes
`results_root()/estimate_cost/`. At the committed complexity table's settings (read from
`results/complexity/config.json`: n, sharpness, chains, `max_steps`) it times, for every registered program, one
gradient evaluation of the loss of all chains at once (the unit `auto_llc` counts its budget in) on the teacher data
of n and of 4n sequences, in CPU seconds of one thread (which a busy machine inflates far less than wall time), and projects the
protocol's estimates (base, 4x data, MLP x10 where the model has an MLP, QK x0.1 where it has a head) at `max_steps`
gradient evaluations each. The projection counts gradient evaluations only (not the Hessians, the warm-up's trial
steps, the draw metric, nor the rerun a flagged estimate gets); for the programs the table estimated, the README
sets it beside the wall time the table's row took, which says how far to trust it. It is the evidence behind "not estimated for cost" in
`results/q1_answer`, not part of `make results`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from datasets.teacher import teacher_problem  # noqa: E402
from llc_estim.compiled import loss_and_grad_fn  # noqa: E402
from llc_estim.params import FlatParams, materialise  # noqa: E402
from rasp_models import registry  # noqa: E402
from studies.common import REPO_ROOT, environment, json_default, results_root  # noqa: E402
from studies.complexity_diagnostics import settings_from_config  # noqa: E402
from studies.complexity_report import write_csv  # noqa: E402
from studies.report_text import finite  # noqa: E402
from studies.runner import run_jobs  # noqa: E402
from studies.validity import ValiditySettings, has_heads  # noqa: E402

COLUMNS = ("program", "num_params", "distinct_n", "distinct_4n", "cpu_seconds_per_eval_n", "cpu_seconds_per_eval_4n",
           "estimates", "projected_hours", "table_hours", "table_over_projected")


def seconds_per_evaluation(problem, num_chains: int, repeats: int) -> float:
    """CPU seconds of one vectorised loss-and-gradient evaluation of `num_chains` chains at w* on the problem's
    whole teacher data (the median of `repeats` timed calls after one untimed call)."""
    flat = FlatParams(problem.model)
    fn = loss_and_grad_fn(flat, problem.loss_fn, None, compiled=False)
    batch = materialise(problem.data)
    w = flat.w_star.expand(num_chains, -1).clone()
    fn(w, batch)
    times = []
    for _ in range(repeats):
        c0 = time.process_time()
        fn(w, batch)
        times.append(time.process_time() - c0)
    return sorted(times)[len(times) // 2]


def job(program: str, st: ValiditySettings, repeats: int) -> dict:
    """One program's timings and the projected cost of its five checks (one worker's job)."""
    torch.set_num_threads(1)
    spec = registry.get(program)
    base = teacher_problem(spec, st.n, sharpness=st.sharpness)
    big = teacher_problem(spec, 4 * st.n, sharpness=st.sharpness)
    t_n = seconds_per_evaluation(base, st.num_chains, repeats)
    t_4n = seconds_per_evaluation(big, st.num_chains, repeats)
    same_data = 1 + (base.model.mlp_hidden_size > 0) + has_heads(base)  # base, MLP x10, QK x0.1
    return {"program": program, "num_params": sum(p.numel() for p in base.model.parameters()),
            "distinct_n": len(base.data), "distinct_4n": len(big.data), "cpu_seconds_per_eval_n": t_n,
            "cpu_seconds_per_eval_4n": t_4n, "estimates": same_data + 1,
            "projected_hours": st.max_steps * (same_data * t_n + t_4n) / 3600}


def with_table_times(rows: list, table: dict) -> list:
    """Adds the wall time of each program's row in the complexity table (`table`: its metrics' "programs") and its
    ratio to the projection, where the table estimated the program with every check."""
    for r in rows:
        t = table.get(r["program"], {})
        hours = t.get("seconds", float("nan")) / 3600 if finite(t.get("seconds")) else float("nan")
        r["table_hours"] = hours
        r["table_over_projected"] = hours / r["projected_hours"] if finite(hours) else float("nan")
    return rows


def figure(rows: list, path: Path, title: str) -> None:
    """Projected hours against parameters, with the table's measured hours where it has them."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.loglog([r["num_params"] for r in rows], [r["projected_hours"] for r in rows], "o", label="projected")
    done = [r for r in rows if finite(r["table_hours"])]
    ax.loglog([r["num_params"] for r in done], [r["table_hours"] for r in done], "x", label="the table's row took")
    for r in rows:
        ax.annotate(r["program"], (r["num_params"], r["projected_hours"]), fontsize=6, xytext=(3, 2),
                    textcoords="offset points")
    ax.set(xlabel="parameters", ylabel="hours of one core for the five checks")
    ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _comparison(ratios: list) -> str:
    """The README line comparing the projection with the table's measured times (ratios measured / projected)."""
    if not ratios:
        return "- The table estimated none of these programs, so the projection could not be checked."
    line = f"- Where the table estimated a program, its row took {min(ratios):.1f}-{max(ratios):.1f}x the projection"
    if min(ratios) >= 1:
        return line + ": there the projection is a lower bound (the left-out costs are positive)."
    return line + (": the left-out costs are within the timing's own error (the table ran on idle cores, these "
                   "timings need not), so read the projection as the order of magnitude, not as a bound.")


def readme(rows: list, config: dict) -> str:
    """The README, generated from the rows."""
    env, st = config["environment"], config["settings"]
    ratios = [r["table_over_projected"] for r in rows if finite(r["table_over_projected"])]
    lines = ["# What the validity checks cost per compiled program", "",
             f"Generated by `studies/estimate_cost.py` at commit `{env['git_commit'][:10]}` (dirty: {env['dirty']}), "
             f"{config['seconds'] / 60:.1f} minutes. Settings of the committed complexity table: n = {st['n']} "
             f"teacher sequences (4n for the 4x-data check), {st['num_chains']} chains, {st['max_steps']} gradient "
             f"evaluations per estimate; each time is the median CPU time of {config['repeats']} evaluations of all "
             "chains at w* on one thread.", "",
             "## The answer", "",
             "- Projected hours of one core for the five checks (one pass of each estimate, gradient evaluations "
             "only): " + ", ".join(f"{r['program']} {r['projected_hours']:.2g}" for r in rows) + ".",
             _comparison(ratios),
             "- A flagged estimate rerun at twice the budget (`escalate`) costs twice again; the projection assumes "
             "one pass.", "",
             "## Per program", "",
             "| program | params | distinct seqs (n / 4n) | CPU s per evaluation (n / 4n) | estimates | projected h | "
             "the table's row took h |", "|" + "---|" * 7]
    for r in rows:
        took = f"{r['table_hours']:.2g}" if finite(r["table_hours"]) else "-"
        lines.append(f"| {r['program']} | {r['num_params']} | {r['distinct_n']} / {r['distinct_4n']} | "
                     f"{r['cpu_seconds_per_eval_n']:.3g} / {r['cpu_seconds_per_eval_4n']:.3g} | {r['estimates']} | "
                     f"{r['projected_hours']:.2g} | {took} |")
    lines += ["", "![projected cost](cost.png)", "", "Files: `cost.csv`, `metrics.json`, `config.json`.", ""]
    return "\n".join(lines)


def run(source: Path, out_dir: Path, programs: tuple, repeats: int = 3, workers: int = 1) -> dict:
    """Times every program at the settings of the complexity table in `source` and writes `out_dir`.

    Raises:
        ValueError: `repeats` below 1.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    t0 = time.time()
    cfg = json.loads((source / "config.json").read_text())
    st = settings_from_config(cfg)
    rows = run_jobs(job, [(p, st, repeats) for p in programs], workers, desc="estimate cost",
                    describe=lambda args, r: f"{r['program']}: {r['projected_hours']:.2g} h")
    table = json.loads((source / "metrics.json").read_text())["programs"]
    rows = with_table_times(rows, table)
    config = {"source": str(source), "source_commit": cfg["environment"]["git_commit"], "repeats": repeats,
              "workers": workers, "settings": {"n": st.n, "num_chains": st.num_chains, "max_steps": st.max_steps,
                                               "sharpness": dataclasses.asdict(st.sharpness)}, "environment": environment(),
              "seconds": time.time() - t0}
    out_dir.mkdir(parents=True, exist_ok=True)
    write_csv(out_dir / "cost.csv", [{k: r[k] for k in COLUMNS} for r in rows])
    metrics = {"programs": {r["program"]: r for r in rows}}
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1, default=json_default))
    (out_dir / "config.json").write_text(json.dumps(config, indent=1, default=json_default))
    figure(rows, out_dir / "cost.png", f"Five validity checks at n={st.n}, {st.num_chains} chains, "
                                       f"{st.max_steps} gradient evaluations each")
    (out_dir / "README.md").write_text(readme(rows, config))
    return metrics


def main() -> None:
    """Command line (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--programs", nargs="+", default=registry.names())
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--source", type=Path, default=REPO_ROOT / "results" / "complexity")
    args = ap.parse_args()
    run(args.source, results_root() / "estimate_cost", tuple(args.programs), args.repeats, args.workers)


if __name__ == "__main__":
    main()
