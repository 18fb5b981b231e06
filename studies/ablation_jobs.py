"""One measurement of the ablation study, as a picklable job: the study's configuration, the program set-up
(teacher problem, components, test sequences) cached per process, the ablated model of a component or of one of its
random controls, and `run_job`, which measures quantity (a), (b), (c) or the intact LLC (see `studies.ablations`).
"""

from __future__ import annotations

import dataclasses
import functools
import time

import torch

from datasets import generators
from datasets.teacher import teacher_loss, teacher_problem
from llc_estim.ablation import keep_masks
from rasp_models import registry
from studies.ablate import ablate_component
from studies.ablation_controls import atoms, atoms_of, count_removed, kink_margin, remove, sample_controls
from studies.ablation_controls import switch_off_removed_units
from studies.ablation_measure import finetune, gradient_bias, llc
from studies.ablations_trained import TrainedConfig
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
def setup(program: str, cfg: AblationConfig):
    """(spec, teacher problem, components, test sequences, intact accuracy) of one program (cached per process)."""
    st = cfg.estimate
    spec = registry.get(program)
    prob = teacher_problem(spec, st.n, sharpness=st.sharpness)
    comps = select_components(components(prob.model, include_directions=False), cfg.kinds, cfg.max_components)
    test = generators.generate(spec, cfg.n_test, seed=cfg.seed + 1)
    return spec, prob, comps, test, accuracy(prob.model, spec, test)


def _ablated(job: Job):
    """(ablated model, removed masks, description) of the job's ablation."""
    spec, prob, comps, _, _ = setup(job.program, job.cfg)
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
    spec, prob, comps, test, acc0 = setup(job.program, job.cfg)
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
