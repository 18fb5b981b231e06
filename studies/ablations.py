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
Statistics are within programs; pooled ones only stratified by program (`studies.ablation_stats`). Trained models
are ablated by the same code (`studies.ablations_trained`). Writes `results/ablations/`: one CSV per program
(component and control rows), `trained_<program>.csv`, figures, `metrics.json`, `config.json`, `README.md`.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import json
import math
import time
from pathlib import Path

import torch

from datasets import generators
from datasets.teacher import teacher_loss, teacher_problem
from llc_estim import AutoSettings
from llc_estim.ablation import keep_masks
from rasp_models import registry
from studies import ablation_stats as stats
from studies import ablations_report as report
from studies.ablations_figures import figure_diagnostics
from studies.ablate import ablate_component
from studies.ablation_controls import atoms, atoms_of, count_removed, kink_margin, remove, sample_controls
from studies.ablation_controls import switch_off_removed_units
from studies.ablation_measure import finetune, gradient_bias, llc
from studies.ablations_trained import TrainedConfig, trained_ablations
from studies.common import environment, json_default, results_root, scale
from studies.runner import run_jobs
from studies.validity import ValiditySettings
from tracr.torch_components import components


@dataclasses.dataclass(frozen=True)
class AblationConfig:
    """One scale of the study.

    Attributes:
        programs: registered program names (each needs at least two components: controls draw from the others).
        estimate: the sampler settings of every compiled-model estimate (n, beta, gamma, budget, chains, seed,
            sharpness, auto_llc's algorithm): `ValiditySettings` defaults with only the size knobs replaced.
        kinds: component kinds ablated ("head", "mlp", "mlp_slice").
        max_components: at most this many components per program (0: all), taken alternately from the heads and
            the MLP layers in layer order (`select_components`).
        modes: "zero" (with controls) and optionally "mean" (no controls: a mean is defined for a component's
            output, not for a random set of weights).
        controls: random controls per component.
        component_quantities: what is measured on each component ablation ("a", "b", "c").
        control_quantities: what is measured on each control ("a" always; "b", "c" cost as much again).
        mean_quantities: what is measured on mean-ablations.
        finetune_steps, finetune_lr, polish_iter: the fine-tune of (b): Adam steps (full batch), then L-BFGS.
        n_test: reference-labelled test sequences for the accuracies (generator seed `seed + 1`).
        kink_tol: smallest |pre-activation| allowed for a unit that still matters (controls are redrawn below it).
        bootstrap: bootstrap and permutation resamples of the statistics.
        trained: the trained-model part.
        workers: parallel jobs (`studies.runner.run_jobs`).
    """

    programs: tuple
    estimate: ValiditySettings
    kinds: tuple = ("head", "mlp")
    max_components: int = 0
    modes: tuple = ("zero",)
    controls: int = 5
    component_quantities: tuple = ("a", "b", "c")
    control_quantities: tuple = ("a",)
    mean_quantities: tuple = ("a",)
    finetune_steps: int = 300
    finetune_lr: float = 1e-2
    polish_iter: int = 200
    n_test: int = 300
    kink_tol: float = 0.05
    bootstrap: int = 2000
    seed: int = 0
    trained: TrainedConfig = TrainedConfig()
    workers: int = 2


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


def accuracy(tm, spec, seqs) -> float:
    """Share of defined positions where the decoded output equals the reference (numbers within 1e-3)."""
    good = total = 0
    for xs, row in zip(seqs, tm.decode(tm.encode(seqs))):
        for got, want in zip(row[1:], spec.reference(xs)):
            if want is None:
                continue
            total += 1
            good += (abs(float(got) - float(want)) <= 1e-3) if spec.numerical else (got == want)
    return good / total


@dataclasses.dataclass(frozen=True)
class Job:
    """One measurement (picklable): `quantity` "intact", "a", "b" or "c" of one ablation of one program.

    `control` -1 is the component itself, k >= 0 its k-th random control.
    """

    program: str
    component: str
    control: int
    mode: str
    quantity: str
    cfg: AblationConfig

    def cost(self) -> float:
        """Relative cost for scheduling (larger programs, full-model estimates first)."""
        size = _size(self.program)
        return size * (0.3 if self.quantity == "c" else 1.0)


@functools.lru_cache(maxsize=None)
def _size(program: str) -> int:
    tm = registry.get(program).compile()
    cfg = tm.model_config
    return cfg.num_layers * (cfg.mlp_hidden_size + 4 * cfg.num_heads * cfg.key_size) * len(tm.residual_labels)


def select_components(comps: list, kinds: tuple, limit: int = 0) -> list:
    """The components of the given kinds; with `limit`, at most that many, alternately the next head and the next
    MLP (layer order), so a capped program keeps both kinds."""
    comps = [c for c in comps if c.kind in kinds]
    if not limit or len(comps) <= limit:
        return comps
    queues = [[c for c in comps if c.kind == k] for k in kinds]
    out = []
    while len(out) < limit and any(queues):
        for q in queues:
            if q and len(out) < limit:
                out.append(q.pop(0))
    return sorted(out, key=comps.index)


@functools.lru_cache(maxsize=8)
def _setup(program: str, cfg: AblationConfig):
    """(spec, teacher problem, components, test sequences, intact accuracy) of one program (cached per process)."""
    st = cfg.estimate
    spec = registry.get(program)
    prob = teacher_problem(spec, st.n, sharpness=st.sharpness)
    comps = select_components(components(prob.model, include_directions=False), cfg.kinds, cfg.max_components)
    test = generators.generate(spec, cfg.n_test, seed=cfg.seed + 1)
    return spec, prob, comps, test, accuracy(prob.model, spec, test)


def _ablated(job: Job):
    """(ablated model, removed masks, description) of the job's ablation."""
    spec, prob, comps, _, _ = _setup(job.program, job.cfg)
    margin = job.cfg.estimate.sharpness.relu_margin
    index = [c.name for c in comps].index(job.component)
    comp = comps[index]
    ids = prob.data.tensors[0]
    all_atoms = atoms(prob.model)
    mine = atoms_of(comp.masks, all_atoms)
    info = {"component_atoms": len(mine), "component_live_atoms": sum(all_atoms[i].live for i in mine)}
    if job.control < 0:
        model, removed = ablate_component(prob.model, comp, job.mode, ids if job.mode == "mean" else None)
        switch_off_removed_units(model, removed, margin)
        info.update(atoms_removed=len(mine), live_atoms_removed=info["component_live_atoms"], overlap=1.0, tries=0,
                    kink_margin=kink_margin(model, ids, removed))
    else:
        ctrl = sample_controls(prob.model, comp.masks, job.cfg.controls, ids, margin, seed=[job.cfg.seed, index],
                               tol=job.cfg.kink_tol, which=job.control)[0]
        model, removed = remove(prob.model, ctrl.masks, margin), ctrl.masks
        info.update(atoms_removed=len(ctrl.atoms), live_atoms_removed=info["component_live_atoms"],
                    overlap=ctrl.overlap, tries=ctrl.tries, kink_margin=ctrl.kink_margin)
    info["removed"], info["removed_nonzero"] = count_removed(prob.model, removed)
    return model, removed, info


def _put(out: dict, q: str, est: dict) -> None:
    out[f"llc_{q}"], out[f"llc_{q}_std"] = est["llc_mean"], est["llc_std"]
    for key in ("trustworthy", "rhat", "acceptance", "half_rank", "effective_half_rank", "half_dim", "sampled",
                "draw_metric_min", "mean_draw_loss", "step_size", "seconds"):
        out[f"{key}_{q}"] = est[key]
    out[f"ok_{q}"] = est["ok"]
    out[f"why_{q}"] = "; ".join(est["why"])
    out[f"trace_{q}"] = est["trace"]


def run_job(job: Job) -> dict:
    """The measurement a job names (see the module doc); a flat dict of numbers and verdicts."""
    torch.set_num_threads(1)
    t0, c0 = time.time(), time.process_time()
    spec, prob, comps, test, acc0 = _setup(job.program, job.cfg)
    st = job.cfg.estimate
    out = {"program": job.program, "component": job.component, "control": job.control, "mode": job.mode,
           "quantity": job.quantity}
    if job.quantity == "intact":
        est = llc(prob.model, prob.data, teacher_loss, st, nbeta=st.nbeta, draw_metric=prob.accuracy)
        _put(out, "intact", est)
        out.update(acc_ref=acc0, num_params=sum(p.numel() for p in prob.model.parameters()),
                   num_nonzero=sum(int((p != 0).sum()) for p in prob.model.parameters()),
                   kink_margin=kink_margin(prob.model, prob.data.tensors[0]))
        out["seconds"], out["cpu_seconds"] = time.time() - t0, time.process_time() - c0
        return out
    model, removed, info = _ablated(job)
    out.update(info)
    tol = job.cfg.kink_tol
    if job.quantity == "a":
        own = prob.for_model(model)
        est = llc(model, own.data, teacher_loss, st, nbeta=st.nbeta, draw_metric=own.accuracy,
                  param_masks=keep_masks(removed))
        if info["kink_margin"] < tol:
            est["ok"], est["why"] = False, est["why"] + [f"a ReLU within {info['kink_margin']:.3g} of its kink"]
        _put(out, "a", est)
        with torch.no_grad():
            out["func_change"] = float(teacher_loss(model, prob.data.tensors))
        out.update(acc_ref=accuracy(model, spec, test), agreement=prob.accuracy(model))
        out["acc_drop"] = acc0 - out["acc_ref"]
    elif job.quantity == "b":
        keep = keep_masks(removed)
        tuned, ft = finetune(model, teacher_loss, prob.data.tensors, keep, steps=job.cfg.finetune_steps,
                             lr=job.cfg.finetune_lr, polish_iter=job.cfg.polish_iter, seed=job.cfg.seed)
        margin_ft = kink_margin(tuned, prob.data.tensors[0], removed)
        agree = prob.accuracy(tuned)
        est = llc(tuned, prob.data, teacher_loss, st, nbeta=st.nbeta, draw_metric=prob.accuracy,
                  draw_floor=max(agree - 0.01, 0.0), param_masks=keep)
        bias = gradient_bias(ft["grad_norm"], st.nbeta, st.localization)
        if bias > 1:
            est["ok"], est["why"] = False, est["why"] + [
                f"not a minimum: gradient norm {ft['grad_norm']:.2g} can move the estimate by up to {bias:.2g}"]
        if margin_ft < tol:
            est["ok"], est["why"] = False, est["why"] + [f"a ReLU within {margin_ft:.3g} of its kink"]
        _put(out, "b", est)
        out.update(acc_ft=accuracy(tuned, spec, test), agreement_ft=agree, ft_loss_before=ft["loss_before"],
                   ft_loss=ft["loss_after"], ft_grad_norm=ft["grad_norm"], ft_grad_bias=bias,
                   ft_polish_iterations=ft["polish_iterations"], kink_margin_ft=margin_ft)
    elif job.quantity == "c":
        masks = removed  # the component's (or the control's) entries, sampled in the intact model
        est = llc(prob.model, prob.data, teacher_loss, st, nbeta=st.nbeta, draw_metric=prob.accuracy,
                  param_filter=sorted(masks), param_masks=masks)
        _put(out, "c", est)
    else:
        raise ValueError(f"unknown quantity {job.quantity!r}")
    out["seconds"], out["cpu_seconds"] = time.time() - t0, time.process_time() - c0
    return out


def jobs(cfg: AblationConfig) -> list[Job]:
    """Every measurement of the study, costliest first."""
    out = []
    for program in cfg.programs:
        _, prob, comps, _, _ = _setup(program, cfg)
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
        _, _, comps, _, _ = _setup(program, cfg)
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
        versus_controls_rows(rows)
        out[program] = rows
    return out


COMPARED = {"a": "llc_a", "b": "llc_b", "c": "llc_c", "acc_drop": "acc_drop", "func_change": "func_change",
            "acc_ft": "acc_ft"}


def versus_controls_rows(rows: list[dict]) -> None:
    """In place: each zero-ablated component row gets, per compared quantity q present on its controls,
    `controls_mean_q`, `controls_sd_q`, `effect_q` (component minus the controls' mean), `z_q`, `below_q` (controls
    below the component) and `p_rank_q` (`studies.ablation_stats.versus_controls`)."""
    for r in rows:
        if r["role"] != "component" or r.get("mode") != "zero":
            continue
        ctrl = [c for c in rows if c["role"] == "control" and c["component"] == r["component"]]
        for q, key in COMPARED.items():
            vals = [c[key] for c in ctrl if key in c]
            if key not in r or not vals:
                continue
            v = stats.versus_controls(r[key], vals)
            r.update({f"controls_mean_{q}": v["controls_mean"], f"controls_sd_{q}": v["controls_sd"],
                      f"effect_{q}": v["diff"], f"z_{q}": v["z"], f"below_{q}": v["below"],
                      f"p_rank_{q}": v["p_rank"]})


def statistics(tables: dict, cfg: AblationConfig) -> dict:
    """Within-program statistics, pooled ones stratified by program, and validity counts (module doc)."""
    reps = cfg.bootstrap
    per_program, pooled_rows = {}, []
    for program, rows in tables.items():
        zero = [r for r in rows if r.get("mode") == "zero" and r["role"] != "intact"]
        comp = [r for r in zero if r["role"] == "component"]
        s = {
            "effect_a_vs_acc_drop": stats.spearman([r.get("effect_a") for r in comp], [r.get("acc_drop") for r in comp],
                                                   reps),
            "delta_a_vs_acc_drop": stats.spearman([r.get("delta_a") for r in zero], [r.get("acc_drop") for r in zero],
                                                  reps),
            "delta_a_vs_func_change": stats.spearman([r.get("delta_a") for r in zero],
                                                     [r.get("func_change") for r in zero], reps),
            "refined_vs_acc_drop": stats.spearman([r.get("llc_c") for r in zero if "llc_c" in r],
                                                  [r.get("acc_drop") for r in zero if "llc_c" in r], reps),
            "components": len(comp), "controls": sum(r["role"] == "control" for r in zero),
        }
        per_program[program] = s
        pooled_rows += [(program, r) for r in zero]
    g = [p for p, _ in pooled_rows]
    col = lambda key: [r.get(key, math.nan) for _, r in pooled_rows]  # noqa: E731
    comp_rows = [(p, r) for p, r in pooled_rows if r["role"] == "component"]
    ccol = lambda key: [r.get(key, math.nan) for _, r in comp_rows]  # noqa: E731
    ok_rows = [(p, r) for p, r in pooled_rows if r.get("ok_a")]
    pooled = {
        "delta_a_vs_acc_drop": stats.stratified_spearman(col("delta_a"), col("acc_drop"), g, reps),
        "delta_a_vs_func_change": stats.stratified_spearman(col("delta_a"), col("func_change"), g, reps),
        "delta_a_vs_acc_drop_valid_only": stats.stratified_spearman(
            [r.get("delta_a") for _, r in ok_rows], [r.get("acc_drop") for _, r in ok_rows], [p for p, _ in ok_rows],
            reps),
        "effect_a_vs_acc_drop": stats.stratified_spearman(ccol("effect_a"), ccol("acc_drop"),
                                                          [p for p, _ in comp_rows], reps),
        "refined_vs_acc_drop": stats.stratified_spearman(ccol("llc_c"), ccol("acc_drop"), [p for p, _ in comp_rows],
                                                         reps),
        "components_below_controls_a": stats.sign_test(ccol("effect_a")),
        "components_below_controls_acc": stats.sign_test([-v for v in ccol("effect_acc_drop")]),
    }
    validity = {}
    for q in ("intact", "a", "b", "c"):
        for role in ("intact",) if q == "intact" else ("component", "control"):
            vals = [r[f"ok_{q}"] for rows in tables.values() for r in rows if r["role"] == role and f"ok_{q}" in r]
            if vals:
                validity[f"{q}/{role}"] = {"ok": int(sum(vals)), "total": len(vals)}
    return {"per_program": per_program, "pooled_stratified": pooled, "validity": validity}


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
    metrics = {"statistics": statistics(tables, cfg), "programs": tables, "trained": trained,
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
