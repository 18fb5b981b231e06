"""Per-program work of the complexity study: calibrate, then estimate over seeds, for one compiled program.

Each job is self-contained (it compiles its program), so jobs can run in separate worker processes.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Optional

import numpy as np
import torch

from datasets import generators
from datasets.dataloaders import teacher_dataset
from llc_estim import SGLDConfig, SGLDDivergenceError, calibrate, estimate_llc
from llc_estim.experiments.teacher import teacher_loss
from rasp_models import fractok, palindrome, registry, sort
from rasp_models.base import ProgramSpec, descriptors
from tracr.haiku_to_pytorch import to_torch

EMBED = ("token_embed", "pos_embed")


def not_embedding(name: str) -> bool:
    """Parameter filter: everything but the token and position embeddings."""
    return name not in EMBED


@dataclasses.dataclass(frozen=True)
class StudySettings:
    """Sampler settings shared by every program (the step size is calibrated per program)."""

    num_sequences: int
    seeds: tuple
    base: SGLDConfig
    step_grid: tuple
    calib_chains: int
    calib_draws: int
    calib_burnin: int
    no_embed_seeds: tuple


def sweep_spec(family: str, size: dict) -> ProgramSpec:
    """A registered program at another size (same algorithm, bigger model)."""
    if family == "fractok":
        return dataclasses.replace(fractok.make_spec(size["letters"], size["max_seq_len"],
                                                     name=f"fractok_v{size['letters']}_l{size['max_seq_len']}"),
                                   family="fractok")
    base = {"palindrome": palindrome.SPEC, "sort": sort.SPEC}[family]
    if family == "sort":
        msl = size["max_seq_len"]
        from tracr.compiler import lib
        from tracr.rasp import rasp

        return dataclasses.replace(base, name=f"sort_l{msl}", max_seq_len=msl, family="sort",
                                   make_program=lambda: lib.make_sort(rasp.tokens, rasp.tokens, max_seq_len=msl,
                                                                      min_key=1))
    return dataclasses.replace(base, name=f"{family}_l{size['max_seq_len']}", max_seq_len=size["max_seq_len"],
                               family=family)


def _setup(spec: ProgramSpec, n: int, dtype=torch.float64):
    tm = to_torch(spec.compile(), dtype=dtype)
    data = teacher_dataset(tm, generators.generate(spec, n, seed=1234))
    return tm, data


def _summary(res) -> dict:
    return {"llc_mean": res.llc_mean, "llc_std": res.llc_std, "llc_per_chain": res.llc_per_chain.tolist(),
            "acceptance": res.diagnostics["mala_acceptance"], "frac_below_init": res.diagnostics["frac_below_init_loss"],
            "rhat": res.diagnostics["rhat_loss"], "nbeta": res.nbeta, "num_sampled_params": res.num_sampled_params}


def _estimate_over_seeds(tm, data, cfg: SGLDConfig, seeds, param_filter=None) -> dict:
    runs, trace = [], None
    for seed in seeds:
        try:
            res = estimate_llc(tm, data, teacher_loss, dataclasses.replace(cfg, seed=seed, param_filter=param_filter,
                                                                           progress=False))
        except SGLDDivergenceError as err:
            runs.append({"diverged": True, "error": str(err)})
            continue
        chains = res.llc_per_chain
        med = float(np.median(np.abs(chains)))
        exploded = bool(np.any(np.abs(chains) > 10 * med + 10))
        if exploded:  # a chain ran away without producing NaN: treated like a divergence
            runs.append({"diverged": True, "error": f"exploding chain: per-chain LLC {chains.tolist()}"})
            continue
        runs.append({"diverged": False, **_summary(res)})
        if trace is None:
            trace = np.concatenate([res.burnin_trace, res.loss_trace], axis=1)
    ok = [r for r in runs if not r["diverged"]]
    seed_means = [r["llc_mean"] for r in ok]
    return {
        "runs": runs,
        "llc_mean": float(np.mean(seed_means)) if ok else math.nan,
        "llc_std_seeds": float(np.std(seed_means, ddof=1)) if len(ok) > 1 else math.nan,
        "llc_std_chains": float(np.mean([r["llc_std"] for r in ok])) if ok else math.nan,
        "acceptance": float(np.mean([r["acceptance"] for r in ok])) if ok else math.nan,
        "frac_below_init": float(np.mean([r["frac_below_init"] for r in ok])) if ok else math.nan,
        "num_diverged": len(runs) - len(ok),
        "trace": trace.tolist() if trace is not None else None,
    }


def run_program(spec: ProgramSpec, st: StudySettings) -> dict:
    """Calibrate the step size on this program, then estimate the LLC over seeds for both parameter sets."""
    torch.set_num_threads(1)
    t0 = time.time()
    tm, data = _setup(spec, st.num_sequences)
    calib_base = dataclasses.replace(st.base, num_chains=st.calib_chains, num_draws=st.calib_draws,
                                     num_burnin=st.calib_burnin, progress=False)
    cal = calibrate(tm, data, teacher_loss, calib_base, step_sizes=st.step_grid)
    out = {"program": spec.name, "descriptors": _descriptors(spec), "n": st.num_sequences,
           "calibration": cal.table, "calibration_rule": cal.rule, "calibration_flat": cal.flat,
           "largest_stable_step": cal.largest_stable_step}
    if cal.recommended is None:
        out.update(step_size=math.nan, all=None, no_embed=None, seconds=time.time() - t0)
        return out
    # The short calibration runs can miss instabilities that the full runs hit: if any full run diverges or has an
    # exploding chain, step down the grid and redo all of them (every reduction is recorded).
    candidates = sorted((e for e in st.step_grid if e <= cal.recommended.step_size), reverse=True)
    out["step_reductions"] = []
    for eps in candidates:
        cfg = dataclasses.replace(st.base, step_size=eps)
        every = _estimate_over_seeds(tm, data, cfg, st.seeds)
        no_embed = _estimate_over_seeds(tm, data, cfg, st.no_embed_seeds, param_filter=not_embedding)
        if every["num_diverged"] == 0 and no_embed["num_diverged"] == 0:
            break
        out["step_reductions"].append({"step_size": eps, "errors": [r.get("error") for r in every["runs"]
                                                                     + no_embed["runs"] if r["diverged"]]})
    out.update(step_size=eps, all=every, no_embed=no_embed, seconds=time.time() - t0)
    return out


def run_common(spec: ProgramSpec, st: StudySettings, step_size: float) -> dict:
    """One estimate at the common step size (identical hyperparameters for every program)."""
    torch.set_num_threads(1)
    tm, data = _setup(spec, st.num_sequences)
    cfg = dataclasses.replace(st.base, step_size=step_size)
    return {"program": spec.name, "step_size": step_size, **_estimate_over_seeds(tm, data, cfg, st.seeds[:1])}


def run_checks(st: StudySettings, step_sizes: dict) -> dict:
    """Loss-rescaling invariance on two programs, and float32 vs float64 on fractok."""
    torch.set_num_threads(1)
    out: dict = {"rescaling": {}, "dtype": {}}
    for name in ("fractok", "histogram"):
        spec = registry.get(name)
        tm, data = _setup(spec, st.num_sequences)
        eps = step_sizes.get(name)
        if eps is None or not math.isfinite(eps):
            continue
        nbeta = st.num_sequences / math.log(st.num_sequences)
        cfg = dataclasses.replace(st.base, step_size=eps, nbeta=nbeta, progress=False)
        try:
            a = estimate_llc(tm, data, teacher_loss, cfg)
            b = estimate_llc(tm, data, lambda m, bt: 10.0 * teacher_loss(m, bt),
                             dataclasses.replace(cfg, nbeta=nbeta / 10))
        except SGLDDivergenceError as err:
            out["rescaling"][name] = {"diverged": str(err)}
            continue
        out["rescaling"][name] = {"loss_x1": a.llc_mean, "loss_x10_nbeta_div10": b.llc_mean,
                                  "rel_diff": abs(a.llc_mean - b.llc_mean) / abs(a.llc_mean), "step_size": eps}
    eps = step_sizes.get("fractok")
    if eps is not None and math.isfinite(eps):
        spec = registry.get("fractok")
        for dtype in (torch.float64, torch.float32):
            tm, data = _setup(spec, st.num_sequences, dtype)
            ids, target, mask = data.tensors
            data = torch.utils.data.TensorDataset(ids, target.to(dtype), mask)
            try:
                res = estimate_llc(tm, data, teacher_loss, dataclasses.replace(st.base, step_size=eps, progress=False))
                out["dtype"][str(dtype).replace("torch.", "")] = {"llc_mean": res.llc_mean, "llc_std": res.llc_std}
            except SGLDDivergenceError as err:
                out["dtype"][str(dtype).replace("torch.", "")] = {"diverged": str(err)}
    return out


def _descriptors(spec: ProgramSpec) -> dict:
    d = descriptors(spec)
    d["half_params"] = d["num_params"] / 2
    return d


def job(kind: str, spec_name: Optional[str], st: StudySettings, extra=None) -> dict:
    """Dispatch for worker processes (picklable arguments only)."""
    if kind == "program":
        return run_program(registry.get(spec_name), st)
    if kind == "sweep":
        family, size = extra
        one_seed = dataclasses.replace(st, seeds=st.seeds[:1], no_embed_seeds=())
        return {**run_program(sweep_spec(family, size), one_seed), "family": family, "size": size}
    if kind == "common":
        return run_common(registry.get(spec_name), st, extra)
    if kind == "checks":
        return run_checks(st, extra)
    raise ValueError(kind)
