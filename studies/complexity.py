"""Research question 1: does the LLC of a compiled transformer track the algorithmic complexity stored in it?

The algorithm (per scale preset):
1. validity table: every registered program (up to `max_params`), the base estimate and the five validity checks
   of `studies.validity` (basin, 4x data, MLP x10 and QK x0.1 reparametrisations, Hessian bounds, R-hat);
2. complexity ladders, one knob each with vocabulary, length and sharpness fixed: chained lookups, parallel
   sub-computations, chained Maps (`rasp_models.ladders`), and the size sweeps of fractok, palindrome and sort;
   every rung at `seeds` sampler seeds; per rung the mean over valid seeds with a t interval; a Spearman trend test;
3. knob axes: programs compiled at several softmax coldnesses and MLP exactnesses (each checked to stay exact
   against the reference), with and without the ReLU margin, and estimated at several localizations gamma
   (nbeta / gamma fixed): the LLC, rank/2 and the verdict at each, i.e. where a valid estimate exists;
4. statistics on valid estimates only (LLC / (rank/2), LLC vs rank/2, descriptors, SelectorWidth), tables, figures,
   metrics.json, config.json and a README generated from the numbers.
Every job is independent and runs in `workers` processes.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Optional

from rasp_models import registry
from rasp_models.base import Sharpness
from studies import complexity_readme, complexity_report as report
from studies.common import environment, results_root, scale
from studies.runner import run_jobs
from studies.complexity_jobs import SIZE_VARIANTS, KnobJob, RungJob, TableJob, ladder_rungs, run_job
from rasp_models.ladders import LADDERS
from studies.validity import ValiditySettings, summary_counts
from llc_estim import AutoSettings


@dataclasses.dataclass(frozen=True)
class ComplexityConfig:
    """One scale of the study.

    Attributes:
        validity: the estimate and check settings shared by every job.
        table_programs: programs of the validity table.
        ladders: ladder names (rasp_models.ladders.LADDERS and complexity_jobs.SIZE_VARIANTS).
        seeds: sampler seeds per rung.
        knob_programs: programs of the knob axes.
        knobs: (knob, values) pairs: softmax_coldness, mlp_exactness, relu_margin or localization.
        workers: parallel jobs.
        max_rungs: the first rungs of each ladder only (0: all).
        sweep: the settings of the ladder and knob estimates (None: `validity` without the extra checks).
    """

    validity: ValiditySettings
    table_programs: tuple
    ladders: tuple
    seeds: tuple
    knob_programs: tuple
    knobs: tuple
    workers: int = 2
    max_rungs: int = 0
    sweep: Optional[ValiditySettings] = None

    @property
    def sweep_settings(self) -> ValiditySettings:
        """The ladder and knob estimates' settings (base estimate and verdict only)."""
        return dataclasses.replace(self.sweep or self.validity, checks=False)


_BASE = ValiditySettings(n=1024, beta=1e7, localization=1e6, max_steps=2000, sharpness=Sharpness(relu_margin=0.5),
                         auto=AutoSettings(refreshes=1))
_LADDERS = tuple(LADDERS) + tuple(SIZE_VARIANTS)

_KNOBS = (("softmax_coldness", (20.0, 50.0, 100.0, 200.0)), ("mlp_exactness", (4.0, 100.0, 1000.0)),
          ("relu_margin", (0.0, 0.5)), ("localization", (1e4, 1e6, 1e8)))

_QUICK_KNOBS = (("softmax_coldness", (20.0, 100.0, 200.0)), ("mlp_exactness", (4.0, 1000.0)), ("relu_margin", (0.0,)))
PRESETS = {
    "smoke": ComplexityConfig(dataclasses.replace(_BASE, n=32, max_steps=200, num_chains=2, checks=False),
                              ("identity",), ("map_chain",), (0,), ("identity",), (("relu_margin", (0.5,)),),
                              workers=1, max_rungs=2),
    # quick (the default of `make results`): the five checks for every program up to 3000 parameters (6 of 17;
    # the rest say why not), four ladders of 4 rungs x 3 seeds and three knob axes on 4 programs, at fewer sampler
    # steps and teacher sequences than full
    "quick": ComplexityConfig(dataclasses.replace(_BASE, n=512, max_steps=4000, max_params=3000),
                              tuple(registry.names()), ("lookup_chain", "map_chain", "fractok_len", "fractok_vocab"),
                              (0, 1, 2), ("count_a", "histogram", "length", "pair_balance"), _QUICK_KNOBS,
                              max_rungs=4, sweep=dataclasses.replace(_BASE, n=256, max_steps=1200)),
    "full": ComplexityConfig(_BASE, tuple(registry.names()), _LADDERS, (0, 1, 2),
                             ("count_a", "histogram", "length", "pair_balance", "fractok"), _KNOBS),
}


def jobs(cfg: ComplexityConfig) -> list:
    """Every job of the study, costliest kinds first."""
    out = [TableJob(p, cfg.validity) for p in cfg.table_programs]
    quick = cfg.sweep_settings
    for ladder in cfg.ladders:
        rungs = len(ladder_rungs(ladder)) if not cfg.max_rungs else min(cfg.max_rungs, len(ladder_rungs(ladder)))
        out += [RungJob(ladder, k, s, quick) for k in range(rungs) for s in cfg.seeds]
    out += [KnobJob(prog, knob, v, quick) for prog in cfg.knob_programs for knob, values in cfg.knobs for v in values]
    return out


def run(cfg: ComplexityConfig, out_dir: Path) -> dict:
    """Runs every job, then writes the tables, figures, metrics.json, config.json and README into `out_dir`."""
    t0 = time.time()
    out_dir.mkdir(parents=True, exist_ok=True)
    todo = jobs(cfg)
    results = run_jobs(run_job, [(j,) for j in todo], cfg.workers, desc="complexity",
                       describe=lambda args, r: _label(args[0], r))
    table = [r for j, r in zip(todo, results) if isinstance(j, TableJob)]
    rungs = [r for j, r in zip(todo, results) if isinstance(j, RungJob)]
    sharp = [r for j, r in zip(todo, results) if isinstance(j, KnobJob)]
    stats_table = report.table_statistics(table)
    stats_ladders = report.ladder_statistics(rungs) if rungs else {}
    report.write_csv(out_dir / "llc_table.csv", report.table_rows(table))
    report.write_csv(out_dir / "ladders.csv", [dict(ladder=k, **r) for k, v in stats_ladders.items()
                                               for r in v["rungs"]])
    report.write_csv(out_dir / "knobs.csv", [_sharp_row(r) for r in sharp])
    st = cfg.validity
    setting = st.line()
    sw = cfg.sweep_settings
    sweep_setting = (f"gamma={sw.localization:g}, nbeta={sw.nbeta:g}, n={sw.n}, {sw.max_steps} steps x "
                     f"{sw.num_chains} chains")
    report.figure_bounds(table, out_dir / "llc_vs_rank.png", f"Compiled programs: LLC vs rank/2 ({setting})")
    report.figure_traces(table, out_dir, f"Base estimate of each checked program ({setting})")
    if stats_ladders:
        report.figure_ladders(stats_ladders, out_dir / "ladders.png", f"Complexity ladders, {len(cfg.seeds)} seeds "
                              f"per rung ({sweep_setting})")
    if sharp:
        report.figure_sharpness(sharp, out_dir / "knobs.png", f"Knob axes ({sweep_setting})")
    seconds = time.time() - t0
    metrics = {"validity": summary_counts(table), "table_statistics": stats_table, "ladders": stats_ladders,
               "knobs": [_sharp_row(r) for r in sharp], "seconds": seconds,
               "programs": {r["program"]: report.table_rows([r])[0] for r in table}}
    env = environment()
    config = {"scale": scale(), "config": _jsonable(cfg), "environment": env}
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1, default=str))
    (out_dir / "config.json").write_text(json.dumps(config, indent=1, default=str))
    (out_dir / "README.md").write_text(complexity_readme.readme(table, stats_table, stats_ladders, sharp, cfg, env,
                                                                seconds))
    return metrics


def _label(job, r: dict) -> str:
    if isinstance(job, TableJob):
        return f"table {job.program}: valid={r.get('valid')} {r.get('reason', '')[:80]}"
    if isinstance(job, RungJob):
        return f"ladder {job.ladder}[{job.rung}] seed {job.seed}: LLC {r['llc_mean']:.2f} trust={r['trustworthy']}"
    return f"knob {job.program} {job.knob}={job.value:g}: " + (
        f"LLC {r['llc_mean']:.2f} trust={r['trustworthy']}" if r.get("estimated") else r.get("reason", ""))


def _sharp_row(r: dict) -> dict:
    keys = ("program", "knob", "value", "localization", "nbeta", "reference_accuracy", "estimated", "llc_mean",
            "llc_std", "trustworthy",
            "acceptance", "rhat", "draw_accuracy_min", "step_size", "seconds")
    out = {k: r.get(k, "") for k in keys}
    b = r.get("bounds") or {}
    out.update(half_rank=b.get("half_rank", ""), effective_half_rank=b.get("effective_half_rank", ""),
               warnings="; ".join(r.get("warnings", [])) or r.get("reason", ""))
    return out


def _jsonable(cfg: ComplexityConfig) -> dict:
    d = dataclasses.asdict(cfg)
    d["validity"]["nbeta"] = cfg.validity.nbeta
    return d


def main() -> None:
    """`python -m studies.complexity`: the study alone at `LLC_SCALE`."""
    run(PRESETS[scale()], results_root() / "complexity")


if __name__ == "__main__":
    main()
