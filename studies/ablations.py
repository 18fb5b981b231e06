"""Research question 3: how do ablations change the LLC? Components against random controls, within programs.

Per program (compiled with the study's `ValiditySettings.sharpness`: every ReLU off its kink by a margin), the
intact model's LLC under its teacher loss, and for every component (heads and MLP layers at the quick scale):
  (a) what is left: the component zero-ablated (and mean-ablated at the full scale) by weight edits, the LLC of the
      ablated model under its *own* teacher loss (its weights are an exact minimum there), sampling only the
      entries the ablation kept; removed hidden units are switched off by the margin (b_in = -margin) and not
      sampled, so no ReLU sits at its kink (checked: `kink_margin`);
  (b) what recovery costs: the kept entries fine-tuned on the *original* teacher loss (Adam, then L-BFGS), the
      accuracy recovered, the gradient norm reached, and the LLC there (flagged when the gradient shows the point
      is not a minimum: `ablation_measure.gradient_bias`);
  (c) the refined LLC of the component in the intact model: only its entries sampled.
Each component gets `controls` random controls that remove as many live and dead atoms (hidden units, query-key
and value-output dimensions) at random (`studies.ablation_controls`); (a) is measured on each control (and (b),
(c) where `control_quantities` says so), so a component's effect is reported relative to removing as many weights
at random. Every estimate is `auto_llc` at one setting per study (`AblationConfig.estimate`, the only place the
sampler settings come from) with its verdict; untrustworthy numbers are kept and flagged.
One measurement is one `studies.ablation_jobs.Job`. Statistics are within programs; pooled ones only stratified
by program (`studies.ablation_stats`). Trained models are ablated by the same code (`studies.ablations_trained`).
Writes `results/ablations/`: one CSV per program
(component and control rows), `trained_<program>.csv`, figures, `metrics.json`, `config.json`, `README.md`.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import time
from pathlib import Path

from llc_estim import AutoSettings
from studies import ablation_stats as stats
from studies import ablations_report as report
from studies.ablation_controls import atoms, atoms_of
from studies.ablation_jobs import AblationConfig, Job, run_job, setup
from studies.ablations_figures import figure_diagnostics
from studies.ablations_trained import TrainedConfig, trained_ablations
from studies.common import environment, json_default, results_root, scale
from studies.runner import run_jobs
from studies.validity import ValiditySettings


def _settings(**size) -> ValiditySettings:
    """The validity study's defaults with the size knobs of this scale (the one place estimates are configured)."""
    return dataclasses.replace(ValiditySettings(), checks=False, **size)


_QUICK = ("length", "count_a", "histogram", "fractok", "pair_balance", "count_less_freq")
PRESETS = {
    "smoke": AblationConfig(programs=("fractok",), kinds=("mlp",), controls=1, component_quantities=("a", "c"),
                            estimate=_settings(n=16, max_steps=200, num_chains=2,
                                               auto=AutoSettings(leapfrog_steps=2, refreshes=0, dense_max=64)),
                            finetune_steps=5, polish_iter=5, n_test=32, bootstrap=50,
                            trained=TrainedConfig.preset("smoke"), workers=1),
    "quick": AblationConfig(programs=_QUICK, estimate=_settings(n=128, max_steps=700), max_components=2,
                            trained=TrainedConfig.preset("quick")),
    "full": AblationConfig(programs=_QUICK + ("triplets", "detect_abc", "dominant_peak", "sort"),
                           estimate=_settings(n=512, max_steps=3000), kinds=("head", "mlp", "mlp_slice"),
                           modes=("zero", "mean"), controls=8, control_quantities=("a", "b", "c"),
                           mean_quantities=("a", "b"), finetune_steps=1000, polish_iter=500, n_test=1000,
                           bootstrap=5000, trained=TrainedConfig.preset("full")),
}


def jobs(cfg: AblationConfig) -> list[Job]:
    """Every measurement of the study, costliest first."""
    out = []
    for program in cfg.programs:
        _, prob, comps, _, _ = setup(program, cfg)
        every = atoms(prob.model)
        live = sum(a.live for a in every)
        for comp in comps:
            mine = [every[i] for i in atoms_of(comp.masks, every)]
            if cfg.controls and sum(a.live for a in mine) == live and len(mine) == len(every):
                raise ValueError(f"{program}: {comp.name} owns every atom of the model, so its controls could only "
                                 "remove the component itself")
        out.append(Job(program, "", -1, "zero", "intact", cfg))
        for comp in comps:
            for mode in cfg.modes:
                if mode == "mean" and comp.layer < 0:
                    continue
                qs = cfg.component_quantities if mode == "zero" else cfg.mean_quantities
                out += [Job(program, comp.name, -1, mode, q, cfg) for q in qs]
                if mode == "zero":
                    out += [Job(program, comp.name, k, mode, q, cfg) for k in range(cfg.controls)
                            for q in cfg.control_quantities]
    return sorted(out, key=lambda j: -j.cost())


def split_traces(results: list[dict]) -> list[dict]:
    """Removes each job's `trace_<q>` record from its result (the tables stay flat) and returns them as
    [{"program", "component", "control", "mode", "quantity", "trace"}] for the diagnostics figure."""
    traces = []
    for r in results:
        for key in [k for k in r if k.startswith("trace_")]:
            traces.append({"program": r["program"], "component": r["component"], "control": r["control"],
                           "mode": r["mode"], "quantity": key[len("trace_"):], "trace": r.pop(key)})
    return traces


def assemble(cfg: AblationConfig, results: list[dict]) -> dict:
    """Program -> rows (one per ablation: the component or a control, with every quantity measured), intact first."""
    merged: dict = {}
    for r in results:
        key = (r["program"], r["component"], r["control"], r["mode"])
        merged.setdefault(key, {}).update({k: v for k, v in r.items()
                                           if k not in ("quantity", "seconds", "cpu_seconds")})
        merged[key][f"job_seconds_{r['quantity']}"] = r.get("seconds", math.nan)
        merged[key][f"job_cpu_seconds_{r['quantity']}"] = r.get("cpu_seconds", math.nan)
    out = {}
    for program in cfg.programs:
        intact = merged[(program, "", -1, "zero")]
        _, _, comps, _, _ = setup(program, cfg)
        rows = [{"ablation": "(intact)", "role": "intact", "kind": "", "expressions": "", **intact}]
        for comp in comps:
            for mode in cfg.modes:
                key = (program, comp.name, -1, mode)
                if key not in merged:
                    continue
                rows.append({"ablation": comp.name, "role": "component", "kind": comp.kind,
                             "expressions": ";".join(comp.labels), **merged[key]})
                if mode == "zero":
                    for k in range(cfg.controls):
                        rows.append({"ablation": f"{comp.name}~control{k}", "role": "control", "kind": comp.kind,
                                     "expressions": "", **merged[(program, comp.name, k, mode)]})
        for r in rows[1:]:
            r["llc_intact"], r["llc_intact_std"], r["ok_intact"] = (intact["llc_intact"], intact["llc_intact_std"],
                                                                    intact["ok_intact"])
            for q in ("a", "b"):
                if f"llc_{q}" in r:
                    r[f"delta_{q}"] = r[f"llc_{q}"] - intact["llc_intact"]
            if "acc_ft" in r:
                r["acc_recovered"] = r["acc_ft"] - r.get("acc_ref", math.nan)
        stats.versus_controls_rows(rows)
        out[program] = rows
    return out


def _write_csv(path: Path, rows: list[dict]) -> None:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


def _describe(args, result) -> str:
    job = args[0]
    q = job.quantity
    val = result.get(f"llc_{q}", math.nan)
    what = job.component + (f"~control{job.control}" if job.control >= 0 else "") or "(intact)"
    return f"{job.program} {what} {job.mode} ({q}): LLC {val:.3g}{'' if result.get(f'ok_{q}') else ' [flagged]'}"


def run(cfg: AblationConfig, out: Path) -> dict:
    """Runs the study (compiled programs, then trained models) and writes `out`; returns the metrics."""
    t0 = time.time()
    out.mkdir(parents=True, exist_ok=True)
    todo = jobs(cfg)
    print(f"[1/3] {len(todo)} measurements on {len(cfg.programs)} compiled programs", flush=True)
    results = run_jobs(run_job, [(j,) for j in todo], cfg.workers, desc="ablations", describe=_describe)
    traces = split_traces(results)
    tables = assemble(cfg, results)
    seconds_compiled = time.time() - t0
    print("[2/3] trained models", flush=True)
    trained = trained_ablations(cfg.trained, cfg.workers, out)
    print("[3/3] statistics, tables, figures, README", flush=True)
    for program, rows in tables.items():
        _write_csv(out / f"{program}.csv", rows)
    metrics = {"statistics": stats.study_statistics(tables, cfg.bootstrap), "programs": tables, "trained": trained,
               "seconds_compiled": seconds_compiled, "seconds_trained": time.time() - t0 - seconds_compiled}
    metrics["seconds"] = time.time() - t0
    env = environment()
    config = {"scale": scale(), **_jsonable(cfg), "loss": "teacher loss (mean over real positions of |readout(w) - "
              "readout(w*)|^2); (a): the ablated model's own readout as the target", "dtype": "float64",
              "environment": env}
    # the numbers first: a failing figure must not lose an hour of measurements (`report.write` redraws from them)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=json_default))
    (out / "config.json").write_text(json.dumps(config, indent=2, default=json_default))
    figure_diagnostics(traces, cfg, out)
    report.write(out, metrics, cfg, config)
    print(f"done in {time.time() - t0:.0f} s -> {out}", flush=True)
    return metrics


def _jsonable(cfg: AblationConfig) -> dict:
    d = dataclasses.asdict(cfg)
    d["estimate"]["nbeta"] = cfg.estimate.nbeta
    return d


def main() -> None:
    """The study at `LLC_SCALE`, written to `<LLC_RESULTS_DIR>/ablations`."""
    out = results_root() / "ablations"
    print(f"ablation study at scale {scale()!r} -> {out}", flush=True)
    run(PRESETS[scale()], out)


if __name__ == "__main__":
    main()
