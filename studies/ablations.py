"""Research question 3: how do ablations change the LLC?

Per program: calibrate the step size on the intact compiled model (teacher loss), then with that one setting:
  * the LLC of the intact model (all parameters);
  * per component (heads, MLP layers, per-expression MLP slices, S-op directions): the weight-refined LLC in the
    intact model, and, after zero- and mean-ablation, the accuracy against the reference and the LLC of the
    ablated model under (a) its own teacher loss (its own weights are then an exact minimum), sampling only the
    entries the ablation did not remove;
  * (b) for zero-ablations: a short fine-tune of the remaining weights back towards the original function, the
    accuracy it recovers, and the LLC of the fine-tuned model under the original teacher loss, with the gradient
    norm there (it is not an exact minimum).
Trained models from the training study are ablated by the same code (`studies.ablations_trained`).
Writes `results/ablations/<program>.csv`, figures, `metrics.json`, `README.md`.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import json
import math
import time
from pathlib import Path

import torch

from datasets import generators
from datasets.teacher import teacher_loss, teacher_problem
from llc_estim import SGLDConfig, SGLDDivergenceError, calibrate, estimate_llc
from llc_estim.ablation import keep_masks
from rasp_models import registry
from studies import ablations_report as report
from studies.ablate import ablate_component
from studies.ablations_trained import trained_ablations
from studies.common import environment, results_root, run_parallel, scale
from tracr.torch_components import components


@dataclasses.dataclass(frozen=True)
class AblationConfig:
    """One scale of the study.

    Attributes:
        programs: registered program names.
        n: teacher data size (generator seed `seed`); n_test: reference-labelled test sequences (seed `seed + 1`).
        base: the sampler settings (step size calibrated per program on `step_grid`).
        finetune_steps: Adam steps of the fine-tune after each zero-ablation (0: none).
        directions: also ablate S-op directions.
        detail_max_params: larger programs get heads and MLP layers only, and a cheaper sampler (`large_budget`
            times the draws, burn-in and fine-tune steps, 2 chains).
        trained_max_params: trained models larger than this are not ablated (0: no limit).
        workers: worker processes.
    """

    programs: tuple
    n: int
    n_test: int
    base: SGLDConfig
    step_grid: tuple
    finetune_steps: int
    directions: bool = True
    seed: int = 0
    detail_max_params: int = 50_000
    large_budget: float = 0.5
    trained_max_params: int = 50_000
    workers: int = 2


def _sampler(*, chains: int, draws: int, burnin: int) -> SGLDConfig:
    # localization 1000 as in the complexity study (see studies.complexity.LOCALIZATION for why)
    return SGLDConfig(step_size=1e-6, localization=1000.0, num_chains=chains, num_draws=draws, num_burnin=burnin,
                      batch_size=32, mala_every=10, progress=False)


_QUICK = ("peak", "palindrome", "fractok", "histogram", "triplets", "detect_abc")
PRESETS = {
    "smoke": AblationConfig(programs=("fractok",), n=32, n_test=32, base=_sampler(chains=2, draws=10, burnin=5),
                            step_grid=(1e-6, 1e-5), finetune_steps=5, workers=1),
    "quick": AblationConfig(programs=_QUICK, n=128, n_test=300, base=_sampler(chains=3, draws=60, burnin=40),
                            step_grid=(1e-7, 1e-6, 1e-5, 1e-4), finetune_steps=150),
    "full": AblationConfig(programs=_QUICK + ("dominant_peak", "reverse"), n=512, n_test=1000,
                           base=_sampler(chains=8, draws=500, burnin=200),
                           step_grid=(1e-8, 1e-7, 1e-6, 1e-5, 1e-4), finetune_steps=1000,
                           detail_max_params=500_000, large_budget=1.0, trained_max_params=0),
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


def _llc(tm, data, cfg, **kw) -> dict:
    try:
        res = estimate_llc(tm, data, teacher_loss, dataclasses.replace(cfg, **kw))
        return {"llc_mean": res.llc_mean, "llc_std": res.llc_std, "acceptance": res.diagnostics["mala_acceptance"],
                "sampled": res.num_sampled_params, "diverged": False}
    except SGLDDivergenceError:
        return {"llc_mean": math.nan, "llc_std": math.nan, "acceptance": math.nan, "sampled": 0, "diverged": True}


def finetune(tm, target_data, keep: dict, steps: int, lr: float = 1e-3, seed: int = 0):
    """Adam on the kept entries only, towards the original model's readout."""
    model = copy.deepcopy(tm)
    params = dict(model.named_parameters())
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    n = len(target_data)
    for _ in range(steps):
        idx = torch.randint(0, n, (32,), generator=gen)
        loss = teacher_loss(model, target_data[idx])
        opt.zero_grad()
        loss.backward()
        with torch.no_grad():
            for name, m in keep.items():
                params[name].grad *= m
        opt.step()
        with torch.no_grad():  # Adam's momentum must not move removed entries either
            for name, m in keep.items():
                params[name][~m] = 0.0
    return model


def run_program(name: str, cfg: AblationConfig) -> list[dict]:
    """Every ablation of one program: one row per component and mode."""
    torch.set_num_threads(1)
    spec = registry.get(name)
    prob = teacher_problem(spec, cfg.n, seed=cfg.seed, dedup=False)
    tm, data = prob.model, prob.data
    test = generators.generate(spec, cfg.n_test, seed=cfg.seed + 1)
    detailed = sum(p.numel() for p in tm.parameters()) <= cfg.detail_max_params
    base, ft_steps = cfg.base, cfg.finetune_steps
    if not detailed:  # a cheaper sampler for the largest models, recorded in every row
        base = dataclasses.replace(base, num_chains=2, num_draws=max(int(base.num_draws * cfg.large_budget), 10),
                                   num_burnin=max(int(base.num_burnin * cfg.large_budget), 5))
        ft_steps = int(ft_steps * cfg.large_budget)
    cal = calibrate(tm, data, teacher_loss, dataclasses.replace(base, num_chains=2), step_sizes=cfg.step_grid)
    eps = cal.recommended.step_size if cal.recommended else min(cfg.step_grid)
    base = dataclasses.replace(base, step_size=eps)
    intact = _llc(tm, data, base)
    rows = []
    ids = data.tensors[0]
    acc_intact = accuracy(tm, spec, test)
    comps = components(tm, include_directions=cfg.directions and detailed)
    if not detailed:
        comps = [c for c in comps if c.kind in ("head", "mlp")]
    for comp in comps:
        refined = _llc(tm, data, base, param_filter=list(comp.masks), param_masks=comp.masks)
        modes = ["zero"] + (["mean"] if comp.kind in ("head", "mlp", "mlp_slice") else [])
        for mode in modes:
            ablated, removed = ablate_component(tm, comp, mode, ids)
            keep = keep_masks(removed)
            own = prob.for_model(ablated).data
            row = {"program": name, "component": comp.name, "kind": comp.kind, "expressions": ";".join(comp.labels),
                   "mode": mode, "component_params": comp.num_params, "step_size": eps,
                   "chains": base.num_chains, "draws": base.num_draws,
                   "acc_intact": acc_intact, "acc_ablated": accuracy(ablated, spec, test),
                   "llc_intact": intact["llc_mean"], "llc_intact_std": intact["llc_std"],
                   "llc_refined": refined["llc_mean"], "llc_refined_std": refined["llc_std"]}
            after = _llc(ablated, own, base, param_masks=keep)
            row.update(llc_ablated=after["llc_mean"], llc_ablated_std=after["llc_std"], sampled_ablated=after["sampled"])
            if mode == "zero" and ft_steps:
                row.update(_finetuned(ablated, data, keep, ft_steps, cfg.seed, base, spec, test))
            rows.append(row)
    return rows


def _finetuned(ablated, data, keep: dict, steps: int, seed: int, base: SGLDConfig, spec, test) -> dict:
    """Fine-tune the kept entries back towards the original function; its accuracy, loss, gradient norm and LLC."""
    tuned = finetune(ablated, data, keep, steps, seed=seed)
    loss = teacher_loss(tuned, data.tensors)
    grads = torch.autograd.grad(loss, [p for p in tuned.parameters()], allow_unused=True)
    gnorm = math.sqrt(sum(float((g ** 2).sum()) for g in grads if g is not None))
    ft = _llc(tuned, data, base, param_masks=keep)
    return {"acc_finetuned": accuracy(tuned, spec, test), "finetune_loss": float(loss.detach()),
            "finetune_grad_norm": gnorm, "llc_finetuned": ft["llc_mean"], "llc_finetuned_std": ft["llc_std"]}


def _write_csv(path: Path, rows: list[dict]) -> None:
    keys = list(rows[0]) + sorted({k for r in rows for k in r} - set(rows[0]))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


def run(cfg: AblationConfig, out: Path) -> dict:
    """Runs the study (compiled programs, then the trained models found in the training results); writes `out`."""
    t0 = time.time()
    out.mkdir(parents=True, exist_ok=True)
    every = []
    per_program = run_parallel(run_program, [(name, cfg) for name in cfg.programs], cfg.workers)
    for name, rows in zip(cfg.programs, per_program):
        every += rows
        _write_csv(out / f"{name}.csv", rows)
        report.figures(out, name, rows)
        print(f"  {name:14s} {len(rows)} ablations, intact LLC {rows[0]['llc_intact']:.2f} "
              f"eps {rows[0]['step_size']:g}  {time.time() - t0:.0f}s", flush=True)
    zero = [r for r in every if r["mode"] == "zero"]
    metrics = {
        "rows": every,
        "spearman_refined_vs_acc_drop": report.spearman([r["llc_refined"] for r in zero],
                                                        [r["acc_intact"] - r["acc_ablated"] for r in zero]),
        "spearman_refined_vs_llc_change": report.spearman([r["llc_refined"] for r in zero],
                                                          [r["llc_intact"] - r["llc_ablated"] for r in zero]),
        "seconds": time.time() - t0,
    }
    metrics["trained"] = trained_ablations(cfg, out)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
    (out / "README.md").write_text(report.readme(metrics, cfg))
    (out / "config.json").write_text(json.dumps({**{k: v for k, v in dataclasses.asdict(cfg).items() if k != "base"},
                                                 "base": cfg.base.to_dict(), "scale": scale(),
                                                 "environment": environment()}, indent=2, default=str))
    return metrics


def main() -> None:
    """The study at `LLC_SCALE`, written to `<LLC_RESULTS_DIR>/ablations`."""
    out = results_root() / "ablations"
    print(f"ablation study at scale {scale()!r} -> {out}", flush=True)
    run(PRESETS[scale()], out)


if __name__ == "__main__":
    main()
